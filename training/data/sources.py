"""Image sources: plain folders, MS-COCO layouts, and the photos installed packages ship.

Split convention: a file goes to ``train``, ``val`` or ``test`` by the SHA-1 of its file name
(not its path), so the split is stable across machines and independent of folder order.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch

from app.imaging import resize_gray
from app.inference.preprocess import WORK_SIZE

__all__ = [
    "COCO_SPLITS",
    "IMAGE_EXTENSIONS",
    "default_image_dir",
    "discover_images",
    "load_gray_stack",
    "split_by_hash",
]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
COCO_SPLITS = ("train2014", "val2014", "test2014", "train2017", "val2017", "test2017")


def default_image_dir() -> Path:
    """The photos scikit-image ships (used when the user has nothing downloaded)."""
    import skimage

    return Path(skimage.data_dir)


def _is_image(p: Path) -> bool:
    return p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")


def discover_images(
    root: str | Path | None, coco_splits: Sequence[str] | None = None
) -> list[Path]:
    """Image files under ``root`` (sorted), or the default image dir when ``root`` is None.

    MS-COCO layouts are recognised: ``root/{train2014,val2014,train2017,...}/*.jpg`` or
    ``root/images/<split>/*.jpg``; ``coco_splits`` then selects splits (default: all found).
    Anything else is searched recursively.
    """
    root = default_image_dir() if root is None else Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder not found: {root}")
    bases = [root, root / "images"]
    found = {s: b / s for b in bases for s in COCO_SPLITS if (b / s).is_dir()}
    if found:
        wanted = list(coco_splits) if coco_splits else list(found)
        missing = [s for s in wanted if s not in found]
        if missing:
            raise FileNotFoundError(
                f"COCO split(s) {missing} not under {root}; found {list(found)}"
            )
        files = [p for s in wanted for p in found[s].iterdir() if _is_image(p)]
    else:
        files = [p for p in root.rglob("*") if _is_image(p)]
    files = sorted(files)
    if not files:
        raise FileNotFoundError(f"no images under {root}")
    return files


def _bucket(name: str) -> float:
    h = hashlib.sha1(name.encode("utf-8")).digest()
    return int.from_bytes(h[:8], "big") / 2**64


def split_by_hash(
    files: Sequence[Path],
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    min_files: int = 50,
) -> dict[str, list[Path]]:
    """Deterministic split by file-name hash: ``{"train": [...], "val": [...], "test": [...]}``.

    With fewer than ``min_files`` files every split gets all files (toy folders such as
    scikit-image's ~30 sample images: nothing is held out then).
    """
    if not 0 <= val_fraction < 1 or not 0 <= test_fraction < 1 or val_fraction + test_fraction >= 1:
        raise ValueError("fractions must be in [0, 1) and sum below 1")
    files = list(files)
    if len(files) < min_files:
        return {"train": files, "val": files, "test": files}
    out: dict[str, list[Path]] = {"train": [], "val": [], "test": []}
    for f in files:
        u = _bucket(f.name)
        key = (
            "test" if u < test_fraction else "val" if u < test_fraction + val_fraction else "train"
        )
        out[key].append(f)
    return out


def load_gray_stack(
    files: Sequence[Path], size: tuple[int, int] = WORK_SIZE, progress: bool = False
) -> torch.Tensor:
    """Decode once: files -> (N, H, W) uint8 tensor, grayscale, resized to ``size`` = (W, H).

    Unreadable files are skipped (with a warning count in the progress bar's postfix).
    """
    it = files
    if progress:
        from tqdm import tqdm

        it = tqdm(files, desc="decode", unit="img")
    out = np.empty((len(files), size[1], size[0]), dtype=np.uint8)
    n = 0
    for f in it:
        # a JPEG's gray is its luma plane, straight from the decoder, as /estimate decodes it
        # (app.services.images.decode_pixels); other files as stored, converted by resize_gray
        jpeg = f.suffix.lower() in (".jpg", ".jpeg")
        img = cv2.imread(str(f), cv2.IMREAD_GRAYSCALE if jpeg else cv2.IMREAD_UNCHANGED)
        if img is None:
            continue
        if img.dtype == np.uint16:  # 16-bit PNG/TIFF
            img = cv2.convertScaleAbs(img, alpha=255.0 / max(1, int(img.max())))
        elif img.dtype != np.uint8:  # float TIFFs and the like: not photos
            continue
        if img.ndim == 3 and img.shape[2] > 4:
            img = img[..., :3]
        out[n] = resize_gray(img, size)
        n += 1
    if n == 0:
        raise ValueError("none of the images could be decoded")
    return torch.from_numpy(out[:n].copy())
