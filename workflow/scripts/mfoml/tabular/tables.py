"""Tables of the tabular track: mean and std over folds of every driver's records."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from mfoml.analysis.statistics import fold_statistics
from mfoml.tabular.search import SEARCH_PARAMS, XGB_SEARCH_PARAMS, hparam_effects, param_label

log = logging.getLogger(__name__)


def mean_std(
    frame: pd.DataFrame, by: Sequence[str], columns: Sequence[str] | None = None
) -> pd.DataFrame:
    """Mean and (sample, ddof=1) standard deviation over folds of numeric ``columns``.

    Returns one row per group with ``<col>_mean``, ``<col>_std``, ``<col>_n`` (the folds with a
    finite value; NaN and inf are left out) and ``n_folds`` (the folds in the group). The
    standard deviation is NaN where fewer than two folds have a finite value (undefined, not 0),
    the same convention as :func:`mfoml.analysis.aggregate.summarize` (both use
    :func:`mfoml.analysis.statistics.fold_statistics`).
    """
    if columns is None:
        columns = [
            c
            for c in frame.columns
            if c not in by and c != "fold" and pd.api.types.is_numeric_dtype(frame[c])
        ]
    out = fold_statistics(frame, by, columns)
    # same grouping, same order of appearance as fold_statistics
    out["n_folds"] = frame.groupby(list(by), sort=False, dropna=False).size().to_numpy()
    return out


def aggregate(results: Mapping[str, Sequence[Mapping[str, Any]]]) -> dict[str, pd.DataFrame]:
    """Build the tabular tables (mean and std over folds) from per-data-set result dicts.

    Parameters
    ----------
    results : ``{"baselines": [...], "rf_search": [...], "xgb_search": [...], "wavelet": [...],
        "boosting": [...], "importance": [...], "noise": [...], "synthetic": [...],
        "meta": [...]}``, each a list of the dicts the drivers
        returned (one per data set; ``meta`` entries are ``{dataset, task, n_samples,
        n_features, n_classes}``). Missing keys are skipped.

    Returns
    -------
    ``{table name: DataFrame}``; names are the ``results/tables/tabular_<name>.csv`` stems.
    """
    t: dict[str, pd.DataFrame] = {}
    meta = pd.DataFrame(list(results.get("meta", [])))
    if results.get("baselines"):
        rows = pd.DataFrame([r for res in results["baselines"] for r in res["rows"]])
        t["baselines"] = mean_std(rows, ["dataset", "model"])
        per_class, conf = [], []
        for res in results["baselines"]:
            for d in res["details"]:
                m = d["metrics"]
                if "per_class" not in m:
                    continue
                for pc in m["per_class"]:
                    per_class.append(
                        {"dataset": _ds(res), "model": d["model"], "fold": d["fold"], **pc}
                    )
                cm = np.asarray(m["confusion_matrix"])
                for i, j in itertools.product(range(cm.shape[0]), range(cm.shape[1])):
                    conf.append(
                        {
                            "dataset": _ds(res),
                            "model": d["model"],
                            "fold": d["fold"],
                            "true": i,
                            "predicted": j,
                            "count": int(cm[i, j]),
                        }
                    )
        if per_class:
            pc = pd.DataFrame(per_class)
            t["per_class"] = mean_std(
                pc, ["dataset", "model", "class"], ["precision", "recall", "f1", "support"]
            )
            cf = pd.DataFrame(conf)
            t["confusion"] = (
                cf.groupby(["dataset", "model", "true", "predicted"], sort=False)["count"]
                .sum()
                .reset_index()
            )
    for part, params in (("rf_search", SEARCH_PARAMS), ("xgb_search", XGB_SEARCH_PARAMS)):
        if results.get(part):
            prefix = "" if part == "rf_search" else "xgb_"
            t[part], t[f"{part}_folds"], t[f"{prefix}hparams"] = _search_tables(
                results[part], params
            )
    if results.get("wavelet"):
        rows = pd.DataFrame([r for res in results["wavelet"] for r in res["rows"]])
        t["wavelet"] = mean_std(rows, ["dataset"])
        curve = pd.DataFrame([r for res in results["wavelet"] for r in res["curve"]])
        t["compression"] = mean_std(curve, ["dataset", "n_terms"], ["test_error", "val_error"])
        trees = pd.DataFrame([r for res in results["wavelet"] for r in res["trees"]])
        if not trees.empty:
            t["trees"] = mean_std(
                trees,
                ["dataset", "n_trees"],
                ["test_error_selected", "test_error_full", "n_terms", "n_wavelets"],
            )
        kinds = {_ds(res): res["error_kind"] for res in results["wavelet"]}
        for name in ("compression", "trees"):
            if name in t:
                t[name]["error_kind"] = t[name]["dataset"].map(kinds)
    if results.get("boosting"):
        t.update(_boosting_tables(results["boosting"]))
    if results.get("importance"):
        rows = pd.DataFrame([r for res in results["importance"] for r in res["rows"]])
        t["importance"] = mean_std(
            rows, ["dataset", "method", "feature", "feature_index"], ["importance", "rank"]
        )
        agree = pd.DataFrame([r for res in results["importance"] for r in res["agreement"]])
        t["rank_agreement"] = mean_std(agree, ["dataset", "pair"], ["spearman", "kendall"])
    if results.get("synthetic"):
        rows = pd.DataFrame([r for res in results["synthetic"] for r in res["rows"]])
        rows = rows.drop(columns=["top"])
        t["synthetic"] = mean_std(rows, ["dataset", "method", "k"], ["recovered"])
        t["synthetic"]["true_features"] = [
            " ".join(
                map(
                    str,
                    next(
                        res["true_features"]
                        for res in results["synthetic"]
                        if res["rows"][0]["dataset"] == ds
                    ),
                )
            )
            for ds in t["synthetic"]["dataset"]
        ]
        imp = pd.DataFrame([r for res in results["synthetic"] for r in res["importance"]])
        t["synthetic_importance"] = mean_std(
            imp, ["dataset", "method", "feature_index", "relevant"], ["importance"]
        )
    if results.get("noise"):
        rows = pd.DataFrame([r for res in results["noise"] for r in res["rows"]])
        status_cols = ["alpha_status", "forest_alpha_status"]
        t["noise"] = mean_std(rows.drop(columns=status_cols), ["dataset", "level"])
        st = rows.groupby(["dataset", "level"], sort=False)[status_cols].agg(
            lambda s: ";".join(sorted(set(s)))
        )
        t["noise"] = t["noise"].merge(st.reset_index(), on=["dataset", "level"])
    t["datasets"] = _dataset_summary(t, meta)
    return t


def _search_tables(
    results: Sequence[Mapping[str, Any]], params: Sequence[str]
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(summary, per-fold, hyper-parameter effects) tables of a nested search."""
    outer = pd.DataFrame([r for res in results for r in res["outer"]])
    inner = pd.DataFrame([r for res in results for r in res["inner"]])
    summ = mean_std(outer.drop(columns=["best_candidate"]), ["dataset"])
    summ = summ[[c for c in summ.columns if not c.startswith("best_")]]
    consensus = []
    for ds, grp in inner.groupby("dataset", sort=False):
        by_c = grp.groupby("candidate")["inner_mean"].mean()
        best_c = int(by_c.idxmax())
        row = grp[grp["candidate"] == best_c].iloc[0]
        label = param_label({p: row[p] for p in params if p in grp.columns})
        chosen = outer[outer["dataset"] == ds]["best_params"]
        consensus.append(
            {
                "dataset": ds,
                "best_config": label,
                "best_config_inner_mean": float(by_c.max()),
                "most_chosen": chosen.mode().iloc[0],
                "most_chosen_folds": int((chosen == chosen.mode().iloc[0]).sum()),
            }
        )
    summary = summ.merge(pd.DataFrame(consensus), on="dataset")
    return summary, outer, hparam_effects(inner, params)


def _boosting_tables(results: Sequence[Mapping[str, Any]]) -> dict[str, pd.DataFrame]:
    """Tables of the boosted-wavelet part (forest beside): per model, curves, importances."""

    def frame(key: str) -> pd.DataFrame:
        return pd.DataFrame([r for res in results for r in res[key]])

    t = {
        "boosting": mean_std(frame("rows"), ["dataset", "model"]),
        "boosting_compression": mean_std(
            frame("curve"), ["dataset", "model", "n_terms"], ["test_error", "val_error"]
        ),
        "boosting_stages": mean_std(
            frame("stages"), ["dataset", "model", "n_stages"], ["n_wavelets", "test_error"]
        ),
        "boosting_importance": mean_std(
            frame("importance"),
            ["dataset", "model", "feature", "feature_index"],
            ["importance", "rank"],
        ),
    }
    agree = frame("agreement")
    t["boosting_rank_agreement"] = (
        mean_std(agree, ["dataset", "pair"], ["spearman", "kendall"])
        if not agree.empty
        else pd.DataFrame()
    )
    kinds = {_ds(res): res["error_kind"] for res in results}
    for name in ("boosting_compression", "boosting_stages"):
        t[name]["error_kind"] = t[name]["dataset"].map(kinds)
    return t


def _ds(res: Mapping[str, Any]) -> str:
    for key in ("rows", "outer"):
        if res.get(key):
            return str(res[key][0]["dataset"])
    return ""


def _dataset_summary(t: Mapping[str, pd.DataFrame], meta: pd.DataFrame) -> pd.DataFrame:
    """Small vs large vs noisy data sets side by side (one row per data set and noise level)."""
    if meta.empty:
        return pd.DataFrame()
    out = []
    for _, m in meta.iterrows():
        ds = m["dataset"]
        base = {
            "dataset": ds,
            "task": m["task"],
            "n_samples": int(m["n_samples"]),
            "n_features": int(m["n_features"]),
            "n_classes": int(m["n_classes"]),
            "size": m.get("size", ""),
        }
        rec = dict(base, condition="clean", noise_level=0.0)
        if "baselines" in t:
            b = t["baselines"][t["baselines"]["dataset"] == ds]
            if not b.empty:
                best = b.loc[b["score_mean"].idxmax()]
                rec["best_baseline"] = best["model"]
                rec["best_baseline_score"] = best["score_mean"]
                rf = b[b["model"] == "random_forest"]
                if not rf.empty:
                    rec["rf_score"] = float(rf["score_mean"].iloc[0])
        for part, col in (("rf_search", "nested_rf_score"), ("xgb_search", "nested_xgb_score")):
            if part in t:
                s = t[part][t[part]["dataset"] == ds]
                if not s.empty:
                    rec[col] = float(s["score_mean"].iloc[0])
        if "wavelet" in t:
            w = t["wavelet"][t["wavelet"]["dataset"] == ds]
            if not w.empty:
                rec["wavelet_score"] = float(w["score_mean"].iloc[0])
                rec["wavelet_kept_fraction"] = float(w["kept_fraction_mean"].iloc[0])
        if "boosting" in t:
            bo = t["boosting"][t["boosting"]["dataset"] == ds]
            for _, r in bo[bo["model"] != "wavelet_forest"].iterrows():
                rec[f"{r['model']}_wavelet_score"] = float(r["score_mean"])
                rec[f"{r['model']}_kept_fraction"] = float(r["kept_fraction_mean"])
        noise = t.get("noise")
        if noise is not None and not noise[noise["dataset"] == ds].empty:
            nd = noise[noise["dataset"] == ds]
            for _, r in nd.iterrows():
                rr = dict(rec) if r["level"] == 0 else dict(base)
                rr.update(
                    condition="clean" if r["level"] == 0 else f"noise {r['level']:g}",
                    noise_level=float(r["level"]),
                    noisy_forest_score=r["score_mean"],
                    alpha=r["alpha_mean"],
                    alpha_std=r["alpha_std"],
                )
                out.append(rr)
        else:
            out.append(rec)
    return pd.DataFrame(out)
