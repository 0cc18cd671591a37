"""The whole workflow on networks from outside the closed list (issue 20, section 3).

One real Snakemake run on a 200-sample digits subset (2 folds, fold 0 trained): the user's own
``nn.Module`` from a file (``arch: module``, 2 epochs) and a saved torchvision ``resnet18``
state_dict analysed without training (``arch: torchvision``, ``epochs: 0``). ``layers.csv``
holds the user's layer names with finite alpha and NCC values; the analysis ran on the saved
weights (checkpoint 0 holds them); editing the user's model file reruns its training (and only
that run's), touching it or editing a comment does not.
"""

from __future__ import annotations

import os
import textwrap

import numpy as np
import pandas as pd
import pytest
import torch
import torchvision
import yaml
from workflow_utils import copy_workflow, dry_run_jobs, run_snakemake

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

CONFIG = {
    "name": "own-tiny",
    "device": "cpu",
    "data": {"variants": {"digits-small": {"source": "digits", "per_class_cap": 20, "seed": 0}}},
    "folds": {"n_splits": 2, "seed": 0},
    "models": {
        "tiny-net": {
            "arch": "module",
            "factory": "mymodels/tiny_net.py:build",
            "kwargs": {"width": 16},
            "layers": ["body", "hidden"],
        },
        "tv-resnet18": {
            "arch": "torchvision",
            "name": "resnet18",
            "weights": "resnet18_digits.pt",
            "layers": ["layer1", "layer2", "layer4"],
        },
    },
    "train": {"optimizer": "adam", "lr": 0.01, "batch_size": 32, "epochs": 2, "checkpoints": [2]},
    "sweeps": [
        {"name": "own", "datasets": ["digits-small"], "models": ["tiny-net"], "folds": [0]},
        {
            "name": "pretrained",
            "datasets": ["digits-small"],
            "models": ["tv-resnet18"],
            "folds": [0],
            "train": {"epochs": 0, "checkpoints": [0]},
        },
    ],
    "activations": {"splits": ["train", "test"], "max_features": 512},
    "probe": {"n_trees": 1, "max_depth": 4},
    "ncc": {"test_split": "test"},
    "figures": {"format": "png", "dpi": 40},
    "tabular": {"enabled": False},
}
OWN_RUN = "digits-small/tiny-net/relu/ce/noise0/fold0"
TV_RUN = "digits-small/tv-resnet18/relu/ce/noise0/fold0"


@pytest.fixture(scope="module")
def own_run(tmp_path_factory):
    wd = copy_workflow(tmp_path_factory.mktemp("own") / "wd")
    (wd / "mymodels").mkdir()
    (wd / "mymodels" / "tiny_net.py").write_text(USER_MODEL)
    torch.manual_seed(0)
    net = torchvision.models.resnet18(num_classes=10)  # digits has 10 classes: head kept
    torch.save(net.state_dict(), wd / "resnet18_digits.pt")
    (wd / "own.yaml").write_text(yaml.safe_dump(CONFIG, sort_keys=False))
    run_snakemake(wd, "--cores", "2", configfile=wd / "own.yaml", check=True, timeout=1500)
    return wd


@pytest.mark.slow
def test_user_layers_reach_the_layers_table(own_run):
    df = pd.read_csv(own_run / "results" / "tables" / "layers.csv")
    own = df[df["run"] == OWN_RUN]
    assert list(own.sort_values("layer_index")["layer"]) == [
        "input",
        "body",
        "hidden",
        "pooled",
        "logits",
    ]
    tv = df[df["run"] == TV_RUN]
    assert set(tv["epoch"]) == {0}  # analysed without training
    assert list(tv.sort_values("layer_index")["layer"]) == [
        "input",
        "layer1",
        "layer2",
        "layer4",
        "pooled",
        "logits",
    ]
    for part in (own, tv):
        inner = part[part["layer"].isin(["body", "hidden", "layer1", "layer2", "layer4", "pooled"])]
        assert np.isfinite(inner["alpha"]).all()
        assert inner["alpha_status"].eq("ok").all()
        for col in ("ncc_mismatch_train", "ncc_accuracy_test", "nc1"):
            assert np.isfinite(inner[col]).all(), col
        pen = part["layer"] == "pooled"
        assert np.isfinite(part.loc[pen, ["nc3", "nc4"]].to_numpy()).all()


@pytest.mark.slow
def test_zero_epochs_analyses_the_saved_weights(own_run):
    from mfoml.nets.checkpoints import list_checkpoints, load_checkpoint

    ckpts = list_checkpoints(own_run / "results" / "runs" / TV_RUN / "checkpoints")
    assert list(ckpts) == [0]
    model, _ = load_checkpoint(ckpts[0])
    saved = torch.load(own_run / "resnet18_digits.pt", weights_only=True)
    state = model.net.state_dict()
    assert set(state) == set(saved)
    for key, value in saved.items():
        assert torch.equal(state[key], value), key
    metrics = pd.read_csv(own_run / "results" / "runs" / TV_RUN / "checkpoints" / "metrics.csv")
    assert metrics["epoch"].tolist() == [0]
    assert metrics[["train_acc", "heldout_acc", "train_eval_acc"]].notna().all().all()
    log = (own_run / "logs" / "runs" / TV_RUN / "train.log").read_text()
    assert "resnet18_digits.pt" in log and "1-channel input repeated" in log


@pytest.mark.slow
def test_editing_the_user_model_reruns_its_training_touching_does_not(own_run):
    model_file = own_run / "mymodels" / "tiny_net.py"
    # a comment (a new mtime as well as a touch would give) changes nothing
    model_file.write_text("# a comment changes nothing\n" + USER_MODEL)
    st = model_file.stat()
    os.utime(model_file, (st.st_atime + 60, st.st_mtime + 60))
    assert dry_run_jobs(own_run, configfile=own_run / "own.yaml") == []
    model_file.write_text(USER_MODEL.replace("width=16", "width=12"))
    jobs = dry_run_jobs(own_run, configfile=own_run / "own.yaml")
    trained = [w["run"] for rule, w in jobs if rule == "train"]
    assert trained == [OWN_RUN]
    assert {"activations", "probe", "ncc"} <= {rule for rule, _ in jobs}
