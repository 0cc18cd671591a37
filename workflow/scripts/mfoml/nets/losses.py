"""The SVSL loss (stochastic variability-simplification loss), ``METHODS.md`` section 9.

``L = CE + w * sum_{j in layers} (1/C_B) sum_{c in batch} (1/n_c) sum_{i in B, y_i = c}
||g_j(x_i) - mu_c^(j)||^2``

where ``g_j(x_i)`` is the output of probe layer ``j`` flattened per sample, ``C_B`` the number
of classes present in the batch, ``n_c`` their batch counts, and ``mu_c^(j)``:

- **batched** (default): the batch class means ``mu_{c,B}^(j)``, computed from the same
  features, so that the gradient flows through them;
- **non-batched**: the class means over the whole training set, recomputed without gradient at
  the start of every epoch by :meth:`SVSLLoss.on_epoch_start` (one ordered pass in eval mode).

Weight: ``w = lam / len(layers)`` by default (``layer_average=True``): the reference
implementation divided lambda by the number of layers, so the published lambda values (1e-5 to
1e-4) keep their meaning; ``layer_average=False`` gives ``w = lam`` (the plain sum of
``METHODS.md``). ``lam = 0`` returns an exact zero (no computation), so the total loss equals
the cross-entropy bit for bit.

A class with a single sample in the batch contributes exactly zero (its batch mean is the
sample); classes absent from the batch are not counted in ``C_B``. Features are used in float32
with autocast disabled (robust under mixed precision).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from mfoml.collapse.accumulators import ClassMeans

__all__ = ["SVSLLoss", "svsl_term"]


def _flat(t: torch.Tensor, name: str) -> torch.Tensor:
    if t.dim() < 1:
        raise ValueError(f"SVSL: layer {name!r} output must have a batch dimension")
    return t.reshape(t.shape[0], -1)


def svsl_term(
    features: torch.Tensor,
    labels: torch.Tensor,
    n_classes: int,
    means: torch.Tensor | None = None,
) -> torch.Tensor:
    """Variability term of one layer: ``(1/C_B) sum_c (1/n_c) sum_{y_i=c} ||h_i - mu_c||^2``.

    Parameters
    ----------
    features : (B, D) float tensor (one layer, flattened).
    labels : (B,) int64 labels in ``[0, n_classes)``.
    n_classes : number of classes ``C``.
    means : (C, D) fixed class means (non-batched SVSL; no gradient through them). ``None``:
        the batch class means, with gradient.

    Returns
    -------
    Scalar tensor (0 for an empty batch).
    """
    if features.dim() != 2:
        raise ValueError(f"features must have shape (B, D), got {tuple(features.shape)}")
    if labels.dim() != 1 or labels.shape[0] != features.shape[0]:
        raise ValueError(
            f"labels must have shape ({features.shape[0]},), got {tuple(labels.shape)}"
        )
    if features.shape[0] == 0:
        return features.sum() * 0.0
    y = labels.long()
    onehot = torch.nn.functional.one_hot(y, n_classes).to(features.dtype)  # (B, C)
    counts = onehot.sum(dim=0)  # (C,)
    present = counts > 0
    if means is None:
        mu = (onehot.T @ features) / counts.clamp(min=1.0)[:, None]  # (C, D), grad flows
    else:
        if means.shape != (n_classes, features.shape[1]):
            raise ValueError(
                f"stored means have shape {tuple(means.shape)}, expected "
                f"({n_classes}, {features.shape[1]})"
            )
        mu = means.detach().to(device=features.device, dtype=features.dtype)
        missing = present & ~torch.isfinite(mu).all(dim=1)
        if bool(missing.any()):
            raise ValueError(
                f"classes {torch.nonzero(missing).flatten().tolist()} are in the batch but have "
                "no stored training-set mean"
            )
    diff = features - mu[y]
    sq = (diff * diff).sum(dim=1)  # (B,)
    per_class = onehot.T @ sq  # (C,)
    per_class = per_class[present] / counts[present]
    return per_class.sum() / present.sum().to(features.dtype)


class SVSLLoss:
    """SVSL as an ``ExtraLoss`` for :func:`mfoml.nets.training.train`.

    Parameters
    ----------
    layers : probe-layer names ``g_gamma .. g_k`` the term is applied to (see
        :meth:`from_model` to choose them by the first-layer index ``gamma``).
    lam : weight lambda (>= 0).
    n_classes : number of classes ``C``.
    batched : batch class means (True) or whole-training-set means refreshed each epoch.
    layer_average : divide ``lam`` by ``len(layers)`` (reference convention, default).
    eval_batch_size : batch size of the no-grad pass of :meth:`on_epoch_start`.

    Attributes
    ----------
    means_ : dict layer -> (C, D) float32 tensor of the stored training-set means
        (non-batched only; filled by :meth:`on_epoch_start`; NaN rows for absent classes).
    weight : the per-layer weight ``lam / len(layers)`` or ``lam``.
    """

    def __init__(
        self,
        layers: Sequence[str],
        lam: float,
        *,
        n_classes: int,
        batched: bool = True,
        layer_average: bool = True,
        eval_batch_size: int = 1024,
    ) -> None:
        if isinstance(layers, str):
            raise TypeError("layers must be a list of layer names, not a string")
        self.layers: list[str] = list(layers)
        if not self.layers:
            raise ValueError("SVSLLoss: layers must name at least one probe layer")
        if len(set(self.layers)) != len(self.layers):
            raise ValueError(f"SVSLLoss: duplicate layers in {self.layers}")
        lam = float(lam)
        if not (lam >= 0 and np.isfinite(lam)):
            raise ValueError(f"SVSLLoss: lam must be a finite number >= 0, got {lam}")
        if not isinstance(n_classes, int | np.integer) or n_classes < 1:
            raise ValueError(f"SVSLLoss: n_classes must be a positive integer, got {n_classes!r}")
        if int(eval_batch_size) < 1:
            raise ValueError(f"SVSLLoss: eval_batch_size must be >= 1, got {eval_batch_size}")
        self.lam = lam
        self.n_classes = int(n_classes)
        self.batched = bool(batched)
        self.layer_average = bool(layer_average)
        self.eval_batch_size = int(eval_batch_size)
        self.weight = lam / len(self.layers) if layer_average else lam
        self.means_: dict[str, torch.Tensor] = {}

    @classmethod
    def from_model(
        cls,
        model: Any,
        lam: float,
        *,
        gamma: int | str = 1,
        n_classes: int | None = None,
        **kwargs: Any,
    ) -> SVSLLoss:
        """Build with the layers ``gamma .. penultimate`` of a ``ProbedModel``.

        Parameters
        ----------
        model : a ``ProbedModel`` (``probe_layers``, ``penultimate_layer``, ``spec``).
        lam : weight lambda.
        gamma : first layer, as an index into ``model.probe_layers`` (0 is ``"input"``, 1 the
            first block) or a layer name; the last layer is ``model.penultimate_layer``.
        n_classes : default ``model.spec["n_classes"]``.
        **kwargs : passed to the constructor (``batched``, ``layer_average``...).
        """
        names = list(model.probe_layers)
        last = names.index(model.penultimate_layer)
        if isinstance(gamma, str):
            if gamma not in names:
                raise ValueError(f"SVSL gamma: unknown layer {gamma!r}; model has {names}")
            first = names.index(gamma)
        else:
            first = int(gamma)
        if not 0 <= first <= last:
            raise ValueError(
                f"SVSL gamma={gamma!r} must select a layer between 'input' (0) and the "
                f"penultimate layer {model.penultimate_layer!r} ({last})"
            )
        if n_classes is None:
            n_classes = int(model.spec["n_classes"])
        return cls(names[first : last + 1], lam, n_classes=n_classes, **kwargs)

    # -- ExtraLoss protocol ---------------------------------------------------------------------
    def __call__(self, features: dict[str, torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
        """SVSL term for one batch (a scalar tensor to add to the mean cross-entropy).

        Parameters
        ----------
        features : ``{layer: (B, *layer_shape)}`` from the same forward pass as the logits.
        labels : (B,) int64 labels.
        """
        missing = [name for name in self.layers if name not in features]
        if missing:
            raise KeyError(f"SVSLLoss: features lack layer(s) {missing}; got {sorted(features)}")
        if not isinstance(labels, torch.Tensor) or labels.dim() != 1:
            raise ValueError("SVSLLoss: labels must be a 1-D integer tensor (B,)")
        ref = features[self.layers[0]]
        if self.lam == 0.0:
            return torch.zeros((), dtype=torch.float32, device=ref.device)
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= self.n_classes):
            raise ValueError(
                f"SVSLLoss: labels must lie in [0, {self.n_classes}), got "
                f"[{int(labels.min())}, {int(labels.max())}]"
            )
        if not self.batched and not self.means_:
            raise RuntimeError(
                "non-batched SVSLLoss needs the training-set means: call "
                "on_epoch_start(model, x_train, y_train, device) first (train() does)"
            )
        total = None
        with torch.autocast(device_type=ref.device.type, enabled=False):
            for name in self.layers:
                h = _flat(features[name], name).float()
                if h.shape[0] != labels.shape[0]:
                    raise ValueError(
                        f"SVSLLoss: layer {name!r} has batch size {h.shape[0]} but labels have "
                        f"{labels.shape[0]}"
                    )
                means = None
                if not self.batched:
                    means = self.means_.get(name)
                    if means is None:
                        raise RuntimeError(f"SVSLLoss: no stored means for layer {name!r}")
                    if means.shape[1] != h.shape[1]:
                        raise ValueError(
                            f"SVSLLoss: layer {name!r} has {h.shape[1]} features but its "
                            f"stored means have {means.shape[1]}"
                        )
                term = svsl_term(h, labels.to(h.device), self.n_classes, means)
                total = term if total is None else total + term
        return self.weight * total

    @torch.no_grad()
    def on_epoch_start(
        self, model: Any, x_train: Any, y_train: Any, device: str | torch.device
    ) -> None:
        """Recompute the training-set class means (non-batched SVSL; no-op when batched).

        One ordered pass over ``x_train`` in eval mode (so that BatchNorm running statistics
        are not touched and dropout is off) with ``model.forward_features(x, self.layers)``;
        per-layer means are accumulated in float64 with :class:`mfoml.collapse.accumulators.ClassMeans` and
        stored as float32 tensors on ``device``. The model's training flag is restored.

        Parameters
        ----------
        model : the ``ProbedModel`` being trained.
        x_train : (N, *input_shape) float array (numpy or tensor).
        y_train : (N,) int labels.
        device : where the pass runs and the means are stored.
        """
        if self.batched or self.lam == 0.0:
            return
        device = torch.device(device)
        x = torch.as_tensor(
            np.asarray(x_train) if not isinstance(x_train, torch.Tensor) else x_train
        )
        y = torch.as_tensor(
            np.asarray(y_train) if not isinstance(y_train, torch.Tensor) else y_train
        )
        if y.dim() != 1 or x.shape[0] != y.shape[0]:
            raise ValueError(
                f"SVSLLoss.on_epoch_start: x_train has {x.shape[0]} rows, y_train shape "
                f"{tuple(y.shape)}"
            )
        acc = {name: ClassMeans(self.n_classes) for name in self.layers}
        was_training = model.training
        model.eval()
        try:
            for a in range(0, x.shape[0], self.eval_batch_size):
                xb = x[a : a + self.eval_batch_size].to(device=device, dtype=torch.float32)
                yb = y[a : a + self.eval_batch_size].to(device=device)
                _, feats = model.forward_features(xb, self.layers)
                for name in self.layers:
                    acc[name].update(_flat(feats[name], name), yb)
        finally:
            model.train(was_training)
        self.means_ = {
            name: acc[name].means_tensor(device=device, dtype=torch.float32) for name in self.layers
        }

    def __repr__(self) -> str:
        return (
            f"SVSLLoss(layers={self.layers}, lam={self.lam}, n_classes={self.n_classes}, "
            f"batched={self.batched}, layer_average={self.layer_average})"
        )
