"""The ``textfile`` source: a user's text file in the store's text format.

Kept apart from :mod:`mfoml.data.filesources` so that only text data sets depend on the text
modules (:mod:`mfoml.data.text`, :mod:`mfoml.data.tokens`; the ``data`` rule's code version of
the other sources leaves them out). The file format and its keys are described in
:mod:`mfoml.data.filesources` and config/README.md ("Data from files").
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from mfoml.data.files import (
    TEXT_EXTENSIONS,
    FileSourceError,
    encode_groups,
    encode_labels,
    read_frame,
    resolve_path,
)
from mfoml.data.filesources import _cap, _split
from mfoml.data.store import FORMAT_VERSION, SourceInfo, register_source, write_normalized

__all__ = ["prepare_textfile"]

log = logging.getLogger(__name__)

_TEXT_IGNORED = ("per_class", "n_sentences", "test_fraction")  # the embedded tasks' options


def prepare_textfile(
    name: str,
    out_dir: str | os.PathLike[str],
    *,
    files: dict[str, Any],
    tokenizer: str = "bpe",
    vocab_size: int = 4000,
    lowercase: bool = False,
    max_length: int = 64,
    tokenizer_hub: bool = False,
    seed: int = 0,
    per_class_cap: int | None = None,
    grayscale: bool = False,
    **other: Any,
) -> dict[str, Any]:
    """Write the text file ``files["path"]`` (module docstring) into ``out_dir`` in the store's
    text format (``tokenizer.json`` beside the arrays); return the meta."""
    from mfoml.data import tokens as K
    from mfoml.data.text import TextSplits
    from mfoml.io import atomic_write_text, file_checksum

    if grayscale:
        raise ValueError(f"{name}: grayscale applies to image data sets only")
    unknown = sorted(set(other) - {"download_dir", "mirror", *_TEXT_IGNORED})
    if unknown:
        raise TypeError(f"prepare_textfile: unexpected options {unknown}")
    path = resolve_path(files["path"])
    frame = read_frame(path, TEXT_EXTENSIONS)
    text_col, label = files.get("text_column", "text"), files.get("label", "label")
    group_col = files.get("group")
    need = [c for c in (text_col, label, files.get("split"), group_col) if c]
    missing_cols = [c for c in need if c not in frame.columns]
    if missing_cols:
        raise FileSourceError(f"{path}: no column(s) {missing_cols}; it has {list(frame.columns)}")
    empty = frame[text_col].isna().to_numpy(dtype=bool)
    if empty.any():
        row = int(np.flatnonzero(empty)[0])
        raise FileSourceError(f"{path}: row {row + 1}: text column {text_col!r} is empty")
    texts = [str(t) for t in frame[text_col]]
    y, class_names = encode_labels(frame[label], path, label)
    groups = encode_groups(frame[group_col], path, group_col) if group_col else None
    tr, te = _split(frame, path, files, y, groups, seed, True)
    keep = _cap(y[tr], per_class_cap, seed, True, name)
    if keep is not None:
        tr = tr[keep]
    splits = TextSplits(
        train_texts=[texts[i] for i in tr],
        train_labels=y[tr],
        test_texts=[texts[i] for i in te],
        test_labels=y[te],
        class_names=class_names,
        provenance={"file": str(path), "text_column": text_col, "label": label},
        train_groups=None if groups is None else groups[tr],
        test_groups=None if groups is None else groups[te],
    )
    tok, how = K.make_tokenizer(
        tokenizer, splits.train_texts, vocab_size=vocab_size, lowercase=lowercase, hub=tokenizer_hub
    )
    arrays, info = K.text_arrays(splits, tok, max_length)
    if not len(te):
        for f in ("x_test.npy", "mask_test.npy", "y_test.npy", "groups_test.npy"):
            arrays[f] = None
    info["provenance"] = splits.provenance
    meta: dict[str, Any] = {
        "name": name,
        "source": f"textfile:{path}",
        "task": "classification",
        "kind": "text",
        "n_classes": len(class_names),
        "class_names": class_names,
        "feature_names": None,
        "input_shape": [int(max_length)],
        "n_train": int(len(tr)),
        "n_test": int(len(te)),
        "options": {
            **{k: files.get(k) for k in ("path", "label", "text_column", "split", "group")},
            "test_fraction": None if files.get("split") else files.get("test_fraction"),
            "tokenizer": tokenizer,
            "vocab_size": int(vocab_size),
            "lowercase": bool(lowercase),
            "max_length": int(max_length),
            "tokenizer_hub": bool(tokenizer_hub),
            "per_class_cap": per_class_cap,
            "seed": int(seed),
        },
        "format_version": FORMAT_VERSION,
        "text": info,
        "tokenizer": K.tokenizer_meta(tok, how),
    }
    if group_col:
        meta["group_column"] = group_col
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        (out / "meta.json").unlink()  # untrusted until write_normalized's last write
    atomic_write_text(out / "tokenizer.json", tok.to_str(pretty=True))
    meta["tokenizer"]["sha256"] = file_checksum(out / "tokenizer.json", "sha256")
    log.info("%s: %s, %d train / %d test texts, T=%d", name, path, len(tr), len(te), max_length)
    return write_normalized(out, arrays, meta)


register_source(SourceInfo(name="textfile", prepare=prepare_textfile, kind="text"))
