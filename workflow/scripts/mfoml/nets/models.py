"""Networks with named probe layers: MLP, Conv, Conv1D and ResNet18.

Every model built by :func:`build_model` is a :class:`ProbedModel`: an ``nn.Module`` whose
computation is an ordered chain of named stages. The probe layers are ``"input"``, the stage
names (or their pre-activation outputs, below), and ``"logits"`` (the last stage), so that
analyses can address layers by name and :meth:`ProbedModel.forward_features` returns any subset
of them from one forward pass. The names follow one rule, :mod:`mfoml.nets.layernames`
(torch-free, for configuration checks).

Architectures (``L`` = ``depth``, ``H`` = ``width``)
----------------------------------------------------
A block is ``linear map -> [BatchNorm] -> activation``; ``batch_norm=False`` drops the
BatchNorm of every block (and of the conv stem). ``stride``, ``kernel_size`` and ``padding``
(conv, conv1d) are each one integer for every block or a list of ``L`` integers (one per
block); the kernel ``k`` defaults to 3 and the padding ``p`` to ``k // 2``, so a block maps a
length ``l`` to ``(l + 2 p - k) // s + 1``.

``mlp``
    The input is flattened; ``L`` blocks ``Linear -> BatchNorm1d -> activation`` of width ``H``
    (probe layers ``block1..blockL``, per-sample shape ``(H,)``), then a linear head.
    Defaults ``L=4, H=100``. ``stride``/``kernel_size`` do not apply.
``conv`` (images ``(C, Hi, Wi)``)
    A stem of two 2x2 stride-2 convolutions, each followed by BatchNorm2d and the activation
    (probe layer ``"stem"``, shape ``(H, Hi//4, Wi//4)``), then ``L`` blocks
    ``k x k conv (stride s) -> BatchNorm2d -> activation`` (``block1..blockL``; default
    ``k=3, s=1``: same shape as the stem), then a linear head on the flattened last block (so
    ``D_penultimate = H * h * w`` of the last map). Defaults ``L=3, H=32``. Needs
    ``Hi, Wi >= 4``.
``conv1d`` (MNIST-1D: input ``(N, 40)`` or ``(N, 1, 40)``; both are accepted, a 2-D input
    is read as one channel; ``input_shape`` may be ``(40,)`` or ``(1, 40)``)
    ``L`` blocks ``Conv1d(kernel k, padding k//2, stride s) -> BatchNorm1d -> activation`` of
    ``H`` channels (probe layers ``block1..blockL``, shape ``(H, length)``); then a linear head
    on the flattened last block. Defaults ``L=3, H=32, k=3`` and strides 2 for blocks 1-3, 1
    later (length ``40 -> 20 -> 10 -> 5``). The published MNIST-1D network of the reference is
    ``depth=5, width=80, stride=2, kernel_size=[5, 3, 3, 3, 3], padding=1, batch_norm=False,
    probe_point="pre"``: lengths ``40 -> 19 -> 10 -> 5 -> 3 -> 2``, 79,210 parameters,
    probed on each conv's output before the ReLU (RFWFC ``models/mnist_1d_net.py``).
``resnet18``
    ``torchvision.models.resnet18(weights=None, num_classes=n_classes)`` with its BasicBlocks
    wrapped so that ``residual=False`` drops the skip branch (identity and downsample) and the
    activation can be changed. ``stem="cifar"``: ``conv1`` is a 3x3 stride-1 convolution from
    ``C`` input channels and the max-pool is removed (the standard CIFAR ResNet stem; for 28x28
    grayscale or 32x32 RGB inputs the maps are 28/32 -> layer1 28/32, layer2 14/16, layer3
    7/8, layer4 4/4). ``stem="imagenet"``: the original 7x7 stride-2 conv (with ``C`` input
    channels) and 3x3 stride-2 max-pool (32x32 -> 8x8 after the stem). ``stem="auto"``
    (default) picks ``cifar`` for inputs of side <= 64 and ``imagenet`` otherwise. Probe layers
    ``stem, layer1..layer4`` (maps), ``pool`` (global average pool, ``(512,)``), ``logits``.
    ``depth``, ``width``, ``stride``, ``kernel_size``, ``batch_norm=False`` and
    ``probe_point="pre"`` do not apply.

Probe points
------------
``probe_point="post"`` (default): a block's probe layer is its output after the activation.
``probe_point="pre"`` (mlp, conv, conv1d): each block is probed *before* its activation (after
its BatchNorm when it has one), as ``<block>_pre`` (``stem_pre`` for the conv stem); the true
penultimate layer (the last block's post-activation output, which feeds the classifier) stays a
probe layer, so ``penultimate_layer``, :meth:`ProbedModel.classifier_weight`, NC3 and NC4 keep
their meaning: the layers are ``input, block1_pre, ..., blockL_pre, blockL, logits``. The
weights (``state_dict``) do not depend on the probe point.

Activations: :mod:`mfoml.nets.nonlinearities` (``relu, gelu, prelu, sigmoid, tanh, heaviside``
with a surrogate gradient).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

from mfoml.nets.layernames import (
    DEFAULT_DEPTH_WIDTH,
    PROBE_POINTS,
    probe_layer_names,
)
from mfoml.nets.nonlinearities import (
    ACTIVATIONS,
    Heaviside,
    HeavisideSurrogate,
    make_activation,
)
from mfoml.nets.probed import ProbedModel, flatten_linear, resolve_device
from mfoml.nets.resnet import ResNet18

__all__ = [
    "ACTIVATIONS",
    "ARCHITECTURES",
    "Heaviside",
    "HeavisideSurrogate",
    "ProbedModel",
    "build_model",
    "make_activation",
    "resolve_device",
]

ARCHITECTURES = ("mlp", "conv", "conv1d", "resnet18")


def _strides(stride: int | Sequence[int] | None, depth: int, default: list[int]) -> list[int]:
    """Per-block strides from one integer or a list of ``depth`` integers (``None``: default)."""
    if stride is None:
        return list(default)
    out = [int(stride)] * depth if isinstance(stride, int) else [int(s) for s in stride]
    if len(out) != depth or any(s < 1 for s in out):
        raise ValueError(f"stride: need one integer >= 1 or {depth} of them, got {stride!r}")
    return out


def _per_block(
    value: int | Sequence[int] | None, depth: int, default: list[int], name: str, minimum: int
) -> list[int]:
    """One integer per block from one integer or a list of ``depth`` integers (``None``:
    ``default``)."""
    if value is None:
        return list(default)
    out = [int(value)] * depth if isinstance(value, int) else [int(v) for v in value]
    if len(out) != depth or any(v < minimum for v in out):
        raise ValueError(f"{name}: need one integer >= {minimum} or {depth} of them, got {value!r}")
    return out


def _out_length(length: int, kernel: int, stride: int, padding: int | None = None) -> int:
    """Output length of a convolution (padding ``kernel // 2`` unless given)."""
    pad = kernel // 2 if padding is None else padding
    return (length + 2 * pad - kernel) // stride + 1


class MLP(ProbedModel):
    """MLP-L-H: flatten, ``L`` x (Linear, [BatchNorm1d], activation), linear head."""

    def __init__(
        self,
        input_shape: Sequence[int],
        n_classes: int,
        depth: int,
        width: int,
        act: Callable[[], nn.Module],
        batch_norm: bool = True,
    ) -> None:
        super().__init__()
        d_in = math.prod(input_shape)
        stages: dict[str, nn.Module] = {}
        for i in range(depth):
            layers: list[nn.Module] = [nn.Flatten(1)] if i == 0 else []
            layers.append(nn.Linear(d_in if i == 0 else width, width))
            layers += [nn.BatchNorm1d(width)] if batch_norm else []
            stages[f"block{i + 1}"] = nn.Sequential(*layers, act())
        stages["logits"] = flatten_linear(width, n_classes)
        self.stages = nn.ModuleDict(stages)
        self.penultimate_layer = f"block{depth}"


class ConvNet(ProbedModel):
    """Conv-L-H: two 2x2 stride-2 convs (stem), ``L`` k x k conv blocks, linear head."""

    def __init__(
        self,
        input_shape: Sequence[int],
        n_classes: int,
        depth: int,
        width: int,
        act: Callable[[], nn.Module],
        batch_norm: bool = True,
        strides: Sequence[int] | None = None,
        kernel_size: int | Sequence[int] = 3,
        padding: int | Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        c, hi, wi = input_shape
        h, w = hi // 4, wi // 4
        if h < 1 or w < 1:
            raise ValueError(f"conv: input_shape {tuple(input_shape)} too small (needs H, W >= 4)")

        def norm() -> list[nn.Module]:
            return [nn.BatchNorm2d(width)] if batch_norm else []

        stem = nn.Sequential(
            nn.Conv2d(c, width, 2, stride=2),
            *norm(),
            act(),
            nn.Conv2d(width, width, 2, stride=2),
            *norm(),
            act(),
        )
        stages: dict[str, nn.Module] = {"stem": stem}
        strides = [1] * depth if strides is None else list(strides)
        kernels = _per_block(kernel_size, depth, [3] * depth, "kernel_size", 1)
        pads = _per_block(padding, depth, [k // 2 for k in kernels], "padding", 0)
        for i in range(depth):
            k, p = kernels[i], pads[i]
            conv = nn.Conv2d(width, width, k, stride=strides[i], padding=p)
            stages[f"block{i + 1}"] = nn.Sequential(conv, *norm(), act())
            h = _out_length(h, k, strides[i], p)
            w = _out_length(w, k, strides[i], p)
            if h < 1 or w < 1:
                raise ValueError(f"conv: block{i + 1} maps the input to an empty map ({h}x{w})")
        stages["logits"] = flatten_linear(width * h * w, n_classes)
        self.stages = nn.ModuleDict(stages)
        self.penultimate_layer = f"block{depth}" if depth > 0 else "stem"


class Conv1DNet(ProbedModel):
    """Conv1D-L-H for MNIST-1D-like sequences (see the module docstring)."""

    def __init__(
        self,
        input_shape: Sequence[int],
        n_classes: int,
        depth: int,
        width: int,
        act: Callable[[], nn.Module],
        batch_norm: bool = True,
        strides: Sequence[int] | None = None,
        kernel_size: int | Sequence[int] = 3,
        padding: int | Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        c, length = (1, input_shape[0]) if len(input_shape) == 1 else input_shape
        self._in_channels = c
        strides = [2 if i < 3 else 1 for i in range(depth)] if strides is None else list(strides)
        kernels = _per_block(kernel_size, depth, [3] * depth, "kernel_size", 1)
        pads = _per_block(padding, depth, [k // 2 for k in kernels], "padding", 0)
        stages: dict[str, nn.Module] = {}
        for i in range(depth):
            stride, k, p = strides[i], kernels[i], pads[i]
            conv = nn.Conv1d(c if i == 0 else width, width, k, stride=stride, padding=p)
            norm = [nn.BatchNorm1d(width)] if batch_norm else []
            stages[f"block{i + 1}"] = nn.Sequential(conv, *norm, act())
            length = _out_length(length, k, stride, p)
            if length < 1:
                raise ValueError(f"conv1d: block{i + 1} maps the input to length {length}")
        stages["logits"] = flatten_linear(width * length, n_classes)
        self.stages = nn.ModuleDict(stages)
        self.penultimate_layer = f"block{depth}"

    def _prepare_input(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:
            if self._in_channels != 1:
                raise ValueError(
                    f"conv1d: 2-D input needs 1 channel, model has {self._in_channels}"
                )
            return x.unsqueeze(1)
        return x


def build_model(
    arch: str,
    input_shape: Sequence[int],
    n_classes: int,
    *,
    activation: str = "relu",
    depth: int | None = None,
    width: int | None = None,
    residual: bool = True,
    stem: str = "auto",
    heaviside_slope: float = 4.0,
    seed: int | None = None,
    stride: int | Sequence[int] | None = None,
    kernel_size: int | Sequence[int] | None = None,
    batch_norm: bool = True,
    probe_point: str = "post",
    padding: int | Sequence[int] | None = None,
) -> ProbedModel:
    """Build a :class:`ProbedModel`.

    Parameters
    ----------
    arch : one of ``mlp, conv, conv1d, resnet18``.
    input_shape : per-sample input shape, e.g. ``(40,)``, ``(1, 28, 28)``, ``(3, 32, 32)``.
    n_classes : number of output logits.
    activation : one of ``relu, gelu, prelu, sigmoid, tanh, heaviside``.
    depth, width : ``L`` and ``H`` (``None``: the architecture's default; must be ``None``
        for ``resnet18``).
    residual : ``resnet18`` only: ``False`` removes the skip connections. Must be ``True``
        for the other architectures.
    stem : ``resnet18`` only: ``"cifar"`` (3x3 stride 1, no max-pool), ``"imagenet"`` or
        ``"auto"`` (cifar for inputs of side <= 64); the resolved value is stored in ``spec``.
    heaviside_slope : slope ``k`` of the heaviside surrogate gradient.
    seed : when given, the weights are initialized under ``torch.manual_seed(seed)`` without
        disturbing the global RNG state.
    stride : ``conv``/``conv1d`` only: the blocks' stride, one integer or a list of ``depth``
        (``None``: conv 1, conv1d 2 for blocks 1-3 and 1 later); stored resolved (a list).
    kernel_size : ``conv``/``conv1d`` only: the blocks' kernel, one integer or a list of
        ``depth`` (``None``: 3).
    padding : ``conv``/``conv1d`` only: the blocks' zero padding, one integer or a list of
        ``depth`` (``None``: ``kernel_size // 2`` per block); stored in ``spec`` only when
        given.
    batch_norm : ``False`` drops every BatchNorm (mlp, conv, conv1d; resnet18 keeps its own).
    probe_point : ``"post"`` (after each block's activation) or ``"pre"`` (before it; mlp,
        conv, conv1d); see the module docstring and :mod:`mfoml.nets.layernames`.

    Returns
    -------
    ProbedModel whose ``spec`` rebuilds it: ``build_model(**model.spec)``. With the defaults
    the model is the same (same modules, same initialization under a seed) as before the
    ``stride``, ``kernel_size``, ``batch_norm`` and ``probe_point`` settings existed.
    """
    arch = str(arch).lower()
    if arch not in ARCHITECTURES:
        raise ValueError(f"arch: unknown architecture {arch!r}; known: {', '.join(ARCHITECTURES)}")
    activation = str(activation).lower()
    make_activation(activation, heaviside_slope=heaviside_slope)  # validates the name
    shape = [int(s) for s in input_shape]
    if not shape or any(s < 1 for s in shape):
        raise ValueError(f"input_shape: invalid shape {tuple(input_shape)}")
    if int(n_classes) < 1:
        raise ValueError(f"n_classes must be >= 1, got {n_classes}")
    n_classes = int(n_classes)

    def act() -> nn.Module:
        return make_activation(activation, heaviside_slope=heaviside_slope)

    if probe_point not in PROBE_POINTS:
        raise ValueError(f"probe_point: must be one of {PROBE_POINTS}, got {probe_point!r}")
    if arch in ("mlp", "resnet18") and any(v is not None for v in (stride, kernel_size, padding)):
        raise ValueError(
            f"stride/kernel_size do not apply to arch {arch!r} (nor padding); leave them unset"
        )
    strides: list[int] | None = None
    if arch == "resnet18":
        if depth is not None or width is not None:
            raise ValueError("depth/width do not apply to arch 'resnet18'; leave them unset")
        if not batch_norm or probe_point != "post":
            raise ValueError(
                "batch_norm=False and probe_point='pre' do not apply to arch 'resnet18'"
            )
        if len(shape) != 3:
            raise ValueError(f"input_shape: resnet18 needs (C, H, W), got {tuple(shape)}")
        if stem == "auto":
            stem = "cifar" if max(shape[1:]) <= 64 else "imagenet"
        if stem not in ("cifar", "imagenet"):
            raise ValueError(f"stem: must be 'cifar', 'imagenet' or 'auto', got {stem!r}")
    else:
        if not residual:
            raise ValueError(f"residual=False only applies to arch 'resnet18', not {arch!r}")
        if stem != "auto":
            raise ValueError(f"stem only applies to arch 'resnet18', not {arch!r}")
        d0, w0 = DEFAULT_DEPTH_WIDTH[arch]
        depth = d0 if depth is None else int(depth)
        width = w0 if width is None else int(width)
        if depth < 1 and arch != "conv":
            raise ValueError(f"depth must be >= 1 for {arch!r}, got {depth}")
        if depth < 0 or width < 1:
            raise ValueError(f"depth must be >= 0 and width >= 1, got depth={depth}, width={width}")
        if arch == "conv" and len(shape) != 3:
            raise ValueError(f"input_shape: conv needs (C, H, W), got {tuple(shape)}")
        if arch == "conv1d" and len(shape) not in (1, 2):
            raise ValueError(f"input_shape: conv1d needs (L,) or (C, L), got {tuple(shape)}")
        if arch != "mlp":
            default = [1] * depth if arch == "conv" else [2 if i < 3 else 1 for i in range(depth)]
            strides = _strides(stride, depth, default)
            kernels = _per_block(kernel_size, depth, [3] * depth, "kernel_size", 1)
            _per_block(padding, depth, [k // 2 for k in kernels], "padding", 0)  # validates
            if kernel_size is None or isinstance(kernel_size, int):
                kernel_size = kernels[0] if depth else 3
            else:
                kernel_size = kernels
            if padding is not None and not isinstance(padding, int):
                padding = [int(p) for p in padding]

    fork = torch.random.fork_rng(devices=[]) if seed is not None else contextlib.nullcontext()
    with fork:
        if seed is not None:
            torch.manual_seed(int(seed))
        model: ProbedModel
        bn = bool(batch_norm)
        if arch == "mlp":
            model = MLP(shape, n_classes, depth, width, act, bn)  # type: ignore[arg-type]
        elif arch == "conv":
            model = ConvNet(
                shape,
                n_classes,
                depth,
                width,
                act,
                bn,
                strides,
                kernel_size,  # type: ignore[arg-type]
                padding,
            )
        elif arch == "conv1d":
            model = Conv1DNet(
                shape,
                n_classes,
                depth,
                width,
                act,
                bn,
                strides,
                kernel_size,  # type: ignore[arg-type]
                padding,
            )
        else:
            model = ResNet18(shape, n_classes, bool(residual), stem, act)
    names = probe_layer_names(arch, depth, probe_point)
    if probe_point == "pre":
        model.set_probe_layers(names)
    if model.probe_layers != names or model.penultimate_layer not in names:  # pragma: no cover
        raise AssertionError(f"{arch}: probe layers {model.probe_layers} break the naming rule")
    model.spec = {
        "arch": arch,
        "input_shape": shape,
        "n_classes": n_classes,
        "activation": activation,
        "depth": depth,
        "width": width,
        "residual": bool(residual),
        "stem": stem,
        "heaviside_slope": float(heaviside_slope),
        "seed": seed,
        "stride": strides,
        "kernel_size": kernel_size,
        "batch_norm": bool(batch_norm),
        "probe_point": probe_point,
    }
    if padding is not None:
        model.spec["padding"] = padding
    return model
