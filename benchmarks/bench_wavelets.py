"""Benchmark of the wavelet-forest core (issue 3 performance targets).

For each layer size and probe configuration, a fresh subprocess (so that its peak RSS is the
probe's own) writes a random float16 "activation" matrix to a memory-mappable ``.npy`` file,
then runs the sparsity probe's pieces on the memmap and prints:

1. ``overhead``: (decomposition + norms + tau sweep) / (forest fit), target < 5%;
   the min-max scaling of the inputs (chunked float16 -> float32) is reported separately.
2. ``curve speedup``: ``mterm_curve`` for 100 values of M vs 100 calls of
   ``predict(X, n_terms=M)`` (plus the error computation) on held-out data, target >= 10x.
3. ``memory``: peak RSS growth of the probe (from after the imports and a tiny warm-up fit)
   vs the forest's own
   size (node arrays + values) plus the float32 input the forest is fitted on, target <= 2x.

Usage::

    python benchmarks/bench_wavelets.py            # 4000x1520 and 20000x2500 (heavy)
    python benchmarks/bench_wavelets.py --quick    # small sizes, seconds

Sizes and configurations can be overridden (``--sizes 4000x1520 --configs 1x15 5x20``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow" / "scripts"))

N_CLASSES = 10


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def make_layer(directory: Path, n: int, d: int, seed: int) -> None:
    """Write a random float16 layer (n, d) and labels that depend on 32 of its features."""
    rng = np.random.default_rng(seed)
    mm = np.lib.format.open_memmap(
        directory / "layer.npy", mode="w+", dtype=np.float16, shape=(n, d)
    )
    w = rng.normal(size=(min(d, 32), N_CLASSES))
    labels = np.empty(n, dtype=np.int64)
    for s in range(0, n, 2048):
        block = rng.normal(size=(min(2048, n - s), d)).astype(np.float32)
        mm[s : s + block.shape[0]] = block
        noisy = block[:, : w.shape[0]] @ w + 0.5 * rng.normal(size=(block.shape[0], N_CLASSES))
        labels[s : s + block.shape[0]] = noisy.argmax(axis=1)
    mm.flush()
    del mm
    np.save(directory / "labels.npy", labels)


def worker(
    directory: Path, n: int, n_trees: int, depth: int, seed: int, backend: str = "sklearn"
) -> dict:
    """Run in a subprocess: one size and configuration; returns the measurements.

    The first ``n`` rows train the probe, the rest are held out for the M-term curve.
    """
    from mfoml.wavelets.forest import WaveletForestClassifier
    from mfoml.wavelets.smoothness import alpha_star

    # Warm-up on a tiny problem so that lazily imported modules and first-call allocations
    # (sklearn, scipy.sparse, joblib) are not counted as the probe's memory.
    warm_rng = np.random.default_rng(0)
    warm = WaveletForestClassifier(2, max_depth=3, random_state=0, backend=backend)
    warm.fit(warm_rng.normal(size=(64, 4)), np.arange(64) % 3)
    warm.mterm_curve(warm_rng.normal(size=(8, 4)), np.arange(8) % 3, [0, 1])
    alpha_star(warm.wavelet_norms_, 2)
    del warm
    rss_start = _rss_mb()
    X_all = np.load(directory / "layer.npy", mmap_mode="r")
    labels = np.load(directory / "labels.npy")
    d = X_all.shape[1]
    X, Xt = X_all[:n], X_all[n:]
    y, yt = labels[:n], labels[n:]

    t0 = time.perf_counter()
    model = WaveletForestClassifier(
        n_trees, max_depth=depth, max_features=None, random_state=seed, backend=backend
    )
    model.fit(X, y)
    total_fit = time.perf_counter() - t0
    t1 = time.perf_counter()
    res = alpha_star(model.wavelet_norms_, n_trees)
    t_alpha = time.perf_counter() - t1
    rss_peak = _rss_mb()

    forest_bytes = 0
    for est in model.forest_.estimators_:
        if backend == "sklearn":
            state = est.tree_.__getstate__()
            forest_bytes += state["nodes"].nbytes + state["values"].nbytes
        else:  # the fast builder's FastTree: plain node arrays
            forest_bytes += sum(a.nbytes for a in vars(est.tree_).values() if hasattr(a, "nbytes"))
    input_bytes = n * d * 4

    Ms = np.unique(np.linspace(0, model.n_wavelets_, 100).astype(np.int64))
    t2 = time.perf_counter()
    curve = model.mterm_curve(Xt, yt, Ms)
    t_curve = time.perf_counter() - t2
    t3 = time.perf_counter()
    loop_err = []
    for M in Ms:
        loop_err.append(float(np.mean(model.predict(Xt, n_terms=int(M)) != yt)))
    t_loop = time.perf_counter() - t3
    if not np.allclose(curve["error"], loop_err):
        raise AssertionError("mterm_curve disagrees with predict")

    scale_s = total_fit - model.fit_seconds_ - model.decompose_seconds_
    return {
        "n": n,
        "d": d,
        "n_trees": n_trees,
        "depth": depth,
        "n_wavelets": int(model.n_wavelets_),
        "alpha": res.alpha,
        "status": res.status,
        "fit_s": model.fit_seconds_,
        "scale_s": scale_s,
        "decompose_s": model.decompose_seconds_,
        "alpha_s": t_alpha,
        "overhead": (model.decompose_seconds_ + t_alpha) / model.fit_seconds_,
        "n_M": int(Ms.size),
        "curve_s": t_curve,
        "loop_s": t_loop,
        "curve_speedup": t_loop / t_curve,
        "rss_start_mb": rss_start,
        "rss_peak_mb": rss_peak,
        "probe_mb": rss_peak - rss_start,
        "forest_mb": forest_bytes / 2**20,
        "input_f32_mb": input_bytes / 2**20,
        "memory_ratio": (rss_peak - rss_start) / ((forest_bytes + input_bytes) / 2**20),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes (seconds)")
    ap.add_argument("--sizes", nargs="*", help="NxD sizes, e.g. 4000x1520")
    ap.add_argument("--configs", nargs="*", help="TREESxDEPTH configs, e.g. 1x15 5x20")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, help="also write the rows to this JSON file")
    ap.add_argument(
        "--backend",
        choices=["sklearn", "fast"],
        default="sklearn",
        help="forest builder (default sklearn: the figures in docs/methods.md; the fast "
        "builder's fit and memory are benchmarked by bench_probe.py)",
    )
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.worker:
        directory, n, t, depth, seed, backend = args.worker.split(",")
        row = worker(Path(directory), int(n), int(t), int(depth), int(seed), backend)
        print(json.dumps(row))
        return 0

    if args.sizes:
        sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes]
    else:
        sizes = [(1000, 200), (3000, 300)] if args.quick else [(4000, 1520), (20000, 2500)]
    if args.configs:
        configs = [tuple(int(v) for v in c.split("x")) for c in args.configs]
    else:
        configs = [(1, 15), (5, 20)]

    rows = []
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    for n, d in sizes:
        n_test = max(500, n // 4)
        with tempfile.TemporaryDirectory(prefix="bench_wavelets_") as tmp:
            print(
                f"[bench] writing a {n + n_test}x{d} float16 layer ...", file=sys.stderr, flush=True
            )
            make_layer(Path(tmp), n + n_test, d, args.seed)
            for t, depth in configs:
                print(
                    f"[bench] {n}x{d}, {t} tree(s) depth {depth} ...", file=sys.stderr, flush=True
                )
                out = subprocess.run(
                    [
                        sys.executable,
                        __file__,
                        "--worker",
                        f"{tmp},{n},{t},{depth},{args.seed},{args.backend}",
                    ],
                    check=True,
                    capture_output=True,
                    text=True,
                    env=env,
                )
                row = json.loads(out.stdout.strip().splitlines()[-1])
                rows.append(row)
                print(
                    f"{n:>6}x{d:<5} J={t} depth={depth:<3} K={row['n_wavelets']:<7} "
                    f"fit {row['fit_s']:8.2f}s  scale {row['scale_s']:6.2f}s  "
                    f"decomp {row['decompose_s']:.4f}s  tau-sweep {row['alpha_s']:.4f}s  "
                    f"overhead {100 * row['overhead']:.2f}% (<5%)  |  "
                    f"curve {row['curve_s']:.3f}s vs {row['n_M']} predicts {row['loop_s']:.2f}s: "
                    f"{row['curve_speedup']:.1f}x (>=10x)  |  probe peak +{row['probe_mb']:.0f} MB "
                    f"vs forest {row['forest_mb']:.1f} MB + input {row['input_f32_mb']:.0f} MB: "
                    f"{row['memory_ratio']:.2f}x (<=2x)  | alpha {row['alpha']:.3f}",
                    flush=True,
                )
    ok = all(
        r["overhead"] < 0.05 and r["curve_speedup"] >= 10 and r["memory_ratio"] <= 2 for r in rows
    )
    print("ALL TARGETS MET" if ok else "SOME TARGETS MISSED", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
