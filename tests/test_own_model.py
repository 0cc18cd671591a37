"""Networks from outside the closed list: ``arch: torchvision``, ``arch: module``, ``epochs: 0``.

Real torchvision models (random init, tiny inputs), real files (state_dicts in .pt and
.safetensors, a user's model file) and the configuration checks that run before any job. The
whole-workflow run of these is tests/test_own_model_data_workflow.py.
"""

from __future__ import annotations

import logging
import textwrap

import pytest
import torch
import torchvision
from mfoml import config as C
from mfoml.nets.architectures import build_model
from mfoml.nets.checkpoints import load_checkpoint
from mfoml.nets.tvmodels import cached_weights_file
from safetensors.torch import save_file

TV = {"resnet18": ["layer1", "layer2", "layer3", "layer4"], "mobilenet_v3_small": None}


@pytest.mark.parametrize("name", list(TV))
def test_torchvision_random_init_at_32x32(name):
    model = build_model("torchvision", (3, 32, 32), 10, name=name, seed=0, activation="relu")
    layers = model.probe_layers
    assert layers[0] == "input" and layers[-2:] == ["pooled", "logits"]
    if TV[name] is not None:
        assert layers[1:-2] == TV[name]
    else:  # every child of `features`
        assert layers[1:-2] == [f"features.{i}" for i in range(13)]
    model.eval()
    x = torch.randn(4, 3, 32, 32)
    logits, feats = model.forward_features(x)
    assert logits.shape == (4, 10)
    weight = model.classifier_weight()
    assert weight.shape[0] == 10 and feats["pooled"].shape == (4, weight.shape[1])
    # the penultimate layer feeds the head: logits = pooled @ W.T + b
    torch.testing.assert_close(feats["pooled"] @ weight.T + model.classifier_bias(), logits)
    assert torch.equal(feats["logits"], logits) and torch.equal(model(x), logits)
    rebuilt = build_model(**model.spec)  # what load_checkpoint does
    rebuilt.load_state_dict(model.state_dict())
    rebuilt.eval()
    torch.testing.assert_close(rebuilt(x), logits)


def _tiny_resnet_state(n_classes):
    torch.manual_seed(1)
    net = torchvision.models.resnet18(num_classes=n_classes)
    net.eval()
    return net


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_torchvision_from_a_saved_state_dict(tmp_path, suffix):
    net = _tiny_resnet_state(5)
    path = tmp_path / f"weights{suffix}"
    if suffix == ".pt":
        torch.save(net.state_dict(), path)
    else:
        save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    model = build_model("torchvision", (3, 32, 32), 5, name="resnet18", weights=str(path))
    model.eval()
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), net(x))
    assert "weights" not in model.spec  # the checkpoint holds them


def test_replace_head_when_the_class_count_differs(tmp_path, caplog):
    net = _tiny_resnet_state(7)
    path = tmp_path / "w.pth"
    torch.save(net.state_dict(), path)
    with caplog.at_level(logging.INFO, logger="mfoml.nets.tvmodels"):
        model = build_model("torchvision", (3, 32, 32), 3, name="resnet18", weights=str(path))
    assert "replaced the head 'fc' of resnet18 (7 -> 3 classes" in caplog.text
    assert model.classifier_weight().shape == (3, 512)
    state = model.net.state_dict()
    assert torch.equal(state["layer4.1.conv2.weight"], net.state_dict()["layer4.1.conv2.weight"])
    with pytest.raises(ValueError, match="has 7 outputs but the data set has 3 classes; set "):
        build_model(
            "torchvision", (3, 32, 32), 3, name="resnet18", weights=str(path), replace_head=False
        )


def test_a_pipeline_checkpoint_is_a_weights_file(tmp_path):
    model = build_model("torchvision", (3, 16, 16), 4, name="resnet18", seed=3)
    ckpt = {"model_spec": model.spec, "state_dict": model.state_dict(), "epoch": 0}
    ckpt |= {"train_config": {}, "metrics": []}
    torch.save(ckpt, tmp_path / "epoch_0000.pt")
    again = build_model(
        "torchvision", (3, 16, 16), 4, name="resnet18", weights=str(tmp_path / "epoch_0000.pt")
    )
    loaded, _ = load_checkpoint(tmp_path / "epoch_0000.pt")
    for a, b in zip(again.state_dict().values(), loaded.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_one_channel_data_is_repeated_other_mismatches_are_errors():
    model = build_model("torchvision", (1, 16, 16), 2, name="resnet18", seed=0)
    assert model.spec["repeat_channels"] == 3
    model.eval()
    x = torch.rand(2, 1, 16, 16)
    torch.testing.assert_close(model(x), model(x.expand(-1, 3, -1, -1)))
    with pytest.raises(ValueError, match="takes 3 input channels; the data set has 2"):
        build_model("torchvision", (2, 16, 16), 2, name="resnet18")
    with pytest.raises(ValueError, match=r"takes images \(C, H, W\); the data set's input shape"):
        build_model("torchvision", (40,), 2, name="resnet18")


def test_weights_name_not_in_the_torch_cache_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(FileNotFoundError) as err:
        cached_weights_file("resnet18", "IMAGENET1K_V1")
    assert str(tmp_path / "torch" / "hub" / "checkpoints" / "resnet18-f37072fd.pth") in str(
        err.value
    )
    assert "never downloads" in str(err.value)
    with pytest.raises(ValueError, match="not weights of torchvision model 'resnet18'; it has"):
        cached_weights_file("resnet18", "IMAGENET9K")
    cfg = _config({"tv": {"arch": "torchvision", "name": "resnet18", "weights": "IMAGENET1K_V1"}})
    with pytest.raises(
        C.ConfigError, match="config key 'models.tv.weights': weights 'IMAGENET1K_V1'"
    ):
        C.validate_config(cfg)
    # a cached file is found (an empty stand-in: only its presence is checked before the job)
    cache = tmp_path / "torch" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    (cache / "resnet18-f37072fd.pth").write_bytes(b"")
    assert cached_weights_file("resnet18", "IMAGENET1K_V1") == cache / "resnet18-f37072fd.pth"


def _config(models, sweep_models=None, **sweep):
    return {
        "models": models,
        "sweeps": [
            {
                "name": "s",
                "datasets": ["digits"],
                "models": sweep_models or list(models),
                "folds": [0],
                **sweep,
            }
        ],
        "tabular": {"enabled": False},
    }


@pytest.mark.parametrize(
    ("models", "expected"),
    [
        (
            {"tv": {"arch": "torchvision", "name": "resnet18", "layers": ["layer1", "layr2"]}},
            "config key 'models.tv.layers': 'layr2' is not a module or graph node of torchvision "
            "model 'resnet18'; close matches: layer2",
        ),
        (
            {"tv": {"arch": "torchvision", "name": "resnet81"}},
            "config key 'models.tv.name': 'resnet81' is not a torchvision classification model",
        ),
        (
            {"tv": {"arch": "torchvision"}},
            "config key 'models.tv.name': arch torchvision needs a model name",
        ),
        (
            {"tv": {"arch": "torchvision", "name": "resnet18", "weights": "missing.safetensors"}},
            "config key 'models.tv.weights': file missing.safetensors not found",
        ),
        (
            {"tv": {"arch": "torchvision", "name": "resnet18", "depth": 3}},
            "config key 'models.tv.depth': does not apply to arch torchvision",
        ),
        (
            {"m": {"arch": "mlp", "weights": "w.pt"}},
            "config key 'models.m.weights': applies to arch torchvision and module only",
        ),
        (
            {"u": {"arch": "module", "factory": "nowhere/net.py:build", "layers": ["a"]}},
            "config key 'models.u.factory': file nowhere/net.py not found",
        ),
        (
            {"u": {"arch": "module", "factory": "mfoml.no_such_module:build", "layers": ["a"]}},
            "config key 'models.u.factory': module 'mfoml.no_such_module' cannot be found",
        ),
        (
            {"u": {"arch": "module", "factory": "x.py"}},
            "config key 'models.u.factory'",
        ),
    ],
)
def test_outside_network_errors_before_any_job_name_the_key(models, expected):
    with pytest.raises(C.ConfigError) as err:
        C.validate_config(_config(models))
    assert expected in str(err.value)


def test_torchvision_on_signal_data_is_an_error_before_any_job():
    cfg = _config({"tv": {"arch": "torchvision", "name": "resnet18"}})
    cfg["sweeps"][0]["datasets"] = ["mnist1d"]
    with pytest.raises(C.ConfigError, match="torchvision model 'tv' takes images"):
        C.validate_config(cfg)


def test_zero_epochs_needs_weights(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    models = {"tv": {"arch": "torchvision", "name": "resnet18"}}
    cfg = _config(models, train={"epochs": 0, "checkpoints": [0]})
    with pytest.raises(C.ConfigError) as err:
        C.validate_config(cfg)
    assert "config key 'sweeps[0].train.epochs': 0 epochs analyses a model's given weights, " in (
        str(err.value)
    )
    assert "model 'tv' (sweeps[0]) has no 'weights'" in str(err.value)
    torch.save(_tiny_resnet_state(10).state_dict(), tmp_path / "w.pt")
    models["tv"]["weights"] = "w.pt"
    cfg = C.validate_config(_config(models, train={"epochs": 0, "checkpoints": [0]}))
    (run,) = C.run_table(cfg)
    assert run.train["epochs"] == 0 and run.train["checkpoints"] == [0]


USER_MODEL = textwrap.dedent(
    """
    import math

    from torch import nn


    class TinyNet(nn.Module):
        def __init__(self, d_in, width, n_classes):
            super().__init__()
            self.body = nn.Sequential(nn.Linear(d_in, width), nn.ReLU())
            self.hidden = nn.Sequential(nn.Linear(width, width), nn.ReLU())
            self.head = nn.Linear(width, n_classes)

        def forward(self, x):
            return self.head(self.hidden(self.body(x.flatten(1))))


    def build(input_shape, n_classes, width=16):
        return TinyNet(math.prod(input_shape), width, n_classes)
    """
)


def test_module_from_a_user_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "nets").mkdir()
    (tmp_path / "nets" / "tiny.py").write_text(USER_MODEL)
    spec = {"factory": "nets/tiny.py:build", "kwargs": {"width": 6}, "layers": ["body", "hidden"]}
    model = build_model("module", (1, 8, 8), 4, seed=0, activation="relu", **spec)
    assert model.probe_layers == ["input", "body", "hidden", "pooled", "logits"]
    model.eval()
    x = torch.rand(5, 1, 8, 8)
    logits, feats = model.forward_features(x)
    assert feats["body"].shape == (5, 6) and feats["hidden"].shape == (5, 6)
    torch.testing.assert_close(feats["pooled"], feats["hidden"])
    assert model.classifier_weight().shape == (4, 6)
    twin = build_model(**model.spec)
    twin.load_state_dict(model.state_dict())
    twin.eval()
    torch.testing.assert_close(twin(x), logits)
    with pytest.raises(ValueError, match=r"'models.\*.layers': 'hiden' is not a module .*close "):
        build_model("module", (1, 8, 8), 4, **{**spec, "layers": ["hiden"]})
    with pytest.raises(ValueError, match="nets/tiny.py has no function 'make'"):
        build_model("module", (1, 8, 8), 4, **{**spec, "factory": "nets/tiny.py:make"})
    # and the whole configuration validates (file and function found before any job)
    models = {"u": {"arch": "module", **spec}}
    assert C.validate_config(_config(models))["models"]["u"]["factory"] == "nets/tiny.py:build"
    bad = {"u": {"arch": "module", **spec, "factory": "nets/tiny.py:make"}}
    with pytest.raises(C.ConfigError, match="'models.u.factory': nets/tiny.py defines no 'make'"):
        C.validate_config(_config(bad))
