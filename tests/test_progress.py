"""Progress lines of long jobs (issue 22): a job whose log stays silent for the progress
interval gets a "still running" line (mfoml.logs.Heartbeat, started by setup_logging, which
every rule script calls)."""

from __future__ import annotations

import ast
import inspect
import logging
import time
from pathlib import Path

import pytest
from mfoml import logs

SCRIPTS = Path(__file__).resolve().parents[1] / "workflow" / "scripts"


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture
def collect():
    handler = _Collect()
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield handler
    root.removeHandler(handler)
    root.setLevel(old_level)


def test_a_silent_job_logs_progress_lines(collect):
    beat = logs.Heartbeat(logging.getLogger("job"), every=0.2).start()
    try:
        logging.getLogger("job").info("epoch 3: loss 0.25")
        time.sleep(0.75)
    finally:
        beat.stop()
    beats = [line for line in collect.lines if line.startswith("still running after")]
    assert 2 <= len(beats) <= 4, collect.lines  # one per 0.2 s of silence, not more
    assert beats[0].endswith("ago: epoch 3: loss 0.25")


def test_a_job_that_logs_often_gets_no_extra_lines(collect):
    beat = logs.Heartbeat(logging.getLogger("job"), every=0.3).start()
    try:
        for i in range(10):
            logging.getLogger("job").info("step %d", i)
            time.sleep(0.05)
    finally:
        beat.stop()
    assert not [line for line in collect.lines if line.startswith("still running")]
    with pytest.raises(ValueError, match="positive"):
        logs.Heartbeat(logging.getLogger("job"), every=0)


def test_format_seconds():
    assert [logs.format_seconds(s) for s in (12, 249, 7380)] == ["12 s", "4 min 09 s", "2 h 03 min"]


def test_every_rule_script_sets_up_logging_and_so_the_heartbeat():
    """The heartbeat is started by setup_logging; every rule script calls it at module level,
    directly or through the training jobs' prologue (mfoml.nets.trainjob.start_job, which
    calls it first)."""
    from mfoml.nets import trainjob

    start_job = ast.parse(inspect.getsource(trainjob.start_job)).body[0]
    called = {getattr(n.func, "id", None) for n in ast.walk(start_job) if isinstance(n, ast.Call)}
    assert "setup_logging" in called
    scripts = sorted(SCRIPTS.glob("*.py"))
    assert len(scripts) > 20
    for script in scripts:
        calls = [
            node.value.func
            for node in ast.parse(script.read_text()).body
            if isinstance(node, ast.Assign | ast.Expr) and isinstance(node.value, ast.Call)
        ]
        names = {getattr(f, "id", getattr(f, "attr", None)) for f in calls}
        assert names & {"setup_logging", "start_job"}, script.name
