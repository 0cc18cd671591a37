"""Geometric wavelets of a trained XGBoost model, read from its JSON model dump.

The booster is serialized with ``save_raw(raw_format="json")`` and parsed into
:class:`~mfoml.wavelets.boosted_trees.TreeArrays`; the decomposition is then
:class:`~mfoml.wavelets.boosted_trees.BoostedTreeWavelets` (METHODS.md section 13). XGBoost has
no wavelet decomposition of its own, hence this reader. Details that matter:

- Splits: XGBoost sends ``x`` to the left ("yes") child iff ``x < split_condition``, comparing
  float32 values (its ``DMatrix`` stores float32; the conditions are float32). The conditions are
  rounded to float32 on reading and the inputs are cast to float32 before comparing, so a value
  equal to a threshold goes right, as in XGBoost. A missing value (NaN) follows the node's
  ``default_left``.
- Leaf values are ``split_conditions`` at the leaves and already include the learning rate
  ``eta``, so every tree's factor is 1. Inner nodes have no value in the dump; ``Q_Ω`` is the
  cover-weighted mean of the leaf values below (cover = ``sum_hessian``).
- ``f0`` is ``base_score`` turned into margin space with the objective's link: logit for
  ``binary:logistic`` / ``reg:logistic``, log for ``count:poisson`` / ``reg:gamma`` /
  ``reg:tweedie``, identity otherwise (squared / absolute / pseudo-Huber / quantile errors,
  ``binary:logitraw``, ``binary:hinge``, ``multi:softprob`` / ``multi:softmax``, whose
  ``base_score`` holds one margin per class). The raw prediction matches
  ``predict(output_margin=True)``.
- The response scale: ``predict()`` of a log-link objective (``count:poisson``, ``reg:gamma``,
  ``reg:tweedie``) is ``exp(margin)``, of ``reg:logistic`` ``expit(margin)``. The decomposition
  carries that inverse link (``link``), so its M-term curves, staged curves and ``predict``
  score the response, as ``predict()`` does, not the margin.
- Trees are assigned to outputs by ``tree_info`` (the class of a ``multi:*`` model) and to
  stages by ``iteration_indptr``.

Not supported (clear errors): ``dart`` and ``gblinear`` boosters, categorical splits,
vector-leaf (multi-output) trees, pruned trees with deleted nodes, ranking and survival
objectives.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

from mfoml.wavelets.boosted_trees import BoostedTreeWavelets
from mfoml.wavelets.tree_arrays import TreeArrays

__all__ = ["booster_json", "trees_from_xgboost", "from_xgboost"]

_LOGIT = ("binary:logistic", "reg:logistic")
_LOG = ("count:poisson", "reg:gamma", "reg:tweedie")
_IDENTITY = (
    "reg:squarederror",
    "reg:squaredlogerror",
    "reg:pseudohubererror",
    "reg:absoluteerror",
    "reg:quantileerror",
    "reg:linear",
    "binary:logitraw",
    "binary:hinge",
    "multi:softprob",
    "multi:softmax",
)


def booster_json(model: Any) -> dict[str, Any]:
    """The JSON model of an ``xgboost.Booster`` or of a scikit-learn-API XGBoost model."""
    booster = model.get_booster() if hasattr(model, "get_booster") else model
    raw = booster.save_raw(raw_format="json")
    return json.loads(bytes(raw).decode("utf-8"))


def _base_margin(objective: str, base_score: str, n_outputs: int) -> np.ndarray:
    values = [float(v) for v in base_score.strip().strip("[]").split(",") if v.strip()]
    f0 = np.array(values, dtype=np.float64)
    if f0.size == 1 and n_outputs > 1:
        f0 = np.full(n_outputs, f0[0])
    if f0.size != n_outputs:
        raise ValueError(f"base_score has {f0.size} values for {n_outputs} outputs")
    if objective in _LOGIT:
        return np.array([math.log(p / (1.0 - p)) for p in f0])
    if objective in _LOG:
        return np.log(f0)
    if objective in _IDENTITY:
        return f0
    raise NotImplementedError(f"XGBoost objective {objective!r} is not supported")


def link_of(objective: str, task: str) -> str:
    """The link between an objective's margin and its ``predict()`` (regression; a classifier's
    curves apply the sigmoid / softmax themselves)."""
    if task != "regression":
        return "identity"
    if objective in _LOG:
        return "log"
    return "logit" if objective in _LOGIT else "identity"


def _tree(t: dict[str, Any], where: str) -> TreeArrays:
    param = t["tree_param"]
    if int(param.get("num_deleted", "0")) > 0:
        raise NotImplementedError(f"{where}: trees with deleted nodes are not supported")
    if int(param.get("size_leaf_vector", "1")) > 1:
        raise NotImplementedError(f"{where}: vector-leaf (multi-output) trees are not supported")
    if any(int(s) != 0 for s in t.get("split_type", [])):
        raise NotImplementedError(f"{where}: categorical splits are not supported")
    left = np.asarray(t["left_children"], dtype=np.int64)
    right = np.asarray(t["right_children"], dtype=np.int64)
    # Conditions and covers are float32 in XGBoost: round the JSON decimals back to them.
    cond = np.asarray(t["split_conditions"], dtype=np.float32).astype(np.float64)
    leaf = left < 0
    return TreeArrays(
        left,
        right,
        np.where(leaf, 0, np.asarray(t["split_indices"], dtype=np.int64)),
        np.where(leaf, 0.0, cond),
        np.where(leaf, cond, 0.0),
        np.asarray(t["sum_hessian"], dtype=np.float32).astype(np.float64),
        rule="lt",
        default_left=np.asarray(t["default_left"], dtype=bool),
    )


def trees_from_xgboost(model: Any) -> dict[str, Any]:
    """Parse an XGBoost model into the arguments of :class:`BoostedTreeWavelets`.

    Returns a dict with ``trees`` (list of :class:`TreeArrays`), ``tree_output``,
    ``tree_stage``, ``tree_scale`` (ones), ``n_outputs``, ``f0`` (K,) margin-space base score,
    ``task``, ``link`` (the inverse link to the response scale: ``"log"``, ``"logit"`` or
    ``"identity"``) and ``objective``.
    """
    js = booster_json(model)
    learner = js["learner"]
    booster = learner["gradient_booster"]
    if booster.get("name") != "gbtree":
        raise NotImplementedError(
            f"only gbtree boosters are supported, got {booster.get('name')!r}"
        )
    mdl = booster["model"]
    objective = learner["objective"]["name"]
    param = learner["learner_model_param"]
    n_class = int(param.get("num_class", "0"))
    n_target = int(param.get("num_target", "1"))
    if objective.startswith("multi:"):
        task, n_outputs = "classification", n_class
    elif objective.startswith("binary:"):
        task, n_outputs = "classification", 1
    else:
        task, n_outputs = "regression", max(1, n_target)
    trees = [_tree(t, f"tree {j}") for j, t in enumerate(mdl["trees"])]
    J = len(trees)
    tree_output = np.asarray(mdl["tree_info"], dtype=np.int64)
    indptr = np.asarray(mdl.get("iteration_indptr", [0, J]), dtype=np.int64)
    tree_stage = np.searchsorted(indptr, np.arange(J), side="right") - 1
    return {
        "trees": trees,
        "tree_output": tree_output,
        "tree_stage": tree_stage,
        "tree_scale": np.ones(J),
        "n_outputs": n_outputs,
        "f0": _base_margin(objective, param["base_score"], n_outputs),
        "task": task,
        "link": link_of(objective, task),
        "objective": objective,
    }


def from_xgboost(
    model: Any,
    X_train: Any,
    *,
    norm_weight: str = "num_samples",
    importance_tau: float = 1.0,
) -> BoostedTreeWavelets:
    """Wavelet decomposition of a trained XGBoost model (``Booster``, ``XGBRegressor`` or
    ``XGBClassifier``).

    Parameters
    ----------
    model : the trained model (``gbtree`` booster, numerical splits).
    X_train : (N, d) its whole training set (NaN allowed: missing values follow the default
        direction); used for the ``num_samples`` counts or the min-max box of the volumes.
    norm_weight, importance_tau : see :class:`BoostedTreeWavelets`.

    Returns
    -------
    BoostedTreeWavelets whose ``raw_predict(X)`` (n, K) equals ``predict(output_margin=True)``
    and, for a regressor, ``predict(X)`` equals the model's ``predict()`` (up to XGBoost's
    float32 summation); the regression curves score that response. Classification curves take class codes ``0..K-1``.
    """
    p = trees_from_xgboost(model)
    return BoostedTreeWavelets(
        p["trees"],
        p["tree_output"],
        p["tree_stage"],
        p["tree_scale"],
        p["n_outputs"],
        X_train,
        f0=p["f0"],
        task=p["task"],
        link=p["link"],
        norm_weight=norm_weight,
        importance_tau=importance_tau,
    )
