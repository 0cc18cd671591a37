"""The one registry of network architectures (torch-free: the configuration layer reads it).

Each :class:`ArchInfo` entry says, for one value of a model specification's ``arch``:

- ``builder``: ``"module:function"``, imported only when a model is built
  (:func:`mfoml.nets.architectures.build_model`); the function takes
  ``(input_shape, n_classes, **keys)`` (or ``(arch, input_shape, n_classes, **keys)`` when
  ``takes_arch``);
- ``keys``: the configuration keys of ``models.<name>`` that apply besides ``arch`` (each one a
  property of the ``models`` schema in ``config/config.schema.yaml``);
- ``layers``: ``layers(spec) -> list[str] | None``, the ordered probe-layer names of a
  specification (``None``: known only from the built network, e.g. a HuggingFace hub id, a
  torchvision model or the user's own module; those are checked by
  :mod:`mfoml.config.ownmodels` before any job where possible);
- ``text``: whether the architecture reads token ids (a text data set);
- ``uses_activation``: whether the run's ``activation`` reaches the builder (the others keep
  their own nonlinearities; the sweep's activation only names the run).

The schema's ``arch`` enum, the pre-job layer checks (:mod:`mfoml.config.datasets`),
:func:`mfoml.nets.layernames.probe_layer_names` and ``build_model`` all read this table, and
``tests/test_arch_registry.py`` fails when they disagree. Adding an architecture means one entry
here plus its builder module (and its keys in the schema).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mfoml.nets.layernames import hf_depth, probe_layer_names

__all__ = [
    "ARCHS",
    "ArchInfo",
    "arch_info",
    "arch_names",
    "builder_modules",
    "spec_layer_names",
    "text_arch_names",
]


@dataclass(frozen=True)
class ArchInfo:
    """One architecture of the registry (see the module docstring)."""

    name: str
    builder: str
    keys: frozenset[str]
    layers: Callable[[dict[str, Any]], list[str] | None]
    text: bool = False
    takes_arch: bool = False
    uses_activation: bool = True

    @property
    def module(self) -> str:
        """Dotted name of the builder's module (``mfoml.nets.models``)."""
        return self.builder.split(":", 1)[0]


def _builtin_layers(arch: str) -> Callable[[dict[str, Any]], list[str] | None]:
    def names(spec: dict[str, Any]) -> list[str]:
        return probe_layer_names(arch, spec.get("depth"), spec.get("probe_point", "post"))

    return names


def _hf_layers(spec: dict[str, Any]) -> list[str] | None:
    depth = hf_depth(spec.get("pretrained", ""))
    return None if depth is None else probe_layer_names("hf", depth)


def _from_model(spec: dict[str, Any]) -> None:
    return None


_BLOCKS = frozenset({"depth", "width", "heaviside_slope", "batch_norm", "probe_point"})
_CONV = _BLOCKS | {"stride", "kernel_size", "padding"}
_TRANSFORMER = frozenset(
    {"depth", "d_model", "heads", "d_qk", "d_v", "d_ff", "positional", "attention_scale"}
    | {"norm", "pooling", "dropout"}
)
_OWN = frozenset({"weights", "layers", "replace_head"})
_MODELS = "mfoml.nets.models:build_model"

#: Every architecture by name (the schema's ``arch`` enum, in this order).
ARCHS: dict[str, ArchInfo] = {
    info.name: info
    for info in (
        ArchInfo("mlp", _MODELS, _BLOCKS, _builtin_layers("mlp"), takes_arch=True),
        ArchInfo("conv", _MODELS, _CONV, _builtin_layers("conv"), takes_arch=True),
        ArchInfo("conv1d", _MODELS, _CONV, _builtin_layers("conv1d"), takes_arch=True),
        ArchInfo(
            "resnet18",
            _MODELS,
            frozenset({"residual", "stem", "heaviside_slope"}),
            _builtin_layers("resnet18"),
            takes_arch=True,
        ),
        ArchInfo(
            "transformer",
            "mfoml.nets.transformer:build_transformer",
            _TRANSFORMER,
            _builtin_layers("transformer"),
            text=True,
        ),
        ArchInfo(
            "hf",
            "mfoml.nets.hf:build_hf",
            frozenset({"pretrained", "local_files_only", "pooling", "dropout"}),
            _hf_layers,
            text=True,
            uses_activation=False,
        ),
        ArchInfo(
            "torchvision",
            "mfoml.nets.tvmodels:build_torchvision",
            _OWN | {"name"},
            _from_model,
            uses_activation=False,
        ),
        ArchInfo(
            "module",
            "mfoml.nets.usermodule:build_module",
            _OWN | {"factory", "kwargs"},
            _from_model,
            uses_activation=False,
        ),
    )
}


def arch_names() -> tuple[str, ...]:
    """Every architecture name, in registry order."""
    return tuple(ARCHS)


def text_arch_names() -> tuple[str, ...]:
    """The architectures that read token ids (``text``)."""
    return tuple(n for n, a in ARCHS.items() if a.text)


def builder_modules() -> tuple[str, ...]:
    """The builder modules of every architecture (sorted, unique)."""
    return tuple(sorted({a.module for a in ARCHS.values()}))


def arch_info(arch: str) -> ArchInfo:
    """The entry of ``arch`` (``ValueError`` naming the known ones when there is none)."""
    info = ARCHS.get(str(arch).lower())
    if info is None:
        raise ValueError(f"arch: unknown architecture {arch!r}; known: {', '.join(ARCHS)}")
    return info


def spec_layer_names(spec: dict[str, Any]) -> list[str] | None:
    """Ordered probe-layer names of the model specification ``spec`` (a ``models`` entry),
    or ``None`` when only the built network knows them (see the module docstring)."""
    return arch_info(spec["arch"]).layers(spec)
