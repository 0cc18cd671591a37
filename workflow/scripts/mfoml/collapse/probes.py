"""Label-based evaluations of a frozen layer: linear probe, k-NN, and NCC per label set.

The usual evaluations of self-supervised encoders (``METHODS.md`` section 12), computed on the
per-layer activation dumps (float16 ``(N, D)`` memory maps) beside NCC:

:func:`linear_probe`
    A multinomial logistic regression on the standardised layer: the scikit-learn pipeline
    ``StandardScaler -> LogisticRegression(lbfgs, C)``, fitted on the training split and scored
    on the training and test splits. The training rows (all, or the given subset ``rows``, e.g.
    a stratified subsample from :func:`mfoml.data.subsample.stratified_subsample`) are read
    into float32 in chunks; scikit-learn needs them in memory. ``converged`` records whether
    lbfgs converged within ``max_iter`` (no warning is swallowed silently).
:func:`knn_accuracy`
    ``k``-nearest-neighbour majority vote (a tied vote goes to the smallest label, as in
    scikit-learn's ``KNeighborsClassifier``; equidistant neighbours at the k-th place are
    chosen arbitrarily), ``metric`` ``cosine`` (largest cosine similarity) or ``euclidean``.
    One pass over the training rows in blocks (each block converted to float64), keeping the
    running ``k`` nearest of every test row: memory ``O(n_test * (D + block + k))``, never
    ``n_train x n_test``. Written here because scikit-learn's ``KNeighborsClassifier`` needs
    the whole training set in memory as floats.
:func:`ncc_label_sets`
    NCC accuracy (class means of the training split, accuracy on the training and test splits)
    and NC1 against each of several label sets of the same samples (e.g. CIFAR-100's fine and
    coarse labels), through :mod:`mfoml.collapse.measures` (imported on call).
:func:`layer_probe_table`
    All of the above per layer and label set of a pair of activation dumps (train, test), with
    the NCC mismatch marked as not applicable (:data:`NCC_MISMATCH_NA`; no classifier).

This module imports neither torch nor scikit-learn at import time. Features are any ``(N, D)``
array-like supporting row slicing (``np.ndarray``, ``np.memmap``).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

__all__ = [
    "KNN_METRICS",
    "NCC_MISMATCH_NA",
    "knn_accuracy",
    "layer_probe_table",
    "linear_probe",
    "ncc_label_sets",
]

KNN_METRICS = ("cosine", "euclidean")


def _labels(y: Any, n: int, what: str) -> np.ndarray:
    arr = np.asarray(y)
    if arr.shape != (n,):
        raise ValueError(f"{what}: labels must have shape ({n},), got {arr.shape}")
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{what}: labels must be integers, got dtype {arr.dtype}")
    return arr.astype(np.int64, copy=False)


def _rows(x: Any, what: str) -> int:
    shape = getattr(x, "shape", None)
    if shape is None or len(shape) != 2:
        raise ValueError(f"{what}: features must have shape (N, D), got {shape}")
    return int(shape[0])


def _as_f32(x: Any, rows: np.ndarray | None = None, chunk_size: int = 8192) -> np.ndarray:
    """Rows of ``x`` (all, or ``rows`` in that order) as a float32 array, read in chunks."""
    n = int(x.shape[0]) if rows is None else len(rows)
    out = np.empty((n, int(x.shape[1])), dtype=np.float32)
    for a in range(0, n, chunk_size):
        sel = slice(a, min(n, a + chunk_size))
        out[sel] = x[sel] if rows is None else x[rows[sel]]
    if not np.isfinite(out).all():
        raise ValueError("features contain NaN or infinite values")
    return out


def linear_probe(
    x_train: Any,
    y_train: Any,
    x_test: Any = None,
    y_test: Any = None,
    *,
    C: float = 1.0,
    max_iter: int = 1000,
    rows: Any = None,
) -> dict[str, Any]:
    """Linear-probe accuracy of a frozen layer.

    Parameters
    ----------
    x_train, x_test : ``(N, D)`` features (float16 memmaps are fine); ``x_test`` optional.
    y_train, y_test : ``(N,)`` integer labels.
    C : inverse L2 regularisation strength of the logistic regression.
    max_iter : lbfgs iterations.
    rows : fit on these training rows only (sorted int indices; ``None``: all); the training
        accuracy is measured on the rows fitted.

    Returns
    -------
    dict ``accuracy_train, accuracy_test`` (NaN without a test split), ``n_fit, n_iter,
    converged``.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    n = _rows(x_train, "linear_probe x_train")
    y = _labels(y_train, n, "linear_probe y_train")
    if not C > 0:
        raise ValueError(f"linear probe C must be > 0, got {C}")
    if rows is not None:
        rows = np.asarray(rows, dtype=np.int64)
        if rows.ndim != 1 or (len(rows) and (rows.min() < 0 or rows.max() >= n)):
            raise ValueError(f"linear_probe rows must be indices into the {n} training rows")
    xf = _as_f32(x_train, rows)
    yf = y if rows is None else y[rows]
    if len(np.unique(yf)) < 2:
        raise ValueError("linear_probe: the training labels hold a single class")
    pipe = make_pipeline(StandardScaler(), LogisticRegression(C=float(C), max_iter=int(max_iter)))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        pipe.fit(xf, yf)
    converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
    for w in caught:
        if not issubclass(w.category, ConvergenceWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    acc_train = float(np.mean(pipe.predict(xf) == yf))
    acc_test = float("nan")
    if x_test is not None:
        nt = _rows(x_test, "linear_probe x_test")
        yt = _labels(y_test, nt, "linear_probe y_test")
        pred = (
            np.concatenate(
                [pipe.predict(_as_f32(x_test[a : a + 8192])) for a in range(0, nt, 8192)]
            )
            if nt
            else np.zeros(0, dtype=np.int64)
        )
        acc_test = float(np.mean(pred == yt)) if nt else float("nan")
    n_iter = int(np.max(pipe[-1].n_iter_))
    return {
        "accuracy_train": acc_train,
        "accuracy_test": acc_test,
        "n_fit": len(yf),
        "n_iter": n_iter,
        "converged": converged,
    }


def knn_accuracy(
    x_train: Any,
    y_train: Any,
    x_test: Any,
    y_test: Any,
    *,
    k: int = 20,
    metric: str = "cosine",
    block_size: int = 4096,
) -> float:
    """Accuracy of the ``k``-NN majority vote of the training rows on the test rows.

    Parameters
    ----------
    x_train : ``(N, D)`` training features (memmap fine; read once, in blocks).
    y_train : ``(N,)`` integer labels.
    x_test, y_test : ``(M, D)`` and ``(M,)``.
    k : neighbours (``1 <= k <= N``).
    metric : ``cosine`` or ``euclidean``.
    block_size : training rows per block.

    Returns
    -------
    float, the fraction of test rows whose vote equals their label (NaN when ``M = 0``).
    """
    n = _rows(x_train, "knn x_train")
    m = _rows(x_test, "knn x_test")
    ytr = _labels(y_train, n, "knn y_train")
    yte = _labels(y_test, m, "knn y_test")
    if metric not in KNN_METRICS:
        raise ValueError(f"knn metric must be one of {KNN_METRICS}, got {metric!r}")
    if not 1 <= int(k) <= n:
        raise ValueError(f"knn k must be in [1, n_train={n}], got {k}")
    if int(x_train.shape[1]) != int(x_test.shape[1]):
        raise ValueError(
            f"knn: train and test features differ in dimension ({x_train.shape[1]} vs "
            f"{x_test.shape[1]})"
        )
    if m == 0:
        return float("nan")
    k = int(k)
    q = _as_f32(x_test).astype(np.float64)
    if metric == "cosine":
        q /= np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
    q_sq = (q * q).sum(axis=1)
    best_d = np.full((m, k), np.inf)
    best_i = np.full((m, k), -1, dtype=np.int64)
    for a in range(0, n, block_size):
        t = np.asarray(x_train[a : a + block_size], dtype=np.float64)
        if not np.isfinite(t).all():
            raise ValueError("knn: training features contain NaN or infinite values")
        if metric == "cosine":
            t /= np.maximum(np.linalg.norm(t, axis=1, keepdims=True), 1e-12)
            d = -(q @ t.T)  # smaller is nearer
        else:
            d = q_sq[:, None] - 2.0 * (q @ t.T) + (t * t).sum(axis=1)[None, :]
        idx = np.broadcast_to(np.arange(a, a + len(t)), d.shape)
        cand_d = np.concatenate([best_d, d], axis=1)
        cand_i = np.concatenate([best_i, idx], axis=1)
        keep = np.argpartition(cand_d, k - 1, axis=1)[:, :k]  # the k nearest (ties: any)
        best_d = np.take_along_axis(cand_d, keep, axis=1)
        best_i = np.take_along_axis(cand_i, keep, axis=1)
    votes = ytr[best_i]  # (M, k)
    n_cls = int(max(ytr.max(), yte.max())) + 1
    counts = np.zeros((m, n_cls), dtype=np.int64)
    np.add.at(counts, (np.repeat(np.arange(m), k), votes.ravel()), 1)
    return float(np.mean(counts.argmax(axis=1) == yte))


def ncc_label_sets(
    x_train: Any,
    train_labels: Mapping[str, Any],
    x_test: Any = None,
    test_labels: Mapping[str, Any] | None = None,
    *,
    n_classes: Mapping[str, int] | None = None,
    chunk_size: int = 4096,
) -> dict[str, dict[str, float]]:
    """NCC accuracy and NC1 of one layer against each label set.

    Parameters
    ----------
    x_train : ``(N, D)`` training features; the class means of every label set come from it.
    train_labels : ``{label_set: (N,) labels}``, e.g. ``{"fine": ..., "coarse": ...}``.
    x_test : ``(M, D)`` test features (optional).
    test_labels : ``{label_set: (M,) labels}`` with the same keys (needed with ``x_test``).
    n_classes : classes per label set (default: ``max label + 1`` over both splits).
    chunk_size : rows per chunk.

    Returns
    -------
    ``{label_set: {n_classes, ncc_accuracy_train, ncc_accuracy_test, nc1}}``
    (``ncc_accuracy_test`` NaN without a test split).
    """
    from mfoml.collapse.measures import collapse_metrics, ncc_accuracy

    n = _rows(x_train, "ncc x_train")
    if not train_labels:
        raise ValueError("ncc_label_sets: no label set given")
    if x_test is not None:
        if test_labels is None or set(test_labels) != set(train_labels):
            raise ValueError(
                f"ncc_label_sets: test_labels must have the label sets {sorted(train_labels)}"
            )
        m = _rows(x_test, "ncc x_test")
    out: dict[str, dict[str, float]] = {}
    for name, labels in train_labels.items():
        y = _labels(labels, n, f"label set {name!r} (train)")
        yt = None if x_test is None else _labels(test_labels[name], m, f"label set {name!r} (test)")
        c = None if n_classes is None else n_classes.get(name)
        if c is None:
            c = int(max(y.max(), -1 if yt is None or not len(yt) else yt.max())) + 1
        met = collapse_metrics(x_train, y, int(c), chunk_size=chunk_size)
        acc_test = float("nan")
        if x_test is not None and m:
            acc_test = ncc_accuracy(x_test, yt, met["means"].means_, chunk_size=chunk_size)
        out[name] = {
            "n_classes": int(c),
            "ncc_accuracy_train": float(met["ncc_accuracy"]),
            "ncc_accuracy_test": float(acc_test),
            "nc1": float(met["nc1"]),
        }
    return out


#: Status of the NCC mismatch in the tables of self-supervised runs (there is no classifier).
NCC_MISMATCH_NA = "not_applicable: no classifier (self-supervised network)"


def layer_probe_table(
    train_dump: Any,
    test_dump: Any,
    label_sets: Mapping[str, tuple[Any, Any]],
    *,
    layers: list[str] | None = None,
    linear: Mapping[str, Any] | None = None,
    fit_rows: Any = None,
    knn: Mapping[str, Any] | None = None,
    n_classes: Mapping[str, int] | None = None,
    chunk_size: int = 4096,
) -> Any:
    """NCC accuracy, NC1, linear-probe and k-NN accuracy per layer and label set.

    Parameters
    ----------
    train_dump, test_dump : activation dumps of one checkpoint (``layers``, ``layer(name)``
        returning ``(N, D)`` float16 memmaps, ``entry(name)`` with ``index``, ``dim``).
    label_sets : ``{name: (train labels (N,), test labels (M,))}`` aligned with the dumps.
    layers : subset of layers (default: all of the train dump, in order).
    linear : keyword arguments of :func:`linear_probe` (``C, max_iter``).
    fit_rows : the training rows the linear probe is fitted on (``None``: all).
    knn : keyword arguments of :func:`knn_accuracy` (``k, metric``); ``k`` is capped at the
        number of training rows.
    n_classes : classes per label set (default: ``max label + 1``).
    chunk_size : rows per chunk of the NCC passes.

    One line per layer and label set goes to the logger ``mfoml.collapse.probes``.

    Returns
    -------
    pandas.DataFrame, one row per (layer, label set): ``layer, layer_index, dim, label_set,
    n_classes, n_train, n_test, ncc_accuracy_train, ncc_accuracy_test, nc1,
    linear_probe_train, linear_probe_test, linear_probe_converged, linear_probe_n_fit,
    knn_test, knn_k, ncc_mismatch`` (always NaN) and ``ncc_mismatch_status``
    (:data:`NCC_MISMATCH_NA`).
    """
    import pandas as pd

    names = list(train_dump.layers if layers is None else layers)
    missing = [n for n in names if n not in train_dump.layers or n not in test_dump.layers]
    if missing:
        raise KeyError(f"layers {missing} are not in both dumps ({train_dump.layers})")
    linear = dict(linear or {})
    knn = dict(knn or {})
    rows = []
    for name in names:
        entry = train_dump.entry(name)
        xtr, xte = train_dump.layer(name), test_dump.layer(name)
        ncc = ncc_label_sets(
            xtr,
            {s: tr for s, (tr, _) in label_sets.items()},
            xte,
            {s: te for s, (_, te) in label_sets.items()},
            n_classes=n_classes,
            chunk_size=chunk_size,
        )
        for s, (ytr, yte) in label_sets.items():
            lp = linear_probe(xtr, ytr, xte, yte, rows=fit_rows, **linear)
            k = min(int(knn.get("k", 20)), len(ytr))
            acc_knn = knn_accuracy(xtr, ytr, xte, yte, **{**knn, "k": k})
            rows.append(
                {
                    "layer": name,
                    "layer_index": int(entry["index"]),
                    "dim": int(entry["dim"]),
                    "label_set": s,
                    "n_classes": ncc[s]["n_classes"],
                    "n_train": int(xtr.shape[0]),
                    "n_test": int(xte.shape[0]),
                    "ncc_accuracy_train": ncc[s]["ncc_accuracy_train"],
                    "ncc_accuracy_test": ncc[s]["ncc_accuracy_test"],
                    "nc1": ncc[s]["nc1"],
                    "linear_probe_train": lp["accuracy_train"],
                    "linear_probe_test": lp["accuracy_test"],
                    "linear_probe_converged": lp["converged"],
                    "linear_probe_n_fit": lp["n_fit"],
                    "knn_test": acc_knn,
                    "knn_k": k,
                    "ncc_mismatch": float("nan"),
                    "ncc_mismatch_status": NCC_MISMATCH_NA,
                }
            )
            log.info(
                "layer %s (%s): ncc test %.4f, linear probe test %.4f, %d-NN test %.4f, nc1 %.4g",
                name,
                s,
                ncc[s]["ncc_accuracy_test"],
                lp["accuracy_test"],
                k,
                acc_knn,
                ncc[s]["nc1"],
            )
    return pd.DataFrame(rows)
