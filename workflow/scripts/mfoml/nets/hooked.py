"""Any ``nn.Module`` classifier as a :class:`~mfoml.nets.probed.ProbedModel` with named probe layers.

:class:`HookedModel` wraps a network (a torchvision model, :mod:`mfoml.nets.tvmodels`, or the
user's own module, :mod:`mfoml.nets.usermodule`) as ``self.net`` and probes:

``input``
    the batch as given, ``(B, *input_shape)``;
the named layers
    module names of ``net.named_modules()`` (their outputs, captured by forward hooks and
    cloned, so that a later in-place operation such as ``ReLU(inplace=True)`` cannot change
    them), or other node names of ``torchvision.models.feature_extraction.get_graph_node_names``
    (captured with ``create_feature_extractor``, which shares the parameters);
``pooled``
    the input of the classifier head, flattened ``(B, D_penultimate)``: the penultimate layer
    (NC3/NC4 and :meth:`classifier_weight` refer to it);
``logits``
    the network's output ``(B, n_classes)``.

The head is the last ``nn.Linear`` of ``net.named_modules()``; :func:`find_head` finds it and
:func:`replace_module` replaces it. A 1-channel input to a network whose first convolution
takes 3 channels is repeated over the 3 channels (``repeat_channels``, recorded in ``spec``).
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from mfoml.nets.probed import ProbedModel, select_probe_layers

__all__ = [
    "HookedModel",
    "PENULTIMATE",
    "close_matches",
    "find_head",
    "first_conv_channels",
    "layer_choices",
    "replace_module",
]

#: Name of the probe layer holding the classifier head's (flattened) input.
PENULTIMATE = "pooled"
_RESERVED = ("input", PENULTIMATE, "logits")


def find_head(net: nn.Module) -> tuple[str, nn.Linear] | None:
    """``(name, module)`` of the last ``nn.Linear`` of ``net`` (its classifier), or ``None``."""
    found = None
    for name, module in net.named_modules():
        if isinstance(module, nn.Linear):
            found = (name, module)
    return found


def replace_module(net: nn.Module, name: str, new: nn.Module) -> None:
    """Put ``new`` at the dotted module path ``name`` of ``net``."""
    parent_name, _, child = name.rpartition(".")
    parent = net.get_submodule(parent_name) if parent_name else net
    setattr(parent, child, new)


def first_conv_channels(net: nn.Module) -> int | None:
    """Input channels of the first ``nn.Conv2d`` of ``net`` (``None`` without one)."""
    for module in net.modules():
        if isinstance(module, nn.Conv2d):
            return int(module.in_channels)
    return None


def layer_choices(net: nn.Module, graph: bool = True) -> list[str]:
    """Every name a probe layer of ``net`` may take: its module names and (``graph``) the node
    names of ``get_graph_node_names`` in train and eval mode (symbolic tracing; a network
    that cannot be traced offers its module names only)."""
    names = [n for n, _ in net.named_modules() if n]
    if graph:
        try:
            from torchvision.models.feature_extraction import get_graph_node_names

            train_nodes, eval_nodes = get_graph_node_names(net)
            names += [n for n in (*train_nodes, *eval_nodes) if n not in names]
        except Exception:  # noqa: BLE001 - any tracing failure: module names only
            pass
    return names


def close_matches(name: str, choices: Sequence[str]) -> str:
    """``"; close matches: a, b"`` for a misspelt ``name`` (empty when there is none)."""
    near = difflib.get_close_matches(name, list(choices), n=4, cutoff=0.6)
    return f"; close matches: {', '.join(near)}" if near else ""


class HookedModel(ProbedModel):
    """A classifier ``net`` probed at named layers (see the module docstring).

    Parameters
    ----------
    net : the network; ``net(x)`` gives logits ``(B, n_classes)``, its last ``nn.Linear`` is
        the classifier.
    layers : module or graph-node names of ``net`` probed between ``input`` and ``pooled``.
    spec : the keyword arguments of the builder that rebuilds this model (with ``arch``).
    repeat_channels : repeat a 1-channel input this many times (``None``: as given).
    """

    def __init__(
        self,
        net: nn.Module,
        layers: Sequence[str],
        spec: dict[str, Any],
        repeat_channels: int | None = None,
    ) -> None:
        super().__init__()
        self.net = net
        head = find_head(net)
        if head is None:
            raise ValueError(
                f"arch {spec.get('arch')!r}: the network has no nn.Linear classifier head "
                "(its last nn.Linear gives the logits and the classifier weight of NC3/NC4)"
            )
        self._head_name, _ = head
        modules = dict(net.named_modules())
        wanted = [n for n in dict.fromkeys(layers) if n not in _RESERVED]
        self._module_layers = [n for n in wanted if n in modules]
        self._node_layers = [n for n in wanted if n not in modules]
        self._probe_names = ["input", *wanted, PENULTIMATE, "logits"]
        self.penultimate_layer = PENULTIMATE
        self.spec = dict(spec)
        self._repeat = repeat_channels
        self._capture: dict[str, torch.Tensor] | None = None
        for name in self._module_layers:
            modules[name].register_forward_hook(self._output_hook(name))
        modules[self._head_name].register_forward_pre_hook(self._head_hook)
        extractor = None
        if self._node_layers:
            from torchvision.models.feature_extraction import create_feature_extractor

            nodes = {n: n for n in self._node_layers}
            extractor = create_feature_extractor(net, return_nodes=nodes)
        # not a registered submodule: it shares net's modules (no second copy in state_dict)
        object.__setattr__(self, "_extractor", extractor)

    def _output_hook(self, name: str):
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            if self._capture is not None:
                out = output[0] if isinstance(output, tuple | list) else output
                self._capture[name] = out.clone()

        return hook

    def _head_hook(self, module: nn.Module, args: tuple[Any, ...]) -> None:
        if self._capture is not None:
            self._capture[PENULTIMATE] = args[0].flatten(1).clone()

    def _prepare_input(self, x: torch.Tensor) -> torch.Tensor:
        if self._repeat is not None and x.dim() == 4 and x.shape[1] == 1:
            return x.expand(-1, self._repeat, -1, -1)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, n_classes)`` of a batch ``(B, *input_shape)``."""
        return self.net(self._prepare_input(x))

    def forward_features(
        self, x: torch.Tensor, layers: Sequence[str] | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Logits and the requested probe layers (``None``: all) of one forward pass (two when
        graph-node layers are requested: the feature extractor runs the graph again)."""
        wanted = select_probe_layers(self.probe_layers, layers)
        got: dict[str, torch.Tensor] = {"input": x}
        self._capture = got
        try:
            h = self._prepare_input(x)
            logits = self.net(h)
            if self._extractor is not None and any(n in self._node_layers for n in wanted):
                self._extractor.train(self.training)
                got.update(self._extractor(h))
        finally:
            self._capture = None
        got["logits"] = logits
        return logits, {name: got[name] for name in wanted}

    def _head_linear(self) -> nn.Linear:
        return self.net.get_submodule(self._head_name)  # type: ignore[return-value]
