#!/bin/sh
# Download, verify and unpack MSeg's datasets into the raw layout under ROOT (see README.md here).
# usage: download_scripts/download.sh ROOT NAME... [OPTIONS]   e.g.  download.sh /data/mseg_dataset public
# A thin wrapper of `python3 tools/data.py download NAME... --root ROOT` (all options pass through).
# The interpreter: $PYTHON if set, else python3, else python.
set -e
PYTHON=${PYTHON:-$(command -v python3 || command -v python || true)}
if [ -z "$PYTHON" ]; then
    echo "$0: no python3 or python on PATH; set PYTHON to the interpreter that has unifiedseg installed" >&2
    exit 2
fi
if [ $# -lt 2 ]; then
    echo "usage: $0 ROOT NAME... [OPTIONS]  (names: $PYTHON tools/data.py download --list)" >&2
    exit 2
fi
ROOT=$1
shift
exec "$PYTHON" "$(dirname "$0")/../tools/data.py" download "$@" --root "$ROOT"
