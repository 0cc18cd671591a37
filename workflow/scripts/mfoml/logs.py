"""Logging of rule scripts into their Snakemake ``log:`` file.

:func:`setup_logging` sends the ``logging`` records, ``print`` output, warnings and uncaught
tracebacks of a rule script to its log file, so that every job leaves a complete log.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

__all__ = ["setup_logging"]


def setup_logging(log_file: str | os.PathLike[str] | None, name: str = "mfoml") -> logging.Logger:
    """Redirect stdout/stderr (file descriptors 1 and 2) to ``log_file`` and return a logger.

    Parameters
    ----------
    log_file : the job's log file (created, appended to); ``None`` keeps the terminal.
    name : logger name (appears in every line).

    Returns
    -------
    logging.Logger at INFO level writing ``time level name: message`` lines to stderr (the
    log file when redirected).
    """
    if log_file is not None:
        path = Path(log_file)
        path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(path, "a", buffering=1, encoding="utf-8")  # noqa: SIM115 (lives with the process)
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(fh.fileno(), 1)
        os.dup2(fh.fileno(), 2)
        sys.stdout = fh
        sys.stderr = fh
    logging.captureWarnings(True)
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    return logging.getLogger(name)


def log_device_environment(log: logging.Logger) -> None:
    """Log the accelerator environment of a job: ``CUDA_VISIBLE_DEVICES`` and what torch sees.

    On a cluster this shows which GPU the scheduler gave the job (SLURM sets
    ``CUDA_VISIBLE_DEVICES`` for a ``--gpus`` request); ``unset`` means none was assigned.
    """
    import torch  # local: most rule scripts do not need torch

    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "unset")
    available = torch.cuda.is_available()
    names = (
        [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        if available
        else []
    )
    log.info(
        "CUDA_VISIBLE_DEVICES=%s (torch %s, cuda available: %s%s)",
        visible,
        torch.__version__,
        available,
        f" ({', '.join(names)})" if names else "",
    )
