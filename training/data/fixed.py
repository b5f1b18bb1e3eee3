"""Fixed, seeded on-disk pair sets (.npz) for validation and test.

Stored arrays: ``patches`` (N, 2, P, P) uint8 (A, B; B rounded from the bilinear warp),
``offsets`` (N, 4, 2) float32 pixels, ``top_left`` (N, 2) int32, ``image_index`` (N,) int32,
plus ``patch_size``, ``rho``, ``seed`` and ``files`` (the source file names, for provenance).
The same (images, n, seed, patch_size, rho) always gives the same set.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from app.inference.preprocess import PATCH_SIZE, RHO
from training.data.pairs import PairGenerator

__all__ = ["FixedSet", "load_fixed_set", "make_fixed_set", "save_fixed_set"]

FixedSet = dict[str, np.ndarray]


def make_fixed_set(
    images: torch.Tensor,
    n_pairs: int,
    seed: int,
    patch_size: int = PATCH_SIZE,
    rho: float = RHO,
    files: Sequence[str] = (),
    chunk: int = 256,
    progress: bool = False,
) -> FixedSet:
    """(N, H, W) uint8 images -> a fixed set of ``n_pairs`` pairs (CPU, deterministic)."""
    gen = PairGenerator(images.cpu(), patch_size=patch_size, rho=rho, seed=seed)
    idx, tl, off = gen.draw(n_pairs)
    patches = np.empty((n_pairs, 2, patch_size, patch_size), dtype=np.uint8)
    rng = range(0, n_pairs, chunk)
    if progress:
        from tqdm import tqdm

        rng = tqdm(rng, desc="fixed set", unit="chunk")
    for s in rng:
        e = min(s + chunk, n_pairs)
        raw = gen.render(idx[s:e], tl[s:e], off[s:e], raw=True)
        patches[s:e] = raw.round().clamp(0, 255).to(torch.uint8).numpy()
    return {
        "patches": patches,
        "offsets": off.numpy().astype(np.float32),
        "top_left": tl.numpy().astype(np.int32),
        "image_index": idx.numpy().astype(np.int32),
        "patch_size": np.array(patch_size),
        "rho": np.array(rho, dtype=np.float32),
        "seed": np.array(seed),
        "files": np.array([str(f) for f in files]),
    }


def save_fixed_set(data: FixedSet, path: str | Path) -> Path:
    """Write a fixed set as compressed .npz (parents created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **data)
    return path


def load_fixed_set(path: str | Path) -> FixedSet:
    """Read a fixed set written by :func:`save_fixed_set`."""
    with np.load(Path(path), allow_pickle=False) as z:
        return {k: z[k] for k in z.files}
