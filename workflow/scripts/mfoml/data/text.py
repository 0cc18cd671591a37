"""Text classification data: embedded offline tasks, tokenizers, and the arrays of the store.

Embedded tasks (offline, deterministic)
---------------------------------------
The sentences come from English prose that ships inside packages the project already installs
(no download). Each source is read as text, never imported:

``python-reference``  the Python language reference and library topics bundled with CPython as
                      ``pydoc_data.topics`` (the text ``help()`` shows; standard library).
``graph-algorithms``  docstrings of the ``networkx.algorithms`` modules (networkx is a PyTorch
                      dependency): the triple-quoted strings of the source files.
``symbolic-math``     docstrings of ``sympy.functions``, ``sympy.integrals``, ``sympy.series``
                      and ``sympy.solvers`` (sympy is a PyTorch dependency), likewise.
                      Docstrings are taken as written in the file (the text between triple
                      double quotes): reading them with :mod:`ast` took seconds.

Prose sentences are extracted by :func:`extract_sentences` (paragraphs of plain prose, no code,
tables, field lists or directives; inline markup removed; a sentence starts with a capital
letter, ends with a period, has 6 to 28 words and only letters, digits and ``,;:'()-``).
Duplicates are dropped within a source and sentences found in two sources are dropped from
both. The files read are sorted, so the sentence lists depend only on the installed package
versions, which ``meta.json`` records with a sha256 of each source's sentence list.

``textsource``  which source a sentence comes from (3 classes, topic classification; word
                order is not needed). Balanced: ``per_class`` sentences per class (default: the
                size of the smallest source), drawn with ``numpy.random.default_rng(seed)``,
                then a stratified split with ``round(test_fraction * per_class)`` test
                sentences per class.
``textorder``   whether a sequence of words is in its original or in reversed order (2
                classes: ``original``, ``reversed``). Each sentence of the pool is lower-cased
                and split into words (regex ``\\w+``, punctuation dropped), and one window of
                ``ORDER_WINDOW`` (8) consecutive words is drawn from its *inside*: never its
                first word, never its last, never a window that reads the same reversed (so the
                pool keeps sentences of at least 10 words). The sample is that window, and the
                reversed sample the same words in reverse order, joined by single spaces. So no
                token position gives the label away by itself (tested: a logistic regression
                on any one position's token is at chance): reversing whole sentences put the
                final ``.`` first in every reversed sentence, and even without punctuation the
                first word of a sentence ("the", "this", "if", ...) told the original from the
                reversed one in 81 % of held-out samples. What remains is the order of the
                words relative to each other. Every drawn sentence appears in *both* versions in
                the same split, so the classes are exactly balanced and the two versions hold the
                same multiset of tokens: a model that ignores word order (a transformer without
                positional coding) gives both versions the same output and scores exactly 50 %.
                The ``pairs_{split}.npy`` arrays give each sample's partner, and the two
                versions form a group (``groups_{split}.npy``: the sentence's index in the
                pool), so the folds keep them together. Sentences are split into train and test
                before their versions are made (no sentence in both).

Tokenization and the store's arrays: :mod:`mfoml.data.tokens`.
"""

from __future__ import annotations

import ast
import copy
import functools
import hashlib
import importlib.metadata
import importlib.util
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "EMBEDDED_TEXT",
    "TEXT_SOURCES",
    "TextSplits",
    "embedded_sentences",
    "extract_sentences",
    "make_textorder",
    "make_textsource",
    "reverse_words",
    "word_tokens",
]

EMBEDDED_TEXT: tuple[str, ...] = ("textsource", "textorder")

# class name -> (description, distribution whose version is recorded, reader)
TEXT_SOURCES: dict[str, tuple[str, str]] = {
    "python-reference": (
        "pydoc_data.topics of the CPython standard library (language reference topics)",
        "python",
    ),
    "graph-algorithms": (
        "docstrings (triple-quoted strings) of networkx/algorithms/**/*.py, tests excluded",
        "networkx",
    ),
    "symbolic-math": (
        "docstrings (triple-quoted strings) of sympy/{functions,integrals,series,solvers}/**/*.py, tests excluded",
        "sympy",
    ),
}
_SYMPY_PARTS = ("functions", "integrals", "series", "solvers")

_SENT_SPLIT = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")
_SENT_OK = re.compile(r"^[A-Z][A-Za-z0-9 ,;:'()\-]*[a-z0-9)]\.$")
_SKIP_LINE = (">>>", "..", ":", "|", "-", "=", "*", "#", "+")
_FIELD_LINE = re.compile(r"^\w+\s*:\s")
_TRIPLE = re.compile(r'"""(.*?)"""', re.DOTALL)
_WORD = re.compile(r"\w+|[^\w\s]")
_IS_WORD = re.compile(r"\w+")
MIN_WORDS, MAX_WORDS = 6, 28
#: Words per ``textorder`` sample: a window from the inside of a sentence (module docstring).
ORDER_WINDOW = 8


@dataclass
class TextSplits:
    """Texts and labels of a classification task, before tokenization.

    Attributes
    ----------
    train_texts, test_texts : one string per sample, or a ``(first, second)`` pair of strings
        for sentence-pair tasks.
    train_labels, test_labels : int64 ``(N,)`` class labels.
    class_names : names of the classes, by label.
    provenance : JSON-able description of where the texts come from.
    train_pairs, test_pairs : ``textorder`` only: int64 ``(N,)``, the index of each sample's
        other version in the same split.
    train_groups, test_groups : int64 ``(N,)`` group ids (samples of one group stay in one fold
        and never in both splits: each sentence and its reversed copy in ``textorder``, a
        ``group`` column of a text file), or ``None``. Ids are unique across the two splits.
    """

    train_texts: list[Any]
    train_labels: np.ndarray
    test_texts: list[Any]
    test_labels: np.ndarray
    class_names: list[str]
    provenance: dict[str, Any] = field(default_factory=dict)
    train_pairs: np.ndarray | None = None
    test_pairs: np.ndarray | None = None
    train_groups: np.ndarray | None = None
    test_groups: np.ndarray | None = None


# ----------------------------------------------------------------------------------------------
# Sentences from packaged text
# ----------------------------------------------------------------------------------------------


def extract_sentences(text: str) -> list[str]:
    """Prose sentences of a documentation text (rules in the module docstring), in order."""
    out = []
    for para in re.split(r"\n\s*\n", text):
        lines = [ln.strip() for ln in para.strip().splitlines()]
        if not lines or any(ln.startswith(_SKIP_LINE) or "::" in ln for ln in lines):
            continue
        if any(_FIELD_LINE.match(ln) for ln in lines):
            continue
        prose = " ".join(lines)
        for mark in ("``", "`", "*", '"'):
            prose = prose.replace(mark, "")
        prose = re.sub(r"\s+", " ", prose)
        for sent in _SENT_SPLIT.split(prose):
            sent = sent.strip()
            if MIN_WORDS <= len(sent.split()) <= MAX_WORDS and _SENT_OK.match(sent):
                out.append(sent)
    return out


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            f"text source: package {name!r} is not installed (it ships the embedded text)"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def _docstrings(files: Iterable[Path]) -> list[str]:
    """The triple-double-quoted string literals of the files (docstrings, as written)."""
    return [m.group(1) for path in files for m in _TRIPLE.finditer(path.read_text("utf-8"))]


def _py_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.py") if "tests" not in p.relative_to(root).parts)


def _source_texts(name: str) -> list[str]:
    if name == "python-reference":
        topics_file = _package_dir("pydoc_data") / "topics.py"
        tree = ast.parse(topics_file.read_text(encoding="utf-8"))
        topics = next(
            ast.literal_eval(node.value)
            for node in tree.body
            if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "topics"
        )
        return [topics[k] for k in sorted(topics)]
    if name == "graph-algorithms":
        return _docstrings(_py_files(_package_dir("networkx") / "algorithms"))
    if name == "symbolic-math":
        root = _package_dir("sympy")
        return _docstrings(f for part in _SYMPY_PARTS for f in _py_files(root / part))
    raise KeyError(f"unknown text source {name!r}; known: {', '.join(TEXT_SOURCES)}")


def _version(dist: str) -> str:
    if dist == "python":
        return sys.version.split()[0]
    return importlib.metadata.version(dist)


def embedded_sentences() -> tuple[dict[str, list[str]], dict[str, Any]]:
    """The unique prose sentences of every source in :data:`TEXT_SOURCES` (fresh copies of a
    per-process cache: the files are read once).

    Returns
    -------
    sentences : source name -> sentences in reading order (no duplicates, none shared with
        another source).
    provenance : source name -> ``{description, package, version, n_sentences, sha256}``
        (sha256 of the sentences joined by newlines).
    """
    sentences, provenance = _embedded_sentences()
    return {k: list(v) for k, v in sentences.items()}, copy.deepcopy(provenance)


@functools.lru_cache(maxsize=1)
def _embedded_sentences() -> tuple[dict[str, tuple[str, ...]], dict[str, Any]]:
    per_source: dict[str, list[str]] = {}
    for name in TEXT_SOURCES:
        seen: dict[str, None] = {}
        for text in _source_texts(name):
            for sent in extract_sentences(text):
                seen.setdefault(sent, None)
        per_source[name] = list(seen)
    counts: dict[str, int] = {}
    for sents in per_source.values():
        for s in sents:
            counts[s] = counts.get(s, 0) + 1
    provenance = {}
    for name, (description, dist) in TEXT_SOURCES.items():
        per_source[name] = [s for s in per_source[name] if counts[s] == 1]
        provenance[name] = {
            "description": description,
            "package": dist,
            "version": _version(dist),
            "n_sentences": len(per_source[name]),
            "sha256": hashlib.sha256("\n".join(per_source[name]).encode()).hexdigest(),
        }
    return {k: tuple(v) for k, v in per_source.items()}, provenance


def word_tokens(text: str) -> list[str]:
    """Words and punctuation marks of ``text`` (regex ``\\w+|[^\\w\\s]``)."""
    return _WORD.findall(text)


def reverse_words(text: str) -> str:
    """The words of ``text`` in reverse order, every punctuation mark kept at its position.

    Tokens are those of :func:`word_tokens`, joined by single spaces; e.g. ``"a b, c."`` gives
    ``"c b, a ."``.
    """
    tokens = word_tokens(text)
    slots = [i for i, t in enumerate(tokens) if _IS_WORD.fullmatch(t)]
    words = [tokens[i] for i in slots]
    for i, word in zip(slots, reversed(words), strict=True):
        tokens[i] = word
    return " ".join(tokens)


def _check_fraction(test_fraction: float) -> None:
    if not 0 < float(test_fraction) < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction!r}")


def make_textsource(
    *, per_class: int | None = None, test_fraction: float = 0.25, seed: int = 0
) -> TextSplits:
    """The ``textsource`` task (module docstring): which package's documentation a sentence is from.

    Parameters
    ----------
    per_class : sentences per class (default and maximum: the smallest source's count).
    test_fraction : share of each class in the test split.
    seed : seed of ``numpy.random.default_rng`` for the subset, the split and the order.
    """
    _check_fraction(test_fraction)
    sentences, provenance = embedded_sentences()
    names = list(TEXT_SOURCES)
    smallest = min(len(sentences[n]) for n in names)
    n = smallest if per_class is None else int(per_class)
    if not 2 <= n <= smallest:
        raise ValueError(f"textsource: per_class must be in [2, {smallest}], got {per_class!r}")
    n_test = max(1, round(float(test_fraction) * n))
    rng = np.random.default_rng(seed)
    train, test = [], []
    for label, name in enumerate(names):
        pick = np.sort(rng.choice(len(sentences[name]), size=n, replace=False))
        order = rng.permutation(pick)
        test += [(sentences[name][i], label) for i in order[:n_test]]
        train += [(sentences[name][i], label) for i in order[n_test:]]
    train = [train[i] for i in rng.permutation(len(train))]
    test = [test[i] for i in rng.permutation(len(test))]
    return TextSplits(
        train_texts=[t for t, _ in train],
        train_labels=np.array([y for _, y in train], dtype=np.int64),
        test_texts=[t for t, _ in test],
        test_labels=np.array([y for _, y in test], dtype=np.int64),
        class_names=names,
        provenance={
            "task": "textsource: which source a sentence comes from",
            "sources": provenance,
            "per_class": n,
            "test_per_class": n_test,
        },
    )


def _words(text: str) -> list[str]:
    """The words of ``text`` (:func:`word_tokens` without punctuation marks)."""
    return [t for t in word_tokens(text) if _IS_WORD.fullmatch(t)]


def _window_starts(words: list[str]) -> list[int]:
    """Where a ``textorder`` window of :data:`ORDER_WINDOW` words may start in a sentence of
    ``words``: never on its first word and never reaching its last, and never a window that
    reads the same reversed."""
    k = ORDER_WINDOW
    return [s for s in range(1, len(words) - k) if words[s : s + k] != words[s : s + k][::-1]]


def make_textorder(
    *, n_sentences: int | None = None, test_fraction: float = 0.25, seed: int = 0
) -> TextSplits:
    """The ``textorder`` task (module docstring): original or reversed word order.

    Parameters
    ----------
    n_sentences : sentences drawn from the pool of all sources (default: all); each gives two
        samples.
    test_fraction : share of the sentences in the test split.
    seed : seed of ``numpy.random.default_rng`` for the subset, the split and the order.
    """
    _check_fraction(test_fraction)
    sentences, provenance = embedded_sentences()
    pool = list(
        dict.fromkeys(
            " ".join(w)
            for name in TEXT_SOURCES
            for w in (_words(s.lower()) for s in sentences[name])
            if _window_starts(w)
        )
    )
    n = len(pool) if n_sentences is None else int(n_sentences)
    if not 4 <= n <= len(pool):
        raise ValueError(f"textorder: n_sentences must be in [4, {len(pool)}], got {n_sentences!r}")
    rng = np.random.default_rng(seed)
    chosen = rng.permutation(np.sort(rng.choice(len(pool), size=n, replace=False)))
    n_test = max(2, round(float(test_fraction) * n))

    def versions(idx: np.ndarray) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
        texts, labels, groups = [], [], []
        for i in idx:
            words = pool[i].split()
            start = int(rng.choice(_window_starts(words)))
            window = " ".join(words[start : start + ORDER_WINDOW])
            texts += [window, reverse_words(window)]
            labels += [0, 1]
            groups += [int(i), int(i)]
        order = rng.permutation(len(texts))
        where = np.empty_like(order)
        where[order] = np.arange(len(order))
        partner = np.arange(len(texts)) ^ 1  # 2k <-> 2k + 1 before shuffling
        pairs = where[partner[order]]
        labels_arr, groups_arr = np.asarray(labels, np.int64), np.asarray(groups, np.int64)
        return [texts[i] for i in order], labels_arr[order], pairs, groups_arr[order]

    test_t, test_y, test_p, test_g = versions(chosen[:n_test])
    train_t, train_y, train_p, train_g = versions(chosen[n_test:])
    return TextSplits(
        train_texts=train_t,
        train_labels=train_y,
        test_texts=test_t,
        test_labels=test_y,
        class_names=["original", "reversed"],
        provenance={
            "task": "textorder: original or reversed word order, both versions of every sentence",
            "sources": provenance,
            "n_sentences": n,
            "test_sentences": n_test,
        },
        train_pairs=train_p.astype(np.int64),
        test_pairs=test_p.astype(np.int64),
        train_groups=train_g,
        test_groups=test_g,
    )
