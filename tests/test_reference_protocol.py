"""The reference's MNIST-1D network and protocol (issue 21; RFWFC for_release): per-block kernel
and padding, the best-validation checkpoint (``keep_best``), and the end-of-epoch eval-mode
training accuracy that sets the interpolation threshold (``eval_train``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from mfoml.nets.checkpoints import list_checkpoints, load_checkpoint
from mfoml.nets.models import build_model
from mfoml.nets.training import TrainConfig, evaluate, train


def test_reference_network_shapes_and_parameter_count():
    """conv1 kernel 5, conv2-5 kernel 3, padding 1, stride 2: 40 -> 19 -> 10 -> 5 -> 3 -> 2;
    80 channels, linear head on 160 features. Parameters counted by hand."""
    m = build_model(
        "conv1d",
        (40,),
        10,
        depth=5,
        width=80,
        stride=2,
        kernel_size=[5, 3, 3, 3, 3],
        padding=1,
        batch_norm=False,
        probe_point="pre",
        seed=0,
    )
    by_hand = (1 * 80 * 5 + 80) + 4 * (80 * 80 * 3 + 80) + (160 * 10 + 10)
    assert by_hand == 79_210
    assert sum(p.numel() for p in m.parameters()) == by_hand
    _, feats = m.forward_features(torch.zeros(3, 1, 40), m.probe_layers)
    lengths = [feats[f"block{i}_pre"].shape[-1] for i in range(1, 6)]
    assert lengths == [19, 10, 5, 3, 2]
    convs = [mod for mod in m.modules() if isinstance(mod, torch.nn.Conv1d)]
    assert [c.kernel_size[0] for c in convs] == [5, 3, 3, 3, 3]
    assert all(c.padding[0] == 1 for c in convs)
    assert build_model(**m.spec).spec == m.spec  # the spec rebuilds it
    # the defaults are unchanged: kernel 3, padding 1 = 3 // 2, no padding key in the spec
    d = build_model("conv1d", (40,), 10, seed=0)
    assert d.spec["kernel_size"] == 3 and "padding" not in d.spec
    with pytest.raises(ValueError, match="padding"):
        build_model("conv1d", (40,), 10, depth=3, padding=[1, 1])
    with pytest.raises(ValueError, match="do not apply"):
        build_model("mlp", (40,), 10, padding=1)


def test_keep_best_keeps_the_first_best_validation_epoch_and_train_eval_is_eval_mode(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(240, 1, 40)).astype(np.float32)
    y = (x[:, 0, :5].sum(1) > 0).astype(np.int64) + 2 * (x[:, 0, 5:10].sum(1) > 0)
    xh = rng.normal(size=(80, 1, 40)).astype(np.float32)
    yh = (xh[:, 0, :5].sum(1) > 0).astype(np.int64) + 2 * (xh[:, 0, 5:10].sum(1) > 0)
    model = build_model(
        "conv1d", (1, 40), 4, depth=2, width=8, kernel_size=[5, 3], padding=1, seed=1
    )
    cfg = TrainConfig(epochs=6, batch_size=32, lr=0.01, checkpoint_epochs=[6], device="cpu", seed=0)
    out = tmp_path / "ck"
    df = train(
        model,
        x,
        y,
        cfg,
        out,
        evals={"heldout": (xh, yh)},
        eval_train=True,
        keep_best="heldout_acc",
    )
    acc = df["heldout_acc"].to_numpy()
    best = int(df["epoch"].iloc[int(np.argmax(acc))])  # argmax: the first maximum
    assert 1 < best < 6  # earlier bests were superseded and deleted, a later tie was not kept
    kept = sorted(list_checkpoints(out))
    assert kept == sorted({best, 6})  # the best epoch and the configured one, nothing else
    # train_eval_acc is the accuracy of the end-of-epoch model in eval mode on x: recomputed
    # here from the saved final model with the project's evaluation pass
    final, _ = load_checkpoint(list_checkpoints(out)[6])
    _, acc6 = evaluate(final, x, y, device="cpu")
    assert df["train_eval_acc"].iloc[-1] == pytest.approx(acc6)
    assert "train_eval_loss" in df and df["train_eval_acc"].between(0, 1).all()
    with pytest.raises(ValueError, match="keep_best"):
        train(model, x, y, cfg, tmp_path / "x", keep_best="heldout_acc")  # no held-out set
