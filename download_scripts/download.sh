#!/bin/sh
# Download, verify and unpack MSeg's datasets into the raw layout under ROOT (see README.md here).
# usage: download_scripts/download.sh ROOT NAME... [OPTIONS]   e.g.  download.sh /data/mseg_dataset public
# A thin wrapper of `python tools/data.py download NAME... --root ROOT` (all options pass through).
set -e
if [ $# -lt 2 ]; then
    echo "usage: $0 ROOT NAME... [OPTIONS]  (names: python tools/data.py download --list)" >&2
    exit 2
fi
ROOT=$1
shift
exec python "$(dirname "$0")/../tools/data.py" download "$@" --root "$ROOT"
