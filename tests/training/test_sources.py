"""training.data.sources and training.data.fixed: discovery, splits, decoding, fixed sets."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.training.conftest import textured
from training.data.fixed import load_fixed_set, make_fixed_set, save_fixed_set
from training.data.sources import (
    default_image_dir,
    discover_images,
    load_gray_stack,
    split_by_hash,
)


def test_plain_folder(tiny_folder: Path) -> None:
    files = discover_images(tiny_folder)
    assert len(files) == 6 and files == sorted(files)
    assert any(f.parent.name == "sub" for f in files)


@pytest.mark.parametrize("prefix", ["", "images/"])
def test_coco_layout(tmp_path: Path, prefix: str) -> None:
    for split, n in [("train2014", 3), ("val2014", 2), ("train2017", 1)]:
        d = tmp_path / prefix / split
        d.mkdir(parents=True)
        for i in range(n):
            cv2.imwrite(str(d / f"COCO_{split}_{i:012d}.jpg"), textured(i, 40, 40))
    (tmp_path / "annotations").mkdir()
    cv2.imwrite(str(tmp_path / "annotations" / "stray.jpg"), textured(9, 40, 40))
    assert len(discover_images(tmp_path)) == 6  # all splits, never 'annotations'
    assert len(discover_images(tmp_path, ["train2014"])) == 3
    assert len(discover_images(tmp_path, ["train2014", "val2014"])) == 5
    with pytest.raises(FileNotFoundError, match="val2017"):
        discover_images(tmp_path, ["val2017"])


def test_default_dir_and_missing(tmp_path: Path) -> None:
    assert len(discover_images(None)) > 5 and default_image_dir().is_dir()
    with pytest.raises(FileNotFoundError):
        discover_images(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="no images"):
        discover_images(tmp_path)


def test_split_by_hash_is_deterministic_and_disjoint() -> None:
    files = [Path(f"/x/{i}.jpg") for i in range(2000)]
    a = split_by_hash(files)
    b = split_by_hash([Path("/elsewhere") / f.name for f in reversed(files)])
    assert {f.name for f in a["test"]} == {f.name for f in b["test"]}
    names = [set(map(str, a[k])) for k in ("train", "val", "test")]
    assert not (names[0] & names[1]) and not (names[0] & names[2]) and not (names[1] & names[2])
    assert sum(map(len, names)) == 2000
    assert 150 < len(a["test"]) < 250 and 150 < len(a["val"]) < 250
    small = split_by_hash(files[:5])
    assert small["train"] == small["test"] == files[:5]


def test_load_and_fixed_set(tiny_folder: Path, tmp_path: Path) -> None:
    files = discover_images(tiny_folder)
    imgs = load_gray_stack(files, (64, 48))
    assert imgs.shape == (6, 48, 64) and imgs.dtype.is_floating_point is False
    s1 = make_fixed_set(imgs, 10, seed=3, patch_size=32, rho=8, files=[f.name for f in files])
    s2 = make_fixed_set(imgs, 10, seed=3, patch_size=32, rho=8)
    assert s1["patches"].shape == (10, 2, 32, 32) and s1["patches"].dtype == np.uint8
    assert np.array_equal(s1["patches"], s2["patches"])
    assert np.abs(s1["offsets"]).max() <= 8
    path = save_fixed_set(s1, tmp_path / "d" / "set.npz")
    back = load_fixed_set(path)
    assert np.array_equal(back["offsets"], s1["offsets"]) and len(back["files"]) == 6
