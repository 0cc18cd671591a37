"""Configuration: schema validation with defaults, clear errors naming the key, the run table,
per-rule parameter slices, the experiment files and the documentation of every key."""

from __future__ import annotations

import copy
import itertools
import re
from pathlib import Path

import pytest
import yaml
from mfoml import config as C
from workflow_utils import config_error

REPO = Path(__file__).resolve().parents[1]
EXPERIMENTS = sorted((REPO / "config" / "experiments").glob("*.yaml"))


@pytest.fixture(scope="module")
def load_experiment(tmp_path_factory):
    """``load(path)``: an experiment file's validated config. own-model-data.yaml reads files
    that ``python tools/own_example.py`` writes first (its header): it is validated in a folder
    holding them."""
    import contextlib
    import sys

    sys.path.insert(0, str(REPO / "tools"))
    from own_example import write_example

    own = tmp_path_factory.mktemp("own-example")
    write_example(own / "resources" / "own-example")

    def load(path: Path) -> dict:
        if path.stem != "own-model-data":
            return C.load_config(path)
        with contextlib.chdir(own):
            return C.load_config(path)

    return load


def _tiny() -> dict:
    return yaml.safe_load((REPO / "config" / "tests" / "tiny.yaml").read_text())


def test_empty_config_gets_every_default():
    cfg = C.validate_config({})
    assert cfg["device"] == "auto"
    assert cfg["folds"] == {"n_splits": 5, "seed": 0}
    assert cfg["probe"]["max_depth"] == 15 and cfg["probe"]["n_trees"] == 1
    assert cfg["probe"]["norm_weight"] == "num_samples" and cfg["probe"]["method"] == "angle"
    assert cfg["train"]["epochs"] == 10 and cfg["train"]["optimizer"] == "adam"
    assert cfg["resources"]["train"] == {"threads": 1, "mem_mb": 2000, "runtime": 30}
    assert cfg["losses"]["ce"]["type"] == "ce"
    assert cfg["sweeps"] == [] and C.run_table(cfg) == []
    assert isinstance(cfg["tabular"], dict)  # the $ref'd tabular section got its defaults


def test_probe_grid_defaults_are_the_estimators_defaults():
    """The probe's tau and epsilon grids default to the reference's (alpha_star's defaults)."""
    import inspect

    from mfoml.wavelets.smoothness import alpha_star

    cfg = C.validate_config({})
    defaults = inspect.signature(alpha_star).parameters
    for key in ("tau_min", "tau_max", "tau_step", "eps_min", "eps_max", "n_eps"):
        assert cfg["probe"][key] == defaults[key].default, key
    assert '"n_eps":10' in C.rule_params(cfg, "probe")  # the probe rule receives the grids


def test_defaults_do_not_override_given_values():
    cfg = C.validate_config({"probe": {"max_depth": 4}, "activations": {"max_features": None}})
    assert cfg["probe"]["max_depth"] == 4 and cfg["probe"]["n_trees"] == 1
    assert cfg["activations"]["max_features"] is None


@pytest.mark.parametrize(
    ("patch", "expected"),
    [
        (
            {"probe": {"max_depth": -1}},
            "config key 'probe.max_depth': -1 is less than the minimum of 1",
        ),
        (
            {"probe": {"maxdepth": 3}},
            "config key 'probe.maxdepth': unknown key; did you mean 'max_depth'? (allowed: ",
        ),
        ({"train": {"epoch": 3}}, "config key 'train.epoch': unknown key; did you mean 'epochs'?"),
        ({"colour": "red"}, "config key 'colour': unknown key (allowed: "),  # nothing close
        ({"train": {"epochs": 2.5}}, "config key 'train.epochs': 2.5 is not of type 'integer'"),
        (
            {"train": {"lr": 0}},
            "config key 'train.lr': 0 is less than or equal to the minimum of 0",
        ),
        ({"device": "gpu"}, "config key 'device': 'gpu' is not one of ['auto', 'cpu', 'cuda']"),
        (
            {"folds": {"n_splits": 1}},
            "config key 'folds.n_splits': 1 is less than the minimum of 2",
        ),
        (
            {"activations": {"max_features": 0}},
            "config key 'activations.max_features': 0 is less than the minimum of 1",
        ),
        (
            {"activations": {"splits": ["train", "valid"]}},
            "config key 'activations.splits[1]': 'valid' is not one of",
        ),
        ({"probe": {"max_features": "all"}}, "config key 'probe.max_features': 'all' is not valid"),
        (
            {"resources": {"train": {"mem_mb": "lots"}}},
            "config key 'resources.train.mem_mb': 'lots' is not of type 'integer'",
        ),
        (
            {"models": {"m": {"arch": "rnn"}}},
            "config key 'models.m.arch': 'rnn' is not one of",
        ),
        ({"models": {"bad name": {"arch": "mlp"}}}, "config key 'models'"),
        (
            {"models": {"m": {"arch": "conv1d", "probe_point": "mid"}}},
            "config key 'models.m.probe_point': 'mid' is not one of ['post', 'pre']",
        ),
        (
            {"models": {"m": {"arch": "conv1d", "stride": [2, 0]}}},
            "config key 'models.m.stride[1]': 0 is less than the minimum of 1",
        ),
        ({"probe": {"n_eps": 0}}, "config key 'probe.n_eps': 0 is less than the minimum of 1"),
        (
            {"probe": {"tau_min": 0}},
            "config key 'probe.tau_min': 0 is less than or equal to the minimum of 0",
        ),
        (
            {"probe": {"eps_max": 90}},
            "config key 'probe.eps_max': 90 is greater than or equal to the maximum of 90",
        ),
    ],
)
def test_schema_errors_name_the_key(patch, expected):
    cfg = _tiny()
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(cfg.get(key), dict):
            for k, v in value.items():
                if isinstance(v, dict) and isinstance(cfg[key].get(k), dict):
                    cfg[key][k].update(v)
                else:
                    cfg[key][k] = v
        else:
            cfg[key] = value
    assert expected in config_error(cfg)


def test_sweep_errors_name_the_sweep_key():
    cfg = _tiny()
    cfg["sweeps"][1]["extra"] = 1
    cfg["sweeps"][0]["noise"] = [1.5]
    msg = config_error(cfg)
    assert "config key 'sweeps[1].extra': unknown key" in msg
    assert "config key 'sweeps[0].noise[0]': 1.5 is greater than the maximum of 1" in msg


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (
            lambda c: c["sweeps"][0].update(models=["nope"]),
            "config key 'sweeps[0].models': model 'nope' is not defined under 'models'",
        ),
        (
            lambda c: c["sweeps"][0].update(losses=["svsl"]),
            "config key 'sweeps[0].losses': loss 'svsl' is not defined",
        ),
        (
            lambda c: c["train"].update(checkpoints=[1, 5]),
            "config key 'train.checkpoints': epochs [5] exceed train.epochs = 2",
        ),
        (
            lambda c: c["sweeps"][1].update(train={"epochs": 1}),
            "config key 'sweeps[1].train.checkpoints': epochs [2] exceed",
        ),
        (
            lambda c: c["sweeps"][0].update(folds=[0, 2]),
            "config key 'sweeps[0].folds': fold indices [2] are not below folds.n_splits = 2",
        ),
        (
            lambda c: c["probe"].update(splits=["heldout"]),
            "config key 'probe.splits': split 'heldout' is not dumped",
        ),
        (
            lambda c: c["probe"].update(splits=["test"]),
            "config key 'probe.splits': must include 'train' (the correlation table",
        ),
        (
            lambda c: c["ncc"].update(test_split="heldout"),
            "config key 'ncc.test_split': split 'heldout' is not dumped",
        ),
        (
            lambda c: c["sweeps"][1].update(activations=["relu"], name="relu2"),
            "run 'mnist1d/mlp-d2-w16/relu/ce/noise0/fold0' is produced by sweep 'relu' and by sweep 'relu2'",
        ),
        (
            lambda c: c["sweeps"][1].update(
                transfer={"source_run": "mnist1d/x/relu/ce/noise0/fold0"}
            ),
            "config key 'sweeps[1].transfer.source_run': 'mnist1d/x/relu/ce/noise0/fold0' is not a run",
        ),
        (
            lambda c: c["sweeps"][1].update(
                transfer={
                    "source_run": "mnist1d/mlp-d2-w16/relu/ce/noise0/fold0",
                    "source_epoch": 7,
                }
            ),
            "config key 'sweeps[1].transfer.source_epoch': 7 is not a checkpoint",
        ),
        (
            lambda c: c["models"].update(r={"arch": "resnet18", "depth": 3}),
            "config key 'models.r': depth/width do not apply to resnet18",
        ),
        (
            lambda c: c["models"].update(m={"arch": "mlp", "stride": 2}),
            "config key 'models.m': stride/kernel_size apply to conv and conv1d only",
        ),
        (
            lambda c: c["models"].update(r={"arch": "resnet18", "probe_point": "pre"}),
            "config key 'models.r': batch_norm/probe_point apply to mlp, conv and conv1d only",
        ),
        (
            lambda c: c["models"].update(c={"arch": "conv1d", "depth": 5, "stride": [2, 2]}),
            "config key 'models.c.stride': 2 strides for depth 5 (one per block)",
        ),
        (
            lambda c: c["probe"].update(tau_min=2.5),
            "config key 'probe.tau_min': 2.5 must be below probe.tau_max = 2.0",
        ),
        (
            lambda c: c["probe"].update(eps_min=0.5, eps_max=0.4),
            "config key 'probe.eps_min': 0.5 must be below probe.eps_max = 0.4",
        ),
    ],
)
def test_reference_errors_name_the_key(edit, expected):
    cfg = _tiny()
    edit(cfg)
    assert expected in config_error(cfg)


def test_run_table_expands_every_dimension_with_readable_ids():
    cfg = C.validate_config(
        {
            "models": {"mlp-d4-w100": {"arch": "mlp", "depth": 4, "width": 100}},
            "losses": {"ce": {"type": "ce"}, "svsl": {"type": "svsl"}},
            "folds": {"n_splits": 3},
            "sweeps": [
                {
                    "name": "s",
                    "datasets": ["mnist1d", "digits"],
                    "models": ["mlp-d4-w100"],
                    "activations": ["relu", "tanh"],
                    "losses": ["ce", "svsl"],
                    "noise": [0.0, 0.1, 0.125],
                    "seeds": [0, 3],
                }
            ],
        }
    )
    table = C.run_table(cfg)
    assert len(table) == 2 * 1 * 2 * 2 * 3 * 2 * 3
    ids = [r.run_id for r in table]
    assert len(set(ids)) == len(ids)
    assert "mnist1d/mlp-d4-w100/relu/ce/noise0/fold0" in ids
    assert "digits/mlp-d4-w100/tanh/svsl/noise10/fold2-seed3" in ids
    assert "digits/mlp-d4-w100/tanh/svsl/noise12.5/fold1" in ids
    expected = set(
        itertools.product(
            ["mnist1d", "digits"],
            ["relu", "tanh"],
            ["ce", "svsl"],
            [0.0, 0.1, 0.125],
            [0, 3],
            [0, 1, 2],
        )
    )
    got = {(r.dataset, r.activation, r.loss, r.noise, r.seed, r.fold) for r in table}
    assert got == expected
    for r in table:
        assert re.fullmatch(C.RUN_ID_PATTERN, r.run_id)
        parsed = C.parse_run_id(r.run_id)
        assert (
            parsed["dataset"],
            parsed["activation"],
            parsed["loss"],
            parsed["seed"],
            parsed["fold"],
        ) == (r.dataset, r.activation, r.loss, r.seed, r.fold)
        assert parsed["noise"] == pytest.approx(r.noise)
        assert r.train["checkpoints"][-1] == r.train["epochs"]  # the final model is always kept


def test_sweep_train_overrides_apply_to_that_sweep_only():
    cfg = _tiny()
    cfg["sweeps"][1]["train"] = {"lr": 0.5, "epochs": 3, "checkpoints": [1]}
    table = {r.sweep: r for r in C.run_table(C.validate_config(cfg))}
    assert table["relu"].train["lr"] == 0.01 and table["relu"].train["epochs"] == 2
    assert table["tanh"].train["lr"] == 0.5 and table["tanh"].train["checkpoints"] == [1, 3]
    assert table["tanh"].train["batch_size"] == 64  # inherited


def test_params_are_canonical_and_sliced_per_rule():
    a = C.validate_config(_tiny())
    shuffled = yaml.safe_load(yaml.safe_dump(_tiny(), sort_keys=True))
    shuffled["probe"] = dict(reversed(list(shuffled["probe"].items())))
    b = C.validate_config(shuffled)
    runs_a, runs_b = C.run_table(a), C.run_table(b)
    for rule in ("folds", "probe", "ncc", "aggregate", "figures"):
        assert C.rule_params(a, rule) == C.rule_params(b, rule)
    for ra, rb in zip(runs_a, runs_b, strict=True):
        assert C.rule_params(a, "train", ra) == C.rule_params(b, "train", rb)
    # changing a probe setting changes only the probe slice
    c = copy.deepcopy(a)
    c["probe"]["max_depth"] = 3
    assert C.rule_params(c, "probe") != C.rule_params(a, "probe")
    for rule in ("folds", "ncc", "aggregate", "figures"):
        assert C.rule_params(c, rule) == C.rule_params(a, rule)
    for r in C.run_table(c):
        assert C.rule_params(c, "train", r) == C.rule_params(a, "train", r)
        assert C.rule_params(c, "activations", r) == C.rule_params(a, "activations", r)


def test_dataset_options_for_variants():
    cfg = C.validate_config(
        {"data": {"variants": {"cifar100-small": {"source": "cifar100", "per_class_cap": 50}}}}
    )
    opts = C.dataset_options(cfg, "cifar100-small")
    assert opts["source"] == "cifar100" and opts["per_class_cap"] == 50 and not opts["grayscale"]
    assert C.dataset_options(cfg, "digits")["source"] == "digits"


def test_default_config_is_offline_and_sized():
    cfg = C.load_config(REPO / "config" / "config.yaml")
    table = C.run_table(cfg)
    offline = {"mnist1d", "digits", "textorder", "textsource"}  # text: docs/text.md
    assert {C.dataset_options(cfg, r.dataset)["source"] for r in table} <= offline
    assert cfg["folds"]["n_splits"] == 5
    assert {r.fold for r in table} == {0, 1, 2}  # 3 of 5 folds: the 10-minute budget
    assert len({r.activation for r in table}) == 3
    assert {"mlp", "conv1d"} <= {r.model_spec["arch"] for r in table}
    assert {r.model_spec["arch"] for r in table} <= {"mlp", "conv1d", "transformer"}
    assert len(table[0].train["checkpoints"]) >= 3
    assert cfg["probe"]["layers"] == "all" and cfg["ncc"]["layers"] == "all"


@pytest.mark.parametrize("path", EXPERIMENTS, ids=[p.stem for p in EXPERIMENTS])
def test_experiment_configs_validate_and_state_their_cost(path, load_experiment):
    cfg = load_experiment(path)
    assert C.run_table(cfg) or cfg["tabular"]["enabled"], f"{path.name} runs nothing"
    header = path.read_text().split("\nname:")[0]
    assert "Expected cost" in header
    assert "disk" in header.lower(), f"{path.name}: the header states no peak disk (issue 27)"


def test_experiments_cover_the_course_studies(load_experiment):
    cfgs = {p.stem: load_experiment(p) for p in EXPERIMENTS}
    runs = {name: C.run_table(c) for name, c in cfgs.items()}
    every = [r for t in runs.values() for r in t]
    acts = {r.activation for r in every if r.dataset in ("mnist1d", "mnist")}
    assert {"relu", "gelu", "prelu", "sigmoid", "tanh", "heaviside"} <= acts
    resnets = {
        (r.dataset, r.model_spec.get("residual", True))
        for r in every
        if r.model_spec["arch"] == "resnet18"
    }
    assert {("cifar10", True), ("cifar10", False), ("mnist", True), ("mnist", False)} <= resnets
    svsl = [r for r in every if r.loss_spec["type"] == "svsl"]
    assert {"mnist", "fashionmnist"} <= {r.dataset for r in svsl}
    assert any(not r.loss_spec["batched"] for r in svsl)
    assert len({(r.loss_spec["lam"], r.loss_spec["gamma"]) for r in svsl}) >= 3
    noise = {(r.dataset, r.noise) for r in every}
    for ds in ("mnist", "cifar10"):
        assert {(ds, n) for n in (0.0, 0.1, 0.2, 0.3, 0.4)} <= noise
    tl = [r for r in every if r.transfer]
    assert tl and all(r.analysis_dataset == "cifar100" and r.transfer["freeze"] > 0 for r in tl)
    assert all(C.dataset_options(cfgs["transfer"], r.dataset)["per_class_cap"] for r in tl)
    # Text: project 8 (one encoder knob at a time), the workshop's GLUE example (CE and SVSL),
    # project 13 (MLM-pretrained encoders analysed frozen).
    knobs = {tuple(sorted(r.model_spec.items())) for r in runs["transformer-ncc"]}
    assert len(knobs) == 10 and {r.fold for r in runs["transformer-ncc"]} == set(range(5))
    glue = cfgs["glue-bert"]
    tasks = {C.dataset_options(glue, r.dataset)["source"] for r in runs["glue-bert"]}
    assert tasks == {"glue-cola", "glue-sst2", "glue-mrpc", "glue-rte"}
    assert {r.loss_spec["type"] for r in runs["glue-bert"]} == {"ce", "svsl"}
    assert all(r.pretrained for r in runs["mlm-encoder"])
    # The tabular projects at full size: OpenML classification sets and a hard regression set.
    tab = cfgs["tabular-openml"]
    sources = {C.dataset_options(tab, d)["source"] for d in tab["tabular"]["datasets"]}
    assert {"openml-adult", "openml-covertype", "openml-house_16H"} <= sources


def _schema_keys(schema: dict, prefix: str, defs: dict, out: set[str]) -> None:
    if "$ref" in schema and schema["$ref"].startswith("#/$defs/"):
        _schema_keys(defs[schema["$ref"].split("/")[-1]], prefix, defs, out)
    for key, sub in schema.get("properties", {}).items():
        path = f"{prefix}.{key}" if prefix else key
        out.add(path)
        if isinstance(sub, dict):
            _schema_keys(sub, path, defs, out)
    items = schema.get("items")
    if isinstance(items, dict):
        _schema_keys(items, prefix + "[]", defs, out)
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict):
        _schema_keys(extra, prefix + ".<name>", defs, out)
    for sub in schema.get("oneOf", []) + schema.get("anyOf", []):
        _schema_keys(sub, prefix, defs, out)


def test_every_config_key_is_documented():
    schema = yaml.safe_load((REPO / "config" / "config.schema.yaml").read_text())
    keys: set[str] = set()
    _schema_keys({k: v for k, v in schema.items() if k != "$defs"}, "", schema["$defs"], keys)
    keys.discard("tabular")
    readme = (REPO / "config" / "README.md").read_text()
    missing = sorted(k for k in keys if f"`{k}`" not in readme and not k.startswith("tabular."))
    assert not missing, f"config keys not documented in config/README.md: {missing}"
    assert len(keys) > 60


def _transfer_from(run_id: str):
    def edit(c):
        c["sweeps"][2]["transfer"]["source_run"] = run_id

    return edit


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (
            lambda c: c["sweeps"][0].update(datasets=["mnsit1d"]),
            "config key 'sweeps[0].datasets': unknown data set 'mnsit1d'; known: mnist1d,",
        ),
        (
            lambda c: c["sweeps"][2].update(analysis_dataset="cifar1000"),
            "config key 'sweeps[2].analysis_dataset': unknown data set 'cifar1000'",
        ),
        (
            lambda c: c["data"]["variants"]["mnist1d-small"].update(source="mnist1e"),
            "config key 'data.variants.mnist1d-small.source': unknown data set 'mnist1e'",
        ),
        (
            lambda c: c.update(tabular={"enabled": True, "datasets": ["iris", "irsi"]}),
            "config key 'tabular.datasets': unknown data set 'irsi'",
        ),
        (
            lambda c: c["probe"].update(layers=["block1", "block3"]),
            "config key 'probe.layers': ['block3'] not layers of model 'mlp-d2-w16' (used by "
            "sweeps[0]); its layers are input, block1, block2, logits",
        ),
        (
            lambda c: c["ncc"].update(layers=["stem"]),
            "config key 'ncc.layers': ['stem'] not layers of model 'mlp-d2-w16'",
        ),
        (
            lambda c: c["folds"].update(n_splits=21),
            "config key 'folds.n_splits': 21 folds, but class 0 of data set 'mnist1d-small' "
            "(variant of 'mnist1d') has only 20 training samples "
            "(data.variants.mnist1d-small.per_class_cap = 20); use folds.n_splits <= 20",
        ),
        (
            lambda c: (
                c.update(tabular={"enabled": True, "datasets": ["diabetes"]})
                or c["folds"].update(n_splits=443)
            ),
            "config key 'folds.n_splits': 443 folds, but data set 'diabetes' has only 442",
        ),
        (
            lambda c: c["sweeps"][1].update(name="relu"),
            "config key 'sweeps[1].name': sweep name 'relu' is already used by sweeps[0]",
        ),
        (
            lambda c: c["activations"].update(max_samples=1),
            "config key 'activations.max_samples': 1 is less than the minimum of 2",
        ),
        (
            lambda c: c["activations"].update(max_samples=19),
            "config key 'activations.max_samples': 19 samples cannot hold 2 per class of data "
            "set 'mnist1d' (10 classes)",
        ),
        (
            lambda c: c["probe"].update(max_samples=10),
            "config key 'probe.max_samples': 10 samples cannot hold 2 per class",
        ),
        (
            _transfer_from("mnist2d/mlp-d2-w16/relu/ce/noise0/fold0"),
            "config key 'sweeps[2].transfer.source_run': the data set 'mnist2d' of the source "
            "run 'mnist2d/mlp-d2-w16/relu/ce/noise0/fold0' is not a known data set",
        ),
        (
            # the source sweep itself names the unknown data set: the message is about it
            lambda c: (
                c["sweeps"][0].update(datasets=["mnist2d"])
                or _transfer_from("mnist2d/mlp-d2-w16/relu/ce/noise0/fold0")(c)
            ),
            "config key 'sweeps[0].datasets': unknown data set 'mnist2d'",
        ),
        (
            _transfer_from("digits/mlp-d2-w16/relu/ce/noise0/fold0"),
            "config key 'sweeps[2].transfer.source_run': no sweep trains on data set 'digits'",
        ),
    ],
)
def test_data_layer_fold_and_sample_errors_name_the_key(edit, expected):
    cfg = _tiny()
    edit(cfg)
    message = config_error(cfg)
    assert expected in message
    assert "is not a run of this configuration" not in message


def test_a_configuration_without_work_is_an_error():
    cfg = C.validate_config({"sweeps": []})
    with pytest.raises(C.ConfigError, match="nothing is configured: config key 'sweeps' is empty"):
        C.check_work(cfg)
    C.check_work(C.validate_config(_tiny()))
    C.check_work(C.validate_config({"tabular": {"enabled": True, "datasets": ["iris"]}}))


def test_duplicate_yaml_keys_and_syntax_errors_name_file_line_and_key(tmp_path):
    text = (REPO / "config" / "tests" / "tiny.yaml").read_text()
    C.check_yaml_file(REPO / "config" / "tests" / "tiny.yaml")  # the real file is fine
    doubled = text.replace(
        "models:\n  mlp-d2-w16:\n", "models:\n  mlp-d2-w16:\n    arch: conv\n  mlp-d2-w16:\n", 1
    )
    path = tmp_path / "doubled.yaml"
    path.write_text(doubled + "probe:\n  n_trees: 3\n")
    with pytest.raises(C.ConfigError) as info:
        C.load_config(path)
    message = str(info.value)
    line = doubled.splitlines().index("  mlp-d2-w16:", doubled.splitlines().index("models:") + 2)
    assert str(path) in message
    assert f"line {line + 1}: key 'models.mlp-d2-w16' defined again" in message
    assert "key 'probe' defined again" in message
    bad = tmp_path / "syntax.yaml"
    bad.write_text("sweeps:\n  - name: a\n   datasets: [x]\n")
    with pytest.raises(C.ConfigError, match=r"(?s)syntax.yaml: malformed YAML .*line 3"):
        C.check_yaml_file(bad)


def test_full_training_split_runs():
    """`folds: full`: one run per setting on the whole training split, id `.../full[-seed]`."""
    cfg = _tiny()
    cfg["sweeps"][1].update(folds="full", seeds=[0, 2])
    cfg = C.validate_config(cfg)
    full = [r for r in C.run_table(cfg) if r.sweep == "tanh"]
    assert [r.run_id for r in full] == [
        "mnist1d/mlp-d2-w16/tanh/ce/noise0/full",
        "mnist1d/mlp-d2-w16/tanh/ce/noise0/full-seed2",
    ]
    assert all(r.fold == "full" and r.full_train for r in full)
    assert not any(r.full_train for r in C.run_table(cfg) if r.sweep != "tanh")
    for r in full:
        assert re.fullmatch(C.RUN_ID_PATTERN, r.run_id)
        assert C.parse_run_id(r.run_id)["fold"] == "full"
        assert C.parse_run_id(r.run_id)["seed"] == r.seed
        assert '"fold":"full"' in C.rule_params(cfg, "train", r)
        assert r.metadata()["fold"] == "full"
    assert C.parse_run_id("mnist1d/m/relu/ce/noise0/fold3-seed1")["fold"] == 3
    assert not re.fullmatch(C.RUN_ID_PATTERN, "mnist1d/m/relu/ce/noise0/full3")
    # a held-out split asked for by the analysis is an error for full runs
    bad = _tiny()
    bad["sweeps"][0]["folds"] = "full"
    bad["activations"]["splits"] = ["train", "heldout", "test"]
    bad["ncc"]["test_split"] = "heldout"
    bad["probe"]["splits"] = ["train", "heldout"]
    msg = config_error(bad)
    for what in ("ncc.test_split", "probe.splits"):
        assert (
            f"config key 'sweeps[0].folds': runs on the full training split have no held-out "
            f"fold, but {what} asks for it"
        ) in msg
    # `full` is a value of its own, not a fold index
    assert "config key 'sweeps[0].folds[0]': 'full' is not of type 'integer'" in config_error(
        {**_tiny(), "sweeps": [{**_tiny()["sweeps"][0], "folds": ["full"]}]}
    )


def test_reference_mnist1d_experiment():
    """The published MNIST-1D protocol (RFWFC for_release): conv1d 5 x 80, stride 2, conv1
    kernel 5 and the others 3, padding 1, no BatchNorm, pre-activation probes, an 80/20
    train/validation split with the best validation epoch kept, batch 256, 100 epochs, the
    reference probe, several seeds."""
    from mfoml.nets.layernames import probe_layer_names

    cfg = C.load_config(REPO / "config" / "experiments" / "reference-mnist1d.yaml")
    runs = C.run_table(cfg)
    assert len(runs) >= 3
    assert [r.run_id for r in runs] == ["mnist1d/conv1d-ref/relu/ce/noise0/fold0"] + [
        f"mnist1d/conv1d-ref/relu/ce/noise0/fold0-seed{s}" for s in range(1, len(runs))
    ]
    assert cfg["folds"]["n_splits"] == 5  # fold 0 held out: 20 % of the 4000 samples
    train = cfg["train"]
    assert (train["batch_size"], train["epochs"], train["keep_best"]) == (256, 100, "heldout_acc")
    assert (train["optimizer"], train["lr"]) == ("adam", 0.01)
    spec = runs[0].model_spec
    assert spec == {
        "arch": "conv1d",
        "depth": 5,
        "width": 80,
        "kernel_size": [5, 3, 3, 3, 3],
        "padding": 1,
        "stride": 2,
        "batch_norm": False,
        "probe_point": "pre",
    }
    assert probe_layer_names(spec["arch"], spec["depth"], spec["probe_point"]) == [
        "input",
        *[f"block{i}_pre" for i in range(1, 6)],
        "block5",
        "logits",
    ]
    probe = cfg["probe"]
    assert (probe["n_trees"], probe["max_depth"], probe["seed"]) == (1, 20, 1079)
    assert (probe["eps_min"], probe["eps_max"], probe["n_eps"]) == (0.1, 0.4, 10)
    assert probe["max_features"] is None and probe["method"] == "angle"
    assert cfg["activations"]["max_samples"] is None and cfg["ncc"]["test_split"] == "test"
