"""Evaluation pairs that are hard for one method or another, with their true homography.

Image A is a window of a photo; image B is the same photo seen through a known homography, then
degraded. Kinds:

- ``moderate``: B's corners move by up to 20 % of the side (HomographyNet's protocol);
- ``large``: a rotation drawn from +-20-40 deg, scale 0.65-1.5, and corners moved by up to 10 %
  on top (which shifts the rotation at A's centre by up to ~8 deg: measured 12.7-47 deg over
  2,000 seeds); far beyond the network's rho (25 % of the side);
- ``blur``: moderate motion, B blurred (Gaussian sigma 2.5-4 px);
- ``lighting``: moderate motion, B with gain 0.35-0.6 or 1.5-2.2, bias +-40 and gamma 0.5-2;
- ``jpeg``: moderate motion, both images JPEG-compressed at quality 8-15;
- ``low_texture``: moderate motion, both images blurred (sigma 4) and their contrast divided by
  4, plus noise: few keypoints survive.

``b_H_a`` maps A pixels to B pixels (``x_b ~ b_H_a @ x_a``, pixel centres at integers), as
everywhere in the service. Content outside the photo is filled by reflection, so neither image
has black borders. Deterministic for a seed.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

__all__ = [
    "KINDS",
    "HardPair",
    "default_photos",
    "graf_pair",
    "make_hard_pair",
    "make_hard_pairs",
    "opencv_samples_dir",
]

KINDS = ("moderate", "large", "blur", "lighting", "jpeg", "low_texture")
PHOTOS = (
    "astronaut.png",
    "coffee.png",
    "chelsea.png",
    "rocket.jpg",
    "motorcycle_left.png",
    "retina.jpg",
    "hubble_deep_field.jpg",
    "brick.png",
)


@dataclass(frozen=True)
class HardPair:
    """``a``, ``b``: (H, W, 3) uint8 BGR; ``b_H_a``: (3, 3) float64 truth; ``kind``, ``photo``."""

    a: np.ndarray
    b: np.ndarray
    b_H_a: np.ndarray
    kind: str
    photo: str


def default_photos() -> list[tuple[str, np.ndarray]]:
    """scikit-image's colour sample photos (installed with the package; no download)."""
    import skimage

    out = []
    for name in PHOTOS:
        img = cv2.imread(str(Path(skimage.data_dir) / name), cv2.IMREAD_COLOR)
        if img is not None and min(img.shape[:2]) >= 200:
            out.append((name, img))
    return out


def _motion(kind: str, size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """``b_H_a`` for A of ``size`` = (w, h): B's view of the canvas around A's centre."""
    w, h = size
    c = np.array([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], np.float64)
    if kind == "large":
        ang = math.radians(rng.uniform(20, 40) * rng.choice([-1, 1]))
        s = math.exp(rng.uniform(math.log(0.65), math.log(1.5)))
        centre = np.array([(w - 1) / 2, (h - 1) / 2])
        R = s * np.array([[math.cos(ang), -math.sin(ang)], [math.sin(ang), math.cos(ang)]])
        moved = (c - centre) @ R.T + centre + rng.uniform(-0.1, 0.1, (4, 2)) * [w, h]
    else:
        moved = c + rng.uniform(-0.2, 0.2, (4, 2)) * [w, h]
    # ``moved``: where B's corners lie in A's frame -> a_H_b; b_H_a is its inverse
    a_H_b = cv2.getPerspectiveTransform(c.astype(np.float32), moved.astype(np.float32))
    b_H_a = np.linalg.inv(a_H_b.astype(np.float64))
    return b_H_a / b_H_a[2, 2]


def _degrade(kind: str, a: np.ndarray, b: np.ndarray, rng: np.random.Generator):
    if kind == "blur":
        b = cv2.GaussianBlur(b, (0, 0), rng.uniform(2.5, 4.0))
    elif kind == "lighting":
        gain = rng.uniform(0.35, 0.6) if rng.random() < 0.5 else rng.uniform(1.5, 2.2)
        gamma = math.exp(rng.uniform(math.log(0.5), math.log(2.0)))
        x = (b.astype(np.float64) / 255.0) ** gamma * 255.0 * gain + rng.uniform(-40, 40)
        b = np.clip(x, 0, 255).astype(np.uint8)
    elif kind == "jpeg":
        q = int(rng.integers(8, 16))
        a, b = (
            cv2.imdecode(cv2.imencode(".jpg", x, [cv2.IMWRITE_JPEG_QUALITY, q])[1], 1)
            for x in (a, b)
        )
    elif kind == "low_texture":

        def flatten(x: np.ndarray) -> np.ndarray:
            y = cv2.GaussianBlur(x, (0, 0), 4.0).astype(np.float64)
            y = (y - y.mean()) / 4.0 + 128.0 + rng.normal(0, 2.0, y.shape)
            return np.clip(y, 0, 255).astype(np.uint8)

        a, b = flatten(a), flatten(b)
    return a, b


def make_hard_pair(
    photo: np.ndarray,
    kind: str,
    size: tuple[int, int],
    rng: np.random.Generator,
    name: str = "",
) -> HardPair:
    """One pair of ``kind`` (see the module docstring) of ``size`` = (w, h) from ``photo``
    (H, W, 3) uint8 BGR."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    w, h = size
    W, H = 2 * w, 2 * h  # the canvas: A is its centre window
    canvas = cv2.resize(photo, (W, H), interpolation=cv2.INTER_AREA)
    a_H_c = np.array([[1.0, 0, -(W - w) / 2], [0, 1.0, -(H - h) / 2], [0, 0, 1.0]])
    b_H_a = _motion(kind, size, rng)
    border = cv2.BORDER_REFLECT_101
    a = cv2.warpPerspective(canvas, a_H_c, size, flags=cv2.INTER_LINEAR, borderMode=border)
    b = cv2.warpPerspective(canvas, b_H_a @ a_H_c, size, flags=cv2.INTER_LINEAR, borderMode=border)
    a, b = _degrade(kind, a, b, rng)
    return HardPair(a, b, b_H_a, kind, name)


def make_hard_pairs(
    per_kind: int,
    size: tuple[int, int] = (640, 480),
    seed: int = 0,
    kinds: tuple[str, ...] = KINDS,
    photos: list[tuple[str, np.ndarray]] | None = None,
) -> list[HardPair]:
    """``per_kind`` pairs of every kind, cycling through ``photos`` (default: scikit-image's)."""
    photos = photos or default_photos()
    rng = np.random.default_rng(seed)
    out = []
    for kind in kinds:
        for i in range(per_kind):
            name, photo = photos[(i + KINDS.index(kind)) % len(photos)]
            out.append(make_hard_pair(photo, kind, size, rng, name))
    return out


def opencv_samples_dir() -> Path | None:
    """Where Debian's opencv-doc sample data is: ``$HOMOGRAPHY_OPENCV_SAMPLES``, the copy that
    ``make samples`` puts in ``.venv/share/opencv-samples``, or the installed package; None
    when none has ``H1to3p.xml``."""
    root = Path(__file__).resolve().parents[2]
    candidates = [
        os.environ.get("HOMOGRAPHY_OPENCV_SAMPLES"),
        root / ".venv" / "share" / "opencv-samples",
        "/usr/share/doc/opencv-doc/examples/data",
    ]
    for c in candidates:
        if c and (Path(c) / "H1to3p.xml").is_file():
            return Path(c)
    return None


def graf_pair() -> HardPair | None:
    """The Oxford "graffiti" pair 1 -> 3 (800 x 640, a real viewpoint change of about 40 deg)
    with its published ground truth ``H1to3p`` (image-1 pixels -> image-3 pixels), from
    Debian's opencv-doc; None when the files are not installed (see :func:`opencv_samples_dir`)."""
    d = opencv_samples_dir()
    if d is None:
        return None
    a, b = cv2.imread(str(d / "graf1.png")), cv2.imread(str(d / "graf3.png"))
    fs = cv2.FileStorage(str(d / "H1to3p.xml"), cv2.FILE_STORAGE_READ)
    H = fs.getNode("H13").mat()
    fs.release()
    if a is None or b is None or H is None:
        return None
    return HardPair(a, b, H / H[2, 2], "graf", "graf1-graf3")
