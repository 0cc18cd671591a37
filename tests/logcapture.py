"""Capture the log messages of an mfoml logger in a test (mfoml logs through stdlib logging)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator


class _Collect(logging.Handler):
    def __init__(self, lines: list[str], on_message: Callable[[str], None] | None) -> None:
        super().__init__(logging.DEBUG)
        self.lines = lines
        self.on_message = on_message

    def emit(self, record: logging.LogRecord) -> None:  # exceptions propagate (test hooks)
        msg = record.getMessage()
        self.lines.append(msg)
        if self.on_message is not None:
            self.on_message(msg)

    def handle(self, record: logging.LogRecord) -> bool:
        self.emit(record)
        return True


@contextlib.contextmanager
def captured(logger: str, on_message: Callable[[str], None] | None = None) -> Iterator[list[str]]:
    """Messages (INFO and above) logged to ``logger`` or its children during the block.

    ``on_message`` is called with every message as it is logged; an exception it raises
    propagates into the code that logged (e.g. to simulate a kill at a given epoch).
    """
    lines: list[str] = []
    log = logging.getLogger(logger)
    handler = _Collect(lines, on_message)
    old_level = log.level
    log.setLevel(logging.INFO)
    log.addHandler(handler)
    try:
        yield lines
    finally:
        log.removeHandler(handler)
        log.setLevel(old_level)
