"""Which code a rule script executes, and a version of that code that changes only with meaning.

Snakemake tracks a rule's ``script:`` by its modification time (a ``touch`` or a ``git checkout``
reruns every job of the rule) and does not track the modules it imports at all. This module reads
the import statements (at any depth: also function-level imports) of a script and of every
``mfoml`` module it reaches (:meth:`CodeDeps.script_modules`), and :meth:`CodeDeps.code_version`
hashes the *normalized syntax tree* of the script and of those modules: comments, docstrings,
blank lines and formatting do not enter it, every change of what the code does does. The rules
pass it as a ``params`` entry, so Snakemake's params trigger reruns exactly the jobs whose code
changed in meaning (``docs/pipeline.md``, reruns). Imported
names are resolved to the module that defines them: ``from mfoml.data import folds`` is the
module ``mfoml.data.folds``, and a name re-exported lazily by a package ``__init__``
(``lazy_exports``, e.g. ``from mfoml.wavelets import WaveletForestClassifier``) is its defining
submodule. Importing ``mfoml.a.b`` also runs ``mfoml/__init__.py`` and ``mfoml/a/__init__.py``,
so those count as well. Plain Python, no Snakemake import (used by ``common.smk``; tested
directly).

Parsing and dumping the syntax trees of the ~120 modules took about 1.5 of the 5.4 CPU-s of a
dry run of the tiny test configuration, paid by every ``snakemake`` call and, on a cluster, by
every job. What is read from one file (its normalized-tree hash, its ``mfoml`` import
statements and its lazy-export map) depends only on the file's bytes and the Python version, so
it is cached on disk under the sha256 of those (content-addressed, like ``__pycache__``: an
edited file is a new key, a stale entry cannot be hit). The cache directory is
``$MFOML_CODEDEPS_CACHE`` if set (empty: no cache), else ``$XDG_CACHE_HOME/mfoml/codedeps``
(``~/.cache/mfoml/codedeps``); entries are written atomically, an unreadable or unwritable cache
is ignored.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import json
import os
import sys
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CodeDeps"]

ROOT_PACKAGE = "mfoml"
#: modules that decide how a job's process runs, never what it computes (every rule script imports
#: them): left out of the code versions, so that changing them reruns nothing. ``mfoml.warm`` runs
#: the job in a fork of the warm-start server or in the script's own process, with the same
#: results (tests/test_reproducibility.py compares a warm and a cold run).
RUNNER_MODULES = frozenset({"mfoml.warm"})


def _without_docstrings(tree: ast.Module) -> ast.Module:
    """``tree`` with the docstring of the module and of every class and function removed."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if (
                body
                and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)
            ):
                node.body = body[1:] or [ast.Pass()]
    return tree


def normalized_source(text: str, filename: str = "<source>") -> str:
    """The syntax tree of Python source ``text`` without docstrings, as text.

    Comments, blank lines, formatting, line numbers and docstrings do not appear in it; any
    change of names, values, statements or their order does. (The dump depends on the Python
    version's ``ast`` module: a new Python minor version may change it once.)
    """
    return _dump(ast.parse(text, filename=filename))


def _dump(tree: ast.Module) -> str:
    """The dump of ``tree`` without docstrings (``tree`` loses them)."""
    return ast.dump(_without_docstrings(tree), annotate_fields=True, include_attributes=False)


def _lazy_map(tree: ast.Module) -> dict[str, str]:
    """``{name: submodule}`` of a package ``__init__`` calling ``lazy_exports(__name__, {...})``."""
    out: dict[str, str] = {}
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and getattr(node.func, "id", getattr(node.func, "attr", None)) == "lazy_exports"
            and len(node.args) == 2
            and isinstance(node.args[1], ast.Dict)
        ):
            for key, value in zip(node.args[1].keys, node.args[1].values, strict=True):
                if isinstance(key, ast.Constant) and isinstance(value, ast.Tuple | ast.List):
                    for elt in value.elts:
                        if isinstance(elt, ast.Constant):
                            out[str(elt.value)] = str(key.value)
    return out


#: Version of what the cache holds per file; part of every key.
_CACHE_SCHEMA = 1


def cache_dir() -> Path | None:
    """Directory of the per-file cache, or ``None`` when ``MFOML_CODEDEPS_CACHE`` is empty."""
    env = os.environ.get("MFOML_CODEDEPS_CACHE")
    if env is not None:
        return Path(env) if env else None
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "mfoml" / "codedeps"


@dataclass(frozen=True)
class FileFacts:
    """What the code version needs from one source file.

    ``source_hash``: sha256 of :func:`normalized_source`; ``imports``: ``(module, name)`` of
    every ``mfoml`` import statement at any depth (``name`` is ``None`` for ``import module``);
    ``lazy``: the ``lazy_exports`` map of a package ``__init__`` (else empty).
    """

    source_hash: str
    imports: tuple[tuple[str, str | None], ...]
    lazy: dict[str, str]


def file_facts(text: str, filename: str = "<source>") -> FileFacts:
    """:class:`FileFacts` of Python source ``text`` (one parse)."""
    tree = ast.parse(text, filename=filename)
    statements: list[tuple[str, str | None]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            statements += [
                (a.name, None) for a in node.names if a.name.split(".")[0] == ROOT_PACKAGE
            ]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.split(".")[0] == ROOT_PACKAGE:
                statements += [(node.module, a.name) for a in node.names]
    lazy = _lazy_map(tree)
    digest = hashlib.sha256(_dump(tree).encode()).hexdigest()
    return FileFacts(digest, tuple(statements), lazy)


def _cached_facts(data: bytes, filename: str, directory: Path | None) -> FileFacts:
    """:func:`file_facts` of the file content ``data``, through the cache in ``directory``."""
    key = hashlib.sha256(data)
    key.update(f"\0{sys.version_info[:3]}\0{_CACHE_SCHEMA}".encode())
    entry = directory / f"{key.hexdigest()}.json" if directory is not None else None
    if entry is not None:
        try:
            raw = json.loads(entry.read_text(encoding="utf-8"))
            return FileFacts(
                str(raw["source_hash"]),
                tuple((str(m), None if n is None else str(n)) for m, n in raw["imports"]),
                {str(k): str(v) for k, v in raw["lazy"].items()},
            )
        except (OSError, ValueError, KeyError, TypeError):
            pass  # no entry yet, or an unreadable one: recompute
    facts = file_facts(data.decode("utf-8"), filename)
    if entry is not None:
        try:
            entry.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=entry.parent, prefix=".", suffix=".tmp")
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(
                    {
                        "source_hash": facts.source_hash,
                        "imports": facts.imports,
                        "lazy": facts.lazy,
                    },
                    fh,
                )
            os.replace(tmp, entry)
        except OSError:
            pass  # a read-only or full cache only costs the parse
    return facts


class CodeDeps:
    """Import graph of the ``mfoml`` package under ``scripts_dir`` (``workflow/scripts``).

    Results are cached for the lifetime of the object (one Snakemake process).
    """

    def __init__(
        self, scripts_dir: str | os.PathLike[str], cache: Path | None | str = "default"
    ) -> None:
        self.scripts = Path(scripts_dir)
        #: per-file cache directory (:func:`cache_dir` unless given; ``None``: no cache)
        self.cache = cache_dir() if cache == "default" else (Path(cache) if cache else None)

    def module_file(self, name: str) -> Path | None:
        """The file of the dotted module ``name`` (``mfoml.data.store``), or ``None``."""
        rel = Path(*name.split("."))
        for cand in (self.scripts / rel.with_suffix(".py"), self.scripts / rel / "__init__.py"):
            if cand.is_file():
                return cand
        return None

    @functools.cache  # noqa: B019 (one object per Snakemake process)
    def facts(self, path: Path) -> FileFacts:
        """:class:`FileFacts` of the file ``path`` (through the on-disk cache)."""
        return _cached_facts(Path(path).read_bytes(), str(path), self.cache)

    @functools.cache  # noqa: B019
    def _lazy(self, package: str) -> dict[str, str]:
        path = self.module_file(package)
        if path is None or path.name != "__init__.py":
            return {}
        return self.facts(path).lazy

    def _resolve(self, module: str, name: str | None) -> set[str]:
        """Modules executed by ``from module import name`` (or ``import module``)."""
        whole_package = name is None  # the code holds the module object itself
        if name is not None:
            sub = f"{module}.{name}"
            if self.module_file(sub) is not None:
                module, whole_package = sub, True
            elif name in self._lazy(module):
                module = f"{module}.{self._lazy(module)[name]}"
        parts = module.split(".")
        # importing a.b.c runs a/__init__, a/b/__init__ and a/b/c
        out = {".".join(parts[:i]) for i in range(1, len(parts) + 1)}
        if whole_package:  # pkg.name may load any of the package's lazily exported modules
            out |= {f"{module}.{sub}" for sub in set(self._lazy(module).values())}
        return out

    @functools.cache  # noqa: B019
    def imports(self, path: Path) -> frozenset[str]:
        """Dotted names of the ``mfoml`` modules the file ``path`` imports (at any depth)."""
        names: set[str] = set()
        for module, name in self.facts(Path(path)).imports:
            names |= self._resolve(module, name)
        return frozenset(n for n in names if self.module_file(n) is not None)

    def closure(self, names: Iterable[str], skip: Iterable[str] = ()) -> list[str]:
        """``names`` and every ``mfoml`` module they import, transitively (sorted).

        Modules in ``skip`` (and what only they import) are left out.
        """
        skip = set(skip)
        todo = [n for n in names if n not in skip]
        seen: set[str] = set()
        while todo:
            name = todo.pop()
            if name in seen:
                continue
            seen.add(name)
            path = self.module_file(name)
            if path is not None:
                todo.extend(n for n in self.imports(path) if n not in skip)
        return sorted(seen)

    def files(self, names: Iterable[str]) -> list[str]:
        """The files of the modules ``names``, relative to the working directory (sorted)."""
        paths = (self.module_file(n) for n in names)
        return sorted(os.path.relpath(p) for p in paths if p is not None)

    def script_modules(
        self, script: str, skip: Iterable[str] = (), extra: Iterable[str] = ()
    ) -> list[str]:
        """Dotted names of the ``mfoml`` modules the rule script ``script`` executes.

        ``skip``: modules imported only on code paths that a job does not take (left out with
        what only they import; :data:`RUNNER_MODULES` always are); ``extra``: modules added (e.g.
        those of such a path that a job does take).
        """
        names = [*self.imports(self.scripts / script), *extra]
        return self.closure(names, {*skip, *RUNNER_MODULES})

    def source_hash(self, path: Path) -> str:
        """sha256 of :func:`normalized_source` of the file ``path``."""
        return self.facts(Path(path)).source_hash

    def code_version(self, script: str, skip: Iterable[str] = (), extra: Iterable[str] = ()) -> str:
        """A short hash of the code a job of ``script`` executes, independent of formatting.

        Covers the script and every ``mfoml`` module of :meth:`script_modules` (names and
        normalized syntax trees). Equal for a touched, re-checked-out or re-commented tree;
        different as soon as one of these files changes what it does.
        """
        h = hashlib.sha256()
        h.update(f"{script}:{self.source_hash(self.scripts / script)}\n".encode())
        for name in self.script_modules(script, skip, extra):
            path = self.module_file(name)
            assert path is not None
            h.update(f"{name}:{self.source_hash(path)}\n".encode())
        return h.hexdigest()[:20]
