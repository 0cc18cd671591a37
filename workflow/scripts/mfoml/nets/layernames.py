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
"""

from __future__ import annotations

__all__ = [
    "DEFAULT_DEPTH_WIDTH",
    "PRE_SUFFIX",
    "PROBE_POINTS",
    "block_names",
    "penultimate_layer_name",
    "probe_layer_names",
]

#: ``(depth, width)`` used when a specification leaves them unset.
DEFAULT_DEPTH_WIDTH = {"mlp": (4, 100), "conv": (3, 32), "conv1d": (3, 32)}
PROBE_POINTS = ("post", "pre")
#: Suffix of a block's pre-activation probe layer.
PRE_SUFFIX = "_pre"
_RESNET_STAGES = ["stem", "layer1", "layer2", "layer3", "layer4", "pool"]


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
    arch : ``mlp, conv, conv1d, resnet18``.
    depth : number of blocks ``L`` (``None``: the architecture's default).
    probe_point : ``"post"`` or ``"pre"`` (not for ``resnet18``).

    Returns
    -------
    list of names, first ``"input"``, last ``"logits"``.
    """
    if probe_point not in PROBE_POINTS:
        raise ValueError(f"probe_point: must be one of {PROBE_POINTS}, got {probe_point!r}")
    blocks = block_names(arch, depth)
    if probe_point == "post":
        return ["input", *blocks, "logits"]
    if str(arch).lower() == "resnet18":
        raise ValueError("probe_point 'pre' does not apply to arch 'resnet18'")
    return ["input", *[b + PRE_SUFFIX for b in blocks], blocks[-1], "logits"]
