"""Checks of a configuration against what is known about its data sets and models, before any job.

Data-set ids are looked up in the source registry (:mod:`mfoml.data.catalog`, no heavy import),
layer names come from the torch-free registry :mod:`mfoml.nets.registry` (a torchvision model's
from its graph, :mod:`mfoml.config.ownmodels`), and the class counts of the built-in
sets from the registry (``SourceInfo.class_counts``; a ``data.variants`` entry with
``per_class_cap`` caps them). What cannot be known without downloading (OpenML class counts) is
checked by the job itself. The file sources (``imagefolder``, ``table``, ``textfile``,
``arrays``) are read here (:func:`mfoml.data.filecheck.file_variant_errors`: path, columns,
classes, a sample of images, shapes).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from mfoml.config.ownmodels import torchvision_layer_names
from mfoml.data.catalog import find_source, known_datasets
from mfoml.data.filecheck import file_variant_errors
from mfoml.data.files import FILE_KEYS, FILE_SOURCES
from mfoml.nets.registry import spec_layer_names

__all__ = ["class_counts", "dataset_errors", "layer_errors", "sample_errors"]

#: The fewest samples per class an analysed subsample may keep: class means need one, the
#: within-class scatter (NC1) and the probe's wavelet forests need at least two.
MIN_PER_CLASS = 2


def _source_of(config: dict[str, Any], name: str) -> tuple[str, dict[str, Any]]:
    """The source id of data-set id ``name`` and its variant options (``{}`` for a plain id)."""
    variant = config["data"]["variants"].get(name)
    if variant is None:
        return name, {}
    return str(variant["source"]), dict(variant)


def class_counts(config: dict[str, Any], name: str) -> tuple[int, ...] | None:
    """Training samples per class of data-set id ``name`` (a variant's ``per_class_cap``
    applied), or ``None`` when not known before the data set is made (e.g. OpenML)."""
    source, opts = _source_of(config, name)
    info = find_source(source)
    if info is None or info.class_counts is None:
        return None
    cap = opts.get("per_class_cap")
    return tuple(min(c, int(cap)) if cap else c for c in info.class_counts)


def _unknown(key: str, name: Any, config: dict[str, Any], variants_ok: bool = True) -> str:
    variants = sorted(config["data"]["variants"])
    extra = f", or a data.variants key ({', '.join(variants)})" if variants_ok and variants else ""
    return (
        f"config key '{key}': unknown data set {name!r}; known: {', '.join(known_datasets())}"
        + extra
    )


def _used_ids(config: dict[str, Any]) -> Iterator[tuple[str, str, bool]]:
    """``(key, data-set id, trained on)`` of every data set a sweep or the tabular track uses."""
    for i, sweep in enumerate(config.get("sweeps", [])):
        for name in sweep["datasets"]:
            yield f"sweeps[{i}].datasets", name, True
        if sweep.get("analysis_dataset"):
            yield f"sweeps[{i}].analysis_dataset", sweep["analysis_dataset"], False
    tab = config.get("tabular") or {}
    if tab.get("enabled"):
        for name in tab.get("datasets", []):
            yield "tabular.datasets", name, True


def dataset_errors(config: dict[str, Any]) -> list[str]:
    """Unknown data-set ids (sweeps, variants, tabular) and ``folds.n_splits`` larger than the
    smallest class (or the training split) of a data set that is split into folds."""
    errors: list[str] = []
    n_splits = int(config["folds"]["n_splits"])
    for name, variant in config["data"]["variants"].items():
        if find_source(str(variant["source"])) is None:
            key = f"data.variants.{name}.source"
            errors.append(_unknown(key, variant["source"], config, variants_ok=False))
        elif variant["source"] in FILE_SOURCES:
            errors += file_variant_errors(name, variant, n_splits)
        else:
            wrong = sorted(k for k in FILE_KEYS if k in variant)
            if wrong:
                errors.append(
                    f"config key 'data.variants.{name}': {wrong} apply to the file sources "
                    f"({', '.join(FILE_SOURCES)}) only, not {variant['source']!r}"
                )
    known_ids = set()
    for key, name, _ in _used_ids(config):
        if name in FILE_SOURCES and name not in config["data"]["variants"]:
            errors.append(
                f"config key '{key}': {name!r} is a file source; define a data set with it "
                f"under data.variants (e.g. data.variants.mydata: {{source: {name}, path: ...}})"
            )
        elif name in config["data"]["variants"] or find_source(name) is not None:
            known_ids.add(name)
        else:
            errors.append(_unknown(key, name, config))
    checked = set()
    for _, name, split_into_folds in _used_ids(config):
        if not split_into_folds or name not in known_ids or name in checked:
            continue
        checked.add(name)
        source, opts = _source_of(config, name)
        info = find_source(source)
        counts = class_counts(config, name)
        what = f"data set {name!r}" + (f" (variant of {source!r})" if source != name else "")
        if counts is not None and n_splits > min(counts):
            k = min(range(len(counts)), key=counts.__getitem__)
            cap = opts.get("per_class_cap")
            errors.append(
                f"config key 'folds.n_splits': {n_splits} folds, but class {k} of {what} has "
                f"only {counts[k]} training samples"
                + (f" (data.variants.{name}.per_class_cap = {cap})" if cap else "")
                + f"; use folds.n_splits <= {min(counts)}"
                + (" or a larger per_class_cap" if cap else "")
            )
        elif counts is None and info is not None and info.n_train is not None:
            if n_splits > info.n_train:
                errors.append(
                    f"config key 'folds.n_splits': {n_splits} folds, but {what} has only "
                    f"{info.n_train} training samples"
                )
    return errors


def layer_errors(config: dict[str, Any]) -> list[str]:
    """``probe.layers`` / ``ncc.layers`` naming a layer that a model of a sweep does not have."""
    errors: list[str] = []
    seen = set()
    for i, sweep in enumerate(config.get("sweeps", [])):
        for model in sweep["models"]:
            spec = config["models"].get(model)
            if spec is None or model in seen:
                continue
            seen.add(model)
            try:
                if (
                    spec["arch"] == "torchvision"
                ):  # built on the meta device (mfoml.config.ownmodels)
                    names = torchvision_layer_names(spec)
                else:
                    names = spec_layer_names(spec)
            except (ValueError, KeyError):  # a bad probe_point, name or layer: model checks
                continue
            if names is None:  # a hub id or the user's module: known in the job
                continue
            for section in ("probe", "ncc"):
                wanted = config[section]["layers"]
                if wanted == "all":
                    continue
                missing = [la for la in wanted if la not in names]
                if missing:
                    errors.append(
                        f"config key '{section}.layers': {missing} not layers of model "
                        f"{model!r} (used by sweeps[{i}]); its layers are {', '.join(names)}"
                    )
    return errors


def sample_errors(config: dict[str, Any]) -> list[str]:
    """``activations.max_samples`` / ``probe.max_samples`` below :data:`MIN_PER_CLASS` samples
    per class of an analysed data set (the statistics would rest on one sample per class)."""
    errors: list[str] = []
    analysed = []
    for sweep in config.get("sweeps", []):
        names = [sweep["analysis_dataset"]] if sweep.get("analysis_dataset") else sweep["datasets"]
        analysed += [n for n in names if n not in analysed]
    for key in ("activations", "probe"):
        cap = config[key].get("max_samples")
        if cap is None:
            continue
        for name in analysed:
            counts = class_counts(config, name)
            if counts is None:
                continue
            need = MIN_PER_CLASS * len(counts)
            if int(cap) < need:
                errors.append(
                    f"config key '{key}.max_samples': {cap} samples cannot hold "
                    f"{MIN_PER_CLASS} per class of data set {name!r} ({len(counts)} classes); "
                    f"NCC class means, the within-class scatter and the probe's forests need "
                    f"at least {need} (or null for all samples)"
                )
                break
    return errors
