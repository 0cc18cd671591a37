"""Self-supervised losses in the configuration: their types, their keys, and the checks.

A loss whose ``type`` is one of :data:`SSL_LOSS_TYPES` makes its runs self-supervised (rule
``train_ssl``, no labels; ``mfoml.nets.ssl``). :func:`ssl_problems` lists what a schema-valid
configuration gets wrong about them, each message naming its key:

- a hyper-parameter of another objective (``temperature`` on a ``vicreg`` loss), or an SSL key
  (a hyper-parameter or ``projector``) on a ``ce``/``svsl`` loss;
- a sweep that trains an SSL loss with label noise (the labels are not used in training) or with
  ``transfer`` (not supported for SSL runs);
- a DINO loss with ``local_crops.number > 0`` (multi-crop) in a sweep over a data set that is not
  made of images (its kind, from the data-set registry: a 1-D signal has no crop);
- ``ssl.eval.test_split`` not among ``activations.splits``.
"""

from __future__ import annotations

from typing import Any

from mfoml.data.catalog import find_source

__all__ = ["SSL_LOSS_KEYS", "SSL_LOSS_TYPES", "is_ssl_loss", "ssl_problems"]

#: Loss types trained without labels (``mfoml.nets.ssl.SSL_TYPES``).
SSL_LOSS_TYPES = ("simclr", "vicreg", "barlow", "byol", "dino")
#: The configuration keys of each objective (``mfoml.nets.ssl.SSL_DEFAULTS`` without ``eps``).
SSL_LOSS_KEYS: dict[str, tuple[str, ...]] = {
    "simclr": ("temperature",),
    "vicreg": ("invariance_weight", "variance_weight", "covariance_weight", "variance_target"),
    "barlow": ("offdiag_weight",),
    "byol": ("tau", "cosine_tau", "predictor_width", "predictor_depth"),
    "dino": (
        "out_dim",
        "student_temp",
        "teacher_temp",
        "teacher_temp_start",
        "teacher_temp_warmup_epochs",
        "center_momentum",
        "tau",
        "cosine_tau",
        "local_crops",
    ),
}
_ALL_KEYS = sorted({k for keys in SSL_LOSS_KEYS.values() for k in keys})


def is_ssl_loss(spec: dict[str, Any]) -> bool:
    """Whether a configured loss (``losses.<name>``) is a self-supervised objective."""
    return spec.get("type") in SSL_LOSS_TYPES


def ssl_problems(config: dict[str, Any]) -> list[str]:
    """Problems of a schema-valid configuration with its self-supervised losses (messages)."""
    errors: list[str] = []
    ssl_losses = set()
    for name, spec in config["losses"].items():
        kind = spec.get("type")
        own = SSL_LOSS_KEYS.get(kind, ())
        wrong = [k for k in _ALL_KEYS if k in spec and k not in own]
        if kind not in SSL_LOSS_TYPES and "projector" in spec:
            wrong.append("projector")
        for k in wrong:
            users = [t for t, keys in SSL_LOSS_KEYS.items() if k in keys] or list(SSL_LOSS_TYPES)
            errors.append(
                f"config key 'losses.{name}.{k}': applies to loss type(s) {', '.join(users)} "
                f"only, not {kind!r}"
            )
        if kind in SSL_LOSS_TYPES:
            ssl_losses.add(name)
    if not ssl_losses:
        return errors
    for i, sweep in enumerate(config.get("sweeps", [])):
        used = [loss for loss in sweep.get("losses", []) if loss in ssl_losses]
        if not used:
            continue
        if any(float(x) != 0.0 for x in sweep.get("noise", [0.0])):
            errors.append(
                f"config key 'sweeps[{i}].noise': self-supervised losses {used} do not use the "
                "labels in training, so label noise does not apply (use noise [0.0] or put them "
                "in another sweep)"
            )
        if sweep.get("transfer"):
            errors.append(
                f"config key 'sweeps[{i}].transfer': not supported for self-supervised losses "
                f"{used}"
            )
        errors.extend(_multi_crop_problems(config, i, sweep, used))
    split = config["ssl"]["eval"]["test_split"]
    if split not in config["activations"]["splits"]:
        errors.append(
            f"config key 'ssl.eval.test_split': split {split!r} is not dumped "
            f"(activations.splits = {sorted(config['activations']['splits'])})"
        )
    return errors


def _multi_crop_problems(
    config: dict[str, Any], i: int, sweep: dict[str, Any], used: list[str]
) -> list[str]:
    """DINO's multi-crop needs images: a data set of another known kind is an error."""
    errors = []
    for loss in used:
        number = int((config["losses"][loss].get("local_crops") or {}).get("number", 0))
        if number == 0:
            continue
        variants = config.get("data", {}).get("variants", {})
        for dataset in sweep.get("datasets", []):
            info = find_source(str(variants.get(dataset, {}).get("source", dataset)))
            kind = info.kind if info is not None else None
            if kind is not None and kind != "image":
                errors.append(
                    f"config key 'losses.{loss}.local_crops.number': {number} local crops need "
                    f"image data, but sweeps[{i}] trains it on {dataset!r} (a {kind} data set, "
                    "which has no crop: DINO uses its two views; set local_crops.number 0)"
                )
    return errors
