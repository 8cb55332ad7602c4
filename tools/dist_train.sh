#!/usr/bin/env bash
# Train with DDP on one machine: tools/dist_train.sh CONFIG NGPUS [key=value ...]
# Several nodes: set NNODES, NODE_RANK, MASTER_ADDR and MASTER_PORT as torchrun expects.
# A crashed worker group is restarted from the last checkpoint up to MAX_RESTARTS times.
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: $0 CONFIG NGPUS [key=value ...]" >&2
  exit 2
fi
CONFIG=$1
NGPUS=$2
shift 2
exec torchrun \
  --nnodes "${NNODES:-1}" --node_rank "${NODE_RANK:-0}" \
  --master_addr "${MASTER_ADDR:-127.0.0.1}" --master_port "${MASTER_PORT:-29500}" \
  --nproc_per_node "$NGPUS" --max-restarts "${MAX_RESTARTS:-3}" \
  "$(dirname "$0")/train.py" --config "$CONFIG" "$@"
