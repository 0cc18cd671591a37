"""Safe use of numba's on-disk cache of the fast builder's kernels by concurrent processes.

The pipeline runs several jobs at once, each a fresh process that loads the builder's kernels
from numba's cache (``cache=True``) or compiles and saves them. Two numba defects (numba 0.68,
both open upstream) turn that into crashes, and this module works around both:

1. **A cached caller of a parallel kernel can forget to launch the threading layer**
   (numba issues #8578, #4807, #9938; fix proposed in pull request #9950). ``build_tree`` calls
   the ``parallel=True`` row kernel. numba records "launch the threading layer on load" in a
   cached function only when the parallel callee was *compiled* in the same process; when the
   callee came from the cache, ``build_tree`` is saved without it, and a later process that
   loads that ``build_tree`` runs without a launched threading layer and dies of SIGSEGV. In the
   pipeline this happened when a tabular job compiled ``build_tree`` against kernels a
   concurrent probe job had just cached (reproduced in ``tests/test_kernel_cache.py``). Cure:
   :func:`launch_threading_layer` before the first call, in every process.
2. **The cache index is read, modified and written without a lock**
   (``numba.core.caching.IndexDataCacheFile.save``). Two processes that compile *different*
   signatures of one function at once both pick data file 1; the index can then map one
   signature to the other's machine code. :func:`cache_lock` serialises a process's first load
   or compilation of the kernels with an exclusive ``flock`` on a file in the cache directory.
   A process that finds the cache complete holds the lock for milliseconds.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["LOCK_NAME", "cache_lock", "launch_threading_layer", "lock_path"]

#: File (in the cache directory of the locked kernel's module) that :func:`cache_lock` locks.
LOCK_NAME = "mfoml-kernels.lock"


def launch_threading_layer() -> None:
    """Launch numba's threading layer now (once per process; later calls are free).

    The layer is the one ``numba.config.THREADING_LAYER`` names at this moment. The default
    ``omp`` layer starts no thread until a parallel region runs; ``workqueue`` starts its
    workers here. See defect 1 of the module docstring.
    """
    import numba

    numba.get_num_threads()  # launches the layer (numba.np.ufunc.parallel._launch_threads)


def lock_path(dispatcher: Any) -> Path:
    """The lock file beside ``dispatcher``'s cache files (numba's choice of directory: the
    module's ``__pycache__``, ``NUMBA_CACHE_DIR``, or a user-wide fallback), else in the
    temporary directory."""
    directory = getattr(getattr(dispatcher, "_cache", None), "_cache_path", None)
    return Path(directory or tempfile.gettempdir()) / LOCK_NAME


@contextlib.contextmanager
def cache_lock(dispatcher: Any) -> Iterator[bool]:
    """Hold an exclusive lock shared by every process that uses ``dispatcher``'s cache.

    Yields True when the lock is held, False where it cannot be taken (a read-only directory,
    a file system without ``flock``, no ``fcntl``): the body then runs unlocked, as numba
    would. See defect 2 of the module docstring.
    """
    try:
        import fcntl
    except ImportError:  # not POSIX
        yield False
        return
    path = lock_path(dispatcher)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError:
        yield False
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            held = True
        except OSError:
            held = False
        yield held
    finally:
        os.close(fd)  # closing releases the lock
