"""Tests of mfoml.dynamics, mfoml.data.variants and mfoml.tracking on tiny networks.

Independent references: the exact Hessian from torch.autograd.functional.hessian, closed-form
input gradients of a linear softmax model, explicit BatchNorm statistics
captured by a forward hook, dense SVD, and hand-written gradient-descent steps.
"""

from __future__ import annotations

import copy
import math
import sys
import types

import numpy as np
import pytest
import torch
from mfoml.data.variants import gaussian_pixels, random_labels, random_pixels
from mfoml.dynamics.fullbatch import EOS_COLUMNS, full_batch_gd
from mfoml.dynamics.gradnorm import GradNormMeter, total_grad_norm
from mfoml.dynamics.interpolation import (
    interpolate_states,
    interpolation_curve,
    labeled_curve,
    recompute_batchnorm,
)
from mfoml.dynamics.job import job_settings
from mfoml.dynamics.sensitivity import input_gradient_norms, input_sensitivity
from mfoml.dynamics.sharpness import (
    hessian_vector_product,
    hutchinson_trace,
    lanczos_top_eigenvalue,
    power_iteration_top_eigenvalue,
    rademacher_probes,
    sharpness,
)
from mfoml.dynamics.trajectory import loss_surface, weight_pca
from mfoml.tracking import Tracker, TrackingError, tracker_from_config
from torch import nn
from torch.func import functional_call

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # conftest.py


def tiny_net(bn: bool = False, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    layers: list[nn.Module] = [nn.Linear(3, 5)]
    if bn:
        layers.append(nn.BatchNorm1d(5))
    layers += [nn.Tanh(), nn.Linear(5, 3)]
    return nn.Sequential(*layers).double()


def tiny_data(n: int = 24, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, generator=g, dtype=torch.float64), torch.randint(
        0, 3, (n,), generator=g
    )


def exact_hessian(model: nn.Module, x: torch.Tensor, y: torch.Tensor, train: bool) -> torch.Tensor:
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for _, p in model.named_parameters()]
    flat0 = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    buffers = {n: b.detach().clone() for n, b in model.named_buffers()}

    def loss(flat: torch.Tensor) -> torch.Tensor:
        params, a = {}, 0
        for n, s in zip(names, shapes, strict=True):
            k = int(np.prod(s))
            params[n] = flat[a : a + k].reshape(s)
            a += k
        bufs = {n: b.clone() for n, b in buffers.items()}
        model.train(train)
        return nn.functional.cross_entropy(functional_call(model, {**params, **bufs}, (x,)), y)

    return torch.autograd.functional.hessian(loss, flat0)


# --------------------------------------------------------------------------------------------
# sharpness
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bn", [False, True])
def test_hvp_lanczos_power_and_trace_match_exact_hessian(bn):
    model = tiny_net(bn=bn)
    x, y = tiny_data()
    mode = "train" if bn else "eval"
    h = exact_hessian(model, x, y, train=bn)
    buffers_before = {n: b.clone() for n, b in model.named_buffers()}
    hvp = hessian_vector_product(model, x, y, batch_size=None if bn else 7, mode=mode)
    v = torch.randn(h.shape[0], dtype=torch.float64)
    torch.testing.assert_close(hvp(v), h @ v, rtol=1e-9, atol=1e-11)
    for n, b in model.named_buffers():
        assert torch.equal(b, buffers_before[n]), f"buffer {n} changed"
    ev = torch.linalg.eigvalsh(h)
    lz = lanczos_top_eigenvalue(hvp, n_iter=h.shape[0], tol=0.0)
    assert lz["eigenvalue"] == pytest.approx(float(ev[-1]), rel=1e-8)
    pw = power_iteration_top_eigenvalue(hvp, n_iter=3000, tol=1e-13)
    assert abs(pw["eigenvalue"]) == pytest.approx(float(ev.abs().max()), rel=1e-5)
    z = rademacher_probes(h.shape[0], 5, seed=3)
    tr = hutchinson_trace(hvp, n_samples=5, seed=3)
    assert tr["trace"] == pytest.approx(float(np.mean([float(zj @ h @ zj) for zj in z])), rel=1e-9)


def test_sharpness_uses_the_seeded_subset_and_is_stable():
    model = tiny_net()
    x, y = tiny_data(60)
    out = sharpness(model, x, y, subset_size=20, n_iter=40, tol=1e-12, trace_samples=3, seed=1)
    idx = np.sort(np.random.default_rng(1).choice(60, size=20, replace=False))
    h = exact_hessian(model, x[idx], y[idx], train=False)
    assert out["top_eigenvalue"] == pytest.approx(float(torch.linalg.eigvalsh(h)[-1]), rel=1e-7)
    assert out["subset_size"] == 20 and out["n_parameters"] == h.shape[0]
    assert np.isfinite(out["hessian_trace"]) and out["hessian_trace_se"] >= 0


# --------------------------------------------------------------------------------------------
# sensitivity
# --------------------------------------------------------------------------------------------


def test_input_sensitivity_matches_closed_form_for_linear_softmax():
    torch.manual_seed(0)
    lin = nn.Linear(4, 3).double()
    x = torch.randn(30, 4, dtype=torch.float64)
    y = torch.randint(0, 3, (30,))
    w, b = lin.weight.detach().numpy(), lin.bias.detach().numpy()
    z = x.numpy() @ w.T + b
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    p[np.arange(30), y.numpy()] -= 1.0
    ref = np.linalg.norm(p @ w, axis=1)  # d CE / dx = W^T (softmax - e_y)
    np.testing.assert_allclose(input_gradient_norms(lin, x, y, batch_size=7), ref, rtol=1e-10)
    out = input_sensitivity(lin, x, y)
    assert out["sensitivity"] == pytest.approx(ref.mean(), rel=1e-10)
    assert lin.weight.grad is None


def test_input_sensitivity_is_per_sample_under_batchnorm():
    model = tiny_net(bn=True)
    x, y = tiny_data(16)
    model.train()
    a = input_gradient_norms(model, x, y, batch_size=1)
    b = input_gradient_norms(model, x, y, batch_size=16)
    np.testing.assert_allclose(a, b, rtol=1e-10)
    assert model.training


# --------------------------------------------------------------------------------------------
# interpolation
# --------------------------------------------------------------------------------------------


def test_interpolate_states_is_affine_in_t():
    a, b = tiny_net(bn=True, seed=0).state_dict(), tiny_net(bn=True, seed=1).state_dict()
    for t, ref in ((0.0, a), (1.0, b)):
        out = interpolate_states(a, b, t)
        for k in a:
            torch.testing.assert_close(out[k], ref[k] if a[k].is_floating_point() else a[k])
    out = interpolate_states(a, b, -1.0)
    k = "0.weight"
    torch.testing.assert_close(out[k], 2 * a[k] - b[k])
    assert torch.equal(out["1.num_batches_tracked"], a["1.num_batches_tracked"])
    with pytest.raises(ValueError, match="shapes"):
        interpolate_states(a, {**b, k: torch.zeros(2)}, 0.5)


def test_recompute_batchnorm_gives_the_data_statistics():
    model = tiny_net(bn=True)
    x, _ = tiny_data(40)
    seen = []
    hook = model[1].register_forward_hook(lambda m, i, o: seen.append(i[0].detach().clone()))
    assert recompute_batchnorm(model, x, batch_size=None) == 1
    hook.remove()
    h = torch.cat(seen)
    torch.testing.assert_close(model[1].running_mean, h.mean(0))
    torch.testing.assert_close(model[1].running_var, h.var(0, unbiased=True))
    assert model[1].momentum == 0.1 and model.training


def test_interpolation_curve_end_points_match_the_models():
    ma, mb = tiny_net(bn=True, seed=0), tiny_net(bn=True, seed=1)
    x, y = tiny_data(50, seed=0)
    xt, yt = tiny_data(30, seed=1)
    curve = interpolation_curve(ma, mb, (x, y), (xt, yt), ts=[-1.0, 0.0, 0.5, 1.0, 2.0])
    assert list(curve.columns) == ["t", "train_loss", "train_acc", "test_loss", "test_acc"]
    for t, m in ((0.0, ma), (1.0, mb)):
        ref = copy.deepcopy(m)
        ref.train()
        with torch.no_grad():
            h = ref[0](x)
        ref[1].running_mean.copy_(h.mean(0))
        ref[1].running_var.copy_(h.var(0, unbiased=True))
        ref.eval()
        with torch.no_grad():
            lt = float(nn.functional.cross_entropy(ref(xt), yt))
            acc = float((ref(x).argmax(1) == y).double().mean())
        row = curve[curve["t"] == t].iloc[0]
        assert row["test_loss"] == pytest.approx(lt, rel=1e-6)  # logits cast to float32
        assert row["train_acc"] == pytest.approx(acc)


def test_labeled_curve_puts_the_ends_first_on_the_configured_grid():
    ma, mb = tiny_net(bn=True, seed=0), tiny_net(bn=True, seed=1)
    data = {"train": tiny_data(40, seed=0), "test": tiny_data(20, seed=1)}
    cfg = {"t_min": -0.5, "t_max": 1.5, "n_points": 5, "bn_samples": None, "eval_samples": None}
    curve = labeled_curve(ma, mb, data, cfg, ("run/a", 2), ("run/b", 7))
    assert list(curve.columns[:5]) == ["run_a", "epoch_a", "run_b", "epoch_b", "t"]
    assert curve["t"].tolist() == [-0.5, 0.0, 0.5, 1.0, 1.5]
    assert set(curve["run_a"]) == {"run/a"} and set(curve["epoch_a"]) == {2}
    assert set(curve["run_b"]) == {"run/b"} and set(curve["epoch_b"]) == {7}
    plain = interpolation_curve(ma, mb, data["train"], data["test"], ts=[0.0, 1.0], seed=0)
    at_ends = curve[curve["t"].isin([0.0, 1.0])].reset_index(drop=True)
    np.testing.assert_allclose(at_ends["train_loss"], plain["train_loss"])  # same settings


def test_job_settings_parse_the_slice_and_set_the_threads():
    job = types.SimpleNamespace(
        params=types.SimpleNamespace(cfg='{"device": "cpu", "grid": 4}'), threads=2
    )
    cfg, device = job_settings(job)
    assert cfg == {"device": "cpu", "grid": 4}
    assert device == torch.device("cpu") and torch.get_num_threads() == 2
    job.threads = 0  # a job given no core still gets one thread
    job_settings(job)
    assert torch.get_num_threads() == 1


# --------------------------------------------------------------------------------------------
# trajectory
# --------------------------------------------------------------------------------------------


def test_weight_pca_matches_dense_svd():
    states = []
    net = tiny_net()
    g = torch.Generator().manual_seed(0)
    for _ in range(6):
        with torch.no_grad():
            for p in net.parameters():
                p.add_(0.1 * torch.randn(p.shape, generator=g, dtype=p.dtype))
        states.append({k: v.clone() for k, v in net.state_dict().items()})
    names = [n for n, _ in net.named_parameters()]
    out = weight_pca(states, names, n_components=3, origin="mean")
    mat = np.stack([np.concatenate([s[n].numpy().ravel() for n in names]) for s in states])
    centred = mat - mat.mean(axis=0)
    _, sv, vt = np.linalg.svd(centred, full_matrices=False)  # the K x P matrix itself
    np.testing.assert_allclose(out["explained_variance"], sv[:3] ** 2 / 5, rtol=1e-8)
    np.testing.assert_allclose(
        out["explained_variance_ratio"], sv[:3] ** 2 / np.sum(sv**2), rtol=1e-8
    )
    for j in range(3):
        assert abs(float(out["components"][j] @ vt[j])) == pytest.approx(1.0, abs=1e-8)
    np.testing.assert_allclose(np.abs(out["coords"]), np.abs(centred @ vt[:3].T), atol=1e-10)


def test_loss_surface_at_a_checkpoint_equals_its_loss():
    net = tiny_net()
    x, y = tiny_data(40)
    states = []
    for s in range(3):  # three checkpoints span exactly a plane
        states.append({k: v.clone() for k, v in tiny_net(seed=s).state_dict().items()})
    pca = weight_pca(states, [n for n, _ in net.named_parameters()], origin="last")
    np.testing.assert_allclose(pca["residual_norm"], 0.0, atol=1e-10)
    np.testing.assert_allclose(pca["coords"][-1], 0.0, atol=1e-12)
    out = loss_surface(net, states, x, y, grid=5, samples=None)
    assert len(out["surface"]) == 25
    a0, b0 = pca["coords"][0]
    pt = loss_surface(net, states, x, y, axes=([a0], [b0]), samples=None)["surface"].iloc[0]
    ref = tiny_net(seed=0)
    with torch.no_grad():
        want = float(nn.functional.cross_entropy(ref(x), y))
    assert pt["loss"] == pytest.approx(want, rel=1e-8)


# --------------------------------------------------------------------------------------------
# gradient norm and full-batch gradient descent
# --------------------------------------------------------------------------------------------


def test_grad_norm_and_meter():
    net = tiny_net()
    x, y = tiny_data()
    nn.functional.cross_entropy(net(x), y).backward()
    ref = math.sqrt(sum(float((p.grad**2).sum()) for p in net.parameters()))
    assert total_grad_norm(net.parameters()) == pytest.approx(ref, rel=1e-12)
    meter = GradNormMeter()
    for v in (1.0, 3.0, float("inf"), 2.0):
        meter.update(v)
    assert meter.summary() == {
        "grad_norm_mean": 2.0,
        "grad_norm_max": 3.0,
        "grad_norm_nonfinite": 1,
    }
    meter.reset()
    assert math.isnan(meter.summary()["grad_norm_mean"])


def test_full_batch_gd_steps_and_sharpness_schedule():
    net = tiny_net()
    ref = copy.deepcopy(net)
    x, y = tiny_data(30)
    lr = 0.5
    h0 = exact_hessian(ref, x, y, train=True)
    table = full_batch_gd(
        net, x, y, lr=lr, steps=3, sharpness_every=2, sharpness_iters=40, sharpness_tol=0.0
    )
    assert list(table.columns) == EOS_COLUMNS and list(table["step"]) == [0, 1, 2, 3]
    for _ in range(3):  # hand-written gradient descent
        ref.zero_grad()
        nn.functional.cross_entropy(ref(x), y).backward()
        with torch.no_grad():
            for p in ref.parameters():
                p -= lr * p.grad
    for p, q in zip(net.parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-12)
    assert table.loc[0, "sharpness"] == pytest.approx(
        float(torch.linalg.eigvalsh(h0)[-1]), rel=1e-6
    )
    assert np.isnan(table.loc[1, "sharpness"]) and np.isfinite(table.loc[2:, "sharpness"]).all()
    assert (table["two_over_lr"] == 4.0).all()
    assert table["train_loss"].iloc[-1] < table["train_loss"].iloc[0]


# --------------------------------------------------------------------------------------------
# data-set variants
# --------------------------------------------------------------------------------------------


def test_random_labels_are_uniform_over_all_classes():
    y = np.zeros(20000, dtype=np.int64)
    r = random_labels(y, 4, seed=0)
    freq = np.bincount(r, minlength=4) / len(r)
    np.testing.assert_allclose(freq, 0.25, atol=0.015)  # about 7 standard errors
    assert 0.23 < np.mean(r == y) < 0.27  # unlike flip noise, ~1/C keep their class
    assert np.array_equal(r, random_labels(20000, 4, seed=0))


def test_random_pixels_permute_positions_per_sample():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5, 3, 4, 4)).astype(np.float32)
    out = random_pixels(x, seed=1)
    assert out.shape == x.shape and out.dtype == x.dtype
    for i in range(5):
        src = {tuple(x[i, :, a, b]) for a in range(4) for b in range(4)}
        dst = {tuple(out[i, :, a, b]) for a in range(4) for b in range(4)}
        assert src == dst  # channel vectors move together
    perms = [np.argsort(np.argsort(out[i, 0].ravel())) for i in range(5)]
    assert len({tuple(p) for p in perms}) > 1 or not np.array_equal(out, x)
    shared = random_pixels(np.stack([x[0], x[0]]), seed=1, per_sample=False)
    assert np.array_equal(shared[0], shared[1])
    flat = random_pixels(x.reshape(5, -1)[:, :10], seed=2)
    np.testing.assert_array_equal(np.sort(flat, axis=1), np.sort(x.reshape(5, -1)[:, :10], axis=1))


def test_gaussian_pixels_match_the_data_moments():
    x = np.random.default_rng(0).uniform(2, 4, size=(400, 1, 8, 8)).astype(np.float32)
    g = gaussian_pixels(x, seed=0)
    assert g.shape == x.shape and g.dtype == np.float32
    assert float(g.mean()) == pytest.approx(float(x.mean()), abs=0.01)
    assert float(g.std()) == pytest.approx(float(x.std()), rel=0.02)


# --------------------------------------------------------------------------------------------
# tracking
# --------------------------------------------------------------------------------------------


def test_tracking_disabled_never_imports_wandb(monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # any import would fail
    t = tracker_from_config(None)
    t.log_metrics({"loss": 1.0}, step=1)
    t.finish()
    assert not t.active


def test_tracking_enabled_without_wandb_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)
    with pytest.raises(TrackingError, match="not installed"):
        tracker_from_config({"enabled": True})
    with pytest.raises(TrackingError, match="unknown key"):
        tracker_from_config({"enabeld": True})


def test_tracking_offline_calls(monkeypatch, tmp_path):
    calls: list = []

    class Run:
        def log(self, data, step=None):
            calls.append(("log", data, step))

        def finish(self):
            calls.append(("finish",))

    stub = types.ModuleType("wandb")
    stub.init = lambda **kw: calls.append(("init", kw)) or Run()
    stub.Table = lambda dataframe: ("table", len(dataframe))
    monkeypatch.setitem(sys.modules, "wandb", stub)
    import pandas as pd

    with tracker_from_config({"enabled": True}, name="r1", default_dir=str(tmp_path)) as t:
        t.log_metrics({"epoch": 1, "train_loss": 0.5, "note": "x"}, step=1)
        t.log_table("ncc", pd.DataFrame({"a": [1, 2]}))
    assert calls[0][0] == "init" and calls[0][1]["mode"] == "offline"
    assert calls[0][1]["dir"] == str(tmp_path) and calls[0][1]["name"] == "r1"
    assert calls[1] == ("log", {"epoch": 1, "train_loss": 0.5}, 1)
    assert calls[2] == ("log", {"ncc": ("table", 2)}, None)
    assert calls[-1] == ("finish",)
    assert isinstance(Tracker(), Tracker)


def test_training_loop_records_grad_norms_parameter_count_and_callback_columns(tmp_path):
    from mfoml.nets.models import build_model
    from mfoml.nets.training import TrainConfig, train

    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 1, 6)).astype(np.float32)
    y = rng.integers(0, 3, size=40)
    model = build_model("mlp", (1, 6), 3, depth=1, width=5, seed=0)
    ref = copy.deepcopy(model)
    cfg = TrainConfig(epochs=2, batch_size=64, optimizer="sgd", lr=0.1, momentum=0.0, device="cpu")
    seen = []

    def callback(net, row):
        seen.append(row["epoch"])
        return {"probe_value": float(row["epoch"]) * 10}

    table = train(model, x, y, cfg, tmp_path, epoch_callback=callback)
    # one full batch per epoch: the epoch-1 norm is the initial full-batch gradient's norm
    ref.train()
    nn.functional.cross_entropy(ref(torch.from_numpy(x)), torch.from_numpy(y)).backward()
    want = math.sqrt(sum(float((p.grad.double() ** 2).sum()) for p in ref.parameters()))
    assert table.loc[0, "grad_norm_mean"] == pytest.approx(want, rel=1e-5)
    assert table.loc[0, "grad_norm_max"] == pytest.approx(want, rel=1e-5)
    assert (table["n_parameters"] == sum(p.numel() for p in ref.parameters())).all()
    assert seen == [1, 2] and list(table["probe_value"]) == [10.0, 20.0]


def test_corrupt_dataset_rewrites_a_verified_normalized_set(tmp_path):
    from mfoml.data.store import load_dataset, write_normalized
    from mfoml.data.variants import corrupt_dataset

    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 1, 3, 3)).astype(np.float32)
    xt = rng.normal(size=(10, 1, 3, 3)).astype(np.float32)
    y, yt = rng.integers(0, 3, 30), rng.integers(0, 3, 10)
    meta = {"name": "toy", "task": "classification", "n_classes": 3, "input_shape": [1, 3, 3]}
    meta.update({"n_train": 30, "n_test": 10, "options": {}})
    arrays = {"x_train.npy": x, "y_train.npy": y, "x_test.npy": xt, "y_test.npy": yt}
    write_normalized(tmp_path / "pix", arrays, meta)
    corrupt_dataset(tmp_path / "pix", "shuffled_pixels", seed=4)
    ds = load_dataset(tmp_path / "pix")  # checksums verified
    perm = np.argsort(ds.x_train[0].ravel())  # one permutation for train and test
    src = np.argsort(x[0].ravel())
    mapping = {int(a): int(b) for a, b in zip(src, perm, strict=True)}
    for i in range(10):
        np.testing.assert_array_equal(
            ds.x_test[i].ravel()[list(mapping.values())], xt[i].ravel()[list(mapping)]
        )
    np.testing.assert_array_equal(ds.y_train, y)
    assert ds.meta["options"]["corrupt"] == "shuffled_pixels"
    write_normalized(tmp_path / "lab", arrays, meta)
    corrupt_dataset(tmp_path / "lab", "random_labels", seed=1)
    ds = load_dataset(tmp_path / "lab")
    np.testing.assert_array_equal(ds.x_train, x)
    np.testing.assert_array_equal(ds.y_test, yt)
    assert not np.array_equal(ds.y_train, y) and ds.y_train.max() < 3
    with pytest.raises(ValueError, match="unknown corruption"):
        corrupt_dataset(tmp_path / "lab", "flip", seed=0)
