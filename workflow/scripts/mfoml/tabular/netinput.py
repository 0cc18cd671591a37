"""A table's columns as a network's input: imputed and one-hot encoded inside the training fold.

The ``table`` source (and an OpenML table) stores every column as a number: numeric columns as
themselves, categorical (nominal) columns as the code of their sorted categories, an empty cell
as NaN (:mod:`mfoml.data.filesources`). The tabular track imputes and one-hot encodes inside each
fold (:mod:`mfoml.tabular.models`); a network (``arch: mlp``) gets the same treatment here, with
the same scikit-learn parts (``SimpleImputer``, ``OneHotEncoder``; unknown categories ignored):

- numeric columns: NaN -> the median of the column over the run's training rows, the values
  unchanged otherwise (as in a data set without missing values, no rescaling);
- nominal columns: NaN -> the most frequent code over the training rows, then one-hot over the
  column's categories (``meta["options"]["feature_types"][i]["categories"]``, all of the
  table's categories, so the width never depends on the fold; categories the table does not
  list are learnt from the training rows).

The transform is fitted on the training rows only (``train_idx``: the run's training folds,
after ``train.subset``, as ``split.npz`` records them) and is deterministic, so the ``train`` and
``activations`` jobs refit it from the same rows and get the same transform
(:func:`fold_encoder`). Output: float32 ``(N, d_enc)``, the numeric columns first (in table
order), then each nominal column's one-hot block (in table order).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["TableEncoder", "fold_encoder", "needs_encoding"]


def needs_encoding(meta: Mapping[str, Any], x_train: np.ndarray) -> bool:
    """Whether a data set's inputs need :class:`TableEncoder` before a network sees them.

    True for a ``tabular`` data set with nominal columns (``meta["options"]
    ["nominal_features"]``) or with a missing value (NaN) in its training split ``x_train``
    (``(N, d)``). Tables of plain numbers pass through unchanged (their runs are unaffected).
    """
    if meta.get("kind") != "tabular" or np.issubdtype(np.asarray(x_train[:0]).dtype, np.integer):
        return False
    if (meta.get("options") or {}).get("nominal_features"):
        return True
    return bool(np.isnan(np.asarray(x_train, dtype=np.float64)).any())


class TableEncoder:
    """Median/most-frequent imputation and one-hot encoding, fitted on training rows.

    Parameters
    ----------
    nominal : column indices of the categorical columns (integer codes, NaN = missing).
    categories : per nominal column (same order) its number of categories ``K`` (codes
        ``0..K-1``), or ``None`` to learn the codes from the rows ``fit`` sees.
    """

    def __init__(self, nominal: Sequence[int] = (), categories: Sequence[int | None] = ()) -> None:
        self.nominal = sorted(int(i) for i in nominal)
        self.categories = list(categories) or [None] * len(self.nominal)
        if len(self.categories) != len(self.nominal):
            raise ValueError("TableEncoder: one category count per nominal column")

    def fit(self, x: np.ndarray) -> TableEncoder:
        """Fit on the training rows ``x`` (float ``(n, d)``, NaN = missing); returns ``self``."""
        from sklearn.compose import ColumnTransformer
        from sklearn.impute import SimpleImputer
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import OneHotEncoder

        x = np.asarray(x, dtype=np.float64)
        d = x.shape[1]
        numeric = [i for i in range(d) if i not in set(self.nominal)]
        parts: list[tuple[str, Any, list[int]]] = []
        if numeric:
            imp = SimpleImputer(strategy="median", keep_empty_features=True)
            parts.append(("numeric", imp, numeric))
        for col, k in zip(self.nominal, self.categories, strict=True):
            cats: Any = "auto" if k is None else [np.arange(int(k), dtype=np.float64)]
            onehot = OneHotEncoder(categories=cats, handle_unknown="ignore", sparse_output=False)
            imp = SimpleImputer(strategy="most_frequent", keep_empty_features=True)
            parts.append((f"nominal{col}", make_pipeline(imp, onehot), [col]))
        self.transformer_ = ColumnTransformer(parts, sparse_threshold=0.0).fit(x)
        self.n_features_in_ = d
        self.n_features_out_ = int(self.transform(x[:1]).shape[1])
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        """Encode ``x`` (float ``(n, d)``) -> float32 ``(n, n_features_out_)``."""
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.n_features_in_:
            raise ValueError(
                f"TableEncoder: expected (n, {self.n_features_in_}) inputs, got {x.shape}"
            )
        return np.asarray(self.transformer_.transform(x), dtype=np.float32)

    __call__ = transform


def fold_encoder(meta: Mapping[str, Any], x_train: np.ndarray, train_idx: np.ndarray) -> Any:
    """The fitted :class:`TableEncoder` of a run, or ``None`` when the data need none.

    ``meta`` is the data set's meta, ``x_train`` its training split ``(N, d)`` (a memmap is
    fine), ``train_idx`` the run's training rows (int ``(n,)``). The category counts come from
    ``meta["options"]["feature_types"]`` where it lists them.
    """
    if not needs_encoding(meta, x_train):
        return None
    opts = meta.get("options") or {}
    nominal = [int(i) for i in opts.get("nominal_features") or []]
    types = opts.get("feature_types") or []
    counts: list[int | None] = []
    for i in nominal:
        cats = types[i].get("categories") if i < len(types) else None
        counts.append(len(cats) if cats else None)
    rows = np.asarray(x_train[np.sort(np.asarray(train_idx))], dtype=np.float64)
    return TableEncoder(nominal, counts).fit(rows)
