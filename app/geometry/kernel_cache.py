"""Where Numba keeps the compiled kernels (``cache=True`` in :mod:`app.geometry._kernels` and the
other kernel modules; ``python -m app.services.warmup`` compiles them all).

``NUMBA_CACHE_DIR`` names the directory; unset, Numba writes beside the sources
(``app/geometry/__pycache__`` and the like, which ``make install`` fills). The images compile into
``/opt/numba-cache`` at build time. Numba only uses a cache directory it can write: a read-only
one, even with a matching index, is passed over for the next location it can write (another
directory: everything recompiled) and, when there is none, importing the kernels fails with
"cannot cache function ...: no locator available". So a cache the process cannot write (baked
into an image that runs as another user or with a read-only root file system) is copied to a
writable scratch directory (``$TMPDIR/numba-cache``) before the kernels are imported.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import MutableMapping
from pathlib import Path

import structlog

log = structlog.get_logger("app.kernels")

ENV = "NUMBA_CACHE_DIR"


def writable(path: Path) -> bool:
    """Numba's own test: the directory can be created and a file written in it."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=path).close()
    except OSError:
        return False
    return True


def prepare_kernel_cache(
    environ: MutableMapping[str, str] = os.environ, scratch: Path | None = None
) -> Path | None:
    """Make ``environ[NUMBA_CACHE_DIR]`` a directory Numba will use, copying a read-only one to
    ``scratch`` (default ``$TMPDIR/numba-cache``). Returns the directory in use (None: Numba's
    default, beside the sources). Call it before :mod:`app.geometry._kernels` is imported."""
    configured = environ.get(ENV)
    if not configured:
        return None
    baked = Path(configured)
    if writable(baked):
        return baked
    target = scratch or Path(tempfile.gettempdir()) / "numba-cache"
    if baked.is_dir():  # the copies are ours to write, whatever the baked modes were
        shutil.copytree(baked, target, copy_function=shutil.copyfile, dirs_exist_ok=True)
        for path in (target, *target.rglob("*")):
            if path.is_dir():
                path.chmod(0o755)
    if not writable(target):
        log.warning("kernel_cache_unwritable", baked=str(baked), scratch=str(target))
        return None
    environ[ENV] = str(target)
    if "numba" in sys.modules and environ is os.environ:
        from numba.core import config

        config.reload_config()
    if "app.geometry._kernels" in sys.modules:
        log.warning("kernel_cache_too_late", detail="kernels imported before the cache moved")
    log.info("kernel_cache_copied", baked=str(baked), to=str(target))
    return target
