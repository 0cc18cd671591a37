"""Configuration checks and parameter slices of the text track (transformers, MLM pretraining).

Called by :func:`mfoml.config.references.check_references` on a schema-valid configuration:
text architectures only on text data sets (and back), their keys only where they apply,
``transfer`` not with text encoders (they start from an MLM stage with ``pretrained``), the
pretraining stages and the sweeps using them consistent (same architecture, activation and
tokenizer), ``tokenizer_from`` naming a text set without a chain. Every message names its key.

The names of the text data sets are repeated here (:data:`TEXT_SOURCES`) so that the
configuration layer stays free of numpy; ``tests/test_text_workflow.py`` checks them against
:data:`mfoml.data.textsets.TEXT_DATASETS` (plus the file source ``textfile``).
"""

from __future__ import annotations

from typing import Any

from mfoml.config.params import canonical_json

__all__ = ["TEXT_ARCHS", "TEXT_SOURCES", "check_text", "pretrain_params", "stage_epochs"]

TEXT_SOURCES: tuple[str, ...] = (
    "textsource",
    "textorder",
    "glue-cola",
    "glue-sst2",
    "glue-mrpc",
    "glue-rte",
    "wikitext2",
    "textfile",  # a user's text file (mfoml.data.filesources)
)
CORPUS_SOURCES: tuple[str, ...] = ("wikitext2",)
TEXT_ARCHS: tuple[str, ...] = ("transformer", "hf")
_TRANSFORMER_KEYS = {"depth", "d_model", "heads", "d_qk", "d_v", "d_ff", "positional"}
_TRANSFORMER_KEYS |= {"attention_scale", "norm", "pooling", "dropout"}
_HF_KEYS = {"pretrained", "local_files_only", "pooling", "dropout"}
_ALLOWED = {
    "transformer": _TRANSFORMER_KEYS,
    "hf": _HF_KEYS,
}
_TEXT_ONLY = (_TRANSFORMER_KEYS | _HF_KEYS) - {"depth"}


def source_of(config: dict[str, Any], dataset: str) -> str:
    """The source name of a data-set id (its variant's ``source``, else the id itself)."""
    variant = config["data"]["variants"].get(dataset)
    return variant["source"] if variant else dataset


def stage_epochs(stage: dict[str, Any]) -> list[int]:
    """The checkpoint epochs of a pretraining stage (its ``checkpoints`` and the last epoch)."""
    return sorted({int(e) for e in stage["checkpoints"]} | {int(stage["epochs"])})


def _tokenizer_from(config: dict[str, Any], dataset: str) -> str | None:
    variant = config["data"]["variants"].get(dataset) or {}
    return (variant.get("text") or {}).get("tokenizer_from")


def _check_models(config: dict[str, Any], errors: list[str]) -> None:
    for name, spec in config["models"].items():
        arch = spec["arch"]
        keys = set(spec) - {"arch"}
        if arch in TEXT_ARCHS:
            extra = sorted(keys - _ALLOWED[arch])
            if extra:
                errors.append(
                    f"config key 'models.{name}': {extra} do not apply to arch {arch!r} "
                    f"(allowed: {sorted(_ALLOWED[arch])})"
                )
            if arch == "hf" and "pretrained" not in spec:
                errors.append(f"config key 'models.{name}.pretrained': required for arch 'hf'")
        else:
            extra = sorted(keys & _TEXT_ONLY)
            if extra:
                errors.append(
                    f"config key 'models.{name}': {extra} apply to text architectures only"
                )


def _check_data(config: dict[str, Any], errors: list[str]) -> None:
    variants = config["data"]["variants"]
    for name, variant in variants.items():
        text = variant.get("text")
        if text is None:
            continue
        if variant["source"] not in TEXT_SOURCES:
            errors.append(
                f"config key 'data.variants.{name}.text': source {variant['source']!r} is not a "
                f"text data set ({', '.join(TEXT_SOURCES)})"
            )
        src = text.get("tokenizer_from")
        if src is None:
            continue
        if src == name or source_of(config, src) not in TEXT_SOURCES:
            errors.append(
                f"config key 'data.variants.{name}.text.tokenizer_from': {src!r} is not another "
                "text data set"
            )
        elif _tokenizer_from(config, src) is not None:
            errors.append(
                f"config key 'data.variants.{name}.text.tokenizer_from': {src!r} takes its own "
                "tokenizer from another set; name that set directly"
            )


def _check_pretrain(config: dict[str, Any], errors: list[str]) -> None:
    for name, stage in config.get("pretrain", {}).items():
        key = f"pretrain.{name}"
        model = config["models"].get(stage["model"])
        if model is None:
            errors.append(
                f"config key '{key}.model': {stage['model']!r} is not defined under 'models'"
            )
        elif model["arch"] != "transformer":
            errors.append(
                f"config key '{key}.model': MLM pretraining needs arch 'transformer', "
                f"{stage['model']!r} is {model['arch']!r}"
            )
        if source_of(config, stage["dataset"]) not in TEXT_SOURCES:
            errors.append(
                f"config key '{key}.dataset': {stage['dataset']!r} is not a text data set"
            )
        bad = [e for e in stage["checkpoints"] if int(e) > int(stage["epochs"])]
        if bad:
            errors.append(f"config key '{key}.checkpoints': epochs {bad} exceed {key}.epochs")


def _check_sweeps(config: dict[str, Any], errors: list[str]) -> None:
    stages = config.get("pretrain", {})
    for i, sweep in enumerate(config.get("sweeps", [])):
        key = f"sweeps[{i}]"
        archs = {config["models"][m]["arch"] for m in sweep["models"] if m in config["models"]}
        text_models = archs & set(TEXT_ARCHS)
        for ds in sweep["datasets"] + (
            [sweep["analysis_dataset"]] if sweep.get("analysis_dataset") else []
        ):
            src = source_of(config, ds)
            is_text = src in TEXT_SOURCES
            if src in CORPUS_SOURCES:
                errors.append(
                    f"config key '{key}.datasets': {ds!r} is a corpus without labels (use it in "
                    "`pretrain`)"
                )
            elif is_text and archs - set(TEXT_ARCHS):
                errors.append(
                    f"config key '{key}.models': {sorted(archs - set(TEXT_ARCHS))} cannot read the "
                    f"text data set {ds!r} (use arch transformer or hf)"
                )
            elif not is_text and text_models:
                errors.append(
                    f"config key '{key}.models': arch {sorted(text_models)} needs a text data set, "
                    f"{ds!r} is not one"
                )
        if text_models and sweep.get("transfer"):
            errors.append(
                f"config key '{key}.transfer': not for text encoders; start them from an MLM "
                "stage with `pretrained`"
            )
        pre = sweep.get("pretrained")
        if not pre:
            continue
        stage = stages.get(pre["stage"])
        if stage is None:
            errors.append(
                f"config key '{key}.pretrained.stage': {pre['stage']!r} is not defined under "
                f"'pretrain' (defined: {', '.join(sorted(stages)) or 'none'})"
            )
            continue
        if pre.get("epoch") is not None and int(pre["epoch"]) not in stage_epochs(stage):
            errors.append(
                f"config key '{key}.pretrained.epoch': {pre['epoch']} is not a checkpoint of "
                f"stage {pre['stage']!r} ({stage_epochs(stage)})"
            )
        stage_model = config["models"].get(stage["model"])
        for m in sweep["models"]:
            if m in config["models"] and config["models"][m] != stage_model:
                errors.append(
                    f"config key '{key}.models': {m!r} differs from the architecture of "
                    f"stage {pre['stage']!r} (model {stage['model']!r})"
                )
        acts = set(sweep.get("activations", ["relu"]))
        if acts != {stage["activation"]}:
            errors.append(
                f"config key '{key}.activations': {sorted(acts)}, but stage {pre['stage']!r} "
                f"was pretrained with {stage['activation']!r}"
            )
        for ds in sweep["datasets"] + (
            [sweep["analysis_dataset"]] if sweep.get("analysis_dataset") else []
        ):
            if ds != stage["dataset"] and _tokenizer_from(config, ds) != stage["dataset"]:
                errors.append(
                    f"config key '{key}.datasets': {ds!r} must share the tokenizer of stage "
                    f"{pre['stage']!r} (a data.variants entry with text.tokenizer_from: "
                    f"{stage['dataset']})"
                )


def check_text(config: dict[str, Any]) -> list[str]:
    """Problems of the text track in a schema-valid configuration (empty when none)."""
    errors: list[str] = []
    _check_models(config, errors)
    _check_data(config, errors)
    _check_pretrain(config, errors)
    _check_sweeps(config, errors)
    return errors


def pretrain_params(config: dict[str, Any], name: str) -> str:
    """Parameters of the ``pretrain`` rule for stage ``name`` (canonical JSON)."""
    stage = dict(config["pretrain"][name])
    return canonical_json(
        {
            "stage": name,
            **stage,
            "model_spec": dict(config["models"][stage["model"]]),
            "checkpoints": stage_epochs(stage),
            "device": config["device"],
        }
    )
