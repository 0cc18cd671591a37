"""Optional experiment tracking with Weights & Biases: off by default, never required.

A :class:`Tracker` built from the ``tracking`` config section (``enabled: false`` by default)
does nothing at all when disabled: ``wandb`` is not imported and nothing is written. When
enabled it imports ``wandb`` lazily (a clear :class:`TrackingError` when the package is not
installed) and opens one W&B run, by default in **offline** mode (``mode: offline``: the run is
written under ``dir`` and can be uploaded later with ``wandb sync``; no network, no login).
Training jobs log their per-epoch metrics rows (:meth:`Tracker.log_metrics`), analysis jobs
their tables (:meth:`Tracker.log_table`). The pipeline's own files stay the source of truth;
tracking failures in the middle of a run are reported to the log and never stop the job.

Config keys (``tracking:``): ``enabled`` (bool, false), ``project`` (str, ``"mfoml"``),
``entity`` (str or null), ``mode`` (``offline`` | ``online`` | ``disabled``; ``offline``),
``dir`` (str or null: the W&B directory; default the job's output directory), ``tags`` (list).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["TRACKING_DEFAULTS", "Tracker", "TrackingError", "tracker_from_config"]

TRACKING_DEFAULTS: dict[str, Any] = {
    "enabled": False,
    "project": "mfoml",
    "entity": None,
    "mode": "offline",
    "dir": None,
    "tags": [],
}
_MODES = ("offline", "online", "disabled")

log = logging.getLogger(__name__)


class TrackingError(RuntimeError):
    """Tracking is enabled but cannot work (package missing, bad setting)."""


def _import_wandb() -> Any:
    try:
        return importlib.import_module("wandb")
    except ImportError as exc:
        raise TrackingError(
            "tracking.enabled is true but the 'wandb' package is not installed: install it "
            "(pip install wandb) or set tracking.enabled: false"
        ) from exc


class Tracker:
    """One W&B run, or a no-op when disabled.

    Parameters
    ----------
    enabled : False: every method is a no-op and ``wandb`` is never imported.
    project, entity, mode, dir, tags : passed to ``wandb.init`` (see the module docstring).
    name : run name (e.g. the pipeline's run id).
    group : run group (e.g. the sweep name).
    job_type : ``"train"``, ``"ncc"``, ...
    config : run configuration (JSON-able mapping) shown in W&B.

    Problems while logging are reported as warnings on the logger ``mfoml.tracking``.
    """

    def __init__(
        self,
        *,
        enabled: bool = False,
        project: str = "mfoml",
        entity: str | None = None,
        mode: str = "offline",
        dir: str | None = None,  # noqa: A002 - W&B's name
        tags: Sequence[str] = (),
        name: str | None = None,
        group: str | None = None,
        job_type: str | None = None,
        config: Mapping[str, Any] | None = None,
    ) -> None:
        self.enabled = bool(enabled)
        self._run: Any = None
        self._wandb: Any = None
        if not self.enabled:
            return
        if mode not in _MODES:
            raise TrackingError(f"tracking.mode must be one of {_MODES}, got {mode!r}")
        self._wandb = _import_wandb()
        self._run = self._wandb.init(
            project=project,
            entity=entity,
            mode=mode,
            dir=dir,
            tags=list(tags),
            name=name,
            group=group,
            job_type=job_type,
            config=dict(config or {}),
        )

    @property
    def active(self) -> bool:
        """True when a W&B run is open."""
        return self._run is not None

    def log_metrics(self, row: Mapping[str, Any], step: int | None = None) -> None:
        """Log one row of scalars (e.g. a ``metrics.csv`` row) at ``step``."""
        if self._run is None:
            return
        clean = {k: v for k, v in row.items() if isinstance(v, int | float) and k != "step"}
        try:
            self._run.log(clean, step=step)
        except Exception as exc:  # tracking must never stop a job
            log.warning("W&B log_metrics failed: %s: %s", type(exc).__name__, exc)

    def log_table(self, key: str, frame: Any) -> None:
        """Log a pandas DataFrame as a W&B table under ``key``."""
        if self._run is None:
            return
        try:
            self._run.log({key: self._wandb.Table(dataframe=frame)})
        except Exception as exc:
            log.warning("W&B log_table %r failed: %s: %s", key, type(exc).__name__, exc)

    def finish(self) -> None:
        """Close the run (idempotent)."""
        if self._run is None:
            return
        run, self._run = self._run, None
        try:
            run.finish()
        except Exception as exc:
            log.warning("W&B finish failed: %s: %s", type(exc).__name__, exc)

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.finish()


def tracker_from_config(
    section: Mapping[str, Any] | None,
    *,
    name: str | None = None,
    group: str | None = None,
    job_type: str | None = None,
    config: Mapping[str, Any] | None = None,
    default_dir: str | None = None,
) -> Tracker:
    """A :class:`Tracker` from the ``tracking`` config section (``None``: disabled).

    Unknown keys are a :class:`TrackingError` naming them; ``dir`` defaults to ``default_dir``.
    """
    sec = dict(section or {})
    unknown = sorted(set(sec) - set(TRACKING_DEFAULTS))
    if unknown:
        raise TrackingError(
            f"tracking: unknown key(s) {unknown}; known: {sorted(TRACKING_DEFAULTS)}"
        )
    opts = {**TRACKING_DEFAULTS, **sec}
    return Tracker(
        enabled=bool(opts["enabled"]),
        project=str(opts["project"]),
        entity=opts["entity"],
        mode=str(opts["mode"]),
        dir=opts["dir"] if opts["dir"] is not None else default_dir,
        tags=list(opts["tags"] or []),
        name=name,
        group=group,
        job_type=job_type,
        config=config,
    )
