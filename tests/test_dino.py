"""Tests of DINO (mfoml.nets.dino, Caron et al. 2021) and its multi-crop views.

The loss is compared with the paper's formula written here as explicit loops over views,
samples and prototypes; the center update and the teacher-temperature warm-up with their
formulas (numpy's ``linspace`` for the warm-up, as the reference code); the momentum teacher
with the EMA written out; and a tiny real training run shows the known failure and its remedy:
without centering and sharpening the embeddings collapse, with both they do not.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from mfoml.config import validate_config
from mfoml.nets.augment import make_augmenter, multi_crop_views, two_views
from mfoml.nets.dino import DINO, dino_loss, teacher_temperature, update_center
from mfoml.nets.ssl import build_objective
from mfoml.nets.ssl_model import build_ssl_model
from mfoml.nets.ssl_training import train_ssl
from mfoml.nets.trainconfig import TrainConfig
from sklearn.datasets import load_digits
from workflow_utils import config_error

REPO = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # conftest.py


def dino_paper(student, teacher, center, student_temp: float, teacher_temp: float) -> float:
    """Caron et al. (2021), Algorithm 1 with multi-crop: H(P_t(i), P_s(v)) over the pairs of a
    teacher (global) view i and a student view v != i, averaged over samples and pairs."""

    def softmax(row: np.ndarray) -> list[float]:
        e = [math.exp(float(a) - float(max(row))) for a in row]
        return [a / sum(e) for a in e]

    total, pairs = 0.0, 0
    for i, t in enumerate(teacher):
        for v, s in enumerate(student):
            if v == i:
                continue
            h = 0.0
            for n in range(len(t)):
                q = softmax((t[n] - center) / teacher_temp)
                p = softmax(s[n] / student_temp)
                h += -sum(qk * math.log(pk) for qk, pk in zip(q, p, strict=True))
            total += h / len(t)
            pairs += 1
    return total / pairs


def _scores(n_views: int, n: int = 5, k: int = 7, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(n, k, generator=g, dtype=torch.float64) * 2 - 1 for _ in range(n_views)]


@pytest.mark.parametrize("n_local", [0, 2])
def test_dino_loss_matches_paper_and_teacher_gets_no_gradient(n_local):
    student = _scores(2 + n_local, seed=1)
    teacher = _scores(2, seed=2)
    center = torch.linspace(-0.2, 0.3, 7, dtype=torch.float64)
    ref = dino_paper(
        [s.numpy() for s in student], [t.numpy() for t in teacher], center.numpy(), 0.1, 0.04
    )
    got = dino_loss(student, teacher, center, student_temp=0.1, teacher_temp=0.04)
    assert float(got) == pytest.approx(ref, rel=1e-10)
    s = [x.clone().requires_grad_() for x in student]
    t = [x.clone().requires_grad_() for x in teacher]
    dino_loss(s, t, center).backward()
    assert all(x.grad is not None for x in s) and all(x.grad is None for x in t)
    assert torch.autograd.gradcheck(
        lambda a, b: dino_loss([a, b, *student[2:]], teacher, center), (s[0], s[1])
    )
    with pytest.raises(ValueError, match="same shape"):
        dino_loss([student[0], student[1][:, :3]], teacher, center)


def test_objective_loss_center_update_and_multi_crop_forward():
    """The objective's loss on real views equals the formula on the student's and teacher's
    scores, and the center moves by ``c <- 0.9 c + 0.1 mean(teacher scores)`` after it."""
    torch.manual_seed(0)
    enc = torch.nn.Linear(6, 4)
    obj = build_objective(
        {"type": "dino", "out_dim": 9, "local_crops": {"number": 2, "scale": [0.1, 0.3]}}, 4, enc
    )
    assert isinstance(obj, DINO) and obj.local_crops == 2 and obj.local_crop_scale == (0.1, 0.3)
    with torch.no_grad():
        obj.teacher.weight.add_(0.3)  # a teacher that differs from the student
        obj.center.copy_(torch.linspace(-0.1, 0.1, 9))
    views = [torch.randn(5, 6) for _ in range(4)]
    with torch.no_grad():
        student = [obj.prototypes(enc(v)).double().numpy() for v in views]
        teacher = [obj.teacher_prototypes(obj.teacher(v)).double().numpy() for v in views[:2]]
    c0 = obj.center.double().numpy()[0].copy()
    loss, terms = obj(enc, *views)
    ref = dino_paper(student, teacher, c0, 0.1, 0.04)
    assert float(loss.detach()) == pytest.approx(ref, rel=1e-5)
    mean = [sum(teacher[i][n][k] for i in range(2) for n in range(5)) / 10 for k in range(9)]
    expected = [0.9 * c0[k] + 0.1 * mean[k] for k in range(9)]
    np.testing.assert_allclose(obj.center.numpy()[0], expected, rtol=1e-5, atol=1e-7)
    assert set(terms) == {"teacher_temp", "tau", "teacher_entropy", "embedding_std"}
    assert 0 < terms["teacher_entropy"] < math.log(9)
    with pytest.raises(ValueError, match="expected 2 local crops"):
        obj(enc, *views[:2])


def test_update_center_formula_and_centering_off():
    center = torch.tensor([[1.0, 2.0]])
    update_center(center, torch.tensor([[3.0, 4.0], [5.0, 8.0]]), 0.9)
    torch.testing.assert_close(center, torch.tensor([[1.3, 2.4]]))  # 0.9 c + 0.1 [4, 6]
    update_center(center, torch.tensor([[100.0, -100.0]]), 1.0)  # momentum 1: centering off
    torch.testing.assert_close(center, torch.tensor([[1.3, 2.4]]))


def test_teacher_temperature_schedule_follows_linspace():
    # the reference: np.concatenate((np.linspace(start, final, W), np.ones(E - W) * final))
    for start, final, warmup, epochs in (
        (0.02, 0.07, 5, 8),
        (0.04, 0.04, 3, 4),
        (0.03, 0.05, 1, 3),
    ):
        expected = np.concatenate(
            (np.linspace(start, final, warmup), np.full(epochs - warmup, final))
        )
        got = [teacher_temperature(e, final, start, warmup) for e in range(epochs)]
        np.testing.assert_allclose(got, expected, rtol=1e-12)
    assert [teacher_temperature(e, 0.04, 0.01, 0) for e in range(3)] == [0.04] * 3
    assert teacher_temperature(0, 0.04, None, 10) == 0.04  # no start: no warm-up
    obj = build_objective(
        {
            "type": "dino",
            "out_dim": 4,
            "teacher_temp": 0.07,
            "teacher_temp_start": 0.04,
            "teacher_temp_warmup_epochs": 4,
        },
        3,
    )
    seen = []
    for epoch in range(6):
        obj.start_epoch(epoch, 6)
        seen.append(obj.teacher_temp)
    np.testing.assert_allclose(seen, [0.04, 0.05, 0.06, 0.07, 0.07, 0.07], rtol=1e-12)


def test_teacher_gets_no_gradient_and_follows_the_ema():
    torch.manual_seed(0)
    enc = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    obj = build_objective({"type": "dino", "tau": 0.9, "out_dim": 6}, 4, enc)
    teachers = (obj.teacher, obj.teacher_prototypes)
    assert all(not p.requires_grad for t in teachers for p in t.parameters())
    assert {id(p) for p in obj.trainable_parameters()} == {id(obj.prototypes.weight)}
    torch.testing.assert_close(obj.teacher_prototypes.weight, obj.prototypes.weight)
    # one step: gradient to the student and its prototypes, none to the teacher
    x = torch.randn(8, 3)
    loss, _ = obj(enc, x + 0.1 * torch.randn(8, 3), x)
    loss.backward()
    assert enc[0].weight.grad is not None and obj.prototypes.weight.grad is not None
    assert all(p.grad is None for t in teachers for p in t.parameters())
    old = [p.detach().clone() for t in teachers for p in t.parameters()]
    with torch.no_grad():
        for p in [*enc.parameters(), obj.prototypes.weight]:
            p.add_(1.0)
        enc[1].running_mean.add_(2.0)
    students = [*enc.parameters(), obj.prototypes.weight]
    obj.after_step(enc, 0.0)  # cosine schedule at progress 0: tau = 0.9
    new = [p for t in teachers for p in t.parameters()]
    for o, pt, ps in zip(old, new, students, strict=True):
        torch.testing.assert_close(pt, 0.9 * o + 0.1 * ps.detach())
    torch.testing.assert_close(obj.teacher[1].running_mean, enc[1].running_mean)
    obj.after_step(enc, 0.5)
    assert obj.tau == pytest.approx(1 - 0.1 * (math.cos(math.pi / 2) + 1) / 2)
    before = [p.detach().clone() for p in new]
    obj.after_step(enc, 1.0)  # tau = 1: the teacher stays
    for b, pt in zip(before, new, strict=True):
        torch.testing.assert_close(pt, b)
    state = obj.state_dict()  # what a checkpoint keeps to resume
    assert {"center", "prototypes.weight", "teacher_prototypes.weight", "teacher.0.weight"} <= set(
        state
    )


def test_multi_crop_views_images_only():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(6, 1, 8, 8, generator=g)
    aug = make_augmenter("image", {"jitter": 0.0})
    views = multi_crop_views(aug, x, torch.Generator().manual_seed(3), 2, (0.1, 0.3))
    pair = two_views(aug, x, torch.Generator().manual_seed(3))
    assert len(views) == 4 and all(v.shape == x.shape for v in views)
    torch.testing.assert_close(views[0], pair[0])  # the global views are the two views
    torch.testing.assert_close(views[1], pair[1])
    assert all(float(v.min()) >= 0 and float(v.max()) <= 1 for v in views)
    assert not torch.equal(views[2], views[3]) and not torch.equal(views[2], views[0])
    again = multi_crop_views(aug, x, torch.Generator().manual_seed(3), 2, (0.1, 0.3))
    assert all(torch.equal(a, b) for a, b in zip(views, again, strict=True))
    signal = make_augmenter("signal")
    assert len(multi_crop_views(signal, torch.rand(4, 1, 20), g, 0)) == 2
    with pytest.raises(ValueError, match="multi-crop needs image data"):
        multi_crop_views(signal, torch.rand(4, 1, 20), g, 2)


def _ssl_tiny() -> dict:
    return yaml.safe_load((REPO / "config" / "tests" / "ssl_tiny.yaml").read_text())


def test_config_dino_keys_and_multi_crop_check():
    cfg = validate_config(_ssl_tiny())
    dino = cfg["losses"]["dino"]
    assert dino["local_crops"] == {"number": 2, "scale": [0.1, 0.4]}
    obj = build_objective({"type": "dino", "local_crops": {"number": 1}}, 4)
    assert obj.local_crops == 1 and obj.local_crop_scale == (0.05, 0.4)  # default scale
    bad = _ssl_tiny()
    bad["losses"]["vicreg"]["teacher_temp"] = 0.1
    bad["losses"]["dino"]["predictor_width"] = 8
    bad["losses"]["sig"] = copy.deepcopy(bad["losses"]["dino"]) | {"predictor_width": 8}
    del bad["losses"]["sig"]["predictor_width"]
    bad["sweeps"].append({"name": "sig", "datasets": ["mnist1d"], "models": ["mlp-d2-w16"]})
    bad["sweeps"][1]["losses"] = ["sig"]
    msg = config_error(bad)
    assert "losses.vicreg.teacher_temp" in msg and "dino only" in msg
    assert "losses.dino.predictor_width" in msg
    assert "losses.sig.local_crops.number" in msg and "mnist1d" in msg
    typo = _ssl_tiny()
    typo["losses"]["dino"]["local_crops"]["numbr"] = 2
    assert "local_crops" in config_error(typo)


def test_train_ssl_refuses_multi_crop_on_signals(tmp_path):
    model = build_ssl_model(
        {"arch": "mlp", "input_shape": [1, 16], "n_classes": 1, "depth": 1, "width": 8},
        {"width": 8, "depth": 2, "out_dim": 4},
        seed=0,
    )
    obj = build_objective({"type": "dino", "out_dim": 8, "local_crops": {"number": 2}}, 4, model)
    cfg = TrainConfig(epochs=1, batch_size=8, seed=0, checkpoint_epochs=[], device="cpu")
    with pytest.raises(ValueError, match="multi-crop needs image data"):
        train_ssl(model, obj, make_augmenter("signal"), np.zeros((16, 1, 16), "f4"), cfg, tmp_path)


def _embedding_std_per_epoch(tmp_path: Path, name: str, hyper: dict) -> np.ndarray:
    """A tiny real DINO run: 256 digits as 64-sample signals, an MLP-2-64 backbone with a
    64-32 projector, 1024 prototypes, Adam 0.01, 20 epochs of 4 steps."""
    x = (load_digits().data[:256] / 16.0).astype(np.float32).reshape(-1, 1, 64)
    model = build_ssl_model(
        {"arch": "mlp", "input_shape": [1, 64], "n_classes": 1, "depth": 2, "width": 64},
        {"width": 64, "depth": 2, "out_dim": 32},
        seed=0,
    )
    spec = {"type": "dino", "out_dim": 1024, "tau": 0.9, **hyper}
    obj = build_objective(spec, model.out_dim, model, seed=0)
    adam = {"epochs": 20, "batch_size": 64, "optimizer": "adam", "lr": 0.01, "seed": 0}
    cfg = TrainConfig(**adam, checkpoint_epochs=[], device="cpu")
    metrics = train_ssl(model, obj, make_augmenter("signal"), x, cfg, tmp_path / name)
    return metrics["embedding_std"].to_numpy()


@pytest.mark.slow
def test_collapse_without_centering_and_sharpening_not_with_them(tmp_path):
    """The known failure and its remedy (Caron et al. 2021, section 5.3): with the center
    frozen at 0 (``center_momentum: 1``) and the teacher as soft as the student
    (``teacher_temp = student_temp``) the embeddings collapse to one direction within a few
    dozen steps; with centering (0.9) and sharpening (0.04 against 0.1) they do not."""
    off = _embedding_std_per_epoch(tmp_path, "off", {"teacher_temp": 0.1, "center_momentum": 1})
    on = _embedding_std_per_epoch(tmp_path, "on", {"teacher_temp": 0.04, "center_momentum": 0.9})
    assert off[0] > 0.4 and on[0] > 0.4  # spread at the start (first epoch's mean)
    assert off[-1] < 0.1 and off[-1] < off[0] / 5  # collapsed
    assert on[-1] > 0.2 and on[-1] > 3 * off[-1] and on[5:].min() > 0.15  # not collapsed
