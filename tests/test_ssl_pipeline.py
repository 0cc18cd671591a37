"""The self-supervised track's plumbing: label sets in the data store (CIFAR-100 coarse labels,
served by a loopback HTTP server) and in activation dumps, SSL checkpoints, the configuration
checks and the routing of SSL runs through the DAG (a Snakemake dry run).

The CIFAR-100 archive is written here in the real "python version" format with a fine -> coarse
mapping drawn at random (so coarse labels cannot be derived from fine ones by a formula).
"""

from __future__ import annotations

import copy
import hashlib
import io
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from loopback import serve_directory
from mfoml.collapse.probes import NCC_MISMATCH_NA, layer_probe_table
from mfoml.config import rule_params, run_table, validate_config
from mfoml.config.ssl import SSL_LOSS_KEYS, SSL_LOSS_TYPES
from mfoml.data.catalog import prepare_dataset
from mfoml.data.store import IntegrityError, load_dataset
from mfoml.nets.activations import dump_activations
from mfoml.nets.augment import make_augmenter
from mfoml.nets.checkpoints import load_checkpoint
from mfoml.nets.dumps import open_activations
from mfoml.nets.ssl import SSL_DEFAULTS, SSL_TYPES, build_objective
from mfoml.nets.ssl_model import SSLNet, build_ssl_model
from mfoml.nets.ssl_training import train_ssl
from mfoml.nets.trainconfig import TrainConfig
from workflow_utils import REPO, config_error, copy_workflow, dry_run_jobs

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # conftest.py


# ---------------------------------------------------------------------------------------------
# CIFAR-100 coarse labels in the data store


def _cifar100_archive(directory: Path, rng: np.random.Generator, n_train=40, n_test=12):
    """The CIFAR-100 python-version tar.gz; returns fine and coarse labels and the mapping."""
    mapping = rng.permutation(np.repeat(np.arange(20), 5))  # fine class -> superclass
    members, labels = {}, {}
    for split, n in (("train", n_train), ("test", n_test)):
        fine = rng.integers(0, 100, size=n)
        labels[split] = (fine, mapping[fine])
        batch = {
            "data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
            "fine_labels": fine.tolist(),
            "coarse_labels": mapping[fine].tolist(),
        }
        members[f"cifar-100-python/{split}"] = pickle.dumps(batch, protocol=2)
    meta = {
        "fine_label_names": [f"fine{i}" for i in range(100)],
        "coarse_label_names": [f"super{i}" for i in range(20)],
    }
    members["cifar-100-python/meta"] = pickle.dumps(meta, protocol=2)
    with tarfile.open(directory / "cifar-100-python.tar.gz", "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return labels, mapping


def test_cifar100_coarse_labels_kept_checksummed_and_capped(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    labels, mapping = _cifar100_archive(served, np.random.default_rng(0))
    md5 = {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in served.iterdir()}
    with serve_directory(served) as base:
        meta = prepare_dataset(
            "cifar100", tmp_path / "c100", download_dir=tmp_path / "dl", mirror=base, checksums=md5
        )
        capped = prepare_dataset(
            "cifar100",
            tmp_path / "c100cap",
            download_dir=tmp_path / "dl",
            mirror=base,
            checksums=md5,
            per_class_cap=1,
            seed=0,
        )
    assert meta["label_set"] == "fine"
    assert meta["label_sets"]["coarse"]["n_classes"] == 20
    assert meta["label_sets"]["coarse"]["class_names"][3] == "super3"
    assert {"y_train_coarse.npy", "y_test_coarse.npy"} <= set(meta["checksums"])
    ds = load_dataset(tmp_path / "c100")
    sets = ds.label_sets()
    assert list(sets) == ["fine", "coarse"]
    np.testing.assert_array_equal(sets["fine"][0], labels["train"][0])
    np.testing.assert_array_equal(sets["coarse"][0], labels["train"][1])
    np.testing.assert_array_equal(sets["coarse"][1], labels["test"][1])
    assert ds.label_set_classes() == {"fine": 100, "coarse": 20}
    # the capped subset keeps fine and coarse labels aligned
    dc = load_dataset(tmp_path / "c100cap")
    np.testing.assert_array_equal(dc.extra_labels["coarse"][0], mapping[dc.y_train])
    assert capped["n_train"] == len(np.unique(labels["train"][0]))
    # the coarse files are covered by the checksums
    y = np.load(tmp_path / "c100" / "y_train_coarse.npy")
    np.save(tmp_path / "c100" / "y_train_coarse.npy", (y + 1) % 20)
    with pytest.raises(IntegrityError, match="y_train_coarse.npy"):
        load_dataset(tmp_path / "c100")


# ---------------------------------------------------------------------------------------------
# SSL checkpoints and activation dumps


def _tiny_ssl(kind: str = "byol") -> tuple[SSLNet, object]:
    model = build_ssl_model(
        {"arch": "conv1d", "input_shape": [1, 40], "n_classes": 1, "depth": 2, "width": 8},
        {"width": 16, "depth": 2, "out_dim": 8},
        seed=3,
    )
    return model, build_objective({"type": kind}, model.out_dim, model, seed=4)


def test_train_ssl_is_deterministic_and_checkpoints_reload(tmp_path):
    x = np.random.default_rng(0).normal(size=(200, 1, 40)).astype(np.float32)
    cfg = TrainConfig(epochs=1, batch_size=32, device="cpu", checkpoint_epochs=[0, 1], seed=5)
    states = []
    for k in range(2):  # the second run makes its views in a worker process
        model, obj = _tiny_ssl()
        aug = make_augmenter("signal")
        frame = train_ssl(model, obj, aug, x, cfg, tmp_path / f"r{k}", workers=k)
        states.append(model.state_dict())
    for key, val in states[0].items():
        assert torch.equal(val, states[1][key]), key
    assert list(frame.columns) == ["epoch", "train_loss", "tau", "embedding_std", "lr", "seconds"]
    loaded, ckpt = load_checkpoint(tmp_path / "r1" / "epoch_0001.pt")
    assert isinstance(loaded, SSLNet) and loaded.has_classifier is False
    for key, val in loaded.state_dict().items():
        assert torch.equal(val, states[1][key]), key
    assert ckpt["ssl"]["loss"]["type"] == "byol" and ckpt["ssl"]["augment"]["kind"] == "signal"
    assert any(k.startswith("teacher.") for k in ckpt["objective_state"])
    init, _ = load_checkpoint(tmp_path / "r1" / "epoch_0000.pt")
    assert not torch.equal(
        init.state_dict()["stages.block1.0.weight"], states[1]["stages.block1.0.weight"]
    )


def test_ssl_dumps_have_no_predictions_and_keep_label_sets(tmp_path):
    model, _ = _tiny_ssl("vicreg")
    rng = np.random.default_rng(1)
    x = rng.normal(size=(90, 1, 40)).astype(np.float32)
    fine = rng.integers(0, 6, 90)
    coarse = fine // 3
    for split in ("train", "test"):
        man = dump_activations(
            model,
            x,
            fine,
            tmp_path / split,
            device="cpu",
            split=split,
            label_set="fine",
            label_sets={"coarse": coarse},
        )
    assert man["predictions"] is False and man["label_sets"] == ["coarse"]
    train, test = open_activations(tmp_path / "train"), open_activations(tmp_path / "test")
    assert train.layers == model.probe_layers
    assert (np.asarray(train.predictions) == -1).all() and not train.has_predictions
    assert list(train.label_sets) == ["fine", "coarse"]
    np.testing.assert_array_equal(train.label_sets["coarse"], coarse)
    sets = {s: (train.label_sets[s], test.label_sets[s]) for s in train.label_sets}
    table = layer_probe_table(
        train, test, sets, layers=["block2", "projector"], linear={"max_iter": 100}, knn={"k": 5}
    )
    assert len(table) == 4 and set(table["label_set"]) == {"fine", "coarse"}
    assert table["ncc_mismatch"].isna().all()
    assert (table["ncc_mismatch_status"] == NCC_MISMATCH_NA).all()
    acc = table[["ncc_accuracy_train", "linear_probe_test", "knn_test"]].to_numpy()
    assert np.isfinite(acc).all() and (acc >= 0).all() and (acc <= 1).all()
    with pytest.raises(ValueError, match="label set"):
        dump_activations(
            model, x, fine, tmp_path / "bad", label_set="fine", label_sets={"fine": fine}
        )


# ---------------------------------------------------------------------------------------------
# configuration


def _base() -> dict:
    return yaml.safe_load((REPO / "config" / "tests" / "ssl_tiny.yaml").read_text())


def test_config_ssl_keys_and_checks():
    assert SSL_LOSS_TYPES == SSL_TYPES
    for kind, keys in SSL_LOSS_KEYS.items():
        assert set(keys) == set(SSL_DEFAULTS[kind]) - {"eps"}
    cfg = validate_config(_base())
    runs = run_table(cfg)  # VICReg and DINO
    assert [r.run_id.split("/")[3] for r in runs] == ["vicreg", "dino"]
    run = runs[0]
    assert all(r.is_ssl for r in runs)
    assert '"ssl_augment"' in rule_params(cfg, "train", run)
    assert '"runs":[]' in rule_params(cfg, "aggregate")
    assert run.run_id in rule_params(cfg, "ssl_aggregate")
    bad = _base()
    bad["losses"]["vicreg"]["temperature"] = 0.1
    bad["losses"]["ce"] = {"type": "ce", "projector": {"width": 4}}
    bad["sweeps"][0]["noise"] = [0.0, 0.2]
    bad["ssl"]["eval"]["test_split"] = "heldout"
    msg = config_error(bad)
    assert "losses.vicreg.temperature" in msg and "simclr" in msg
    assert "losses.ce.projector" in msg
    assert "sweeps[0].noise" in msg and "ssl.eval.test_split" in msg
    typo = _base()
    typo["ssl"]["augment"] = {"signal": {"shfit": 2}}
    assert "ssl.augment.signal" in config_error(typo)


@pytest.mark.slow
def test_dry_run_routes_ssl_runs_to_their_rules(tmp_path):
    wd = copy_workflow(tmp_path / "wf")
    cfg = _base()
    cfg["losses"]["ce"] = {"type": "ce"}
    cfg["sweeps"].append(copy.deepcopy(cfg["sweeps"][0]) | {"name": "sup", "losses": ["ce"]})
    path = wd / "config" / "mixed.yaml"
    path.write_text(yaml.safe_dump(cfg))
    jobs = dry_run_jobs(wd, configfile=path)
    by_rule = pd.Series([r for r, _ in jobs]).value_counts().to_dict()
    rules = ("train", "train_ssl", "ssl_eval", "ncc", "probe")
    losses = {r: sorted(w["run"].split("/")[3] for q, w in jobs if q == r) for r in rules}
    assert by_rule["train"] == 1 and by_rule["train_ssl"] == 2  # vicreg and dino
    assert losses["train_ssl"] == losses["ssl_eval"] == ["dino", "vicreg"]
    assert losses["train"] == losses["ncc"] == losses["probe"] == ["ce"]
    assert by_rule["activations"] == 3 and by_rule["ssl_figures"] == 1 and by_rule["figures"] == 1
