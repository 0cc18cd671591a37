"""``arch: module``: the user's own ``nn.Module``, built by a factory function they name.

``factory`` is ``"path/to/file.py:function"`` (a path relative to the working directory, or
absolute) or ``"package.module:function"`` (importable). The function is called as
``function(input_shape=(C, ...), n_classes=K, **kwargs)`` and returns an ``nn.Module`` whose
output is the logits ``(B, K)`` and whose last ``nn.Linear`` is the classifier. ``layers`` names
the modules (``named_modules()`` names, e.g. ``"body.0"``, or graph node names) to probe;
``pooled`` (the classifier's flattened input) and ``logits`` always follow (see
:class:`mfoml.nets.hooked.HookedModel`). ``weights``: a local state_dict file or a checkpoint of
this pipeline, as for ``arch: torchvision`` (:func:`mfoml.nets.tvmodels.read_state_dict`).

The workflow adds the factory file's normalized source to the ``train`` rule's code version
(``workflow/rules/common.smk``): editing what it does retrains, a touch does not.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mfoml.nets.hooked import HookedModel, close_matches, layer_choices

__all__ = ["build_module", "load_factory"]


def load_factory(factory: str) -> Callable[..., nn.Module]:
    """The function named by ``factory`` (``"file.py:function"`` or ``"package.module:function"``).

    ``ValueError`` naming the key and what is missing (file, module or function).
    """
    target, sep, function = str(factory).rpartition(":")
    if not sep or not target or not function:
        raise ValueError(
            f"config key 'models.*.factory': {factory!r} is not 'path/to/file.py:function' or "
            "'package.module:function'"
        )
    if target.endswith(".py"):
        path = Path(target).resolve()
        if not path.is_file():
            raise ValueError(f"config key 'models.*.factory': file {target} not found")
        name = f"mfoml_user_{abs(hash(str(path)))}"
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:  # pragma: no cover - .py files always load
            raise ValueError(f"config key 'models.*.factory': cannot import {target}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    else:
        try:
            module = importlib.import_module(target)
        except ImportError as exc:
            raise ValueError(
                f"config key 'models.*.factory': cannot import {target} ({exc})"
            ) from exc
    fn = getattr(module, function, None)
    if not callable(fn):
        raise ValueError(f"config key 'models.*.factory': {target} has no function {function!r}")
    return fn


def build_module(
    input_shape: Sequence[int],
    n_classes: int,
    *,
    factory: str,
    layers: Sequence[str],
    kwargs: Mapping[str, Any] | None = None,
    weights: str | None = None,
    replace_head: bool = True,
    seed: int | None = None,
) -> HookedModel:
    """Build the user's network (module docstring) probed at ``layers``.

    ``seed`` seeds the factory's initialization. ``replace_head`` is accepted for symmetry with
    ``arch: torchvision``; the factory gets ``n_classes`` and builds the right head itself.
    The model's ``spec`` rebuilds the same architecture without ``weights``.
    """
    shape = [int(s) for s in input_shape]
    fn = load_factory(factory)
    fork = torch.random.fork_rng(devices=[]) if seed is not None else contextlib.nullcontext()
    with fork:
        if seed is not None:
            torch.manual_seed(int(seed))
        net = fn(input_shape=tuple(shape), n_classes=int(n_classes), **dict(kwargs or {}))
    if not isinstance(net, nn.Module):
        raise ValueError(
            f"config key 'models.*.factory': {factory} returned {type(net).__name__}, not an "
            "nn.Module"
        )
    if weights:
        from mfoml.nets.tvmodels import load_weights, read_state_dict

        load_weights(net, read_state_dict(weights), str(weights))
    choices = layer_choices(net)
    for name in layers:
        if name not in choices and name not in ("input", "pooled", "logits"):
            raise ValueError(
                f"config key 'models.*.layers': {name!r} is not a module of the network built "
                f"by {factory}" + close_matches(str(name), choices)
            )
    spec = {
        "arch": "module",
        "factory": str(factory),
        "kwargs": dict(kwargs or {}),
        "input_shape": shape,
        "n_classes": int(n_classes),
        "layers": list(layers),
        "replace_head": bool(replace_head),
        "seed": seed,
    }
    return HookedModel(net, list(layers), spec)
