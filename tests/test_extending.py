"""docs/extending.md, followed recipe by recipe: each test takes the code blocks of its recipe
from the page and does what the recipe says (issue 20, "Each recipe is exercised by a test that
follows it"). The whole DAG on the example of recipes 1 and 2 runs in
tests/test_own_model_data_workflow.py."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from mfoml import config as C
from mfoml import layer_measures
from mfoml.analysis import aggregate as agg
from mfoml.data.catalog import prepare_dataset
from mfoml.data.files import FILE_KEYS
from mfoml.data.store import load_dataset
from mfoml.nets import architectures
from mfoml.nets.registry import ARCHS, ArchInfo, spec_layer_names
from workflow_utils import REPO, copy_workflow, dry_run_jobs

sys.path.insert(0, str(REPO / "tools"))
from own_example import USER_MODEL, write_example  # noqa: E402

DOC = (REPO / "docs" / "extending.md").read_text()
_BLOCK = re.compile(r"^( *)```(\w+)\n(.*?)^\1```", re.MULTILINE | re.DOTALL)


def recipe(number: int) -> str:
    """The text of recipe ``number`` (its ``## <number>.`` section)."""
    sections = {s.split(".", 1)[0]: s for s in DOC.split("\n## ")[1:]}
    return sections[str(number)]


def blocks(number: int, lang: str) -> list[str]:
    """The ``lang`` code blocks of recipe ``number``, dedented, in page order."""
    return [textwrap.dedent(b) for _, kind, b in _BLOCK.findall(recipe(number)) if kind == lang]


@pytest.fixture(scope="module")
def example(tmp_path_factory):
    """A working directory holding the files of tools/own_example.py (recipes 1 and 2)."""
    wd = tmp_path_factory.mktemp("own")
    write_example(wd / "resources" / "own-example")
    return wd


def test_recipe_1_own_data_by_config(example, monkeypatch):
    monkeypatch.chdir(example)
    cfg = yaml.safe_load(blocks(1, "yaml")[0]) | {"tabular": {"enabled": False}}
    cfg = C.validate_config(cfg)
    stores = {}
    for name in cfg["data"]["variants"]:  # what the data job does (workflow/scripts/data.py)
        opts = C.dataset_options(cfg, name)
        text = {k: v for k, v in (opts.get("text") or {}).items() if k != "tokenizer_from"}
        meta = prepare_dataset(
            opts["source"],
            example / "resources" / "data" / name,
            seed=opts["seed"],
            per_class_cap=opts["per_class_cap"],
            grayscale=opts["grayscale"],
            files={k: opts[k] for k in FILE_KEYS if k in opts},
            **text,
        )
        stores[name] = (meta, load_dataset(example / "resources" / "data" / name))
    meta, ds = stores["own-images"]
    assert meta["n_classes"] == 3 and ds.x_train.shape[1:] == (3, 32, 32)
    assert meta["n_train"] + meta["n_test"] == 537  # 178 + 182 + 177 digits 0, 1, 2
    meta, ds = stores["own-arrays"]
    assert ds.x_train.shape == (1437, 1, 8, 8) and ds.x_test.shape == (360, 1, 8, 8)
    meta, ds = stores["own-table"]
    assert meta["feature_names"] == [*(f"row{r}" for r in range(8)), "ink"]
    assert meta["options"]["nominal_features"] == [8] and meta["options"]["missing_values"]
    meta, ds = stores["own-texts"]
    assert meta["kind"] == "text" and meta["group_column"] == "pair"
    g_tr = np.load(example / "resources" / "data" / "own-texts" / "groups_train.npy")
    g_te = np.load(example / "resources" / "data" / "own-texts" / "groups_test.npy")
    assert len(g_te) and not set(g_tr) & set(g_te)  # a pair never straddles the test split
    # a wrong column is an error before any job, naming the key and the file
    cfg = yaml.safe_load(blocks(1, "yaml")[0]) | {"tabular": {"enabled": False}}
    cfg["data"]["variants"]["own-table"]["label"] = "digits"
    with pytest.raises(C.ConfigError, match=r"'data.variants.own-table.label': .*table\.csv"):
        C.validate_config(cfg)


def _strip_docstrings(source: str) -> str:
    tree = ast.parse(source)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr):
            if isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree)


def test_recipe_2_own_network_by_config(example, monkeypatch):
    monkeypatch.chdir(example)
    data = yaml.safe_load(blocks(1, "yaml")[0])
    cfg = {**yaml.safe_load(blocks(2, "yaml")[0]), "data": data["data"], "folds": data["folds"]}
    cfg = C.validate_config(cfg | {"tabular": {"enabled": False}})
    runs = {r.dataset: r for r in C.run_table(cfg)}
    assert runs["own-images"].train["epochs"] == 0  # analysis without training
    # the model file of the recipe is the one tools/own_example.py writes
    assert _strip_docstrings(blocks(2, "python")[0]) == _strip_docstrings(USER_MODEL)
    spec = dict(runs["own-arrays"].model_spec)
    model = architectures.build_model(spec.pop("arch"), (1, 8, 8), 10, seed=0, **spec)
    assert model.probe_layers == ["input", "conv1", "conv2", "hidden", "pooled", "logits"]
    # a wrong factory or torchvision layer is an error before any job; a layer the user's
    # module does not have, when the train job builds it
    cfg = yaml.safe_load(blocks(2, "yaml")[0]) | {"data": data["data"], "folds": data["folds"]}
    cfg["models"]["my-convnet"]["factory"] = "resources/own-example/my_model.py:create"
    cfg["models"]["resnet18"]["layers"] = ["layer9"]
    with pytest.raises(C.ConfigError) as err:
        C.validate_config(cfg | {"tabular": {"enabled": False}})
    assert "'models.my-convnet.factory'" in str(err.value) and "'create'" in str(err.value)
    assert "'layer9' is not a module or graph node" in str(err.value)
    with pytest.raises(ValueError, match=r"conv3"):
        architectures.build_model("module", (1, 8, 8), 10, **(spec | {"layers": ["conv3"]}))


def test_recipe_3_new_builtin_architecture(tmp_path, monkeypatch):
    builder_src, entry_src = blocks(3, "python")
    # step 1: the builder module (importable as twolayer_recipe here)
    (tmp_path / "twolayer_recipe.py").write_text(builder_src)
    monkeypatch.syspath_prepend(str(tmp_path))
    # step 2: the registry entry, as the recipe writes it, with this test's module path
    entry = eval(  # noqa: S307  (the recipe's own code)
        entry_src.strip().rstrip(",").replace("mfoml.nets.twolayer", "twolayer_recipe"),
        {"ArchInfo": ArchInfo},
    )
    assert entry.name == "twolayer" and entry.keys == {"width"}
    monkeypatch.setitem(ARCHS, entry.name, entry)
    # step 3: the schema's enum (a copy of config/ with the name added)
    shutil.copytree(REPO / "config", tmp_path / "config")
    schema_path = tmp_path / "config" / "config.schema.yaml"
    schema = yaml.safe_load(schema_path.read_text())
    model_props = schema["properties"]["models"]["additionalProperties"]["properties"]
    model_props["arch"]["enum"].append("twolayer")
    assert "width" in model_props  # an existing key: nothing more to add
    schema_path.write_text(yaml.safe_dump(schema, sort_keys=False))
    cfg = {
        "models": {"two": {"arch": "twolayer", "width": 8}},
        "sweeps": [{"name": "s", "datasets": ["digits"], "models": ["two"], "folds": [0]}],
        "probe": {"layers": ["hidden"]},
        "tabular": {"enabled": False},
    }
    # without the schema entry the name is refused; with it the config validates
    with pytest.raises(C.ConfigError, match=r"models.two.arch"):
        C.validate_config(cfg)
    C.validate_config(cfg, schema_path=schema_path)
    # the pre-job layer check reads the registry's names
    bad = cfg | {"probe": {"layers": ["block1"]}}
    with pytest.raises(C.ConfigError) as err:
        C.validate_config(bad, schema_path=schema_path)
    assert "its layers are input, hidden, logits" in str(err.value)
    # build_model builds it; its layers are the registry's; its spec rebuilds it
    model = architectures.build_model("twolayer", (1, 8, 8), 10, width=8, seed=0)
    assert model.probe_layers == spec_layer_names({"arch": "twolayer"})
    logits, feats = model.forward_features(__import__("torch").zeros(2, 1, 8, 8))
    assert tuple(logits.shape) == (2, 10) and tuple(feats["hidden"].shape) == (2, 8)
    again = architectures.build_model(**model.spec)
    assert again.probe_layers == model.probe_layers


def _run_tables(fold: int, measure: list[float]) -> tuple[dict, pd.DataFrame, pd.DataFrame]:
    meta = {
        "experiment": "e",
        "dataset": "d",
        "model": "m",
        "activation": "relu",
        "loss": "ce",
        "noise": 0.0,
        "seed": 0,
        "fold": fold,
        "run": f"d/m/relu/ce/noise0/fold{fold}",
    }
    layers = ["input", "hidden", "logits"]
    probe = pd.DataFrame(
        {
            "epoch": 1,
            "split": "train",
            "layer": layers,
            "layer_index": [0, 1, 2],
            "alpha": [0.5, 0.7, 0.9],
            "alpha_min": 0.4,
            "alpha_max": 1.0,
            "status": "ok",
            "n_tau": 5,
            "n_wavelets": 40,
        }
    )
    ncc = pd.DataFrame(
        {
            "epoch": 1,
            "layer": layers,
            "layer_index": [0, 1, 2],
            "ncc_mismatch_train": [0.3, 0.2, 0.1],
            "nc1": [2.0, 1.0, 0.5],
            "my_measure": measure,
        }
    )
    return meta, probe, ncc


def test_recipe_4_new_per_layer_measure():
    (src,) = blocks(4, "python")
    assert '"my_measure"' in src and "LAYER_MEASURES" in src
    parts = [_run_tables(0, [1.0, 2.0, 3.0]), _run_tables(1, [3.0, 6.0, 9.0])]
    runs = [p[0] for p in parts]
    layers = agg.layers_table(
        runs, {m["run"]: p for m, p, _ in parts}, {m["run"]: n for m, _, n in parts}
    )
    assert "my_measure" in layers.columns  # step 2: the NCC table's column reaches layers.csv
    keys = ["epoch", "layer", "layer_index"]
    # not declared: never in layers_summary.csv
    before = agg.summarize(layers, keys, agg.layer_summary_columns(layers.columns))
    assert "my_measure_mean" not in before.columns and "alpha_mean" in before.columns
    # step 1: declared in the registry (the recipe's code, run in the registry's namespace)
    registry = dict(vars(layer_measures))
    exec(src, registry)
    measures = registry["LAYER_MEASURES"]
    after = agg.summarize(
        layers, keys, agg.layer_summary_columns(layers.columns, measures=measures)
    )
    got = after.set_index("layer")
    assert got.loc["hidden", "my_measure_mean"] == pytest.approx(4.0)  # (2 + 6) / 2
    assert got.loc["logits", "my_measure_n"] == 2
    assert got.loc["input", "my_measure_std"] == pytest.approx(np.sqrt(2.0))  # of 1 and 3
    # the registered measures' columns keep their place
    assert [c for c in after.columns if c not in before.columns] == [
        "my_measure_mean",
        "my_measure_std",
        "my_measure_n",
    ]


def test_recipe_5_new_rule(tmp_path):
    rule_src, include_src = blocks(5, "snakemake")
    (script_src,) = blocks(5, "python")
    wd = copy_workflow(tmp_path / "wf")
    (wd / "workflow" / "rules" / "alpha_by_depth.smk").write_text(rule_src)
    (wd / "workflow" / "scripts" / "alpha_by_depth.py").write_text(script_src)
    snakefile = wd / "Snakefile"
    lines = snakefile.read_text().splitlines(keepends=True)
    last = max(i for i, line in enumerate(lines) if line.startswith("include:"))
    lines.insert(last + 1, include_src)
    snakefile.write_text("".join(lines))
    target = "results/tables/alpha_by_depth.csv"
    jobs = dry_run_jobs(wd, target, configfile=wd / "config" / "tests" / "tiny.yaml")
    rules = [rule for rule, _ in jobs]
    assert rules.count("alpha_by_depth") == 1 and "aggregate" in rules
    # the recipe's files pass the project's format and lint checks
    bin_dir = Path(sys.executable).parent
    ruff = subprocess.run(
        [str(bin_dir / "ruff"), "check", "--config", str(REPO / "pyproject.toml"), "-"],
        input=script_src,
        capture_output=True,
        text=True,
        check=False,
    )
    assert ruff.returncode == 0, ruff.stdout
    fmt = subprocess.run(
        [
            str(bin_dir / "snakefmt"),
            "--check",
            str(wd / "workflow" / "rules" / "alpha_by_depth.smk"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert fmt.returncode == 0, fmt.stderr
