"""Networks with named probe layers: MLP, Conv, Conv1D and ResNet18.

Every model built by :func:`build_model` is a :class:`ProbedModel`: an ``nn.Module`` whose
computation is an ordered chain of named stages. The probe layers are ``"input"``, the stage
names, and ``"logits"`` (the last stage), so that analyses can address layers by name and
:meth:`ProbedModel.forward_features` returns any subset of them from one forward pass.

Architectures (``L`` = ``depth``, ``H`` = ``width``)
----------------------------------------------------
``mlp``
    The input is flattened; ``L`` blocks ``Linear -> BatchNorm1d -> activation`` of width ``H``
    (probe layers ``block1..blockL``, per-sample shape ``(H,)``), then a linear head.
    Defaults ``L=4, H=100``.
``conv`` (images ``(C, Hi, Wi)``)
    A stem of two 2x2 stride-2 convolutions, each followed by BatchNorm2d and the activation
    (probe layer ``"stem"``, shape ``(H, Hi//4, Wi//4)``), then ``L`` blocks
    ``3x3 conv (padding 1) -> BatchNorm2d -> activation`` (``block1..blockL``, same shape),
    then a linear head on the flattened last block (so ``D_penultimate = H * Hi//4 * Wi//4``).
    Defaults ``L=3, H=32``. Needs ``Hi, Wi >= 4``.
``conv1d`` (MNIST-1D: input ``(N, 40)`` or ``(N, 1, 40)``; both are accepted, a 2-D input
    is read as one channel; ``input_shape`` may be ``(40,)`` or ``(1, 40)``)
    ``L`` blocks ``Conv1d(kernel 3, padding 1) -> BatchNorm1d -> activation`` of ``H``
    channels; blocks 1-3 have stride 2 (length ``40 -> 20 -> 10 -> 5``), later blocks stride 1
    (probe layers ``block1..blockL``, shape ``(H, length)``); then a linear head on the
    flattened last block. Defaults ``L=3, H=32``.
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
    ``depth``/``width`` do not apply.

Activations
-----------
``relu, gelu, prelu`` (one learned slope per layer instance, init 0.25), ``sigmoid, tanh``, and
``heaviside``: forward ``1[x > 0]`` (values 0/1); backward uses the surrogate gradient of a
steep sigmoid, ``d/dx sigmoid(k x) = k s (1 - s)`` with ``s = sigmoid(k x)`` and slope
``k = heaviside_slope`` (default 4, so the surrogate equals 1 at ``x = 0`` like a
straight-through estimator, and decays away from 0). See :class:`HeavisideSurrogate`.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from mfoml.nets.spec import ARCHITECTURES, DEFAULTS

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

ACTIVATIONS = ("relu", "gelu", "prelu", "sigmoid", "tanh", "heaviside")


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Resolve ``"auto"`` to CUDA when available, else CPU; other values are passed through.

    Raises ``ValueError`` when CUDA is requested but not available.
    """
    if isinstance(device, torch.device):
        dev = device
    elif device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        try:
            dev = torch.device(device)
        except RuntimeError as exc:
            raise ValueError(f"device: unknown device {device!r} ({exc})") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device: {device!r} requested but CUDA is not available")
    return dev


# --------------------------------------------------------------------------------------------
# activations


class HeavisideSurrogate(torch.autograd.Function):
    """Step function with a sigmoid surrogate gradient.

    Forward: ``y = 1[x > 0]`` (same dtype as ``x``). Backward:
    ``dL/dx = dL/dy * k * s * (1 - s)``, ``s = sigmoid(k * x)``.
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, slope: float) -> torch.Tensor:  # noqa: D102
        ctx.save_for_backward(x)
        ctx.slope = slope
        return (x > 0).to(x.dtype)

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor, None]:  # noqa: D102
        (x,) = ctx.saved_tensors
        s = torch.sigmoid(ctx.slope * x)
        return grad_out * ctx.slope * s * (1 - s), None


class Heaviside(nn.Module):
    """``nn.Module`` wrapper of :class:`HeavisideSurrogate` with surrogate slope ``slope``."""

    def __init__(self, slope: float = 4.0) -> None:
        super().__init__()
        if not slope > 0:
            raise ValueError(f"heaviside_slope must be > 0, got {slope}")
        self.slope = float(slope)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return HeavisideSurrogate.apply(x, self.slope)

    def extra_repr(self) -> str:
        return f"slope={self.slope}"


def make_activation(name: str, *, heaviside_slope: float = 4.0) -> nn.Module:
    """Return a new activation module by name (one of :data:`ACTIVATIONS`)."""
    name = str(name).lower()
    if name == "relu":
        return nn.ReLU()
    if name == "gelu":
        return nn.GELU()
    if name == "prelu":
        return nn.PReLU()
    if name == "sigmoid":
        return nn.Sigmoid()
    if name == "tanh":
        return nn.Tanh()
    if name == "heaviside":
        return Heaviside(heaviside_slope)
    raise ValueError(f"activation: unknown activation {name!r}; known: {', '.join(ACTIVATIONS)}")


# --------------------------------------------------------------------------------------------
# the probed-model base class


class ProbedModel(nn.Module):
    """A network computed as an ordered chain of named stages.

    Subclasses fill ``self.stages`` (an ``nn.ModuleDict`` whose last entry is ``"logits"``),
    ``self.penultimate_layer`` and ``self.spec``; the head (last stage) must end with an
    ``nn.Linear`` acting on the flattened penultimate representation.

    Attributes
    ----------
    probe_layers : list[str]
        ``["input", *stage names]``; the last is ``"logits"``.
    penultimate_layer : str
        The layer whose flattened output feeds the final linear classifier.
    spec : dict
        Keyword arguments of :func:`build_model` that rebuild this architecture.
    """

    stages: nn.ModuleDict
    penultimate_layer: str
    spec: dict[str, Any]

    @property
    def probe_layers(self) -> list[str]:
        """Ordered probe-layer names: ``"input"``, the blocks, ``"logits"``."""
        return ["input", *self.stages.keys()]

    def _prepare_input(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, n_classes)`` for a batch ``x`` of shape ``(B, *input_shape)``."""
        h = self._prepare_input(x)
        for stage in self.stages.values():
            h = stage(h)
        return h

    def forward_features(
        self, x: torch.Tensor, layers: Sequence[str] | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Run one forward pass and return the logits and the requested layer outputs.

        Parameters
        ----------
        x : Tensor ``(B, *input_shape)``.
        layers : names from :attr:`probe_layers` (``None``: all of them).

        Returns
        -------
        logits : Tensor ``(B, n_classes)``.
        features : dict name -> Tensor ``(B, *layer_shape)``, not flattened, in the order
            requested; tensors keep their autograd graph (``"input"`` is ``x`` itself).
        """
        known = self.probe_layers
        wanted = list(known) if layers is None else list(layers)
        unknown = [name for name in wanted if name not in known]
        if unknown:
            raise KeyError(f"unknown probe layer(s) {unknown}; this model has {known}")
        want = set(wanted)
        got: dict[str, torch.Tensor] = {}
        if "input" in want:
            got["input"] = x
        h = self._prepare_input(x)
        for name, stage in self.stages.items():
            h = stage(h)
            if name in want:
                got[name] = h
        return h, {name: got[name] for name in wanted}

    def _head_linear(self) -> nn.Linear:
        head = self.stages["logits"]
        linear = head if isinstance(head, nn.Linear) else [m for m in head.modules()][-1]
        if not isinstance(linear, nn.Linear):  # pragma: no cover - guarded by construction
            raise TypeError("the logits stage does not end with nn.Linear")
        return linear

    def classifier_weight(self) -> torch.Tensor:
        """Weight of the final linear classifier, ``(n_classes, D_penultimate)`` (detached).

        ``logits = flatten(penultimate) @ W.T + b``.
        """
        return self._head_linear().weight.detach()

    def classifier_bias(self) -> torch.Tensor:
        """Bias of the final linear classifier, ``(n_classes,)`` (detached)."""
        return self._head_linear().bias.detach()

    @torch.no_grad()
    def probe_shapes(self) -> dict[str, tuple[int, ...]]:
        """Per-sample output shape of every probe layer (from a dummy pass in eval mode)."""
        was_training = self.training
        device = next(self.parameters()).device
        x = torch.zeros((2, *self.spec["input_shape"]), device=device)
        try:
            self.eval()
            _, feats = self.forward_features(x)
        finally:
            self.train(was_training)
        return {name: tuple(t.shape[1:]) for name, t in feats.items()}


def _flatten_linear(in_features: int, n_classes: int) -> nn.Sequential:
    return nn.Sequential(nn.Flatten(1), nn.Linear(in_features, n_classes))


class MLP(ProbedModel):
    """MLP-L-H: flatten, ``L`` x (Linear, BatchNorm1d, activation), linear head."""

    def __init__(
        self,
        input_shape: Sequence[int],
        n_classes: int,
        depth: int,
        width: int,
        act: Callable[[], nn.Module],
    ) -> None:
        super().__init__()
        d_in = math.prod(input_shape)
        stages: dict[str, nn.Module] = {}
        for i in range(depth):
            layers: list[nn.Module] = [nn.Flatten(1)] if i == 0 else []
            layers += [nn.Linear(d_in if i == 0 else width, width), nn.BatchNorm1d(width), act()]
            stages[f"block{i + 1}"] = nn.Sequential(*layers)
        stages["logits"] = _flatten_linear(width, n_classes)
        self.stages = nn.ModuleDict(stages)
        self.penultimate_layer = f"block{depth}"


class ConvNet(ProbedModel):
    """Conv-L-H: two 2x2 stride-2 convs (stem), ``L`` 3x3 conv blocks, linear head."""

    def __init__(
        self,
        input_shape: Sequence[int],
        n_classes: int,
        depth: int,
        width: int,
        act: Callable[[], nn.Module],
    ) -> None:
        super().__init__()
        c, hi, wi = input_shape
        h, w = hi // 4, wi // 4
        if h < 1 or w < 1:
            raise ValueError(f"conv: input_shape {tuple(input_shape)} too small (needs H, W >= 4)")
        stem = nn.Sequential(
            nn.Conv2d(c, width, 2, stride=2),
            nn.BatchNorm2d(width),
            act(),
            nn.Conv2d(width, width, 2, stride=2),
            nn.BatchNorm2d(width),
            act(),
        )
        stages: dict[str, nn.Module] = {"stem": stem}
        for i in range(depth):
            stages[f"block{i + 1}"] = nn.Sequential(
                nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width), act()
            )
        stages["logits"] = _flatten_linear(width * h * w, n_classes)
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
    ) -> None:
        super().__init__()
        c, length = (1, input_shape[0]) if len(input_shape) == 1 else input_shape
        self._in_channels = c
        stages: dict[str, nn.Module] = {}
        for i in range(depth):
            stride = 2 if i < 3 else 1
            stages[f"block{i + 1}"] = nn.Sequential(
                nn.Conv1d(c if i == 0 else width, width, 3, stride=stride, padding=1),
                nn.BatchNorm1d(width),
                act(),
            )
            length = (length - 1) // stride + 1
        stages["logits"] = _flatten_linear(width * length, n_classes)
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


class _Block(nn.Module):
    """A torchvision BasicBlock with a chosen activation and an optional skip connection."""

    def __init__(self, basic: nn.Module, residual: bool, act: Callable[[], nn.Module]) -> None:
        super().__init__()
        self.conv1, self.bn1 = basic.conv1, basic.bn1
        self.conv2, self.bn2 = basic.conv2, basic.bn2
        self.act1, self.act2 = act(), act()
        self.residual = residual
        self.downsample = basic.downsample if residual else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.act1(self.bn1(self.conv1(x)))))
        if self.residual:
            out = out + (x if self.downsample is None else self.downsample(x))
        return self.act2(out)

    def extra_repr(self) -> str:
        return f"residual={self.residual}"


class ResNet18(ProbedModel):
    """torchvision ResNet18 with a switchable skip connection and a small-image stem."""

    def __init__(
        self,
        input_shape: Sequence[int],
        n_classes: int,
        residual: bool,
        stem: str,
        act: Callable[[], nn.Module],
    ) -> None:
        super().__init__()
        from torchvision.models import resnet18

        c = input_shape[0]
        net = resnet18(weights=None, num_classes=n_classes)
        if stem == "cifar":
            conv1 = nn.Conv2d(c, 64, kernel_size=3, stride=1, padding=1, bias=False)
            stem_mod = nn.Sequential(conv1, net.bn1, act())
        else:
            conv1 = nn.Conv2d(c, 64, kernel_size=7, stride=2, padding=3, bias=False)
            stem_mod = nn.Sequential(conv1, net.bn1, act(), net.maxpool)
        nn.init.kaiming_normal_(conv1.weight, mode="fan_out", nonlinearity="relu")
        stages: dict[str, nn.Module] = {"stem": stem_mod}
        for k in range(1, 5):
            layer = getattr(net, f"layer{k}")
            stages[f"layer{k}"] = nn.Sequential(*[_Block(b, residual, act) for b in layer])
        stages["pool"] = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1))
        stages["logits"] = net.fc
        self.stages = nn.ModuleDict(stages)
        self.penultimate_layer = "pool"


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

    Returns
    -------
    ProbedModel whose ``spec`` rebuilds it: ``build_model(**model.spec)``.
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

    if arch == "resnet18":
        if depth is not None or width is not None:
            raise ValueError("depth/width do not apply to arch 'resnet18'; leave them unset")
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
        d0, w0 = DEFAULTS[arch]
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

    fork = torch.random.fork_rng(devices=[]) if seed is not None else contextlib.nullcontext()
    with fork:
        if seed is not None:
            torch.manual_seed(int(seed))
        model: ProbedModel
        if arch == "mlp":
            model = MLP(shape, n_classes, depth, width, act)  # type: ignore[arg-type]
        elif arch == "conv":
            model = ConvNet(shape, n_classes, depth, width, act)  # type: ignore[arg-type]
        elif arch == "conv1d":
            model = Conv1DNet(shape, n_classes, depth, width, act)  # type: ignore[arg-type]
        else:
            model = ResNet18(shape, n_classes, bool(residual), stem, act)
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
    }
    return model
