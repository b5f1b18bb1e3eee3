"""training.data.real_pairs: the Oxford layout read from a tmp folder (two sequences of tiny
images and H1toKp files): 1 -> K pairs, every i -> j pair composed through image 1, missing
images, files and folders."""

from __future__ import annotations

import itertools
from pathlib import Path

import cv2
import numpy as np
import pytest

from training.data.real_pairs import RealPair, load_real_pairs


def homography(k: int) -> np.ndarray:
    """A different invertible img1 -> imgK map for every K, deliberately not normalised."""
    rng = np.random.default_rng(k)
    H = np.eye(3) + rng.uniform(-0.1, 0.1, (3, 3)) * [[1, 1, 50], [1, 1, 50], [1e-3, 1e-3, 0]]
    return H * (0.5 + k)  # H[2, 2] = k + 0.5: the loader must normalise


def write_sequence(folder: Path, n: int, ext: str, skip_images=(), skip_h=()) -> None:
    folder.mkdir(parents=True)
    for k in range(1, n + 1):
        if k not in skip_images:
            img = np.full((6, 8, 3), 10 * k, np.uint8)
            img[0, 0] = (k, 2 * k, 3 * k)  # a colour that tells the image apart
            gray = ext == ".pgm"  # a gray format: read back as 3 equal channels
            assert cv2.imwrite(str(folder / f"img{k}{ext}"), img[..., 0] if gray else img)
        if k > 1 and k not in skip_h:
            np.savetxt(folder / f"H1to{k}p", homography(k))


def image_index(img: np.ndarray) -> int:
    return int(img[0, 0, 0])


@pytest.fixture
def root(tmp_path: Path) -> Path:
    write_sequence(tmp_path / "leuven", 4, ".png")
    write_sequence(tmp_path / "bikes", 3, ".ppm")
    (tmp_path / "README.txt").write_text("not a sequence")
    return tmp_path


def expected_H(i: int, j: int) -> np.ndarray:
    H1 = {1: np.eye(3)} | {k: homography(k) for k in range(2, 12)}
    H = H1[j] @ np.linalg.inv(H1[i])
    return H / H[2, 2]


def test_one_to_k_pairs(root: Path) -> None:
    pairs = load_real_pairs(root)
    assert [p.name for p in pairs] == [
        "bikes 1-2",
        "bikes 1-3",
        "leuven 1-2",
        "leuven 1-3",
        "leuven 1-4",
    ]
    for p in pairs:
        assert isinstance(p, RealPair)
        seq, ij = p.name.split()
        i, j = map(int, ij.split("-"))
        assert p.sequence == seq
        assert p.a.shape == p.b.shape == (6, 8, 3) and p.a.dtype == np.uint8
        assert (image_index(p.a), image_index(p.b)) == (i, j)
        np.testing.assert_array_equal(p.a[0, 0], [i, 2 * i, 3 * i])  # BGR as written
        assert p.b_H_a.dtype == np.float64 and p.b_H_a[2, 2] == pytest.approx(1.0, abs=1e-15)
        np.testing.assert_allclose(p.b_H_a, expected_H(1, j), rtol=1e-12, atol=1e-12)


def test_all_pairs_compose_through_image_one(root: Path) -> None:
    pairs = load_real_pairs(root, all_pairs=True)
    expected = [f"bikes {i}-{j}" for i, j in [(2, 3)]]
    expected += [f"leuven {i}-{j}" for i, j in itertools.combinations(range(2, 5), 2)]
    assert [p.name for p in pairs] == expected  # never a 1 -> K (benchmark) pair
    for p in pairs:
        i, j = map(int, p.name.split()[1].split("-"))
        assert (image_index(p.a), image_index(p.b)) == (i, j)
        np.testing.assert_allclose(p.b_H_a, expected_H(i, j), rtol=1e-10, atol=1e-10)
        # a point goes 1 -> i -> j the same way as 1 -> j
        x1 = np.array([3.0, 2.0, 1.0])
        xi, xj = homography(i) @ x1, homography(j) @ x1
        y = p.b_H_a @ (xi / xi[2])
        np.testing.assert_allclose(y[:2] / y[2], xj[:2] / xj[2], rtol=1e-9)


def test_missing_image_drops_its_pairs(tmp_path: Path) -> None:
    write_sequence(tmp_path / "s", 4, ".jpg", skip_images=(3,))
    assert [p.name for p in load_real_pairs(tmp_path)] == ["s 1-2", "s 1-4"]
    assert [p.name for p in load_real_pairs(tmp_path, all_pairs=True)] == ["s 2-4"]


def test_missing_first_image_leaves_only_the_other_pairs(tmp_path: Path) -> None:
    write_sequence(tmp_path / "s", 3, ".png", skip_images=(1,))
    assert load_real_pairs(tmp_path) == []
    (p,) = load_real_pairs(tmp_path, all_pairs=True)
    assert p.name == "s 2-3"
    np.testing.assert_allclose(p.b_H_a, expected_H(2, 3), rtol=1e-10, atol=1e-10)


def test_image_without_a_homography_is_not_paired(tmp_path: Path) -> None:
    write_sequence(tmp_path / "s", 4, ".png", skip_h=(2,))
    assert [p.name for p in load_real_pairs(tmp_path)] == ["s 1-3", "s 1-4"]
    assert [p.name for p in load_real_pairs(tmp_path, all_pairs=True)] == ["s 3-4"]


def test_indices_are_numbers_not_strings(tmp_path: Path) -> None:
    write_sequence(tmp_path / "long", 11, ".png")
    names = [p.name for p in load_real_pairs(tmp_path)]
    assert names == [f"long 1-{k}" for k in range(2, 12)]
    p10 = next(p for p in load_real_pairs(tmp_path) if p.name == "long 1-10")
    np.testing.assert_allclose(p10.b_H_a, expected_H(1, 10), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("ext", [".png", ".ppm", ".pgm", ".bmp", ".tif"])
def test_extensions(tmp_path: Path, ext: str) -> None:
    write_sequence(tmp_path / "s", 2, ext)
    (p,) = load_real_pairs(tmp_path)
    assert p.a.shape == (6, 8, 3) and image_index(p.b) == 2


def test_missing_or_empty_root(tmp_path: Path) -> None:
    assert load_real_pairs(tmp_path / "nowhere") == []
    assert load_real_pairs(tmp_path) == []
    (tmp_path / "empty").mkdir()
    assert load_real_pairs(tmp_path) == []
    assert load_real_pairs(str(tmp_path)) == []  # a str path is fine too


def test_hpatches_layout(tmp_path: Path) -> None:
    seq = tmp_path / "v_graffiti"
    seq.mkdir()
    for k in (1, 2, 3):
        assert cv2.imwrite(str(seq / f"{k}.ppm"), np.full((6, 8, 3), 10 * k, np.uint8))
        if k > 1:
            np.savetxt(seq / f"H_1_{k}", homography(k))
    assert [p.name for p in load_real_pairs(tmp_path)] == ["v_graffiti 1-2", "v_graffiti 1-3"]
