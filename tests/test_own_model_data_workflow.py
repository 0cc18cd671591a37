"""Issue 20, "Done when": the whole DAG on a user's own files and networks, in ONE Snakemake run
of the example config/experiments/own-model-data.yaml (docs/extending.md, recipes 1 and 2).

tools/own_example.py writes, from scikit-learn's digits: an ImageFolder of 32x32 PNGs (3
classes), a CSV table with a categorical column and empty cells, a JSON Lines text file whose
sentence pairs share a group id, an ``.npz`` of (N, 1, 8, 8) arrays, the user's model file (a
ConvNet, ``arch: module``) and a randomly initialized torchvision ``resnet18`` state_dict,
analysed at 32x32 without training (``epochs: 0``). Every set has a few hundred samples, so
alpha is defined on every layer.

Checked here: ``layers.csv`` holds the user's layer names with finite alpha and NCC values for
all four runs; the analysis-only run's checkpoint 0 holds the saved weights; the table reached
the mlp one-hot encoded and imputed inside the fold (input width 8 numeric + 3 categories);
the text pairs stay in one fold; editing the user's model file reruns its training (and only
that run's), touching it or editing a comment does not. (tests/test_own_model.py has the unit
tests of the torchvision and module builders: channel repetition, heads, layer names, errors.)
"""

from __future__ import annotations

import json
import os
import sys
import time

import numpy as np
import pandas as pd
import pytest
import torch
from workflow_utils import REPO, copy_workflow, dry_run_jobs, run_snakemake

sys.path.insert(0, str(REPO / "tools"))
from own_example import write_example  # noqa: E402

CONFIG = "config/experiments/own-model-data.yaml"
RUNS = {
    "own-images/resnet18/relu/ce/noise0/fold0": ["layer1", "layer2", "layer3", "layer4"],
    "own-arrays/my-convnet/relu/ce/noise0/fold0": ["conv1", "conv2", "hidden"],
    "own-table/mlp-small/relu/ce/noise0/fold0": ["block1", "block2"],
    "own-texts/enc-tiny/gelu/ce/noise0/fold0": ["embeddings", "block1"],
}
IMAGES_RUN = "own-images/resnet18/relu/ce/noise0/fold0"
MODULE_RUN = "own-arrays/my-convnet/relu/ce/noise0/fold0"
TABLE_RUN = "own-table/mlp-small/relu/ce/noise0/fold0"


@pytest.fixture(scope="module")
def own_data_run(tmp_path_factory):
    wd = copy_workflow(tmp_path_factory.mktemp("own-data") / "wd")
    write_example(wd / "resources" / "own-example")
    t0 = time.perf_counter()
    run_snakemake(wd, "--cores", "2", configfile=wd / CONFIG, check=True, timeout=1500)
    print(f"own-model-data: whole DAG in {time.perf_counter() - t0:.0f} s")  # noqa: T201
    return wd


@pytest.mark.slow
def test_user_layers_have_finite_alpha_and_ncc(own_data_run):
    df = pd.read_csv(own_data_run / "results" / "tables" / "layers.csv")
    assert set(df["run"]) == set(RUNS)
    for run, own_layers in RUNS.items():
        part = df[df["run"] == run].sort_values("layer_index")
        layers = list(part["layer"])
        assert layers[0] == "input" and layers[-1] == "logits"
        assert layers[1 : 1 + len(own_layers)] == own_layers, (run, layers)
        inner = part[part["layer"].isin(own_layers)]
        assert inner["alpha_status"].eq("ok").all(), (run, list(inner["alpha_status"]))
        assert np.isfinite(inner["alpha"]).all(), run
        for col in ("ncc_mismatch_train", "ncc_accuracy_test", "nc1"):
            assert np.isfinite(inner[col]).all(), (run, col)
    summary = pd.read_csv(own_data_run / "results" / "tables" / "layers_summary.csv")
    assert {"alpha_mean", "ncc_mismatch_train_mean"} <= set(summary.columns)


@pytest.mark.slow
def test_analysis_only_run_is_the_saved_weights(own_data_run):
    from mfoml.nets.checkpoints import list_checkpoints, load_checkpoint

    ckpt_dir = own_data_run / "results" / "runs" / IMAGES_RUN / "checkpoints"
    ckpts = list_checkpoints(ckpt_dir)
    assert list(ckpts) == [0]
    model, _ = load_checkpoint(ckpts[0])
    saved = torch.load(
        own_data_run / "resources" / "own-example" / "resnet18.pt", weights_only=True
    )
    state = model.net.state_dict()
    assert set(state) == set(saved)
    assert all(torch.equal(state[k], v) for k, v in saved.items())
    metrics = pd.read_csv(ckpt_dir / "metrics.csv")
    assert metrics["epoch"].tolist() == [0] and metrics["train_seconds"].eq(0).all()


@pytest.mark.slow
def test_table_reaches_the_mlp_encoded_inside_the_fold(own_data_run):
    run_dir = own_data_run / "results" / "runs" / TABLE_RUN
    info = json.loads((run_dir / "checkpoints" / "run.json").read_text())
    # 8 numeric columns, then the 3 categories of 'ink' one-hot (light, medium, heavy)
    assert info["input_shape"] == [11]
    frame = pd.read_csv(own_data_run / "resources" / "own-example" / "table.csv")
    assert frame["ink"].isna().any() and frame["row3"].isna().any()
    from mfoml.nets.dumps import open_activations

    dump = open_activations(run_dir / "activations" / "3" / "train")
    x = np.asarray(dump.layer("input"), dtype=np.float64)
    assert x.shape[1] == 11 and np.isfinite(x).all()
    onehot = x[:, 8:]
    assert set(np.unique(onehot)) <= {0.0, 1.0} and (onehot.sum(axis=1) == 1).all()


@pytest.mark.slow
def test_text_pairs_stay_in_one_fold(own_data_run):
    from mfoml.data.folds import load_folds

    groups = np.load(own_data_run / "resources" / "data" / "own-texts" / "groups_train.npy")
    assignment = load_folds(own_data_run / "results" / "folds" / "own-texts.json")
    folds = np.asarray(assignment["fold"])
    assert assignment["grouped"] and len(folds) == len(groups)
    for g in np.unique(groups):
        assert len(set(folds[groups == g])) == 1, g


@pytest.mark.slow
def test_editing_the_user_model_reruns_its_training_touching_does_not(own_data_run):
    # runs last in this module: it edits the model file of the shared run
    model_file = own_data_run / "resources" / "own-example" / "my_model.py"
    original = model_file.read_text()
    # a comment, with a new mtime as a touch would give, changes nothing
    model_file.write_text("# a comment changes nothing\n" + original)
    st = model_file.stat()
    os.utime(model_file, (st.st_atime + 60, st.st_mtime + 60))
    assert dry_run_jobs(own_data_run, configfile=own_data_run / CONFIG) == []
    model_file.write_text(original.replace("width=8", "width=6"))
    jobs = dry_run_jobs(own_data_run, configfile=own_data_run / CONFIG)
    trained = [w["run"] for rule, w in jobs if rule == "train"]
    assert trained == [MODULE_RUN]
    assert {"activations", "probe", "ncc"} <= {rule for rule, _ in jobs}
