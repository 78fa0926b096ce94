#!/usr/bin/env bash
# The GPU path, checked in under 10 minutes on the first machine with a CUDA device. From the repository root, after
# `make setup` and a CUDA build of torch in .venv (make setup installs the pinned torch==2.13.0; where its wheel is the
# CPU build, `.venv/bin/pip install --force-reinstall torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128`):
#
#   bash benchmarks/gpu_smoke.sh
#
# Runs, with the GPU visible, the tests that place work on pick_device(): the device-mixing checks, fine-tuning (bf16
# autocast; the same seed twice gives identical metrics, so CUBLAS_WORKSPACE_CONFIG holds), the Fisher pass and mask
# tuning, and the real pipeline on its tiny profile, whose test asserts that cells and latency were measured on the
# GPU in bf16 autocast. With two or more GPUs, fine-tuning under `accelerate launch` too (one process per GPU).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
export PATH="$(dirname "$PYTHON"):$PATH" HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
gpus=$("$PYTHON" - <<'PY'
import sys, torch
if not torch.cuda.is_available():
    sys.exit(f"error: torch {torch.__version__} sees no CUDA device (CUDA build: {torch.version.cuda}); "
             "see the head of benchmarks/gpu_smoke.sh")
print(torch.cuda.device_count())
print(f"{torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}, torch {torch.__version__}, "
      f"CUDA {torch.version.cuda}", file=sys.stderr)
PY
)
selection=()
[ "$gpus" -ge 2 ] || selection=(-k "not processes")  # the multi-process tests need a GPU per process
"$PYTHON" -m pytest -q --durations=10 "${selection[@]}" tests/test_devices.py tests/test_training.py \
  tests/test_post_prune.py tests/test_pipeline.py
