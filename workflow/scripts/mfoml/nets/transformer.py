"""``arch: transformer``: an encoder-only transformer for sequence classification, from scratch.

Written here rather than taken from ``torch.nn.TransformerEncoder`` or HuggingFace because the
study varies knobs those do not expose: the query/key dimension apart from the value
dimension, the attention scaling (``1/d_k``, none, a learned temperature), positional coding
off, and norm placement "none"; and because every block's pooled output must come from the
same forward pass as the logits. The attention itself is
``torch.nn.functional.scaled_dot_product_attention``.

Input convention
----------------
A batch is a tensor ``(B, T)`` of token ids (int64, or a float tensor holding whole numbers,
which is what the float32 training arrays give), right-padded with ``pad_id`` (default 0);
the attention mask is derived from it (``ids != pad_id``), so no second tensor travels with
the ids. ``T <= max_len = input_shape[0]``. Sequences must begin with ``[CLS]`` when
``pooling="cls"`` (the text data sets do). Columns after the last real token of a batch are
dropped before the encoder runs (exact: padded positions never enter a real token's
computation), so a batch costs what its longest sample costs.

Architecture (``L = depth``, ``D = d_model``, ``H = heads``)
-------------------------------------------------------------
Embeddings: token embedding (pad row zero) + positional coding (``learned``: a trained
``(max_len, D)`` table; ``sinusoidal``: the fixed sine/cosine table of Vaswani et al. 2017;
``none``: nothing, which makes the model invariant to the order of the tokens), then LayerNorm
when ``norm="post"`` (as BERT), then dropout. ``L`` blocks of multi-head self-attention
(``H`` heads, query/key dimension ``d_qk`` and value dimension ``d_v`` per head, default
``D // H``) and a feed-forward layer ``D -> d_ff -> D`` (default ``d_ff = 4 D``, activation
``activation``, default GELU), with residual connections and

- ``norm="pre"``: ``h + Attn(LN(h))``, ``h + FF(LN(h))``, and a final LayerNorm;
- ``norm="post"``: ``LN(h + Attn(h))``, ``LN(h + FF(h))`` (original transformer, BERT);
- ``norm="none"``: ``h + Attn(h)``, ``h + FF(h)``.

Attention logits ``q.k * s`` with ``attention_scale``: ``sqrt`` (``s = 1/sqrt(d_qk)``),
``linear`` (``s = 1/d_qk``), ``none`` (``s = 1``), ``learned`` (``s = exp(-theta_h)``, one
learned ``theta`` per head and layer, initialized at ``log sqrt(d_qk)``). Padded keys get the
most negative finite logit, so their weight is exactly zero (a row of padding alone attends
uniformly and stays finite). Pooling (``pooling``): ``cls``, the state of the first token;
``mean``, the mean over the real (non-padding) tokens. Head: ``pooled = tanh(W_p pool(h_L))``
(the BERT pooler; after the final LayerNorm for pre-norm), dropout, ``logits = W pooled + b``.
Weights keep PyTorch's default initialization (``nn.Linear``: uniform with bound
``1/sqrt(fan_in)``; ``nn.Embedding``: standard normal; the pad row zero). BERT's ``N(0, 0.02)``
is made for ``D = 768``: with the narrow encoders of this study it left the word-order task
unlearned after four epochs where the default learns it in one.

Probe layers (per-sample shapes)
--------------------------------
``input`` ``(T,)`` the ids as given; ``embeddings`` ``(D,)`` the embedding output averaged over
the real tokens (always the mean: the ``[CLS]`` embedding is the same for every sample);
``block1..blockL`` ``(D,)`` each block's output pooled with ``pooling``; ``pooled`` ``(D,)``
the pooler output (the penultimate layer, fed to the classifier); ``logits`` ``(n_classes,)``.

Masked-language-model head
--------------------------
:meth:`TransformerClassifier.mlm_logits` gives ``(B, T, vocab_size)`` logits from the final
token states through ``Linear(D, D) -> GELU -> LayerNorm``, scaled by ``D^-1/2``, and a linear
map whose weight is the token embedding (tied, as BERT; the scaling, as T5's tied head, keeps
the initial logits of order one with standard-normal embeddings); :func:`mfoml.nets.pretrain.mask_tokens` draws BERT's corruption (15 % of the non-special
tokens: 80 % ``[MASK]``, 10 % a random token, 10 % unchanged) and :func:`~mfoml.nets.pretrain.mlm_loss` is
the cross-entropy on the selected positions. The head is part of every model (its weights live in
every checkpoint), so a classifier can start from an MLM-pretrained checkpoint as is.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from mfoml.nets.layernames import probe_layer_names
from mfoml.nets.models import ProbedModel, make_activation
from mfoml.nets.probed import select_probe_layers

__all__ = [
    "ATTENTION_SCALES",
    "NORMS",
    "POOLINGS",
    "POSITIONAL",
    "TokenClassifier",
    "TransformerClassifier",
    "build_transformer",
    "masked_mean",
    "sinusoidal_table",
]

POSITIONAL = ("learned", "sinusoidal", "none")
ATTENTION_SCALES = ("sqrt", "linear", "none", "learned")
NORMS = ("pre", "post", "none")
POOLINGS = ("cls", "mean")


def sinusoidal_table(max_len: int, d_model: int) -> torch.Tensor:
    """``(max_len, d_model)``: ``sin(p / 10000^(2i/D))`` at even, ``cos`` at odd columns."""
    pos = torch.arange(max_len, dtype=torch.float64)[:, None]
    freq = torch.exp(
        -math.log(10000.0) * torch.arange(0, d_model, 2, dtype=torch.float64) / d_model
    )
    table = torch.zeros(max_len, d_model, dtype=torch.float64)
    table[:, 0::2] = torch.sin(pos * freq)
    table[:, 1::2] = torch.cos(pos * freq[: d_model // 2])
    return table.float()


def masked_mean(h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``h`` ``(B, T, D)`` over the positions where ``mask`` ``(B, T)`` is true."""
    m = mask.to(h.dtype)[..., None]
    return (h * m).sum(1) / m.sum(1).clamp(min=1.0)


class SelfAttention(nn.Module):
    """Multi-head self-attention with separate query/key and value dimensions."""

    def __init__(self, d_model: int, heads: int, d_qk: int, d_v: int, scale: str, dropout: float):
        super().__init__()
        self.heads, self.d_qk, self.d_v, self.scale = heads, d_qk, d_v, scale
        self.q = nn.Linear(d_model, heads * d_qk)
        self.k = nn.Linear(d_model, heads * d_qk)
        self.v = nn.Linear(d_model, heads * d_v)
        self.out = nn.Linear(heads * d_v, d_model)
        self.dropout = dropout
        if scale == "learned":
            self.log_temperature = nn.Parameter(torch.full((heads,), 0.5 * math.log(d_qk)))

    def forward(self, h: torch.Tensor, key_pad: torch.Tensor) -> torch.Tensor:
        b, t, _ = h.shape
        q = self.q(h).view(b, t, self.heads, self.d_qk).transpose(1, 2)
        k = self.k(h).view(b, t, self.heads, self.d_qk).transpose(1, 2)
        v = self.v(h).view(b, t, self.heads, self.d_v).transpose(1, 2)
        if self.scale == "sqrt":
            q = q * self.d_qk**-0.5
        elif self.scale == "linear":
            q = q / self.d_qk
        elif self.scale == "learned":
            q = q * torch.exp(-self.log_temperature).to(q.dtype)[None, :, None, None]
        bias = torch.zeros(key_pad.shape, dtype=q.dtype, device=q.device)
        bias = bias.masked_fill(key_pad, torch.finfo(q.dtype).min)[:, None, None, :]
        drop = self.dropout if self.training else 0.0
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=drop, scale=1.0)
        return self.out(o.transpose(1, 2).reshape(b, t, self.heads * self.d_v))

    def extra_repr(self) -> str:
        return f"heads={self.heads}, d_qk={self.d_qk}, d_v={self.d_v}, scale={self.scale!r}"


class EncoderBlock(nn.Module):
    """Self-attention + feed-forward with residuals and the chosen norm placement."""

    def __init__(
        self,
        d_model: int,
        heads: int,
        d_qk: int,
        d_v: int,
        d_ff: int,
        scale: str,
        norm: str,
        dropout: float,
        activation: str,
    ) -> None:
        super().__init__()
        self.norm = norm
        self.attn = SelfAttention(d_model, heads, d_qk, d_v, scale, dropout)
        self.ff = nn.Sequential(
            nn.Linear(d_model, d_ff),
            make_activation(activation),
            nn.Dropout(dropout),
            nn.Linear(d_ff, d_model),
        )
        use_ln = norm != "none"
        self.ln1 = nn.LayerNorm(d_model) if use_ln else nn.Identity()
        self.ln2 = nn.LayerNorm(d_model) if use_ln else nn.Identity()
        self.drop = nn.Dropout(dropout)

    def forward(self, h: torch.Tensor, key_pad: torch.Tensor) -> torch.Tensor:
        if self.norm == "post":
            h = self.ln1(h + self.drop(self.attn(h, key_pad)))
            return self.ln2(h + self.drop(self.ff(h)))
        h = h + self.drop(self.attn(self.ln1(h), key_pad))
        return h + self.drop(self.ff(self.ln2(h)))


class TokenClassifier(ProbedModel):
    """A probed classifier of token ids ``(B, T)`` whose probe layers come from its
    ``forward_features`` (the encoders here and in :mod:`mfoml.nets.hf`); ``pooling``:
    ``"cls"`` (the first position) or ``"mean"`` (over the non-padding positions)."""

    pooling: str
    classifier: nn.Linear

    def _head_linear(self) -> nn.Linear:
        return self.classifier

    def _pool(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``(B, T, D)`` hidden states -> ``(B, D)`` (``mask`` ``(B, T)``: real tokens)."""
        return h[:, 0] if self.pooling == "cls" else masked_mean(h, mask)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, n_classes)`` of token ids ``x`` ``(B, T)``."""
        logits, _ = self.forward_features(x, [])
        return logits


class TransformerClassifier(TokenClassifier):
    """Encoder transformer with named probe layers (see the module docstring)."""

    def __init__(
        self,
        *,
        max_len: int,
        n_classes: int,
        vocab_size: int,
        depth: int,
        d_model: int,
        heads: int,
        d_qk: int,
        d_v: int,
        d_ff: int,
        positional: str,
        attention_scale: str,
        norm: str,
        pooling: str,
        dropout: float,
        activation: str,
        pad_id: int,
    ) -> None:
        super().__init__()
        self.max_len, self.vocab_size, self.pad_id = max_len, vocab_size, pad_id
        self.positional, self.pooling, self.depth = positional, pooling, depth
        self.token = nn.Embedding(vocab_size, d_model, padding_idx=pad_id)
        if positional == "learned":
            self.position = nn.Embedding(max_len, d_model)
        elif positional == "sinusoidal":
            self.register_buffer("position_table", sinusoidal_table(max_len, d_model), False)
        self.emb_norm = nn.LayerNorm(d_model) if norm == "post" else nn.Identity()
        self.emb_drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(
            EncoderBlock(
                d_model, heads, d_qk, d_v, d_ff, attention_scale, norm, dropout, activation
            )
            for _ in range(depth)
        )
        self.final_norm = nn.LayerNorm(d_model) if norm == "pre" else nn.Identity()
        self.pooler = nn.Linear(d_model, d_model)
        self.head_drop = nn.Dropout(dropout)
        self.classifier = nn.Linear(d_model, n_classes)
        self.mlm_dense = nn.Linear(d_model, d_model)
        self.mlm_norm = nn.LayerNorm(d_model)
        self.mlm_bias = nn.Parameter(torch.zeros(vocab_size))
        self.penultimate_layer = "pooled"

    ENCODER_MODULES = ("token", "position", "emb_norm", "emb_drop", "blocks", "final_norm")

    def freeze_encoder(self) -> list[str]:
        """Freeze the encoder (embeddings, blocks, final norm) for training the head alone.

        Its parameters stop receiving gradients and its modules stay in eval mode (no dropout)
        even when the model is put in training mode; the pooler and the classifier train.
        Returns the names of the frozen parameters.
        """
        self._encoder_frozen = True
        names = []
        for name, p in self.named_parameters():
            if name.split(".")[0] in self.ENCODER_MODULES:
                p.requires_grad_(False)
                names.append(name)
        self.train(self.training)
        return names

    def train(self, mode: bool = True) -> TransformerClassifier:
        """Set training mode; a frozen encoder (:meth:`freeze_encoder`) stays in eval mode."""
        super().train(mode)
        if getattr(self, "_encoder_frozen", False):
            for name in self.ENCODER_MODULES:
                module = getattr(self, name, None)
                if module is not None:
                    module.eval()
        return self

    @property
    def probe_layers(self) -> list[str]:
        """``input, embeddings, block1..blockL, pooled, logits`` (mfoml.nets.layernames)."""
        return probe_layer_names("transformer", self.depth)

    def _ids(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 2:
            raise ValueError(f"transformer: input must be token ids (B, T), got {tuple(x.shape)}")
        if x.shape[1] > self.max_len:
            raise ValueError(f"transformer: {x.shape[1]} tokens exceed max_len={self.max_len}")
        ids = x.round().long() if x.is_floating_point() else x.long()
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= self.vocab_size):
            raise ValueError(
                f"transformer: token ids must be in [0, {self.vocab_size}), got "
                f"[{int(ids.min())}, {int(ids.max())}]"
            )
        return ids

    def _encode(
        self, x: torch.Tensor, want: set[str]
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """Final token states ``(B, T', D)``, the mask ``(B, T')`` and requested pooled layers."""
        ids = self._ids(x)
        mask = ids != self.pad_id
        real_cols = torch.nonzero(mask.any(0))
        keep = int(real_cols.max()) + 1 if len(real_cols) else 1
        ids, mask = ids[:, :keep], mask[:, :keep]
        h = self.token(ids)
        if self.positional == "learned":
            h = h + self.position.weight[:keep]
        elif self.positional == "sinusoidal":
            h = h + self.position_table[:keep].to(h.dtype)
        h = self.emb_drop(self.emb_norm(h))
        feats: dict[str, torch.Tensor] = {}
        if "embeddings" in want:
            feats["embeddings"] = masked_mean(h, mask)
        key_pad = ~mask
        for i, block in enumerate(self.blocks):
            h = block(h, key_pad)
            if f"block{i + 1}" in want:
                feats[f"block{i + 1}"] = self._pool(h, mask)
        return self.final_norm(h), mask, feats

    def forward_features(
        self, x: torch.Tensor, layers: Sequence[str] | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Logits and the requested probe layers (``None``: all) from one forward pass."""
        wanted = select_probe_layers(self.probe_layers, layers)
        h, mask, feats = self._encode(x, set(wanted))
        pooled = torch.tanh(self.pooler(self._pool(h, mask)))
        logits = self.classifier(self.head_drop(pooled))
        feats.update({"input": x, "pooled": pooled, "logits": logits})
        return logits, {name: feats[name] for name in wanted}

    def mlm_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Masked-language-model logits ``(B, T', vocab_size)`` (``T'``: trailing padding cut)."""
        h, _, _ = self._encode(x, set())
        h = self.mlm_norm(F.gelu(self.mlm_dense(h)))
        return F.linear(h * self.token.weight.shape[1] ** -0.5, self.token.weight, self.mlm_bias)

    def _dummy_input(self, device: torch.device) -> torch.Tensor:
        """Two full-length rows of one non-padding token id, ``(2, max_len)`` (for
        :meth:`probe_shapes`)."""
        return torch.full((2, self.max_len), (self.pad_id + 1) % self.vocab_size, device=device)


def build_transformer(
    input_shape: Sequence[int],
    n_classes: int,
    *,
    vocab_size: int,
    depth: int = 2,
    d_model: int = 64,
    heads: int = 4,
    d_qk: int | None = None,
    d_v: int | None = None,
    d_ff: int | None = None,
    positional: str = "learned",
    attention_scale: str = "sqrt",
    norm: str = "pre",
    pooling: str = "cls",
    dropout: float = 0.1,
    activation: str = "gelu",
    pad_id: int = 0,
    seed: int | None = None,
) -> TransformerClassifier:
    """Build a :class:`TransformerClassifier`; ``spec`` rebuilds it (``arch: transformer``).

    Parameters
    ----------
    input_shape : ``(T,)``: ``max_len``, the longest sequence (and learned position table).
    n_classes : number of logits.
    vocab_size : size of the token vocabulary (ids in ``[0, vocab_size)``).
    depth, d_model, heads : ``L``, ``D``, ``H`` (``D`` need not be divisible by ``H``).
    d_qk, d_v : per-head query/key and value dimensions (default ``D // H``).
    d_ff : feed-forward width (default ``4 D``).
    positional, attention_scale, norm, pooling : see the module docstring.
    dropout : dropout rate of embeddings, attention weights, residual branches and the head.
    activation : feed-forward nonlinearity (:func:`mfoml.nets.models.make_activation` names).
    pad_id : the padding token id (mask = ``ids != pad_id``).
    seed : initialize the weights under ``torch.manual_seed(seed)`` (global RNG untouched).
    """
    shape = [int(s) for s in input_shape]
    if len(shape) != 1 or shape[0] < 1:
        raise ValueError(f"input_shape: a transformer needs (T,), got {tuple(input_shape)}")
    d_model, heads, depth = int(d_model), int(heads), int(depth)
    checks = {
        "positional": (positional, POSITIONAL),
        "attention_scale": (attention_scale, ATTENTION_SCALES),
        "norm": (norm, NORMS),
        "pooling": (pooling, POOLINGS),
    }
    for key, (value, allowed) in checks.items():
        if value not in allowed:
            raise ValueError(f"{key}: must be one of {', '.join(allowed)}, got {value!r}")
    d_qk = d_model // heads if d_qk is None else int(d_qk)
    d_v = d_model // heads if d_v is None else int(d_v)
    d_ff = 4 * d_model if d_ff is None else int(d_ff)
    sizes = {"vocab_size": vocab_size, "d_model": d_model, "heads": heads, "d_qk": d_qk}
    sizes.update({"d_v": d_v, "d_ff": d_ff, "n_classes": n_classes})
    for key, value in sizes.items():
        if int(value) < 1:
            raise ValueError(f"{key}: must be >= 1, got {value!r}")
    if depth < 0:
        raise ValueError(f"depth: must be >= 0, got {depth}")
    if not 0 <= float(dropout) < 1:
        raise ValueError(f"dropout: must be in [0, 1), got {dropout!r}")
    if positional == "sinusoidal" and d_model % 2:
        raise ValueError(f"d_model: sinusoidal positions need an even d_model, got {d_model}")
    if not 0 <= int(pad_id) < int(vocab_size):
        raise ValueError(f"pad_id: must be in [0, vocab_size), got {pad_id!r}")
    make_activation(activation)
    fork = torch.random.fork_rng(devices=[]) if seed is not None else contextlib.nullcontext()
    with fork:
        if seed is not None:
            torch.manual_seed(int(seed))
        model = TransformerClassifier(
            max_len=shape[0],
            n_classes=int(n_classes),
            vocab_size=int(vocab_size),
            depth=depth,
            d_model=d_model,
            heads=heads,
            d_qk=d_qk,
            d_v=d_v,
            d_ff=d_ff,
            positional=positional,
            attention_scale=attention_scale,
            norm=norm,
            pooling=pooling,
            dropout=float(dropout),
            activation=str(activation),
            pad_id=int(pad_id),
        )
    model.spec = {
        "arch": "transformer",
        "input_shape": shape,
        "n_classes": int(n_classes),
        "vocab_size": int(vocab_size),
        "depth": depth,
        "d_model": d_model,
        "heads": heads,
        "d_qk": d_qk,
        "d_v": d_v,
        "d_ff": d_ff,
        "positional": positional,
        "attention_scale": attention_scale,
        "norm": norm,
        "pooling": pooling,
        "dropout": float(dropout),
        "activation": str(activation),
        "pad_id": int(pad_id),
        "seed": seed,
    }
    return model
