"""Pre-job checks of ``arch: torchvision`` and ``arch: module`` models and of ``train.epochs: 0``.

Called by :func:`mfoml.config.references.check_references`. Torch-free at import: torch and
torchvision are imported (inside :func:`torchvision_layer_names`) only when a configuration
has a ``torchvision`` model, whose graph is then built on the ``meta`` device (no memory, no
weights) to check ``name``, ``weights`` and ``layers`` before any job. A ``module`` factory is
checked without importing it (the file exists and defines the function, read by :mod:`ast`);
its layer names need the data set's input shape and are checked by the ``train`` job, which
names the key as well. Every message names its configuration key.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
from pathlib import Path
from typing import Any

from mfoml.config.ssl import SSL_LOSS_TYPES
from mfoml.data.catalog import find_source
from mfoml.nets.registry import ARCHS, arch_info

__all__ = ["OWN_KEYS", "has_weights", "own_model_errors", "torchvision_layer_names"]

#: The keys of the models of outside networks (``torchvision``, ``module``).
OWN_KEYS = frozenset({"name", "weights", "layers", "replace_head", "factory", "kwargs"})
_SUFFIXES = (".pt", ".pth", ".safetensors")


def has_weights(spec: dict[str, Any]) -> bool:
    """Whether the model specification starts from given weights (``weights`` set)."""
    return bool(spec.get("weights"))


@functools.cache
def _tv_names(name: str, layers: tuple[str, ...] | None) -> tuple[list[str], str | None]:
    """(probe layers, error) of torchvision model ``name`` built on the meta device."""
    import torch

    from mfoml.nets.hooked import PENULTIMATE, close_matches, layer_choices
    from mfoml.nets.tvmodels import auto_layers, classification_models

    known = classification_models()
    if name not in known:
        return [], f"{name!r} is not a torchvision classification model" + close_matches(
            name, known
        )
    import torchvision

    with torch.device("meta"):
        net = torchvision.models.get_model(name, weights=None)
    if layers is None:
        chosen = auto_layers(net)
    else:
        choices = layer_choices(net)
        bad = [n for n in layers if n not in choices and n not in ("input", PENULTIMATE, "logits")]
        if bad:
            return [], (
                f"{bad[0]!r} is not a module or graph node of torchvision model {name!r}"
                + close_matches(bad[0], choices)
            )
        chosen = [n for n in layers if n not in ("input", PENULTIMATE, "logits")]
    return ["input", *dict.fromkeys(chosen), PENULTIMATE, "logits"], None


def torchvision_layer_names(spec: dict[str, Any]) -> list[str]:
    """Probe layers of a ``torchvision`` model specification (``ValueError`` when its ``name`` or
    ``layers`` are wrong)."""
    layers = spec.get("layers", "auto")
    names, error = _tv_names(str(spec["name"]), None if layers == "auto" else tuple(layers))
    if error:
        raise ValueError(error)
    return names


def _weights_error(key: str, spec: dict[str, Any]) -> str | None:
    weights = spec.get("weights")
    if not weights:
        return None
    if str(weights).lower().endswith(_SUFFIXES):
        if not Path(weights).is_file():
            return f"config key '{key}.weights': file {weights} not found"
        return None
    if spec["arch"] != "torchvision":
        return (
            f"config key '{key}.weights': {weights!r} is not a .pt, .pth or .safetensors file "
            "(torchvision weights names apply to arch torchvision only)"
        )
    from mfoml.nets.tvmodels import cached_weights_file

    try:
        cached_weights_file(str(spec["name"]), str(weights))
    except (ValueError, FileNotFoundError) as exc:
        return f"config key '{key}.weights': {exc}"
    return None


def _factory_error(key: str, factory: str) -> str | None:
    target, sep, function = str(factory).rpartition(":")
    if not sep or not target or not function:
        return (
            f"config key '{key}.factory': {factory!r} is not 'path/to/file.py:function' or "
            "'package.module:function'"
        )
    if target.endswith(".py"):
        path = Path(target)
        if not path.is_file():
            return f"config key '{key}.factory': file {target} not found"
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        except (SyntaxError, UnicodeDecodeError) as exc:
            return f"config key '{key}.factory': {target} is not valid Python ({exc})"
        defined = {
            node.name
            for node in tree.body
            if isinstance(node, ast.FunctionDef | ast.ClassDef | ast.AsyncFunctionDef)
        }
        defined |= {
            t.id
            for node in tree.body
            if isinstance(node, ast.Assign)
            for t in node.targets
            if isinstance(t, ast.Name)
        }
        if function not in defined:
            return f"config key '{key}.factory': {target} defines no {function!r}"
        return None
    try:
        found = importlib.util.find_spec(target)
    except (ImportError, ValueError):
        found = None
    if found is None:
        return f"config key '{key}.factory': module {target!r} cannot be found"
    return None


def _model_errors(name: str, spec: dict[str, Any]) -> list[str]:
    key = f"models.{name}"
    info = arch_info(spec["arch"])
    errors = []
    for k in sorted(set(spec) & OWN_KEYS - info.keys):
        own = [a for a, i in ARCHS.items() if k in i.keys]
        errors.append(f"config key '{key}.{k}': applies to arch {' and '.join(own)} only")
    if info.name not in ("torchvision", "module"):
        return errors
    for k in sorted(set(spec) - info.keys - {"arch"}):
        errors.append(f"config key '{key}.{k}': does not apply to arch {info.name}")
    if info.name == "torchvision":
        if "name" not in spec:
            return [*errors, f"config key '{key}.name': arch torchvision needs a model name"]
        try:
            torchvision_layer_names(spec)
        except ValueError as exc:
            which = "name" if "classification model" in str(exc) else "layers"
            errors.append(f"config key '{key}.{which}': {exc}")
            return errors
    else:
        if "factory" not in spec:
            errors.append(f"config key '{key}.factory': arch module needs a factory")
        else:
            error = _factory_error(key, spec["factory"])
            errors += [error] if error else []
        if not isinstance(spec.get("layers"), list):
            errors.append(f"config key '{key}.layers': arch module needs a list of module names")
    error = _weights_error(key, spec)
    return errors + ([error] if error else [])


def own_model_errors(config: dict[str, Any]) -> list[str]:
    """Problems of the models of outside networks, and of ``epochs: 0`` without weights."""
    errors: list[str] = []
    for name, spec in config["models"].items():
        errors += _model_errors(name, spec)
    for i, sweep in enumerate(config.get("sweeps", [])):
        merged = {**config["train"], **(sweep.get("train") or {})}
        if int(merged["epochs"]) != 0:
            continue
        key = (
            f"sweeps[{i}].train.epochs"
            if "epochs" in (sweep.get("train") or {})
            else "train.epochs"
        )
        for model in sweep["models"]:
            spec = config["models"].get(model)
            if spec is not None and not has_weights(spec):
                errors.append(
                    f"config key '{key}': 0 epochs analyses a model's given weights, but model "
                    f"{model!r} (sweeps[{i}]) has no 'weights'; set models.{model}.weights, or "
                    "train >= 1 epoch (checkpoint 0 of a trained run is its random "
                    "initialization)"
                )
        if sweep.get("transfer"):
            errors.append(f"config key '{key}': 0 epochs cannot be combined with transfer")
    for i, sweep in enumerate(config.get("sweeps", [])):
        outside = [
            m
            for m in sweep["models"]
            if (config["models"].get(m) or {}).get("arch") in ("torchvision", "module")
        ]
        if outside and sweep.get("transfer"):
            errors.append(
                f"config key 'sweeps[{i}].transfer': not for models {outside} (torchvision or "
                "module); start them from the source run's checkpoint file with "
                "models.<name>.weights instead"
            )
        ssl = [
            loss
            for loss in sweep.get("losses", [])
            if (config["losses"].get(loss) or {}).get("type") in SSL_LOSS_TYPES
        ]
        if outside and ssl:
            errors.append(
                f"config key 'sweeps[{i}].losses': self-supervised losses {ssl} need a built-in "
                f"encoder (mlp, conv, conv1d, resnet18), not models {outside}"
            )
        for model in sweep["models"]:
            spec = config["models"].get(model) or {}
            if spec.get("arch") != "torchvision":
                continue
            for ds in sweep["datasets"]:
                variant = config["data"]["variants"].get(ds)
                info = find_source(str(variant["source"]) if variant else ds)
                kind = getattr(info, "kind", None)
                if kind is not None and kind != "image":
                    errors.append(
                        f"config key 'sweeps[{i}].models': torchvision model {model!r} takes "
                        f"images (C, H, W); data set {ds!r} is {kind} data"
                    )
    return errors
