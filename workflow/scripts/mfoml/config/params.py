"""Per-rule parameter slices of the configuration, as canonical JSON.

Each rule receives as ``params`` only its own slice of the configuration, as a canonical JSON
string (:func:`canonical_json`: sorted keys, no whitespace variation), so that Snakemake's
params trigger reruns exactly the jobs whose settings changed.
"""

from __future__ import annotations

import json
from typing import Any

from mfoml.config.runs import Run, run_table


def canonical_json(obj: Any) -> str:
    """Deterministic JSON text (sorted keys, compact separators) of ``obj``."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def rule_params(config: dict[str, Any], rule: str, run: Run | None = None) -> str:
    """The slice of config a rule depends on, as canonical JSON.

    Parameters
    ----------
    config : validated configuration.
    rule : ``data`` (needs ``run`` = None; use :func:`dataset_options`), ``folds``, ``train``
        (also the self-supervised runs' ``train_ssl``: with ``ssl_augment``), ``activations``,
        ``probe``, ``ncc``, ``aggregate`` (the supervised runs), ``figures``, ``ssl_eval``,
        ``ssl_aggregate`` (the self-supervised runs).
    run : the run (for ``train`` and ``activations``).
    """
    if rule == "folds":
        return canonical_json(config["folds"])
    if rule == "train":
        if run is None:
            raise ValueError("rule_params('train') needs a run")
        ssl = {"ssl_augment": config["ssl"]["augment"]} if run.is_ssl else {}
        return canonical_json(
            {
                **ssl,
                "run": run.run_id,
                "dataset": run.dataset,
                "model": run.model_spec,
                "activation": run.activation,
                "loss": run.loss_spec,
                "noise": run.noise,
                "seed": run.seed,
                "fold": run.fold,
                "train": run.train,
                "transfer": run.transfer,
                "pretrained": run.pretrained,
                "device": config["device"],
            }
        )
    if rule == "activations":
        if run is None:
            raise ValueError("rule_params('activations') needs a run")
        return canonical_json(
            {
                # `keep` (temp() or not) changes no dump: left out so toggling it reruns nothing
                **{k: v for k, v in config["activations"].items() if k != "keep"},
                "dataset": run.dataset,
                "analysis_dataset": run.analysis_dataset,
                "fold": run.fold,
                "device": config["device"],
            }
        )
    if rule in ("probe", "ncc", "figures"):
        return canonical_json(config[rule])
    if rule == "aggregate":
        return canonical_json(
            {
                **config["aggregate"],
                "name": config["name"],
                # what the per-run tables must hold (mfoml.analysis.tablecheck)
                "tables": {
                    "probe_splits": config["probe"]["splits"],
                    "probe_layers": config["probe"]["layers"],
                    "ncc_layers": config["ncc"]["layers"],
                },
                # the supervised runs (self-supervised ones are summarised by ssl_aggregate)
                "runs": [r.metadata() for r in run_table(config) if not r.is_ssl],
            }
        )
    if rule == "ssl_eval":
        return canonical_json({**config["ssl"]["eval"], "probe": config["probe"]})
    if rule == "ssl_aggregate":
        return canonical_json(
            {"name": config["name"], "runs": [r.metadata() for r in run_table(config) if r.is_ssl]}
        )
    raise ValueError(f"rule_params: unknown rule {rule!r}")
