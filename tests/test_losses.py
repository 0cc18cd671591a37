"""Tests of mfoml.nets.losses: the SVSL loss (batched and non-batched).

References are hand formulas written here: explicit loops over classes and samples for the
value, ``(2 w / (C_B n_c)) (h_i - mu_c)`` for the gradient, and the Hessian of the batched
term, which differs from the detached-means Hessian (so it proves that the gradient flows through
the batch means).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from mfoml.nets.losses import SVSLLoss, svsl_term
from mfoml.nets.models import build_model
from mfoml.nets.training import ExtraLoss, TrainConfig, train

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # conftest.py


def hand_term(h: np.ndarray, y: np.ndarray, means: np.ndarray | None = None) -> float:
    """(1/C_B) sum_c (1/n_c) sum_{y_i = c} ||h_i - mu_c||^2 with loops."""
    classes = sorted(set(y.tolist()))
    total = 0.0
    for c in classes:
        rows = [h[i] for i in range(len(y)) if y[i] == c]
        mu = np.mean(rows, axis=0) if means is None else means[c]
        total += sum(float(np.sum((r - mu) ** 2)) for r in rows) / len(rows)
    return total / len(classes)


def test_value_matches_loops_batched_with_absent_and_single_classes():
    g = torch.Generator().manual_seed(0)
    h = torch.randn(9, 4, generator=g, dtype=torch.float64)
    y = torch.tensor([0, 0, 3, 3, 3, 5, 0, 3, 0])  # C = 7: classes 1, 2, 4, 6 absent; 5 single
    got = svsl_term(h, y, 7)
    assert float(got) == pytest.approx(hand_term(h.numpy(), y.numpy()), rel=1e-12)
    single = svsl_term(h[5:6], y[5:6], 7)
    assert float(single) == 0.0


def test_gradient_through_batch_means_gradcheck_and_hand_formula():
    g = torch.Generator().manual_seed(1)
    h = torch.randn(7, 3, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0, 0, 1, 1, 1, 3, 0])  # class 3 has a single sample, class 2 absent
    assert torch.autograd.gradcheck(lambda t: svsl_term(t, y, 4), (h,))
    assert torch.autograd.gradgradcheck(lambda t: svsl_term(t, y, 4), (h,))
    (grad,) = torch.autograd.grad(svsl_term(h, y, 4), h)
    hn, yn = h.detach().numpy(), y.numpy()
    c_b = 3
    for i in range(7):
        members = yn == yn[i]
        mu = hn[members].mean(axis=0)
        expect = 2.0 / (c_b * members.sum()) * (hn[i] - mu)
        np.testing.assert_allclose(grad[i].numpy(), expect, atol=1e-14)
    assert torch.all(grad[5] == 0)  # single-sample class: zero term, zero gradient


def test_hessian_shows_the_means_are_differentiated():
    """d2/dh2 of the batched term is (2/(C_B n_c)) (I - 11^T/n_c) per class (means with grad);
    with detached means it would be (2/(C_B n_c)) I."""
    h = torch.randn(5, 2, dtype=torch.float64)
    y = torch.tensor([0, 0, 0, 1, 1])
    hess = torch.autograd.functional.hessian(lambda t: svsl_term(t, y, 2), h).reshape(10, 10)
    expect = np.zeros((5, 2, 5, 2))
    for idx in ([0, 1, 2], [3, 4]):
        n_c = len(idx)
        for i in idx:
            for j in idx:
                expect[i, :, j, :] = 2.0 / (2 * n_c) * ((i == j) - 1.0 / n_c) * np.eye(2)
    np.testing.assert_allclose(hess.numpy(), expect.reshape(10, 10), atol=1e-12)
    detached = np.kron(np.diag([1 / 3] * 3 + [1 / 2] * 2), np.eye(2))
    assert np.abs(hess.numpy() - detached).max() > 0.1


def test_svsl_loss_layers_weight_and_flattening():
    g = torch.Generator().manual_seed(2)
    f1 = torch.randn(6, 2, 3, generator=g)  # flattened to (6, 6)
    f2 = torch.randn(6, 5, generator=g)
    y = torch.tensor([1, 1, 0, 2, 2, 2])
    ref = hand_term(f1.reshape(6, -1).double().numpy(), y.numpy()) + hand_term(
        f2.double().numpy(), y.numpy()
    )
    avg = SVSLLoss(["a", "b"], 0.3, n_classes=3)
    plain = SVSLLoss(["a", "b"], 0.3, n_classes=3, layer_average=False)
    feats = {"a": f1, "b": f2, "unused": torch.randn(6, 1)}
    assert float(avg(feats, y)) == pytest.approx(0.3 / 2 * ref, rel=1e-5)
    assert float(plain(feats, y)) == pytest.approx(0.3 * ref, rel=1e-5)
    assert isinstance(avg, ExtraLoss)  # the training loop's structural protocol


def test_lam_zero_is_exactly_zero():
    loss = SVSLLoss(["a"], 0.0, n_classes=3)
    out = loss({"a": torch.randn(4, 2) * 1e30}, torch.tensor([0, 1, 2, 0]))
    assert out.item() == 0.0 and out.shape == ()
    x = torch.tensor([1.2345678], dtype=torch.float32)
    assert torch.equal(x + out, x)


def _tiny_data(n=120, d=12, c=4, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((c, d)) * 2
    y = rng.integers(0, c, size=n)
    x = (centers[y] + rng.standard_normal((n, d))).astype(np.float32)
    return x, y.astype(np.int64)


def test_lam_zero_training_equals_plain_cross_entropy(tmp_path):
    x, y = _tiny_data()
    cfg = TrainConfig(epochs=3, batch_size=32, lr=1e-2, device="cpu", seed=3)
    states, frames = [], []
    for name, extra in (
        ("ce", None),
        ("svsl0", SVSLLoss(["block1", "block2"], 0.0, n_classes=4)),
        ("svsl0nb", SVSLLoss(["block1", "block2"], 0.0, n_classes=4, batched=False)),
    ):
        torch.manual_seed(0)
        model = build_model("mlp", (12,), 4, depth=2, width=16)
        frames.append(train(model, x, y, cfg, tmp_path / name, extra_loss=extra))
        states.append(model.state_dict())
    for other in states[1:]:
        for key in states[0]:
            assert torch.equal(states[0][key], other[key]), key
    for fr in frames[1:]:
        np.testing.assert_array_equal(fr["train_loss"].to_numpy(), frames[0]["train_loss"])
        assert (fr["train_extra_loss"] == 0.0).all()


def test_non_batched_uses_stored_training_set_means():
    x, y = _tiny_data(n=90)
    torch.manual_seed(0)
    model = build_model("mlp", (12,), 4, depth=2, width=8)
    model.train()
    loss = SVSLLoss.from_model(model, 0.5, gamma=1, batched=False, eval_batch_size=7)
    assert loss.layers == ["block1", "block2"]
    with pytest.raises(RuntimeError, match="on_epoch_start"):
        loss({"block1": torch.zeros(2, 8), "block2": torch.zeros(2, 8)}, torch.tensor([0, 1]))
    loss.on_epoch_start(model, x, y, torch.device("cpu"))
    assert model.training  # restored
    # independent means: one eval-mode pass, numpy class means
    model.eval()
    with torch.no_grad():
        _, feats = model.forward_features(torch.tensor(x), loss.layers)
    model.train()
    for name in loss.layers:
        h = feats[name].double().numpy()
        ref = np.stack([h[y == c].mean(axis=0) for c in range(4)])
        np.testing.assert_allclose(loss.means_[name].numpy(), ref, rtol=1e-5, atol=1e-6)
    # value and gradient on a batch use the stored means, not the batch means
    idx = np.array([0, 1, 2, 3, 4, 5, 6])
    xb, yb = torch.tensor(x[idx]), torch.tensor(y[idx])
    _, fb = model.forward_features(xb, loss.layers)
    leaves = {k: v.detach().clone().requires_grad_(True) for k, v in fb.items()}
    val = loss(leaves, yb)
    stored = {k: v.double().numpy() for k, v in loss.means_.items()}
    ref = sum(
        hand_term(leaves[k].detach().double().numpy(), y[idx], stored[k]) for k in loss.layers
    )
    assert val.item() == pytest.approx(0.5 / 2 * ref, rel=1e-5)
    val.backward()
    c_b = len(set(y[idx].tolist()))
    for k in loss.layers:
        h = leaves[k].detach().double().numpy()
        for i in range(len(idx)):
            n_c = int(np.sum(y[idx] == y[idx][i]))
            expect = 0.5 / 2 * 2.0 / (c_b * n_c) * (h[i] - stored[k][y[idx][i]])
            np.testing.assert_allclose(leaves[k].grad[i].numpy(), expect, rtol=1e-4, atol=1e-6)
    # batch-mean version differs (its gradients sum to zero within a class, these do not)
    batched = SVSLLoss(loss.layers, 0.5, n_classes=4)
    assert batched(leaves, yb).item() < val.item()


def test_training_with_svsl_runs_both_variants(tmp_path):
    x, y = _tiny_data()
    cfg = TrainConfig(epochs=2, batch_size=32, lr=1e-2, device="cpu", seed=0)
    for batched in (True, False):
        torch.manual_seed(0)
        model = build_model("mlp", (12,), 4, depth=2, width=16)
        loss = SVSLLoss.from_model(model, 1e-2, gamma=1, batched=batched)
        frame = train(model, x, y, cfg, tmp_path / str(batched), extra_loss=loss)
        assert (frame["train_extra_loss"] > 0).all()
        assert np.isfinite(frame["train_loss"]).all()


def test_errors_are_clear():
    with pytest.raises(ValueError, match="lam"):
        SVSLLoss(["a"], -1.0, n_classes=3)
    with pytest.raises(ValueError, match="at least one"):
        SVSLLoss([], 1.0, n_classes=3)
    with pytest.raises(TypeError, match="not a string"):
        SVSLLoss("a", 1.0, n_classes=3)
    loss = SVSLLoss(["a", "b"], 1.0, n_classes=3)
    y = torch.tensor([0, 1, 2])
    with pytest.raises(KeyError, match=r"lack layer\(s\) \['b'\]"):
        loss({"a": torch.zeros(3, 2)}, y)
    with pytest.raises(ValueError, match="layer 'b' has batch size 2 but labels have 3"):
        loss({"a": torch.zeros(3, 2), "b": torch.zeros(2, 2)}, y)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        loss({"a": torch.zeros(3, 2), "b": torch.zeros(3, 2)}, torch.tensor([0, 1, 3]))
    nb = SVSLLoss(["a"], 1.0, n_classes=3, batched=False)
    nb.means_ = {"a": torch.zeros(3, 4)}
    with pytest.raises(ValueError, match="layer 'a' has 2 features but its stored means have 4"):
        nb({"a": torch.zeros(3, 2)}, y)
    nb.means_ = {"a": torch.tensor([[0.0, 0.0], [float("nan")] * 2, [1.0, 1.0]])}
    with pytest.raises(ValueError, match=r"classes \[1\] are in the batch"):
        nb({"a": torch.zeros(3, 2)}, y)
    model = build_model("mlp", (12,), 4, depth=2, width=8)
    with pytest.raises(ValueError, match="gamma"):
        SVSLLoss.from_model(model, 1.0, gamma=4)
    assert SVSLLoss.from_model(model, 1.0, gamma="block2").layers == ["block2"]
