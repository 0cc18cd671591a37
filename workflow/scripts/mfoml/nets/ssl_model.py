"""Self-supervised encoders: a backbone's probe stages followed by a projection head.

:class:`SSLNet` is a :class:`~mfoml.nets.models.ProbedModel` whose stages are the backbone's
stages without its classifier head (``"logits"``), then the projection head's blocks
``proj1 .. proj{depth-1}`` (``Linear -> BatchNorm1d -> ReLU``, the first flattening its input)
and ``projector`` (the output ``Linear``). Its probe layers are therefore ``"input"``, the
backbone's inner layers, and the projector's layers as extra layers; ``forward`` returns the
projector output ``(N, out_dim)`` (the embedding the SSL loss sees). The projector's input is
the backbone's penultimate layer (:attr:`SSLNet.representation_layer`), flattened. A backbone
probed before its activations (``probe_point: pre``) keeps those probe layers.

There is no classifier: :attr:`SSLNet.has_classifier` is ``False`` (activation dumps store no
predictions, NCC mismatch does not apply) and :meth:`SSLNet.classifier_weight` raises.

``SSLNet.spec`` is ``{"kind": "ssl", "backbone": <build_model spec>, "projector": {width,
depth, out_dim}, "input_shape", "seed"}``; :func:`build_from_spec` rebuilds any network spec
(supervised or SSL), so checkpoints of both load the same way.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from mfoml.nets.models import Conv1DNet, ProbedModel, build_model
from mfoml.nets.ssl import ProjectionHead

__all__ = ["PROJECTOR_DEFAULTS", "SSLNet", "build_from_spec", "build_ssl_model", "is_ssl_spec"]

#: Projection head defaults (``losses.<name>.projector`` in the configuration).
PROJECTOR_DEFAULTS: dict[str, int] = {"width": 256, "depth": 2, "out_dim": 128}


class SSLNet(ProbedModel):
    """Backbone stages (without the head) + projection-head stages (see the module doc)."""

    has_classifier = False

    def __init__(self, backbone: ProbedModel, width: int, depth: int, out_dim: int) -> None:
        super().__init__()
        inner = [name for name in backbone.stages if name != "logits"]
        if not inner:
            raise ValueError("ssl: the backbone has no stage before its head")
        self.representation_layer = backbone.penultimate_layer
        if inner[-1] != self.representation_layer:
            raise ValueError(
                f"ssl: the backbone's penultimate layer {self.representation_layer!r} is not its "
                f"last inner stage ({inner[-1]!r})"
            )
        shapes = backbone.probe_shapes()
        in_dim = int(torch.Size(shapes[self.representation_layer]).numel())
        head = ProjectionHead(in_dim, int(width), int(out_dim), int(depth))
        stages: dict[str, nn.Module] = {name: backbone.stages[name] for name in inner}
        for k, block in enumerate(head.blocks[:-1]):
            stages[f"proj{k + 1}"] = block
        stages["projector"] = head.blocks[-1]
        self.stages = nn.ModuleDict(stages)
        proj = [name for name in stages if name.startswith("proj")]
        if backbone._probe_names is not None:  # pre-activation probe points (probe_point "pre")
            self.set_probe_layers([n for n in backbone.probe_layers if n != "logits"] + proj)
        self.penultimate_layer = self.representation_layer
        # Conv1D backbones read a 2-D batch (N, L) as one channel
        self._in_channels_1d = backbone._in_channels if isinstance(backbone, Conv1DNet) else None
        self.out_dim = int(out_dim)

    def _prepare_input(self, x: torch.Tensor) -> torch.Tensor:
        if self._in_channels_1d is not None:
            return Conv1DNet._prepare_input(self, x)  # type: ignore[arg-type]
        return x

    @property
    def _in_channels(self) -> int | None:
        return self._in_channels_1d

    @property
    def backbone_layers(self) -> list[str]:
        """The backbone's probe layers (``"input"`` and its inner ones, without the projector)."""
        return [n for n in self.probe_layers if not n.startswith("proj")]

    def classifier_weight(self) -> torch.Tensor:
        raise AttributeError("a self-supervised network has no classifier")

    def classifier_bias(self) -> torch.Tensor:
        raise AttributeError("a self-supervised network has no classifier")


def build_ssl_model(
    backbone: Mapping[str, Any],
    projector: Mapping[str, Any] | None = None,
    *,
    seed: int | None = None,
) -> SSLNet:
    """Build an :class:`SSLNet`.

    Parameters
    ----------
    backbone : keyword arguments of :func:`~mfoml.nets.models.build_model` (``arch, input_shape,
        n_classes`` and options); its head is dropped, so ``n_classes`` only has to be valid.
    projector : ``{width, depth, out_dim}`` (missing keys: :data:`PROJECTOR_DEFAULTS`).
    seed : initialise backbone and projector under ``torch.manual_seed(seed)`` without
        disturbing the global RNG.
    """
    proj = dict(PROJECTOR_DEFAULTS)
    unknown = sorted(set(projector or {}) - set(proj))
    if unknown:
        raise ValueError(f"projector: unknown key(s) {unknown}; known: {sorted(proj)}")
    proj.update(projector or {})
    bb = {k: v for k, v in dict(backbone).items() if k != "seed"}
    fork = torch.random.fork_rng(devices=[]) if seed is not None else contextlib.nullcontext()
    with fork:
        if seed is not None:
            torch.manual_seed(int(seed))
        net = build_model(**bb)
        model = SSLNet(net, int(proj["width"]), int(proj["depth"]), int(proj["out_dim"]))
    model.spec = {
        "kind": "ssl",
        "backbone": dict(net.spec),
        "projector": {k: int(v) for k, v in proj.items()},
        "input_shape": list(net.spec["input_shape"]),
        "seed": seed,
    }
    return model


def is_ssl_spec(spec: Mapping[str, Any]) -> bool:
    """Whether a model spec (``model.spec``, a checkpoint's ``model_spec``) is an SSL network."""
    return spec.get("kind") == "ssl"


def build_from_spec(spec: Mapping[str, Any]) -> ProbedModel:
    """Rebuild a network from its ``spec`` (supervised :func:`build_model` or SSL)."""
    if is_ssl_spec(spec):
        return build_ssl_model(spec["backbone"], spec["projector"], seed=spec.get("seed"))
    return build_model(**spec)
