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
"""

from __future__ import annotations

import ast
import functools
import hashlib
import os
from collections.abc import Iterable
from pathlib import Path

__all__ = ["CodeDeps"]

ROOT_PACKAGE = "mfoml"


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
    tree = _without_docstrings(ast.parse(text, filename=filename))
    return ast.dump(tree, annotate_fields=True, include_attributes=False)


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


class CodeDeps:
    """Import graph of the ``mfoml`` package under ``scripts_dir`` (``workflow/scripts``).

    Results are cached for the lifetime of the object (one Snakemake process).
    """

    def __init__(self, scripts_dir: str | os.PathLike[str]) -> None:
        self.scripts = Path(scripts_dir)

    def module_file(self, name: str) -> Path | None:
        """The file of the dotted module ``name`` (``mfoml.data.store``), or ``None``."""
        rel = Path(*name.split("."))
        for cand in (self.scripts / rel.with_suffix(".py"), self.scripts / rel / "__init__.py"):
            if cand.is_file():
                return cand
        return None

    @functools.cache  # noqa: B019 (one object per Snakemake process)
    def _tree(self, path: Path) -> ast.Module:
        return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))

    @functools.cache  # noqa: B019
    def _lazy(self, package: str) -> dict[str, str]:
        path = self.module_file(package)
        if path is None or path.name != "__init__.py":
            return {}
        return _lazy_map(self._tree(path))

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
        for node in ast.walk(self._tree(Path(path))):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] == ROOT_PACKAGE:
                        names |= self._resolve(alias.name, None)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                if node.module.split(".")[0] == ROOT_PACKAGE:
                    for alias in node.names:
                        names |= self._resolve(node.module, alias.name)
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
        what only they import); ``extra``: modules added (e.g. those of such a path that a job
        does take).
        """
        names = [*self.imports(self.scripts / script), *extra]
        return self.closure(names, skip)

    @functools.cache  # noqa: B019
    def source_hash(self, path: Path) -> str:
        """sha256 of :func:`normalized_source` of the file ``path``."""
        text = Path(path).read_text(encoding="utf-8")
        return hashlib.sha256(normalized_source(text, str(path)).encode()).hexdigest()

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
