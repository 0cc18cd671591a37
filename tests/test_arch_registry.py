"""The one registry of architectures (mfoml.nets.registry) against everything that reads it.

The schema's ``arch`` enum and its model keys, ``build_model``'s builders and their signatures,
the torch-free probe-layer names (``layernames``, the pre-job layer checks) and the layers the
built models really have, and the configuration layer's text architectures must agree: adding
an architecture is one registry entry plus its module, and these tests fail when one of the
places that read the registry was left behind.
"""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

import pytest
import yaml
from mfoml import config as C
from mfoml.config.text import TEXT_ARCHS
from mfoml.nets import architectures
from mfoml.nets.registry import ARCHS, arch_info, arch_names, spec_layer_names, text_arch_names

REPO = Path(__file__).resolve().parents[1]
SCHEMA = yaml.safe_load((REPO / "config" / "config.schema.yaml").read_text())
MODEL_SCHEMA = SCHEMA["properties"]["models"]["additionalProperties"]


def test_schema_arch_enum_is_the_registry():
    assert MODEL_SCHEMA["properties"]["arch"]["enum"] == list(arch_names())
    assert architectures.ARCHITECTURES == arch_names()


def test_every_model_key_of_the_schema_belongs_to_an_architecture():
    schema_keys = set(MODEL_SCHEMA["properties"]) - {"arch"}
    registry_keys = set().union(*(a.keys for a in ARCHS.values()))
    assert registry_keys == schema_keys


@pytest.mark.parametrize("arch", list(ARCHS))
def test_builder_takes_every_key_of_its_architecture(arch):
    info = ARCHS[arch]
    module, function = info.builder.split(":")
    builder = getattr(importlib.import_module(module), function)
    params = inspect.signature(builder).parameters
    assert set(info.keys) <= set(params), sorted(set(info.keys) - set(params))
    assert ("activation" in params) == info.uses_activation


def test_text_architectures_agree():
    assert tuple(TEXT_ARCHS) == text_arch_names() == architectures.TEXT_ARCHITECTURES
    assert text_arch_names() == ("transformer", "hf")


_SPECS = [
    ({"arch": "mlp", "depth": 3, "width": 8}, (1, 8, 8), {}),
    ({"arch": "mlp", "depth": 2, "width": 8, "probe_point": "pre"}, (10,), {}),
    ({"arch": "conv", "depth": 1, "width": 4}, (1, 8, 8), {}),
    ({"arch": "conv1d", "depth": 2, "width": 4}, (1, 40), {}),
    ({"arch": "resnet18"}, (3, 16, 16), {}),
    ({"arch": "transformer", "depth": 1, "d_model": 8, "heads": 2}, (12,), {"vocab_size": 30}),
]


@pytest.mark.parametrize(
    ("spec", "shape", "extra"),
    _SPECS,
    ids=[f"{s['arch']}-{i}" for i, (s, _, _) in enumerate(_SPECS)],
)
def test_registry_layer_names_are_the_built_models_layers(spec, shape, extra):
    names = spec_layer_names(spec)
    kwargs = {k: v for k, v in spec.items() if k != "arch"}
    model = architectures.build_model(spec["arch"], shape, 3, seed=0, **kwargs, **extra)
    assert names == model.probe_layers
    assert model.penultimate_layer in names


def test_outside_networks_have_their_layers_from_the_model():
    assert spec_layer_names({"arch": "torchvision", "name": "resnet18"}) is None
    assert spec_layer_names({"arch": "module", "factory": "x.py:f", "layers": ["a"]}) is None
    assert spec_layer_names({"arch": "hf", "pretrained": "no-such-local-dir"}) is None


def test_unknown_architecture_names_the_known_ones():
    with pytest.raises(ValueError, match="unknown architecture 'vgg'; known: mlp, conv"):
        arch_info("vgg")
    with pytest.raises(ValueError, match="unknown architecture"):
        architectures.build_model("vgg", (3, 8, 8), 2)


def test_pre_job_layer_check_reads_the_registry():
    """probe.layers is checked against the registry's names of each model (built-in and
    torchvision alike) before any job."""
    cfg = {
        "models": {
            "m": {"arch": "mlp", "depth": 2, "width": 8},
            "tv": {"arch": "torchvision", "name": "resnet18", "layers": ["layer1", "layer2"]},
        },
        "sweeps": [{"name": "s", "datasets": ["digits"], "models": ["m", "tv"], "folds": [0]}],
        "probe": {"layers": ["block1", "layer1"]},
        "tabular": {"enabled": False},
    }
    with pytest.raises(C.ConfigError) as err:
        C.validate_config(cfg)
    text = str(err.value)
    assert "config key 'probe.layers': ['layer1'] not layers of model 'm'" in text
    assert "its layers are input, block1, block2, logits" in text
    assert (
        "config key 'probe.layers': ['block1'] not layers of model 'tv' (used by sweeps[0]); "
        "its layers are input, layer1, layer2, pooled, logits"
    ) in text
