"""Fixtures for the training tests: tiny image folders (synthetic, textured)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest


def textured(seed: int, h: int = 60, w: int = 80) -> np.ndarray:
    """A smooth random colour texture (uint8, (h, w, 3)), good for feature matching."""
    rng = np.random.default_rng(seed)
    img = rng.random((h // 4, w // 4, 3)).astype(np.float32)
    img = cv2.resize(img, (w, h), interpolation=cv2.INTER_CUBIC)
    img += 0.3 * rng.random((h, w, 3)).astype(np.float32)
    return cv2.normalize(img, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)


@pytest.fixture(scope="session")
def tiny_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A plain folder of 6 small photos (one in a sub-folder)."""
    root = tmp_path_factory.mktemp("photos")
    (root / "sub").mkdir()
    for i in range(6):
        p = root / ("sub" if i == 5 else ".") / f"img{i}.png"
        cv2.imwrite(str(p), textured(i))
    (root / "notes.txt").write_text("not an image")
    return root
