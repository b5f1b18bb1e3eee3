"""Numba's on-disk cache when its directory is read-only (a cache baked into an image that runs
as another user, or with a read-only root file system), and what prepare_kernel_cache does about
it. Each case runs in a fresh interpreter that cannot write the cache: as root (who ignores
permission bits) without the capability to override them, else as the same user."""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.geometry.kernel_cache import prepare_kernel_cache

ROOT = Path(__file__).resolve().parents[2]
PR_CAPBSET_DROP, CAP_DAC_OVERRIDE = 24, 1

KERNEL = """
import numba

@numba.njit(cache=True)
def add(a, b):
    return a + b
"""

# prints how the call was served: from the cache (hits) or compiled (misses)
CALL = """
import sys
sys.path.insert(0, {mod!r})
{prepare}
import kern
kern.add(1.0, 2.0)
s = kern.add.stats
print("hits", sum(s.cache_hits.values()), "misses", sum(s.cache_misses.values()), s.cache_path)
"""


@pytest.fixture
def world() -> Iterator[Path]:
    """A module dir and a filled cache dir, both read-only to the child, world-traversable."""
    base = Path(tempfile.mkdtemp(prefix="kcache-"))
    try:
        base.chmod(0o755)
        mod, cache = base / "mod", base / "cache"
        mod.mkdir()
        (base / "home").mkdir(mode=0o555)
        (mod / "kern.py").write_text(KERNEL)
        _run(base, CALL.format(mod=str(mod), prepare=""), cache, as_owner=True)  # fills it
        assert any(cache.rglob("*.nbi")), "the first run wrote an index"
        for path in (mod, cache, *mod.rglob("*"), *cache.rglob("*")):
            path.chmod(0o555 if path.is_dir() else 0o444)
        yield base
    finally:
        for path in base.rglob("*"):
            path.chmod(0o755)
        shutil.rmtree(base)


def _run(base: Path, code: str, cache: Path, as_owner: bool = False) -> subprocess.CompletedProcess:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(base / "home"),  # read-only: no user-wide cache to fall back on
        "NUMBA_CACHE_DIR": str(cache),
        "TMPDIR": str(base / "tmp"),
        "PYTHONPATH": str(ROOT),
    }
    (base / "tmp").mkdir(exist_ok=True)
    (base / "tmp").chmod(0o777)
    drop = None
    if not as_owner and os.geteuid() == 0:

        def drop() -> None:  # the exec'd root keeps no CAP_DAC_OVERRIDE: modes bind it
            if ctypes.CDLL(None, use_errno=True).prctl(PR_CAPBSET_DROP, CAP_DAC_OVERRIDE) != 0:
                raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")

    elif not as_owner and os.access(cache, os.W_OK):
        pytest.skip("cannot make the cache read-only for this user")
    return subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        preexec_fn=drop,
        timeout=120,
    )


def test_numba_will_not_use_a_read_only_cache_even_when_its_index_matches(world):
    r = _run(world, CALL.format(mod=str(world / "mod"), prepare=""), world / "cache")
    assert r.returncode != 0
    assert "no locator available" in r.stderr, r.stderr


def test_prepare_kernel_cache_copies_it_and_the_kernels_load_without_compiling(world):
    prepare = "from app.geometry.kernel_cache import prepare_kernel_cache; prepare_kernel_cache()"
    r = _run(world, CALL.format(mod=str(world / "mod"), prepare=prepare), world / "cache")
    assert r.returncode == 0, r.stderr
    _, hits, _, misses, where = r.stdout.splitlines()[-1].split()
    assert (hits, misses) == ("1", "0"), r.stdout
    assert where.startswith(str(world / "tmp" / "numba-cache"))
    assert any((world / "tmp" / "numba-cache").rglob("*.nbi"))


def test_a_writable_cache_is_used_in_place(tmp_path):
    env = {"NUMBA_CACHE_DIR": str(tmp_path / "cache")}
    assert prepare_kernel_cache(env, scratch=tmp_path / "scratch") == tmp_path / "cache"
    assert env["NUMBA_CACHE_DIR"] == str(tmp_path / "cache")
    assert not (tmp_path / "scratch").exists()
    assert prepare_kernel_cache({}, scratch=tmp_path / "scratch") is None  # Numba's default
