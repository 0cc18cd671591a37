"""Tokenizers for the text data sets, and the arrays they give the store.

Tokenizers
----------
:func:`train_tokenizer` trains a HuggingFace ``tokenizers`` BPE model on the training texts
only (BERT normalizer without lower-casing unless asked, BERT pre-tokenizer splitting on
whitespace and punctuation, so each word is tokenized on its own; special tokens ``[PAD] [UNK]
[CLS] [SEP] [MASK]`` with ids 0-4; template ``[CLS] A [SEP]`` / ``[CLS] A [SEP] B [SEP]``).
WordPiece training is not offered: the library's WordPiece trainer (like its BPE trainer with a
continuing-subword prefix) breaks ties between equally frequent merges in hash order, so two
runs on the same texts give different vocabularies; plain BPE is reproducible (tested).
:func:`pretrained_tokenizer` takes the tokenizer of a local model directory (e.g. BERT's
WordPiece; a hub id when the machine has network).

Arrays (see :func:`encode_texts`): token ids int32 ``(N, T)`` padded with the pad id (0 for the
tokenizers trained here and for BERT) on the right, attention masks uint8 ``(N, T)`` (1 = real
token), labels int64 ``(N,)``. Sequences longer than ``T = max_length`` are truncated (pairs:
longest first), counted in ``meta["text"]["n_truncated"]``; ``textorder`` drops those pairs
instead (truncation would break the pairing), counted in ``n_dropped_too_long``.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mfoml.data.text import TextSplits

log = logging.getLogger(__name__)

__all__ = [
    "SPECIAL_TOKENS",
    "TOKENIZER_KINDS",
    "encode_texts",
    "load_tokenizer",
    "make_tokenizer",
    "pretrained_tokenizer",
    "special_ids",
    "text_arrays",
    "tokenizer_meta",
    "train_tokenizer",
]

SPECIAL_TOKENS: tuple[str, ...] = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
TOKENIZER_KINDS: tuple[str, ...] = ("bpe",)


# ----------------------------------------------------------------------------------------------
# Tokenizers
# ----------------------------------------------------------------------------------------------


def _texts_for_training(texts: Iterable[Any]) -> Iterable[str]:
    for t in texts:
        if isinstance(t, tuple | list):
            yield from (str(part) for part in t)
        else:
            yield str(t)


def train_tokenizer(
    texts: Iterable[Any],
    *,
    kind: str = "bpe",
    vocab_size: int = 4000,
    lowercase: bool = False,
    min_frequency: int = 1,
) -> Any:
    """Train a ``tokenizers.Tokenizer`` on ``texts`` (strings or string pairs).

    Parameters
    ----------
    texts : the training texts (only these: the test split must not be passed).
    kind : ``"bpe"`` (the only kind; see the module docstring).
    vocab_size : the largest vocabulary, special tokens included (smaller when the texts
        hold fewer distinct pieces).
    lowercase : lower-case the text in the normalizer.
    min_frequency : the least count of a merged piece.

    Returns
    -------
    ``tokenizers.Tokenizer`` with the BERT post-processor (``[CLS] A [SEP]``, pairs
    ``[CLS] A [SEP] B [SEP]`` with type ids 0/1) and pad id 0.
    """
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    if kind not in TOKENIZER_KINDS:
        raise ValueError(
            f"tokenizer kind must be one of {TOKENIZER_KINDS}, got {kind!r} (WordPiece training "
            "is not reproducible in the tokenizers library; a pretrained WordPiece tokenizer "
            "can be given as a model directory)"
        )
    if int(vocab_size) < len(SPECIAL_TOKENS) + 1:
        raise ValueError(f"vocab_size must be > {len(SPECIAL_TOKENS)}, got {vocab_size!r}")
    tok = Tokenizer(models.BPE(unk_token="[UNK]"))
    trainer = trainers.BpeTrainer(
        vocab_size=int(vocab_size),
        min_frequency=int(min_frequency),
        special_tokens=list(SPECIAL_TOKENS),
        show_progress=False,
    )
    tok.normalizer = normalizers.BertNormalizer(lowercase=bool(lowercase), strip_accents=False)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(_texts_for_training(texts), trainer)
    _bert_template(tok)
    return tok


def _bert_template(tok: Any) -> None:
    from tokenizers import processors

    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)],
    )


def load_tokenizer(path: str | Path) -> Any:
    """A ``tokenizers.Tokenizer`` from a ``tokenizer.json`` file."""
    from tokenizers import Tokenizer

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: tokenizer file not found")
    return Tokenizer.from_file(str(path))


def pretrained_tokenizer(name_or_path: str, *, local_files_only: bool = True) -> Any:
    """The fast tokenizer of a pretrained model: a local directory, or a hub id with network.

    A directory holding ``tokenizer.json`` is read directly; otherwise
    ``transformers.AutoTokenizer`` converts the model's files (e.g. a BERT ``vocab.txt``).
    """
    path = Path(name_or_path)
    if (path / "tokenizer.json").is_file():
        return load_tokenizer(path / "tokenizer.json")
    from transformers import AutoTokenizer

    try:
        hf = AutoTokenizer.from_pretrained(str(name_or_path), local_files_only=local_files_only)
    except OSError as exc:
        raise FileNotFoundError(
            f"tokenizer {name_or_path!r}: not a local model directory"
            + (" (local_files_only: the hub is not asked)" if local_files_only else "")
            + f": {exc}"
        ) from exc
    if not getattr(hf, "is_fast", False):
        raise ValueError(f"tokenizer {name_or_path!r}: no fast (Rust) tokenizer available")
    return hf.backend_tokenizer


_SPECIAL_NAMES = {
    "pad": ("[PAD]", "<pad>"),
    "unk": ("[UNK]", "<unk>"),
    "cls": ("[CLS]", "<s>"),
    "sep": ("[SEP]", "</s>"),
    "mask": ("[MASK]", "<mask>"),
}


def special_ids(tokenizer: Any) -> dict[str, int | None]:
    """Ids of the pad, unk, cls, sep and mask tokens (BERT or RoBERTa names; None if absent)."""
    out: dict[str, int | None] = {}
    for key, names in _SPECIAL_NAMES.items():
        ids = [tokenizer.token_to_id(n) for n in names]
        out[key] = next((i for i in ids if i is not None), None)
    return out


def encode_texts(
    tokenizer: Any, texts: Sequence[Any], max_length: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Token ids, attention masks and truncation flags of ``texts``.

    Parameters
    ----------
    tokenizer : a ``tokenizers.Tokenizer`` (not modified).
    texts : strings, or ``(first, second)`` pairs.
    max_length : ``T``, the padded length (special tokens included).

    Returns
    -------
    ids : int32 ``(N, T)``, right-padded with the pad id.
    mask : uint8 ``(N, T)``, 1 for real tokens.
    truncated : bool ``(N,)``, samples that were cut to ``T`` tokens.
    """
    from tokenizers import Tokenizer

    if int(max_length) < 3:
        raise ValueError(f"max_length must be >= 3, got {max_length!r}")
    pad = special_ids(tokenizer)["pad"]
    if pad is None:
        raise ValueError("tokenizer has no pad token ([PAD] or <pad>)")
    tok = Tokenizer.from_str(tokenizer.to_str())
    tok.enable_truncation(int(max_length), strategy="longest_first")
    tok.enable_padding(pad_id=pad, pad_token=tok.id_to_token(pad), length=int(max_length))
    inputs = [tuple(t) if isinstance(t, tuple | list) else str(t) for t in texts]
    encs = tok.encode_batch(inputs)
    n = len(encs)
    ids = np.zeros((n, int(max_length)), dtype=np.int32)
    mask = np.zeros((n, int(max_length)), dtype=np.uint8)
    truncated = np.zeros(n, dtype=bool)
    for i, enc in enumerate(encs):
        ids[i] = enc.ids
        mask[i] = enc.attention_mask
        truncated[i] = len(enc.overflowing) > 0
    return ids, mask, truncated


# ----------------------------------------------------------------------------------------------
# Arrays and metadata for the store
# ----------------------------------------------------------------------------------------------


def text_arrays(
    splits: TextSplits, tokenizer: Any, max_length: int
) -> tuple[dict[str, np.ndarray | None], dict[str, Any]]:
    """Encode both splits; return the store's arrays and the ``text`` part of ``meta.json``.

    Arrays: ``x_{split}.npy`` int32 ids ``(N, T)``, ``mask_{split}.npy`` uint8 ``(N, T)``,
    ``y_{split}.npy`` int64 ``(N,)``, for ``textorder`` ``pairs_{split}.npy`` int64, and where
    the splits carry group ids (``{split}_groups``) ``groups_{split}.npy`` int64 ``(N,)``.
    Paired tasks drop the pairs of which a version would be truncated.
    """
    arrays: dict[str, np.ndarray | None] = {}
    info: dict[str, Any] = {"n_truncated": {}, "n_dropped_too_long": {}, "class_counts": {}}
    for split in ("train", "test"):
        texts = getattr(splits, f"{split}_texts")
        labels = np.asarray(getattr(splits, f"{split}_labels"), dtype=np.int64)
        pairs = getattr(splits, f"{split}_pairs")
        groups = getattr(splits, f"{split}_groups")
        if groups is not None:
            groups = np.asarray(groups, dtype=np.int64)
        ids, mask, truncated = encode_texts(tokenizer, texts, max_length)
        n_dropped = 0
        if pairs is not None:
            drop = truncated | truncated[pairs]
            keep = np.flatnonzero(~drop)
            new_index = np.full(len(labels), -1, dtype=np.int64)
            new_index[keep] = np.arange(len(keep))
            ids, mask, labels = ids[keep], mask[keep], labels[keep]
            groups = None if groups is None else groups[keep]
            pairs = new_index[pairs[keep]]
            n_dropped, truncated = int(drop.sum()), truncated[keep]
            arrays[f"pairs_{split}.npy"] = pairs
        if len(labels) == 0:
            raise ValueError(f"text data: the {split} split is empty after encoding")
        arrays[f"x_{split}.npy"] = ids
        arrays[f"mask_{split}.npy"] = mask
        arrays[f"y_{split}.npy"] = labels
        if groups is not None:
            arrays[f"groups_{split}.npy"] = groups
        info["n_truncated"][split] = int(truncated.sum())
        info["n_dropped_too_long"][split] = n_dropped
        info["class_counts"][split] = np.bincount(
            labels, minlength=len(splits.class_names)
        ).tolist()
    info["max_length"] = int(max_length)
    return arrays, info


def tokenizer_meta(tokenizer: Any, how: Mapping[str, Any]) -> dict[str, Any]:
    """The ``tokenizer`` part of ``meta.json``: how it was made, vocabulary size, special ids."""
    return {
        **dict(how),
        "file": "tokenizer.json",
        "vocab_size": int(tokenizer.get_vocab_size()),
        "special_ids": special_ids(tokenizer),
    }


def make_tokenizer(
    spec: str,
    train_texts: Sequence[Any],
    *,
    vocab_size: int,
    lowercase: bool,
    hub: bool = False,
) -> tuple[Any, dict[str, Any]]:
    """Train (``spec`` = ``bpe``) or load (a ``tokenizer.json`` file, a local
    model directory or a hub id) the tokenizer of a text data set; return it and how."""
    if spec in TOKENIZER_KINDS:
        log.info("training a %s tokenizer (vocab_size=%d) on the training split", spec, vocab_size)
        tok = train_tokenizer(train_texts, kind=spec, vocab_size=vocab_size, lowercase=lowercase)
        how = {
            "kind": spec,
            "trained_on": "train split",
            "vocab_size_requested": int(vocab_size),
            "lowercase": bool(lowercase),
        }
        return tok, how
    path = Path(spec)
    if path.is_file():
        return load_tokenizer(path), {"kind": "file", "source": str(path)}
    with contextlib.suppress(FileNotFoundError):
        tok = pretrained_tokenizer(spec, local_files_only=not hub)
        return tok, {"kind": "pretrained", "source": spec}
    raise ValueError(
        f"tokenizer: {spec!r} is neither a kind ({', '.join(TOKENIZER_KINDS)}), a tokenizer.json "
        "file nor a local pretrained model directory (a hub id needs tokenizer_hub and network)"
    )
