#!/usr/bin/env bash
# Train with DDP on one machine: tools/dist_train.sh CONFIG NGPUS [--max-restarts N] [key=value ...]
# Several nodes: set NNODES, NODE_RANK, MASTER_ADDR and MASTER_PORT as torchrun expects.
# A crashed worker group is restarted from the last checkpoint up to N times (--max-restarts, or
# MAX_RESTARTS; default 3). Exit codes are tools/train.py's (README: 0 finished, 75 stopped, resumable).
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: $0 CONFIG NGPUS [--max-restarts N] [key=value ...]" >&2
  exit 2
fi
CONFIG=$1
NGPUS=$2
shift 2
RESTARTS=${MAX_RESTARTS:-3}
OVERRIDES=()
while [ $# -gt 0 ]; do
  case "$1" in
    --max-restarts) [ $# -ge 2 ] || { echo "$0: --max-restarts needs a number" >&2; exit 2; }
                    RESTARTS=$2; shift 2 ;;
    --max-restarts=*) RESTARTS=${1#*=}; shift ;;
    *) OVERRIDES+=("$1"); shift ;;
  esac
done
exec torchrun \
  --nnodes "${NNODES:-1}" --node_rank "${NODE_RANK:-0}" \
  --master_addr "${MASTER_ADDR:-127.0.0.1}" --master_port "${MASTER_PORT:-29500}" \
  --nproc_per_node "$NGPUS" --max-restarts "$RESTARTS" \
  "$(dirname "$0")/train.py" --config "$CONFIG" ${OVERRIDES[@]+"${OVERRIDES[@]}"}
