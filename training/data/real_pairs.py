"""Real photo pairs of planar scenes with ground-truth homographies, read from a folder.

Layouts: one folder per sequence, either Oxford's affine-covariant regions data set
(``img1.<ext>`` ... ``imgN.<ext>``, ``H1toKp``) or HPatches' (``1.ppm`` ... ``6.ppm``,
``H_1_K``); the homography files are 3x3, whitespace-separated, row-major, mapping image 1's
pixels to image K's. Pairs are ``1 -> K`` (the benchmark's) or, with
``all_pairs``, every ``i -> j`` with ``2 <= i < j`` (``H_ij = H_1j @ inv(H_1i)``: the same scenes,
other pairs; used for calibration, apart from the benchmark's pairs). The graffiti pair 1 -> 3 of
Debian's opencv-doc is added by :func:`training.data.hard_pairs.graf_pair`.

Pixel convention: the files' homographies are in the datasets' own convention (pixel centres at
integer coordinates, as OpenCV's); ``b_H_a`` maps A pixels to B pixels, ``H[2, 2] = 1``.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

__all__ = ["RealPair", "load_real_pairs"]

_EXTENSIONS = (".png", ".ppm", ".jpg", ".jpeg", ".pgm", ".bmp", ".tif", ".tiff")


@dataclass(frozen=True)
class RealPair:
    """``a``, ``b``: (H, W, 3) uint8 BGR; ``b_H_a`` (3, 3) float64 truth; ``name`` such as
    ``"bikes 1-4"``; ``sequence``."""

    a: np.ndarray
    b: np.ndarray
    b_H_a: np.ndarray
    name: str
    sequence: str


def _image(folder: Path, index: int) -> np.ndarray | None:
    for stem in (f"img{index}", f"{index}"):
        for ext in _EXTENSIONS:
            p = folder / f"{stem}{ext}"
            if p.is_file():
                return cv2.imread(str(p), cv2.IMREAD_COLOR)
    return None


def _homographies(folder: Path) -> dict[int, np.ndarray]:
    """{K: 1_H_K file} for Oxford's ``H1toKp`` and HPatches' ``H_1_K`` names; {1: identity}."""
    out = {1: np.eye(3)}
    for f in folder.iterdir():
        name = f.name
        if name.startswith("H1to") and name.endswith("p") and name[4:-1].isdigit():
            k = int(name[4:-1])
        elif name.startswith("H_1_") and name[4:].isdigit():
            k = int(name[4:])
        else:
            continue
        out[k] = np.loadtxt(f).reshape(3, 3)
    return out


def load_real_pairs(root: str | Path, all_pairs: bool = False) -> list[RealPair]:
    """Every sequence folder under ``root`` (sorted) -> its pairs (see the module docstring);
    a missing ``root`` gives an empty list."""
    root = Path(root)
    if not root.is_dir():
        return []
    out: list[RealPair] = []
    for seq in sorted(p for p in root.iterdir() if p.is_dir()):
        H1 = _homographies(seq)
        images = {k: _image(seq, k) for k in H1}
        idx = sorted(k for k, im in images.items() if im is not None)
        if all_pairs:
            wanted = [(i, j) for i, j in itertools.combinations(idx, 2) if i >= 2]
        else:
            wanted = [(1, k) for k in idx if k > 1 and 1 in idx]
        for i, j in wanted:
            H = H1[j] @ np.linalg.inv(H1[i])
            out.append(RealPair(images[i], images[j], H / H[2, 2], f"{seq.name} {i}-{j}", seq.name))
    return out
