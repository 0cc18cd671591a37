"""What every per-run dynamics rule's job does before it measures anything (rules
``dynamics_checkpoints``, ``dynamics_trajectory``, ``dynamics_interpolation_run`` and
``dynamics_interpolation_pair``): read its parameter slice and set up torch.

The rule script's Snakemake object is read through its attributes only (``params.cfg``,
``threads``); the package never imports Snakemake.
"""

from __future__ import annotations

import json
from typing import Any

import torch

from mfoml.dynamics._common import resolve_device

__all__ = ["job_settings"]


def job_settings(job: Any) -> tuple[dict[str, Any], torch.device]:
    """The job's settings, and torch set up for it.

    Parameters
    ----------
    job : a rule script's ``snakemake`` object: ``job.params.cfg`` is the rule's canonical JSON
        parameter slice (``mfoml.config.dynamics.dynamics_params``, with a ``device`` entry),
        ``job.threads`` the cores Snakemake gave the job.

    Returns
    -------
    ``(cfg, device)``: the parsed slice and its ``device`` resolved (``"auto"``: CUDA when
    available, else CPU). Sets torch's intra-op threads to ``job.threads`` (at least 1).
    """
    cfg = json.loads(job.params.cfg)
    torch.set_num_threads(max(1, int(job.threads)))
    return cfg, resolve_device(cfg.get("device", "auto"))
