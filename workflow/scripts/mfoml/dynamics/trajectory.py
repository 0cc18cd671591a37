"""Weight trajectory of a run: PCA of the flattened parameters over its checkpoints, and the
loss surface on the plane of the first two principal directions (Li et al. 2018, section 7; the
course homework's "visualize the optimization process").

Only the trainable parameters (``named_parameters``) enter the PCA, flattened in
``state_dict`` order; buffers (BatchNorm running statistics) do not. With ``K`` checkpoints and
``P`` parameters the PCA is computed from the ``K x K`` Gram matrix of the centred checkpoints
(``K`` is small, ``P`` may be millions), never a ``P x P`` matrix; it equals scikit-learn's PCA
of the ``K x P`` matrix.

The surface is ``L(origin + a d_1 + b d_2)`` on a grid of ``(a, b)`` covering the projected
checkpoints, ``origin`` the last checkpoint (default) or the mean, ``d_1, d_2`` the unit
principal directions; the checkpoints' coordinates are ``d_i^T (theta_k - origin)`` (their
distance to the plane is reported too). At each grid point the BatchNorm statistics are
recomputed on training data (as for the interpolation), unless ``recompute_bn=False`` (then
the last checkpoint's statistics are used).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from mfoml.dynamics._common import as_tensors, evaluate, fixed_subset
from mfoml.dynamics.interpolation import recompute_batchnorm

__all__ = ["flat_parameters", "loss_surface", "weight_pca"]


def _param_names(model: nn.Module) -> list[str]:
    return [name for name, _ in model.named_parameters()]


def flat_parameters(state: Mapping[str, torch.Tensor], names: Sequence[str]) -> np.ndarray:
    """The tensors ``state[name]`` for ``name`` in ``names``, flattened into one float64 vector."""
    missing = [n for n in names if n not in state]
    if missing:
        raise ValueError(f"state lacks parameter(s) {missing[:3]}")
    return np.concatenate(
        [state[n].detach().cpu().to(torch.float64).reshape(-1).numpy() for n in names]
    )


def weight_pca(
    states: Sequence[Mapping[str, torch.Tensor]],
    names: Sequence[str],
    *,
    n_components: int = 2,
    origin: str = "last",
) -> dict[str, Any]:
    """PCA of the checkpoints' flattened parameters.

    Parameters
    ----------
    states : ``K >= 2`` state dicts of one architecture, in training order.
    names : the parameter names to flatten (e.g. ``[n for n, _ in model.named_parameters()]``).
    n_components : number of principal directions kept (``<= K - 1``; fewer when the
        checkpoints span fewer dimensions).
    origin : ``"last"`` (the last checkpoint) or ``"mean"``: the point the coordinates are
        measured from.

    Returns
    -------
    dict ``mean`` (P,), ``components`` (k, P) orthonormal rows (each row's sign chosen so that
    its largest-magnitude entry is positive), ``explained_variance`` (k,, with ``1/(K-1)``),
    ``explained_variance_ratio`` (k,), ``origin`` (P,), ``coords`` (K, k) coordinates of the
    checkpoints relative to ``origin``, ``residual_norm`` (K,) distance of each checkpoint to
    the plane through ``origin``.
    """
    if len(states) < 2:
        raise ValueError(f"weight PCA needs at least 2 checkpoints, got {len(states)}")
    if origin not in ("last", "mean"):
        raise ValueError(f"origin must be 'last' or 'mean', got {origin!r}")
    x = np.stack([flat_parameters(s, names) for s in states])  # (K, P)
    k_ckpt = x.shape[0]
    mean = x.mean(axis=0)
    xc = x - mean
    gram = xc @ xc.T  # (K, K)
    ev, u = np.linalg.eigh(gram)
    order = np.argsort(ev)[::-1]
    ev, u = np.maximum(ev[order], 0.0), u[:, order]
    tol = max(ev[0], 0.0) * k_ckpt * np.finfo(np.float64).eps * 10
    k = int(min(n_components, k_ckpt - 1, np.sum(ev > tol)))
    if k < 1:
        raise ValueError("the checkpoints are all identical: no principal direction")
    comps = (u[:, :k].T @ xc) / np.sqrt(ev[:k])[:, None]  # (k, P), unit rows
    comps /= np.linalg.norm(comps, axis=1, keepdims=True)
    big = np.argmax(np.abs(comps), axis=1)
    comps *= np.sign(comps[np.arange(k), big])[:, None]
    total = ev.sum()
    org = x[-1] if origin == "last" else mean
    rel = x - org
    coords = rel @ comps.T
    resid = np.linalg.norm(rel - coords @ comps, axis=1)
    var = ev[:k] / (k_ckpt - 1)
    return {
        "mean": mean,
        "components": comps,
        "explained_variance": var,
        "explained_variance_ratio": ev[:k] / total if total > 0 else np.full(k, np.nan),
        "origin": org,
        "coords": coords,
        "residual_norm": resid,
    }


def loss_surface(
    model: nn.Module,
    states: Sequence[Mapping[str, torch.Tensor]],
    x: Any,
    y: Any,
    *,
    grid: int = 11,
    margin: float = 0.25,
    axes: tuple[Sequence[float], Sequence[float]] | None = None,
    origin: str = "last",
    recompute_bn: bool = True,
    samples: int | None = 1024,
    batch_size: int = 1024,
    seed: int = 0,
) -> dict[str, Any]:
    """Training loss and accuracy on the plane of the first two principal directions.

    Parameters
    ----------
    model : a network of the checkpoints' architecture (its weights are not changed; a copy is
        used).
    states : ``K >= 3`` state dicts (two directions need three non-collinear checkpoints).
    x, y : training data; a seeded subset of ``samples`` rows is used for the BatchNorm
        statistics and the loss (``None``: all).
    grid : points per axis.
    margin : the grid covers the checkpoints' coordinate range widened by ``margin`` times
        that range on each side.
    axes : explicit grid coordinates ``(a_values, b_values)`` instead of ``grid``/``margin``.
    origin, recompute_bn : see the module docstring.
    batch_size : evaluation batch size; BatchNorm statistics use one batch of the subset.
    seed : seed of the subset.

    Returns
    -------
    dict ``surface`` (DataFrame ``a, b, loss, acc``, one row per grid point), ``checkpoints``
    (DataFrame ``index, a, b, residual_norm``), ``explained_variance_ratio`` (2,).
    """
    import pandas as pd

    names = _param_names(model)
    pca = weight_pca(states, names, n_components=2, origin=origin)
    if pca["components"].shape[0] < 2:
        raise ValueError("the checkpoints span only one direction: no plane to draw")
    coords = pca["coords"]
    if axes is None:
        axes_list = []
        for j in range(2):
            lo, hi = float(coords[:, j].min()), float(coords[:, j].max())
            pad = margin * (hi - lo) if hi > lo else 1.0
            axes_list.append(np.linspace(lo - pad, hi + pad, int(grid)))
        axes = (axes_list[0], axes_list[1])
    xt, yt = as_tensors(x, y, "loss_surface")
    idx = torch.from_numpy(fixed_subset(len(yt), samples, seed))
    xs, ys = xt[idx], yt[idx]
    net = copy.deepcopy(model)
    net.load_state_dict({k: v.detach().clone() for k, v in states[-1].items()})
    params = dict(net.named_parameters())
    shapes = [(n, params[n].shape, params[n].numel()) for n in names]
    d1, d2 = pca["components"][0], pca["components"][1]
    rows = []
    for a in axes[0]:
        for b in axes[1]:
            theta = pca["origin"] + a * d1 + b * d2
            with torch.no_grad():
                pos = 0
                for n, shape, k in shapes:
                    p = params[n]
                    p.copy_(torch.from_numpy(theta[pos : pos + k]).reshape(shape).to(p.dtype))
                    pos += k
            if recompute_bn:
                recompute_batchnorm(net, xs, batch_size=None)
            loss, acc = evaluate(net, xs, ys, batch_size=batch_size)
            rows.append({"a": float(a), "b": float(b), "loss": loss, "acc": acc})
    ckpts = pd.DataFrame(
        {
            "index": np.arange(len(states)),
            "a": coords[:, 0],
            "b": coords[:, 1],
            "residual_norm": pca["residual_norm"],
        }
    )
    return {
        "surface": pd.DataFrame(rows, columns=["a", "b", "loss", "acc"]),
        "checkpoints": ckpts,
        "explained_variance_ratio": pca["explained_variance_ratio"],
    }
