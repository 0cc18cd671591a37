#!/usr/bin/env bash
# The GPU check: one script for a single-GPU machine with PyTorch, scikit-learn and numba
# preinstalled and no network. It installs nothing; a missing package is reported, and a step
# that fails is reported and the next one runs. Each step has a time limit (150 + 180 + 60 + 90 s:
# at most 8 minutes).
#
#   bash benchmarks/device_check.sh            # from the repository root
#
# Prints, each step headed by '== ':
#   1. the environment (GPU, torch, CUDA, packages the project needs);
#   2. the CUDA tests (pytest -m "not slow" over the files that have CUDA paths; the CUDA NCC
#      test among them runs only where a GPU is visible);
#   3. benchmarks/bench_gpu.py: one ResNet18 epoch on CIFAR-shaped synthetic data, project loop
#      (mixed precision) vs a plain torchvision loop (ratio, images/s), activation-dump
#      throughput, GPU NCC vs a streaming read of the same dump;
#   4. benchmarks/bench_ncc.py --quick and benchmarks/bench_probe.py --quick (CPU-side figures of
#      the same machine, for comparison with the 2-core development machine).
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/workflow/scripts${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
status=0
step() { echo; echo "== $*"; }
run() {  # run a step with a time limit; a failure is reported, the script goes on
  local limit=$1; shift
  timeout "$limit" "$@"; local rc=$?
  [ $rc -eq 0 ] || { echo "!! step failed (exit $rc): $*"; status=1; }
}

step "environment"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null \
  || echo "nvidia-smi: not available"
$PY - <<'PYEOF'
import importlib
import torch
print(f"torch {torch.__version__}, cuda {torch.version.cuda}, available {torch.cuda.is_available()}")
for name in ["torchvision", "numpy", "scipy", "pandas", "sklearn", "numba", "threadpoolctl",
             "pytest", "yaml", "jsonschema", "matplotlib", "seaborn"]:
    try:
        mod = importlib.import_module(name)
        print(f"{name} {getattr(mod, '__version__', '?')}")
    except ImportError:
        print(f"{name}: MISSING (steps that need it are reported as failed)")
PYEOF

step "CUDA tests"
run 150 $PY -m pytest -q -m "not slow" -p no:cacheprovider \
  tests/test_ncc.py tests/test_training.py tests/test_activations.py tests/test_losses.py

step "GPU benchmark (training loop, dumps, NCC)"
run 180 $PY benchmarks/bench_gpu.py

step "NCC benchmark (CPU side)"
run 60 $PY benchmarks/bench_ncc.py --quick

step "probe benchmark"
if [ -f benchmarks/bench_probe.py ]; then
  run 90 $PY benchmarks/bench_probe.py --quick
else
  echo "benchmarks/bench_probe.py: not in this checkout"
fi

echo
[ $status -eq 0 ] && echo "device check: all steps ran" || echo "device check: some steps failed (see '!!' lines)"
exit $status
