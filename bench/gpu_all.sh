#!/usr/bin/env bash
# Every GPU figure of issue 23 (MFU, SALT vs V-JEPA step, TD-JEPA CUDA graphs) in one run on one GPU,
# with plain torch and the variant code only: no Ray, Hydra, OmegaConf or polars needed there.
# Writes ${OUT:-bench}/gpu_results.json and .txt. Budget: under 8 minutes on an H100/H200.
# The configs and traced FLOPs come from bench/gpu_configs.json (`python -m bench.gpu_all --write-configs`).
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
PY="${PYTHON:-python}"
"$PY" -m bench.gpu_all --check-imports
timeout "${GPU_ALL_TIMEOUT:-480}" "$PY" -m bench.gpu_all --out "${OUT:-bench}/gpu_results.json" "$@"
