"""GPU figures of the pipeline's torch parts, measured in one run (issue: performance).

1. One epoch of ResNet18 on CIFAR-shaped synthetic data (N x 3 x 32 x 32, 10 classes) with the
   project's training loop (:func:`mfoml.nets.training.train`, mixed precision on CUDA) against a
   plain torchvision loop (``torchvision.models.resnet18``, SGD, autocast + GradScaler) on the
   same tensors: seconds, images per second and the ratio project / plain (target <= 1.1).
   Both are timed after one warm-up epoch (cuDNN autotuning, allocator).
2. Activation dump throughput (:func:`mfoml.nets.activations.dump_activations` of the trained
   model, all probe layers capped at 4096 features): samples and MB written per second.
3. NCC on the GPU against a streaming read of the same dump: NCC accuracy of the widest stored
   layer computed from the memory-mapped float16 dump moved to the GPU in chunks, against the
   time of one chunked read of the dump (ratio; target <= 1.5), and the NumPy path's time.

``--smoke`` runs tiny sizes on whatever device there is (the CPU here), so that the script is
tested without a GPU; the figures then mean nothing. Prints one ``name: value`` line per figure.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def plain_epoch(x: torch.Tensor, y: torch.Tensor, batch: int, device: torch.device) -> float:
    """Seconds of one epoch of a plain torchvision ResNet18 loop (autocast on CUDA)."""
    from torchvision.models import resnet18

    model = resnet18(weights=None, num_classes=10).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    amp = device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    g = torch.Generator().manual_seed(0)

    def epoch() -> None:
        perm = torch.randperm(len(y), generator=g)
        for i in range(0, len(y), batch):
            idx = perm[i : i + batch]
            xb = x[idx].to(device, non_blocking=True)
            yb = y[idx].to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=torch.float16, enabled=amp):
                loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()

    model.train()
    epoch()  # warm-up
    _sync(device)
    t0 = time.perf_counter()
    epoch()
    _sync(device)
    return time.perf_counter() - t0


def project_epoch(
    x: np.ndarray, y: np.ndarray, batch: int, device: torch.device, out: Path
) -> tuple[float, torch.nn.Module]:
    """Seconds of the second epoch of the project's loop (the first is the warm-up)."""
    from mfoml.nets.models import build_model
    from mfoml.nets.trainconfig import TrainConfig
    from mfoml.nets.training import train

    model = build_model("resnet18", (3, 32, 32), 10, seed=0)
    cfg = TrainConfig(
        epochs=2,
        batch_size=batch,
        optimizer="sgd",
        lr=0.05,
        momentum=0.9,
        device=str(device),
        mixed_precision=True,
        checkpoint_epochs=[2],
    )
    metrics = train(model, x, y, cfg, out, evals={})
    col = "train_seconds" if "train_seconds" in metrics else "seconds"
    return float(metrics[col].iloc[-1]), model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, any device (a test)")
    ap.add_argument("--n", type=int, default=20000, help="training images")
    ap.add_argument("--batch", type=int, default=256)
    args = ap.parse_args()
    n, batch = (64, 32) if args.smoke else (args.n, args.batch)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type != "cuda" and not args.smoke:
        sys.exit("bench_gpu: no CUDA device (use --smoke for the CPU smoke test)")
    print(f"device: {torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}")
    rng = np.random.default_rng(0)
    x = rng.random((n, 3, 32, 32), dtype=np.float32)
    y = rng.integers(0, 10, n).astype(np.int64)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t_plain = plain_epoch(torch.from_numpy(x), torch.from_numpy(y), batch, device)
        t_proj, model = project_epoch(x, y, batch, device, tmp / "ckpt")
        print(f"resnet18 epoch, plain torchvision loop: {t_plain:.2f} s ({n / t_plain:.0f} img/s)")
        print(f"resnet18 epoch, project loop: {t_proj:.2f} s ({n / t_proj:.0f} img/s)")
        print(f"resnet18 epoch ratio project/plain: {t_proj / t_plain:.3f} (target <= 1.1)")

        from mfoml.nets.activations import dump_activations
        from mfoml.nets.dumps import open_activations

        n_dump = min(n, 10000)
        _sync(device)
        t0 = time.perf_counter()
        dump_activations(
            model,
            x[:n_dump],
            y[:n_dump],
            tmp / "dump",
            max_features=4096,
            batch_size=batch,
            device=str(device),
        )
        _sync(device)
        t_dump = time.perf_counter() - t0
        size_mb = sum(p.stat().st_size for p in (tmp / "dump").glob("*.npy")) / 2**20
        print(
            f"activation dump: {n_dump / t_dump:.0f} samples/s, {size_mb / t_dump:.1f} MB/s "
            f"({size_mb:.0f} MB, {t_dump:.2f} s)"
        )

        from mfoml.collapse.accumulators import ClassMeans
        from mfoml.collapse.measures import ncc_accuracy

        dump = open_activations(tmp / "dump")
        layer = max(dump.layers, key=lambda name: int(dump.entry(name)["dim"]))
        chunk = 2048
        t0 = time.perf_counter()
        for block in dump.iter_chunks(layer, chunk):  # one streaming read (float32 blocks)
            float(block[:1, :1].sum())
        t_read = time.perf_counter() - t0
        means = ClassMeans(10).update(dump.layer(layer), dump.labels).means_
        t0 = time.perf_counter()
        acc_np = ncc_accuracy(dump.layer(layer), dump.labels, means, chunk_size=chunk)
        t_np = time.perf_counter() - t0

        def gpu_chunks(cs: int):
            for block in dump.iter_chunks(layer, cs):
                yield torch.from_numpy(block).to(device, non_blocking=True)

        labels_t = torch.from_numpy(np.array(dump.labels)).to(device)
        _sync(device)
        t0 = time.perf_counter()
        acc_gpu = ncc_accuracy(gpu_chunks, labels_t, means, chunk_size=chunk)
        _sync(device)
        t_gpu = time.perf_counter() - t0
        dim = int(dump.entry(layer)["dim"])
        print(f"ncc layer {layer}: {n_dump} x {dim}, streaming read {t_read:.3f} s")
        print(f"ncc on {device.type}: {t_gpu:.3f} s, ratio to the read {t_gpu / t_read:.2f}")
        print(f"ncc numpy: {t_np:.3f} s, ratio to the read {t_np / t_read:.2f}")
        print(f"ncc accuracy numpy vs {device.type}: {acc_np:.6f} vs {acc_gpu:.6f}")


if __name__ == "__main__":
    main()
