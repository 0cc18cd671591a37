"""The probed-model base class: a network as an ordered chain of named stages.

:class:`ProbedModel` gives every architecture (:mod:`mfoml.nets.models`,
:mod:`mfoml.nets.resnet`, and the other tracks' networks) named probe layers and one forward
pass returning any subset of them; :func:`resolve_device` picks the torch device.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from mfoml.nets.layernames import PRE_SUFFIX

__all__ = ["ProbedModel", "flatten_linear", "resolve_device", "select_probe_layers"]


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


def select_probe_layers(known: Sequence[str], layers: Sequence[str] | None) -> list[str]:
    """The probe layers ``layers`` asks for, in its order (``None``: all of ``known``, a model's
    ``probe_layers``).

    Raises ``KeyError`` naming the unknown names and the model's layers.
    """
    wanted = list(known) if layers is None else list(layers)
    unknown = [name for name in wanted if name not in known]
    if unknown:
        raise KeyError(f"unknown probe layer(s) {unknown}; this model has {list(known)}")
    return wanted


class ProbedModel(nn.Module):
    """A network computed as an ordered chain of named stages.

    Subclasses fill ``self.stages`` (an ``nn.ModuleDict`` whose last entry is ``"logits"``),
    ``self.penultimate_layer`` and ``self.spec``; the head (last stage) must end with an
    ``nn.Linear`` acting on the flattened penultimate representation.

    Attributes
    ----------
    probe_layers : list[str]
        ``["input", *stage names]``; the last is ``"logits"``. With pre-activation probe
        points (:meth:`set_probe_layers`) a tapped stage ``s`` is probed as ``s + "_pre"``, its
        output before its last module (the activation).
    penultimate_layer : str
        The layer whose flattened output feeds the final linear classifier.
    spec : dict
        Keyword arguments of :func:`build_model` that rebuild this architecture.
    """

    stages: nn.ModuleDict
    penultimate_layer: str
    spec: dict[str, Any]
    _probe_names: list[str] | None = None
    _pre_taps: dict[str, str] = {}

    @property
    def probe_layers(self) -> list[str]:
        """Ordered probe-layer names: ``"input"``, the blocks, ``"logits"``."""
        if self._probe_names is not None:
            return list(self._probe_names)
        return ["input", *self.stages.keys()]

    def set_probe_layers(self, names: Sequence[str]) -> None:
        """Probe ``names`` instead of every stage output.

        Each name is ``"input"``, a stage, or ``<stage>_pre`` for a stage that is an
        ``nn.Sequential`` ending with its activation (the output before that activation).
        """
        taps: dict[str, str] = {}
        for name in names:
            if name == "input" or name in self.stages:
                continue
            stage = name[: -len(PRE_SUFFIX)] if name.endswith(PRE_SUFFIX) else None
            if stage not in self.stages or not isinstance(self.stages[stage], nn.Sequential):
                raise ValueError(f"probe layer {name!r}: no stage {stage!r} to tap")
            taps[stage] = name
        self._probe_names = list(names)
        self._pre_taps = taps

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
        wanted = select_probe_layers(self.probe_layers, layers)
        want = set(wanted)
        got: dict[str, torch.Tensor] = {}
        if "input" in want:
            got["input"] = x
        h = self._prepare_input(x)
        for name, stage in self.stages.items():
            pre = self._pre_taps.get(name)
            if pre is not None and pre in want:
                *body, activation = stage
                for module in body:
                    h = module(h)
                got[pre] = h
                h = activation(h)
            else:
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

    def _dummy_input(self, device: torch.device) -> torch.Tensor:
        """Two inputs for :meth:`probe_shapes`: zeros of shape ``(2, *spec["input_shape"])``."""
        return torch.zeros((2, *self.spec["input_shape"]), device=device)

    @torch.no_grad()
    def probe_shapes(self) -> dict[str, tuple[int, ...]]:
        """Per-sample output shape of every probe layer (from a dummy pass in eval mode)."""
        was_training = self.training
        device = next(self.parameters()).device
        x = self._dummy_input(device)
        try:
            self.eval()
            _, feats = self.forward_features(x)
        finally:
            self.train(was_training)
        return {name: tuple(t.shape[1:]) for name, t in feats.items()}


def flatten_linear(in_features: int, n_classes: int) -> nn.Sequential:
    return nn.Sequential(nn.Flatten(1), nn.Linear(in_features, n_classes))
