"""Downloadable text: GLUE classification tasks and a plain-text corpus for MLM pretraining.

GLUE (train = the GLUE training set, test = the GLUE development set, since the GLUE test
labels are not public)
-----------------------------------------------------------------------------------------
``cola``  ``CoLA.zip`` from ``https://dl.fbaipublicfiles.com/glue/data/`` (the standard
          distribution of GLUE's ``download_glue_data.py``); ``CoLA/{train,dev}.tsv`` without a
          header: ``source, label (0/1), original mark, sentence``. Classes ``unacceptable,
          acceptable``.
``sst2``  ``SST-2.zip``; ``SST-2/{train,dev}.tsv`` with header ``sentence, label``. Classes
          ``negative, positive``.
``rte``   ``RTE.zip``; ``RTE/{train,dev}.tsv`` with header ``index, sentence1, sentence2,
          label``; labels ``entailment`` (0), ``not_entailment`` (1). Sentence pairs.
``mrpc``  as GLUE builds it: ``msr_paraphrase_train.txt`` (SentEval's copy of the Microsoft
          Research Paraphrase Corpus; header ``Quality, #1 ID, #2 ID, #1 String, #2 String``)
          split by GLUE's ``mrpc_dev_ids.tsv`` (``#1 ID, #2 ID`` per line, no header) into train
          and dev. Classes ``not_equivalent, equivalent``. Sentence pairs.

Corpus
------
``wikitext2``  WikiText-2 (raw, v1), ``wikitext-2-raw-v1.zip`` from
               ``https://wikitext.smerity.com/``; members ``wikitext-2-raw/wiki.{train,valid,
               test}.raw``. :func:`read_wikitext` returns each split's paragraphs (non-empty
               lines, ``= Heading =`` lines removed, surrounding spaces stripped).

Files are fetched with :func:`mfoml.data.download.download_file` (streamed into a temporary file,
length- and sha256-checked, then renamed; a truncated or corrupted download is an error and
leaves nothing behind). The sha256 sums and sizes are those published with HuggingFace
``datasets``' GLUE card and TensorFlow Datasets' GLUE checksums, and for WikiText-2 the widely
pinned archive sum. ``mirror`` replaces the base URL (same file names); ``checksums`` replaces
the expected digests by file name. A downloaded file that fails to parse
(:class:`~mfoml.data.formats.DataFormatError` naming the file and line) is deleted.
"""

from __future__ import annotations

import contextlib
import zipfile
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mfoml.data.download import download_file
from mfoml.data.formats import DataFormatError
from mfoml.data.text import TextSplits

__all__ = [
    "CORPORA",
    "GLUE_TASKS",
    "RemoteFile",
    "fetch_files",
    "load_corpus",
    "load_glue",
    "read_glue",
    "read_wikitext",
]


@dataclass(frozen=True)
class RemoteFile:
    """A raw file: its name (also under a mirror), official URL, sha256 and size in bytes."""

    name: str
    url: str
    sha256: str
    size: int


@dataclass(frozen=True)
class GlueTask:
    """A GLUE task: its raw files, class names, and whether samples are sentence pairs."""

    files: tuple[RemoteFile, ...]
    class_names: tuple[str, ...]
    pairs: bool


_GLUE = "https://dl.fbaipublicfiles.com/glue/data/"
_SENTEVAL = "https://dl.fbaipublicfiles.com/senteval/senteval_data/"

GLUE_TASKS: dict[str, GlueTask] = {
    "cola": GlueTask(
        (
            RemoteFile(
                "CoLA.zip",
                _GLUE + "CoLA.zip",
                "f212fcd832b8f7b435fb991f101abf89f96b933ab400603bf198960dfc32cbff",
                376971,
            ),
        ),
        ("unacceptable", "acceptable"),
        False,
    ),
    "sst2": GlueTask(
        (
            RemoteFile(
                "SST-2.zip",
                _GLUE + "SST-2.zip",
                "d67e16fb55739c1b32cdce9877596db1c127dc322d93c082281f64057c16deaa",
                7439277,
            ),
        ),
        ("negative", "positive"),
        False,
    ),
    "mrpc": GlueTask(
        (
            RemoteFile(
                "msr_paraphrase_train.txt",
                _SENTEVAL + "msr_paraphrase_train.txt",
                "60a9b09084528f0673eedee2b69cb941920f0b8cd0eeccefc464a98768457f89",
                1047044,
            ),
            RemoteFile(
                "mrpc_dev_ids.tsv",
                _GLUE + "mrpc_dev_ids.tsv",
                "971d7767d81b997fd9060ade0ec23c4fc31cbb226a55d1bd4a1bac474eb81dc7",
                6222,
            ),
        ),
        ("not_equivalent", "equivalent"),
        True,
    ),
    "rte": GlueTask(
        (
            RemoteFile(
                "RTE.zip",
                _GLUE + "RTE.zip",
                "6bf86de103ecd335f3441bd43574d23fef87ecc695977a63b82d5efb206556ee",
                697150,
            ),
        ),
        ("entailment", "not_entailment"),
        True,
    ),
}

CORPORA: dict[str, RemoteFile] = {
    "wikitext2": RemoteFile(
        "wikitext-2-raw-v1.zip",
        "https://wikitext.smerity.com/wikitext-2-raw-v1.zip",
        "ef7edb566e3e2b2d31b29c1fdb0c89a4cc683597484c3dc2517919c615435a11",
        4721645,
    ),
}


# ----------------------------------------------------------------------------------------------
# Fetching
# ----------------------------------------------------------------------------------------------


def fetch_files(
    files: tuple[RemoteFile, ...],
    dest_dir: str | Path,
    *,
    mirror: str | None = None,
    checksums: Mapping[str, str] | None = None,
    timeout: float = 60.0,
) -> tuple[dict[str, Path], list[dict[str, str]]]:
    """Download and verify ``files`` into ``dest_dir`` (a valid file already there is reused).

    Returns
    -------
    paths : file name -> verified local path.
    raw_files : ``[{file, url, checksum}]`` for ``meta.json``.
    """
    dest = Path(dest_dir)
    dest.mkdir(parents=True, exist_ok=True)
    paths, raw = {}, []
    for f in files:
        url = f.url if mirror is None else mirror.rstrip("/") + "/" + f.name
        expected = (checksums or {}).get(f.name, f.sha256)
        paths[f.name] = download_file(url, dest / f.name, expected, timeout=timeout)
        raw.append({"file": f.name, "url": url, "checksum": expected})
    return paths, raw


def _discard_on_format_error(paths: Mapping[str, Path], parse: Callable[[], Any]) -> Any:
    try:
        return parse()
    except DataFormatError:
        for p in paths.values():
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
        raise


# ----------------------------------------------------------------------------------------------
# Parsers of the real formats
# ----------------------------------------------------------------------------------------------


def _decode(data: bytes, where: str) -> list[str]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataFormatError(f"{where}: not UTF-8 text ({exc})") from exc
    return text.splitlines()


def _zip_lines(path: Path, member: str) -> list[str]:
    """The lines of ``member`` in the zip archive ``path``."""
    try:
        with zipfile.ZipFile(path) as zf:
            try:
                data = zf.read(member)
            except KeyError:
                raise DataFormatError(
                    f"{path}: the archive has no member {member!r} (it has {zf.namelist()[:10]})"
                ) from None
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
        raise DataFormatError(f"{path}: not a readable zip archive, or corrupted ({exc})") from exc
    return _decode(data, f"{path}:{member}")


def _rows(lines: list[str], n_fields: int, where: str, header: tuple[str, ...] | None):
    """Split TSV lines (no quoting, as GLUE writes them); yield ``(line number, fields)``."""
    if header is not None:
        got = tuple(lines[0].split("\t")) if lines else ()
        if got != header:
            raise DataFormatError(f"{where}: expected the header {header}, found {got}")
    for num, line in enumerate(lines[1 if header else 0 :], start=2 if header else 1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != n_fields:
            raise DataFormatError(
                f"{where}, line {num}: expected {n_fields} tab-separated fields, found "
                f"{len(fields)}"
            )
        yield num, fields


def _label(value: str, names: Mapping[str, int], where: str, num: int) -> int:
    if value not in names:
        raise DataFormatError(
            f"{where}, line {num}: unknown label {value!r} (known: {list(names)})"
        )
    return names[value]


def _read_split(task: str, path: Path, split: str) -> tuple[list[Any], list[int]]:
    folder = {"cola": "CoLA", "sst2": "SST-2", "rte": "RTE"}[task]
    member = f"{folder}/{split}.tsv"
    lines, where = _zip_lines(path, member), f"{path.name}:{member}"
    texts: list[Any] = []
    labels: list[int] = []
    if task == "cola":
        for num, (_src, lab, _mark, sent) in _rows(lines, 4, where, None):
            texts.append(sent.strip())
            labels.append(_label(lab, {"0": 0, "1": 1}, where, num))
    elif task == "sst2":
        for num, (sent, lab) in _rows(lines, 2, where, ("sentence", "label")):
            texts.append(sent.strip())
            labels.append(_label(lab, {"0": 0, "1": 1}, where, num))
    else:
        head = ("index", "sentence1", "sentence2", "label")
        names = {"entailment": 0, "not_entailment": 1}
        for num, (_idx, s1, s2, lab) in _rows(lines, 4, where, head):
            texts.append((s1.strip(), s2.strip()))
            labels.append(_label(lab, names, where, num))
    if not texts:
        raise DataFormatError(f"{where}: no samples")
    return texts, labels


def _read_mrpc(train_txt: Path, dev_ids: Path) -> dict[str, tuple[list[Any], list[int]]]:
    id_lines = _decode(dev_ids.read_bytes(), str(dev_ids))
    dev = {tuple(f) for _, f in _rows(id_lines, 2, dev_ids.name, None)}
    head = ("Quality", "#1 ID", "#2 ID", "#1 String", "#2 String")
    out: dict[str, tuple[list[Any], list[int]]] = {"train": ([], []), "dev": ([], [])}
    lines = _decode(train_txt.read_bytes(), str(train_txt))
    for num, (q, id1, id2, s1, s2) in _rows(lines, 5, train_txt.name, head):
        split = "dev" if (id1, id2) in dev else "train"
        out[split][0].append((s1.strip(), s2.strip()))
        out[split][1].append(_label(q, {"0": 0, "1": 1}, train_txt.name, num))
    n_dev = len(out["dev"][0])
    if n_dev != len(dev):
        raise DataFormatError(
            f"{dev_ids.name}: {len(dev)} dev pairs listed but {n_dev} found in {train_txt.name}"
        )
    return out


def read_glue(task: str, paths: Mapping[str, Path]) -> TextSplits:
    """Parse the raw files of a GLUE task (``paths``: file name -> local path).

    Returns a :class:`~mfoml.data.text.TextSplits` with train = GLUE train and test = GLUE dev;
    pair tasks hold ``(sentence1, sentence2)`` tuples. Raises ``DataFormatError`` naming the
    file (and line) on anything unexpected.
    """
    if task not in GLUE_TASKS:
        raise ValueError(f"unknown GLUE task {task!r}; known: {', '.join(GLUE_TASKS)}")
    spec = GLUE_TASKS[task]
    if task == "mrpc":
        parts = _read_mrpc(paths["msr_paraphrase_train.txt"], paths["mrpc_dev_ids.tsv"])
    else:
        zpath = paths[spec.files[0].name]
        parts = {s: _read_split(task, zpath, s) for s in ("train", "dev")}
    return TextSplits(
        train_texts=parts["train"][0],
        train_labels=np.asarray(parts["train"][1], dtype=np.int64),
        test_texts=parts["dev"][0],
        test_labels=np.asarray(parts["dev"][1], dtype=np.int64),
        class_names=list(spec.class_names),
        provenance={"task": f"GLUE {task}", "test_split": "GLUE dev", "pairs": spec.pairs},
    )


def load_glue(
    task: str,
    dest_dir: str | Path,
    *,
    mirror: str | None = None,
    checksums: Mapping[str, str] | None = None,
    timeout: float = 60.0,
) -> tuple[TextSplits, list[dict[str, str]]]:
    """Download (or reuse), verify and parse a GLUE task; return the splits and raw files."""
    if task not in GLUE_TASKS:
        raise ValueError(f"unknown GLUE task {task!r}; known: {', '.join(GLUE_TASKS)}")
    paths, raw = fetch_files(
        GLUE_TASKS[task].files,
        dest_dir,
        mirror=mirror,
        checksums=checksums,
        timeout=timeout,
    )
    return _discard_on_format_error(paths, lambda: read_glue(task, paths)), raw


def read_wikitext(path: str | Path) -> dict[str, list[str]]:
    """Paragraphs of the train, valid and test splits of a WikiText raw zip archive."""
    path = Path(path)
    out = {}
    for split in ("train", "valid", "test"):
        lines = _zip_lines(path, f"wikitext-2-raw/wiki.{split}.raw")
        paras = []
        for line in lines:
            s = line.strip()
            if s and not (s.startswith("=") and s.endswith("=")):
                paras.append(s)
        if not paras:
            raise DataFormatError(f"{path}: wiki.{split}.raw holds no text")
        out[split] = paras
    return out


def load_corpus(
    name: str,
    dest_dir: str | Path,
    *,
    mirror: str | None = None,
    checksums: Mapping[str, str] | None = None,
    timeout: float = 60.0,
) -> tuple[dict[str, list[str]], list[dict[str, str]]]:
    """Download (or reuse), verify and parse a corpus; return ``{split: paragraphs}``, raw files."""
    if name not in CORPORA:
        raise ValueError(f"unknown corpus {name!r}; known: {', '.join(CORPORA)}")
    f = CORPORA[name]
    paths, raw = fetch_files((f,), dest_dir, mirror=mirror, checksums=checksums, timeout=timeout)
    return _discard_on_format_error(paths, lambda: read_wikitext(paths[f.name])), raw
