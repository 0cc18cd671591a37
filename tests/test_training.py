"""Tests of mfoml.nets.training: learning, checkpoints, determinism, resume, extra loss."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from logcapture import captured
from mfoml.nets import training
from mfoml.nets.checkpoints import CheckpointError, list_checkpoints, load_checkpoint
from mfoml.nets.models import build_model
from mfoml.nets.training import ExtraLoss, TrainConfig, train

COLUMNS = [
    "epoch",
    "train_loss",
    "train_acc",
    "heldout_loss",
    "heldout_acc",
    "test_loss",
    "test_acc",
    "grad_norm_mean",
    "grad_norm_max",
    "n_parameters",
    "train_seconds",
    "lr",
    "seconds",
]


@pytest.fixture(scope="module")
def mnist1d():
    from mnist1d.data import get_dataset_args, make_dataset

    d = make_dataset(get_dataset_args())
    return (
        d["x"].astype(np.float32),
        d["y"].astype(np.int64),
        d["x_test"].astype(np.float32),
        d["y_test"].astype(np.int64),
    )


@pytest.fixture
def small(rng):
    """A small 3-class problem: 90 samples of 6 features (x float32, y int64)."""
    centers = rng.normal(scale=2.0, size=(3, 6))
    y = np.arange(90) % 3
    x = (centers[y] + rng.normal(size=(90, 6))).astype(np.float32)
    return x, y.astype(np.int64)


def _state_equal(a: dict, b: dict) -> bool:
    return list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)


def _manual_eval(model, x, y):
    """Mean cross-entropy and accuracy written out with log-softmax by hand."""
    model.eval()
    with torch.no_grad():
        z = model(torch.from_numpy(x)).double().numpy()
    z = z - z.max(1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(1, keepdims=True))
    return float(-logp[np.arange(len(y)), y].mean()), float((z.argmax(1) == y).mean())


@pytest.mark.slow
def test_mlp_learns_mnist1d_well_above_chance(mnist1d, tmp_path):
    x, y, xt, yt = mnist1d
    model = build_model("mlp", (40,), 10, depth=2, width=64, seed=0)
    cfg = TrainConfig(epochs=8, batch_size=128, lr=2e-3, device="cpu")
    with captured("mfoml.nets.training") as lines:
        df = train(model, x, y, cfg, tmp_path / "ck", evals={"test": (xt, yt)})
    assert list(df["epoch"]) == list(range(1, 9))
    assert df["train_loss"].iloc[-1] < df["train_loss"].iloc[0] - 0.3
    assert df["test_acc"].iloc[-1] > 0.4  # chance is 0.1
    assert np.isnan(df["heldout_acc"]).all()  # no held-out set given
    loss, acc = _manual_eval(model, xt, yt)
    assert acc == pytest.approx(df["test_acc"].iloc[-1])
    assert loss == pytest.approx(df["test_loss"].iloc[-1], rel=1e-5)
    assert sum(line.startswith("epoch ") for line in lines) == 8


def test_checkpoints_metrics_table_and_load(small, tmp_path):
    x, y = small
    model = build_model("mlp", (6,), 3, depth=2, width=8, seed=1)
    init = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = TrainConfig(epochs=3, batch_size=16, checkpoint_epochs=[0, 2, 3], device="cpu")
    out = tmp_path / "ck"
    with captured("mfoml.nets.training") as lines:
        df = train(
            model,
            x[:60],
            y[:60],
            cfg,
            out,
            evals={"heldout": (x[60:75], y[60:75]), "test": (x[75:], y[75:])},
        )
    assert sorted(p.name for p in out.iterdir()) == [
        "epoch_0000.pt",
        "epoch_0002.pt",
        "epoch_0003.pt",
        "metrics.csv",
    ]
    table = pd.read_csv(out / "metrics.csv")
    assert list(table.columns) == COLUMNS
    assert list(table["epoch"]) == [1, 2, 3]
    pd.testing.assert_frame_equal(table, df.reset_index(drop=True), check_dtype=False)
    assert [line.split()[:2] for line in lines if line.startswith("epoch")] == [
        ["epoch", "1/3"],
        ["epoch", "2/3"],
        ["epoch", "3/3"],
    ]

    m0, c0 = load_checkpoint(out / "epoch_0000.pt")
    assert c0["epoch"] == 0 and c0["metrics"] == []
    assert _state_equal(m0.state_dict(), init)
    m3, c3 = load_checkpoint(out / "epoch_0003.pt")
    assert _state_equal(m3.state_dict(), model.state_dict())
    assert c3["model_spec"] == model.spec
    assert TrainConfig.from_dict(c3["train_config"]) == cfg
    assert len(c3["metrics"]) == 3
    assert not m3.training
    for name, sl in (("heldout", slice(60, 75)), ("test", slice(75, 90))):
        loss, acc = _manual_eval(m3, x[sl], y[sl])
        assert acc == pytest.approx(table[f"{name}_acc"].iloc[-1])
        assert loss == pytest.approx(table[f"{name}_loss"].iloc[-1], rel=1e-5)
    _, c2 = load_checkpoint(out / "epoch_0002.pt")
    assert len(c2["metrics"]) == 2


def test_training_is_bit_identical_for_a_seed(rng, tmp_path):
    x = rng.normal(size=(70, 40)).astype(np.float32)
    y = rng.integers(0, 4, size=70).astype(np.int64)
    cfg = TrainConfig(
        epochs=3,
        batch_size=16,
        optimizer="sgd",
        lr=0.05,
        momentum=0.9,
        weight_decay=1e-4,
        schedule="step",
        step_size=1,
        gamma=0.5,
        seed=5,
        device="cpu",
    )
    states = []
    for run in range(2):
        model = build_model("conv1d", (40,), 4, depth=2, width=4, seed=3)
        train(model, x, y, cfg, tmp_path / f"r{run}")
        states.append(model.state_dict())
    assert _state_equal(states[0], states[1])
    other = build_model("conv1d", (40,), 4, depth=2, width=4, seed=3)
    train(other, x, y, TrainConfig(**{**cfg.to_dict(), "seed": 6}), tmp_path / "r2")
    assert not _state_equal(states[0], other.state_dict())


@pytest.mark.parametrize(
    "schedule, expected",
    [
        ({"schedule": "none"}, [0.1, 0.1, 0.1, 0.1]),
        ({"schedule": "step", "step_size": 2, "gamma": 0.5}, [0.1, 0.1, 0.05, 0.05]),
        ({"schedule": "multistep", "milestones": [1, 3], "gamma": 0.5}, [0.1, 0.05, 0.05, 0.025]),
    ],
)
def test_lr_schedules(small, tmp_path, schedule, expected):
    x, y = small
    model = build_model("mlp", (6,), 3, depth=1, width=4, seed=0)
    cfg = TrainConfig(epochs=4, batch_size=32, optimizer="sgd", lr=0.1, device="cpu", **schedule)
    df = train(model, x, y, cfg, tmp_path)
    np.testing.assert_allclose(df["lr"], expected)


class FeatureNormLoss:
    """lam * mean squared norm of a layer's features; records how it was called."""

    def __init__(self, model, layer: str, lam: float) -> None:
        self.layers = [layer]
        self.lam = lam
        self.epoch_calls: list[tuple] = []
        self.hook_outputs: list[torch.Tensor] = []
        self.seen_same_tensor: list[bool] = []
        model.stages[layer].register_forward_hook(lambda _m, _i, out: self.hook_outputs.append(out))

    def on_epoch_start(self, model, x_train, y_train, device) -> None:
        self.epoch_calls.append((x_train, y_train, device, model.training))
        self.hook_outputs.clear()

    def __call__(self, features, labels):
        f = features[self.layers[0]]
        # the features are the very tensor produced by this batch's (single) forward pass
        self.seen_same_tensor.append(len(self.hook_outputs) >= 1 and f is self.hook_outputs[-1])
        assert f.requires_grad and labels.dtype == torch.int64
        return self.lam * f.flatten(1).pow(2).sum(1).mean()


def test_extra_loss_uses_the_same_forward_pass(small, tmp_path):
    x, y = small
    model = build_model("mlp", (6,), 3, depth=2, width=8, seed=2)
    extra = FeatureNormLoss(model, "block1", lam=0.5)
    assert isinstance(extra, ExtraLoss)
    cfg = TrainConfig(epochs=3, batch_size=30, lr=1e-2, device="cpu")
    df = train(model, x, y, cfg, tmp_path / "a", extra_loss=extra)
    assert len(extra.epoch_calls) == 3
    assert all(c[0] is x and c[1] is y and c[2] == torch.device("cpu") for c in extra.epoch_calls)
    assert len(extra.seen_same_tensor) == 9 and all(extra.seen_same_tensor)
    # one forward pass per batch: 3 batches per epoch, and no evaluation pass (no evals)
    assert len(extra.hook_outputs) == 3
    assert "train_extra_loss" in df.columns and (df["train_extra_loss"] > 0).all()

    # the penalty shrinks the features compared with plain cross-entropy
    plain = build_model("mlp", (6,), 3, depth=2, width=8, seed=2)
    train(plain, x, y, cfg, tmp_path / "b")

    def mean_norm(m):
        m.eval()
        with torch.no_grad():
            _, f = m.forward_features(torch.from_numpy(x), ["block1"])
        return float(f["block1"].pow(2).sum(1).mean())

    assert mean_norm(model) < 0.8 * mean_norm(plain)


def test_nan_loss_stops_with_a_clear_error(small, tmp_path):
    x, y = small

    class NanLoss:
        layers = ["logits"]

        def __call__(self, features, labels):
            return features["logits"].sum() * float("nan")

    model = build_model("mlp", (6,), 3, depth=1, width=4, seed=0)
    with pytest.raises(FloatingPointError, match="epoch 1, batch 0"):
        train(model, x, y, TrainConfig(epochs=2, device="cpu"), tmp_path, extra_loss=NanLoss())


class Boom(Exception):
    pass


def test_kill_during_checkpoint_save_leaves_no_checkpoint(small, tmp_path, monkeypatch):
    x, y = small
    real_save = torch.save
    calls = {"n": 0}

    def dying_save(obj, f, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:  # second checkpoint: write part of the file, then "get killed"
            real_save(obj, f, *args, **kwargs)
            size = Path(f).stat().st_size
            with open(f, "r+b") as fh:
                fh.truncate(size // 2)
            raise Boom("killed while saving")
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(training.torch, "save", dying_save)
    model = build_model("mlp", (6,), 3, depth=1, width=4, seed=0)
    cfg = TrainConfig(epochs=3, batch_size=32, checkpoint_epochs=[1, 2, 3], device="cpu")
    out = tmp_path / "ck"
    with pytest.raises(Boom):
        train(model, x, y, cfg, out)
    monkeypatch.undo()
    assert sorted(p.name for p in out.iterdir()) == ["epoch_0001.pt", "metrics.csv"]
    _, ckpt = load_checkpoint(out / "epoch_0001.pt")
    assert ckpt["epoch"] == 1
    assert len(pd.read_csv(out / "metrics.csv")) == 2  # the table is complete up to epoch 2


def test_fresh_run_removes_files_of_an_earlier_run(small, tmp_path):
    x, y = small
    out = tmp_path / "ck"
    out.mkdir()
    for name in ("epoch_0009.pt", "metrics.csv", ".epoch_0001.pt.x1y2.tmp.pt", "run.json"):
        (out / name).write_text("stale")
    model = build_model("mlp", (6,), 3, depth=1, width=4, seed=0)
    train(model, x, y, TrainConfig(epochs=1, batch_size=32, device="cpu"), out)
    assert sorted(p.name for p in out.iterdir()) == ["epoch_0001.pt", "metrics.csv", "run.json"]
    assert len(pd.read_csv(out / "metrics.csv")) == 1


def test_corrupted_or_truncated_checkpoint_gives_clear_error(small, tmp_path):
    x, y = small
    model = build_model("mlp", (6,), 3, depth=1, width=4, seed=0)
    out = tmp_path / "ck"
    train(model, x, y, TrainConfig(epochs=1, batch_size=32, device="cpu"), out)
    good = (out / "epoch_0001.pt").read_bytes()
    for name, data in [
        ("half.pt", good[: len(good) // 2]),
        ("tail.pt", good[:-20]),
        ("empty.pt", b""),
        ("garbage.pt", b"not a checkpoint at all" * 10),
    ]:
        p = tmp_path / name
        p.write_bytes(data)
        with pytest.raises(
            CheckpointError, match=f"{name}.*(truncated or corrupted|cannot be read)"
        ):
            load_checkpoint(p)
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")
    # a complete file whose weights do not fit its spec
    ckpt = torch.load(out / "epoch_0001.pt", weights_only=True)
    ckpt["model_spec"]["width"] = 5
    torch.save(ckpt, tmp_path / "mismatch.pt")
    with pytest.raises(CheckpointError, match="mismatch.pt.*do not match"):
        load_checkpoint(tmp_path / "mismatch.pt")


def test_resume_after_kill_equals_uninterrupted_run(small, tmp_path):
    x, y = small
    cfg = TrainConfig(
        epochs=4,
        batch_size=16,
        optimizer="sgd",
        lr=0.05,
        momentum=0.9,
        schedule="multistep",
        milestones=[3],
        checkpoint_epochs=[2, 4],
        seed=11,
        device="cpu",
    )
    full = build_model("mlp", (6,), 3, depth=2, width=8, seed=4)
    ref = train(full, x, y, cfg, tmp_path / "full")

    out = tmp_path / "killed"
    model = build_model("mlp", (6,), 3, depth=2, width=8, seed=4)

    def killer(line: str) -> None:
        if line.startswith("epoch 3/4"):
            raise Boom("killed during epoch 3")

    with pytest.raises(Boom), captured("mfoml.nets.training", killer):
        train(model, x, y, cfg, out)
    assert sorted(list_checkpoints(out)) == [2]
    # leftovers of a kill: a temp file of atomic_path and a half-written file from elsewhere
    (out / ".epoch_0004.pt.abc123.tmp.pt").write_bytes(b"partial")
    (out / "epoch_0003.pt").write_bytes((out / "epoch_0002.pt").read_bytes()[:100])

    fresh = build_model("mlp", (6,), 3, depth=2, width=8, seed=99)  # other init: overwritten
    with captured("mfoml.nets") as lines:
        df = train(fresh, x, y, cfg, out, resume=True)
    assert any(
        "removing unreadable checkpoint" in line and "epoch_0003.pt" in line for line in lines
    )
    assert any(line.startswith("resuming from epoch 2") for line in lines)
    assert _state_equal(fresh.state_dict(), full.state_dict())
    cols = [c for c in COLUMNS if c not in ("seconds", "train_seconds")]  # wall-clock timings
    pd.testing.assert_frame_equal(df[cols], ref[cols])
    # the unreadable file and the temp file are gone; only complete checkpoints remain
    assert sorted(p.name for p in out.iterdir()) == [
        "epoch_0002.pt",
        "epoch_0004.pt",
        "metrics.csv",
    ]
    _, c4 = load_checkpoint(out / "epoch_0004.pt")
    assert _state_equal(c4["state_dict"], full.state_dict())

    with pytest.raises(ValueError, match="train_config differs"):
        train(fresh, x, y, TrainConfig(**{**cfg.to_dict(), "lr": 0.01}), out, resume=True)


def test_config_and_input_validation(small, tmp_path):
    x, y = small
    with pytest.raises(ValueError, match="optimizer"):
        TrainConfig(optimizer="rmsprop")
    with pytest.raises(ValueError, match="checkpoint_epochs"):
        TrainConfig(epochs=3, checkpoint_epochs=[5])
    with pytest.raises(ValueError, match="schedule"):
        TrainConfig(schedule="cosine")
    with pytest.raises(ValueError, match="TrainConfig.epochs: must be an integer"):
        TrainConfig(epochs="10")
    with pytest.raises(ValueError, match="TrainConfig.milestones"):
        TrainConfig(milestones=[2.5])
    with pytest.raises(ValueError, match="TrainConfig.device"):
        TrainConfig(device="tpu")
    with pytest.raises(ValueError, match="unknown key.*learning_rate"):
        TrainConfig.from_dict({"learning_rate": 0.1})
    model = build_model("mlp", (6,), 3, depth=1, width=4)
    with pytest.raises(ValueError, match="labels must be in"):
        train(model, x, y + 3, TrainConfig(epochs=1, device="cpu"), tmp_path)
    bad = x.copy()
    bad[0, 0] = math.inf
    with pytest.raises(ValueError, match="NaN or inf"):
        train(model, bad, y, TrainConfig(epochs=1, device="cpu"), tmp_path)
    with pytest.raises(ValueError, match="extra_loss.layers"):
        extra = FeatureNormLoss(model, "block1", 1.0)
        extra.layers = ["block7"]
        train(model, x, y, TrainConfig(epochs=1, device="cpu"), tmp_path, extra_loss=extra)


def test_frozen_stage_keeps_weights_and_batchnorm_statistics(small, tmp_path):
    """Transfer learning freezes a stage's parameters; its BatchNorm running statistics must not
    move either (train mode would keep updating them), while the trainable stages do learn."""
    x, y = small
    model = build_model("mlp", (6,), 3, depth=2, width=8, seed=0)
    # Give the running statistics a state that any update would visibly change.
    bn1 = [m for m in model.stages["block1"].modules() if isinstance(m, torch.nn.BatchNorm1d)]
    bn2 = [m for m in model.stages["block2"].modules() if isinstance(m, torch.nn.BatchNorm1d)]
    assert len(bn1) == 1 and len(bn2) == 1
    for p in model.stages["block1"].parameters():
        p.requires_grad_(False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = TrainConfig(epochs=2, batch_size=30, lr=1e-2, device="cpu")
    train(model, x, y, cfg, tmp_path)
    after = model.state_dict()
    block1 = [k for k in before if k.startswith("stages.block1.")]
    block2 = [k for k in before if k.startswith("stages.block2.")]
    assert any(k.endswith("running_mean") for k in block1)
    for k in block1:
        assert torch.equal(before[k], after[k]), f"frozen {k} changed"
    moved = [k for k in block2 if not torch.equal(before[k], after[k])]
    assert any(k.endswith("running_mean") for k in moved), "trainable BatchNorm did not update"
    assert any(k.endswith("weight") for k in moved), "trainable stage did not learn"
    assert training.hold_frozen_batchnorm(model) == [
        name for name, m in model.named_modules() if m is bn1[0]
    ]
