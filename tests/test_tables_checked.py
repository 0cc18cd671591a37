"""The aggregation reads only complete per-run tables (issue 22): a table cut mid-row or at a
row boundary, or text in a numeric column of ``metrics.csv``, stops it naming the file.

Unit checks of :mod:`mfoml.analysis.tablecheck` and :func:`mfoml.io.read_csv_checked` on
hand-written files, then the aggregation itself on copies of the shared tiny run."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from mfoml import io
from mfoml.analysis import tablecheck
from mfoml.analysis.aggregate import RESULT_TABLES
from workflow_utils import assert_aggregation_names_corrupt_table, completed_tiny_run, copy_run

TANH = "mnist1d/mlp-d2-w16/tanh/ce/noise0/fold0"


def _dump(act, epoch, split, layers):
    d = act / str(epoch) / split
    d.mkdir(parents=True)
    (d / "manifest.json").write_text(json.dumps({"layers": [{"name": n} for n in layers]}))


@pytest.fixture
def act(tmp_path):
    act = tmp_path / "activations"
    for epoch in (1, 4):
        for split in ("train", "test"):
            _dump(act, epoch, split, ["input", "block0", "logits"])
    _dump(act, 4, "analysis", ["input", "block0", "logits"])
    return act


def test_expected_rows_come_from_the_manifests(act):
    rows = tablecheck.probe_rows(act, ["train"], "all")
    # hand-counted: 2 checkpoints x train x 3 layers, plus epoch 4's analysis dump x 3 layers
    assert len(rows) == 9
    assert (4, "analysis", "block0") in rows and (1, "analysis", "block0") not in rows
    assert tablecheck.probe_rows(act, ["train", "test"], ["block0"]) == {
        (1, "train", "block0"), (1, "test", "block0"), (4, "train", "block0"),
        (4, "test", "block0"), (4, "analysis", "block0"),
    }  # fmt: skip
    assert tablecheck.ncc_rows(act, "all") == {
        (e, la) for e in (1, 4) for la in ("input", "block0", "logits")
    }


def test_check_rows_names_the_file_and_the_missing_rows(act, tmp_path):
    want = tablecheck.ncc_rows(act, "all")
    full = pd.DataFrame(sorted(want), columns=["epoch", "layer"])
    tablecheck.check_rows(full, "ncc.csv", ("epoch", "layer"), want)  # complete: no error
    cases = {
        "cut": (full.iloc[:-2], r"ncc.csv: 2 of 6 expected rows missing: \(4, "),
        "dup": (pd.concat([full, full.iloc[:1]]), r"ncc.csv: duplicated rows \(1, "),
        "extra": (
            pd.concat([full, pd.DataFrame({"epoch": [7], "layer": ["x"]})]),
            r"ncc.csv: 1 rows not expected: \(7, 'x'\)",
        ),
        "empty key": (full.assign(layer=[*full["layer"][:-1], None]), "ncc.csv: row 6 has an"),
    }
    for name, (frame, message) in cases.items():
        with pytest.raises(ValueError, match=message) as info:
            tablecheck.check_rows(frame, "ncc.csv", ("epoch", "layer"), want)
        assert "--forcerun" in str(info.value), name


def test_check_epochs(tmp_path):
    tablecheck.check_epochs(pd.DataFrame({"epoch": [1, 2, 3]}), "m.csv", 3)
    for epochs, last in (([1, 2], 3), ([1, 3], 1), ([2, 1], 1), ([1, 1], 1)):
        with pytest.raises(ValueError, match=r"^m.csv: epochs .*expected 1..E"):
            tablecheck.check_epochs(pd.DataFrame({"epoch": epochs}), "m.csv", last)


def test_a_row_cut_short_is_named(tmp_path):
    required, numeric = RESULT_TABLES["probe.csv"]
    path = tmp_path / "probe.csv"
    header = ",".join([*required, "n_wavelets"])
    whole = "1,train,input,0,0.5,0.4,0.6,ok,12\n"
    path.write_text(header + "\n" + whole + whole.replace("input,0", "block0,1")[:14] + "\n")
    with pytest.raises(ValueError, match=rf"^{path}: row 2 has 3 of 9 fields; .*truncated"):
        io.read_csv_checked(path, required, numeric)


def test_every_metrics_column_must_be_a_number(tmp_path):
    required, numeric = RESULT_TABLES["metrics.csv"]
    assert numeric == "all"
    path = tmp_path / "metrics.csv"
    path.write_text("epoch,train_loss,train_acc,heldout_acc,test_acc,sharpness\n1,2,0.5,,0.4,3\n"
                    "2,1,0.6,,abc,2\n")  # fmt: skip
    with pytest.raises(ValueError, match=rf"^{path}: column 'test_acc', row 2: 'abc' is not"):
        io.read_csv_checked(path, required, numeric)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return completed_tiny_run(tmp_path_factory.getbasetemp())


def test_complete_tables_of_a_real_run_pass(tiny):
    """The expected rows match what the probe and NCC jobs of the tiny run wrote."""
    run = tiny / "results" / "runs" / TANH
    act = run / "activations"
    probe = io.read_csv_checked(run / "probe.csv", *RESULT_TABLES["probe.csv"])
    ncc = io.read_csv_checked(run / "ncc.csv", *RESULT_TABLES["ncc.csv"])
    tablecheck.check_rows(
        probe,
        "probe.csv",
        ("epoch", "split", "layer"),
        tablecheck.probe_rows(act, ["train"], "all"),
    )
    tablecheck.check_rows(ncc, "ncc.csv", ("epoch", "layer"), tablecheck.ncc_rows(act, "all"))
    cut = ncc.iloc[: len(ncc) - 1]  # a file cut at a row boundary: every row well formed
    with pytest.raises(ValueError, match="ncc.csv: 1 of .* expected rows missing"):
        tablecheck.check_rows(cut, "ncc.csv", ("epoch", "layer"), tablecheck.ncc_rows(act, "all"))


def _cut_mid_row(text: str) -> str:
    return text[: len(text) - len(text.splitlines()[-1]) // 2 - 1]  # half of the last row gone


def _text_in_test_acc(text: str) -> str:
    frame = pd.read_csv(pd.io.common.StringIO(text))
    frame["test_acc"] = frame["test_acc"].astype(object)
    frame.loc[1, "test_acc"] = "high"
    return frame.to_csv(index=False)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("table", "corrupt", "expected"),
    [
        ("probe.csv", _cut_mid_row, "fields; the file is truncated"),
        ("ncc.csv", lambda t: "".join(t.splitlines(keepends=True)[:-2]), "expected rows missing"),
        ("checkpoints/metrics.csv", _text_in_test_acc, "column 'test_acc', row 2: 'high'"),
    ],
)
def test_the_aggregation_stops_naming_the_file(tiny, tmp_path, table, corrupt, expected):
    wd = copy_run(tiny, tmp_path / "wd")
    assert_aggregation_names_corrupt_table(wd, f"results/runs/{TANH}/{table}", corrupt, expected)
