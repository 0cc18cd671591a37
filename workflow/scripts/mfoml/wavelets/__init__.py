"""Wavelets subpackage: placeholder until the package layout lands (branch ``layout`` owns the
real ``__init__.py``; take that one when merging).

Until then this package shadows the forest module ``mfoml/wavelets.py``; so that
``mfoml.wavelets.WaveletForestRegressor`` and friends keep working, the module's code is executed
in this namespace (its classes keep ``__module__ == "mfoml.wavelets"``).
"""

from pathlib import Path as _Path

_legacy = _Path(__file__).resolve().parent.parent / "wavelets.py"
if _legacy.is_file():
    exec(compile(_legacy.read_text(encoding="utf-8"), str(_legacy), "exec"), globals())
del _Path, _legacy
