"""Probe-layer names of a model specification, without torch (the one naming rule).

:func:`probe_layer_names` gives the ordered probe layers :func:`mfoml.nets.models.build_model`
builds for a specification, so that a configuration can be checked (e.g. ``probe.layers``)
before any job runs; :class:`mfoml.nets.models.ProbedModel` takes its ``probe_layers`` from
here.

The rule (``L`` = depth, blocks ``block1..blockL``):

``probe_point="post"`` (default)
    each block's output after its activation: ``input, [stem,] block1, ..., blockL, logits``.
``probe_point="pre"``
    each block's output *before* its activation (after BatchNorm when the model has it), named
    ``<block>_pre``, then the true penultimate layer (the post-activation output of the last
    block, which feeds the classifier: NC3/NC4 and the classifier weight refer to it), then the
    logits: ``input, [stem_pre,] block1_pre, ..., blockL_pre, blockL, logits``.

``resnet18`` has ``input, stem, layer1..layer4, pool, logits`` and only ``"post"``.

Text encoders (only ``"post"``): ``transformer`` (mfoml.nets.transformer, default depth 2) has
``input, embeddings, block1..blockL, pooled, logits``; ``hf`` (mfoml.nets.hf) has
``input, embeddings, layer1..layerL, pooled, logits`` with ``L`` the model's
``num_hidden_layers`` (:func:`hf_depth` reads it from a local model directory's
``config.json``).
"""

from __future__ import annotations

import json
from pathlib import Path

__all__ = [
    "DEFAULT_DEPTH_WIDTH",
    "TRANSFORMER_DEFAULT_DEPTH",
    "PRE_SUFFIX",
    "PROBE_POINTS",
    "block_names",
    "hf_depth",
    "penultimate_layer_name",
    "probe_layer_names",
]

#: ``(depth, width)`` used when a specification leaves them unset.
DEFAULT_DEPTH_WIDTH = {"mlp": (4, 100), "conv": (3, 32), "conv1d": (3, 32)}
PROBE_POINTS = ("post", "pre")
#: Suffix of a block's pre-activation probe layer.
PRE_SUFFIX = "_pre"
_RESNET_STAGES = ["stem", "layer1", "layer2", "layer3", "layer4", "pool"]
#: Blocks of a ``transformer`` specification that leaves ``depth`` unset.
TRANSFORMER_DEFAULT_DEPTH = 2


def block_names(arch: str, depth: int | None = None) -> list[str]:
    """The stages before the head, in order (``stem`` first for ``conv``), e.g. ``block1..blockL``."""
    arch = str(arch).lower()
    if arch == "resnet18":
        return list(_RESNET_STAGES)
    if arch not in DEFAULT_DEPTH_WIDTH:
        raise ValueError(f"arch: unknown architecture {arch!r}")
    depth = DEFAULT_DEPTH_WIDTH[arch][0] if depth is None else int(depth)
    blocks = [f"block{i + 1}" for i in range(depth)]
    return (["stem"] if arch == "conv" else []) + blocks


def penultimate_layer_name(arch: str, depth: int | None = None) -> str:
    """The layer whose (flattened, post-activation) output feeds the final linear classifier."""
    return block_names(arch, depth)[-1]


def probe_layer_names(arch: str, depth: int | None = None, probe_point: str = "post") -> list[str]:
    """Ordered probe-layer names of a model specification (see the module docstring).

    Parameters
    ----------
    arch : ``mlp, conv, conv1d, resnet18, transformer, hf``.
    depth : number of blocks ``L`` (``None``: the architecture's default; required for ``hf``).
    probe_point : ``"post"`` or ``"pre"`` (not for ``resnet18``).

    Returns
    -------
    list of names, first ``"input"``, last ``"logits"``.
    """
    if probe_point not in PROBE_POINTS:
        raise ValueError(f"probe_point: must be one of {PROBE_POINTS}, got {probe_point!r}")
    text = {"transformer": "block", "hf": "layer"}.get(str(arch).lower())
    if text is not None:
        if probe_point != "post":
            raise ValueError(f"probe_point {probe_point!r} does not apply to arch {arch!r}")
        if depth is None and text == "layer":
            raise ValueError("arch 'hf': the depth comes from the model's config (hf_depth)")
        n = TRANSFORMER_DEFAULT_DEPTH if depth is None else int(depth)
        return ["input", "embeddings", *(f"{text}{i + 1}" for i in range(n)), "pooled", "logits"]
    blocks = block_names(arch, depth)
    if probe_point == "post":
        return ["input", *blocks, "logits"]
    if str(arch).lower() == "resnet18":
        raise ValueError("probe_point 'pre' does not apply to arch 'resnet18'")
    return ["input", *[b + PRE_SUFFIX for b in blocks], blocks[-1], "logits"]


def hf_depth(pretrained: str | Path) -> int | None:
    """``num_hidden_layers`` (or DistilBERT's ``n_layers``) of a local HuggingFace model
    directory's ``config.json``; ``None`` when ``pretrained`` is not such a directory (a hub
    id: the job finds out)."""
    path = Path(str(pretrained)) / "config.json"
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    for key in ("num_hidden_layers", "n_layers"):
        if isinstance(cfg.get(key), int):
            return int(cfg[key])
    return None
