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
from mfoml.nets.models import ProbedModel

__all__ = ["ARCHITECTURES", "TEXT_ARCHITECTURES", "build_model", "text_model_kwargs"]

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
    # imported here: the jobs of the other architectures neither load nor depend on them
    if name == "transformer":
        from mfoml.nets.transformer import build_transformer

        return build_transformer(input_shape, n_classes, **kwargs)
    if name == "hf":
        from mfoml.nets.hf import build_hf

        kwargs.pop("activation", None)
        return build_hf(input_shape, n_classes, **kwargs)
    if name not in models.ARCHITECTURES:
        raise ValueError(f"arch: unknown architecture {arch!r}; known: {', '.join(ARCHITECTURES)}")
    return models.build_model(name, input_shape, n_classes, **kwargs)


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
