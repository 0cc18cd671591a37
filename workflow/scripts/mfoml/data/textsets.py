"""Text data sets in the normalized store: preparation and loading.

A text data set directory holds, besides ``meta.json`` (written last, with sha256 checksums of
every array):

``x_{split}.npy``     int32 ``(N, T)`` token ids, right-padded with the pad id (0 for the
                      tokenizers trained here and for BERT; ``meta["tokenizer"]["special_ids"]``)
``mask_{split}.npy``  uint8 ``(N, T)`` attention masks (1 = real token; always ``ids != pad``)
``y_{split}.npy``     int64 ``(N,)`` labels (zeros for a corpus: task ``"mlm"``)
``pairs_{split}.npy`` ``textorder`` only: int64 ``(N,)``, each sample's other version
``tokenizer.json``    the tokenizer (HuggingFace ``tokenizers`` format), sha256 in
                      ``meta["tokenizer"]["sha256"]``

``meta.json`` has the keys of every store entry (``kind: "text"``, ``input_shape: [T]``) plus
``text`` (provenance of the texts, class counts per split, truncation counts, ``max_length``)
and ``tokenizer`` (how it was made, ``vocab_size``, ``special_ids``, ``file``, ``sha256``).

Data sets (:data:`TEXT_DATASETS`): ``textsource`` and ``textorder`` (embedded, offline;
:mod:`mfoml.data.text`), ``glue-cola``, ``glue-sst2``, ``glue-mrpc``, ``glue-rte`` (downloads;
:mod:`mfoml.data.glue`) and the corpus ``wikitext2`` (download; task ``"mlm"``: the paragraphs
of each split are tokenized without special tokens, concatenated and cut into blocks of
``T - 2`` tokens, each wrapped as ``[CLS] block [SEP]``; train = WikiText train, test = WikiText
test).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mfoml.data import text as T
from mfoml.data import tokens as K
from mfoml.data.glue import CORPORA, GLUE_TASKS, load_corpus, load_glue
from mfoml.data.store import (
    FORMAT_VERSION,
    IntegrityError,
    SourceInfo,
    load_dataset,
    register_source,
    write_normalized,
)
from mfoml.data.subsample import per_class_subset
from mfoml.io import atomic_write_text, file_checksum

__all__ = ["TEXT_DATASETS", "TextDataset", "corpus_arrays", "load_text_dataset", "prepare_text"]

TEXT_DATASETS: tuple[str, ...] = (
    *T.EMBEDDED_TEXT,
    *(f"glue-{t}" for t in GLUE_TASKS),
    *CORPORA,
)
log = logging.getLogger(__name__)


@dataclass
class TextDataset:
    """A loaded text data set (arrays as in the module docstring; test arrays may be None)."""

    x_train: np.ndarray
    mask_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray | None
    mask_test: np.ndarray | None
    y_test: np.ndarray | None
    meta: dict[str, Any] = field(default_factory=dict)
    tokenizer_path: Path | None = None
    pairs: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def special_ids(self) -> dict[str, int | None]:
        return dict(self.meta["tokenizer"]["special_ids"])

    def tokenizer(self) -> Any:
        """The ``tokenizers.Tokenizer`` saved beside the arrays."""
        assert self.tokenizer_path is not None
        return K.load_tokenizer(self.tokenizer_path)


def corpus_arrays(
    paragraphs: Mapping[str, list[str]], tokenizer: Any, max_length: int
) -> tuple[dict[str, np.ndarray | None], dict[str, Any]]:
    """Blocks of ``max_length`` tokens (``[CLS]`` + ``T - 2`` corpus tokens + ``[SEP]``).

    ``paragraphs``: ``{"train": [...], "test": [...]}``. Returns the store's arrays (labels are
    zeros) and the ``text`` part of ``meta.json`` (token and block counts).
    """
    ids_of = K.special_ids(tokenizer)
    if ids_of["cls"] is None or ids_of["sep"] is None or ids_of["pad"] is None:
        raise ValueError("corpus: the tokenizer needs [CLS], [SEP] and [PAD] tokens")
    block = int(max_length) - 2
    if block < 1:
        raise ValueError(f"max_length must be >= 3, got {max_length}")
    arrays: dict[str, np.ndarray | None] = {}
    info: dict[str, Any] = {"n_tokens": {}, "n_blocks": {}, "max_length": int(max_length)}
    for split, paras in paragraphs.items():
        encs = tokenizer.encode_batch(list(paras), add_special_tokens=False)
        stream = np.fromiter((i for e in encs for i in e.ids), dtype=np.int32)
        n_blocks = -(-len(stream) // block)
        ids = np.full((n_blocks, int(max_length)), ids_of["pad"], dtype=np.int32)
        for b in range(n_blocks):
            chunk = stream[b * block : (b + 1) * block]
            ids[b, 0] = ids_of["cls"]
            ids[b, 1 : 1 + len(chunk)] = chunk
            ids[b, 1 + len(chunk)] = ids_of["sep"]
        arrays[f"x_{split}.npy"] = ids
        arrays[f"mask_{split}.npy"] = (ids != ids_of["pad"]).astype(np.uint8)
        arrays[f"y_{split}.npy"] = np.zeros(n_blocks, dtype=np.int64)
        info["n_tokens"][split], info["n_blocks"][split] = int(len(stream)), n_blocks
    return arrays, info


def prepare_text(
    name: str,
    out_dir: str | os.PathLike[str],
    *,
    tokenizer: str = "bpe",
    vocab_size: int = 4000,
    lowercase: bool = False,
    max_length: int = 64,
    seed: int = 0,
    per_class: int | None = None,
    n_sentences: int | None = None,
    test_fraction: float = 0.25,
    per_class_cap: int | None = None,
    download_dir: str | os.PathLike[str] | None = None,
    mirror: str | None = None,
    checksums: Mapping[str, str] | None = None,
    timeout: float = 60.0,
    grayscale: bool = False,
    tokenizer_hub: bool = False,
) -> dict[str, Any]:
    """Build text data set ``name`` and write it to ``out_dir`` (format in the module docstring).

    Parameters
    ----------
    name : one of :data:`TEXT_DATASETS`.
    tokenizer : ``"bpe"`` (trained on the training split only), a
        ``tokenizer.json`` file (e.g. a corpus data set's, to share its vocabulary), or a local
        pretrained model directory (e.g. ``bert-base-cased``).
    vocab_size, lowercase : of a trained tokenizer.
    max_length : ``T``, tokens per sample including ``[CLS]``/``[SEP]``.
    seed, per_class, n_sentences, test_fraction : of the embedded tasks
        (:func:`mfoml.data.text.make_textsource`, :func:`~mfoml.data.text.make_textorder`).
    per_class_cap : keep at most this many training samples per class (seeded subset, as
        :func:`mfoml.datasets.per_class_subset`; GLUE and ``textsource``).
    download_dir : raw files go to ``download_dir/<name>/`` (default
        ``<out_dir>/../_downloads``).
    mirror, checksums, timeout : of the downloads (:func:`mfoml.data.glue.fetch_files`).
    grayscale : must be false (accepted because the data rule passes it to every source).
    tokenizer_hub : let ``tokenizer`` be a hub id (needs network).

    Returns
    -------
    The metadata written to ``meta.json``.
    """
    if grayscale:
        raise ValueError(f"{name}: grayscale applies to image data sets only")
    if name not in TEXT_DATASETS:
        raise ValueError(f"unknown text data set {name!r}; known: {', '.join(TEXT_DATASETS)}")
    out = Path(out_dir)
    base = Path(download_dir) if download_dir is not None else out.parent / "_downloads"
    fetch = {"mirror": mirror, "checksums": checksums, "timeout": timeout}
    raw_files = None
    task, kind = "classification", "text"
    if name in CORPORA:
        paragraphs, raw_files = load_corpus(name, base / name, **fetch)
        parts = {"train": paragraphs["train"], "test": paragraphs["test"]}
        tok, how = K.make_tokenizer(
            tokenizer, parts["train"], vocab_size=vocab_size, lowercase=lowercase, hub=tokenizer_hub
        )
        arrays, info = corpus_arrays(parts, tok, max_length)
        task, n_classes, class_names = "mlm", None, None
        info["provenance"] = {"corpus": name, "splits": {"train": "train", "test": "test"}}
    else:
        if name == "textsource":
            splits = T.make_textsource(per_class=per_class, test_fraction=test_fraction, seed=seed)
        elif name == "textorder":
            if per_class_cap is not None:
                raise ValueError("textorder: per_class_cap does not apply (use n_sentences)")
            splits = T.make_textorder(
                n_sentences=n_sentences, test_fraction=test_fraction, seed=seed
            )
        else:
            splits, raw_files = load_glue(name.removeprefix("glue-"), base / name, **fetch)
        if per_class_cap is not None:
            keep = per_class_subset(splits.train_labels, per_class_cap, seed)
            splits.train_texts = [splits.train_texts[i] for i in keep]
            splits.train_labels = splits.train_labels[keep]
        tok, how = K.make_tokenizer(
            tokenizer,
            splits.train_texts,
            vocab_size=vocab_size,
            lowercase=lowercase,
            hub=tokenizer_hub,
        )
        arrays, info = K.text_arrays(splits, tok, max_length)
        info["provenance"] = splits.provenance
        n_classes, class_names = len(splits.class_names), list(splits.class_names)
    y_test = arrays.get("y_test.npy")
    meta = {
        "name": name,
        "source": "embedded" if raw_files is None else [f["url"] for f in raw_files],
        "task": task,
        "kind": kind,
        "n_classes": n_classes,
        "class_names": class_names,
        "feature_names": None,
        "input_shape": [int(max_length)],
        "n_train": int(len(arrays["y_train.npy"])),  # type: ignore[arg-type]
        "n_test": 0 if y_test is None else int(len(y_test)),
        "options": {
            "tokenizer": tokenizer,
            "vocab_size": int(vocab_size),
            "lowercase": bool(lowercase),
            "max_length": int(max_length),
            "seed": int(seed),
            "per_class": per_class,
            "n_sentences": n_sentences,
            "test_fraction": float(test_fraction),
            "per_class_cap": per_class_cap,
            "tokenizer_hub": bool(tokenizer_hub),
        },
        "raw_files": raw_files,
        "format_version": FORMAT_VERSION,
        "text": info,
        "tokenizer": K.tokenizer_meta(tok, how),
    }
    out.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        (out / "meta.json").unlink()  # untrusted from here until write_normalized's last write
    atomic_write_text(out / "tokenizer.json", tok.to_str(pretty=True))
    meta["tokenizer"]["sha256"] = file_checksum(out / "tokenizer.json", "sha256")
    counts = info.get("class_counts") or info.get("n_blocks")
    log.info(
        "%s: %d train / %d test samples, T=%d (%s)",
        name,
        meta["n_train"],
        meta["n_test"],
        max_length,
        counts,
    )
    return write_normalized(out, arrays, meta)


def load_text_dataset(path: str | os.PathLike[str], verify: bool = True) -> TextDataset:
    """Load a text data set written by :func:`prepare_text`, verifying every checksum.

    Raises ``FileNotFoundError`` (incomplete directory) or ``IntegrityError`` (checksum
    mismatch, masks that disagree with the ids, a directory that is not a text data set).
    """
    path = Path(path)
    base = load_dataset(path, verify=verify)
    meta = base.meta
    if meta.get("kind") != "text" or "tokenizer" not in meta:
        raise IntegrityError(f"{path}: not a text data set (meta.json kind={meta.get('kind')!r})")
    tok_path = path / meta["tokenizer"]["file"]
    if not tok_path.is_file():
        raise FileNotFoundError(f"{tok_path}: missing (listed in {path / 'meta.json'})")
    if verify and file_checksum(tok_path, "sha256") != meta["tokenizer"].get("sha256"):
        raise IntegrityError(f"{tok_path}: sha256 does not match meta.json")
    pad = meta["tokenizer"]["special_ids"]["pad"]

    def extra(fname: str, like: np.ndarray | None) -> np.ndarray | None:
        if fname not in meta["checksums"]:
            return None
        arr = np.load(path / fname, allow_pickle=False)
        if like is not None and arr.shape[0] != like.shape[0]:
            raise IntegrityError(f"{path / fname}: {arr.shape[0]} rows, expected {like.shape[0]}")
        return arr

    masks = {}
    for split in ("train", "test"):
        ids = getattr(base, f"x_{split}")
        mask = extra(f"mask_{split}.npy", ids)
        if ids is not None and (mask is None or not np.array_equal(mask != 0, ids != pad)):
            raise IntegrityError(f"{path}: mask_{split}.npy missing or not equal to ids != {pad}")
        masks[split] = mask
    pairs = {}
    for split in ("train", "test"):
        p = extra(f"pairs_{split}.npy", getattr(base, f"y_{split}"))
        if p is not None:
            pairs[split] = p
    return TextDataset(
        x_train=base.x_train,
        mask_train=masks["train"],  # type: ignore[arg-type]
        y_train=base.y_train,
        x_test=base.x_test,
        mask_test=masks["test"],
        y_test=base.y_test,
        meta=meta,
        tokenizer_path=tok_path,
        pairs=pairs,
    )


for _name in TEXT_DATASETS:
    register_source(
        SourceInfo(
            name=_name,
            prepare=prepare_text,
            task="mlm" if _name in CORPORA else "classification",
            kind="text",
        )
    )
