"""Classification and regression metrics, as plain JSON-able dicts.

The values agree with scikit-learn's own functions (``accuracy_score``,
``precision_score(average="macro", zero_division=0)``, ``recall_score``, ``confusion_matrix``,
``mean_absolute_error``, ``mean_squared_error``, ``r2_score``); the tests check that. They are
computed here from the confusion matrix so that every class ``0..n_classes-1`` is reported, also
a class absent from both ``y_true`` and ``y_pred`` in one fold (scikit-learn's functions would only
see the labels present unless ``labels=`` is passed).

Zero division
-------------
A class that is never predicted has precision 0/0; a class with no true samples has recall 0/0.
Both are reported as ``0.0`` (scikit-learn's ``zero_division=0``) and counted in the macro
averages over all ``n_classes`` classes, exactly as
``precision_score(y, p, labels=range(n_classes), average="macro", zero_division=0)``.
The flags ``precision_undefined`` / ``recall_undefined`` list the classes where that happened.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = [
    "accuracy",
    "classification_metrics",
    "confusion_matrix",
    "primary_score",
    "r2_score",
    "regression_metrics",
]


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Confusion matrix ``C[i, j]`` = number of samples of true class ``i`` predicted as ``j``.

    Parameters
    ----------
    y_true, y_pred : int arrays of shape (N,), values in ``[0, n_classes)``.
    n_classes : number of classes C.

    Returns
    -------
    np.ndarray of shape (C, C), int64.
    """
    yt = _as_labels(y_true, n_classes, "y_true")
    yp = _as_labels(y_pred, n_classes, "y_pred")
    if yt.shape != yp.shape:
        raise ValueError(f"y_true has shape {yt.shape} but y_pred has shape {yp.shape}")
    cm = np.bincount(yt * n_classes + yp, minlength=n_classes * n_classes)
    return cm.reshape(n_classes, n_classes).astype(np.int64)


def _as_labels(y: np.ndarray, n_classes: int, name: str) -> np.ndarray:
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        if not np.all(np.equal(np.mod(arr, 1), 0)):
            raise ValueError(f"{name} must hold integer class labels")
    arr = arr.astype(np.int64)
    if int(n_classes) < 1:
        raise ValueError(f"n_classes must be >= 1, got {n_classes}")
    if arr.size and (arr.min() < 0 or arr.max() >= n_classes):
        raise ValueError(
            f"{name} has labels outside [0, {n_classes}): min {arr.min()}, max {arr.max()}"
        )
    return arr


def classification_metrics(
    y_true: np.ndarray, y_pred: np.ndarray, n_classes: int
) -> dict[str, Any]:
    """Accuracy, macro precision/recall, per-class report and confusion matrix.

    Parameters
    ----------
    y_true, y_pred : int arrays of shape (N,), class labels in ``[0, n_classes)``; N >= 1.
    n_classes : number of classes C (classes absent from this split are still reported).

    Returns
    -------
    dict with (all plain Python types, JSON-able):
        ``accuracy`` (float, fraction in [0, 1]), ``precision_macro``, ``recall_macro``,
        ``f1_macro`` (unweighted means over all C classes, zero-division counted as 0),
        ``per_class``: list of C dicts ``{class, precision, recall, f1, support}``,
        ``precision_per_class``, ``recall_per_class`` (lists of length C), ``support`` (list of
        C ints: true samples per class), ``confusion_matrix`` (C x C nested list, rows true,
        columns predicted), ``precision_undefined`` / ``recall_undefined`` (classes with 0/0),
        ``n_samples``, ``n_classes``.
    """
    cm = confusion_matrix(y_true, y_pred, n_classes)
    n = int(cm.sum())
    if n == 0:
        raise ValueError("classification_metrics: empty y_true")
    tp = np.diag(cm).astype(np.float64)
    predicted = cm.sum(axis=0).astype(np.float64)
    support = cm.sum(axis=1)
    prec_undef = predicted == 0
    rec_undef = support == 0
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=~prec_undef)
    recall = np.divide(tp, support.astype(np.float64), out=np.zeros_like(tp), where=~rec_undef)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    per_class = [
        {
            "class": k,
            "precision": float(precision[k]),
            "recall": float(recall[k]),
            "f1": float(f1[k]),
            "support": int(support[k]),
        }
        for k in range(n_classes)
    ]
    return {
        "accuracy": float(tp.sum() / n),
        "precision_macro": float(precision.mean()),
        "recall_macro": float(recall.mean()),
        "f1_macro": float(f1.mean()),
        "precision_per_class": precision.tolist(),
        "recall_per_class": recall.tolist(),
        "support": support.astype(int).tolist(),
        "per_class": per_class,
        "confusion_matrix": cm.tolist(),
        "precision_undefined": np.flatnonzero(prec_undef).tolist(),
        "recall_undefined": np.flatnonzero(rec_undef).tolist(),
        "n_samples": n,
        "n_classes": int(n_classes),
    }


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, Any]:
    """Mean absolute error and its spread, MSE, RMSE and R^2.

    Parameters
    ----------
    y_true, y_pred : float arrays of shape (N,) or (N, L) (multi-output: errors are averaged
        uniformly over outputs, as scikit-learn's ``multioutput="uniform_average"``). Units are
        those of the target.

    Returns
    -------
    dict with ``mae`` (mean of |y - y_hat|), ``mae_std`` (population std, ddof=0, of the
    per-sample absolute error; for multi-output the per-sample error is the mean over
    outputs), ``mean_error`` (mean signed error y_hat - y, the bias), ``error_std`` (std of
    the signed error), ``mse``, ``rmse`` (per-output sqrt(MSE), averaged over outputs), ``r2`` (1 - SS_res/SS_tot per output, averaged; a
    constant target gives 1.0 when predicted exactly and 0.0 otherwise, as scikit-learn's
    ``force_finite=True``), ``n_samples``.
    """
    yt = np.asarray(y_true, dtype=np.float64)
    yp = np.asarray(y_pred, dtype=np.float64)
    if yt.shape != yp.shape:
        raise ValueError(f"y_true has shape {yt.shape} but y_pred has shape {yp.shape}")
    if yt.ndim not in (1, 2) or yt.shape[0] == 0:
        raise ValueError(f"regression_metrics: need (N,) or (N, L) with N >= 1, got {yt.shape}")
    if not (np.all(np.isfinite(yt)) and np.all(np.isfinite(yp))):
        raise ValueError("regression_metrics: y_true or y_pred contains NaN or inf")
    yt2 = yt.reshape(yt.shape[0], -1)
    yp2 = yp.reshape(yp.shape[0], -1)
    err = yp2 - yt2
    abs_err = np.abs(err).mean(axis=1)
    signed = err.mean(axis=1)
    mse_out = (err**2).mean(axis=0)
    mse = float(mse_out.mean())
    return {
        "mae": float(abs_err.mean()),
        "mae_std": float(abs_err.std()),
        "mean_error": float(signed.mean()),
        "error_std": float(signed.std()),
        "mse": mse,
        "rmse": float(np.sqrt(mse_out).mean()),
        "r2": _r2(yt2, yp2),
        "n_samples": int(yt.shape[0]),
    }


def _r2(yt2: np.ndarray, yp2: np.ndarray) -> float:
    """R^2 of ``(N, L)`` float64 arrays, averaged uniformly over the L outputs."""
    ss_res = ((yp2 - yt2) ** 2).sum(axis=0)
    ss_tot = ((yt2 - yt2.mean(axis=0)) ** 2).sum(axis=0)
    r2_out = np.where(
        ss_tot > 0,
        1.0 - np.divide(ss_res, ss_tot, out=np.zeros_like(ss_res), where=ss_tot > 0),
        np.where(ss_res == 0, 1.0, 0.0),
    )
    return float(r2_out.mean())


def r2_score(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Coefficient of determination ``1 - SS_res / SS_tot`` of targets ``(N,)`` or ``(N, L)``.

    Multi-output: averaged uniformly over outputs. A constant target gives 1.0 when predicted
    exactly and 0.0 otherwise (scikit-learn's ``force_finite=True``).
    """
    yt = np.asarray(y_true, dtype=np.float64)
    yp = np.asarray(y_pred, dtype=np.float64)
    if yt.shape != yp.shape:
        raise ValueError(f"y_true has shape {yt.shape} but y_pred has shape {yp.shape}")
    return _r2(yt.reshape(yt.shape[0], -1), yp.reshape(yp.shape[0], -1))


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Fraction in [0, 1] of the ``(N,)`` predictions equal to the labels."""
    return float(np.mean(np.asarray(y_true) == np.asarray(y_pred)))


def primary_score(task: str, y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """The model-selection score, higher is better: accuracy (classification) or R^2."""
    if task == "classification":
        return accuracy(y_true, y_pred)
    return r2_score(y_true, y_pred)
