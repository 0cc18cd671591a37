"""Declarative parameter constraints of the wavelet estimators and the sparsity probe.

One table per estimator family, written in scikit-learn's vocabulary
(``sklearn.utils._param_validation``) but as plain data, so that the sparsity probe with the fast
builder can check its settings without importing scikit-learn (``import sklearn.base`` costs
about 2 CPU-s, more than a small probe job; ``tests/test_startup.py``):

- ``("int", left, right, closed)``: ``Interval(Integral, left, right, closed=closed)``;
- ``("real", ...)``: ``Interval(Real, ...)``; ``("real_not_int", ...)``: ``Interval(RealNotInt, ...)``;
- a ``frozenset`` of strings: ``StrOptions``; ``None``, ``"boolean"``, ``"random_state"``: as in
  scikit-learn.

:func:`sklearn_constraints` turns a table into an estimator's ``_parameter_constraints`` (checked
by scikit-learn's ``_validate_params`` in ``fit``); :func:`check_params` checks a dict of values
against a table with the same rules and scikit-learn's message ("The 'n_trees' parameter of
sparsity_probe must be an int in the range [1, inf). Got 0 instead.").
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

__all__ = [
    "BOOSTING_PARAMS",
    "FOREST_PARAMS",
    "InvalidParameterError",
    "PROBE_PARAMS",
    "check_params",
    "sklearn_constraints",
]

_INT_GE1 = ("int", 1, None, "left")
_MAX_FEATURES = [_INT_GE1, ("real_not_int", 0.0, 1.0, "right"), frozenset({"sqrt", "log2"}), None]
_MIN_SAMPLES_LEAF = [_INT_GE1, ("real_not_int", 0.0, 1.0, "neither")]
_WAVELETS = {
    "norm_weight": [frozenset({"num_samples", "volume"})],
    "importance_tau": [("real", 0.0, None, "neither")],
}

#: The forest builders' settings (``RandomForestRegressor``'s constraints, the fast builder's too)
#: and the wavelet settings of :class:`mfoml.wavelets.base.WaveletForestBase`.
FOREST_PARAMS: dict[str, list[Any]] = {
    "n_estimators": [_INT_GE1],
    "max_depth": [_INT_GE1, None],
    "min_samples_split": [("int", 2, None, "left"), ("real_not_int", 0.0, 1.0, "right")],
    "min_samples_leaf": _MIN_SAMPLES_LEAF,
    "max_features": _MAX_FEATURES,
    "bootstrap": ["boolean"],
    "max_samples": [None, ("real_not_int", 0.0, 1.0, "right"), _INT_GE1],
    "random_state": ["random_state"],
    "n_jobs": [("int", None, None, "neither"), None],
    **_WAVELETS,
    "backend": [frozenset({"auto", "fast", "sklearn"})],
}

#: :func:`mfoml.wavelets.probe.sparsity_probe`'s forest settings (``n_trees`` is ``n_estimators``).
PROBE_PARAMS: dict[str, list[Any]] = {
    ("n_trees" if k == "n_estimators" else k): v
    for k, v in FOREST_PARAMS.items()
    if k not in ("min_samples_split", "max_samples", "importance_tau")
}

#: ``GradientBoosting*``'s constraints for the settings the wavelet boosting estimators pass on.
BOOSTING_PARAMS: dict[str, list[Any]] = {
    "n_estimators": [_INT_GE1],
    "learning_rate": [("real", 0.0, None, "left")],
    "max_depth": [_INT_GE1, None],
    "subsample": [("real", 0.0, 1.0, "right")],
    "min_samples_leaf": _MIN_SAMPLES_LEAF,
    "max_features": _MAX_FEATURES,
    "random_state": ["random_state"],
    **_WAVELETS,
}


class InvalidParameterError(ValueError, TypeError):
    """A parameter outside its constraints (like scikit-learn's ``InvalidParameterError``, a
    ``ValueError`` and a ``TypeError``)."""


def _satisfied(constraint: Any, value: Any) -> bool:
    if constraint is None:
        return value is None
    if constraint == "boolean":
        return isinstance(value, bool | np.bool_)
    if constraint == "random_state":
        if isinstance(value, numbers.Integral):
            return 0 <= value <= 2**32 - 1  # a numpy seed
        return value is None or isinstance(value, np.random.RandomState)
    if isinstance(constraint, frozenset):
        return isinstance(value, str) and value in constraint
    kind, left, right, closed = constraint
    if kind == "int" and not isinstance(value, numbers.Integral):
        return False
    if kind != "int" and not isinstance(value, numbers.Real):
        return False
    if kind == "real_not_int" and isinstance(value, numbers.Integral):
        return False
    if kind != "int" and np.isnan(value):
        return False
    lo = -np.inf if left is None else left  # as scikit-learn: inf is outside [0, inf)
    hi = np.inf if right is None else right
    if not (value >= lo if closed in ("left", "both") else value > lo):
        return False
    return bool(value <= hi if closed in ("right", "both") else value < hi)


def _describe(constraint: Any) -> str:
    if constraint is None:
        return "None"
    if constraint == "boolean":
        return "an instance of 'bool' or an instance of 'numpy.bool'"
    if constraint == "random_state":
        return (
            "an int in the range [0, 4294967295], an instance of 'numpy.random.RandomState' or None"
        )
    if isinstance(constraint, frozenset):
        return "a str among {" + ", ".join(repr(s) for s in sorted(constraint)) + "}"
    kind, left, right, closed = constraint
    name = {"int": "an int", "real": "a float", "real_not_int": "a float"}[kind]
    lo = "-inf" if left is None else left
    hi = "inf" if right is None else right
    lb = "[" if closed in ("left", "both") and left is not None else "("
    rb = "]" if closed in ("right", "both") and right is not None else ")"
    return f"{name} in the range {lb}{lo}, {hi}{rb}"


def check_params(values: dict[str, Any], constraints: dict[str, list[Any]], owner: str) -> None:
    """Check ``values`` (name → value) against ``constraints`` (a table of this module).

    Names missing from ``constraints`` are not checked. Raises :class:`InvalidParameterError`
    naming the parameter, ``owner`` (the function or class) and what is allowed.
    """
    for name, value in values.items():
        allowed = constraints.get(name)
        if allowed is None or any(_satisfied(c, value) for c in allowed):
            continue
        texts = [_describe(c) for c in allowed]
        text = texts[0] if len(texts) == 1 else f"{', '.join(texts[:-1])} or {texts[-1]}"
        raise InvalidParameterError(
            f"The {name!r} parameter of {owner} must be {text}. Got {value!r} instead."
        )


def sklearn_constraints(constraints: dict[str, list[Any]]) -> dict[str, list[Any]]:
    """The table as scikit-learn ``_parameter_constraints`` (``Interval`` / ``StrOptions``)."""
    from numbers import Integral, Real

    from sklearn.utils._param_validation import Interval, RealNotInt, StrOptions

    types = {"int": Integral, "real": Real, "real_not_int": RealNotInt}

    def convert(c: Any) -> Any:
        if isinstance(c, frozenset):
            return StrOptions(set(c))
        if isinstance(c, tuple):
            kind, left, right, closed = c
            return Interval(types[kind], left, right, closed=closed)
        return c

    return {name: [convert(c) for c in allowed] for name, allowed in constraints.items()}
