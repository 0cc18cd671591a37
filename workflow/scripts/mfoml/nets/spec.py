"""Layer names of a model spec, without torch: what ``build_model`` will produce.

The configuration layer checks ``probe.layers`` and ``ncc.layers`` against the probe layers of
every configured model at parse time (before any job), so the names must be known without
building the network. :func:`mfoml.nets.models.build_model` uses the same defaults
(:data:`DEFAULTS`), and ``tests/test_models.py`` checks that both agree for every architecture.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["ARCHITECTURES", "DEFAULTS", "penultimate_layer", "probe_layers"]

ARCHITECTURES = ("mlp", "conv", "conv1d", "resnet18")
#: Default ``(depth, width)`` per architecture (``resnet18`` has neither).
DEFAULTS = {"mlp": (4, 100), "conv": (3, 32), "conv1d": (3, 32)}


def _depth(arch: str, depth: int | None) -> int:
    if arch not in ARCHITECTURES:
        raise ValueError(f"arch: unknown architecture {arch!r}; known: {', '.join(ARCHITECTURES)}")
    return int(DEFAULTS[arch][0] if depth is None else depth)


def probe_layers(arch: str, depth: int | None = None) -> list[str]:
    """Ordered probe-layer names of ``build_model(arch, ..., depth=depth)``.

    ``["input", *stages, "logits"]``: MLP and Conv1D ``block1..blockL``; Conv ``stem,
    block1..blockL``; ResNet18 ``stem, layer1..layer4, pool``.
    """
    arch = str(arch).lower()
    if arch == "resnet18":
        return ["input", "stem", "layer1", "layer2", "layer3", "layer4", "pool", "logits"]
    blocks = [f"block{i + 1}" for i in range(_depth(arch, depth))]
    stem = ["stem"] if arch == "conv" else []
    return ["input", *stem, *blocks, "logits"]


def penultimate_layer(arch: str, depth: int | None = None) -> str:
    """The layer whose flattened output feeds the final linear classifier."""
    names = probe_layers(arch, depth)
    return names[-2]


def spec_probe_layers(spec: Mapping[str, Any]) -> list[str]:
    """:func:`probe_layers` of a ``models.<name>`` configuration entry (``arch``, ``depth``)."""
    return probe_layers(spec["arch"], spec.get("depth"))
