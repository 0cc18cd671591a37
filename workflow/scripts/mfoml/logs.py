"""Logging of rule scripts into their Snakemake ``log:`` file.

:func:`setup_logging` sends the ``logging`` records, ``print`` output, warnings and uncaught
tracebacks of a rule script to its log file, so that every job leaves a complete log. It also
starts a :class:`Heartbeat`: a job that has logged nothing for ``MFOML_PROGRESS_S`` seconds
(default 30) logs a progress line (time elapsed, the last message and how long ago), so that a
long job's log, followed with ``tail -f logs/...``, never stays silent for longer.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from pathlib import Path

__all__ = ["Heartbeat", "format_seconds", "setup_logging"]

#: Default longest silence of a job's log, in seconds (``MFOML_PROGRESS_S`` overrides it).
PROGRESS_SECONDS = 30.0


def format_seconds(seconds: float) -> str:
    """``"2 h 03 min"``, ``"4 min 09 s"`` or ``"12 s"`` for a duration in seconds."""
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600} h {s % 3600 // 60:02d} min"
    return f"{s // 60} min {s % 60:02d} s" if s >= 60 else f"{s} s"


class Heartbeat(logging.Handler):
    """A progress line on ``logger`` whenever nothing was logged for ``every`` seconds.

    Installed as a handler on the root logger, it notes the time and text of every record; a
    daemon thread checks every ``every / 4`` seconds and, after ``every`` seconds without a
    record, logs ``"still running after {elapsed}; last message {age} ago: {text}"`` (that line
    resets the clock, so a silent job gets one line per ``every`` seconds). The jobs' own
    messages (per epoch, layer, checkpoint, fold) are the progress; this guarantees the interval
    when one step takes longer. Torch, numpy and numba work release the interpreter lock often
    enough for the thread to run.

    Parameters
    ----------
    logger : where the progress lines go (the job's logger).
    every : the longest silence, in seconds (> 0).
    """

    def __init__(self, logger: logging.Logger, every: float = PROGRESS_SECONDS) -> None:
        super().__init__(logging.DEBUG)
        if not every > 0:
            raise ValueError(f"the progress interval must be positive, got {every!r}")
        self.logger, self.every = logger, float(every)
        self.started = self.last = time.monotonic()
        self.last_text = "(none yet)"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mfoml-heartbeat", daemon=True)

    def emit(self, record: logging.LogRecord) -> None:
        self.last = time.monotonic()
        if not getattr(record, "heartbeat", False):
            self.last_text = record.getMessage().splitlines()[0][:200] if record.msg else ""

    def start(self) -> Heartbeat:
        """Attach to the root logger and start the thread; returns self."""
        logging.getLogger().addHandler(self)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the thread and detach."""
        self._stop.set()
        logging.getLogger().removeHandler(self)

    def _run(self) -> None:
        while not self._stop.wait(self.every / 4):
            now = time.monotonic()
            if now - self.last >= self.every:
                self.logger.info(
                    "still running after %s; last message %s ago: %s",
                    format_seconds(now - self.started),
                    format_seconds(now - self.last),
                    self.last_text,
                    extra={"heartbeat": True},
                )


_HEARTBEAT: Heartbeat | None = None


def setup_logging(
    log_file: str | os.PathLike[str] | None,
    name: str = "mfoml",
    progress_seconds: float | None = None,
) -> logging.Logger:
    """Redirect stdout/stderr (file descriptors 1 and 2) to ``log_file`` and return a logger.

    Parameters
    ----------
    log_file : the job's log file (created, appended to); ``None`` keeps the terminal.
    name : logger name (appears in every line).
    progress_seconds : the longest silence of the log (a :class:`Heartbeat`); default
        ``$MFOML_PROGRESS_S`` or 30; 0 turns it off.

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
    logger = logging.getLogger(name)
    global _HEARTBEAT
    if _HEARTBEAT is not None:
        _HEARTBEAT.stop()
        _HEARTBEAT = None
    every = progress_seconds
    if every is None:
        every = float(os.environ.get("MFOML_PROGRESS_S", PROGRESS_SECONDS))
    if every > 0:
        _HEARTBEAT = Heartbeat(logger, every).start()
    return logger


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
