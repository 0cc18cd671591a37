"""Every network architecture by name: one ``build_model`` for the whole pipeline.

``mlp, conv, conv1d, resnet18`` are built by :func:`mfoml.nets.models.build_model`,
``transformer`` by :func:`mfoml.nets.transformer.build_transformer` and ``hf`` by
:func:`mfoml.nets.hf.build_hf`. A checkpoint's ``model_spec`` holds ``arch`` and the keyword
arguments of its builder, so ``build_model(**spec)`` rebuilds any of them
(:func:`mfoml.nets.checkpoints.load_checkpoint` does).

The text architectures take the run's ``activation`` as their feed-forward nonlinearity
(``transformer``) or ignore it (``hf``: the pretrained encoder keeps its own).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mfoml.nets import models
from mfoml.nets.hf import build_hf
from mfoml.nets.models import ProbedModel
from mfoml.nets.transformer import build_transformer

__all__ = ["ARCHITECTURES", "TEXT_ARCHITECTURES", "build_model"]

TEXT_ARCHITECTURES: tuple[str, ...] = ("transformer", "hf")
ARCHITECTURES: tuple[str, ...] = (*models.ARCHITECTURES, *TEXT_ARCHITECTURES)


def build_model(
    arch: str, input_shape: Sequence[int], n_classes: int, **kwargs: Any
) -> ProbedModel:
    """Build a :class:`~mfoml.nets.models.ProbedModel` of architecture ``arch``.

    ``kwargs`` are those of the architecture's builder (module docstring); ``activation`` is
    dropped for ``hf``.
    """
    name = str(arch).lower()
    if name == "transformer":
        return build_transformer(input_shape, n_classes, **kwargs)
    if name == "hf":
        kwargs.pop("activation", None)
        return build_hf(input_shape, n_classes, **kwargs)
    if name not in models.ARCHITECTURES:
        raise ValueError(f"arch: unknown architecture {arch!r}; known: {', '.join(ARCHITECTURES)}")
    return models.build_model(name, input_shape, n_classes, **kwargs)
