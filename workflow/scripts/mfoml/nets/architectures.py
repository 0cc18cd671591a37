"""Every network architecture by name: one ``build_model`` for the whole pipeline.

The architectures and their builders are listed once, in :mod:`mfoml.nets.registry`
(``mlp, conv, conv1d, resnet18`` by :func:`mfoml.nets.models.build_model`, ``transformer`` by
:func:`mfoml.nets.transformer.build_transformer`, ``hf`` by :func:`mfoml.nets.hf.build_hf`,
``torchvision`` by :func:`mfoml.nets.tvmodels.build_torchvision`, ``module`` by
:func:`mfoml.nets.usermodule.build_module`); a builder's module is imported only when a model of
its architecture is built. A checkpoint's ``model_spec`` holds ``arch`` and the keyword arguments
of its builder, so ``build_model(**spec)`` rebuilds any of them
(:func:`mfoml.nets.checkpoints.load_checkpoint` does).

The run's ``activation`` reaches the builders of the registry entries with
``uses_activation`` (``transformer`` takes it as its feed-forward nonlinearity); ``hf``,
``torchvision`` and ``module`` networks keep their own nonlinearities.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Any

from mfoml.nets.models import ProbedModel
from mfoml.nets.registry import arch_info, arch_names, text_arch_names

__all__ = ["ARCHITECTURES", "TEXT_ARCHITECTURES", "build_model", "text_model_kwargs"]

TEXT_ARCHITECTURES: tuple[str, ...] = text_arch_names()
ARCHITECTURES: tuple[str, ...] = arch_names()


def build_model(
    arch: str, input_shape: Sequence[int], n_classes: int, **kwargs: Any
) -> ProbedModel:
    """Build a :class:`~mfoml.nets.models.ProbedModel` of architecture ``arch``.

    ``kwargs`` are those of the architecture's builder (:mod:`mfoml.nets.registry`);
    ``activation`` is dropped for the architectures that keep their own.
    """
    info = arch_info(arch)
    module, function = info.builder.split(":")
    builder = getattr(importlib.import_module(module), function)
    if not info.uses_activation:
        kwargs.pop("activation", None)
    if info.takes_arch:
        return builder(info.name, input_shape, n_classes, **kwargs)
    return builder(input_shape, n_classes, **kwargs)


def text_model_kwargs(arch: str, tokenizer_meta: dict[str, Any]) -> dict[str, Any]:
    """The builder arguments a text architecture takes from its data set's tokenizer.

    ``tokenizer_meta`` is ``meta["tokenizer"]`` of a text data set (``vocab_size``,
    ``special_ids``). ``transformer``: ``vocab_size`` and ``pad_id``; ``hf``: ``pad_id`` and
    ``sep_id`` (token types of sentence pairs); other architectures: nothing.
    """
    ids = tokenizer_meta["special_ids"]
    if arch == "transformer":
        return {"vocab_size": int(tokenizer_meta["vocab_size"]), "pad_id": int(ids["pad"])}
    if arch == "hf":
        sep = ids.get("sep")
        return {"pad_id": int(ids["pad"]), "sep_id": None if sep is None else int(sep)}
    return {}
