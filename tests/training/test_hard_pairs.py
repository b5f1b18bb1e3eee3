"""training.data.hard_pairs: sizes, types, determinism, and that b_H_a is the true A -> B map."""

from __future__ import annotations

import math
from functools import cache

import cv2
import numpy as np
import pytest

from training.data.hard_pairs import (
    KINDS,
    HardPair,
    default_photos,
    make_hard_pair,
    make_hard_pairs,
)

SIZE = (320, 240)


@cache
def photos() -> dict[str, np.ndarray]:
    return dict(default_photos())


def pair(kind: str, name: str = "astronaut.png", seed: int = 0, size=SIZE) -> HardPair:
    return make_hard_pair(photos()[name], kind, size, np.random.default_rng(seed), name)


def warp_error(p: HardPair, H: np.ndarray) -> float:
    """Mean |warp(A, H) - B| (gray levels, all channels) where the warp of A is valid, eroded by
    3 px so that interpolation at A's border does not count."""
    size = (p.b.shape[1], p.b.shape[0])
    w = cv2.warpPerspective(p.a, H, size, flags=cv2.INTER_LINEAR)
    ones = np.full(p.a.shape[:2], 255, np.uint8)
    valid = cv2.warpPerspective(ones, H, size, flags=cv2.INTER_NEAREST) == 255
    valid = cv2.erode(valid.astype(np.uint8), np.ones((7, 7), np.uint8)) > 0
    assert valid.mean() > 0.2  # enough pixels to judge
    return float(np.abs(w.astype(np.float64) - p.b.astype(np.float64))[valid].mean())


def rotation_deg(H: np.ndarray, size: tuple[int, int]) -> float:
    """Signed rotation (degrees) of the polar part of H's Jacobian at A's centre."""
    x, y = (size[0] - 1) / 2, (size[1] - 1) / 2
    u, v, s = H @ [x, y, 1.0]
    J = (H[:2, :2] * s - np.outer([u, v], H[2, :2])) / s**2
    U, _, Vt = np.linalg.svd(J)
    R = U @ Vt
    return math.degrees(math.atan2(R[1, 0], R[0, 0]))


def test_default_photos() -> None:
    ph = default_photos()
    assert len(ph) >= 4
    for name, img in ph:
        assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3, name
        assert min(img.shape[:2]) >= 200


@pytest.mark.parametrize("size", [(320, 240), (161, 121)])
@pytest.mark.parametrize("kind", KINDS)
def test_images_have_the_requested_size(kind: str, size: tuple[int, int]) -> None:
    p = pair(kind, "coffee.png", 1, size)
    for img in (p.a, p.b):
        assert img.shape == (size[1], size[0], 3) and img.dtype == np.uint8
        assert img.std() > 1  # not blank
    assert p.b_H_a.shape == (3, 3) and p.b_H_a.dtype == np.float64
    assert p.b_H_a[2, 2] == pytest.approx(1.0) and np.isfinite(p.b_H_a).all()
    assert p.kind == kind and p.photo == "coffee.png"


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("name", ["astronaut.png", "coffee.png", "chelsea.png", "brick.png"])
@pytest.mark.parametrize("kind", ["moderate", "large"])
def test_b_H_a_is_the_true_map(kind: str, name: str, seed: int) -> None:
    p = pair(kind, name, seed)
    assert warp_error(p, p.b_H_a) < 3.0
    # two pixels off is clearly visible: the check above can fail
    assert warp_error(p, np.array([[1, 0, 2.0], [0, 1, 0], [0, 0, 1]]) @ p.b_H_a) > 4.0


@pytest.mark.parametrize("kind", ["blur", "lighting", "jpeg", "low_texture"])
def test_degraded_kinds_keep_the_geometry(kind: str) -> None:
    """The same seed draws the same motion as ``moderate``; only the pixels are degraded."""
    ref, p = pair("moderate", seed=3), pair(kind, seed=3)
    np.testing.assert_array_equal(p.b_H_a, ref.b_H_a)
    assert not np.array_equal(p.b, ref.b)
    if kind in ("blur", "lighting"):  # B only
        np.testing.assert_array_equal(p.a, ref.a)
    else:  # both images
        assert not np.array_equal(p.a, ref.a)


def test_deterministic_for_a_seed() -> None:
    kw = {"per_kind": 1, "size": (160, 120)}
    one, two = make_hard_pairs(seed=5, **kw), make_hard_pairs(seed=5, **kw)
    assert [p.kind for p in one] == list(KINDS)
    for p, q in zip(one, two):
        assert (p.kind, p.photo) == (q.kind, q.photo)
        np.testing.assert_array_equal(p.a, q.a)
        np.testing.assert_array_equal(p.b, q.b)
        np.testing.assert_array_equal(p.b_H_a, q.b_H_a)
    other = make_hard_pairs(seed=6, **kw)
    assert not any(np.array_equal(p.b_H_a, q.b_H_a) for p, q in zip(one, other))


def test_unknown_kind() -> None:
    with pytest.raises(ValueError, match="kind must be one of"):
        pair("tiny")
    with pytest.raises(ValueError):
        make_hard_pairs(1, (160, 120), kinds=("tiny",))


@cache
def large_rotations() -> np.ndarray:
    """Signed rotations (degrees) of 200 ``large`` motions."""
    pairs = make_hard_pairs(200, SIZE, seed=0, kinds=("large",))
    return np.array([rotation_deg(p.b_H_a, SIZE) for p in pairs])


def test_large_motions_rotate() -> None:
    r = np.abs(large_rotations())
    assert r.min() >= 10.0 and r.max() <= 50.0
    assert np.mean(r >= 20.0) >= 0.9
    signs = np.sign(large_rotations())
    assert (signs > 0).any() and (signs < 0).any()
