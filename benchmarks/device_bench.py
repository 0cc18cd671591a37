"""GPU figures of the device check (issue 14), run by ``benchmarks/device_check.sh``.

Prints, on CIFAR-shaped synthetic data (3 x 32 x 32 float32, 10 classes, ``--n`` images):

1. ``train``: one epoch of the project's ResNet18 (``mfoml.nets.models.build_model``, CIFAR
   stem) with the project's training loop (``mfoml.nets.training.train``: mixed precision on
   CUDA, data resident on the device, deterministic algorithms) against a plain PyTorch /
   torchvision-style loop on the same model and data (``DataLoader`` from pinned host memory,
   ``torch.autocast`` + ``GradScaler``, library defaults); epoch seconds, images per second and
   the ratio project / plain (target <= 1.1). Each loop is warmed up, then timed twice (the
   faster epoch counts).
2. ``dump``: activation dump throughput (``mfoml.nets.activations.dump_activations`` of the
   trained model on up to 10,000 images, layers reduced to at most 4,096 features as in the
   label-noise study: images per second and MB per second written).
3. ``ncc``: NCC predictions of the widest dumped layer on the GPU (the layer read once and moved
   to the device) against the streaming read of the same memory-mapped dump on the CPU; both
   must agree exactly.

``--smoke`` runs every step with 16 images of 8 x 8 pixels on whatever device there is (the CPU
fallback; used by the tests). Run from the repository root with ``PYTHONPATH=workflow/scripts``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow" / "scripts"))


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def synthetic_cifar(n: int, side: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` images (3, side, side) float32 whose class shifts the channel means (learnable)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 10, n).astype(np.int64)
    x = rng.normal(size=(n, 3, side, side)).astype(np.float32)
    x += (np.arange(10)[y, None, None, None] / 10.0 - 0.5).astype(np.float32)
    return x, y


def plain_epoch(model, x: np.ndarray, y: np.ndarray, batch_size: int, device) -> float:
    """One epoch of a textbook mixed-precision loop; returns its wall seconds."""
    import torch
    import torch.nn.functional as F
    from torch.utils.data import DataLoader, TensorDataset

    amp = device.type == "cuda"
    loader = DataLoader(
        TensorDataset(torch.from_numpy(x), torch.from_numpy(y)),
        batch_size=batch_size,
        shuffle=True,
        pin_memory=amp,
        drop_last=False,
    )
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    model.to(device).train()
    _sync(device)
    t0 = time.perf_counter()
    for xb, yb in loader:
        xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
        with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=amp):
            loss = F.cross_entropy(model(xb).float(), yb)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
    _sync(device)
    return time.perf_counter() - t0


def project_epoch(model, x: np.ndarray, y: np.ndarray, batch_size: int, device, tmp: Path) -> float:
    """One epoch of ``mfoml.nets.training.train``; returns its wall seconds (incl. the checkpoint)."""
    from mfoml.nets.training import TrainConfig, train

    cfg = TrainConfig(
        epochs=1,
        batch_size=batch_size,
        optimizer="sgd",
        lr=0.05,
        momentum=0.9,
        device=str(device),
        mixed_precision=True,
        checkpoint_epochs=[1],
    )
    _sync(device)
    t0 = time.perf_counter()
    train(model, x, y, cfg, tmp)
    _sync(device)
    return time.perf_counter() - t0


def bench_train(n: int, batch_size: int, device, tmp: Path, side: int = 32, repeats: int = 2):
    from mfoml.nets.models import build_model

    x, y = synthetic_cifar(n, side)
    model = build_model("resnet18", (3, side, side), 10, seed=0)
    warm = min(n, 4 * batch_size)
    plain_epoch(model, x[:warm], y[:warm], batch_size, device)  # cuDNN/allocator warm-up
    project_epoch(model, x[:warm], y[:warm], batch_size, device, tmp / "warm")
    plain = min(plain_epoch(model, x, y, batch_size, device) for _ in range(repeats))
    proj = min(project_epoch(model, x, y, batch_size, device, tmp / "run") for _ in range(repeats))
    print(
        f"train   ResNet18 {n} images 3x{side}x{side}, batch {batch_size}, {device}: project loop "
        f"{proj:.2f}s/epoch ({n / proj:.0f} img/s), plain loop {plain:.2f}s/epoch "
        f"({n / plain:.0f} img/s), ratio project/plain {proj / plain:.2f} (target <= 1.1)",
        flush=True,
    )
    return model, x, y


def bench_dump_ncc(model, x: np.ndarray, y: np.ndarray, device, tmp: Path) -> bool:
    """Dump throughput, then NCC of the widest dumped layer on the GPU vs a streaming read."""
    import torch
    from mfoml.collapse.accumulators import ClassMeans
    from mfoml.collapse.measures import ncc_predict
    from mfoml.nets.activations import dump_activations
    from mfoml.nets.dumps import open_activations

    out = tmp / "dump"
    _sync(device)
    t0 = time.perf_counter()
    x, y = x[:10000], y[:10000]
    manifest = dump_activations(model, x, y, out, device=device, batch_size=512, max_features=4096)
    _sync(device)
    dt = time.perf_counter() - t0
    nbytes = sum(p.stat().st_size for p in out.rglob("*.npy"))
    print(
        f"dump    {len(manifest['layers'])} layers, {nbytes / 2**20:.0f} MB: {dt:.2f}s "
        f"({len(y) / dt:.0f} img/s, {nbytes / 2**20 / dt:.0f} MB/s)",
        flush=True,
    )
    dump = open_activations(out)
    name = max(dump.layers, key=lambda la: int(dump.entry(la)["dim"]))
    feats = dump.layer(name)
    means = ClassMeans(10).update_from(feats, np.asarray(dump.labels)).means_
    t0 = time.perf_counter()
    cpu_pred = ncc_predict(feats, means)  # streaming read of the memory map
    t_cpu = time.perf_counter() - t0
    if device.type != "cuda":
        print(
            f"ncc     layer {name} {feats.shape}: streaming CPU {t_cpu:.3f}s (no GPU)", flush=True
        )
        return True
    t0 = time.perf_counter()
    feats_dev = torch.from_numpy(np.asarray(feats)).to(device)
    gpu_pred = ncc_predict(feats_dev, torch.from_numpy(means).to(device))
    _sync(device)
    t_gpu = time.perf_counter() - t0
    same = bool(np.array_equal(gpu_pred.cpu().numpy(), np.asarray(cpu_pred)))
    print(
        f"ncc     layer {name} {feats.shape}: GPU {t_gpu:.3f}s (incl. host->device copy) vs "
        f"streaming CPU read {t_cpu:.3f}s: {t_cpu / t_gpu:.1f}x, identical predictions: {same}",
        flush=True,
    )
    return same


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--n", type=int, default=20000, help="images per epoch (default 20000)")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, any device (CPU fallback)")
    args = ap.parse_args(argv)
    import torch

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type != "cuda":
        torch.set_num_threads(1)  # the CPU fallback is a smoke test: no OpenMP oversubscription
    n, bs, side = (16, 8, 8) if args.smoke else (args.n, args.batch_size, 32)
    if device.type != "cuda" and not args.smoke:
        print("no CUDA device: CPU fallback with --smoke sizes", flush=True)
        n, bs, side = 16, 8, 8
    with tempfile.TemporaryDirectory(prefix="device_bench_") as tmp:
        model, x, y = bench_train(n, bs, device, Path(tmp), side, 1 if side < 32 else 2)
        ok = bench_dump_ncc(model, x, y, device, Path(tmp))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
