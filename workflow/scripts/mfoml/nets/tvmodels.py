"""``arch: torchvision``: any classification builder of ``torchvision.models`` as a probed model.

:func:`build_torchvision` builds ``torchvision.models.get_model(name, weights=None)``, loads
``weights`` (:func:`load_weights`), replaces the classifier head when the data set's class count
differs (``replace_head``, default true; logged) and wraps the network in a
:class:`~mfoml.nets.hooked.HookedModel` probed at ``layers``.

``weights``
    ``None`` (random initialization under the run's seed); a local file: a state_dict in
    ``.pt``/``.pth`` (``torch.load(weights_only=True)``) or ``.safetensors``, or a checkpoint of
    this pipeline (its ``state_dict``, with the ``net.`` prefix of a wrapped network removed);
    or a torchvision weights name of the model (``IMAGENET1K_V1``, ``DEFAULT``), read from the
    torch cache (``torch.hub.get_dir()/checkpoints``, i.e. ``$TORCH_HOME/hub/checkpoints``)
    and never downloaded: :func:`cached_weights_file` says where it is missing.
``layers``
    module names of the network or node names of
    ``torchvision.models.feature_extraction.get_graph_node_names``, or ``"auto"``
    (:func:`auto_layers`): the ResNet family (``layer1..layer4``), networks with a ``features``
    sequence (VGG and AlexNet: the output of every max-pool; MobileNet, EfficientNet, ConvNeXt,
    DenseNet and the others: every child of ``features``), RegNet (``stem`` and the blocks of
    ``trunk_output``), ViT (every encoder layer), otherwise every top-level child except the one
    holding the head. ``pooled`` (the head's flattened input) and ``logits`` always follow.
``input``
    channel-first images ``(C, H, W)``; 1-channel data into a 3-channel stem is repeated over
    the three channels; any other channel mismatch, or a size the network cannot take (too
    small for its down-sampling), is a ``ValueError`` saying so. ``vgg19_bn`` takes 32x32 (its
    adaptive pool maps the 1x1 map to 7x7).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from mfoml.nets.hooked import (
    HookedModel,
    close_matches,
    find_head,
    first_conv_channels,
    layer_choices,
    replace_module,
)

__all__ = [
    "auto_layers",
    "build_torchvision",
    "cached_weights_file",
    "classification_models",
    "load_weights",
    "read_state_dict",
]

log = logging.getLogger(__name__)

WEIGHT_SUFFIXES = (".pt", ".pth", ".safetensors")


def classification_models() -> list[str]:
    """Names of torchvision's image-classification builders (``list_models(torchvision.models)``)."""
    import torchvision

    return list(torchvision.models.list_models(module=torchvision.models))


def is_weights_file(weights: str) -> bool:
    """Whether ``weights`` names a file (by its suffix) rather than a torchvision weights name."""
    return str(weights).lower().endswith(WEIGHT_SUFFIXES)


def cached_weights_file(name: str, weights: str) -> Path:
    """The torch-cache file of torchvision weights ``weights`` of model ``name``.

    ``ValueError`` when the model has no such weights (naming the ones it has);
    ``FileNotFoundError`` when the file is not in the cache (naming the path and the URL to
    fetch it from; nothing is downloaded).
    """
    import torchvision

    try:
        enum = torchvision.models.get_model_weights(name)
    except ValueError as exc:
        raise ValueError(f"torchvision model {name!r} has no published weights ({exc})") from exc
    try:
        entry = enum[str(weights)] if str(weights) != "DEFAULT" else enum.DEFAULT
    except KeyError:
        raise ValueError(
            f"weights {weights!r} are not weights of torchvision model {name!r}; it has "
            f"{', '.join(['DEFAULT', *enum.__members__])}"
        ) from None
    path = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(entry.url)
    if not path.is_file():
        raise FileNotFoundError(
            f"weights {weights!r} of torchvision model {name!r} are not in the torch cache "
            f"({path}); the pipeline never downloads them: fetch {entry.url} into that folder "
            "(or set TORCH_HOME), or give a local state_dict file"
        )
    return path


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a weights file: a ``.safetensors`` file, a ``.pt``/``.pth`` state_dict, or
    a checkpoint of this pipeline (its ``state_dict``). ``ValueError`` naming the file."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"weights file {p} not found")
    try:
        if p.suffix.lower() == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(p))
        else:
            state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - every reader error, with the file named
        raise ValueError(f"weights file {p} cannot be read ({type(exc).__name__}: {exc})") from exc
    if isinstance(state, dict) and "state_dict" in state and "model_spec" in state:
        state = state["state_dict"]  # a checkpoint of this pipeline
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"weights file {p}: not a state_dict (a dict of tensors)")
    if state and all(k.startswith("net.") for k in state):
        state = {k[len("net.") :]: v for k, v in state.items()}
    return state


def load_weights(net: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load ``state`` into ``net`` (strict). A head of another class count in ``state`` first
    gets a head of that size, so the caller can then replace it. ``ValueError`` naming
    ``source`` and the mismatching tensors."""
    head = find_head(net)
    if head is not None:
        name, linear = head
        w = state.get(f"{name}.weight")
        if w is not None and w.dim() == 2 and tuple(w.shape) != tuple(linear.weight.shape):
            replace_module(net, name, nn.Linear(int(w.shape[1]), int(w.shape[0])))
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ValueError(f"weights {source}: do not fit the network ({exc})") from exc
    log.info("loaded weights %s (%d tensors)", source, len(state))


def auto_layers(net: nn.Module) -> list[str]:
    """The default probe layers of a torchvision network (module docstring, ``layers``)."""
    children = dict(net.named_children())
    head = find_head(net)
    head_top = head[0].split(".")[0] if head is not None else None
    if all(f"layer{k}" in children for k in range(1, 5)):
        return [f"layer{k}" for k in range(1, 5)]
    features = children.get("features")
    if isinstance(features, nn.Sequential):
        pools = [
            f"features.{n}" for n, m in features.named_children() if isinstance(m, nn.MaxPool2d)
        ]
        if pools:
            return pools
        return [f"features.{n}" for n, _ in features.named_children()]
    trunk = children.get("trunk_output")
    if isinstance(trunk, nn.Sequential):
        return ["stem", *[f"trunk_output.{n}" for n, _ in trunk.named_children()]]
    encoder = children.get("encoder")
    if encoder is not None and isinstance(getattr(encoder, "layers", None), nn.Sequential):
        return [f"encoder.layers.{n}" for n, _ in encoder.layers.named_children()]
    return [n for n in children if n != head_top]


def _check_layers(net: nn.Module, layers: Sequence[str], key: str) -> None:
    choices = layer_choices(net)
    allowed = set(choices) | {"input", "pooled", "logits"}
    for name in layers:
        if name not in allowed:
            raise ValueError(
                f"config key '{key}': {name!r} is not a module or graph node of the network"
                + close_matches(str(name), choices)
            )


def build_torchvision(
    input_shape: Sequence[int],
    n_classes: int,
    *,
    name: str,
    weights: str | None = None,
    replace_head: bool = True,
    layers: str | Sequence[str] = "auto",
    seed: int | None = None,
    repeat_channels: int | None = None,
) -> HookedModel:
    """Build torchvision model ``name`` for inputs ``(C, H, W)`` and ``n_classes`` classes.

    Parameters are the ``models.<name>`` keys (module docstring); ``seed`` seeds the random
    initialization and a replaced head. The returned model's ``spec`` rebuilds the same
    architecture without ``weights`` (a checkpoint holds the weights), with ``layers`` resolved.
    """
    import torchvision

    shape = [int(s) for s in input_shape]
    if name not in classification_models():
        raise ValueError(
            f"config key 'models.*.name': {name!r} is not a torchvision classification model"
            + close_matches(name, classification_models())
        )
    if len(shape) != 3:
        raise ValueError(
            f"torchvision model {name!r} takes images (C, H, W); the data set's input shape is "
            f"{tuple(shape)}"
        )
    fork = torch.random.fork_rng(devices=[]) if seed is not None else contextlib.nullcontext()
    with fork:
        if seed is not None:
            torch.manual_seed(int(seed))
        net = torchvision.models.get_model(name, weights=None)
        if weights:
            path = Path(weights) if is_weights_file(weights) else cached_weights_file(name, weights)
            load_weights(net, read_state_dict(path), str(path))
        head = find_head(net)
        if head is None:
            raise ValueError(f"torchvision model {name!r} has no nn.Linear classifier head")
        head_name, linear = head
        if linear.out_features != int(n_classes):
            if not replace_head:
                raise ValueError(
                    f"torchvision model {name!r} has {linear.out_features} outputs but the data "
                    f"set has {n_classes} classes; set replace_head: true"
                )
            replace_module(net, head_name, nn.Linear(linear.in_features, int(n_classes)))
            log.info(
                "replaced the head %r of %s (%d -> %d classes, re-initialized)",
                head_name,
                name,
                linear.out_features,
                n_classes,
            )
    stem = first_conv_channels(net)
    if repeat_channels is None and stem is not None and stem != shape[0]:
        if shape[0] == 1 and stem == 3:
            repeat_channels = 3
            log.info("1-channel input repeated over the 3 input channels of %s", name)
        else:
            raise ValueError(
                f"torchvision model {name!r} takes {stem} input channels; the data set has "
                f"{shape[0]} (only 1-channel data is adapted, by repeating it)"
            )
    chosen = auto_layers(net) if layers == "auto" else list(layers)
    if layers != "auto":
        _check_layers(net, chosen, "models.*.layers")
    spec = {
        "arch": "torchvision",
        "name": name,
        "input_shape": shape,
        "n_classes": int(n_classes),
        "replace_head": bool(replace_head),
        "layers": chosen,
        "seed": seed,
        "repeat_channels": repeat_channels,
    }
    model = HookedModel(net, chosen, spec, repeat_channels=repeat_channels)
    try:
        with torch.no_grad():
            was = model.training
            model.eval()
            model(torch.zeros((1, *shape)))
            model.train(was)
    except RuntimeError as exc:
        raise ValueError(
            f"torchvision model {name!r} cannot take inputs of shape {tuple(shape)} ({exc})"
        ) from exc
    return model
