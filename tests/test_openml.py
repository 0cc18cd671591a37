"""mfoml.data.openml against a loopback server serving real OpenML API responses and ARFF files.

The served files are real OpenML responses (description JSON, feature JSON, name-search JSON and
ARFF data, the adult ARFF shortened with a matching md5 in its description) as scikit-learn ships
them for its own ``fetch_openml`` tests; they are placed at the real API URL paths.
"""

from __future__ import annotations

import gzip
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
import sklearn.datasets.tests.data.openml as sk_openml_data
from loopback import LoopbackServer
from mfoml.data.openml.arff import parse_arff
from mfoml.data.openml.client import OpenMLDownloadError
from mfoml.data.openml.prepare import parse_openml_name, prepare_openml
from scipy.io import arff as scipy_arff

FIXTURES = Path(sk_openml_data.__file__).parent


def _put(root: Path, rel: str, src: Path) -> None:
    dest = root / rel
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(gzip.decompress(src.read_bytes()))


@pytest.fixture
def openml_site(tmp_path: Path) -> Path:
    """A directory laid out like the OpenML server (iris id 61, adult id 1590)."""
    site = tmp_path / "site"
    f61, f1590 = FIXTURES / "id_61", FIXTURES / "id_1590"
    _put(
        site,
        "api/v1/json/data/list/data_name/iris/limit/2/status/active/index.html",
        f61 / "api-v1-jdl-dn-iris-l-2-s-act-.json.gz",
    )
    _put(site, "api/v1/json/data/61", f61 / "api-v1-jd-61.json.gz")
    _put(site, "api/v1/json/data/features/61", f61 / "api-v1-jdf-61.json.gz")
    _put(site, "data/v1/download/61/iris.arff", f61 / "data-v1-dl-61.arff.gz")
    _put(site, "api/v1/json/data/1590", f1590 / "api-v1-jd-1590.json.gz")
    _put(site, "api/v1/json/data/features/1590", f1590 / "api-v1-jdf-1590.json.gz")
    _put(site, "data/v1/download/1595261/adult.arff", f1590 / "data-v1-dl-1595261.arff.gz")
    return site


def test_iris_by_name_matches_scipy_parser(openml_site: Path, tmp_path: Path) -> None:
    out, cache = tmp_path / "data" / "openml-iris", tmp_path / "cache"
    with LoopbackServer(openml_site) as srv:
        meta = prepare_openml("openml-iris", out, download_dir=cache, mirror=srv.base_url)
        assert "/api/v1/json/data/list/data_name/iris/limit/2/status/active/" in srv.requests
    assert meta["task"] == "classification" and meta["n_classes"] == 3
    assert meta["options"]["openml_id"] == 61
    x, y = np.load(out / "x_train.npy"), np.load(out / "y_train.npy")
    assert x.dtype == np.float32 and x.shape == (150, 4) and y.dtype == np.int64
    # independent parse of the same ARFF with scipy
    text = (openml_site / "data/v1/download/61/iris.arff").read_text()
    ref, _ = scipy_arff.loadarff(io.StringIO(text))
    ref_x = np.stack([ref[n] for n in ref.dtype.names[:4]], axis=1).astype(np.float32)
    np.testing.assert_array_equal(x, ref_x)
    names = ["Iris-setosa", "Iris-versicolor", "Iris-virginica"]
    ref_y = np.array([names.index(v.decode()) for v in ref["class"]])
    np.testing.assert_array_equal(y, ref_y)
    assert meta["class_names"] == names
    # meta.json written, checksums valid
    on_disk = json.loads((out / "meta.json").read_text())
    assert on_disk["n_train"] == 150 and set(on_disk["checksums"]) == {"x_train.npy", "y_train.npy"}
    # readable by the data engineer's loader, checksums verified
    from mfoml.data.store import load_dataset

    ds = load_dataset(out)
    np.testing.assert_array_equal(ds.x_train, x)


def test_adult_by_id_nominal_and_missing(openml_site: Path, tmp_path: Path) -> None:
    out = tmp_path / "adult"
    with LoopbackServer(openml_site) as srv:
        meta = prepare_openml("openml-1590", out, download_dir=tmp_path / "c", mirror=srv.base_url)
    x, y = np.load(out / "x_train.npy"), np.load(out / "y_train.npy")
    text = (openml_site / "data/v1/download/1595261/adult.arff").read_text()
    rows = [
        [v.strip() for v in line.split(",")]
        for line in text.split("@data", 1)[1].splitlines()
        if line.strip() and not line.startswith("%")
    ]
    assert x.shape == (len(rows), 14)
    # target: declared order {>50K, <=50K}
    np.testing.assert_array_equal(y, [0 if r[-1] == ">50K" else 1 for r in rows])
    # numeric column 'age' verbatim; nominal 'workclass' as declared code, '?' stored as NaN
    # (imputed later inside each training fold, never over all rows)
    np.testing.assert_array_equal(x[:, 0], [float(r[0]) for r in rows])
    declared = [
        "Private",
        "Self-emp-not-inc",
        "Self-emp-inc",
        "Federal-gov",
        "Local-gov",
        "State-gov",
        "Without-pay",
        "Never-worked",
    ]
    wc = [r[1] for r in rows]
    assert wc.count("?") > 0
    np.testing.assert_array_equal(x[:, 1], [declared.index(v) if v != "?" else np.nan for v in wc])
    assert meta["options"]["missing_values"]["workclass"] == wc.count("?")
    assert meta["feature_names"][1] == "workclass"
    types = meta["options"]["feature_types"]
    assert meta["options"]["nominal_features"] == [
        i for i, t in enumerate(types) if t["type"] == "nominal"
    ]
    assert 1 in meta["options"]["nominal_features"] and 0 not in meta["options"]["nominal_features"]
    # the tabular track reads them: NaN kept, nominal features known
    from mfoml.tabular.data import load_tabular

    table = load_tabular(str(out))
    assert table.has_missing and table.nominal == meta["options"]["nominal_features"]


def test_numeric_missing_values_are_stored_as_nan(openml_site: Path, tmp_path: Path) -> None:
    """A numeric '?' is NaN in x_train.npy (no fill value computed over all rows)."""
    import hashlib

    arff_path = openml_site / "data/v1/download/61/iris.arff"
    head, marker, data = re.split(r"(@data)", arff_path.read_text(), maxsplit=1, flags=re.I)
    lines = data.splitlines()
    rows = [i for i, line in enumerate(lines) if line.strip() and not line.startswith("%")]
    holes = {rows[0]: 0, rows[7]: 2, rows[100]: 3}  # row -> numeric column set to '?'
    for i, col in holes.items():
        vals = lines[i].split(",")
        vals[col] = "?"
        lines[i] = ",".join(vals)
    arff_path.write_text(head + marker + "\n".join(lines) + "\n")
    desc_path = openml_site / "api/v1/json/data/61"
    desc = json.loads(desc_path.read_text())
    desc["data_set_description"]["md5_checksum"] = hashlib.md5(arff_path.read_bytes()).hexdigest()
    desc_path.write_text(json.dumps(desc))
    out = tmp_path / "iris"
    with LoopbackServer(openml_site) as srv:
        meta = prepare_openml("openml-61", out, download_dir=tmp_path / "c", mirror=srv.base_url)
    x = np.load(out / "x_train.npy")
    where = {(rows.index(i), c) for i, c in holes.items()}
    assert {(int(r), int(c)) for r, c in zip(*np.nonzero(np.isnan(x)), strict=True)} == where
    names = meta["feature_names"]
    assert meta["options"]["missing_values"] == {names[c]: 1 for c in holes.values()}
    assert meta["options"]["nominal_features"] == []


def test_cache_reused_offline_and_corrupt_cache_refetched(openml_site: Path, tmp_path: Path):
    cache = tmp_path / "cache"
    with LoopbackServer(openml_site) as srv:
        prepare_openml("openml-61", tmp_path / "a", download_dir=cache, mirror=srv.base_url)
    # offline from cache: same arrays, no server at all
    prepare_openml("openml-61", tmp_path / "b", download_dir=cache, offline=True)
    np.testing.assert_array_equal(
        np.load(tmp_path / "a/x_train.npy"), np.load(tmp_path / "b/x_train.npy")
    )
    cached_arff = cache / "openml/data/v1/download/61/iris.arff"
    cached_arff.write_bytes(cached_arff.read_bytes()[:-200])  # corrupt the cached copy
    with pytest.raises(OpenMLDownloadError, match="offline"):
        prepare_openml("openml-61", tmp_path / "c", download_dir=cache, offline=True)
    assert not cached_arff.exists()  # the invalid cache entry is never trusted again
    with LoopbackServer(openml_site) as srv:
        prepare_openml("openml-61", tmp_path / "c", download_dir=cache, mirror=srv.base_url)
        assert srv.requests == ["/data/v1/download/61/iris.arff"]
    assert cached_arff.is_file()


def test_truncated_download_is_an_error_and_not_cached(openml_site: Path, tmp_path: Path):
    cache = tmp_path / "cache"
    with LoopbackServer(openml_site, cut_transfers={"data/v1/download/61/iris.arff": 500}) as srv:
        with pytest.raises(OpenMLDownloadError, match="cut short"):
            prepare_openml("openml-61", tmp_path / "o", download_dir=cache, mirror=srv.base_url)
    assert not (cache / "openml/data/v1/download/61/iris.arff").exists()
    assert not (tmp_path / "o" / "meta.json").exists()


def test_corrupted_download_md5_mismatch(openml_site: Path, tmp_path: Path):
    arff_file = openml_site / "data/v1/download/61/iris.arff"
    arff_file.write_text(arff_file.read_text().replace("5.1,3.5", "9.9,3.5", 1))
    cache = tmp_path / "cache"
    with LoopbackServer(openml_site) as srv:
        with pytest.raises(OpenMLDownloadError, match="md5"):
            prepare_openml("openml-61", tmp_path / "o", download_dir=cache, mirror=srv.base_url)
    assert not (cache / "openml/data/v1/download/61/iris.arff").exists()


def test_unknown_name_is_a_clear_error(openml_site: Path, tmp_path: Path):
    with LoopbackServer(openml_site) as srv:
        with pytest.raises(OpenMLDownloadError, match="'nosuchset'"):
            prepare_openml(
                "openml-nosuchset", tmp_path / "o", download_dir=tmp_path / "c", mirror=srv.base_url
            )


def test_parse_arff_quotes_sparse_and_errors() -> None:
    text = """% comment
@RELATION 'toy set'
@ATTRIBUTE 'a b' NUMERIC
@attribute c {'x y', z, "w,v"}
@attribute s string
@data
1.5, 'x y', hello
?, "w,v", 'it''s'
{0 2, 1 z}
"""
    # note: ARFF escapes quotes with a backslash; '' is just two characters here
    text = text.replace("'it''s'", "'it\\'s'")
    a = parse_arff(text)
    assert a.relation == "toy set" and a.names == ["a b", "c", "s"]
    np.testing.assert_array_equal(a.columns[0], [1.5, np.nan, 2.0])
    np.testing.assert_array_equal(a.columns[1], [0, 2, 1])
    assert a.columns[2] == ["hello", "it's", "0"]
    with pytest.raises(ValueError, match="not declared"):
        parse_arff("@relation r\n@attribute c {a,b}\n@data\nq\n")
    with pytest.raises(ValueError, match="2 values"):
        parse_arff("@relation r\n@attribute a numeric\n@data\n1,2\n")
    with pytest.raises(ValueError, match="no @data"):
        parse_arff("@relation r\n@attribute a numeric\n")


def test_parse_openml_name() -> None:
    assert parse_openml_name("openml-adult") == ("adult", None)
    assert parse_openml_name("openml-1590") == (1590, None)
    assert parse_openml_name("openml-adult@2") == ("adult", 2)


@pytest.mark.parametrize(
    "rel",
    [
        "id_61/data-v1-dl-61.arff.gz",
        "id_1590/data-v1-dl-1595261.arff.gz",
        "id_2/data-v1-dl-1666876.arff.gz",
    ],
)
def test_fast_and_python_arff_engines_agree(rel: str) -> None:
    text = gzip.decompress((FIXTURES / rel).read_bytes()).decode("utf-8")
    fast, slow = parse_arff(text), parse_arff(text, engine="python")
    assert fast.names == slow.names and fast.types == slow.types
    for a, b in zip(fast.columns, slow.columns, strict=True):
        if isinstance(a, np.ndarray):
            np.testing.assert_array_equal(a, b)
        else:
            assert a == b


def test_prepare_dataset_dispatches_to_openml(openml_site: Path, tmp_path: Path) -> None:
    from mfoml.data.catalog import prepare_dataset

    with LoopbackServer(openml_site) as srv:
        meta = prepare_dataset(
            "openml-iris",
            tmp_path / "d",
            download_dir=tmp_path / "dl",
            mirror=srv.base_url,
            per_class_cap=20,
            seed=1,
        )
    y = np.load(tmp_path / "d" / "y_train.npy")
    assert meta["n_train"] == 60 and np.bincount(y).tolist() == [20, 20, 20]
    assert (tmp_path / "dl" / "openml" / "api/v1/json/data/61").is_file()
