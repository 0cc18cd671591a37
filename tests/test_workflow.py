"""Whole-workflow tests: the tiny configuration end to end (all stages, real training), its
tables and figures, the HTML report, logs/benchmarks, and config errors through Snakemake."""

from __future__ import annotations

from collections import Counter

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest
import yaml
from workflow_utils import (
    REPO,
    TINY_CONFIG,
    completed_tiny_run,
    copy_run,
    dry_run_jobs,
    run_snakemake,
)

pytestmark = pytest.mark.slow

RUN_COLUMNS = [
    "experiment",
    "dataset",
    "model",
    "activation",
    "loss",
    "noise",
    "seed",
    "fold",
    "run",
]
SOURCE = "mnist1d/mlp-d2-w16/relu/ce/noise0/fold0"
TRANSFER = "mnist1d-small/mlp-d2-w16-tl/relu/svsl-l1e-3/noise20/fold0"
RUNS = [SOURCE, "mnist1d/mlp-d2-w16/tanh/ce/noise0/fold0", TRANSFER]
LAYERS = ["input", "block1", "block2", "logits"]
EPOCHS = [1, 2]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory):
    return completed_tiny_run(tmp_path_factory.getbasetemp())


def _table(tiny, name: str) -> pd.DataFrame:
    return pd.read_csv(tiny / "results" / "tables" / f"{name}.csv")


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Independent Spearman rho: Pearson correlation of average ranks."""

    def ranks(v: np.ndarray) -> np.ndarray:
        order = np.argsort(v, kind="stable")
        r = np.empty(len(v))
        r[order] = np.arange(1, len(v) + 1)
        for val in np.unique(v):  # average ties
            r[v == val] = r[v == val].mean()
        return r

    rx, ry = ranks(x), ranks(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    return float((rx * ry).sum() / np.sqrt((rx * rx).sum() * (ry * ry).sum()))


def test_layers_table(tiny):
    df = _table(tiny, "layers")
    for col in [
        *RUN_COLUMNS,
        "epoch",
        "layer",
        "layer_index",
        "alpha",
        "alpha_min",
        "alpha_max",
        "alpha_status",
        "ncc_mismatch_train",
        "ncc_mismatch_test",
        "ncc_accuracy_train",
        "ncc_accuracy_test",
        "nc1",
        "nc2_equinorm",
        "nc2_equiangularity",
        "nc3",
        "nc4",
        "n_wavelets",
        "alpha_random",
        "alpha_random_status",
        "n_wavelets_random",
    ]:
        assert col in df.columns, col
    assert len(df) == len(RUNS) * len(EPOCHS) * len(LAYERS)
    assert sorted(df["run"].unique()) == sorted(RUNS)
    for (_run, _epoch), part in df.groupby(["run", "epoch"]):
        assert list(part.sort_values("layer_index")["layer"]) == LAYERS
    ok = df["alpha_status"] == "ok"
    assert ok.any()
    a = df.loc[ok]
    assert a[["alpha", "alpha_min", "alpha_max"]].notna().all().all()
    assert (a["alpha_min"] <= a["alpha"] + 1e-12).all() and (
        a["alpha"] <= a["alpha_max"] + 1e-12
    ).all()
    assert (a["n_wavelets"] > 0).all()  # the wavelet count beside every alpha
    base = df[df["alpha_random_status"] == "ok"]
    assert (
        len(base) and base["alpha_random"].notna().all() and (base["n_wavelets_random"] > 0).all()
    )
    for col in [
        "ncc_mismatch_train",
        "ncc_mismatch_test",
        "ncc_accuracy_train",
        "ncc_accuracy_test",
    ]:
        assert df[col].between(0, 1).all(), col
    assert df["nc1"].notna().all() and (df["nc1"] >= 0).all()
    pen = df["layer"] == "block2"
    assert df.loc[pen, ["nc3", "nc4"]].notna().all().all()
    assert df.loc[~pen, ["nc3", "nc4"]].isna().all().all()
    # NC4 is by definition the train NCC mismatch at the penultimate layer
    np.testing.assert_allclose(df.loc[pen, "nc4"], df.loc[pen, "ncc_mismatch_train"])


def test_epoch_and_checkpoint_tables(tiny):
    ep = _table(tiny, "epochs")
    assert len(ep) == len(RUNS) * 2
    cols = ["train_loss", "train_acc", "heldout_loss", "heldout_acc", "test_loss", "test_acc"]
    cols += ["train_eval_loss", "train_eval_acc"]  # end-of-epoch eval-mode training accuracy
    assert ep[[*cols, "target_acc"]].notna().all().all()
    np.testing.assert_allclose(ep["target_acc"], ep["test_acc"])
    ck = _table(tiny, "checkpoints")
    for col in [
        "accuracy",
        "precision_macro",
        "recall_macro",
        "f1_macro",
        "cross_entropy",
        "n_samples",
    ]:
        assert ck[col].notna().all(), col
    # the transfer run (analysis_dataset) also has the analysis data set's training split
    assert set(ck["split"]) == {"train", "test", "analysis"}
    assert set(ck.loc[ck["split"] == "analysis", "run"]) == {TRANSFER}
    assert len(ck) == len(RUNS) * len(EPOCHS) * 2 + len(EPOCHS)
    # the "test" dumps hold the official MNIST-1D test split (also for the transfer run: its
    # subset keeps the full test split, and it is analysed on full MNIST-1D), so the accuracy
    # recomputed from the dumped predictions equals the training loop's test accuracy
    test = ck[ck["split"] == "test"].merge(ep, on=["run", "epoch"], suffixes=("", "_ep"))
    assert (test["n_samples"] == 1000).all()
    np.testing.assert_allclose(test["accuracy"], test["test_acc"], atol=1e-12)
    # cross_entropy is the loss of the same eval-mode pass as the accuracy: on the whole test
    # split it is the training loop's (eval-mode) test loss
    np.testing.assert_allclose(test["cross_entropy"], test["test_loss"], rtol=1e-5)
    train = ck[ck["split"] == "train"].set_index("run")["n_samples"]
    # activations.max_samples = 1500 of the 2000 training-fold samples; the transfer run's
    # "train" split is its own 100 training samples (20 per class, fold 0 of 2), and the full
    # MNIST-1D training split it is analysed on is the "analysis" split (1500 of 4000)
    assert (train.drop(TRANSFER) == 1500).all() and (train[TRANSFER] == 100).all()
    assert (ck.loc[ck["split"] == "analysis", "n_samples"] == 1500).all()
    sources = yaml.safe_load(
        (tiny / "results" / "runs" / TRANSFER / "activations" / "sources.json").read_text()
    )
    assert sources["splits"]["train"]["dataset"] == "mnist1d-small"
    assert sources["splits"]["analysis"]["dataset"] == "mnist1d"
    layers = _table(tiny, "layers")
    ana = layers[layers["run"] == TRANSFER]
    assert ana["alpha_analysis"].notna().any()  # the probe also ran on the analysis split
    assert layers.loc[layers["run"] != TRANSFER, "alpha_analysis"].isna().all()
    conf = _table(tiny, "confusion")
    for run, part in conf.groupby("run"):
        n = part["count"].sum()
        acc = part.loc[part["true"] == part["predicted"], "count"].sum() / n
        final = ck[(ck["run"] == run) & (ck["split"] == "test") & (ck["epoch"] == max(EPOCHS))]
        assert n == int(final["n_samples"].iloc[0])
        assert acc == pytest.approx(float(final["accuracy"].iloc[0]))
        assert len(part) == 100  # 10 x 10 classes


def test_transfer_noise_and_svsl_run(tiny):
    import torch

    src_dir = tiny / "results" / "runs" / SOURCE / "checkpoints"
    dst_dir = tiny / "results" / "runs" / TRANSFER / "checkpoints"
    info = yaml.safe_load((dst_dir / "run.json").read_text())
    assert info["frozen_stages"] == ["block1"]
    split = np.load(dst_dir / "split.npz")
    n = len(split["train_idx"])
    assert n == 100  # 20 per class x 10 classes, fold 0 of 2
    changed = split["relabelled"]
    assert changed.sum() == round(0.2 * n) == info["n_relabelled"]
    np.testing.assert_array_equal(split["y_train"] != split["y_train_clean"], changed)
    src = torch.load(src_dir / "epoch_0002.pt", map_location="cpu", weights_only=False)[
        "state_dict"
    ]
    dst = torch.load(dst_dir / "epoch_0002.pt", map_location="cpu", weights_only=False)[
        "state_dict"
    ]
    params = [k for k in src if k.endswith((".weight", ".bias"))]
    # a frozen stage also keeps the source's BatchNorm running statistics
    stats = [k for k in src if k.startswith("stages.block1.") and "running_" in k]
    assert stats and all(torch.equal(src[k], dst[k]) for k in stats)
    frozen = [k for k in params if k.startswith("stages.block1.")]
    trained = [k for k in params if k.startswith("stages.block2.")]
    assert frozen and trained
    for k in frozen:  # frozen parameters keep the source's values exactly
        assert torch.equal(src[k], dst[k]), k
    assert any(not torch.equal(src[k], dst[k]) for k in trained)
    head = [k for k in params if k.startswith("stages.logits.")]
    assert head and all(not torch.equal(src[k], dst[k]) for k in head)
    metrics = pd.read_csv(dst_dir / "metrics.csv")
    assert "train_extra_loss" in metrics and np.isfinite(metrics["train_extra_loss"]).all()
    assert (metrics["train_extra_loss"] > 0).all()


def test_fold_summaries(tiny):
    layers = _table(tiny, "layers")
    s = _table(tiny, "layers_summary")
    assert len(s) == len(layers)  # one fold per variant
    assert (s["alpha_n"] <= 1).all() and (s["ncc_mismatch_train_n"] == 1).all()
    assert s["ncc_mismatch_train_std"].isna().all()  # std of one fold is undefined
    merged = s.merge(layers, on=["experiment", "activation", "epoch", "layer"])
    np.testing.assert_allclose(merged["ncc_mismatch_train_mean"], merged["ncc_mismatch_train"])
    es = _table(tiny, "epochs_summary")
    assert {"test_acc_mean", "heldout_acc_mean", "heldout_acc_std", "heldout_acc_n"} <= set(
        es.columns
    )
    cs = _table(tiny, "checkpoints_summary")
    assert {"precision_macro_mean", "recall_macro_mean", "accuracy_std", "accuracy_n"} <= set(
        cs.columns
    )


def test_correlation_tables(tiny):
    pts = _table(tiny, "correlation_points")
    assert len(pts) == len(RUNS) * len(EPOCHS)
    assert pts[["alpha_last_inner", "ncc_mismatch_penultimate", "accuracy"]].notna().all().all()
    assert set(pts["target"]) == {"test_acc"}
    layers = _table(tiny, "layers")
    for _, p in pts.iterrows():
        part = layers[(layers["run"] == p["run"]) & (layers["epoch"] == p["epoch"])]
        inner = part[part["layer"].isin(["block1", "block2"])]
        assert p["alpha_last_inner"] == pytest.approx(
            float(inner.loc[inner["layer"] == "block2", "alpha"].iloc[0])
        )
        # slope through two points = their difference over the index step
        expect = float(np.diff(inner.sort_values("layer_index")["alpha"].to_numpy())[0])
        assert p["alpha_depth_slope"] == pytest.approx(expect)
    ep = _table(tiny, "epochs")
    last = ep[ep["epoch"] == max(EPOCHS)].set_index("run")["test_acc"]
    np.testing.assert_allclose(pts["final_accuracy"], pts["run"].map(last))
    features = [
        "alpha_last_inner",
        "alpha_last_inner_adj",
        "alpha_depth_slope",
        "ncc_mismatch_penultimate",
    ]
    corr = _table(tiny, "correlation")
    within = corr[corr["scope"] == "within experiment"]
    assert set(within["experiment"]) == {"relu", "tanh", "transfer"}
    assert set(within["feature"]) == set(features) and set(within["epoch"]) == set(EPOCHS)
    assert set(within["outcome"]) == {"accuracy", "final_accuracy"}
    assert set(within.loc[within["headline"], "epoch"]) == {max(EPOCHS)}
    # one run (one variant) per experiment: the unit is the variant, nothing can be estimated
    measured = within[within["feature"] != "alpha_last_inner_adj"]
    assert (measured["status"] == "too_few_variants").all()
    assert (measured["n_variants"] == 1).all() and (measured["n_runs"] == 1).all()
    # the wavelet adjustment needs 3 runs of one experiment, checkpoint and layer
    assert pts["alpha_last_inner_adj"].isna().all() and pts["n_wavelets_last_inner"].notna().all()
    across = corr[corr["scope"] == "across experiments"]
    assert set(across["experiment"]) == {"all"} and len(across) == len(features) * 2
    # pooled across experiments, stratified by experiment: each stratum holds one variant, so
    # there is no within-stratum association to estimate (the pooled rho is not tested)
    assert (across["strata"] == "experiment").all()
    measured = across[across["feature"] != "alpha_last_inner_adj"]
    assert (measured["status"] == "too_few_per_stratum").all() and measured["rho"].isna().all()
    assert (measured["n_variants"] == len(RUNS)).all() and (measured["n_runs"] == len(RUNS)).all()

    dyn = _table(tiny, "dynamics").set_index("run")
    layers = _table(tiny, "layers")
    pen = layers[layers["layer"] == "block2"].set_index(["run", "epoch"])["alpha"]
    for run in RUNS:
        change = pen[(run, max(EPOCHS))] - pen[(run, min(EPOCHS))]
        assert dyn.loc[run, "alpha_last_inner_change"] == pytest.approx(change)
        assert dyn.loc[run, "final_accuracy"] == pytest.approx(last[run])
        assert dyn.loc[run, "n_checkpoints"] == len(EPOCHS)
    dc = _table(tiny, "dynamics_correlation")
    assert set(dc["scope"]) == {"within experiment", "across experiments"}
    assert set(dc["feature"]) == {"alpha_last_inner_change", "alpha_depth_slope_final",
                                  "ncc_epoch_below"}  # fmt: skip


def test_study_tables(tiny):
    ep = _table(tiny, "epochs")
    ph = _table(tiny, "phases").set_index("run")
    assert sorted(ph.index) == sorted(RUNS) and (ph["eot_epoch"] == max(EPOCHS)).all()
    for run, part in ep.groupby("run"):
        assert ph.loc[run, "best_acc"] == pytest.approx(part["test_acc"].max())
        # the threshold: the end-of-epoch model in eval mode, not the running mini-batch accuracy
        zero = part.loc[part["train_eval_acc"] >= 1.0, "epoch"]
        if len(zero):
            assert ph.loc[run, "it_epoch"] == zero.min()
        else:
            assert np.isnan(ph.loc[run, "it_epoch"]) and np.isnan(ph.loc[run, "best_in_tpt"])
            assert ph.loc[run, "status"] == "tpt_not_reached"
    pivot = _table(tiny, "phases_pivot")
    assert {"ce:best_acc_mean", "svsl-l1e-3:best_acc_mean", "ce:best_in_tpt_n"} <= set(
        pivot.columns
    )
    assert len(pivot) == 3  # relu and tanh with ce, the transfer model with SVSL

    noise = _table(tiny, "noise_alpha")
    assert sorted(noise["noise"]) == [0.0, 0.0, 0.2]
    layers = _table(tiny, "layers")
    pen = layers[(layers["layer"] == "block2") & (layers["epoch"] == max(EPOCHS))]
    merged = noise.merge(pen, on="experiment")
    np.testing.assert_allclose(merged["alpha_mean"], merged["alpha"])
    np.testing.assert_allclose(merged["n_wavelets_mean"], merged["n_wavelets"])
    np.testing.assert_allclose(merged["alpha_random_mean"], merged["alpha_random"])
    # the random-label baseline probes permuted labels: not the layer's own alpha
    both = layers[["alpha", "alpha_random"]].dropna()
    assert len(both) and (both["alpha"] != both["alpha_random"]).mean() > 0.5

    pairs = _table(tiny, "confused_pairs")
    conf = _table(tiny, "confusion")
    assert (pairs.groupby("experiment")["rank"].max() <= 5).all()
    assert (pairs["true"] != pairs["predicted"]).all()
    for _, p in pairs.iterrows():
        sel = conf[(conf["experiment"] == p["experiment"]) & (conf["true"] == p["true"])]
        assert p["count"] == sel.loc[sel["predicted"] == p["predicted"], "count"].sum()
        off = conf[(conf["experiment"] == p["experiment"]) & (conf["true"] != conf["predicted"])]
        top = off.groupby(["true", "predicted"])["count"].sum().max()
        assert p["count"] <= top and (p["rank"] > 1 or p["count"] == top)


def test_figures_readable(tiny):
    figs = sorted((tiny / "results" / "figures").glob("*.png"))
    names = {f.stem for f in figs}
    assert names == {
        "alpha_layers",
        "ncc_layers",
        "collapse_layers",
        "accuracy_epochs",
        "confusion",
        "correlation",
        "noise_alpha",
        "gradnorm_epochs",  # the always-on dynamics and geometry figures
        "error_params",
        "geometry_layers",
        "cka_layers",  # the lenses of similarity.smk (on by default)
        "cka_checkpoints",
        "cka_runs",
        "intrinsic_dim",
    }
    for f in figs:
        img = mpimg.imread(f)
        assert img.ndim == 3 and img.shape[0] > 50 and img.shape[1] > 50, f
        assert float(np.std(img)) > 0, f"{f} is blank"


def test_logs_and_benchmarks(tiny):
    for run in RUNS:
        for step in ("train", "activations", "probe", "ncc"):
            log = tiny / "logs" / "runs" / run / f"{step}.log"
            assert log.is_file() and log.stat().st_size > 0, log
            assert (tiny / "results" / "benchmarks" / run / f"{step}.tsv").is_file()
    assert "finished" in (tiny / "logs" / "runs" / RUNS[0] / "train.log").read_text()
    for log in ("data/mnist1d.log", "folds/mnist1d-small.log", "aggregate.log", "figures.log"):
        assert (tiny / "logs" / log).is_file(), log


def test_report_builds(tiny, tmp_path):
    report = tmp_path / "report.html"
    run_snakemake(tiny, "--report", str(report), configfile=tiny / TINY_CONFIG, check=True)
    html = report.read_text(errors="replace")
    assert report.stat().st_size > 10_000
    for name in ("alpha_layers", "ncc_layers", "correlation", "confusion", "noise_alpha"):
        assert name in html, name
    for name in ("phases_pivot", "confused_pairs", "dynamics_correlation"):
        assert name in html, name


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        (
            {"probe": {"max_depth": -1}},
            "config key 'probe.max_depth': -1 is less than the minimum of 1",
        ),
        ({"probe": {"depth": 3}}, "config key 'probe.depth': unknown key"),
        ({"train": {"epochs": "ten"}}, "config key 'train.epochs': 'ten' is not of type 'integer'"),
    ],
)
def test_bad_config_stops_before_any_job(tmp_path, patch, message):
    cfg = yaml.safe_load((REPO / TINY_CONFIG).read_text())
    for key, value in patch.items():
        cfg[key].update(value)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(cfg))
    proc = run_snakemake(tmp_path, "--cores", "1", configfile=path, snakefile=REPO / "Snakefile")
    assert proc.returncode != 0
    assert message in proc.stdout + proc.stderr
    assert not (tmp_path / "results").exists() and not (tmp_path / "resources").exists()
    assert not list(tmp_path.glob("logs/**/*.log"))


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (  # a model defined twice: Snakemake's YAML loading would keep the second silently
            lambda t: t.replace("models:\n", "models:\n  mlp-d2-w16: {arch: conv}\n", 1),
            "line 19: key 'models.mlp-d2-w16' defined again (first at line 18)",
        ),
        (
            lambda t: t.split("\nsweeps:")[0] + "\nsweeps: []\n",
            "nothing is configured: config key 'sweeps' is empty",
        ),
        # (the other checks of issue 9 run in the same validate_config: tests/test_config.py)
    ],
)
def test_bad_config_file_stops_before_any_job(tmp_path, edit, message):
    text = (REPO / TINY_CONFIG).read_text()
    path = tmp_path / "bad.yaml"
    path.write_text(edit(text))
    proc = run_snakemake(tmp_path, "--cores", "1", configfile=path, snakefile=REPO / "Snakefile")
    assert proc.returncode != 0
    assert message in proc.stdout + proc.stderr
    assert not (tmp_path / "results").exists() and not (tmp_path / "resources").exists()


def test_default_config_dry_run(tmp_path):
    """The embedded default: 2 models x 3 activations x 3 folds on MNIST-1D, the small text study
    (2 encoders, fold 0) and the small self-supervised study (2 folds), every stage, report
    inputs."""
    jobs = dry_run_jobs(tmp_path, snakefile=REPO / "Snakefile")
    counts = Counter(rule for rule, _ in jobs)
    supervised = 18 + 2  # MNIST-1D networks + text encoders
    assert counts["train"] == supervised and counts["train_ssl"] == 2
    assert counts["activations"] == supervised + 2  # self-supervised runs are dumped too
    assert counts["probe"] == supervised and counts["ncc"] == supervised
    assert counts["ssl_eval"] == 2
    assert "mnist1d" in {w["dataset"] for rule, w in jobs if rule == "data"}
    assert "mnist1d" in {w["dataset"] for rule, w in jobs if rule == "folds"}
    assert counts["aggregate"] == 1 and counts["figures"] == 1 and counts["all"] == 1
    runs = {w["run"] for rule, w in jobs if rule == "train"}
    assert "mnist1d/mlp-d4-w64/relu/ce/noise0/fold0" in runs
    assert {r.split("/")[2] for r in runs if r.startswith("mnist1d/")} == {"relu", "tanh", "gelu"}


def test_failed_job_leaves_no_partial_output(tiny, tmp_path):
    """A probe job that fails (a layer file of its dump is gone) leaves no probe table; its log
    names the file. (A bad probe.layers never gets this far: the configuration check stops it.)"""
    wd = copy_run(tiny, tmp_path / "wd")
    victim = wd / "results" / "runs" / RUNS[0] / "activations" / "2" / "train" / "block1.npy"
    victim.unlink()
    target = f"results/runs/{RUNS[0]}/probe.csv"  # that run's probe job only
    others = {r: (wd / "results" / "runs" / r / "probe.csv").stat().st_mtime_ns for r in RUNS[1:]}
    # the target between two options: `--forcerun` takes every following word as a rule name,
    # and `--configfile` (put first by run_snakemake) every following word as a file
    proc = run_snakemake(
        wd, "--cores", "1", target, "--forcerun", "probe", configfile=wd / TINY_CONFIG
    )
    assert proc.returncode != 0
    assert {
        r: (wd / "results" / "runs" / r / "probe.csv").stat().st_mtime_ns for r in RUNS[1:]
    } == others, "probe jobs of other runs ran"
    run = wd / "results" / "runs" / RUNS[0]
    assert not (run / "probe.csv").exists(), "the failing probe job kept an output"
    assert not (run / "probe_curves.json").exists()
    assert "block1.npy" in (wd / "logs" / "runs" / RUNS[0] / "probe.log").read_text()
    assert not list((wd / "results" / "runs").glob("**/.*.tmp*"))  # no temp files left behind


def test_transfer_experiment_dag(tmp_path):
    """The transfer study: the source run precedes the transferred runs, which train on the
    small CIFAR100 variant and are analysed on the full CIFAR100."""
    jobs = dry_run_jobs(
        tmp_path,
        configfile=REPO / "config" / "experiments" / "transfer.yaml",
        snakefile=REPO / "Snakefile",
    )
    counts = Counter(rule for rule, _ in jobs)
    assert counts["train"] == 11 and counts["probe"] == 11 and counts["ncc"] == 11
    assert {w["dataset"] for rule, w in jobs if rule == "data"} == {
        "cifar10",
        "cifar100",
        "cifar100-small",
    }
    assert {w["dataset"] for rule, w in jobs if rule == "folds"} == {"cifar10", "cifar100-small"}
    proc = run_snakemake(
        tmp_path,
        "-n",
        "--cores",
        "1",
        configfile=REPO / "config" / "experiments" / "transfer.yaml",
        snakefile=REPO / "Snakefile",
        check=True,
    )
    # the transferred runs' training jobs take the source run's checkpoints as input
    source = "results/runs/cifar10/resnet18/relu/ce/noise0/fold0/checkpoints"
    blocks = [b for b in (proc.stdout + proc.stderr).split("\n\n") if "rule train:" in b]
    tl_blocks = [b for b in blocks if "resnet18-tl" in b]
    assert len(tl_blocks) == 5
    for block in tl_blocks:
        inputs = next(line for line in block.splitlines() if line.strip().startswith("input:"))
        assert source in inputs
    tl = [w["run"] for rule, w in jobs if rule == "train" and "resnet18-tl" in w["run"]]
    assert len(tl) == 5 and all(r.startswith("cifar100-small/") for r in tl)


def test_subsamples_are_stratified(tiny):
    """activations.max_samples and probe.max_samples keep every class's share (+-1 sample)."""
    run_dir = tiny / "results" / "runs" / SOURCE
    y_fold = np.load(run_dir / "checkpoints" / "split.npz")["y_train"]  # 2000 training labels
    dumped = np.load(run_dir / "activations" / "2" / "train" / "labels.npy")
    assert len(dumped) == 1500
    full, kept = np.bincount(y_fold, minlength=10), np.bincount(dumped, minlength=10)
    assert np.all(np.abs(kept - full * 1500 / len(y_fold)) <= 1)
    probe = pd.read_csv(run_dir / "probe.csv")
    assert (probe["n_samples"] == 500).all()
    assert (probe["backend"] == "fast").all()  # probe.backend's default, recorded per result
    assert len(np.load(run_dir / "activations" / "2" / "test" / "labels.npy")) == 1000


def test_label_noise_run_ncc_uses_true_labels(tiny, tmp_path):
    """A label-noise run on its own folds: the train dump keeps the labels trained on and the
    true ones (labels_true.npy), and the NCC table's class means use the true labels."""
    from mfoml.nets.dumps import open_activations

    wd = copy_run(tiny, tmp_path / "wd")
    cfg = yaml.safe_load((wd / TINY_CONFIG).read_text())
    cfg["sweeps"][0]["noise"] = [0.0, 0.3]
    path = wd / "config" / "tests" / "noisy.yaml"
    path.write_text(yaml.safe_dump(cfg))
    run = "mnist1d/mlp-d2-w16/relu/ce/noise30/fold0"
    target = f"results/runs/{run}/ncc.csv"
    run_snakemake(wd, "--cores", "2", target, configfile=path, check=True)
    base = wd / "results" / "runs" / run
    split = np.load(base / "checkpoints" / "split.npz")
    assert split["relabelled"].sum() == round(0.3 * len(split["train_idx"]))
    dump = open_activations(base / "activations" / "2" / "train")
    # locate each dumped sample among the training-fold inputs (rows are distinct)
    x_all = np.load(wd / "resources" / "data" / "mnist1d" / "x_train.npy")
    x_fold = x_all[split["train_idx"]].reshape(len(split["train_idx"]), -1).astype(np.float16)
    where = {row.tobytes(): i for i, row in enumerate(x_fold)}
    pos = np.array([where[row.tobytes()] for row in np.asarray(dump.layer("input"))])
    np.testing.assert_array_equal(dump.labels, split["y_train"][pos])
    np.testing.assert_array_equal(dump.true_labels, split["y_train_clean"][pos])
    assert (dump.labels != dump.true_labels).any()
    ncc = pd.read_csv(wd / target)
    row = ncc[(ncc["epoch"] == 2) & (ncc["layer"] == "block2")].iloc[0]
    h = np.asarray(dump.layer("block2"), dtype=np.float64)
    y = np.asarray(dump.true_labels)
    means = np.stack([h[y == c].mean(axis=0) for c in range(10)])
    d = ((h[:, None, :] - means[None, :, :]) ** 2).sum(axis=2)
    nearest = d.argmin(axis=1)
    assert row["ncc_accuracy_train"] == pytest.approx(np.mean(nearest == y), abs=1e-12)
    assert row["ncc_mismatch_train"] == pytest.approx(
        np.mean(nearest != np.asarray(dump.predictions)), abs=1e-12
    )


def test_full_training_split_run(tiny, tmp_path):
    """`folds: full`: one run on the whole training split, evaluated on the test split, with no
    held-out fold (NaN held-out metrics, no folds job); the reference experiment plans so."""
    wd = copy_run(tiny, tmp_path / "wd")
    cfg = yaml.safe_load((wd / TINY_CONFIG).read_text())
    cfg["sweeps"][1]["folds"] = "full"  # the tanh sweep
    path = wd / "config" / "tests" / "full.yaml"
    path.write_text(yaml.safe_dump(cfg))
    run = "mnist1d/mlp-d2-w16/tanh/ce/noise0/full"
    run_snakemake(
        wd, "--cores", "2", f"results/runs/{run}/activations", configfile=path, check=True
    )
    base = wd / "results" / "runs" / run
    split = np.load(base / "checkpoints" / "split.npz")
    assert len(split["train_idx"]) == 4000 and len(split["heldout_idx"]) == 0
    metrics = pd.read_csv(base / "checkpoints" / "metrics.csv")
    assert metrics[["heldout_loss", "heldout_acc"]].isna().all().all()  # not evaluated, not 0
    assert metrics[["test_loss", "test_acc"]].notna().all().all()
    sources = yaml.safe_load((base / "activations" / "sources.json").read_text())
    assert sources["splits"]["train"]["n_samples"] == 1500  # activations.max_samples of 4000
    assert sources["splits"]["test"]["n_samples"] == 1000
    # the published MNIST-1D protocol: 5 seeds on fold 0 of 5 (an 80/20 split)
    (tmp_path / "ref").mkdir()
    jobs = dry_run_jobs(
        tmp_path / "ref",
        configfile=REPO / "config" / "experiments" / "reference-mnist1d.yaml",
        snakefile=REPO / "Snakefile",
    )
    counts = Counter(rule for rule, _ in jobs)
    assert counts["train"] == 5 and counts["probe"] == 5 and counts["folds"] == 1
    assert all(w["run"].split("/")[-1].startswith("fold0") for r, w in jobs if r == "train")
