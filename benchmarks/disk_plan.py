"""Expected disk of a configuration's activation dumps, printed before anything runs (issue 27).

For every supervised or self-supervised run of the run table (:func:`mfoml.config.run_table`):
the samples dumped per split (the run's training folds, its held-out fold, the test split;
capped by ``activations.max_samples``), the stored width of every probe layer (the model is
built and one sample is passed through it, so each layer's shape and its pooling under
``activations.max_features`` are those of :func:`mfoml.nets.activations.dump_activations`),
times the checkpoints. Bytes per sample: 2 (float16) per stored feature, 8 per label array
(``labels``, ``predictions``, ``labels_true`` on the training split) plus the classifier weight
(float32) per dump; manifests are ignored (kilobytes).

Printed: per run, its dump size; the total (the disk the dumps take with ``activations.keep:
true``); and the peak with ``keep: false``, when Snakemake deletes a run's dumps once their
consumers ran: at most the ``--jobs`` largest runs' dumps at once (default: the cores of this
machine divided by ``resources.activations.threads``; a run's dumps live from its
``activations`` job to its last consumer).

Data-set sizes and input shapes come from ``resources/data/<id>/meta.json`` when the data set
was prepared, else from the built-in table below (the official splits); a variant's
``per_class_cap`` caps the training split. Unknown sets are listed and left out.

Usage::

    python benchmarks/disk_plan.py --configfile config/experiments/resnet-residual.yaml
    python benchmarks/disk_plan.py --configfile config/tests/tiny.yaml --json plan.json

Run from the repository root; ``workflow/scripts`` is put on the path.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow" / "scripts"))

from mfoml.config import dataset_options, load_config, run_table  # noqa: E402

# id -> (n_train, n_test, input_shape, n_classes) of the official splits (when not prepared)
KNOWN: dict[str, tuple[int, int, tuple[int, ...], int]] = {
    "mnist1d": (4000, 1000, (1, 40), 10),
    "digits": (1797, 0, (1, 8, 8), 10),
    "mnist": (60000, 10000, (1, 28, 28), 10),
    "fashionmnist": (60000, 10000, (1, 28, 28), 10),
    "cifar10": (50000, 10000, (3, 32, 32), 10),
    "cifar100": (50000, 10000, (3, 32, 32), 100),
    "stl10": (5000, 8000, (3, 96, 96), 10),
}


def dataset_size(config: dict[str, Any], dataset: str, data_dir: Path) -> dict[str, Any] | None:
    """``{n_train, n_test, input_shape, n_classes}`` of data-set id ``dataset`` (None: unknown).

    ``n_test`` is 0 for a set without a test split; ``input_shape`` is per sample."""
    meta_path = data_dir / dataset / "meta.json"
    if meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        return {
            "n_train": int(meta["n_train"]),
            "n_test": int(meta.get("n_test") or 0),
            "input_shape": tuple(meta["input_shape"]),
            "n_classes": int(meta.get("n_classes") or 0),
        }
    opts = dataset_options(config, dataset)
    source = opts["source"]
    if source not in KNOWN:
        return None
    n_train, n_test, shape, n_classes = KNOWN[source]
    if opts.get("grayscale") and len(shape) == 3:
        shape = (1, *shape[1:])
    if opts.get("per_class_cap"):
        n_train = min(n_train, int(opts["per_class_cap"]) * n_classes)
    return {"n_train": n_train, "n_test": n_test, "input_shape": shape, "n_classes": n_classes}


def layer_widths(run: Any, input_shape: tuple[int, ...], n_classes: int, max_features: Any) -> dict:
    """Stored width (features per sample) of every probe layer of ``run``'s model, and the
    classifier weight's element count (0 for an encoder without classifier)."""
    import torch
    from mfoml.nets.activations import _stored_dim, plan_reduction
    from mfoml.nets.architectures import build_model

    spec = dict(run.model_spec)
    arch = spec.pop("arch")
    spec.pop("weights", None)  # the shapes do not depend on the starting weights
    model = build_model(arch, input_shape, n_classes, activation=run.activation, seed=0, **spec)
    model.eval()
    with torch.no_grad():
        _, feats = model.forward_features(torch.zeros((2, *input_shape)), list(model.probe_layers))
    widths = {}
    for name, t in feats.items():
        shape = [int(s) for s in t.shape[1:]]
        widths[name] = _stored_dim(shape, plan_reduction(name, shape, max_features))
    clf = 0
    if getattr(model, "has_classifier", True):
        clf = n_classes * widths.get(getattr(model, "penultimate_layer", ""), 0)
    return {"layers": widths, "classifier": clf}


def run_dump_bytes(config: dict[str, Any], run: Any, size: dict[str, Any], widths: dict) -> dict:
    """Bytes of one run's dump directory: ``{splits: {split: samples}, per_checkpoint, total}``."""
    n_splits = int(config["folds"]["n_splits"])
    n_train = size["n_train"]
    cap = config["activations"]["max_samples"]
    if run.full_train:
        own_train, heldout = n_train, 0
    else:
        heldout = n_train // n_splits
        own_train = n_train - heldout
    if run.train.get("subset"):  # train.subset: the run trains on (and dumps) only these
        own_train = min(own_train, int(run.train["subset"]))
    samples: dict[str, int] = {}
    for split in config["activations"]["splits"]:
        n = {"train": own_train, "heldout": heldout, "test": size["n_test"] or heldout}[split]
        samples[split] = n if cap is None else min(n, int(cap))
    if "n_analysis" in size:  # another analysis set: its whole training split as well
        n = size["n_analysis"]
        samples["analysis"] = n if cap is None else min(n, int(cap))
    feat = sum(widths["layers"].values())
    per_ckpt = 0
    for split, n in samples.items():
        n_label_arrays = 3 if split == "train" else 2
        per_ckpt += n * (2 * feat + 8 * n_label_arrays) + 4 * widths["classifier"]
    n_ckpt = len(run.train.get("checkpoints") or [0])
    return {
        "splits": samples,
        "per_checkpoint": per_ckpt,
        "checkpoints": n_ckpt,
        "total": per_ckpt * n_ckpt,
    }


def plan(config: dict[str, Any], data_dir: Path, jobs: int | None = None) -> dict[str, Any]:
    """The dump plan of a validated configuration: per run, total, peak with ``keep: false``."""
    runs, unknown = [], []
    shapes: dict[tuple, dict] = {}
    for run in run_table(config):
        size = dataset_size(config, run.analysis_dataset or run.dataset, data_dir)
        train_size = dataset_size(config, run.dataset, data_dir)
        if size is None or train_size is None:
            unknown.append(run.run_id)
            continue
        # the model is built for its training set's input and classes
        key = (json.dumps(run.model_spec, sort_keys=True), run.activation, run.dataset)
        if key not in shapes:
            shapes[key] = layer_widths(
                run,
                train_size["input_shape"],
                train_size["n_classes"],
                config["activations"]["max_features"],
            )
        own = size
        if (run.analysis_dataset or run.dataset) != run.dataset:
            own = dict(size, n_train=train_size["n_train"], n_analysis=size["n_train"])
        runs.append(
            {
                "run": run.run_id,
                **run_dump_bytes(config, run, own, shapes[key]),
                "features": sum(shapes[key]["layers"].values()),
            }
        )
    if jobs is None:
        threads = int(config["resources"]["activations"]["threads"])
        jobs = max(1, (os.cpu_count() or 1) // threads)
    sizes = sorted((r["total"] for r in runs), reverse=True)
    total = sum(sizes)
    return {
        "name": config["name"],
        "keep": bool(config["activations"]["keep"]),
        "runs": runs,
        "unknown": unknown,
        "total_bytes": total,
        "jobs": jobs,
        "peak_keep_false_bytes": sum(sizes[:jobs]),
        "peak_bytes": total if config["activations"]["keep"] else sum(sizes[:jobs]),
    }


def _gb(n: int) -> str:
    return f"{n / 1e9:.3f} GB" if n >= 1e7 else f"{n / 1e6:.2f} MB"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--configfile", default=str(REPO / "config" / "config.yaml"))
    ap.add_argument("--data-dir", default="resources/data", help="prepared data sets")
    ap.add_argument("--jobs", type=int, default=None, help="activation jobs running at once")
    ap.add_argument("--json", default=None, help="also write the plan as JSON here")
    args = ap.parse_args(argv)
    config = load_config(args.configfile)
    result = plan(config, Path(args.data_dir), args.jobs)
    print(f"{args.configfile}: {len(result['runs'])} runs with dumps")
    print(f"{'run':60s} {'features':>9s} {'ckpts':>5s}  samples per split  dump")
    for r in result["runs"]:
        splits = " ".join(f"{k}={v}" for k, v in r["splits"].items())
        print(
            f"{r['run']:60s} {r['features']:9d} {r['checkpoints']:5d}  {splits:17s}  "
            f"{_gb(r['total'])}"
        )
    for rid in result["unknown"]:
        print(f"{rid:60s} unknown data-set size (prepare it first): left out")
    print(f"total dumps (activations.keep: true): {_gb(result['total_bytes'])}")
    print(
        f"peak with activations.keep: false ({result['jobs']} activation jobs at once): "
        f"{_gb(result['peak_keep_false_bytes'])}"
    )
    print(
        f"this configuration (keep: {str(result['keep']).lower()}): peak dump disk "
        f"{_gb(result['peak_bytes'])}"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
