"""Training threads (issue 27): per-epoch wall and CPU time at 1, 2 and 4 torch threads, on an
idle machine and beside one competing busy process, for the MLP, the conv nets and ResNet18.

Every case trains in a fresh subprocess (so that the OpenMP environment is read when torch
loads libgomp, as in a pipeline job or the warm-start server): the project's models
(:func:`mfoml.nets.architectures.build_model`), Adam, cross-entropy, batch 100, random data of
the data set's shape, ``--epochs`` epochs after one warm-up epoch; the fastest epoch counts
(best of k inside the process) and its CPU time (user + system of all threads) is reported.

Two OpenMP environments are compared, interleaved case by case in the same run (the machine
may be shared: ratios are only meaningful within one run; ``uptime`` is printed before and
after):

- ``default``: the environment as it was (libgomp's default wait policy: threads spin for a
  while at each barrier before sleeping);
- ``passive``: ``OMP_WAIT_POLICY=PASSIVE`` (threads sleep at once; the pipeline's setting, made
  in the Snakefile so that the jobs and the warm-start server inherit it).

``busy``: one competing process spinning on a core (started before the case, stopped after);
only the ``passive`` environment is measured busy (the pipeline's; ``default`` collapsed there).

Targets (issue 27): idle, 2 threads no slower than 1 (faster where the batch is large enough);
with one competing process, N threads at most 1.3x the per-epoch time of 1 thread.

The policy (``train.torch_threads: auto``, :mod:`mfoml.nets.threads`): a job that may use N
threads uses ``min(N, 1 + floor(forward MACs per batch / 8e9))``. The ``auto`` rows give, for
each requested N, the threads k the policy picks for the architecture (its forward MACs per
batch of 100 counted by :func:`mfoml.nets.threads.forward_macs`) and the wall of the k-thread
``passive`` run (run as well when k is not among the measured thread counts), as a ratio to
1 thread; the verdict checks them against the targets (idle: at most 1.05x of 1 thread, busy:
at most 1.3x).

The measured table (the full run on the shared 2-core machine, 2026-12-06) is in
docs/pipeline.md ("Training threads", under "Cost of the default run").

Usage::

    python benchmarks/bench_train.py            # every architecture (~7 min on 2 cores)
    python benchmarks/bench_train.py --quick    # the MLP, 1 and 2 threads, tiny (smoke test)

Run from the repository root; ``workflow/scripts`` is put on the path.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "workflow" / "scripts"


def _reference_conv1d() -> dict:
    """The builder keywords of the reference MNIST-1D network (Conv1D 5 x 80), read from
    ``config/experiments/reference-mnist1d.yaml`` so that the benchmark measures that net."""
    path = REPO / "config" / "experiments" / "reference-mnist1d.yaml"
    spec = yaml.safe_load(path.read_text())["models"]["conv1d-ref"]
    return {key: value for key, value in spec.items() if key != "arch"}


# name -> (arch, builder kwargs, input shape, training samples per epoch)
ARCHS: dict[str, tuple[str, dict, tuple[int, ...], int]] = {
    "mlp": ("mlp", {"depth": 4, "width": 100}, (1, 40), 4000),
    "conv1d": (
        "conv1d",
        _reference_conv1d(),
        (1, 40),
        3200,
    ),
    "conv": ("conv", {"depth": 3, "width": 32}, (1, 28, 28), 1000),
    "resnet18": ("resnet18", {"residual": True, "stem": "cifar"}, (3, 16, 16), 300),
}

_CHILD = r"""
import json, os, sys, time
import torch
from mfoml.nets.architectures import build_model
arch, kwargs, shape, n, threads, epochs, batch = json.loads(sys.argv[1])
torch.set_num_threads(threads)
torch.manual_seed(0)
model = build_model(arch, tuple(shape), 10, activation="relu", seed=0, **kwargs)
x = torch.randn(n, *shape)
y = torch.randint(0, 10, (n,))
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
loss_fn = torch.nn.CrossEntropyLoss()
model.train()
walls, cpus = [], []
for epoch in range(epochs + 1):
    t0, c0 = time.perf_counter(), time.process_time()
    for i in range(0, n, batch):
        opt.zero_grad(set_to_none=True)
        out = model(x[i:i + batch])
        loss_fn(out if torch.is_tensor(out) else out[0], y[i:i + batch]).backward()
        opt.step()
    if epoch:  # the first epoch warms up (allocations, oneDNN primitives)
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
k = min(range(len(walls)), key=walls.__getitem__)
print(json.dumps({"wall": walls[k], "cpu": cpus[k], "walls": walls}))
"""

ENVS = {"default": {}, "passive": {"OMP_WAIT_POLICY": "PASSIVE"}}
BATCH = 100
#: the auto rows' targets: wall of the policy's k threads / wall of 1 thread
TARGETS = {False: 1.05, True: 1.3}


def _spinner() -> subprocess.Popen:
    """A competing process that keeps one core busy until killed."""
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def run_case(name: str, threads: int, env_name: str, epochs: int, scale: float) -> dict:
    """Train ``name`` with ``threads`` torch threads in a fresh process under ENVS[env_name]."""
    arch, kwargs, shape, n = ARCHS[name]
    n = max(100, int(n * scale) // 100 * 100)
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    env.update(ENVS[env_name])
    env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SCRIPTS), env.get("PYTHONPATH")) if p)
    arg = json.dumps([arch, kwargs, list(shape), n, threads, epochs, BATCH])
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, arg], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def auto_threads(name: str, requested: list[int]) -> tuple[float, dict[int, int]]:
    """Forward MACs of a batch of ``name`` and the threads the auto policy picks for each
    requested count (:mod:`mfoml.nets.threads`, the function the training jobs call)."""
    if str(SCRIPTS) not in sys.path:
        sys.path.insert(0, str(SCRIPTS))
    import torch
    from mfoml.nets.architectures import build_model
    from mfoml.nets.threads import forward_macs, training_threads

    torch.set_num_threads(1)
    arch, kwargs, shape, _ = ARCHS[name]
    model = build_model(arch, shape, 10, activation="relu", seed=0, **kwargs)
    macs = float(forward_macs(model, torch.zeros(1, *shape)) * BATCH)
    return macs, {n: training_threads(n, macs)[0] for n in requested}


def verdict(rows: list[dict], name: str, busy: bool) -> str:
    """``ok``/``MISSED`` of the auto rows of ``name`` against the target, with the worst ratio."""
    ratios = [
        r["x1"] for r in rows if r["arch"] == name and r["busy"] == busy and r["env"] == "auto"
    ]
    if not ratios:
        return "not measured"
    worst = max(ratios)
    return (
        f"{'ok' if worst <= TARGETS[busy] else 'MISSED'} (worst {worst:.2f}x <= {TARGETS[busy]}x)"
    )


def _uptime() -> str:
    return "load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="MLP only, tiny, idle only")
    ap.add_argument("--archs", nargs="*", default=None, choices=sorted(ARCHS))
    ap.add_argument("--threads", nargs="*", type=int, default=None)
    ap.add_argument("--epochs", type=int, default=None, help="timed epochs per case (best counts)")
    ap.add_argument("--json", default=None, help="also write the rows as JSON here")
    args = ap.parse_args(argv)
    archs = args.archs or (["mlp"] if args.quick else list(ARCHS))
    threads = args.threads or ([1, 2] if args.quick else [1, 2, 4])
    epochs = args.epochs or (1 if args.quick else 3)
    scale = 0.1 if args.quick else 1.0
    print(f"bench_train: {os.cpu_count()} CPUs; {_uptime()} at start", flush=True)
    policy = {name: auto_threads(name, threads) for name in archs}
    rows = []
    for name in archs:
        # the policy's picks that are not measured anyway (and 1 thread: the ratios' base)
        extra = sorted(({1, *policy[name][1].values()}) - set(threads))
        for busy in (False,) if args.quick else (False, True):
            spinner = _spinner() if busy else None
            try:
                time.sleep(0.2 if busy else 0)
                for n_threads in [*threads, *extra]:
                    # interleaved: default and passive side by side (busy: passive only)
                    envs = ["passive"] if busy or n_threads in extra else list(ENVS)
                    for env_name in envs:
                        r = run_case(name, n_threads, env_name, epochs, scale)
                        print(
                            f"  {name} {'busy' if busy else 'idle'} {n_threads} thr "
                            f"{env_name}: {r['wall']:.3f} s wall, {r['cpu']:.3f} s CPU",
                            flush=True,
                        )
                        rows.append(
                            {
                                "arch": name,
                                "busy": busy,
                                "threads": n_threads,
                                "env": env_name,
                                "wall": r["wall"],
                                "cpu": r["cpu"],
                                "load": os.getloadavg()[0],
                            }
                        )
            finally:
                if spinner is not None:
                    spinner.kill()
                    spinner.wait()
        rows += _auto_rows(rows, name, policy[name])
    _print_tables(rows, archs, threads, policy)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return rows


def _auto_rows(rows: list[dict], name: str, policy: tuple[float, dict[int, int]]) -> list[dict]:
    """The auto rows of ``name``: per busy state and requested N, the policy's k threads and
    the wall of the k-thread passive run, as a ratio (``x1``) to the 1-thread passive run."""
    macs, picks = policy
    out = []
    for busy in sorted({r["busy"] for r in rows if r["arch"] == name}):
        walls = {
            r["threads"]: r["wall"]
            for r in rows
            if r["arch"] == name and r["busy"] == busy and r["env"] == "passive"
        }
        for requested, used in picks.items():
            out.append(
                {
                    "arch": name,
                    "busy": busy,
                    "env": "auto",
                    "requested": requested,
                    "threads": used,
                    "gmac_per_batch": macs / 1e9,
                    "wall": walls[used],
                    "x1": walls[used] / walls[1],
                }
            )
    return out


def _print_tables(
    rows: list[dict], archs: list[str], threads: list[int], policy: dict[str, tuple]
) -> None:
    """The raw table (every env measured), the auto rows and the verdict per architecture."""
    print(
        f"{'arch':9s} {'load':5s} {'env':8s} "
        + " ".join(f"{f'{t} thr wall/cpu':>16s} {'x1':>5s}" for t in threads)
    )
    states = sorted({r["busy"] for r in rows})
    for name in archs:
        for busy in states:
            for env_name in ENVS:
                sel = {
                    r["threads"]: r
                    for r in rows
                    if r["arch"] == name and r["busy"] == busy and r["env"] == env_name
                }
                if not sel:
                    continue
                base = sel[threads[0]]["wall"]
                cells = " ".join(
                    f"{sel[t]['wall']:7.3f}/{sel[t]['cpu']:7.3f}s {sel[t]['wall'] / base:5.2f}"
                    for t in threads
                )
                print(f"{name:9s} {'busy' if busy else 'idle':5s} {env_name:8s} {cells}")
    print(f"bench_train: {_uptime()} at end (x1: wall / wall at {threads[0]} thread)")
    print(
        f"auto (train.torch_threads auto; passive; N->k: requested N, used k; x1: wall / wall "
        f"at 1 thread)\n{'arch':9s} {'load':5s} {'GMAC/batch':>10s} "
        + " ".join(f"{'N->k':>5s} {'wall':>7s} {'x1':>5s}" for _ in threads)
    )
    for name in archs:
        for busy in states:
            auto = [
                r for r in rows if r["arch"] == name and r["busy"] == busy and r["env"] == "auto"
            ]
            cells = " ".join(
                f"{'{}->{}'.format(r['requested'], r['threads']):>5s} {r['wall']:6.3f}s {r['x1']:5.2f}"
                for r in auto
            )
            gmac = policy[name][0] / 1e9
            print(f"{name:9s} {'busy' if busy else 'idle':5s} {gmac:10.3f} {cells}")
    print(f"verdict   {'idle (<= 1.05x of 1 thread)':30s} busy (<= 1.3x of 1 thread)")
    for name in archs:
        print(f"{name:9s} {verdict(rows, name, False):30s} {verdict(rows, name, True)}")


if __name__ == "__main__":
    main()
