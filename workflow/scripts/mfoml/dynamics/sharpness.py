"""Sharpness of the training loss: top Hessian eigenvalue and Hessian trace.

The loss is the mean cross-entropy over a fixed set of samples,
``L(theta) = (1/N) sum_i CE(f_theta(x_i), y_i)``, as a function of the trainable parameters
(``requires_grad``) only. It is evaluated in ``batch_size`` batches; Hessian-vector products
``H v`` come from double back-propagation (``grad(<grad L, v>)``), exact up to floating point,
never forming ``H``.

- :func:`top_hessian_eigenvalue`: the largest (algebraic) eigenvalue by Lanczos with full
  re-orthogonalisation (default), or by power iteration (which converges to the eigenvalue of
  largest *magnitude*; for a trained network near a minimum that is the top one).
- :func:`hutchinson_trace`: ``tr H ~ (1/m) sum_j z_j^T H z_j`` with Rademacher probes ``z_j``,
  with the standard error of the mean.
- :func:`sharpness`: both, on a seeded subset of the training set.

BatchNorm: ``mode="eval"`` (default) uses the running statistics, so ``L`` is a sum over
samples; ``mode="train"`` normalises each batch with its own statistics (the function that
full-batch gradient descent with one batch actually descends). The model's buffers (running
statistics) and training flag are restored afterwards in both modes.

Memory: Lanczos keeps ``n_iter`` vectors of the parameter count (in the parameters' dtype and
device); power iteration two. Written here because no maintained library offers Hessian
eigenvalues of an ``nn.Module`` loss over a data set (PyHessian is unmaintained and is not a
package dependency of this project).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mfoml.dynamics._common import (
    as_tensors,
    batches,
    fixed_subset,
    flatten,
    model_device,
    preserved_state,
    trainable_parameters,
    unflatten,
)

__all__ = [
    "hessian_vector_product",
    "hutchinson_trace",
    "lanczos_top_eigenvalue",
    "power_iteration_top_eigenvalue",
    "sharpness",
    "top_hessian_eigenvalue",
]

HVP = Callable[[torch.Tensor], torch.Tensor]


def _check_mode(mode: str) -> None:
    if mode not in ("eval", "train"):
        raise ValueError(f"mode must be 'eval' or 'train', got {mode!r}")


def hessian_vector_product(
    model: nn.Module,
    x: Any,
    y: Any,
    *,
    batch_size: int | None = 512,
    mode: str = "eval",
) -> HVP:
    """A function ``v -> H v`` for the mean cross-entropy of ``model`` over ``(x, y)``.

    Parameters
    ----------
    model : maps ``(B, *input_shape)`` to logits ``(B, C)``.
    x, y : ``(N, *input_shape)`` inputs and ``(N,)`` integer labels (numpy or torch).
    batch_size : rows per forward pass (``None``: one batch).
    mode : ``"eval"`` or ``"train"`` (BatchNorm with batch statistics; buffers restored).

    Returns
    -------
    ``hvp(v)`` taking and returning a 1-D tensor of the trainable-parameter count ``P`` (on
    the parameters' device and dtype). Each call runs one forward and two backward passes over
    the data. The model is left as it was after each call.
    """
    _check_mode(mode)
    params = trainable_parameters(model)
    dev = model_device(model)
    xt, yt = as_tensors(x, y, "hessian_vector_product")
    n = len(yt)
    if n == 0:
        raise ValueError("hessian_vector_product: no samples")
    slices = batches(n, batch_size)

    def hvp(v: torch.Tensor) -> torch.Tensor:
        vs = unflatten(v.to(device=params[0].device, dtype=params[0].dtype), params)
        out = [torch.zeros_like(p) for p in params]
        with preserved_state(model):
            model.train(mode == "train")
            for s in slices:
                xb, yb = xt[s].to(dev), yt[s].to(dev)
                loss = F.cross_entropy(model(xb), yb, reduction="sum") / n
                grads = torch.autograd.grad(loss, params, create_graph=True)
                dot = sum((g * u).sum() for g, u in zip(grads, vs, strict=True))
                hv = torch.autograd.grad(dot, params, allow_unused=True)
                for o, h in zip(out, hv, strict=True):
                    if h is not None:
                        o.add_(h.detach())
        return flatten(out)

    hvp.dim = sum(p.numel() for p in params)  # type: ignore[attr-defined]
    hvp.like = params[0]  # type: ignore[attr-defined]
    return hvp


def _start_vector(hvp: HVP, generator: torch.Generator) -> torch.Tensor:
    like = hvp.like  # type: ignore[attr-defined]
    v = torch.randn(hvp.dim, generator=generator, dtype=torch.float64)  # type: ignore[attr-defined]
    v = v.to(device=like.device, dtype=like.dtype)
    return v / v.norm()


def lanczos_top_eigenvalue(
    hvp: HVP, *, n_iter: int = 20, tol: float = 1e-4, seed: int = 0
) -> dict[str, Any]:
    """Largest eigenvalue of the symmetric operator ``hvp`` by Lanczos.

    Full re-orthogonalisation (twice, classical Gram-Schmidt) against all Lanczos vectors; the
    top Ritz value of the tridiagonal matrix is returned. Stops after ``n_iter`` products, when
    the Krylov space is exhausted, or when the top Ritz value changes by less than
    ``tol * |value|`` between iterations (after at least 3).

    Returns
    -------
    dict ``eigenvalue`` (float), ``n_iter`` (products used), ``converged`` (bool),
    ``ritz_values`` (all Ritz values of the last tridiagonal matrix, increasing).
    """
    if n_iter < 1:
        raise ValueError(f"n_iter must be >= 1, got {n_iter}")
    gen = torch.Generator().manual_seed(int(seed))
    v = _start_vector(hvp, gen)
    basis = torch.empty((n_iter, v.numel()), dtype=v.dtype, device=v.device)  # Lanczos vectors
    basis[0] = v
    alphas: list[float] = []
    betas: list[float] = []
    prev = math.nan
    converged = False
    ritz = np.zeros(0)
    w = hvp(v)
    for j in range(n_iter):
        a = float(torch.dot(w, basis[j]))
        alphas.append(a)
        w = w - a * basis[j] - (betas[-1] * basis[j - 1] if j > 0 else 0.0)
        q = basis[: j + 1]
        for _ in range(2):
            w = w - q.T @ (q @ w)
        ritz = _tridiag_eigvals(alphas, betas)
        top = float(ritz[-1])
        if j >= 2 and abs(top - prev) <= tol * max(abs(top), 1e-30):
            converged = True
            break
        prev = top
        b = float(w.norm())
        if j + 1 == n_iter:
            break
        if b <= 1e-10 * max(1.0, max(abs(x) for x in alphas)):
            converged = True  # invariant subspace: the Ritz values are exact
            break
        betas.append(b)
        basis[j + 1] = w / b
        w = hvp(basis[j + 1])
    return {
        "eigenvalue": float(ritz[-1]),
        "n_iter": len(alphas),
        "converged": converged,
        "ritz_values": ritz,
    }


def _tridiag_eigvals(alphas: list[float], betas: list[float]) -> np.ndarray:
    k = len(alphas)
    t = np.diag(np.asarray(alphas, dtype=np.float64))
    if k > 1:
        off = np.asarray(betas[: k - 1], dtype=np.float64)
        t += np.diag(off, 1) + np.diag(off, -1)
    return np.linalg.eigvalsh(t)


def power_iteration_top_eigenvalue(
    hvp: HVP, *, n_iter: int = 20, tol: float = 1e-4, seed: int = 0
) -> dict[str, Any]:
    """Eigenvalue of largest magnitude of ``hvp`` by power iteration.

    Iterates ``v <- H v / ||H v||`` and returns the Rayleigh quotient ``v^T H v``; stops after
    ``n_iter`` products or when the quotient changes by less than ``tol * |value|``.

    Returns
    -------
    dict ``eigenvalue``, ``n_iter``, ``converged``.
    """
    if n_iter < 1:
        raise ValueError(f"n_iter must be >= 1, got {n_iter}")
    gen = torch.Generator().manual_seed(int(seed))
    v = _start_vector(hvp, gen)
    value = math.nan
    converged = False
    k = 0
    for k in range(1, n_iter + 1):
        hv = hvp(v)
        new = float(torch.dot(v, hv))
        norm = float(hv.norm())
        if norm == 0.0:
            value, converged = 0.0, True
            break
        if k > 1 and abs(new - value) <= tol * max(abs(new), 1e-30):
            value, converged = new, True
            break
        value = new
        v = hv / norm
    return {"eigenvalue": value, "n_iter": k, "converged": converged}


def top_hessian_eigenvalue(
    hvp: HVP, *, method: str = "lanczos", n_iter: int = 20, tol: float = 1e-4, seed: int = 0
) -> dict[str, Any]:
    """Dispatch to :func:`lanczos_top_eigenvalue` or :func:`power_iteration_top_eigenvalue`."""
    if method == "lanczos":
        return lanczos_top_eigenvalue(hvp, n_iter=n_iter, tol=tol, seed=seed)
    if method == "power":
        return power_iteration_top_eigenvalue(hvp, n_iter=n_iter, tol=tol, seed=seed)
    raise ValueError(f"method must be 'lanczos' or 'power', got {method!r}")


def rademacher_probes(dim: int, n: int, seed: int) -> torch.Tensor:
    """``(n, dim)`` float64 Rademacher (+-1) probe vectors from ``torch.Generator(seed)``."""
    gen = torch.Generator().manual_seed(int(seed))
    return torch.randint(0, 2, (n, dim), generator=gen).to(torch.float64) * 2.0 - 1.0


def hutchinson_trace(hvp: HVP, *, n_samples: int = 10, seed: int = 0) -> dict[str, Any]:
    """Hutchinson estimate of ``tr H`` with ``n_samples`` Rademacher probes.

    The probes are :func:`rademacher_probes` ``(dim, n_samples, seed)``.

    Returns
    -------
    dict ``trace`` (mean of ``z^T H z``), ``std_error`` (standard error of that mean; NaN for
    one probe), ``n_samples``.
    """
    if n_samples < 1:
        raise ValueError(f"n_samples must be >= 1, got {n_samples}")
    like = hvp.like  # type: ignore[attr-defined]
    z = rademacher_probes(hvp.dim, n_samples, seed)  # type: ignore[attr-defined]
    vals = []
    for zj in z:
        zj = zj.to(device=like.device, dtype=like.dtype)
        vals.append(float(torch.dot(zj, hvp(zj))))
    arr = np.asarray(vals)
    se = float(arr.std(ddof=1) / math.sqrt(len(arr))) if len(arr) > 1 else float("nan")
    return {"trace": float(arr.mean()), "std_error": se, "n_samples": n_samples}


def sharpness(
    model: nn.Module,
    x: Any,
    y: Any,
    *,
    subset_size: int | None = 1000,
    n_iter: int = 20,
    tol: float = 1e-4,
    method: str = "lanczos",
    trace_samples: int = 10,
    batch_size: int | None = 512,
    mode: str = "eval",
    seed: int = 0,
) -> dict[str, Any]:
    """Top Hessian eigenvalue and Hutchinson trace of the loss on a fixed training subset.

    Parameters
    ----------
    model, x, y : see :func:`hessian_vector_product`.
    subset_size : number of samples, drawn once with ``numpy.random.default_rng(seed)``
        (``None``: all).
    n_iter, tol, method : of :func:`top_hessian_eigenvalue`.
    trace_samples : Hutchinson probes (0: no trace).
    batch_size, mode : of :func:`hessian_vector_product`.
    seed : seed of the subset, the start vector and the probes.

    Returns
    -------
    dict ``top_eigenvalue, eigen_iterations, eigen_converged, hessian_trace,
    hessian_trace_se, subset_size, n_parameters``.
    """
    xt, yt = as_tensors(x, y, "sharpness")
    idx = torch.from_numpy(fixed_subset(len(yt), subset_size, seed))
    hvp = hessian_vector_product(model, xt[idx], yt[idx], batch_size=batch_size, mode=mode)
    top = top_hessian_eigenvalue(hvp, method=method, n_iter=n_iter, tol=tol, seed=seed)
    if trace_samples > 0:
        tr = hutchinson_trace(hvp, n_samples=trace_samples, seed=seed + 1)
    else:
        tr = {"trace": float("nan"), "std_error": float("nan")}
    return {
        "top_eigenvalue": top["eigenvalue"],
        "eigen_iterations": top["n_iter"],
        "eigen_converged": bool(top["converged"]),
        "hessian_trace": tr["trace"],
        "hessian_trace_se": tr["std_error"],
        "subset_size": len(idx),
        "n_parameters": hvp.dim,  # type: ignore[attr-defined]
    }
