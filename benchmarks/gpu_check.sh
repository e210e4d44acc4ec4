#!/usr/bin/env bash
# One prepared GPU check: at most 8 minutes on an H100 after the set-up (CUDA tests <= 60 s,
# benchmark 300 s by its time guard plus model load, activation pass and evaluation; a hard
# stop at 390 s). Steps:
#   1. the project's own set-up (`make install` -> .venv; about 1.5 min where PyPI is
#      reachable); nothing else is installed. On a machine without internet (as lent GPU
#      machines are) `make install` fails within seconds, and the project alone is
#      installed into a venv that sees the machine's own torch/torchvision (pip --no-deps
#      --no-build-isolation --no-index: nothing is downloaded; about 20 s);
#   2. the CUDA tests (`pytest -m gpu tests/core`), at most 60 s;
#   3. benchmarks/bench_gpu.py: a paper-depth resnet50 circuit (11 layers, tau 16, k 50,
#      N 50, 50 images of 224 px, weights=None), per transition: time, TFLOP/s, peak GPU
#      memory, fp32 vs tf32/bf16 core sets (pooled Jaccard); then a short faithfulness
#      evaluation. Its time guard stops it cleanly after GPU_CHECK_SECONDS (default 300).
# Results: $OUT/gpu_check.json (+ gpu_check.log) when OUT is set, else benchmarks/results/.
# Usage: bash benchmarks/gpu_check.sh [extra bench_gpu.py options]
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
started=$(date +%s)
log=${OUT:+$OUT/gpu_check.log}
log=${log:-/dev/null}
say() { echo "[gpu_check $(( $(date +%s) - started ))s] $*" | tee -a "$log"; }

PY=.venv/bin/python
if ! $PY -c "import neurflow, torch, torchvision" 2>/dev/null; then
  say "make install"
  if ! PIP_RETRIES=0 PIP_TIMEOUT=10 timeout 240 make install >>"$log" 2>&1; then
    say "make install failed (no package index reachable?): installing the project alone over the machine's torch"
    PY=.venv-gpu/bin/python
    python3 -m venv --system-site-packages .venv-gpu \
      && $PY -m pip install -q --no-deps --no-build-isolation --no-index -e . >>"$log" 2>&1 \
      || { say "could not install the project"; exit 1; }
  fi
fi
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')" | tee -a "$log"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | tee -a "$log"

say "CUDA tests"
if $PY -c "import pytest" 2>/dev/null; then
  timeout 60 $PY -m pytest -q -m gpu -p no:cacheprovider --continue-on-collection-errors tests/core 2>&1 | tail -15 | tee -a "$log"
else
  say "pytest missing: CUDA tests not run"
fi

say "bench_gpu.py"
budget=${GPU_CHECK_SECONDS:-300}
timeout $(( budget + 90 )) $PY benchmarks/bench_gpu.py --time-limit "$budget" "$@" 2>&1 | tee -a "$log"
rc=${PIPESTATUS[0]}
say "done (exit $rc)"
exit "$rc"
