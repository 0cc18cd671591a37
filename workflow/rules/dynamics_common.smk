# Planning of the training-dynamics rules (workflow/rules/dynamics.smk; issue 13): which optional
# parts the configuration switches on (`dynamics`, `train.sharpness_every`), their inputs, outputs
# and parameter slices, and the targets added to rule `all`.

import json

from mfoml.config import canonical_json
from mfoml.config.dynamics import dynamics_enabled, dynamics_params, interpolation_pairs

DYN = dynamics_enabled(config)
PAIRS = interpolation_pairs(config) if DYN["pairs"] else []
EOS = any(int(r.train.get("sharpness_every") or 0) > 0 for r in RUNS.values())


def _run_inputs(wildcards):
    run = run_of(wildcards)
    return {
        "checkpoints": checkpoints_dir(run.run_id),
        "data": data_dir(run.dataset),
    }


def _pair_inputs(wildcards):
    pair = PAIRS[int(wildcards.pair)]
    return {
        "a": checkpoints_dir(pair["a"]),
        "b": checkpoints_dir(pair["b"]),
        "data": data_dir(RUNS[pair["a"]].dataset),
    }


def _pair_params(wildcards):
    pair = PAIRS[int(wildcards.pair)]
    base = json.loads(dynamics_params(config, "pair"))
    return canonical_json({**base, **pair, "seed": RUNS[pair["a"]].seed})


def dynamics_table_outputs():
    """The tables of the enabled optional parts."""
    out = {}
    if DYN["checkpoint"]:
        out["checkpoint"] = "results/tables/dynamics_checkpoints.csv"
    if DYN["trajectory"]:
        out["trajectory_surface"] = "results/tables/dynamics_trajectory_surface.csv"
        out["trajectory_path"] = "results/tables/dynamics_trajectory_path.csv"
    if DYN["pairs"] or DYN["within"]:
        out["interpolation"] = "results/tables/dynamics_interpolation.csv"
    return out


def dynamics_table_inputs():
    inputs = {}
    if DYN["checkpoint"]:
        inputs["checkpoint"] = [f"results/runs/{r}/dynamics.csv" for r in RUN_IDS]
    if DYN["trajectory"]:
        inputs["trajectory_surface"] = [
            f"results/runs/{r}/trajectory_surface.csv" for r in RUN_IDS
        ]
        inputs["trajectory_path"] = [
            f"results/runs/{r}/trajectory_path.csv" for r in RUN_IDS
        ]
    if DYN["within"]:
        inputs["within"] = [f"results/runs/{r}/interpolation.csv" for r in RUN_IDS]
    if DYN["pairs"]:
        inputs["pairs"] = [f"results/interpolation/pair{p['index']}.csv" for p in PAIRS]
    return inputs


def dynamics_figure_outputs():
    """Figure name -> path: the three cheap ones always, the optional ones when enabled."""
    names = ["gradnorm_epochs", "error_params", "geometry_layers"]
    if EOS:
        names.append("sharpness_epochs")
    if DYN["checkpoint"]:
        names.append("dynamics_checkpoints")
    if DYN["pairs"] or DYN["within"]:
        names.append("interpolation")
    if DYN["trajectory"]:
        names.append("trajectory")
    return {n: f"results/figures/{n}.{FIG_EXT}" for n in names}


def dynamics_targets():
    """Tables and figures of this track (none without runs)."""
    if not RUN_IDS:
        return []
    return list(dynamics_table_outputs().values()) + list(
        dynamics_figure_outputs().values()
    )
