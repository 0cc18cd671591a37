"""The text track in the pipeline: configuration checks, and the tiny text configuration end to
end (data with tokenizer -> folds -> MLM pretraining stage -> training of an encoder from
scratch, and of a frozen pretrained encoder with SVSL -> activations -> probe and NCC -> tables
and figures)."""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from mfoml.config import ConfigError, run_table, validate_config
from mfoml.config.text import TEXT_SOURCES
from mfoml.data.textsets import TEXT_DATASETS
from mfoml.io import read_json
from workflow_utils import REPO, copy_workflow, run_snakemake

TINY = Path("config") / "tests" / "text_tiny.yaml"
POS = "order-tiny/enc-pos/gelu/ce/noise0/fold0"
MLM = "order-tiny/enc-mlm/gelu/svsl/noise0/fold0"


def tiny_config() -> dict:
    return yaml.safe_load((REPO / TINY).read_text())


def errors_of(cfg: dict) -> str:
    with pytest.raises(ConfigError) as info:
        validate_config(cfg)
    return str(info.value)


# ------------------------------------------------------------------------------------------
# configuration (fast)
# ------------------------------------------------------------------------------------------


def test_text_source_names_agree_with_the_data_layer():
    assert set(TEXT_SOURCES) == {*TEXT_DATASETS, "textfile"}  # + the file source


def test_tiny_text_config_expands_with_the_pretrained_stage():
    cfg = validate_config(tiny_config())
    runs = {r.run_id: r for r in run_table(cfg)}
    assert set(runs) == {POS, MLM}
    assert runs[MLM].pretrained == {"stage": "mlm-tiny", "epoch": None, "freeze": True}
    assert runs[POS].pretrained is None
    assert cfg["pretrain"]["mlm-tiny"]["mask_prob"] == 0.15  # schema defaults filled


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda c: c["sweeps"][0].update(datasets=["mnist1d"]), "needs a text data set"),
        (
            lambda c: (
                c["models"].update(mlp={"arch": "mlp", "depth": 1, "width": 4})
                or c["sweeps"][0]["models"].append("mlp")
            ),
            "cannot read the text data set",
        ),
        (lambda c: c["models"]["enc-pos"].update(width=3), "do not apply to arch 'transformer'"),
        (lambda c: c["models"]["enc-pos"].update(stem="auto"), "do not apply to arch"),
        (lambda c: c["models"].update(bert={"arch": "hf"}), "models.bert.pretrained"),
        (
            lambda c: c["sweeps"][1]["pretrained"].update(stage="nope"),
            "not defined under 'pretrain'",
        ),
        (lambda c: c["sweeps"][1]["pretrained"].update(epoch=7), "is not a checkpoint of stage"),
        (
            lambda c: (
                c["models"].update(wide={**c["models"]["enc-mlm"], "d_model": 32})
                or c["sweeps"][1].update(models=["wide"])
            ),
            "differs from the architecture",
        ),
        (lambda c: c["sweeps"][1].update(activations=["relu"]), "was pretrained with 'gelu'"),
        (
            lambda c: (
                c["data"]["variants"].update(
                    other={"source": "textsource", "text": {"tokenizer_from": "textorder"}}
                )
                or c["sweeps"][1].update(datasets=["other"])
            ),
            "must share the tokenizer of stage",
        ),
        (
            lambda c: c["data"]["variants"].update(
                img={"source": "mnist1d", "text": {"vocab_size": 100}}
            ),
            "is not a text data set",
        ),
        (
            lambda c: c["sweeps"][0].update(transfer={"source_run": MLM, "freeze": 1}),
            "not for text encoders",
        ),
        (lambda c: c["sweeps"][0].update(datasets=["wikitext2"]), "corpus without labels"),
        (  # an encoder's layers are known before any job (mfoml.nets.layernames)
            lambda c: c["probe"].update(layers=["embeddings", "layer1"]),
            "config key 'probe.layers': ['layer1'] not layers of model 'enc-pos'",
        ),
    ],
)
def test_text_configuration_errors_name_their_key(edit, message):
    cfg = copy.deepcopy(tiny_config())
    edit(cfg)
    assert message in errors_of(cfg)


def test_only_text_jobs_depend_on_the_text_modules():
    sys.path.insert(0, str(REPO / "workflow" / "rules"))
    from codedeps import CodeDeps

    deps = CodeDeps(REPO / "workflow" / "scripts")
    text = ("mfoml.nets.transformer", "mfoml.nets.hf")
    for script in ("train.py", "activations.py"):
        # builders are imported by name (mfoml.nets.registry): common.smk's run_code adds the
        # run's own builder module (extra) and skips the others
        # (mfoml.nets.pretrain, which imports the transformer, counts for pretrained runs only)
        skip = ("mfoml.nets.pretrain",)
        assert not set(text) & set(deps.script_modules(script, skip))
        with_text = deps.script_modules(script, skip, extra=("mfoml.nets.transformer",))
        assert "mfoml.nets.transformer" in with_text and "mfoml.nets.hf" not in with_text
    assert "mfoml.data.text" in deps.script_modules("data.py")
    text_sources = ("mfoml.data.textsets", "mfoml.data.textfile")  # common.smk TEXT_DATA_MODULES
    assert "mfoml.data.text" not in deps.script_modules("data.py", text_sources)


# ------------------------------------------------------------------------------------------
# the tiny text configuration end to end
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_text(tmp_path_factory: pytest.TempPathFactory) -> Path:
    wd = copy_workflow(tmp_path_factory.mktemp("text-workflow") / "run")
    run_snakemake(wd, "--cores", "2", configfile=wd / TINY, check=True)
    return wd


def _run_dir(wd: Path, run: str) -> Path:
    return wd / "results" / "runs" / run


@pytest.mark.slow
def test_tiny_text_workflow_tables_layers_in_order(tiny_text):
    layers = pd.read_csv(tiny_text / "results" / "tables" / "layers.csv")
    assert set(layers["run"]) == {POS, MLM}
    order = ["input", "embeddings", "block1", "pooled", "logits"]
    for _, part in layers.groupby(["run", "epoch"]):
        part = part.sort_values("layer_index")
        assert part["layer"].tolist() == order
        assert part["layer_index"].tolist() == list(range(len(order)))
        pooled = part.set_index("layer").loc["pooled"]
        assert bool(pooled["is_penultimate"])
        assert np.isfinite(
            pooled[["ncc_mismatch_train", "ncc_accuracy_test", "nc1"]].astype(float)
        ).all()
    for name in ("layers_summary", "epochs", "checkpoints", "correlation"):
        assert (tiny_text / "results" / "tables" / f"{name}.csv").is_file()
    assert (tiny_text / "results" / "figures" / "ncc_layers.png").stat().st_size > 0


@pytest.mark.slow
def test_tiny_text_workflow_data_and_throughput(tiny_text):
    meta = read_json(tiny_text / "resources" / "data" / "order-tiny" / "meta.json")
    assert meta["kind"] == "text" and meta["tokenizer"]["vocab_size"] <= 600
    assert (tiny_text / "resources" / "data" / "order-tiny" / "tokenizer.json").is_file()
    for run in (POS, MLM):
        info = read_json(_run_dir(tiny_text, run) / "checkpoints" / "run.json")
        assert info["train_tokens_per_second"] > 0
        assert info["probe_layers"] == ["input", "embeddings", "block1", "pooled", "logits"]
    # the word-order task's folds keep each sentence and its reversed copy together
    folds = read_json(tiny_text / "results" / "folds" / "order-tiny.json")
    pairs = np.load(tiny_text / "resources" / "data" / "order-tiny" / "pairs_train.npy")
    fold = np.asarray(folds["fold"])
    assert folds["grouped"] is True and np.array_equal(fold, fold[pairs])
    metrics = pd.read_csv(_run_dir(tiny_text, MLM) / "checkpoints" / "metrics.csv")
    assert "train_extra_loss" in metrics and (metrics["train_extra_loss"] > 0).all()
    train = pd.read_csv(_run_dir(tiny_text, POS) / "checkpoints" / "metrics.csv")
    # warm-up over 10 % of the steps, then linear decay to 0 (rate at the start of each epoch)
    n = len(np.load(_run_dir(tiny_text, POS) / "checkpoints" / "split.npz")["train_idx"])
    per_epoch = -(-n // 32) - (1 if n % 32 == 1 else 0)
    total = 2 * per_epoch
    warm = round(0.1 * total)
    assert train["lr"].tolist() == pytest.approx(
        [0.003 / warm, 0.003 * (total - per_epoch) / (total - warm)]
    )


@pytest.mark.slow
def test_tiny_text_workflow_pretrained_stage_and_frozen_encoder(tiny_text):
    stage = tiny_text / "results" / "pretrain" / "mlm-tiny" / "checkpoints"
    assert sorted(p.name for p in stage.glob("epoch_*.pt")) == ["epoch_0002.pt"]
    assert not stage.with_name(".checkpoints.partial").exists()  # built there, renamed in place
    mlm = pd.read_csv(stage / "metrics.csv")
    assert len(mlm) == 2 and np.isfinite(mlm["test_mlm_loss"]).all()
    info = read_json(stage / "stage.json")
    meta = read_json(tiny_text / "resources" / "data" / "order-tiny" / "meta.json")
    assert info["tokenizer_sha256"] == meta["tokenizer"]["sha256"]
    assert info["train_tokens_per_second"] > 0
    pre = torch.load(stage / "epoch_0002.pt", weights_only=True)["state_dict"]
    run = torch.load(_run_dir(tiny_text, MLM) / "checkpoints" / "epoch_0002.pt", weights_only=True)[
        "state_dict"
    ]
    encoder = [k for k in pre if k.split(".")[0] in ("token", "position", "blocks", "final_norm")]
    assert encoder and all(torch.equal(pre[k], run[k]) for k in encoder)  # frozen, unchanged
    assert not torch.equal(pre["classifier.weight"], run["classifier.weight"])
    frozen = read_json(_run_dir(tiny_text, MLM) / "checkpoints" / "run.json")["frozen_stages"]
    assert "token.weight" in frozen and not any(n.startswith("classifier") for n in frozen)
