"""The training jobs behind the thin rule scripts train.py, train_ssl.py and pretrain.py:
mfoml.nets.trainjob (resumable partial directory, the run's split, TrainConfig),
mfoml.nets.supervised (subset, noise, inputs, SVSL layers, epochs 0, text throughput),
mfoml.nets.transfer (weight copy and freezing), mfoml.nets.ssl_job, the MLM stage's helpers in
mfoml.nets.pretrain and mfoml.dynamics.edge (the sharpness tracked in training and its
stability threshold). Expected values are written out by hand."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from logcapture import captured
from mfoml.data.folds import save_folds
from mfoml.data.store import Dataset
from mfoml.dynamics.edge import SharpnessTracker, stability_threshold_factor
from mfoml.dynamics.sharpness import sharpness
from mfoml.nets.models import build_model
from mfoml.nets.pretrain import stage_config, stage_summary
from mfoml.nets.ssl_job import ssl_run, ssl_workers
from mfoml.nets.supervised import (
    run_inputs,
    run_model,
    run_threads,
    supervised_split,
    svsl_loss,
    text_throughput,
    train_run,
    zero_epoch_metrics,
)
from mfoml.nets.trainjob import (
    RunSplit,
    build_run_model,
    resume_dir,
    run_split,
    train_config,
)
from mfoml.nets.transfer import source_checkpoint, transfer_weights
from mfoml.tracking import tracker_from_config

TRAIN = {
    "epochs": 3,
    "batch_size": 16,
    "optimizer": "sgd",
    "lr": 0.05,
    "momentum": 0.5,
    "nesterov": False,
    "weight_decay": 0.001,
    "schedule": "multistep",
    "step_size": 30,
    "gamma": 0.5,
    "milestones": [2],
    "checkpoints": [0, 3],
    "mixed_precision": False,
    "eval_batch_size": 64,
    "warmup_fraction": 0.1,
    "grad_clip": None,
    "subset": None,
}


def _cfg(**kw) -> dict:
    base = {
        "run": "toy/mlp-s/relu/ce/noise0/fold1",
        "dataset": "toy",
        "fold": 1,
        "noise": 0.0,
        "seed": 3,
        "device": "cpu",
        "activation": "relu",
        "model": {"arch": "mlp", "depth": 2, "width": 8},
        "loss": {"type": "ce"},
        "train": dict(TRAIN),
    }
    return base | kw


def _toy(n: int = 12, with_test: bool = True) -> Dataset:
    """``n`` samples of 6 features, 3 classes (labels 0,1,2,0,1,2,...)."""
    x = np.arange(n * 6, dtype=np.float32).reshape(n, 6) / (n * 6)
    y = np.arange(n, dtype=np.int64) % 3
    meta = {"task": "classification", "n_classes": 3, "input_shape": [6], "kind": "table"}
    if not with_test:
        return Dataset(x, y, None, None, meta)
    return Dataset(x, y, x[:5] + 1, y[:5], meta)


# ------------------------------------------------------------------------------------------
# mfoml.nets.trainjob
# ------------------------------------------------------------------------------------------


def test_resume_dir_keeps_the_same_request_and_discards_another(tmp_path):
    out = tmp_path / "runs" / "checkpoints"
    work = resume_dir(out, {"b": 1, "a": [2]}, "v1")
    assert work == tmp_path / "runs" / ".checkpoints.partial" and work.is_dir()
    assert (work / "request.json").read_text() == '{"code": "v1", "params": {"a": [2], "b": 1}}'
    (work / "epoch_0001.pt").write_bytes(b"kept")
    assert (resume_dir(out, {"a": [2], "b": 1}, "v1") / "epoch_0001.pt").is_file()
    resume_dir(out, {"a": [2], "b": 1}, "v2")  # other code: starts afresh
    assert sorted(p.name for p in work.iterdir()) == ["request.json"]
    assert json.loads((work / "request.json").read_text())["code"] == "v2"
    (work / "request.json").unlink()  # no stamp: not trusted either
    (work / "epoch_0001.pt").write_bytes(b"unknown")
    resume_dir(out, {"a": [2], "b": 1}, "v2")
    assert sorted(p.name for p in work.iterdir()) == ["request.json"]


def test_run_split_of_a_fold_and_of_full(tmp_path):
    ds = _toy(6)
    folds = tmp_path / "folds.json"
    save_folds(folds, np.array([0, 1, 0, 1, 0, 1]), n_splits=2, seed=0, stratified=False)
    split = run_split(ds, _cfg(fold=1), folds)
    assert split.train_idx.tolist() == [0, 2, 4] and split.heldout_idx.tolist() == [1, 3, 5]
    assert split.y_clean.tolist() == [0, 2, 1] and split.y_train.tolist() == [0, 2, 1]
    assert split.relabelled.tolist() == [False, False, False]
    full = run_split(ds, _cfg(fold="full"), None)  # no fold file needed
    assert full.train_idx.tolist() == [0, 1, 2, 3, 4, 5] and full.heldout_idx.size == 0
    assert full.train_idx.dtype == np.int64 and full.heldout_idx.dtype == np.int64
    with pytest.raises(ValueError, match="run toy/.*needs a data set with an official test split"):
        run_split(_toy(6, with_test=False), _cfg(fold="full"), None)
    split.save(tmp_path / "split.npz")
    saved = np.load(tmp_path / "split.npz")
    assert sorted(saved.files) == [
        "heldout_idx",
        "relabelled",
        "train_idx",
        "y_train",
        "y_train_clean",
    ]
    assert saved["train_idx"].tolist() == [0, 2, 4] and saved["y_train_clean"].tolist() == [0, 2, 1]
    assert saved["relabelled"].dtype == bool


def test_train_config_serves_both_training_rules():
    tc = train_config(_cfg())
    assert (tc.epochs, tc.batch_size, tc.optimizer, tc.lr, tc.momentum) == (3, 16, "sgd", 0.05, 0.5)
    assert (tc.schedule, tc.milestones, tc.gamma, tc.weight_decay) == ("multistep", [2], 0.5, 0.001)
    assert (tc.seed, tc.device, tc.checkpoint_epochs, tc.grad_clip) == (3, "cpu", [0, 3], None)
    assert (tc.mixed_precision, tc.eval_batch_size, tc.nesterov) == (False, 64, False)
    assert train_config(_cfg(), batch_size=12).batch_size == 12  # a full-batch run
    clipped = _cfg(train=TRAIN | {"grad_clip": 1, "batch_size": "8"})
    assert train_config(clipped).grad_clip == 1.0 and train_config(clipped).batch_size == 8
    with pytest.raises(ValueError, match="TrainConfig.optimizer"):
        train_config(_cfg(train=TRAIN | {"optimizer": "lbfgs"}))


def test_build_run_model_names_the_models_own_keys():
    model = build_run_model(
        {"arch": "mlp", "depth": 1, "width": 4}, {}, [6], 3, activation="tanh", seed=0
    )
    assert model.probe_layers == ["input", "block1", "logits"] and model.spec["width"] == 4
    with pytest.raises(ValueError) as err:
        build_run_model(
            {"arch": "module", "factory": "no_such_file.py:build", "layers": ["a"]},
            {},
            [6],
            3,
            activation="relu",
            seed=0,
            run_id="toy/mlp-s/relu/ce/noise0/fold1",
        )
    assert str(err.value).startswith(
        "run toy/mlp-s/relu/ce/noise0/fold1: config key 'models.mlp-s.factory': file "
    )


# ------------------------------------------------------------------------------------------
# mfoml.nets.supervised
# ------------------------------------------------------------------------------------------


def test_supervised_split_subset_and_label_noise(tmp_path):
    ds = _toy(30)
    folds = tmp_path / "folds.json"
    save_folds(folds, np.arange(30) % 2, n_splits=2, seed=0, stratified=False)
    # fold 1 held out: the 15 even rows train; a stratified subset of 6 keeps 2 per class
    cfg = _cfg(train=TRAIN | {"subset": 6}, noise=0.5)
    split = supervised_split(ds, cfg, folds)
    assert len(split.train_idx) == 6 and set(split.train_idx.tolist()) <= set(range(0, 30, 2))
    assert np.bincount(split.y_clean, minlength=3).tolist() == [2, 2, 2]
    assert split.heldout_idx.tolist() == list(range(1, 30, 2))
    assert split.relabelled.sum() == 3  # round(0.5 * 6)
    assert (split.y_train != split.y_clean).tolist() == split.relabelled.tolist()
    again = supervised_split(ds, cfg, folds)
    assert again.train_idx.tolist() == split.train_idx.tolist()
    assert again.y_train.tolist() == split.y_train.tolist()  # seeded by the run's seed
    plain = supervised_split(ds, _cfg(train=TRAIN | {"subset": 100}), folds)
    assert len(plain.train_idx) == 15 and not plain.relabelled.any()
    regression = Dataset(ds.x_train, ds.y_train.astype(float), None, None, {"task": "regression"})
    with pytest.raises(ValueError, match="is a regression task"):
        supervised_split(regression, _cfg(), folds)


def test_run_inputs_encoder_dtype_and_missing_values():
    ds = _toy(6)
    split = RunSplit.clean(ds, np.array([0, 2, 4]), np.array([1, 3, 5]))
    inputs = run_inputs(ds, split, _cfg())
    assert inputs.x_train.dtype == np.float32 and inputs.input_shape == [6]
    assert inputs.n_classes == 3
    assert np.array_equal(inputs.x_train, ds.x_train[[0, 2, 4]])
    assert np.array_equal(inputs.evals["heldout"][1], [1, 0, 2])
    assert inputs.evals["test"][0] is ds.x_test

    class Twice:
        n_features_out_ = 2

        def __call__(self, x):
            return np.stack([x[:, 0], 2 * x[:, 0]], axis=1)

    enc = run_inputs(ds, split, _cfg(), Twice())
    assert enc.input_shape == [2] and enc.x_train.shape == (3, 2)
    assert enc.evals["heldout"][0].shape == (3, 2) and enc.evals["test"][0].shape == (5, 2)
    ids = Dataset(np.arange(12).reshape(6, 2) % 5, ds.y_train, None, None, ds.meta)
    assert run_inputs(ids, split, _cfg()).x_train.dtype == np.int64  # token ids stay integers
    holes = _toy(6)
    holes.x_train[2, 1] = np.nan
    with pytest.raises(ValueError, match="'toy' has missing values"):
        run_inputs(holes, split, _cfg())


def test_svsl_loss_takes_the_layers_from_gamma_to_the_penultimate():
    model = build_model("mlp", (6,), 3, depth=2, width=8, seed=0)
    svsl = {"type": "svsl", "lam": 0.01, "gamma": 1, "batched": False}
    loss = svsl_loss(model, svsl, 3, "r")
    assert loss.layers == ["block1", "block2"] and loss.batched is False
    assert loss.weight == pytest.approx(0.005)  # lam / 2 layers
    assert svsl_loss(model, svsl | {"gamma": 2}, 3, "r").layers == ["block2"]
    pre = build_model("mlp", (6,), 3, depth=2, width=8, seed=0, probe_point="pre")
    assert svsl_loss(pre, svsl, 3, "r").layers == ["block1_pre", "block2_pre", "block2"]
    assert svsl_loss(model, {"type": "ce"}, 3, "r") is None
    with pytest.raises(ValueError, match="^run r: SVSL gamma=3"):
        svsl_loss(model, svsl | {"gamma": 3}, 3, "r")


def test_zero_epochs_is_the_evaluation_of_the_given_weights(tmp_path):
    from mfoml.nets.training import train

    model = build_model("mlp", (6,), 3, depth=1, width=4, seed=0)
    ds = _toy(6)
    tc = train_config(_cfg(train=TRAIN | {"epochs": 0, "checkpoints": [0]}))
    evals = {"heldout": None, "test": (ds.x_test, ds.y_test)}
    frame = zero_epoch_metrics(model, (ds.x_train, ds.y_train), evals, tc)
    # the columns of a trained run's metrics.csv (rule train evaluates the training split too)
    one = train_config(_cfg(train=TRAIN | {"epochs": 1, "checkpoints": [1], "milestones": []}))
    trained = train(
        build_model("mlp", (6,), 3, depth=1, width=4, seed=0),
        ds.x_train,
        ds.y_train,
        one,
        tmp_path,
        evals=evals,
        eval_train=True,
    )
    assert list(frame.columns) == list(trained.columns)
    row = frame.iloc[0]
    assert row["epoch"] == 0 and row["train_seconds"] == 0.0 and row["lr"] == 0.05
    assert math.isnan(row["heldout_loss"]) and math.isnan(row["grad_norm_max"])
    assert row["train_eval_acc"] == row["train_acc"] and np.isfinite(row["test_loss"])
    assert row["n_parameters"] == 6 * 4 + 4 + 2 * 4 + 4 * 3 + 3  # linear, BatchNorm, head


def test_a_small_mlp_trains_on_one_of_two_threads_as_it_would_on_one(tmp_path):
    """Job threads 2, train.torch_threads auto: the small MLP gets one thread (logged), and the
    forward pass counting its MACs changes nothing: the run equals a one-thread job's, bit for
    bit (metrics and weights)."""
    ds = _toy(12)
    cfg = _cfg(fold="full", train=TRAIN | {"epochs": 2, "checkpoints": [2], "milestones": []})
    split = supervised_split(ds, cfg, None)
    inputs = run_inputs(ds, split, cfg)
    before = torch.get_num_threads()
    runs = {}
    try:
        for threads in (2, 1):
            torch.set_num_threads(threads)  # as the job's prologue (start_job) does
            model, _ = run_model(cfg, ds.meta, inputs)
            with captured("mfoml.nets") as lines:
                assert run_threads(model, inputs, split, cfg, threads) == 1
            assert torch.get_num_threads() == 1
            assert any(
                line.startswith(f"torch threads: 1 {'of the job' if threads == 2 else '(the job'}")
                for line in lines
            ), lines
            tracker = tracker_from_config(None)
            metrics = train_run(model, inputs, split, cfg, tmp_path / str(threads), tracker=tracker)
            runs[threads] = (metrics.drop(columns=["seconds", "train_seconds"]), model.state_dict())
    finally:
        torch.set_num_threads(before)
    assert len(runs[2][0]) == 2
    pd.testing.assert_frame_equal(runs[2][0], runs[1][0], check_exact=True)
    assert all(torch.equal(runs[2][1][k], runs[1][1][k]) for k in runs[1][1])


def test_text_throughput_counts_real_tokens():
    meta = {"kind": "text", "tokenizer": {"special_ids": {"pad": 0}}}
    x = np.array([[5, 6, 0, 0], [7, 0, 0, 0], [1, 2, 3, 4]])  # 7 real tokens
    metrics = pd.DataFrame({"train_seconds": [1.5, 2.0]})
    assert text_throughput(meta, x, metrics) == {
        "train_tokens": 14,
        "train_seconds": 3.5,
        "train_tokens_per_second": 4.0,
    }
    none = text_throughput(meta, x, pd.DataFrame({"train_seconds": [0.0]}))
    assert none["train_tokens"] == 7 and none["train_tokens_per_second"] is None
    assert text_throughput({"kind": "image"}, x, metrics) == {}


# ------------------------------------------------------------------------------------------
# mfoml.nets.transfer
# ------------------------------------------------------------------------------------------


def test_transfer_copies_all_but_the_head_and_freezes_the_first_stages():
    source = build_model("mlp", (6,), 5, depth=2, width=8, seed=1)
    model = build_model("mlp", (6,), 3, depth=2, width=8, seed=2)
    head_before = {k: v.clone() for k, v in model.state_dict().items() if ".logits." in k}
    copied, frozen = transfer_weights(model, source.state_dict(), freeze=1)
    assert frozen == ["block1"]
    assert sorted(copied) == sorted(k for k in source.state_dict() if ".logits." not in k)
    state = model.state_dict()
    for key in copied:
        assert torch.equal(state[key], source.state_dict()[key]), key
    for key, value in head_before.items():  # the head keeps its own initialization
        assert torch.equal(state[key], value), key
    assert not any(p.requires_grad for p in model.stages["block1"].parameters())
    assert all(p.requires_grad for p in model.stages["block2"].parameters())
    assert all(p.requires_grad for p in model.stages["logits"].parameters())
    with pytest.raises(ValueError, match=r"transfer.freeze = 3 but the model has only 2 stages"):
        transfer_weights(
            build_model("mlp", (6,), 3, depth=2, width=8), source.state_dict(), freeze=3
        )
    wider = build_model("mlp", (6,), 3, depth=2, width=9, seed=0)
    with pytest.raises(
        ValueError, match=r"parameter 'stages.block1.1.weight': \(8, 6\) vs \(9, 6\)"
    ):
        transfer_weights(wider, source.state_dict())


def test_source_checkpoint_picks_the_last_or_the_asked_epoch(tmp_path):
    from mfoml.nets.training import train

    model = build_model("mlp", (6,), 3, depth=1, width=4, seed=0)
    ds = _toy(12)
    tc = train_config(_cfg(train=TRAIN | {"epochs": 2, "checkpoints": [1, 2], "milestones": []}))
    train(model, ds.x_train, ds.y_train, tc, tmp_path / "src")
    last, epoch = source_checkpoint(tmp_path / "src")
    assert epoch == 2
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in last.state_dict().items())
    assert source_checkpoint(tmp_path / "src", 1)[1] == 1
    with pytest.raises(FileNotFoundError, match=r"no checkpoint of epoch 5 \(\[1, 2\]\)"):
        source_checkpoint(tmp_path / "src", 5)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="has no checkpoint"):
        source_checkpoint(tmp_path / "empty")


# ------------------------------------------------------------------------------------------
# mfoml.nets.ssl_job, mfoml.nets.pretrain (stage helpers)
# ------------------------------------------------------------------------------------------


def test_ssl_workers_and_kind_check():
    assert ssl_workers("image", 4) == 3 and ssl_workers("image", 1) == 0
    assert ssl_workers("signal", 4) == 0
    with pytest.raises(ValueError, match="is of kind 'table'; self-supervised training"):
        ssl_run(_toy(6), _cfg(ssl_augment={"image": {}, "signal": {}}), None)


def test_stage_config_and_summary():
    cfg = {
        "stage": "s",
        "epochs": 2,
        "batch_size": 8,
        "lr": 0.001,
        "weight_decay": 0.0,
        "warmup_fraction": 0.5,
        "mask_prob": 0.2,
        "grad_clip": None,
        "seed": 4,
        "checkpoints": [2],
        "device": "cpu",
    }
    mc = stage_config(cfg)
    assert (mc.epochs, mc.batch_size, mc.mask_prob, mc.grad_clip, mc.seed) == (2, 8, 0.2, None, 4)
    assert mc.checkpoint_epochs == [2] and mc.device == "cpu"
    metrics = pd.DataFrame({"tokens": [100, 100], "tokens_per_second": [50.0, 25.0]})
    tok = {"sha256": "abc", "vocab_size": 30}
    out = stage_summary(cfg, tok, 7, metrics)
    assert out["tokenizer_sha256"] == "abc" and out["vocab_size"] == 30 and out["n_sequences"] == 7
    assert out["train_tokens"] == 200 and out["train_tokens_per_second"] == 200 / 6
    assert stage_summary(cfg, tok, 7, metrics.iloc[:0])["train_tokens_per_second"] is None


# ------------------------------------------------------------------------------------------
# mfoml.dynamics.edge
# ------------------------------------------------------------------------------------------


def test_stability_threshold_factor():
    assert stability_threshold_factor("sgd") == 2.0  # gradient descent: 2 / lr
    assert stability_threshold_factor("sgd", 0.9) == pytest.approx(3.8)  # heavy ball
    assert stability_threshold_factor("sgd", 0.9, nesterov=True) == pytest.approx(3.8 / 2.8)
    assert stability_threshold_factor("sgd", 0.0, nesterov=True) == 2.0
    assert math.isnan(stability_threshold_factor("adam", 0.9))
    assert math.isnan(stability_threshold_factor("adamw"))


@pytest.mark.parametrize("full_batch", [True, False])
def test_sharpness_tracker_columns(full_batch):
    ds = _toy(30)
    model = build_model("mlp", (6,), 3, depth=1, width=4, seed=0)
    cfg = _cfg(
        train=TRAIN
        | {
            "sharpness_every": 2,
            "full_batch": full_batch,
            "sharpness_samples": 9,
            "sharpness_iters": 3,
            "optimizer": "sgd",
            "momentum": 0.5,
        }
    )
    tracker = SharpnessTracker.for_run(cfg, ds.x_train, ds.y_train)
    assert len(tracker.y) == (30 if full_batch else 9)
    assert tracker.mode == ("train" if full_batch else "eval")
    off = tracker(model, {"epoch": 1, "lr": 0.1})
    assert math.isnan(off["sharpness"]) and off["stability_threshold"] == pytest.approx(30.0)
    on = tracker(model, {"epoch": 2, "lr": 0.1})
    direct = sharpness(
        model,
        tracker.x,
        tracker.y,
        subset_size=None,
        n_iter=3,
        trace_samples=0,
        batch_size=None if full_batch else 512,
        mode=tracker.mode,
        seed=3,
    )
    assert on["sharpness"] == direct["top_eigenvalue"] and np.isfinite(on["sharpness"])
    assert np.isfinite(tracker(model, {"epoch": 3, "lr": 0.1})["sharpness"])  # the last epoch
    adam = SharpnessTracker.for_run(
        _cfg(train=cfg["train"] | {"optimizer": "adam"}), ds.x_train, ds.y_train
    )
    assert math.isnan(adam(model, {"epoch": 1, "lr": 0.1})["stability_threshold"])
