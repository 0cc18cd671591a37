"""Data from the user's files: the ``imagefolder``, ``table``, ``textfile`` and ``arrays`` sources.

The files are tiny and written here in their real formats (PNG and JPEG through Pillow, CSV,
TSV and Parquet through pandas, JSON Lines through ``json``, ``.npz`` through numpy); the
expected arrays come from the values the test wrote, never from the code under test. Bad
inputs must give an error before any job (``validate_config``) naming the key and the file;
what only the job can see fails there naming the file and the row or image.
"""

from __future__ import annotations

import copy
import json
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from mfoml import config as C
from mfoml.data.catalog import prepare_dataset
from mfoml.data.files import FileSourceError
from mfoml.data.store import load_dataset
from mfoml.data.textsets import load_text_dataset
from mfoml.tabular.data import load_tabular
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
COLORS = {"cat": (200, 30, 30), "dog": (30, 200, 30), "emu": (30, 30, 200)}


# ------------------------------------------------------------------------------------------
# Writers of the real formats
# ------------------------------------------------------------------------------------------


def write_images(root: Path, split: str, per_class: int, fmt: str, size=(6, 5), seed=0):
    """``per_class`` images per class of ``size`` (W, H); returns {file: uint8 (H, W, 3)}."""
    rng = np.random.default_rng(seed)
    written = {}
    for c, (name, rgb) in enumerate(COLORS.items()):
        d = root / split / name
        d.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            px = np.clip(
                np.asarray(rgb) + rng.integers(-20, 20, (size[1], size[0], 3)), 0, 255
            ).astype(np.uint8)
            f = d / f"{c}_{i}.{fmt}"
            Image.fromarray(px, "RGB").save(f, quality=95) if fmt == "jpg" else Image.fromarray(
                px, "RGB"
            ).save(f)
            written[f] = px
    return written


def write_table(path: Path, n=30, seed=0) -> pd.DataFrame:
    """A table with a numeric, a categorical (with gaps) and a label column, plus split/group."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "age": rng.integers(20, 80, n).astype(float),
            "color": rng.choice(["red", "green", "blue"], n),
            "label": np.tile(["yes", "no", "maybe"], n // 3),
            "part": ["test" if i % 5 == 0 else "train" for i in range(n)],
            "patient": np.repeat(np.arange(n // 2), 2),
        }
    )
    frame.loc[3, "age"] = np.nan
    frame.loc[4, "color"] = None
    if path.suffix == ".csv":
        frame.to_csv(path, index=False)
    elif path.suffix == ".tsv":
        frame.to_csv(path, sep="\t", index=False)
    else:
        with warnings.catch_warnings():  # pandas 3 deprecates the fastparquet engine
            warnings.simplefilter("ignore", DeprecationWarning)
            frame.to_parquet(path, engine="fastparquet")
    return frame


def write_texts(path: Path, n_groups=12, seed=0) -> list[dict]:
    """Two sentences per author (group), labels by topic; JSON Lines or CSV by extension."""
    rng = np.random.default_rng(seed)
    topics = {"sport": "the team won the match", "food": "the soup was hot and good"}
    rows = []
    for g in range(n_groups):
        topic = list(topics)[g % 2]
        for k in range(2):
            rows.append(
                {
                    "text": f"{topics[topic]} {rng.integers(100)} {k}",
                    "topic": topic,
                    "author": f"a{g}",
                }
            )
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    else:
        pd.DataFrame(rows).to_csv(path, index=False, sep="\t" if path.suffix == ".tsv" else ",")
    return rows


def tiny_config(variants: dict, dataset: str | None = None, n_splits: int = 2) -> dict:
    cfg = yaml.safe_load((REPO / "config" / "tests" / "tiny.yaml").read_text())
    cfg["data"]["variants"].update(variants)
    cfg["folds"]["n_splits"] = n_splits
    if dataset is not None:
        cfg["sweeps"] = [copy.deepcopy(cfg["sweeps"][0]) | {"datasets": [dataset]}]
    return cfg


def config_error(cfg: dict) -> str:
    with pytest.raises(C.ConfigError) as info:
        C.validate_config(cfg)
    return str(info.value)


# ------------------------------------------------------------------------------------------
# The four sources
# ------------------------------------------------------------------------------------------


def test_imagefolder_png_with_test_folder(tmp_path):
    train = write_images(tmp_path / "imgs", "train", 4, "png", seed=1)
    test = write_images(tmp_path / "imgs", "test", 2, "png", seed=2)
    meta = prepare_dataset(
        "imagefolder", tmp_path / "out", files={"path": str(tmp_path / "imgs")}, seed=0
    )
    ds = load_dataset(tmp_path / "out")
    assert meta["class_names"] == ["cat", "dog", "emu"] and meta["kind"] == "image"
    assert ds.x_train.shape == (12, 3, 5, 6) and ds.x_test.shape == (6, 3, 5, 6)
    assert ds.x_train.dtype == np.float32
    # PNG is lossless: the stored values are the written pixels / 255, files in sorted order
    expect = np.stack([train[f] for f in sorted(train)]).transpose(0, 3, 1, 2) / 255.0
    np.testing.assert_allclose(ds.x_train, expect, atol=1e-7)
    expect_te = np.stack([test[f] for f in sorted(test)]).transpose(0, 3, 1, 2) / 255.0
    np.testing.assert_allclose(ds.x_test, expect_te, atol=1e-7)
    np.testing.assert_array_equal(ds.y_train, np.repeat([0, 1, 2], 4))
    np.testing.assert_array_equal(ds.y_test, np.repeat([0, 1, 2], 2))
    # normalization statistics of the training split only
    np.testing.assert_allclose(
        meta["normalization"]["mean"], expect.mean(axis=(0, 2, 3)), atol=1e-6
    )
    np.testing.assert_allclose(meta["normalization"]["std"], expect.std(axis=(0, 2, 3)), atol=1e-6)


def test_imagefolder_jpeg_holdout_resize_and_grayscale(tmp_path):
    write_images(tmp_path / "imgs", "train", 5, "jpg", size=(9, 7))
    opts = {"path": str(tmp_path / "imgs"), "image_size": [4, 3], "test_fraction": 0.4}
    meta = prepare_dataset("imagefolder", tmp_path / "a", files=opts, seed=3, grayscale=True)
    ds = load_dataset(tmp_path / "a")
    assert meta["input_shape"] == [1, 4, 3]
    assert ds.x_train.shape == (9, 1, 4, 3) and ds.x_test.shape == (6, 1, 4, 3)
    # stratified: 2 of each class's 5 images held out
    assert np.bincount(ds.y_test).tolist() == [2, 2, 2]
    assert 0.0 <= ds.x_train.min() and ds.x_train.max() <= 1.0
    # a red class stays darker than a green one in BT.601 luma (0.299 R + 0.587 G + 0.114 B)
    assert ds.x_train[ds.y_train == 0].mean() < ds.x_train[ds.y_train == 1].mean()
    again = prepare_dataset("imagefolder", tmp_path / "b", files=opts, seed=3, grayscale=True)
    assert again["checksums"] == meta["checksums"]  # seeded


@pytest.mark.parametrize("ext", [".csv", ".tsv", ".parquet"])
def test_table_categorical_missing_and_split_column(tmp_path, ext):
    frame = write_table(tmp_path / f"t{ext}")
    files = {"path": str(tmp_path / f"t{ext}"), "label": "label", "split": "part"}
    files["features"] = ["age", "color"]
    meta = prepare_dataset("table", tmp_path / "out", files=files)
    ds = load_dataset(tmp_path / "out")
    train = frame[frame["part"] == "train"]
    assert ds.x_train.shape == (len(train), 2) and meta["n_test"] == (frame["part"] == "test").sum()
    np.testing.assert_array_equal(ds.x_train[:, 0], train["age"].to_numpy(np.float32))
    assert meta["class_names"] == ["maybe", "no", "yes"]
    np.testing.assert_array_equal(
        ds.y_train, train["label"].map({"maybe": 0, "no": 1, "yes": 2}).to_numpy()
    )
    # categories as codes of the sorted categories, a missing cell as NaN (imputed in the folds)
    codes = train["color"].map({"blue": 0, "green": 1, "red": 2}).to_numpy(np.float64)
    np.testing.assert_array_equal(ds.x_train[:, 1], codes.astype(np.float32))
    assert meta["options"]["nominal_features"] == [1]
    assert meta["options"]["missing_values"] == {"age": 1, "color": 1}
    tab = load_tabular(str(tmp_path / "out"))
    assert tab.nominal == [1] and tab.has_missing and tab.n_classes == 3


def test_table_groups_never_cross_the_held_out_split(tmp_path):
    write_table(tmp_path / "t.csv", n=60)
    files = {"path": str(tmp_path / "t.csv"), "group": "patient", "test_fraction": 0.25}
    meta = prepare_dataset("table", tmp_path / "out", files=files, seed=1)
    g_tr = np.load(tmp_path / "out" / "groups_train.npy")
    g_te = np.load(tmp_path / "out" / "groups_test.npy")
    assert g_tr.dtype == np.int64 and len(g_tr) == meta["n_train"] and len(g_te) == meta["n_test"]
    assert meta["n_test"] > 0 and not set(g_tr) & set(g_te)
    assert meta["group_column"] == "patient"
    # the default features are every column but label, split... and the group column
    assert meta["feature_names"] == ["age", "color", "part"]
    # a split column that puts one group on both sides is an error naming the file
    frame = pd.read_csv(tmp_path / "t.csv")
    frame.loc[0, "part"], frame.loc[1, "part"] = "train", "test"
    frame.to_csv(tmp_path / "bad.csv", index=False)
    bad = {"path": str(tmp_path / "bad.csv"), "group": "patient", "split": "part"}
    with pytest.raises(FileSourceError, match=r"bad\.csv: row 2: group 0"):
        prepare_dataset("table", tmp_path / "bad", files=bad)


def test_table_regression(tmp_path):
    frame = pd.DataFrame({"x": np.arange(20.0), "y": np.arange(20.0) * 0.5})
    frame.to_csv(tmp_path / "r.csv", index=False)
    files = {"path": str(tmp_path / "r.csv"), "label": "y", "task": "regression"}
    meta = prepare_dataset("table", tmp_path / "out", files=files)
    ds = load_dataset(tmp_path / "out")
    assert meta["task"] == "regression" and meta["n_classes"] is None
    assert ds.y_train.dtype == np.float64 and meta["n_train"] + meta["n_test"] == 20
    np.testing.assert_allclose(ds.y_train, ds.x_train[:, 0] * 0.5)


@pytest.mark.parametrize("ext", [".jsonl", ".tsv"])
def test_textfile_tokenized_with_groups(tmp_path, ext):
    rows = write_texts(tmp_path / f"texts{ext}")
    files = {"path": str(tmp_path / f"texts{ext}"), "label": "topic", "group": "author"}
    meta = prepare_dataset(
        "textfile", tmp_path / "out", files=files, vocab_size=60, max_length=12, seed=0
    )
    ds = load_text_dataset(tmp_path / "out")
    assert meta["kind"] == "text" and meta["class_names"] == ["food", "sport"]
    assert ds.x_train.shape == (meta["n_train"], 12) and meta["n_train"] + meta["n_test"] == 24
    g_tr = np.load(tmp_path / "out" / "groups_train.npy")
    g_te = np.load(tmp_path / "out" / "groups_test.npy")
    assert not set(g_tr) & set(g_te) and meta["group_column"] == "author"
    # the two sentences of an author share a label and a group id
    for g in set(g_tr):
        assert len(set(ds.y_train[g_tr == g])) == 1 and (g_tr == g).sum() == 2
    tok = ds.tokenizer()
    decoded = tok.decode(ds.x_train[0].tolist())
    assert any(decoded.split()[:2] == r["text"].split()[:2] for r in rows)


def test_arrays_image_shapes_and_labels(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.random((12, 2, 4, 4))
    y = np.repeat([3, 7, 9], 4)
    np.savez(tmp_path / "a.npz", x_train=x, y_train=y, x_test=x[:3], y_test=y[[0, 4, 8]])
    meta = prepare_dataset("arrays", tmp_path / "out", files={"path": str(tmp_path / "a.npz")})
    ds = load_dataset(tmp_path / "out")
    assert meta["kind"] == "image" and meta["input_shape"] == [2, 4, 4]
    assert meta["class_names"] == ["3", "7", "9"]
    np.testing.assert_array_equal(ds.y_train, np.repeat([0, 1, 2], 4))
    np.testing.assert_array_equal(ds.y_test, [0, 1, 2])
    np.testing.assert_allclose(ds.x_train, x.astype(np.float32))
    np.savez(tmp_path / "s.npz", x_train=x.reshape(12, 2, 16), y_train=y)
    meta = prepare_dataset("arrays", tmp_path / "s", files={"path": str(tmp_path / "s.npz")})
    assert meta["kind"] == "signal" and meta["n_test"] == 0


# ------------------------------------------------------------------------------------------
# Checks before any job
# ------------------------------------------------------------------------------------------


def test_valid_file_variants_pass_the_configuration(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_images(tmp_path / "imgs", "train", 3, "png")
    write_table(tmp_path / "t.csv")
    np.savez(tmp_path / "a.npz", x_train=np.zeros((6, 3)), y_train=np.repeat([0, 1], 3))
    variants = {
        "imgs": {"source": "imagefolder", "path": "imgs", "test_fraction": 0.3},
        "tab": {"source": "table", "path": "t.csv", "split": "part"},
        "arr": {"source": "arrays", "path": "a.npz"},
    }
    cfg = C.validate_config(tiny_config(variants, "imgs"))
    assert cfg["data"]["variants"]["imgs"]["path"] == "imgs"  # relative to the working dir


def _bad_cases(tmp: Path) -> list[tuple[dict, str]]:
    write_images(tmp / "imgs", "train", 3, "png")
    write_images(tmp / "mixed", "train", 3, "png")
    Image.new("RGB", (9, 9)).save(tmp / "mixed" / "train" / "dog" / "big.png")
    write_images(tmp / "broken", "train", 1, "png")
    (tmp / "broken" / "train" / "cat" / "0_0.png").write_bytes(b"not a png")
    write_images(tmp / "few", "train", 1, "png")
    write_table(tmp / "t.csv")
    pd.DataFrame({"x": range(6), "label": ["a"] * 6}).to_csv(tmp / "one.csv", index=False)
    write_texts(tmp / "texts.jsonl")
    np.savez(tmp / "shape.npz", x_train=np.zeros((6, 3)), y_train=np.zeros(5))
    np.savez(
        tmp / "test.npz",
        x_train=np.zeros((6, 3)),
        y_train=np.repeat([0, 1], 3),
        x_test=np.zeros((2, 4)),
        y_test=np.zeros(2),
    )
    p = str(tmp)
    return [
        (
            {"source": "table", "path": f"{p}/nope.csv"},
            r"'data.variants.v.path': .*nope\.csv does not exist",
        ),
        (
            {"source": "table", "path": f"{p}/t.csv", "label": "y"},
            r"'data.variants.v.label': .*t\.csv has no column 'y'",
        ),
        (
            {"source": "table", "path": f"{p}/t.csv", "features": ["age", "zz"]},
            r"'data.variants.v.features': .*t\.csv has no column 'zz'",
        ),
        (
            {"source": "textfile", "path": f"{p}/texts.jsonl"},
            r"'data.variants.v.label': .*texts\.jsonl has no column 'label'",
        ),
        (
            {"source": "textfile", "path": f"{p}/texts.jsonl", "label": "topic", "group": "who"},
            r"'data.variants.v.group': .*has no column 'who'",
        ),
        (
            {"source": "table", "path": f"{p}/one.csv"},
            r"'data.variants.v.label': .*one\.csv: the label has 1 class",
        ),
        (
            {"source": "imagefolder", "path": f"{p}/few"},
            r"'data.variants.v.path': .*few/train: class 'cat' has only 0 training samples after the held-out",
        ),
        (
            {"source": "imagefolder", "path": f"{p}/broken", "test_fraction": 0.01},
            r"'data.variants.v.path': .*0_0\.png: not a readable image",
        ),
        (
            {"source": "imagefolder", "path": f"{p}/mixed"},
            r"'data.variants.v.image_size': images in .*mixed differ in size",
        ),
        (
            {"source": "arrays", "path": f"{p}/shape.npz"},
            r"'data.variants.v.path': .*shape\.npz: y_train has shape \(5,\)",
        ),
        (
            {"source": "arrays", "path": f"{p}/test.npz"},
            r"'data.variants.v.path': .*test\.npz: x_test samples have shape \(4,\)",
        ),
        (
            {"source": "imagefolder", "path": f"{p}/t.csv"},
            r"'data.variants.v.path': .*t\.csv is not a folder",
        ),
        (
            {"source": "arrays", "path": f"{p}/shape.npz", "label": "y"},
            r"'data.variants.v': \['label'\] do not apply to source 'arrays'",
        ),
        (
            {"source": "mnist1d", "path": f"{p}/t.csv"},
            r"'data.variants.v': \['path'\] apply to the file sources",
        ),
        ({"source": "table"}, r"'data.variants.v.path': required for source 'table'"),
        (
            {"source": "table", "path": f"{p}/t.csv", "split": "part", "group": "patient"},
            r"'data.variants.v.group': .*t\.csv: group 0 of column 'patient' is in both the "
            r"train and the test split",
        ),
    ]


def test_bad_file_inputs_fail_before_any_job_naming_key_and_file(tmp_path):
    for variant, message in _bad_cases(tmp_path):
        err = config_error(tiny_config({"v": variant}, "v"))
        assert len(re.findall(message, err)) == 1, (variant, err)


def test_a_table_with_missing_values_and_categories_may_feed_a_network(tmp_path):
    # imputed and one-hot encoded inside the folds (mfoml.tabular.netinput): no pre-job refusal
    write_table(tmp_path / "t.csv", n=30)
    frame = pd.read_csv(tmp_path / "t.csv")
    assert frame["age"].isna().any() and frame["color"].isna().any()
    variant = {"source": "table", "path": str(tmp_path / "t.csv"), "split": "part"}
    cfg = C.validate_config(tiny_config({"v": variant}, "v"))
    assert cfg["data"]["variants"]["v"]["path"] == str(tmp_path / "t.csv")


def test_too_few_samples_per_class_for_the_folds(tmp_path):
    write_table(tmp_path / "t.csv", n=30)  # 'part': 6 test rows, 8 training rows per class
    variant = {"source": "table", "path": str(tmp_path / "t.csv"), "split": "part"}
    variant["features"] = ["patient"]  # no missing values (a network is trained on it)
    C.validate_config(tiny_config({"v": variant}, "v", n_splits=8))
    err = config_error(tiny_config({"v": variant}, "v", n_splits=9))
    assert "'data.variants.v.label'" in err and "folds.n_splits = 9" in err
    assert "t.csv: class 'maybe' has only 8 training samples" in err


def test_a_file_source_needs_a_variant():
    cfg = tiny_config({}, "table")
    assert "'sweeps[0].datasets': 'table' is a file source" in config_error(cfg)


# ------------------------------------------------------------------------------------------
# Errors only the job can see
# ------------------------------------------------------------------------------------------


def test_job_errors_name_the_file_and_the_row_or_image(tmp_path):
    write_images(tmp_path / "imgs", "train", 6, "png")
    bad = tmp_path / "imgs" / "train" / "emu" / "2_5.png"
    bad.write_bytes(b"\x89PNG broken")
    with pytest.raises(FileSourceError, match=r"2_5\.png: not a readable image"):
        prepare_dataset("imagefolder", tmp_path / "o", files={"path": str(tmp_path / "imgs")})
    frame = write_table(tmp_path / "t.csv")
    frame.loc[7, "part"] = "validation"
    frame.to_csv(tmp_path / "t.csv", index=False)
    files = {"path": str(tmp_path / "t.csv"), "split": "part"}
    with pytest.raises(
        FileSourceError, match=r"t\.csv: row 8: split column 'part' holds 'validation'"
    ):
        prepare_dataset("table", tmp_path / "t", files=files)
