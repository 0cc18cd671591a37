#!/usr/bin/env bash
# The GPU check (issue 14): one script for a single-GPU machine with PyTorch, scikit-learn and
# numba preinstalled and no network. It installs and downloads nothing; a missing package or
# a failing step is reported and the next step runs. Budget: under 8 minutes in all.
#
# Usage (from the repository root):
#   PYTHONPATH=workflow/scripts bash benchmarks/device_check.sh           # the full check
#   PYTHONPATH=workflow/scripts bash benchmarks/device_check.sh --smoke   # CPU fallback, seconds
#   bash benchmarks/device_check.sh --dry                                 # print the steps only
#
# Prints:
#   1. the environment (python, torch + CUDA device, torchvision, scikit-learn, numba);
#   2. the CUDA tests (pytest of the tests that need a CUDA device, incl. the CUDA NCC test);
#   3. one epoch of ResNet18 on CIFAR-shaped synthetic data: the project's training loop (mixed
#      precision) vs a plain PyTorch/torchvision loop on the same data, images/second, the
#      ratio (target <= 1.1); activation dump throughput; GPU NCC vs a streaming read of the
#      same dump (benchmarks/device_bench.py);
#   4. the probe benchmark (benchmarks/bench_probe.py --quick: fast forest vs scikit-learn), and
#      on a ReLU layer of a conv net trained and dumped as the pipeline does (--sparse only);
#   5. training threads (benchmarks/bench_train.py: per-epoch wall and CPU time at 1, 2 and 4
#      torch threads, idle and beside one busy process, OMP_WAIT_POLICY default vs PASSIVE;
#      the threads train.torch_threads auto picks per architecture and its verdict).
# Exit status: the number of steps that failed (0 = all passed).

set -u
MODE=full
for arg in "$@"; do
  case "$arg" in
    --smoke) MODE=smoke ;;
    --dry) MODE=dry ;;
    -h | --help)
      sed -n '2,24p' "$0"
      exit 0
      ;;
    *)
      echo "unknown argument: $arg (use --smoke, --dry or nothing)" >&2
      exit 2
      ;;
  esac
done

cd "$(dirname "$0")/.." || exit 2
export PYTHONPATH="workflow/scripts${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONDONTWRITEBYTECODE=1
PY="${PYTHON:-python}"
FAILED=0
START=$(date +%s)

# run NAME TIMEOUT_S CMD...: print a header, run with a time limit, report the outcome
run() {
  local name="$1" limit="$2"
  shift 2
  echo
  echo "=== $name ($(($(date +%s) - START))s elapsed; limit ${limit}s) ==="
  if [ "$MODE" = dry ]; then
    echo "[dry] $*"
    return 0
  fi
  timeout --kill-after=10 "$limit" "$@"
  local rc=$?
  if [ $rc -eq 0 ]; then
    echo "--- $name: ok"
  elif [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
    echo "--- $name: TIMED OUT after ${limit}s"
    FAILED=$((FAILED + 1))
  else
    echo "--- $name: FAILED (exit $rc)"
    FAILED=$((FAILED + 1))
  fi
  return 0
}

echo "device check ($MODE) in $(pwd) at $(date -u +%Y-%m-%dT%H:%M:%SZ)"

run "environment" 40 "$PY" - "$MODE" <<'EOF'
import importlib.metadata as md
import importlib.util
import platform
import sys

smoke = sys.argv[1] == "smoke"

print(f"python {platform.python_version()} on {platform.platform()}")
for pkg in ("torch", "torchvision", "scikit-learn", "numba", "numpy", "pytest"):
    mod = {"scikit-learn": "sklearn"}.get(pkg, pkg)
    if importlib.util.find_spec(mod) is None:
        print(f"{pkg}: MISSING (not installed; this check installs nothing, steps needing it fail)")
    else:
        print(f"{pkg}: {md.version(pkg)}")
if smoke:
    print("CUDA: not queried (--smoke: no torch import here)")
elif importlib.util.find_spec("torch") is not None:
    import torch

    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        print(f"CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}: "
              f"{torch.cuda.device_count()} device(s), 0 = {p.name}, {p.total_memory / 2**30:.0f} GiB")
    else:
        print("CUDA: no device visible to torch (the GPU steps fall back to the CPU)")
sys.exit(0)
EOF

if [ "$MODE" = smoke ]; then
  echo
  echo "=== CUDA tests: skipped (--smoke) ==="
else
  # every test that needs CUDA carries 'cuda' in its name (they skip without a device)
  run "CUDA tests" 90 "$PY" -m pytest -q -rs -p no:cacheprovider -k cuda tests/test_ncc.py
fi

if [ "$MODE" = smoke ]; then
  run "ResNet18 epoch, dump, NCC (smoke)" 120 "$PY" benchmarks/device_bench.py --smoke
  run "probe benchmark (smoke)" 120 "$PY" benchmarks/bench_probe.py --smoke
  run "probe benchmark, ReLU layer (smoke)" 120 "$PY" benchmarks/bench_probe.py --sparse only \
    --smoke --sparse-layers block3
  run "training threads (smoke)" 120 "$PY" benchmarks/bench_train.py --quick --threads 1
else
  run "ResNet18 epoch, dump, NCC" 180 "$PY" benchmarks/device_bench.py
  run "probe benchmark" 150 "$PY" benchmarks/bench_probe.py --quick
  run "probe benchmark, ReLU layer" 150 "$PY" benchmarks/bench_probe.py --sparse only --quick
  run "training threads" 240 "$PY" benchmarks/bench_train.py --epochs 2
fi

echo
echo "device check done in $(($(date +%s) - START))s; failed steps: $FAILED"
exit "$FAILED"
