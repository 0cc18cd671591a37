"""Augmentations for self-supervised training, per data kind, seeded by a ``torch.Generator``.

:func:`make_augmenter` returns an :class:`Augmenter` for a data kind (the ``kind`` of the data
store's ``meta.json``) and its settings (missing keys take :data:`AUGMENT_DEFAULTS`; an unknown
key is a ``ValueError`` naming it). ``augmenter(x, generator)`` returns one augmented view of
the batch ``x`` (same shape, dtype and device); :func:`two_views` returns two independent
views, :func:`multi_crop_views` two global views and ``n_local`` local crops (DINO's multi-crop:
images only; a local crop is the same pipeline with ``RandomResizedCrop``'s area fraction range
replaced by the local one, resized to the full ``(H, W)`` so that every backbone takes it;
``augmenter(x, generator, crop_scale=...)``). Everything random is drawn from the given ``torch.Generator`` (a CPU generator), so a
seeded generator gives the same views on every run, whatever the global RNG state.

``image`` (``x`` float ``(N, C, H, W)`` in ``[0, 1]``, as the data store keeps images)
    ``torchvision.transforms.v2``, per sample, in this order: ``RandomResizedCrop`` back to
    ``(H, W)`` (``crop_scale``, ``crop_ratio``; bilinear, antialiased), ``RandomHorizontalFlip``
    (``flip``), ``ColorJitter(brightness, contrast, saturation, hue)`` applied with probability
    ``jitter``, ``RandomGrayscale`` (``grayscale``). One-channel images skip saturation, hue and
    grayscale (they have no colour). Values stay in ``[0, 1]``. The v2 transforms draw their
    parameters from the global torch RNG; each call therefore draws one seed from
    ``generator`` and runs the per-sample loop under ``torch.random.fork_rng`` seeded with it
    (the caller's global RNG state is left untouched). Cost on one CPU core: about 1 ms per
    32x32 RGB sample (hue dominates), i.e. ~100 s per CIFAR epoch of two views.
``signal`` (``x`` float ``(N, L)`` or ``(N, C, L)``, e.g. MNIST-1D ``(N, 1, 40)``)
    Batched torch ops along the last axis, per-sample parameters: a random shift by an integer
    ``s`` uniform in ``[-shift, shift]`` (``shift_mode``: ``edge`` repeats the end values,
    ``circular`` wraps around, ``zeros`` pads with 0), a scaling by a factor uniform in
    ``scale`` (``[lo, hi]``), additive Gaussian noise of standard deviation ``noise``, and with
    probability ``mask_prob`` a contiguous segment of random length in ``[1, round(mask_fraction
    * L)]`` (all channels) set to 0. Each step is off at its neutral setting (``shift: 0``,
    ``scale: [1, 1]``, ``noise: 0``, ``mask_prob: 0``). Without scaling and noise, every output
    value is an input value of the same sample (or 0 from the mask or ``zeros`` padding).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch

__all__ = [
    "AUGMENT_DEFAULTS",
    "AUGMENT_KINDS",
    "Augmenter",
    "make_augmenter",
    "multi_crop_views",
    "two_views",
]

AUGMENT_KINDS = ("image", "signal")
AUGMENT_DEFAULTS: dict[str, dict[str, Any]] = {
    "image": {
        "crop_scale": [0.2, 1.0],
        "crop_ratio": [0.75, 4.0 / 3.0],
        "flip": 0.5,
        "jitter": 0.8,
        "brightness": 0.4,
        "contrast": 0.4,
        "saturation": 0.2,
        "hue": 0.1,
        "grayscale": 0.2,
    },
    "signal": {
        "shift": 4,
        "shift_mode": "edge",
        "scale": [0.8, 1.2],
        "noise": 0.1,
        "mask_prob": 0.5,
        "mask_fraction": 0.15,
    },
}
_SHIFT_MODES = ("edge", "circular", "zeros")


def _pair(params: Mapping[str, Any], key: str, lo_min: float, kind: str) -> tuple[float, float]:
    val = params[key]
    if not isinstance(val, list | tuple) or len(val) != 2:
        raise ValueError(f"augment.{kind}.{key}: must be a pair [lo, hi], got {val!r}")
    lo, hi = float(val[0]), float(val[1])
    if not lo_min <= lo <= hi:
        raise ValueError(f"augment.{kind}.{key}: need {lo_min} <= lo <= hi, got {val!r}")
    return lo, hi


def _prob(params: Mapping[str, Any], key: str, kind: str) -> float:
    p = float(params[key])
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"augment.{kind}.{key}: must be a probability in [0, 1], got {p}")
    return p


class Augmenter:
    """One augmentation pipeline; ``augmenter(x, generator) -> view`` (see the module doc).

    Attributes
    ----------
    kind : ``"image"`` or ``"signal"``.
    params : the full settings (defaults filled in).
    """

    def __init__(self, kind: str, params: Mapping[str, Any] | None = None) -> None:
        kind = str(kind)
        if kind not in AUGMENT_KINDS:
            raise ValueError(
                f"augment: no augmentations for data kind {kind!r}; known: {AUGMENT_KINDS}"
            )
        given = dict(params or {})
        unknown = sorted(set(given) - set(AUGMENT_DEFAULTS[kind]))
        if unknown:
            raise ValueError(
                f"augment.{kind}: unknown key(s) {unknown}; known: {sorted(AUGMENT_DEFAULTS[kind])}"
            )
        self.kind = kind
        self.params = {**AUGMENT_DEFAULTS[kind], **given}
        p = self.params
        if kind == "image":
            self._crop_scale = _pair(p, "crop_scale", 0.0, kind)
            self._crop_ratio = _pair(p, "crop_ratio", 0.0, kind)
            if self._crop_scale[1] > 1 or self._crop_scale[1] <= 0 or self._crop_ratio[0] <= 0:
                raise ValueError(
                    f"augment.image: crop_scale must lie in (0, 1] and crop_ratio "
                    f"be > 0, got {p['crop_scale']!r}, {p['crop_ratio']!r}"
                )
            for key in ("flip", "jitter", "grayscale"):
                _prob(p, key, kind)
            for key in ("brightness", "contrast", "saturation"):
                if not float(p[key]) >= 0:
                    raise ValueError(f"augment.image.{key}: must be >= 0, got {p[key]}")
            if not 0 <= float(p["hue"]) <= 0.5:
                raise ValueError(f"augment.image.hue: must be in [0, 0.5], got {p['hue']}")
            self._pipes: dict[int, Any] = {}
        else:
            if int(p["shift"]) < 0 or int(p["shift"]) != p["shift"]:
                raise ValueError(f"augment.signal.shift: must be an integer >= 0, got {p['shift']}")
            if p["shift_mode"] not in _SHIFT_MODES:
                raise ValueError(
                    f"augment.signal.shift_mode: must be one of {_SHIFT_MODES}, "
                    f"got {p['shift_mode']!r}"
                )
            self._scale = _pair(p, "scale", -math.inf, kind)
            if not float(p["noise"]) >= 0:
                raise ValueError(f"augment.signal.noise: must be >= 0, got {p['noise']}")
            _prob(p, "mask_prob", kind)
            if not 0 <= float(p["mask_fraction"]) <= 1:
                raise ValueError(
                    f"augment.signal.mask_fraction: must be in [0, 1], got {p['mask_fraction']}"
                )

    def __repr__(self) -> str:
        return f"Augmenter({self.kind!r}, {self.params!r})"

    def __call__(
        self,
        x: torch.Tensor,
        generator: torch.Generator,
        *,
        crop_scale: tuple[float, float] | None = None,
    ) -> torch.Tensor:
        """One augmented view of the batch ``x`` (shape, dtype and device kept).

        ``crop_scale``: images only, the area fraction range of this view's crop instead of
        ``crop_scale`` of the settings (DINO's local crops); a ``ValueError`` for signals.
        """
        if not torch.is_floating_point(x):
            raise TypeError(f"augment.{self.kind}: x must be a float tensor, got {x.dtype}")
        if self.kind == "image":
            scale = self._crop_scale if crop_scale is None else _crop_range(crop_scale)
            return self._image(x, generator, scale)
        if crop_scale is not None:
            raise ValueError(
                f"augment.{self.kind}: a {self.kind} has no crop (multi-crop needs images; "
                "use two views, local_crops.number 0)"
            )
        return self._signal(x, generator)

    # -- images ------------------------------------------------------------------------------
    def _pipeline(
        self, channels: int, size: tuple[int, int], crop_scale: tuple[float, float]
    ) -> Any:
        key = (channels, *size, *crop_scale)
        if key not in self._pipes:
            from torchvision.transforms import v2

            p = self.params
            colour = channels == 3
            jitter = v2.ColorJitter(
                brightness=float(p["brightness"]) or None,
                contrast=float(p["contrast"]) or None,
                saturation=(float(p["saturation"]) or None) if colour else None,
                hue=(float(p["hue"]) or None) if colour else None,
            )
            steps = [
                v2.RandomResizedCrop(
                    size, scale=crop_scale, ratio=self._crop_ratio, antialias=True
                ),
                v2.RandomHorizontalFlip(float(p["flip"])),
                v2.RandomApply([jitter], p=float(p["jitter"])),
            ]
            if colour:
                steps.append(v2.RandomGrayscale(float(p["grayscale"])))
            self._pipes[key] = v2.Compose(steps)
        return self._pipes[key]

    def _image(
        self, x: torch.Tensor, generator: torch.Generator, crop_scale: tuple[float, float]
    ) -> torch.Tensor:
        if x.dim() != 4:
            raise ValueError(f"augment.image: x must have shape (N, C, H, W), got {tuple(x.shape)}")
        pipe = self._pipeline(int(x.shape[1]), (int(x.shape[2]), int(x.shape[3])), crop_scale)
        seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        out = torch.empty_like(x)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            for i in range(x.shape[0]):
                out[i] = pipe(x[i])
        return out.clamp_(0.0, 1.0)

    # -- 1-D signals -------------------------------------------------------------------------
    def _signal(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if x.dim() not in (2, 3):
            raise ValueError(
                f"augment.signal: x must have shape (N, L) or (N, C, L), got {tuple(x.shape)}"
            )
        p = self.params
        n, length = int(x.shape[0]), int(x.shape[-1])
        dev = x.device
        xs = x if x.dim() == 3 else x.unsqueeze(1)  # (N, C, L)

        def uniform(lo: float, hi: float, shape: tuple[int, ...]) -> torch.Tensor:
            return (lo + (hi - lo) * torch.rand(shape, generator=generator)).to(dev, x.dtype)

        shift = int(p["shift"])
        if shift > 0:
            s = torch.randint(-shift, shift + 1, (n, 1), generator=generator).to(dev)
            src = torch.arange(length, device=dev)[None, :] - s  # (N, L): out[t] = x[t - s]
            mode = p["shift_mode"]
            if mode == "circular":
                idx = src % length
            else:
                idx = src.clamp(0, length - 1)
            out = torch.gather(xs, 2, idx[:, None, :].expand(-1, xs.shape[1], -1))
            if mode == "zeros":
                inside = (src >= 0) & (src < length)
                out = out * inside[:, None, :].to(x.dtype)
        else:
            out = xs.clone()
        lo, hi = self._scale
        if (lo, hi) != (1.0, 1.0):
            out = out * uniform(lo, hi, (n, 1, 1))
        noise = float(p["noise"])
        if noise > 0:
            out = out + noise * torch.randn(out.shape, generator=generator).to(dev, x.dtype)
        max_len = round(float(p["mask_fraction"]) * length)
        if float(p["mask_prob"]) > 0 and max_len >= 1:
            apply = torch.rand((n, 1), generator=generator) < float(p["mask_prob"])
            seg = torch.randint(1, max_len + 1, (n, 1), generator=generator)
            start = (torch.rand((n, 1), generator=generator) * (length - seg + 1)).floor().long()
            pos = torch.arange(length)[None, :]
            masked = apply & (pos >= start) & (pos < start + seg)  # (N, L)
            out = out.masked_fill(masked[:, None, :].to(dev), 0.0)
        return out if x.dim() == 3 else out.squeeze(1)


def _crop_range(scale: Any) -> tuple[float, float]:
    if not isinstance(scale, list | tuple) or len(scale) != 2 or not 0 < scale[0] <= scale[1] <= 1:
        raise ValueError(f"augment: a crop's area fraction range must lie in (0, 1], got {scale!r}")
    return float(scale[0]), float(scale[1])


def make_augmenter(kind: str, params: Mapping[str, Any] | None = None) -> Augmenter:
    """An :class:`Augmenter` for data kind ``kind`` (``image`` or ``signal``) and settings."""
    return Augmenter(kind, params)


def two_views(
    augmenter: Augmenter, x: torch.Tensor, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Two independent augmented views of the batch ``x`` (each ``x.shape``)."""
    return augmenter(x, generator), augmenter(x, generator)


def multi_crop_views(
    augmenter: Augmenter,
    x: torch.Tensor,
    generator: torch.Generator,
    n_local: int,
    local_scale: tuple[float, float] = (0.05, 0.4),
) -> tuple[torch.Tensor, ...]:
    """``2 + n_local`` views of the batch ``x``: the two global views of :func:`two_views`
    (the same draws from ``generator``), then ``n_local`` local crops of area fraction
    ``local_scale`` (each ``x.shape``). ``n_local > 0`` needs images (``ValueError``)."""
    if int(n_local) < 0:
        raise ValueError(f"local_crops.number must be >= 0, got {n_local}")
    if int(n_local) > 0 and augmenter.kind != "image":
        raise ValueError(
            f"local_crops.number = {n_local}: multi-crop needs image data; the data kind is "
            f"{augmenter.kind!r}, which has no crop (two views only: set local_crops.number 0)"
        )
    views = two_views(augmenter, x, generator)
    local = tuple(augmenter(x, generator, crop_scale=local_scale) for _ in range(int(n_local)))
    return views + local
