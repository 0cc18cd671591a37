"""mfoml.nets.threads (issue 27): the forward MACs of a model, counted without changing it, and
the training-thread policy. Expected values are written out by hand."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch
from logcapture import captured
from mfoml.nets.threads import (
    MACS_PER_EXTRA_THREAD,
    example_input,
    forward_macs,
    set_training_threads,
    training_threads,
)
from torch import nn


class _Noisy(nn.Module):
    """Draws from torch's RNG on every call (also in eval mode)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + 0.0 * torch.rand_like(x)


class _Toy(nn.Module):
    """Input ``(B, 2, 10)``; Conv1d, two Conv2d (one grouped), BatchNorm, Dropout, Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv1d(2, 4, kernel_size=3)  # (2, 10) -> (4, 8)
        self.c2 = nn.Conv2d(1, 3, kernel_size=3)  # (1, 4, 8) -> (3, 2, 6)
        self.c3 = nn.Conv2d(3, 6, kernel_size=(1, 2), groups=3)  # (3, 2, 6) -> (6, 2, 5)
        self.bn = nn.BatchNorm2d(6)
        self.noise = _Noisy()
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(60, 5)
        self.fc2 = nn.Linear(5, 5)  # called twice

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.c1(x).reshape(len(x), 1, 4, 8)
        h = self.noise(self.bn(self.c3(self.c2(h))))
        return self.fc2(self.fc2(self.fc(self.drop(h.flatten(1)))))


# per sample: c1 4*8 outputs x 2*3, c2 3*2*6 x 1*9, c3 6*2*5 x (3/3)*1*2, fc 5 x 60, fc2 2 x 5 x 5
TOY_MACS = 32 * 6 + 36 * 9 + 60 * 2 + 300 + 2 * 25  # = 986


@pytest.fixture
def keep_threads() -> Iterator[None]:
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_forward_macs_counts_linear_and_conv_layers_by_hand():
    assert TOY_MACS == 986
    torch.manual_seed(0)
    model = _Toy()
    assert forward_macs(model, torch.zeros(1, 2, 10)) == TOY_MACS
    assert forward_macs(model, torch.ones(3, 2, 10)) == TOY_MACS  # per sample
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(40, 100), nn.ReLU(), nn.Linear(100, 10))
    assert forward_macs(mlp, torch.zeros(1, 1, 40)) == 40 * 100 + 100 * 10
    with pytest.raises(ValueError, match="batch dimension"):
        forward_macs(mlp, torch.zeros(0, 1, 40))


def test_forward_macs_leaves_the_model_and_the_rng_as_they_were():
    torch.manual_seed(0)
    model = _Toy()
    model.train()
    model.c2.eval()  # mixed flags are restored one by one
    with torch.no_grad():  # BatchNorm statistics that are not the initial ones
        model.bn.running_mean.fill_(0.25)
        model.bn.running_var.fill_(2.0)
        model.bn.num_batches_tracked.fill_(7)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    flags = {name: m.training for name, m in model.named_modules()}
    hooks = {name: len(m._forward_hooks) for name, m in model.named_modules()}
    torch.manual_seed(123)
    expected_draw = torch.rand(4)
    torch.manual_seed(123)
    forward_macs(model, torch.randn(2, 2, 10, generator=torch.Generator().manual_seed(1)))
    assert torch.equal(torch.rand(4), expected_draw)  # the RNG state is restored
    after = model.state_dict()
    assert all(torch.equal(state[k], after[k]) for k in state)
    assert after["bn.num_batches_tracked"].item() == 7
    assert {name: m.training for name, m in model.named_modules()} == flags
    assert flags["c2"] is False and flags["c1"] is True
    assert {name: len(m._forward_hooks) for name, m in model.named_modules()} == hooks
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize(
    ("requested", "macs", "setting", "used"),
    [
        (2, 0.004e9, "auto", 1),  # the MLP of bench_train
        (2, 0.63e9, "auto", 1),
        (2, 7.99e9, "auto", 1),
        (2, 8e9, "auto", 2),  # the threshold
        (2, 13.9e9, "auto", 2),  # ResNet18 at 16x16, batch 100
        (4, 13.9e9, "auto", 2),
        (4, 16e9, "auto", 3),
        (4, 1000e9, "auto", 4),  # capped by the job's threads
        (1, 1000e9, "auto", 1),
        (0, 1000e9, "auto", 1),  # at least one
        (4, 0.0, 2, 2),  # an integer: exactly that many
        (2, 1000e9, 1, 1),
        (2, 0.0, 3, 2),  # ... at most the job's threads
    ],
)
def test_training_threads_table(requested, macs, setting, used):
    got, reason = training_threads(requested, macs, setting)
    assert got == used
    assert f"torch threads: {used}" in reason
    assert ("auto" in reason) == (setting == "auto")


def test_training_threads_reason_and_bad_settings():
    assert MACS_PER_EXTRA_THREAD == 8e9
    _, reason = training_threads(2, 4e9, "auto")
    assert reason.startswith("torch threads: 1 of the job's 2") and "4 GMAC" in reason
    for bad in ("many", 0, True, 1.5):
        with pytest.raises(ValueError, match="torch_threads"):
            training_threads(2, 1e9, bad)
    with pytest.raises(ValueError, match="macs_per_batch"):
        training_threads(2, float("nan"), "auto")


def test_example_input_takes_the_rows_shape_and_dtype():
    text = example_input(np.ones((5, 7), dtype=np.int32))
    assert text.dtype == torch.int64 and tuple(text.shape) == (1, 7) and not text.any()
    image = example_input(np.ones((5, 3, 4, 4), dtype=np.float64))
    assert image.dtype == torch.float32 and tuple(image.shape) == (1, 3, 4, 4)


class _NoForward(nn.Linear):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise AssertionError("no forward pass expected")


def test_set_training_threads_counts_only_where_it_decides(keep_threads):
    rows = np.zeros((10, 4), dtype=np.float32)
    with captured("mfoml.nets.threads") as lines:
        assert set_training_threads(_NoForward(4, 2), rows, 100, 1) == 1  # one thread
        assert set_training_threads(_NoForward(4, 2), rows, 100, 4, 2) == 2  # an integer
        assert torch.get_num_threads() == 2
        # auto: a 4 -> 2 Linear, batch 100 (800 MACs): one thread of the two
        assert set_training_threads(nn.Linear(4, 2), rows, 100, 2, "auto") == 1
    assert torch.get_num_threads() == 1
    assert lines[0] == "torch threads: 1 (the job's threads)"
    assert lines[1] == "torch threads: 2 (train.torch_threads 2, the job's threads 4)"
    assert lines[2].startswith("torch threads: 1 of the job's 2 (train.torch_threads auto: 8e-07")
