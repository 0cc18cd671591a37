"""``arch: hf``: a HuggingFace ``transformers`` encoder with a classification head.

The encoder is ``transformers.AutoModel`` loaded from a local directory (``pretrained``; a hub
id works on a machine with network when ``local_files_only=False``; the project never needs
the hub), followed by dropout and one ``nn.Linear`` on the pooled state, the head of
``BertForSequenceClassification``. The head lives here (not in ``AutoModelForSequence-
Classification``) so that every architecture has the same head, the penultimate layer is the
exact input of the final linear map, and every hidden layer comes from the same pass.

Input convention
----------------
As :mod:`mfoml.nets.transformer`: token ids ``(B, T)`` (int64 or whole-number floats),
right-padded with ``pad_id`` (default: the config's ``pad_token_id``, else 0); attention mask
``ids != pad_id``. When the encoder has token types (``type_vocab_size > 1``, as BERT) and
``sep_id`` is given, sentence pairs ``[CLS] A [SEP] B [SEP]`` get type 0 up to and including
the first ``[SEP]`` and type 1 after it, as the BERT tokenizer assigns them. Trailing columns of
padding are cut before the encoder runs.

Probe layers (per-sample shapes, ``D = hidden_size``)
-----------------------------------------------------
``input`` ``(T,)``; ``embeddings`` ``(D,)`` the embedding output (``hidden_states[0]``) averaged
over the real tokens; ``layer1..layerL`` ``(D,)`` each hidden layer's output pooled with
``pooling`` (``cls``: first token; ``mean``: mean over real tokens); ``pooled`` ``(D,)`` the
encoder's ``pooler_output`` when it has one (BERT: ``tanh(W h_CLS)``), else the last layer
pooled (the penultimate layer); ``logits`` ``(n_classes,)``.

Rebuilding: ``spec["config"]`` holds the encoder's config as a dict, so
``build_hf(**spec)`` rebuilds the architecture without reading the pretrained files (the
weights come from the checkpoint's state dict).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from mfoml.nets.layernames import probe_layer_names
from mfoml.nets.probed import select_probe_layers
from mfoml.nets.transformer import TokenClassifier, masked_mean

__all__ = ["HFClassifier", "build_hf", "token_types"]


def token_types(ids: torch.Tensor, sep_id: int, mask: torch.Tensor) -> torch.Tensor:
    """BERT token types of ``ids`` ``(B, T)``: 1 after the first ``sep_id``, else 0 (pads 0)."""
    is_sep = (ids == sep_id).long()
    before = torch.cumsum(is_sep, dim=1) - is_sep
    return ((before > 0) & mask).long()


class HFClassifier(TokenClassifier):
    """A ``transformers`` encoder + dropout + linear head (see the module docstring)."""

    def __init__(
        self,
        encoder: nn.Module,
        *,
        max_len: int,
        n_classes: int,
        pooling: str,
        pad_id: int,
        sep_id: int | None,
        dropout: float,
    ) -> None:
        super().__init__()
        cfg = encoder.config
        self.encoder = encoder
        self.max_len, self.pooling, self.pad_id, self.sep_id = max_len, pooling, pad_id, sep_id
        self.n_layers = int(cfg.num_hidden_layers)
        self.use_types = sep_id is not None and int(getattr(cfg, "type_vocab_size", 0) or 0) > 1
        self.head_drop = nn.Dropout(dropout)
        self.classifier = nn.Linear(int(cfg.hidden_size), n_classes)
        nn.init.normal_(self.classifier.weight, std=float(getattr(cfg, "initializer_range", 0.02)))
        nn.init.zeros_(self.classifier.bias)
        self.penultimate_layer = "pooled"

    def freeze_encoder(self) -> list[str]:
        """Freeze the ``transformers`` encoder (pooler included) and keep it in eval mode (no
        dropout) also while the model trains; the classifier trains. Returns the frozen
        parameter names."""
        self._encoder_frozen = True
        names = []
        for name, p in self.encoder.named_parameters():
            p.requires_grad_(False)
            names.append(f"encoder.{name}")
        self.train(self.training)
        return names

    def train(self, mode: bool = True) -> HFClassifier:
        """Set training mode; a frozen encoder (:meth:`freeze_encoder`) stays in eval mode."""
        super().train(mode)
        if getattr(self, "_encoder_frozen", False):
            self.encoder.eval()
        return self

    @property
    def probe_layers(self) -> list[str]:
        """``input, embeddings, layer1..layerL, pooled, logits`` (mfoml.nets.layernames)."""
        return probe_layer_names("hf", self.n_layers)

    def forward_features(
        self, x: torch.Tensor, layers: Sequence[str] | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Logits and the requested probe layers (``None``: all) from one forward pass."""
        wanted = select_probe_layers(self.probe_layers, layers)
        if x.dim() != 2 or x.shape[1] > self.max_len:
            raise ValueError(f"hf: input must be token ids (B, T<={self.max_len}), got {x.shape}")
        ids = x.round().long() if x.is_floating_point() else x.long()
        mask = ids != self.pad_id
        real_cols = torch.nonzero(mask.any(0))
        keep = int(real_cols.max()) + 1 if len(real_cols) else 1
        ids, mask = ids[:, :keep], mask[:, :keep]
        kwargs: dict[str, Any] = {"input_ids": ids, "attention_mask": mask.long()}
        if self.use_types:
            kwargs["token_type_ids"] = token_types(ids, int(self.sep_id), mask)  # type: ignore[arg-type]
        hidden_wanted = any(n == "embeddings" or n.startswith("layer") for n in wanted)
        out = self.encoder(**kwargs, output_hidden_states=hidden_wanted, return_dict=True)
        last = out.last_hidden_state
        pooler = getattr(out, "pooler_output", None)
        pooled = pooler if pooler is not None else self._pool(last, mask)
        logits = self.classifier(self.head_drop(pooled))
        feats: dict[str, torch.Tensor] = {"input": x, "pooled": pooled, "logits": logits}
        if hidden_wanted:
            states = out.hidden_states
            feats["embeddings"] = masked_mean(states[0], mask)
            for i in range(1, len(states)):
                if f"layer{i}" in wanted:
                    feats[f"layer{i}"] = self._pool(states[i], mask)
        return logits, {name: feats[name] for name in wanted}

    def _dummy_input(self, device: torch.device) -> torch.Tensor:
        """Two full-length rows of one non-padding token id, ``(2, max_len)`` (for
        :meth:`probe_shapes`)."""
        return torch.full((2, self.max_len), self.pad_id + 1, device=device)


def build_hf(
    input_shape: Sequence[int],
    n_classes: int,
    *,
    pretrained: str | None = None,
    config: dict[str, Any] | None = None,
    pooling: str = "cls",
    pad_id: int | None = None,
    sep_id: int | None = None,
    dropout: float | None = None,
    local_files_only: bool = True,
    seed: int | None = None,
    source: str | None = None,
) -> HFClassifier:
    """Build an :class:`HFClassifier` (``arch: hf``).

    Parameters
    ----------
    input_shape : ``(T,)``, the longest sequence (at most the encoder's
        ``max_position_embeddings``).
    n_classes : number of logits.
    pretrained : a local model directory (``save_pretrained`` layout) or, with
        ``local_files_only=False`` and network, a hub id such as ``bert-base-cased``.
    config : an encoder config as a dict (``model_type`` + fields): build with random weights
        from it instead (what ``spec`` uses to rebuild the architecture).
    pooling : ``cls`` or ``mean`` (hidden-layer probes; and ``pooled`` for encoders without a
        pooler).
    pad_id, sep_id : padding and separator ids (``pad_id`` default: the config's
        ``pad_token_id`` or 0; ``sep_id`` None: no token types).
    dropout : dropout before the classifier (default: the config's ``hidden_dropout_prob``,
        else 0.1).
    seed : initialize the head (and a config-built encoder) under ``torch.manual_seed(seed)``.
    source : where the pretrained weights came from (recorded in ``spec``; not read).
    """
    from transformers import AutoConfig, AutoModel

    shape = [int(s) for s in input_shape]
    if len(shape) != 1 or shape[0] < 1:
        raise ValueError(f"input_shape: an hf encoder needs (T,), got {tuple(input_shape)}")
    if pooling not in ("cls", "mean"):
        raise ValueError(f"pooling: must be 'cls' or 'mean', got {pooling!r}")
    if (pretrained is None) == (config is None):
        raise ValueError("hf: give exactly one of pretrained (a model directory) and config")
    fork = torch.random.fork_rng(devices=[]) if seed is not None else contextlib.nullcontext()
    with fork:
        if seed is not None:
            torch.manual_seed(int(seed))
        if config is not None:
            cfg = AutoConfig.for_model(**dict(config))
            encoder = AutoModel.from_config(cfg)
        else:
            try:
                encoder = AutoModel.from_pretrained(
                    str(pretrained), local_files_only=bool(local_files_only)
                )
            except OSError as exc:
                raise FileNotFoundError(
                    f"hf: cannot load the pretrained encoder {pretrained!r}"
                    + (" (local_files_only: the hub is not asked)" if local_files_only else "")
                    + f": {exc}"
                ) from exc
        cfg = encoder.config
        max_pos = int(getattr(cfg, "max_position_embeddings", shape[0]))
        if shape[0] > max_pos:
            raise ValueError(f"input_shape: T={shape[0]} exceeds max_position_embeddings={max_pos}")
        pad = pad_id if pad_id is not None else getattr(cfg, "pad_token_id", None)
        pad = 0 if pad is None else int(pad)
        drop = dropout if dropout is not None else getattr(cfg, "hidden_dropout_prob", 0.1)
        model = HFClassifier(
            encoder,
            max_len=shape[0],
            n_classes=int(n_classes),
            pooling=pooling,
            pad_id=pad,
            sep_id=None if sep_id is None else int(sep_id),
            dropout=float(drop),
        )
    model.spec = {
        "arch": "hf",
        "input_shape": shape,
        "n_classes": int(n_classes),
        "pretrained": None,
        "config": json.loads(cfg.to_json_string(use_diff=False)),
        "pooling": pooling,
        "pad_id": pad,
        "sep_id": model.sep_id,
        "dropout": float(drop),
        "local_files_only": bool(local_files_only),
        "seed": seed,
        "source": str(pretrained) if pretrained is not None else source,
    }
    return model
