"""Run-level inference: correlations whose unit of inference is the run.

Checkpoints of one run are not independent, and layer measures and accuracy both trend with
training, so a rank correlation over every (run, checkpoint) point pooled answers "do both
change during training?" (nearly always yes), not "do runs with a smoother layer generalize
better?". Here every test has one value per run (METHODS section 11):

- per checkpoint epoch, a feature measured at that checkpoint against the run's accuracy at the
  same checkpoint (outcome ``accuracy``) and against its final accuracy (``final_accuracy``);
  the experiment's last checkpoint is the headline;
- per-run summaries of the dynamics (:func:`dynamics_features`) against the final accuracy.

The statistic is Spearman's rho (Pearson correlation of average ranks). Its p-value is a
two-sided permutation test that exchanges the outcome between runs: a permutation assigns a
run's outcome to another run, never mixes checkpoints. With ``strata`` (e.g. the model, or the
experiment when experiments are pooled) only runs of the same stratum are exchanged (a
restricted permutation test of association within strata; the between-strata structure is the
same in every permutation). When the number of distinct permutations (the product of n_s! over
strata) is at most ``n_permutations`` they are all enumerated and the p-value is exact;
otherwise ``n_permutations`` random ones give ``p = (1 + #{|rho*| >= |rho|}) / (1 + B)``, which
is valid at any B (Phipson & Smyth 2010). The confidence interval is the percentile interval of
rho over bootstrap resamples of runs with replacement (within strata when given); resamples in
which a variable is constant are left out and counted.

Why this is written here: ``scipy.stats.permutation_test`` has no restricted (stratified)
permutations and ``scipy.stats.bootstrap`` no stratified resampling. Both are vectorised over
permutations / resamples (one gather and one matrix product per block of permutations, no Python
loop per permutation). tests/test_runstats.py checks them against ``scipy.stats.spearmanr`` and
``scipy.stats.permutation_test`` and by simulating null studies.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
from scipy.stats import rankdata

__all__ = [
    "CHECKPOINT_FEATURES",
    "DYNAMICS_FEATURES",
    "CORRELATION_COLUMNS",
    "PermutationResult",
    "BootstrapResult",
    "spearman_rho",
    "permutation_test",
    "bootstrap_interval",
    "correlate",
    "holm",
    "final_accuracy",
    "checkpoint_correlations",
    "dynamics_features",
    "dynamics_correlations",
    "merge_final",
]

#: Features measured at one checkpoint (columns of the correlation points table).
CHECKPOINT_FEATURES = ["alpha_last_inner", "alpha_depth_slope", "ncc_mismatch_penultimate"]
#: Per-run summaries of the dynamics (columns of :func:`dynamics_features`).
DYNAMICS_FEATURES = ["alpha_last_inner_change", "alpha_depth_slope_final", "ncc_epoch_below"]
#: Columns of the correlation tables.
CORRELATION_COLUMNS = [
    "scope",
    "experiment",
    "epoch",
    "headline",
    "feature",
    "outcome",
    "rho",
    "p_value",
    "p_holm",
    "ci_low",
    "ci_high",
    "n_runs",
    "n_permutations",
    "exact",
    "n_boot_valid",
    "status",
]
_TOL = 1e-10  # relative tolerance for |rho*| >= |rho| (floating-point ties of the statistic)
_BLOCK = 2_000_000  # elements per block of permutations / resamples


class PermutationResult(NamedTuple):
    """Spearman rho, its two-sided permutation p-value, the number of permutations used and
    whether they were all enumerated (exact p-value)."""

    rho: float
    p_value: float
    n_permutations: int
    exact: bool


class BootstrapResult(NamedTuple):
    """Percentile bootstrap interval of rho and the number of resamples in which rho was
    defined (no constant variable)."""

    low: float
    high: float
    n_valid: int


def _unit_ranks(v: np.ndarray) -> np.ndarray | None:
    """Average ranks of ``v`` (n,), centred and scaled to unit norm; None if ``v`` is constant."""
    r = rankdata(v)
    r = r - r.mean()
    norm = math.sqrt(float(r @ r))
    return None if norm == 0 else r / norm


def spearman_rho(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> float:
    """Spearman's rho of two finite vectors (n,): Pearson correlation of average ranks; NaN if
    either is constant."""
    zx, zy = _unit_ranks(np.asarray(x, float)), _unit_ranks(np.asarray(y, float))
    return math.nan if zx is None or zy is None else float(zx @ zy)


def _codes(strata: Sequence[Any] | np.ndarray | None, n: int) -> np.ndarray:
    if strata is None:
        return np.zeros(n, dtype=np.int64)
    codes = pd.factorize(pd.Series(list(strata)), sort=True)[0]
    if len(codes) != n:
        raise ValueError(f"strata has {len(codes)} entries for {n} runs")
    return codes.astype(np.int64)


def _n_distinct(codes: np.ndarray) -> int:
    return math.prod(math.factorial(int(c)) for c in np.bincount(codes))


def _all_permutations(codes: np.ndarray) -> np.ndarray:
    """Every permutation (P, n) that maps each index to an index of the same stratum."""
    n = len(codes)
    perms = np.arange(n)[None, :]
    for s in np.unique(codes):
        members = np.flatnonzero(codes == s)
        if len(members) < 2:
            continue
        ps = np.array(list(itertools.permutations(members)), dtype=np.int64)
        new = np.repeat(perms, len(ps), axis=0)
        new[:, members] = np.tile(ps, (len(perms), 1))
        perms = new
    return perms


def _random_permutations(codes: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """``size`` random within-stratum permutations (size, n): row b maps i to perm[b, i]."""
    n = len(codes)
    keys = rng.random((size, n))
    order = np.lexsort((keys, np.broadcast_to(codes, (size, n))), axis=-1)
    perms = np.empty_like(order)
    perms[:, np.argsort(codes, kind="stable")] = order
    return perms


def permutation_test(
    x: Sequence[float] | np.ndarray,
    y: Sequence[float] | np.ndarray,
    strata: Sequence[Any] | np.ndarray | None = None,
    n_permutations: int = 9999,
    seed: int = 0,
) -> PermutationResult:
    """Spearman rho of ``x`` and ``y`` (finite, (n,), one value per run) and its two-sided
    permutation p-value (outcome exchanged between runs, within ``strata`` when given).

    Exact (every permutation, identity included) when their number is at most
    ``n_permutations``; otherwise ``n_permutations`` random permutations. NaN rho and p when a
    variable is constant.
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    n = len(x)
    if len(y) != n:
        raise ValueError(f"x has {n} values, y has {len(y)}")
    zx, zy = _unit_ranks(x), _unit_ranks(y)
    if zx is None or zy is None:
        return PermutationResult(math.nan, math.nan, 0, False)
    rho = float(zx @ zy)
    bound = abs(rho) * (1 - _TOL) - _TOL
    codes = _codes(strata, n)
    if _n_distinct(codes) <= n_permutations:
        perms = _all_permutations(codes)
        hits = int((np.abs(zy[perms] @ zx) >= bound).sum())
        return PermutationResult(rho, hits / len(perms), len(perms), True)
    rng = np.random.default_rng(seed)
    hits, done, block = 0, 0, max(1, _BLOCK // n)
    while done < n_permutations:
        size = min(block, n_permutations - done)
        perms = _random_permutations(codes, size, rng)
        hits += int((np.abs(zy[perms] @ zx) >= bound).sum())
        done += size
    return PermutationResult(rho, (1 + hits) / (1 + n_permutations), n_permutations, False)


def _resample_indices(codes: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    idx = np.empty((size, len(codes)), dtype=np.int64)
    for s in np.unique(codes):
        members = np.flatnonzero(codes == s)
        idx[:, members] = members[rng.integers(0, len(members), (size, len(members)))]
    return idx


def _row_spearman(xb: np.ndarray, yb: np.ndarray) -> np.ndarray:
    """Spearman rho of every row pair of (B, n) arrays; NaN where a row is constant."""
    rx = rankdata(xb, axis=1)
    ry = rankdata(yb, axis=1)
    rx -= rx.mean(axis=1, keepdims=True)
    ry -= ry.mean(axis=1, keepdims=True)
    den = np.sqrt((rx * rx).sum(axis=1) * (ry * ry).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (rx * ry).sum(axis=1) / den, np.nan)


def bootstrap_interval(
    x: Sequence[float] | np.ndarray,
    y: Sequence[float] | np.ndarray,
    strata: Sequence[Any] | np.ndarray | None = None,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> BootstrapResult:
    """Percentile bootstrap interval (``level``) of Spearman's rho, resampling runs (rows of
    ``x``, ``y``, (n,)) with replacement, within ``strata`` when given."""
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    x, y = np.asarray(x, float), np.asarray(y, float)
    codes = _codes(strata, len(x))
    rng = np.random.default_rng(seed)
    rhos, done, block = [], 0, max(1, _BLOCK // max(1, len(x)))
    while done < n_boot:
        size = min(block, n_boot - done)
        idx = _resample_indices(codes, size, rng)
        rhos.append(_row_spearman(x[idx], y[idx]))
        done += size
    r = np.concatenate(rhos) if rhos else np.empty(0)
    r = r[np.isfinite(r)]
    if len(r) == 0:
        return BootstrapResult(math.nan, math.nan, 0)
    low, high = np.quantile(r, [(1 - level) / 2, (1 + level) / 2])
    return BootstrapResult(float(low), float(high), int(len(r)))


def correlate(
    x: Sequence[float] | np.ndarray,
    y: Sequence[float] | np.ndarray,
    strata: Sequence[Any] | np.ndarray | None = None,
    min_runs: int = 3,
    n_permutations: int = 9999,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> dict[str, Any]:
    """Rho, permutation p-value and bootstrap interval of one feature and one outcome.

    ``x``, ``y`` : (n,), one value per run; pairs with a NaN drop out (``+inf`` is a valid
    value: it ranks last). Returns ``rho, p_value, ci_low, ci_high, n_runs, n_permutations,
    exact, n_boot_valid, status`` with ``status`` one of ``ok``, ``no_data`` (no complete
    pair), ``too_few_runs`` (fewer than ``min_runs``) and ``constant``; numbers are NaN unless
    ``ok``.
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = ~np.isnan(x) & ~np.isnan(y)
    st = None if strata is None else np.asarray(list(strata), dtype=object)[ok]
    x, y, n = x[ok], y[ok], int(ok.sum())
    out: dict[str, Any] = {
        "rho": math.nan,
        "p_value": math.nan,
        "ci_low": math.nan,
        "ci_high": math.nan,
        "n_runs": n,
        "n_permutations": 0,
        "exact": False,
        "n_boot_valid": 0,
    }
    if n == 0:
        return {**out, "status": "no_data"}
    if n < min_runs:
        return {**out, "status": "too_few_runs"}
    if np.ptp(rankdata(x)) == 0 or np.ptp(rankdata(y)) == 0:
        return {**out, "status": "constant"}
    perm = permutation_test(x, y, st, n_permutations, seed)
    boot = bootstrap_interval(x, y, st, n_boot, level, seed)
    return {
        **out,
        "rho": perm.rho,
        "p_value": perm.p_value,
        "ci_low": boot.low,
        "ci_high": boot.high,
        "n_permutations": perm.n_permutations,
        "exact": perm.exact,
        "n_boot_valid": boot.n_valid,
        "status": "ok",
    }


def holm(p: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values (family-wise error); NaN entries stay NaN and are not
    counted in the family."""
    p = np.asarray(p, float)
    out = np.full_like(p, np.nan)
    idx = np.flatnonzero(np.isfinite(p))
    if len(idx) == 0:
        return out
    order = idx[np.argsort(p[idx], kind="stable")]
    m = len(order)
    adj = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    out[order] = adj
    return out


def final_accuracy(epochs: pd.DataFrame, column: str = "target_acc") -> pd.DataFrame:
    """Per run, the accuracy ``column`` at its last epoch of the epochs table.

    Returns ``run, final_epoch, final_accuracy`` (one row per run, in order of appearance).
    """
    if epochs.empty:
        return pd.DataFrame(columns=["run", "final_epoch", "final_accuracy"])
    last = epochs.loc[epochs.groupby("run", sort=False)["epoch"].idxmax()]
    return pd.DataFrame(
        {
            "run": last["run"].to_numpy(),
            "final_epoch": last["epoch"].astype(int).to_numpy(),
            "final_accuracy": pd.to_numeric(last[column], errors="coerce").to_numpy(float),
        }
    )


def _strata_values(part: pd.DataFrame, columns: Sequence[str]) -> np.ndarray | None:
    if not columns:
        return None
    return part[list(columns)].astype(str).agg("|".join, axis=1).to_numpy()


def _num(part: pd.DataFrame, column: str) -> np.ndarray:
    return pd.to_numeric(part[column], errors="coerce").to_numpy(float)


def _check_one_row_per_run(part: pd.DataFrame, what: str) -> None:
    dup = part["run"][part["run"].duplicated()]
    if len(dup):
        raise ValueError(f"{what}: run {dup.iloc[0]!r} has more than one row")


def _finish(rows: list[dict[str, Any]]) -> pd.DataFrame:
    table = pd.DataFrame(rows, columns=CORRELATION_COLUMNS)
    if table.empty:
        return table
    table["p_holm"] = np.nan
    for _, idx in table.groupby(["scope", "experiment"], sort=False).groups.items():
        table.loc[idx, "p_holm"] = holm(table.loc[idx, "p_value"].to_numpy(float))
    return table


def checkpoint_correlations(
    points: pd.DataFrame,
    features: Sequence[str] = CHECKPOINT_FEATURES,
    outcomes: Sequence[str] = ("accuracy", "final_accuracy"),
    strata: Sequence[str] = (),
    min_runs: int = 3,
    n_permutations: int = 9999,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """Per experiment, checkpoint epoch, feature and outcome: the correlation across runs.

    Parameters
    ----------
    points : one row per (run, checkpoint epoch) with ``experiment, run, epoch``, the
        ``features`` and the ``outcomes`` columns (``accuracy``: at that checkpoint;
        ``final_accuracy``: the run's last epoch; outcomes missing from the table are skipped).
    strata : run columns within which runs are exchanged / resampled (e.g. ``["model"]``).
    min_runs : fewer runs with both values give ``status = too_few_runs``.

    Returns
    -------
    :data:`CORRELATION_COLUMNS`: ``scope = within experiment`` rows per experiment and epoch
    (``headline`` marks the experiment's last checkpoint); with several experiments also
    ``scope = across experiments`` rows (``experiment = all``, each run at its own last
    checkpoint, permuted and resampled within experiment). ``p_holm`` is Holm-adjusted over
    the rows of one (scope, experiment).
    """
    outcomes = [o for o in outcomes if o in points.columns]
    rows: list[dict[str, Any]] = []
    opts = {"min_runs": min_runs, "n_permutations": n_permutations, "n_boot": n_boot}
    opts.update(level=level, seed=seed)

    def add(part: pd.DataFrame, head: dict[str, Any], strata_cols: Sequence[str]) -> None:
        _check_one_row_per_run(part, f"experiment {head['experiment']!r}, epoch {head['epoch']}")
        st = _strata_values(part, strata_cols)
        for feature in features:
            for outcome in outcomes:
                res = correlate(_num(part, feature), _num(part, outcome), st, **opts)
                rows.append({**head, "feature": feature, "outcome": outcome, **res})

    for name, exp in points.groupby("experiment", sort=False):
        last = int(exp["epoch"].max())
        for epoch, part in exp.groupby("epoch", sort=True):
            head = {
                "scope": "within experiment",
                "experiment": str(name),
                "epoch": int(epoch),
                "headline": int(epoch) == last,
            }
            add(part, head, strata)
    if points["experiment"].nunique() > 1:
        finals = points.loc[points.groupby("run", sort=False)["epoch"].idxmax()]
        head = {"scope": "across experiments", "experiment": "all", "epoch": -1, "headline": True}
        add(finals, head, ["experiment", *strata])
    return _finish(rows)


def dynamics_features(points: pd.DataFrame, ncc_threshold: float = 0.1) -> pd.DataFrame:
    """One row per run: summaries of its layer dynamics over its checkpoints.

    Parameters
    ----------
    points : one row per (run, checkpoint epoch) with ``run, epoch``, the
        :data:`CHECKPOINT_FEATURES` and, when present, ``final_accuracy`` (other run columns
        are kept).
    ncc_threshold : train NCC mismatch (a fraction of samples, in [0, 1]) below which the
        penultimate layer counts as simplified.

    Returns
    -------
    The run columns, ``first_epoch, last_epoch, n_checkpoints``,
    ``alpha_last_inner_change`` (alpha of the last inner layer at the last checkpoint minus at
    the first; NaN with one checkpoint or a missing value), ``alpha_depth_slope_final`` (slope
    of alpha over the inner layers' depth at the last checkpoint), ``ncc_epoch_below`` (the
    first checkpoint epoch at which the penultimate layer's NCC mismatch is below
    ``ncc_threshold``; NaN if never or without NCC values), ``ncc_never_below`` (True if it
    has NCC values and never falls below; NaN without values), ``final_accuracy``.
    """
    keep = [
        c
        for c in points.columns
        if c not in {"epoch", "accuracy", "target", "penultimate_layer", *CHECKPOINT_FEATURES}
        and not c.startswith("final_")
    ]
    rows = []
    for _, part in points.groupby("run", sort=False):
        part = part.sort_values("epoch", kind="stable")
        first, last = part.iloc[0], part.iloc[-1]
        alpha = pd.to_numeric(part["alpha_last_inner"], errors="coerce").to_numpy(float)
        mism = pd.to_numeric(part["ncc_mismatch_penultimate"], errors="coerce").to_numpy(float)
        finite = np.isfinite(mism)
        below = np.flatnonzero(finite & (mism < ncc_threshold))
        rows.append(
            {
                **{c: first[c] for c in keep},
                "first_epoch": int(first["epoch"]),
                "last_epoch": int(last["epoch"]),
                "n_checkpoints": len(part),
                "alpha_last_inner_change": float(alpha[-1] - alpha[0])
                if len(part) > 1
                else math.nan,
                "alpha_depth_slope_final": float(
                    pd.to_numeric(pd.Series([last["alpha_depth_slope"]]), errors="coerce")[0]
                ),
                "ncc_epoch_below": float(part["epoch"].iloc[below[0]]) if len(below) else math.nan,
                "ncc_never_below": (len(below) == 0) if finite.any() else math.nan,
                "final_accuracy": float(last["final_accuracy"])
                if "final_accuracy" in part
                else math.nan,
            }
        )
    return pd.DataFrame(rows)


def dynamics_correlations(
    dynamics: pd.DataFrame,
    features: Sequence[str] = DYNAMICS_FEATURES,
    outcome: str = "final_accuracy",
    strata: Sequence[str] = (),
    min_runs: int = 3,
    n_permutations: int = 9999,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """Per experiment and dynamics feature: the correlation across runs with ``outcome``.

    ``dynamics`` is :func:`dynamics_features` output. A run whose penultimate NCC mismatch never
    falls below the threshold counts as later than every observed ``ncc_epoch_below`` (+inf for
    the ranks) rather than dropping out. Rows as :func:`checkpoint_correlations` (``epoch`` is
    -1, ``headline`` True), with ``scope = across experiments`` rows when there are several.
    """
    frame = dynamics.copy()
    if "ncc_epoch_below" in frame and "ncc_never_below" in frame:
        never = frame["ncc_never_below"].map(lambda v: v is True or v == 1.0)
        frame["ncc_epoch_below"] = frame["ncc_epoch_below"].astype(float).mask(never, np.inf)
    rows: list[dict[str, Any]] = []
    opts = {"min_runs": min_runs, "n_permutations": n_permutations, "n_boot": n_boot}
    opts.update(level=level, seed=seed)

    def add(part: pd.DataFrame, scope: str, name: str, strata_cols: Sequence[str]) -> None:
        _check_one_row_per_run(part, f"experiment {name!r}")
        st = _strata_values(part, strata_cols)
        for feature in features:
            res = correlate(_num(part, feature), _num(part, outcome), st, **opts)
            head = {"scope": scope, "experiment": name, "epoch": -1, "headline": True}
            rows.append({**head, "feature": feature, "outcome": outcome, **res})

    for name, part in frame.groupby("experiment", sort=False):
        add(part, "within experiment", str(name), strata)
    if frame["experiment"].nunique() > 1:
        add(frame, "across experiments", "all", ["experiment", *strata])
    return _finish(rows)


def merge_final(points: pd.DataFrame, finals: pd.DataFrame) -> pd.DataFrame:
    """``points`` with the ``final_epoch, final_accuracy`` of :func:`final_accuracy` by run."""
    return points.merge(finals, on="run", how="left")
