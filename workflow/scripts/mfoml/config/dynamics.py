"""The optional training-dynamics rules in the configuration: cross checks and parameter slices.

``dynamics`` (config/schema/dynamics.schema.yaml) switches on per-run rules; this module checks,
before any job, what the schema cannot (interpolation pairs name runs of this configuration with
the same data set and architecture, the trajectory has at least three checkpoints per run, the
listed checkpoint epochs exist) and gives each rule its slice of the configuration as canonical
JSON (so that Snakemake's params trigger reruns exactly the affected jobs). Torch-free.
"""

from __future__ import annotations

import json
from typing import Any

from mfoml.config.runs import Run, run_table

__all__ = [
    "check_dynamics",
    "dynamics_enabled",
    "dynamics_params",
    "interpolation_pairs",
]


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def _ckpts(run: Run) -> list[int]:
    return sorted({int(e) for e in run.train["checkpoints"]})


def dynamics_enabled(config: dict[str, Any]) -> dict[str, bool]:
    """Which optional parts are on: ``checkpoint`` (sharpness or sensitivity), ``trajectory``,
    ``pairs`` (interpolation between runs), ``within`` (between a run's checkpoints)."""
    d = config.get("dynamics") or {}
    return {
        "checkpoint": bool(d.get("sharpness", {}).get("enabled"))
        or bool(d.get("sensitivity", {}).get("enabled")),
        "trajectory": bool(d.get("trajectory", {}).get("enabled")),
        "pairs": bool(d.get("interpolation", {}).get("pairs")),
        "within": bool(d.get("interpolation", {}).get("within_runs")),
    }


def interpolation_pairs(config: dict[str, Any]) -> list[dict[str, Any]]:
    """The configured pairs with their epochs resolved (``null`` -> the run's last checkpoint).

    Returns dicts ``{index, a, b, epoch_a, epoch_b}`` (``index`` names ``pair{index}``). Call on
    a checked configuration (unknown runs raise ``KeyError``).
    """
    runs = {r.run_id: r for r in run_table(config)}
    out = []
    for i, p in enumerate(config.get("dynamics", {}).get("interpolation", {}).get("pairs", [])):
        ea = p.get("epoch_a")
        eb = p.get("epoch_b")
        out.append(
            {
                "index": i,
                "a": p["a"],
                "b": p["b"],
                "epoch_a": _ckpts(runs[p["a"]])[-1] if ea is None else int(ea),
                "epoch_b": _ckpts(runs[p["b"]])[-1] if eb is None else int(eb),
            }
        )
    return out


def check_dynamics(config: dict[str, Any], table: list[Run]) -> list[str]:
    """Problems of the ``dynamics`` section, each naming its key (empty list: fine)."""
    errors: list[str] = []
    d = config.get("dynamics") or {}
    if not d:
        return errors
    runs = {r.run_id: r for r in table}
    on = dynamics_enabled(config)
    wanted = d.get("checkpoints", "all")
    if on["checkpoint"] and wanted != "all":
        for run in table:
            missing = sorted(set(int(e) for e in wanted) - set(_ckpts(run)))
            if missing:
                errors.append(
                    f"config key 'dynamics.checkpoints': epochs {missing} are not checkpoints of "
                    f"run {run.run_id!r} ({_ckpts(run)})"
                )
                break
    if on["trajectory"]:
        few = [r.run_id for r in table if len(_ckpts(r)) < 3]
        if few:
            errors.append(
                "config key 'dynamics.trajectory.enabled': the weight trajectory needs at least 3 "
                f"checkpoints per run; run {few[0]!r} has {_ckpts(runs[few[0]])} (add epochs to "
                "train.checkpoints)"
            )
    interp = d.get("interpolation", {})
    if interp and not float(interp.get("t_max", 2.0)) > float(interp.get("t_min", -1.0)):
        errors.append(
            "config key 'dynamics.interpolation.t_max': must exceed t_min "
            f"({interp.get('t_min')} >= {interp.get('t_max')})"
        )
    if on["within"]:
        single = [r.run_id for r in table if len(_ckpts(r)) < 2]
        if single:
            errors.append(
                "config key 'dynamics.interpolation.within_runs': needs at least 2 checkpoints "
                f"per run; run {single[0]!r} has one"
            )
    for i, pair in enumerate(interp.get("pairs", [])):
        key = f"dynamics.interpolation.pairs[{i}]"
        ra, rb = runs.get(pair["a"]), runs.get(pair["b"])
        for side, run, rid in (("a", ra, pair["a"]), ("b", rb, pair["b"])):
            if run is None:
                errors.append(
                    f"config key '{key}.{side}': {rid!r} is not a run of this configuration"
                )
                continue
            ep = pair.get(f"epoch_{side}")
            if ep is not None and int(ep) not in _ckpts(run):
                errors.append(
                    f"config key '{key}.epoch_{side}': {ep} is not a checkpoint of {rid!r} "
                    f"({_ckpts(run)})"
                )
        if ra is None or rb is None:
            continue
        ea = _ckpts(ra)[-1] if pair.get("epoch_a") is None else int(pair["epoch_a"])
        eb = _ckpts(rb)[-1] if pair.get("epoch_b") is None else int(pair["epoch_b"])
        if pair["a"] == pair["b"] and ea == eb:
            errors.append(f"config key '{key}': a and b are the same model")
        if ra.dataset != rb.dataset:
            errors.append(
                f"config key '{key}': the runs train on different data sets "
                f"({ra.dataset!r}, {rb.dataset!r})"
            )
        spec_a = {**ra.model_spec, "activation": ra.activation}
        spec_b = {**rb.model_spec, "activation": rb.activation}
        if spec_a != spec_b:
            errors.append(
                f"config key '{key}': the runs have different architectures ({spec_a} vs "
                f"{spec_b}); interpolation needs the same parameter shapes"
            )
    return errors


def dynamics_params(config: dict[str, Any], part: str, run: Run | None = None) -> str:
    """Canonical JSON parameter slice of a dynamics rule.

    ``part``: ``checkpoint`` (rule ``dynamics_checkpoints``), ``trajectory`` (rule
    ``dynamics_trajectory``), ``within`` (rule ``dynamics_interpolation_run``), ``pair`` (rule
    ``dynamics_interpolation_pair``; the pair itself is added by the rule) or ``figures``. ``run`` is needed for the per-run parts.
    """
    d = config["dynamics"]
    base: dict[str, Any] = {"device": config["device"]}
    if run is not None:
        base.update(
            {
                "run": run.run_id,
                "dataset": run.dataset,
                "fold": run.fold,
                "seed": run.seed,
                "checkpoints": _ckpts(run),
            }
        )
    if part == "checkpoint":
        return _canonical(
            {
                **base,
                "epochs": d["checkpoints"],
                "sharpness": d["sharpness"],
                "sensitivity": d["sensitivity"],
            }
        )
    if part == "trajectory":
        return _canonical({**base, **d["trajectory"]})
    if part in ("within", "pair"):
        return _canonical({**base, **{k: v for k, v in d["interpolation"].items() if k != "pairs"}})
    if part == "figures":
        return _canonical({**config["figures"], **dynamics_enabled(config)})
    raise ValueError(f"dynamics_params: unknown part {part!r}")
