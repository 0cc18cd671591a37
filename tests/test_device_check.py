"""benchmarks/device_check.sh (the prepared GPU check): syntax, the step list, and its CPU
fallback run end to end with tiny sizes (``--smoke``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "device_check.sh"


def _run(*args: str, timeout: float) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHON=sys.executable, PYTHONPATH=str(REPO / "workflow" / "scripts"))
    return subprocess.run(
        ["bash", str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=REPO,
    )


def test_syntax_and_dry_run():
    assert subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True).returncode == 0
    res = _run("--dry", timeout=30)
    assert res.returncode == 0, res.stderr
    steps = ("environment", "CUDA tests", "ResNet18 epoch, dump, NCC", "probe benchmark")
    steps += ("probe benchmark, ReLU layer",)
    for step in (*steps, "training threads"):
        assert f"=== {step} " in res.stdout
    assert "bench_train.py --epochs 2" in res.stdout
    assert "pytest -q -rs -p no:cacheprovider -k cuda tests/test_ncc.py" in res.stdout
    assert "bench_probe.py --quick" in res.stdout
    assert "bench_probe.py --sparse only --quick" in res.stdout
    assert _run("--bogus", timeout=30).returncode == 2


@pytest.mark.slow
def test_cpu_smoke_run():
    """Every step of the check on the CPU with tiny sizes (the path taken without a GPU)."""
    res = _run("--smoke", timeout=300)
    out = res.stdout
    assert res.returncode == 0, out[-4000:] + res.stderr[-2000:]
    assert "failed steps: 0" in out
    assert "torch: " in out and "numba: " in out
    assert "train   ResNet18 16 images 3x8x8" in out and "ratio project/plain" in out
    assert "dump    8 layers" in out and "ncc     layer" in out
    table = out[out.index("probe benchmark (smoke)") :]
    assert "400x30" in table and "True" in table  # trees identical to scikit-learn's
    # one process: the memory ratio is printed but not gated (it would include numba's import)
    assert "memory: measured in one process (--smoke)" in table
    relu = out[out.index("probe benchmark, ReLU layer (smoke)") :]
    assert "relu:block3" in relu and "True" in relu  # a trained conv net's ReLU layer
    threads = out[out.index("training threads (smoke)") :]
    assert "mlp       idle  default" in threads and "mlp       idle  passive" in threads
