"""Tests of mfoml.nets.models: architectures, activations, probe layers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mfoml.nets.models import (
    ACTIVATIONS,
    Heaviside,
    HeavisideSurrogate,
    build_model,
    make_activation,
)
from torch import nn

# tiny configurations per architecture: (kwargs, input_shape, expected per-sample probe shapes)
# The expected shapes are written out by hand from the documented architecture.
N_CLASSES = 3
CASES = {
    "mlp": (
        {"depth": 2, "width": 8},
        (2, 5),
        {"input": (2, 5), "block1": (8,), "block2": (8,), "logits": (3,)},
    ),
    "conv": (
        {"depth": 2, "width": 4},
        (1, 10, 8),
        # 10x8 -> 2x2 s2 -> 5x4 -> 2x2 s2 -> 2x2; 3x3 blocks keep 2x2
        {"input": (1, 10, 8), "stem": (4, 2, 2), "block1": (4, 2, 2), "block2": (4, 2, 2)}
        | {"logits": (3,)},
    ),
    "conv1d": (
        {"depth": 4, "width": 4},
        (40,),
        # stride 2 for blocks 1-3 (k=3, pad=1): 40 -> 20 -> 10 -> 5, block 4 stride 1: 5
        {"input": (40,), "block1": (4, 20), "block2": (4, 10), "block3": (4, 5)}
        | {"block4": (4, 5), "logits": (3,)},
    ),
    "resnet18": (
        {},
        (1, 16, 16),
        # cifar stem (3x3 s1, no max-pool); layers 2-4 halve the map
        {"input": (1, 16, 16), "stem": (64, 16, 16), "layer1": (64, 16, 16)}
        | {"layer2": (128, 8, 8), "layer3": (256, 4, 4), "layer4": (512, 2, 2)}
        | {"pool": (512,), "logits": (3,)},
    ),
}


def _batch(input_shape: tuple[int, ...], n: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn((n, *input_shape), generator=g)
    y = torch.arange(n) % N_CLASSES
    return x, y


# Every activation on the small architectures; ResNet18 (about 6 s a case on 2 cores) with relu
# and prelu (the activation with per-instance parameters), which exercise its block's activation
# swap as well as the other four would.
ARCH_ACTIVATIONS = [
    (arch, act)
    for arch in CASES
    for act in ACTIVATIONS
    if arch != "resnet18" or act in ("relu", "prelu")
]


@pytest.mark.parametrize(("arch", "activation"), ARCH_ACTIVATIONS)
def test_every_architecture_trains_and_has_documented_probe_shapes(arch, activation):
    kwargs, input_shape, expected = CASES[arch]
    model = build_model(arch, input_shape, N_CLASSES, activation=activation, seed=0, **kwargs)
    assert model.probe_layers == list(expected)
    assert model.probe_layers[0] == "input" and model.probe_layers[-1] == "logits"
    n = 4 if arch == "resnet18" else 12
    x, y = _batch(input_shape, n)
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    losses = []
    for _ in range(3):
        logits, feats = model.forward_features(x)
        loss = F.cross_entropy(logits, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        assert {k: tuple(v.shape[1:]) for k, v in feats.items()} == expected
        assert all(v.shape[0] == n for v in feats.values())
    assert np.isfinite(losses).all()
    changed = [k for k, v in model.named_parameters() if not torch.equal(v, before[k])]
    # the first layer's weights moved: gradients reached the bottom of the network
    first = next(k for k, _ in model.named_parameters())
    assert first in changed
    assert model.probe_shapes() == expected
    w = model.classifier_weight()
    pen = int(np.prod(expected[model.penultimate_layer]))
    assert tuple(w.shape) == (N_CLASSES, pen)


def test_heaviside_forward_and_surrogate_gradient():
    x = torch.tensor([-3.0, -0.5, -1e-3, 0.0, 1e-3, 0.5, 3.0], requires_grad=True)
    k = 4.0
    y = HeavisideSurrogate.apply(x, k)
    assert y.tolist() == [0, 0, 0, 0, 1, 1, 1]
    y.backward(torch.ones_like(y))
    # derivative of sigmoid(k x), written out independently
    xs = x.detach().numpy().astype(np.float64)
    s = 1 / (1 + np.exp(-k * xs))
    np.testing.assert_allclose(x.grad.numpy(), k * s * (1 - s), rtol=1e-5, atol=1e-6)
    assert (x.grad > 0).all()
    assert x.grad[3] == pytest.approx(1.0)  # k/4 at 0: straight-through there
    assert isinstance(make_activation("heaviside", heaviside_slope=2.0), Heaviside)
    with pytest.raises(ValueError, match="heaviside_slope"):
        Heaviside(0.0)


def test_heaviside_mlp_trains_above_chance():
    rng = np.random.default_rng(0)
    n_per, dim, k = 150, 10, 4
    centers = rng.normal(scale=2.0, size=(k, dim))
    x = np.concatenate([c + rng.normal(size=(n_per, dim)) for c in centers]).astype(np.float32)
    y = np.repeat(np.arange(k), n_per)
    perm = rng.permutation(len(y))
    x, y = torch.from_numpy(x[perm]), torch.from_numpy(y[perm])
    xtr, ytr, xte, yte = x[:400], y[:400], x[400:], y[400:]
    model = build_model("mlp", (dim,), k, activation="heaviside", depth=2, width=32, seed=1)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(0)
    for _ in range(15):
        for idx in torch.randperm(400, generator=g).split(50):
            loss = F.cross_entropy(model(xtr[idx]), ytr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        _, feats = model.forward_features(xte, ["block1"])
        acc = float((model(xte).argmax(1) == yte).float().mean())
    assert set(torch.unique(feats["block1"]).tolist()) <= {0.0, 1.0}
    assert acc > 0.6, acc  # chance is 0.25


@pytest.mark.parametrize("arch", list(CASES))
def test_forward_features_is_one_pass_and_matches_forward(arch):
    kwargs, input_shape, expected = CASES[arch]
    model = build_model(arch, input_shape, N_CLASSES, seed=0, **kwargs).eval()
    calls = {name: 0 for name in model.stages}
    for name, stage in model.stages.items():
        stage.register_forward_hook(lambda *_a, _n=name: calls.__setitem__(_n, calls[_n] + 1))
    x, _ = _batch(input_shape, 3)
    with torch.no_grad():
        logits, feats = model.forward_features(x, ["logits", "input"])
        assert all(c == 1 for c in calls.values()), calls
        assert list(feats) == ["logits", "input"]
        assert feats["input"] is x
        torch.testing.assert_close(feats["logits"], logits)
        torch.testing.assert_close(model(x), logits)
        # the final linear classifier acts on the flattened penultimate layer
        _, f = model.forward_features(x, [model.penultimate_layer])
        pen = f[model.penultimate_layer].flatten(1)
        manual = pen @ model.classifier_weight().T + model.classifier_bias()
        torch.testing.assert_close(manual, logits, rtol=1e-5, atol=1e-5)
    with pytest.raises(KeyError, match="nope"):
        model.forward_features(x, ["nope"])


def _tv_state_to_ours(tv: nn.Module, ours: nn.Module) -> dict:
    """Map a torchvision resnet18 state_dict onto ours by order (shapes checked)."""
    src, dst = tv.state_dict(), ours.state_dict()
    assert len(src) == len(dst)
    out = {}
    for (ks, vs), (kd, vd) in zip(src.items(), dst.items(), strict=True):
        assert vs.shape == vd.shape, (ks, kd)
        out[kd] = vs
    return out


def test_resnet18_residual_equals_torchvision_and_no_residual_drops_skip():
    from torchvision.models import resnet18

    torch.manual_seed(0)
    tv = resnet18(weights=None, num_classes=5).eval()
    x = torch.randn(2, 3, 40, 40)
    ours = build_model("resnet18", (3, 40, 40), 5, stem="imagenet").eval()
    ours.load_state_dict(_tv_state_to_ours(tv, ours))
    with torch.no_grad():
        torch.testing.assert_close(ours(x), tv(x), rtol=1e-4, atol=1e-5)

    plain = build_model("resnet18", (3, 40, 40), 5, stem="imagenet", residual=False).eval()
    assert not any("downsample" in k for k in plain.state_dict())
    tv_no_ds = {k: v for k, v in tv.state_dict().items() if "downsample" not in k}
    assert len(tv_no_ds) == len(plain.state_dict())
    plain.load_state_dict(dict(zip(plain.state_dict(), tv_no_ds.values(), strict=True)))

    def plain_forward(inp: torch.Tensor) -> torch.Tensor:  # torchvision's blocks, no skip
        h = tv.maxpool(tv.relu(tv.bn1(tv.conv1(inp))))
        for layer in (tv.layer1, tv.layer2, tv.layer3, tv.layer4):
            for b in layer:
                h = F.relu(b.bn2(b.conv2(F.relu(b.bn1(b.conv1(h))))))
        return tv.fc(torch.flatten(tv.avgpool(h), 1))

    with torch.no_grad():
        torch.testing.assert_close(plain(x), plain_forward(x), rtol=1e-4, atol=1e-5)
        assert not torch.allclose(plain(x), tv(x))


def test_resnet18_stems():
    gray = build_model("resnet18", (1, 28, 28), 10)
    assert gray.spec["stem"] == "cifar"
    conv1 = gray.stages["stem"][0]
    assert (conv1.in_channels, conv1.kernel_size, conv1.stride) == (1, (3, 3), (1, 1))
    assert not any(isinstance(m, nn.MaxPool2d) for m in gray.modules())
    assert gray.probe_shapes()["layer4"] == (512, 4, 4)  # 28 -> 28, 14, 7, 4
    rgb = build_model("resnet18", (3, 32, 32), 10, stem="imagenet")
    conv1 = rgb.stages["stem"][0]
    assert (conv1.in_channels, conv1.kernel_size, conv1.stride) == (3, (7, 7), (2, 2))
    assert rgb.probe_shapes()["stem"] == (64, 8, 8)
    assert build_model("resnet18", (3, 96, 96), 10).spec["stem"] == "imagenet"


def test_conv1d_accepts_both_input_layouts():
    m2 = build_model("conv1d", (40,), 10, depth=3, width=4, seed=3).eval()
    m3 = build_model("conv1d", (1, 40), 10, depth=3, width=4, seed=3).eval()
    x = torch.randn(5, 40)
    with torch.no_grad():
        out = m2(x)
        torch.testing.assert_close(m2(x.unsqueeze(1)), out)
        torch.testing.assert_close(m3(x), out)
        torch.testing.assert_close(m3(x.unsqueeze(1)), out)


@pytest.mark.parametrize("arch", list(CASES))
def test_spec_rebuilds_model_and_seed_fixes_init(arch):
    kwargs, input_shape, _ = CASES[arch]
    a = build_model(arch, input_shape, N_CLASSES, activation="prelu", seed=7, **kwargs)
    b = build_model(**a.spec)
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    assert all(torch.equal(sa[k], sb[k]) for k in sa)  # same seed -> same init
    c = build_model(**{**a.spec, "seed": 8})
    assert any(not torch.equal(sa[k], v) for k, v in c.state_dict().items())
    # building with a seed leaves the global RNG untouched
    torch.manual_seed(0)
    r1 = torch.rand(3)
    torch.manual_seed(0)
    build_model(arch, input_shape, N_CLASSES, seed=7, **kwargs)
    assert torch.equal(torch.rand(3), r1)


def test_build_model_errors_name_the_problem():
    with pytest.raises(ValueError, match="arch"):
        build_model("vgg", (3, 8, 8), 2)
    with pytest.raises(ValueError, match="activation"):
        build_model("mlp", (4,), 2, activation="swish")
    with pytest.raises(ValueError, match="depth/width"):
        build_model("resnet18", (3, 8, 8), 2, depth=3)
    with pytest.raises(ValueError, match="residual"):
        build_model("mlp", (4,), 2, residual=False)
    with pytest.raises(ValueError, match="stem"):
        build_model("resnet18", (3, 8, 8), 2, stem="tiny")
    with pytest.raises(ValueError, match="too small"):
        build_model("conv", (1, 3, 3), 2)
    with pytest.raises(ValueError, match="input_shape"):
        build_model("conv", (16,), 2)


# --------------------------------------------------------------------------------------------
# configurable blocks: stride, kernel size, BatchNorm, pre-activation probe points


def _is_batchnorm(m: nn.Module) -> bool:
    return isinstance(m, nn.modules.batchnorm._BatchNorm)


def test_published_mnist1d_network_shapes_strides_and_pre_activation_values():
    """The reference's MNIST-1D net: 5 Conv1d of 80 channels, stride 2, no BatchNorm, probed
    before each ReLU; the pre-activation layers equal a manual conv forward."""
    model = build_model(
        "conv1d",
        (1, 40),
        10,
        depth=5,
        width=80,
        stride=2,
        batch_norm=False,
        probe_point="pre",
        seed=0,
    ).eval()
    pre = [f"block{i}_pre" for i in range(1, 6)]
    assert model.probe_layers == ["input", *pre, "block5", "logits"]
    assert model.penultimate_layer == "block5"
    lengths = [20, 10, 5, 3, 2]  # 40 -> 20 -> 10 -> 5 -> 3 -> 2 (kernel 3, padding 1, stride 2)
    shapes = model.probe_shapes()
    assert [shapes[n] for n in pre] == [(80, n) for n in lengths]
    assert shapes["block5"] == (80, 2) and shapes["logits"] == (10,)
    assert not any(_is_batchnorm(m) for m in model.modules())
    convs = [m for m in model.modules() if isinstance(m, nn.Conv1d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.stride, c.padding) for c in convs] == [
        (1 if i == 0 else 80, 80, (3,), (2,), (1,)) for i in range(5)
    ]
    assert tuple(model.classifier_weight().shape) == (10, 160)
    x = torch.randn(6, 1, 40, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        logits, feats = model.forward_features(x)
        h = x
        for name, conv in zip(pre, convs, strict=True):
            z = F.conv1d(h, conv.weight, conv.bias, stride=2, padding=1)
            torch.testing.assert_close(feats[name], z)
            h = torch.relu(z)
        torch.testing.assert_close(feats["block5"], h)
        manual = h.flatten(1) @ model.classifier_weight().T + model.classifier_bias()
        torch.testing.assert_close(logits, manual, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(model(x), logits)
    # the probe point does not change the weights: same seed, same state_dict as "post"
    post = build_model(**{**model.spec, "probe_point": "post"})
    assert post.probe_layers == ["input", *[f"block{i}" for i in range(1, 6)], "logits"]
    sa, sb = model.state_dict(), post.state_dict()
    assert list(sa) == list(sb) and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert build_model(**model.spec).probe_layers == model.probe_layers  # spec rebuilds it


@pytest.mark.parametrize("arch", ["mlp", "conv", "conv1d"])
def test_pre_activation_layers_are_the_block_outputs_before_the_activation(arch):
    kwargs, input_shape, expected = CASES[arch]
    for batch_norm in (True, False):
        model = build_model(
            arch,
            input_shape,
            N_CLASSES,
            activation="tanh",
            batch_norm=batch_norm,
            probe_point="pre",
            seed=0,
            **kwargs,
        ).eval()
        assert any(_is_batchnorm(m) for m in model.modules()) == batch_norm
        blocks = [n for n in expected if n not in ("input", "logits")]
        assert model.probe_layers == [
            "input",
            *[f"{b}_pre" for b in blocks],
            model.penultimate_layer,
            "logits",
        ]
        x, y = _batch(input_shape, 5)
        with torch.no_grad():
            _, pre = model.forward_features(x)
            _, post = (
                build_model(**{**model.spec, "probe_point": "post"}).eval().forward_features(x)
            )
        for b in blocks:  # pre-activation then tanh gives the post-activation layer
            assert pre[f"{b}_pre"].shape[1:] == expected[b]
            torch.testing.assert_close(torch.tanh(pre[f"{b}_pre"]), post[b])
    # gradients flow through a pre-activation layer (SVSL may use it)
    model.train()
    _, feats = model.forward_features(x, [f"{blocks[0]}_pre"])
    feats[f"{blocks[0]}_pre"].pow(2).mean().backward()
    assert next(model.parameters()).grad is not None


def test_conv_stride_list_and_kernel_size():
    model = build_model(
        "conv", (1, 16, 16), N_CLASSES, depth=2, width=4, stride=[2, 1], kernel_size=5, seed=0
    )
    # stem 16 -> 4; block1 k5 p2 s2: (4 + 4 - 5)//2 + 1 = 2; block2 s1: 2
    assert model.probe_shapes() == {
        "input": (1, 16, 16),
        "stem": (4, 4, 4),
        "block1": (4, 2, 2),
        "block2": (4, 2, 2),
        "logits": (3,),
    }
    assert model.spec["stride"] == [2, 1] and model.spec["kernel_size"] == 5
    c1 = build_model(
        "conv1d", (40,), N_CLASSES, depth=4, width=4, kernel_size=5, stride=[1, 2, 1, 2]
    )
    assert [c1.probe_shapes()[f"block{i}"][1] for i in range(1, 5)] == [40, 20, 20, 10]
    default = build_model("conv1d", (40,), N_CLASSES, depth=5, width=4)
    assert default.spec["stride"] == [2, 2, 2, 1, 1] and default.spec["kernel_size"] == 3


def test_layer_names_rule_is_the_models_and_settings_errors_name_the_problem():
    from mfoml.nets.layernames import probe_layer_names

    for arch, (kwargs, shape, expected) in CASES.items():
        assert probe_layer_names(arch, kwargs.get("depth")) == list(expected)
        if arch != "resnet18":
            model = build_model(arch, shape, N_CLASSES, probe_point="pre", **kwargs)
            assert model.probe_layers == probe_layer_names(arch, kwargs.get("depth"), "pre")
    assert probe_layer_names("conv", 0, "pre") == ["input", "stem_pre", "stem", "logits"]
    assert probe_layer_names("mlp") == ["input", "block1", "block2", "block3", "block4", "logits"]
    # text encoders: the from-scratch transformer's default depth is 2; hf needs its depth
    enc = ["input", "embeddings", "block1", "block2", "pooled", "logits"]
    assert probe_layer_names("transformer") == enc
    assert probe_layer_names("hf", 1) == ["input", "embeddings", "layer1", "pooled", "logits"]
    for bad in (("hf", None, "post"), ("transformer", 1, "pre")):
        with pytest.raises(ValueError):
            probe_layer_names(*bad)
    with pytest.raises(ValueError, match="stride/kernel_size do not apply to arch 'mlp'"):
        build_model("mlp", (4,), 2, stride=2)
    with pytest.raises(ValueError, match="resnet18"):
        build_model("resnet18", (3, 8, 8), 2, probe_point="pre")
    with pytest.raises(ValueError, match="resnet18"):
        build_model("resnet18", (3, 8, 8), 2, batch_norm=False)
    with pytest.raises(ValueError, match="stride: need one integer >= 1 or 3"):
        build_model("conv1d", (40,), 2, stride=[2, 2])
    with pytest.raises(ValueError, match="probe_point"):
        build_model("conv1d", (40,), 2, probe_point="mid")
    with pytest.raises(ValueError, match="probe_point 'pre' does not apply"):
        probe_layer_names("resnet18", None, "pre")
