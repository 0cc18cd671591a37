"""Atomic writes: a failure leaves the previous file (or none), never a partial one."""

from __future__ import annotations

import os
import stat

import numpy as np
import pandas as pd
import pytest
from mfoml import io


def test_atomic_text_replaces_and_leaves_no_temp(tmp_path):
    dest = tmp_path / "sub" / "out.txt"
    io.atomic_write_text(dest, "one")
    io.atomic_write_text(dest, "two")
    assert dest.read_text() == "two"
    assert sorted(p.name for p in dest.parent.iterdir()) == ["out.txt"]


def test_failure_keeps_previous_content_and_removes_temp(tmp_path):
    dest = tmp_path / "out.json"
    io.atomic_write_json(dest, {"a": 1})
    with pytest.raises(RuntimeError, match="boom"), io.atomic_path(dest) as tmp:
        tmp.write_text('{"a": 2, "trunc')
        raise RuntimeError("boom")
    assert io.read_json(dest) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_failure_without_previous_file_leaves_nothing(tmp_path):
    dest = tmp_path / "new.npy"
    with pytest.raises(KeyboardInterrupt), io.atomic_path(dest) as tmp:
        np.save(tmp, np.arange(3))
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_npy_npz_csv_roundtrip_and_mmap(tmp_path):
    a = np.arange(12, dtype=np.float16).reshape(3, 4)
    io.atomic_save_npy(tmp_path / "a.npy", a)
    m = np.load(tmp_path / "a.npy", mmap_mode="r")
    assert isinstance(m, np.memmap) and np.array_equal(m, a)
    io.atomic_save_npz(tmp_path / "b.npz", x=a, y=np.ones(2))
    with np.load(tmp_path / "b.npz") as z:
        assert np.array_equal(z["x"], a) and np.array_equal(z["y"], np.ones(2))
    frame = pd.DataFrame({"layer": ["input", "logits"], "alpha": [0.5, np.nan]})
    io.atomic_write_csv(tmp_path / "t.csv", frame)
    back = pd.read_csv(tmp_path / "t.csv")
    assert list(back.columns) == ["layer", "alpha"] and back["layer"].tolist() == [
        "input",
        "logits",
    ]


def test_json_accepts_numpy_values_and_sorts_keys(tmp_path):
    io.atomic_write_json(
        tmp_path / "m.json", {"b": np.float32(1.5), "a": np.arange(2), "c": np.int64(3)}
    )
    text = (tmp_path / "m.json").read_text()
    assert text.index('"a"') < text.index('"b"') < text.index('"c"')
    assert io.read_json(tmp_path / "m.json") == {"a": [0, 1], "b": 1.5, "c": 3}


def test_read_json_names_the_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="bad.json"):
        io.read_json(bad)


def test_permissions_follow_umask(tmp_path):
    old = os.umask(0o022)
    try:
        io.atomic_write_text(tmp_path / "p.txt", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "p.txt").stat().st_mode) == 0o644


@pytest.mark.parametrize("name", ["probe.csv", "ncc.csv", "metrics.csv"])
def test_corrupted_result_tables_are_named_with_what_is_wrong(tmp_path, name):
    from mfoml.analysis.aggregate import RESULT_TABLES

    required, numeric = RESULT_TABLES[name]
    numeric = required if numeric == "all" else numeric  # metrics.csv: every column a number
    good = pd.DataFrame({c: [1.0, 2.0] if c in numeric else ["a", "b"] for c in required})
    path = tmp_path / name
    good.to_csv(path, index=False)
    assert list(io.read_csv_checked(path, required, numeric).columns) == list(required)

    cases = {
        "": "not a readable CSV table",  # emptied
        good.to_csv(index=False).replace(required[1], "oops", 1): f"column(s) ['{required[1]}']",
        good.to_csv(index=False).split("\n")[0] + "\n": "has no rows",  # header only
        good.to_csv(index=False).replace("2.0", "2.0x", 1): f"column {numeric[0]!r}, row 2: "
        "'2.0x' is not a number",
        '"unterminated\n' + good.to_csv(index=False): "not a readable CSV table",
    }
    for text, expected in cases.items():
        path.write_text(text)
        with pytest.raises(ValueError) as info:
            io.read_csv_checked(path, required, numeric)
        message = str(info.value)
        assert message.startswith(f"{path}: "), message
        assert expected in message, message
        assert "--forcerun" in message


def test_replace_dir_swaps_a_finished_directory_into_place(tmp_path):
    out = tmp_path / "checkpoints"
    work = io.partial_dir(out)
    assert work == tmp_path / ".checkpoints.partial"
    work.mkdir()
    (work / "a.txt").write_text("new")
    io.replace_dir(work, out)
    assert (out / "a.txt").read_text() == "new" and not work.exists()
    work.mkdir()
    (work / "b.txt").write_text("newer")
    io.replace_dir(work, out)  # replaces an existing output, leaves nothing aside
    assert [p.name for p in out.iterdir()] == ["b.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoints"]


def test_fresh_partial_dir_discards_what_a_killed_job_left(tmp_path, caplog):
    out = tmp_path / "checkpoints"
    first = io.fresh_partial_dir(out)
    assert first == tmp_path / ".checkpoints.partial" and list(first.iterdir()) == []
    (first / "epoch_0002.pt").write_bytes(b"half-written")
    (first / "sub").mkdir()
    with caplog.at_level("INFO", logger="mfoml.io"):
        again = io.fresh_partial_dir(out)
    assert again == first and list(again.iterdir()) == []
    assert "discarding" in caplog.text and not out.exists()
