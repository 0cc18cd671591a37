"""Tests of mfoml.nets.activations: ordered dumps, reduction, memory, errors, reading back."""

from __future__ import annotations

import json
import math
import tracemalloc

import numpy as np
import pytest
import torch
from mfoml.nets.activations import dump_activations, open_activations, plan_reduction
from mfoml.nets.models import build_model


def _adaptive_pool_1d(a: np.ndarray, out: int) -> np.ndarray:
    """Adaptive average pooling of the last axis, windows [floor(i L/o), ceil((i+1) L/o))."""
    length = a.shape[-1]
    cols = []
    for i in range(out):
        lo, hi = (i * length) // out, math.ceil((i + 1) * length / out)
        cols.append(a[..., lo:hi].mean(-1))
    return np.stack(cols, -1)


def _adaptive_pool_2d(a: np.ndarray, oh: int, ow: int) -> np.ndarray:
    """Adaptive average pooling of the last two axes, separably (exact for box windows)."""
    rows = _adaptive_pool_1d(np.swapaxes(a, -1, -2), oh)  # (..., W, oh)
    return _adaptive_pool_1d(np.swapaxes(rows, -1, -2), ow)  # (..., oh, ow)


def _direct(model, x: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    model.eval()
    with torch.no_grad():
        logits, feats = model.forward_features(torch.from_numpy(x.astype(np.float32)))
    return logits.numpy(), {k: v.numpy().astype(np.float64) for k, v in feats.items()}


def _close_fp16(stored: np.ndarray, ref: np.ndarray) -> None:
    """``stored`` (float16) equals ``ref`` up to float16 rounding (2^-10 relative, 1 ulp slack)."""
    stored = stored.astype(np.float64)
    np.testing.assert_allclose(stored, ref, rtol=2.0**-10, atol=1e-6)


def _trained_conv(rng):
    """A tiny Conv-1-3 on 8x8 images whose BatchNorm running statistics are not trivial."""
    model = build_model("conv", (1, 8, 8), 4, depth=1, width=3, seed=0)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.from_numpy(rng.normal(1.0, 2.0, size=(16, 1, 8, 8)).astype(np.float32)))
    return model


def test_dump_equals_a_direct_forward_pass(rng, tmp_path):
    model = _trained_conv(rng)
    x = rng.normal(size=(37, 1, 8, 8)).astype(np.float32)
    y = rng.integers(0, 4, size=37)
    model.train()  # the dump must switch to eval mode and restore the flag
    manifest = dump_activations(
        model, x, y, tmp_path / "act", batch_size=10, split="test", epoch=3, checkpoint="c.pt"
    )
    assert model.training
    logits, direct = _direct(model, x)
    dump = open_activations(tmp_path / "act")
    assert dump.layers == ["input", "stem", "block1", "logits"]
    assert manifest == json.loads((tmp_path / "act" / "manifest.json").read_text())
    assert (manifest["split"], manifest["epoch"], manifest["checkpoint"]) == ("test", 3, "c.pt")
    assert manifest["n_samples"] == 37
    expected = {"input": [1, 8, 8], "stem": [3, 2, 2], "block1": [3, 2, 2], "logits": [4]}
    for i, entry in enumerate(manifest["layers"]):
        assert entry["index"] == i
        assert entry["shape"] == expected[entry["name"]]
        assert entry["dim"] == int(np.prod(entry["shape"]))
        assert entry["reduction"] is None
        arr = dump.layer(entry["name"])
        assert isinstance(arr, np.memmap) and arr.dtype == np.float16
        assert arr.shape == (37, entry["dim"])
        _close_fp16(np.asarray(arr), direct[entry["name"]].reshape(37, -1))
    np.testing.assert_array_equal(dump.labels, y)
    assert dump.labels.dtype == np.int64 and dump.predictions.dtype == np.int64
    np.testing.assert_array_equal(dump.predictions, logits.argmax(1))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["act"]  # no temp dir left


def test_layer_subset_is_stored_in_model_order(rng, tmp_path):
    model = build_model("mlp", (5,), 3, depth=3, width=6, seed=1)
    x = rng.normal(size=(9, 5)).astype(np.float32)
    manifest = dump_activations(
        model, x, np.arange(9) % 3, tmp_path / "a", layers=["block3", "input"]
    )
    assert [(e["name"], e["index"]) for e in manifest["layers"]] == [("input", 0), ("block3", 3)]
    with pytest.raises(KeyError, match="block9"):
        dump_activations(model, x, np.arange(9) % 3, tmp_path / "b", layers=["block9"])


def _largest_side(c: int, h: int, w: int, cap: int) -> int:
    """Brute force: the largest s with c * min(h, s) * min(w, s) <= cap."""
    return max(s for s in range(1, max(h, w) + 1) if c * min(h, s) * min(w, s) <= cap)


def test_wide_maps_are_pooled_to_fit_the_cap(rng, tmp_path):
    model = build_model("conv", (2, 16, 16), 3, depth=1, width=4, seed=2)
    x = rng.normal(size=(11, 2, 16, 16)).astype(np.float32)
    cap = 40
    manifest = dump_activations(
        model, x, np.arange(11) % 3, tmp_path / "a", max_features=cap, batch_size=4
    )
    _, direct = _direct(model, x)
    dump = open_activations(tmp_path / "a")
    shapes = {"input": (2, 16, 16), "stem": (4, 4, 4), "block1": (4, 4, 4)}
    for entry in manifest["layers"]:
        name = entry["name"]
        if name == "logits":
            assert entry["reduction"] is None and entry["dim"] == 3
            continue
        c, h, w = shapes[name]
        s = _largest_side(c, h, w, cap)
        assert entry["shape"] == [c, h, w]
        assert entry["reduction"] == {
            "method": "adaptive_avg_pool2d",
            "output_size": [min(h, s), min(w, s)],
            "original_dim": c * h * w,
        }
        assert entry["dim"] == c * min(h, s) * min(w, s) <= cap
        ref = _adaptive_pool_2d(direct[name], min(h, s), min(w, s)).reshape(11, -1)
        _close_fp16(np.asarray(dump.layer(name)), ref)
    assert [e["output_size"] for e in [m["reduction"] for m in manifest["layers"][:3]]] == [
        [4, 4],  # input: 2*4*4 = 32 <= 40 < 2*5*5
        [3, 3],  # 4*3*3 = 36 <= 40 < 4*4*4: overlapping windows
        [3, 3],
    ]


def test_one_dimensional_maps_pool_the_length(rng, tmp_path):
    model = build_model("conv1d", (40,), 10, depth=2, width=4, seed=3)
    x = rng.normal(size=(6, 40)).astype(np.float32)
    manifest = dump_activations(
        model, x, np.arange(6), tmp_path / "a", max_features=30, layers=["block1", "block2"]
    )
    _, direct = _direct(model, x)
    dump = open_activations(tmp_path / "a")
    b1, b2 = manifest["layers"]
    # block1 (4, 20): 80 > 30 -> length 30 // 4 = 7; block2 (4, 10): 40 > 30 -> length 7
    assert b1["reduction"]["output_size"] == [7] and b1["dim"] == 28
    assert b2["reduction"]["method"] == "adaptive_avg_pool1d" and b2["dim"] == 28
    _close_fp16(
        np.asarray(dump.layer("block1")), _adaptive_pool_1d(direct["block1"], 7).reshape(6, -1)
    )
    _close_fp16(
        np.asarray(dump.layer("block2")), _adaptive_pool_1d(direct["block2"], 7).reshape(6, -1)
    )


def test_unreducible_layers_raise_naming_the_layer(rng, tmp_path):
    model = build_model("mlp", (5,), 3, depth=1, width=50, seed=0)
    x = rng.normal(size=(4, 5)).astype(np.float32)
    with pytest.raises(ValueError, match="'block1'.*non-spatial"):
        dump_activations(model, x, np.arange(4) % 3, tmp_path / "a", max_features=20)
    assert not (tmp_path / "a").exists()
    with pytest.raises(ValueError, match="'wide'.*channels"):
        plan_reduction("wide", (64, 4, 4), 32)


def test_resnet18_dump_with_cap(rng, tmp_path):
    model = build_model("resnet18", (1, 16, 16), 3, seed=0)
    x = rng.normal(size=(3, 1, 16, 16)).astype(np.float32)
    manifest = dump_activations(model, x, np.arange(3), tmp_path / "a", max_features=512)
    dims = {e["name"]: e["dim"] for e in manifest["layers"]}
    # input 256 kept; 64-channel maps -> 2x2 (256); 128 -> 2x2 (512); 256 -> 1x1; 512 -> 1x1
    assert dims == {
        "input": 256,
        "stem": 256,
        "layer1": 256,
        "layer2": 512,
        "layer3": 256,
        "layer4": 512,
        "pool": 512,
        "logits": 3,
    }
    _, direct = _direct(model, x)
    dump = open_activations(tmp_path / "a")
    _close_fp16(np.asarray(dump.layer("layer4")), direct["layer4"].mean((2, 3)))
    _close_fp16(np.asarray(dump.layer("pool")), direct["pool"])


def test_nan_or_inf_is_an_error_naming_the_layer(rng, tmp_path):
    model = build_model("mlp", (5,), 3, depth=3, width=4, seed=0)
    with torch.no_grad():
        model.stages["block2"][0].weight.fill_(math.inf)
    x = rng.normal(size=(8, 5)).astype(np.float32)
    with pytest.raises(FloatingPointError, match="layer 'block2'"):
        dump_activations(model, x, np.arange(8) % 3, tmp_path / "out", batch_size=3)
    assert list(tmp_path.iterdir()) == []  # neither out nor a temp dir

    model = build_model("mlp", (5,), 3, depth=3, width=4, seed=0)
    with torch.no_grad():  # finite in float32 but beyond the float16 range
        model.stages["block1"][1].weight.fill_(1e6)
    with pytest.raises(FloatingPointError, match="layer 'block1'.*float16"):
        dump_activations(model, x, np.arange(8) % 3, tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def _peak_bytes(model, x, y, out) -> int:
    tracemalloc.start()
    try:
        dump_activations(model, x, y, out, batch_size=100)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_does_not_grow_with_the_number_of_samples(rng, tmp_path):
    model = build_model("mlp", (64,), 10, depth=2, width=128, seed=0)
    n = 1000
    # float64 input: each batch is converted (and traced), as a leak of per-batch copies would be
    x = rng.normal(size=(4 * n, 64))
    y = rng.integers(0, 10, size=4 * n)
    _peak_bytes(model, x[:200], y[:200], tmp_path / "warm")  # imports and caches
    small = _peak_bytes(model, x[:n], y[:n], tmp_path / "n")
    large = _peak_bytes(model, x, y, tmp_path / "4n")
    stored_4n = 4 * n * (64 + 128 + 128 + 10) * 2 + 2 * 4 * n * 8  # bytes written for 4N
    assert large < small + 64 * 1024, (small, large)
    assert large < stored_4n / 4, (large, stored_4n)
    dump = open_activations(tmp_path / "4n")
    assert dump.n_samples == 4 * n


def test_iter_chunks_and_reading_errors(rng, tmp_path):
    model = build_model("mlp", (5,), 3, depth=1, width=4, seed=0)
    x = rng.normal(size=(23, 5)).astype(np.float32)
    dump_activations(model, x, np.arange(23) % 3, tmp_path / "a")
    dump = open_activations(tmp_path / "a")
    chunks = list(dump.iter_chunks("block1", 10))
    assert [c.shape for c in chunks] == [(10, 4), (10, 4), (3, 4)]
    assert all(c.dtype == np.float32 for c in chunks)
    np.testing.assert_array_equal(
        np.concatenate(chunks), np.asarray(dump.layer("block1"), np.float32)
    )
    assert "block1" in dump and "block2" not in dump
    with pytest.raises(KeyError, match="block2"):
        dump.layer("block2")
    with pytest.raises(FileNotFoundError, match="manifest.json"):
        open_activations(tmp_path)
    np.save(tmp_path / "a" / "block1.npy", np.zeros((22, 4), np.float16))  # wrong N
    with pytest.raises(ValueError, match=r"block1.npy.*\(23, 4\)"):
        open_activations(tmp_path / "a").layer("block1")


def test_existing_dump_is_replaced_only_when_complete(rng, tmp_path):
    model = build_model("mlp", (5,), 3, depth=1, width=4, seed=0)
    x = rng.normal(size=(7, 5)).astype(np.float32)
    out = tmp_path / "a"
    dump_activations(model, x, np.arange(7) % 3, out, epoch=1)
    with pytest.raises(FileExistsError):
        dump_activations(model, x, np.arange(7) % 3, out, overwrite=False)
    with torch.no_grad():
        model.stages["block1"][1].weight.fill_(math.nan)
    with pytest.raises(FloatingPointError):
        dump_activations(model, x, np.arange(7) % 3, out, epoch=2)
    assert open_activations(out).manifest["epoch"] == 1  # the old complete dump survives
    model = build_model("mlp", (5,), 3, depth=1, width=4, seed=0)
    dump_activations(model, x, np.arange(7) % 3, out, epoch=3)
    assert open_activations(out).manifest["epoch"] == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a"]


def test_manifest_cross_entropy_is_the_eval_loss_of_the_same_pass(rng, tmp_path):
    """The dump records the loss that belongs with its predictions: mean cross-entropy of the
    eval-mode logits against the dumped labels (batches summed, not averaged per batch)."""
    model = build_model("mlp", (5,), 3, depth=2, width=6, seed=1)
    model.train()  # the dump switches to eval mode (BatchNorm running statistics)
    x = rng.normal(size=(11, 5)).astype(np.float32)
    y = rng.integers(0, 3, size=11)
    manifest = dump_activations(model, x, y, tmp_path / "a", batch_size=4)
    assert model.training
    with torch.no_grad():
        logits = model.eval()(torch.from_numpy(x)).double()
    logp = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    expected = float(-logp[torch.arange(11), torch.from_numpy(y)].mean())
    assert manifest["cross_entropy"] == pytest.approx(expected, rel=1e-5)
    assert open_activations(tmp_path / "a").manifest["cross_entropy"] == manifest["cross_entropy"]
    # labels that are not classes of the logits (another label set): no loss, not a wrong one
    other = dump_activations(model, x, np.full(11, 5), tmp_path / "b")
    assert other["cross_entropy"] is None
