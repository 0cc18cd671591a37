"""Self-supervised objectives: SimCLR, VICReg, Barlow Twins, BYOL and DINO (``METHODS.md`` 12).

Every loss takes the two views' embeddings ``z1, z2`` of shape ``(N, D)`` (row ``i`` of both is
the same sample under two augmentations) and returns a scalar tensor.

``nt_xent_loss`` (SimCLR, Chen et al. 2020)
    ``z = normalize([z1; z2])`` (2N rows), ``s_ij = <z_i, z_j> / t``; for each of the 2N anchors
    ``l_i = -log(exp(s_{i,p(i)}) / sum_{k != i} exp(s_ik))`` with ``p(i)`` its other view;
    the loss is the mean of the 2N terms. Hyper-parameter: ``temperature`` ``t``.
``vicreg_loss`` (Bardes, Ponce & LeCun 2022, Algorithm 1 of the paper)
    ``lam * s + mu * (v(z1) + v(z2)) + nu * (c(z1) + c(z2))`` with the invariance
    ``s = (1/(N D)) sum_i ||z1_i - z2_i||^2`` (``F.mse_loss``; the paper's text writes
    ``1/N`` without ``1/D``, its pseudocode and code use the mean, for which the published
    weights 25/25/1 were tuned), the variance ``v(z) = (1/D) sum_j max(0, gamma - sqrt(Var(z_:j)
    + eps))`` (unbiased variance) and the covariance ``c(z) = (1/D) sum_{i != j} Cov(z)_ij^2``.
    Hyper-parameters: ``invariance_weight`` (lam), ``variance_weight`` (mu),
    ``covariance_weight`` (nu), ``variance_target`` (gamma), ``eps``.
``barlow_twins_loss`` (Zbontar et al. 2021)
    ``C_ij`` the cross-correlation between feature ``i`` of ``z1`` and feature ``j`` of ``z2``
    over the batch (each column standardised with its biased variance ``+ eps``, as the
    reference's affine-free BatchNorm; ``eps = 0`` gives the paper's Pearson formula);
    ``sum_i (1 - C_ii)^2 + lambda * sum_{i != j} C_ij^2``. Hyper-parameter:
    ``offdiag_weight`` (lambda).
``byol_loss`` (Grill et al. 2020)
    ``mean_i (2 - 2 cos(p_i, t_i))`` between the online network's prediction ``p`` and the
    momentum teacher's projection ``t`` (no gradient to ``t``); :class:`BYOL` symmetrises it
    over the two views and updates the teacher by EMA: ``xi <- tau xi + (1 - tau) theta`` with
    ``tau = 1 - (1 - tau_base) (cos(pi k / K) + 1) / 2`` (``k/K`` the training progress;
    :mod:`mfoml.nets.ssl_base`).
``dino_loss`` (Caron et al. 2021; :mod:`mfoml.nets.dino`)
    self-distillation: cross-entropy between the centred, sharpened softmax of a momentum
    teacher and the student's softmax over prototype scores, cross-view pairs only;
    :class:`DINO` (re-exported here) adds the prototype layer, the center, the temperature
    warm-up and multi-crop.

The objectives (:class:`SimCLR`, :class:`VICReg`, :class:`BarlowTwins`, :class:`BYOL`,
:class:`DINO`; base class :class:`~mfoml.nets.ssl_base.SSLObjective`) are
``nn.Module`` s called as ``objective(encoder, v1, v2) -> (loss, terms)``; ``encoder`` maps a
batch of views to embeddings ``(N, D)`` (backbone + projection head), ``terms`` are detached
floats for the metrics table (the loss's components and ``embedding_std``, the standard
deviation over the batch of the L2-normalised embeddings times ``sqrt(D)``: about 1 for spread
embeddings, 0 under complete collapse). :meth:`SSLObjective.after_step` is called after each
optimiser step (the EMA of BYOL and DINO); the objective's own trainable parameters (BYOL's
predictor, DINO's prototypes) are :meth:`SSLObjective.trainable_parameters`; its
``state_dict`` holds everything needed to resume (the teachers, BYOL's predictor, DINO's
prototypes and center).

Why not a library: the well-kept SSL library (``lightly`` 1.6.0) requires ``pytorch_lightning``
and ``hydra-core`` (checked with ``pip download --no-deps`` and its METADATA), which the pinned
stack does not carry and the pipeline does not need; ``solo-learn`` and ``vissl`` are not
maintained as installable packages. The five losses are a few lines each; they are tested
against the published formulas written independently as loops (tests/test_ssl.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mfoml.nets.dino import DINO, DINO_DEFAULTS, dino_loss
from mfoml.nets.ssl_base import (
    Encoder,
    SSLObjective,
    check_pair,
    ema_update,
    embedding_std,
    make_teacher,
    momentum,
)

__all__ = [
    "BYOL",
    "DINO",
    "SSL_DEFAULTS",
    "SSL_TYPES",
    "BarlowTwins",
    "ProjectionHead",
    "SSLObjective",
    "SimCLR",
    "VICReg",
    "barlow_twins_loss",
    "build_objective",
    "objective_spec",
    "byol_loss",
    "dino_loss",
    "embedding_std",
    "nt_xent_loss",
    "vicreg_loss",
    "vicreg_terms",
]

# --------------------------------------------------------------------------------------------
# losses


def nt_xent_loss(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.5) -> torch.Tensor:
    """SimCLR's NT-Xent loss of two views ``(N, D)`` (see the module docstring).

    Symmetric in the views; invariant to rescaling either row (cosine similarities).
    """
    check_pair(z1, z2, "nt_xent_loss", min_n=2)
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    sim = (z @ z.T) / temperature  # (2N, 2N)
    self_mask = torch.eye(2 * n, dtype=torch.bool, device=z.device)
    sim = sim.masked_fill(self_mask, float("-inf"))
    idx = torch.arange(n, device=z.device)
    targets = torch.cat([idx + n, idx])
    return F.cross_entropy(sim, targets)


def vicreg_terms(
    z1: torch.Tensor, z2: torch.Tensor, *, gamma: float = 1.0, eps: float = 1e-4
) -> dict[str, torch.Tensor]:
    """VICReg's three unweighted terms ``invariance, variance, covariance`` (scalars).

    ``variance`` and ``covariance`` are summed over the two views (module docstring).
    """
    check_pair(z1, z2, "vicreg_loss", min_n=2)
    n, d = z1.shape
    invariance = F.mse_loss(z1, z2)
    variance = z1.new_zeros(())
    covariance = z1.new_zeros(())
    off = ~torch.eye(d, dtype=torch.bool, device=z1.device)
    for z in (z1, z2):
        zc = z - z.mean(dim=0)
        std = torch.sqrt(zc.pow(2).sum(dim=0) / (n - 1) + eps)
        variance = variance + F.relu(gamma - std).mean()
        cov = (zc.T @ zc) / (n - 1)
        covariance = covariance + cov[off].pow(2).sum() / d
    return {"invariance": invariance, "variance": variance, "covariance": covariance}


def vicreg_loss(
    z1: torch.Tensor,
    z2: torch.Tensor,
    *,
    invariance_weight: float = 25.0,
    variance_weight: float = 25.0,
    covariance_weight: float = 1.0,
    gamma: float = 1.0,
    eps: float = 1e-4,
) -> torch.Tensor:
    """VICReg loss of two views ``(N, D)``, ``N >= 2`` (module docstring)."""
    t = vicreg_terms(z1, z2, gamma=gamma, eps=eps)
    return (
        invariance_weight * t["invariance"]
        + variance_weight * t["variance"]
        + covariance_weight * t["covariance"]
    )


def barlow_twins_loss(
    z1: torch.Tensor, z2: torch.Tensor, *, offdiag_weight: float = 5e-3, eps: float = 1e-5
) -> torch.Tensor:
    """Barlow Twins loss of two views ``(N, D)``, ``N >= 2`` (module docstring)."""
    check_pair(z1, z2, "barlow_twins_loss", min_n=2)
    n, d = z1.shape

    def standardise(z: torch.Tensor) -> torch.Tensor:
        zc = z - z.mean(dim=0)
        return zc / torch.sqrt(zc.pow(2).mean(dim=0) + eps)

    c = standardise(z1).T @ standardise(z2) / n  # (D, D)
    on = (1.0 - torch.diagonal(c)).pow(2).sum()
    off = c.pow(2).sum() - torch.diagonal(c).pow(2).sum()
    return on + offdiag_weight * off


def byol_loss(p: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """``mean_i (2 - 2 cos(p_i, t_i))``; ``t`` is detached (the teacher's target)."""
    check_pair(p, t, "byol_loss")
    cos = (F.normalize(p, dim=1) * F.normalize(t.detach(), dim=1)).sum(dim=1)
    return (2.0 - 2.0 * cos).mean()


# --------------------------------------------------------------------------------------------
# heads


class ProjectionHead(nn.Module):
    """MLP head: ``depth - 1`` blocks ``Linear -> BatchNorm1d -> ReLU`` of width ``width``,
    then ``Linear -> out_dim`` (no activation). The input is flattened per sample.

    ``blocks[k]`` is block ``k`` (the first starts with ``nn.Flatten(1)``, the last is the
    output ``Linear``), so that the blocks can serve as probe stages of a network. Input
    ``(N, *shape)`` with ``prod(shape) == in_dim``; output ``(N, out_dim)``.
    """

    def __init__(self, in_dim: int, width: int, out_dim: int, depth: int = 2) -> None:
        super().__init__()
        for key, val in (("in_dim", in_dim), ("width", width), ("out_dim", out_dim)):
            if int(val) < 1:
                raise ValueError(f"projector {key} must be >= 1, got {val}")
        if int(depth) < 1:
            raise ValueError(f"projector depth must be >= 1, got {depth}")
        blocks: list[nn.Module] = []
        d = int(in_dim)
        for _ in range(int(depth) - 1):
            blocks.append(nn.Sequential(nn.Linear(d, width), nn.BatchNorm1d(width), nn.ReLU()))
            d = int(width)
        blocks.append(nn.Sequential(nn.Linear(d, int(out_dim))))
        blocks[0].insert(0, nn.Flatten(1))
        self.blocks = nn.ModuleList(blocks)
        self.in_dim, self.out_dim, self.depth = int(in_dim), int(out_dim), int(depth)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            h = block(h)
        return h


# --------------------------------------------------------------------------------------------
# objectives


class SimCLR(SSLObjective):
    """NT-Xent with temperature ``temperature``."""

    name = "simclr"

    def __init__(self, temperature: float = 0.5) -> None:
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"losses.temperature must be > 0, got {temperature}")
        self.temperature = float(temperature)

    def pair_loss(self, z1: torch.Tensor, z2: torch.Tensor) -> tuple[torch.Tensor, dict]:
        return nt_xent_loss(z1, z2, self.temperature), {}


class VICReg(SSLObjective):
    """VICReg with weights ``invariance_weight, variance_weight, covariance_weight``."""

    name = "vicreg"

    def __init__(
        self,
        invariance_weight: float = 25.0,
        variance_weight: float = 25.0,
        covariance_weight: float = 1.0,
        variance_target: float = 1.0,
        eps: float = 1e-4,
    ) -> None:
        super().__init__()
        for key, val in (
            ("invariance_weight", invariance_weight),
            ("variance_weight", variance_weight),
            ("covariance_weight", covariance_weight),
        ):
            if not val >= 0:
                raise ValueError(f"losses.{key} must be >= 0, got {val}")
        if not variance_target > 0 or not eps > 0:
            raise ValueError(
                f"losses.variance_target and eps must be > 0, got {variance_target}, {eps}"
            )
        self.weights = (float(invariance_weight), float(variance_weight), float(covariance_weight))
        self.gamma, self.eps = float(variance_target), float(eps)

    def pair_loss(self, z1: torch.Tensor, z2: torch.Tensor) -> tuple[torch.Tensor, dict]:
        t = vicreg_terms(z1, z2, gamma=self.gamma, eps=self.eps)
        lam, mu, nu = self.weights
        loss = lam * t["invariance"] + mu * t["variance"] + nu * t["covariance"]
        return loss, {k: v.detach() for k, v in t.items()}


class BarlowTwins(SSLObjective):
    """Barlow Twins with off-diagonal weight ``offdiag_weight``."""

    name = "barlow"

    def __init__(self, offdiag_weight: float = 5e-3, eps: float = 1e-5) -> None:
        super().__init__()
        if not offdiag_weight >= 0 or not eps >= 0:
            raise ValueError(
                f"losses.offdiag_weight and losses.eps must be >= 0, got {offdiag_weight}, {eps}"
            )
        self.offdiag_weight, self.eps = float(offdiag_weight), float(eps)

    def pair_loss(self, z1: torch.Tensor, z2: torch.Tensor) -> tuple[torch.Tensor, dict]:
        return barlow_twins_loss(z1, z2, offdiag_weight=self.offdiag_weight, eps=self.eps), {}


class BYOL(SSLObjective):
    """BYOL: online encoder + predictor against an EMA teacher (module docstring).

    Call :meth:`attach` with the online encoder before training (or before loading a state
    dict): it makes the teacher, a frozen deep copy. The predictor is
    ``ProjectionHead(out_dim, predictor_width, out_dim, predictor_depth)`` with ``out_dim`` the
    encoder's output width (``embed_dim``). The teacher runs in the objective's training mode
    (batch statistics in BatchNorm, as in BYOL) without gradient.
    """

    name = "byol"

    def __init__(
        self,
        embed_dim: int,
        tau: float = 0.99,
        predictor_width: int = 256,
        predictor_depth: int = 2,
        cosine_tau: bool = True,
    ) -> None:
        super().__init__()
        if not 0 <= tau <= 1:
            raise ValueError(f"losses.tau must be in [0, 1], got {tau}")
        self.tau_base, self.cosine_tau = float(tau), bool(cosine_tau)
        self.predictor = ProjectionHead(embed_dim, predictor_width, embed_dim, predictor_depth)
        self.teacher: nn.Module | None = None
        self.tau = self.tau_base

    def attach(self, encoder: nn.Module) -> BYOL:
        self.teacher = make_teacher(encoder)
        return self

    def _teacher(self) -> nn.Module:
        if self.teacher is None:
            raise RuntimeError("BYOL: call attach(encoder) before training")
        return self.teacher

    def forward(  # type: ignore[override]
        self, encoder: Encoder, v1: torch.Tensor, v2: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, float]]:
        teacher = self._teacher()
        z1, z2 = encoder(v1).float(), encoder(v2).float()
        p1, p2 = self.predictor(z1), self.predictor(z2)
        with torch.no_grad():
            t1, t2 = teacher(v1).float(), teacher(v2).float()
        loss = byol_loss(p1, t2) + byol_loss(p2, t1)
        return loss, {"tau": self.tau, "embedding_std": embedding_std(z1)}

    @torch.no_grad()
    def after_step(self, encoder: nn.Module, progress: float) -> None:
        tau = momentum(self.tau_base, progress, self.cosine_tau)
        ema_update(self._teacher(), encoder, tau)
        self.tau = tau


# --------------------------------------------------------------------------------------------
# configuration

SSL_TYPES = ("simclr", "vicreg", "barlow", "byol", "dino")
#: Hyper-parameters per objective (the config keys under ``losses`` besides ``type``).
SSL_DEFAULTS: dict[str, dict[str, Any]] = {
    "simclr": {"temperature": 0.5},
    "vicreg": {
        "invariance_weight": 25.0,
        "variance_weight": 25.0,
        "covariance_weight": 1.0,
        "variance_target": 1.0,
        "eps": 1e-4,
    },
    "barlow": {"offdiag_weight": 5e-3, "eps": 1e-5},
    "byol": {"tau": 0.99, "predictor_width": 256, "predictor_depth": 2, "cosine_tau": True},
    "dino": DINO_DEFAULTS,
}
_CLASSES: dict[str, type[SSLObjective]] = {
    "simclr": SimCLR,
    "vicreg": VICReg,
    "barlow": BarlowTwins,
    "byol": BYOL,
    "dino": DINO,
}


def objective_spec(loss: Mapping[str, Any]) -> dict[str, Any]:
    """The objective's settings in a configured loss (``losses.<name>`` of the configuration).

    Keeps ``type`` and the hyper-parameters of that type (:data:`SSL_DEFAULTS`); the keys the
    configuration fills for other loss types (SVSL's ``lam, gamma, batched``) and the
    ``projector`` (a property of the network) are left out.
    """
    kind = str(loss.get("type", "")).lower()
    if kind not in SSL_TYPES:
        raise ValueError(f"losses.type: {kind!r} is not a self-supervised objective {SSL_TYPES}")
    return {"type": kind, **{k: loss[k] for k in SSL_DEFAULTS[kind] if k in loss}}


def build_objective(
    spec: Mapping[str, Any],
    embed_dim: int,
    encoder: nn.Module | None = None,
    *,
    seed: int | None = None,
) -> SSLObjective:
    """Build an objective from ``{type: simclr|vicreg|barlow|byol|dino, **hyper-parameters}``.

    Missing hyper-parameters take :data:`SSL_DEFAULTS`; an unknown key is a ``ValueError``
    naming it. ``embed_dim`` is the encoder's output width (BYOL's predictor, DINO's prototype
    layer); ``encoder``, when given, is attached (:meth:`SSLObjective.attach`). ``seed``: the
    objective's own parameters (BYOL's predictor, DINO's prototypes) are initialised under
    ``torch.manual_seed(seed)`` without disturbing the global RNG (``None``: from the global
    RNG).
    """
    kind = str(spec.get("type", "")).lower()
    if kind not in SSL_TYPES:
        raise ValueError(f"losses.type: unknown SSL objective {kind!r}; known: {SSL_TYPES}")
    params = dict(SSL_DEFAULTS[kind])
    extra = sorted(set(spec) - {"type"} - set(params))
    if extra:
        raise ValueError(
            f"losses: unknown key(s) {extra} for type {kind!r}; known: {sorted(params)}"
        )
    params.update({k: v for k, v in spec.items() if k != "type"})
    with torch.random.fork_rng(devices=[], enabled=seed is not None):
        if seed is not None:
            torch.manual_seed(int(seed))
        if kind in ("byol", "dino"):
            obj = _CLASSES[kind](int(embed_dim), **params)  # type: ignore[call-arg]
        else:
            obj = _CLASSES[kind](**params)
    obj.spec = {"type": kind, **params}
    return obj.attach(encoder) if encoder is not None else obj
