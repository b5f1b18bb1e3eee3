"""training.data.pairs: the 5-step generator, checked against OpenCV."""

from __future__ import annotations

import cv2
import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from app.geometry.four_point import solve_homography_torch as solve_homography
from app.geometry.points import image_corners_torch
from app.geometry.points import transform_points_torch as transform_points
from tests.training.conftest import textured
from training.data.pairs import PairGenerator, render_pairs
from training.geometry import square_to_quad


def corners_like(x: torch.Tensor, P: int) -> torch.Tensor:
    return image_corners_torch((P, P), x)


IMG = cv2.cvtColor(textured(3, 96, 128), cv2.COLOR_BGR2GRAY)
P, RHO = 48, 12.0


def _cv2_pair(img: np.ndarray, tl: tuple[int, int], off: np.ndarray) -> tuple[np.ndarray, ...]:
    """The paper's steps with OpenCV on the full image: H_AB from p to p', warp by inv, crop."""
    x0, y0 = tl
    p = (corners_like(torch.zeros(1), P)[0].numpy() + [x0, y0]).astype(np.float32)
    H_AB = cv2.getPerspectiveTransform(p, (p + off).astype(np.float32))
    warped = cv2.warpPerspective(
        img.astype(np.float32), np.linalg.inv(H_AB), img.shape[::-1], flags=cv2.INTER_LINEAR
    )
    return img[y0 : y0 + P, x0 : x0 + P].astype(np.float32), warped[y0 : y0 + P, x0 : x0 + P], H_AB


@settings(max_examples=15, deadline=None)
@given(
    st.integers(int(RHO), 128 - P - int(RHO)),
    st.integers(int(RHO), 96 - P - int(RHO)),
    st.lists(st.floats(-RHO, RHO), min_size=8, max_size=8),
)
def test_matches_cv2_warp(x0: int, y0: int, off: list[float]) -> None:
    offsets = torch.tensor(off, dtype=torch.float64).reshape(1, 4, 2)
    img = torch.from_numpy(IMG).double()[None, None]
    pair = render_pairs(img, torch.tensor([[x0, y0]]), offsets, P)[0].numpy()
    a, b, _ = _cv2_pair(IMG, (x0, y0), offsets[0].numpy())
    assert np.array_equal(pair[0], a)
    # interpolation differs at most slightly (kornia vs cv2 fixed-point), away from the border
    assert np.abs(pair[1] - b)[2:-2, 2:-2].max() < 0.05


def test_label_direction() -> None:
    """B's content at square corner i is A's (the image's) content at corner_i + offset_i."""
    x0, y0 = 20, 20
    off = np.array([[5.0, -3.0], [-7.0, 4.0], [2.0, 6.0], [-4.0, -8.0]])
    _, _, H_AB = _cv2_pair(IMG, (x0, y0), off)
    # warped(u) = I(H_AB u): the warped image at p_i shows the image at p'_i = p_i + off_i
    p = corners_like(torch.zeros(1), P)[0].numpy() + [x0, y0]
    mapped = cv2.perspectiveTransform(p[None].astype(np.float64), H_AB)[0]
    assert np.allclose(mapped - p, off, atol=1e-6)
    # and in patch coordinates: warping A by a_H_b = solve(square, square + off) reproduces B
    off_t = torch.tensor(off)[None]
    sq = corners_like(off_t, P)
    a_H_b = solve_homography(sq, sq + off_t)[0].numpy()
    big = torch.from_numpy(IMG).double()[None, None]
    pair = render_pairs(big, torch.tensor([[x0, y0]]), off_t, P)[0].numpy()
    T = np.array([[1, 0, x0], [0, 1, y0], [0, 0, 1.0]])
    b_from_a = cv2.warpPerspective(IMG.astype(np.float32), np.linalg.inv(T @ a_H_b), (P, P))
    assert np.abs(b_from_a - pair[1])[2:-2, 2:-2].max() < 0.05


@settings(max_examples=20, deadline=None)
@given(st.lists(st.floats(-30, 30), min_size=8, max_size=8))
def test_square_to_quad_matches_solver(off: list[float]) -> None:
    q = torch.tensor(off, dtype=torch.float64).reshape(1, 4, 2)
    sq = corners_like(q, 128)
    H = square_to_quad(sq + q, 127.0)
    ref = cv2.getPerspectiveTransform(
        sq[0].numpy().astype(np.float32), (sq + q)[0].numpy().astype(np.float32)
    )
    assert torch.allclose(transform_points(H, sq), sq + q, atol=1e-6)
    assert np.allclose(H[0].numpy(), ref, atol=1e-4 * np.abs(ref).max())


def test_generator_determinism_and_range() -> None:
    imgs = torch.from_numpy(np.stack([IMG, 255 - IMG]))
    a = PairGenerator(imgs, P, RHO, seed=7).sample(6)
    b = PairGenerator(imgs, P, RHO, seed=7).sample(6)
    c = PairGenerator(imgs, P, RHO, seed=8).sample(6)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[1], c[1])
    pairs, off = a
    assert pairs.shape == (6, 2, P, P) and off.shape == (6, 4, 2)
    assert pairs.min() >= -1 and pairs.max() <= 1
    assert off.abs().max() <= RHO
    idx, tl, _ = PairGenerator(imgs, P, RHO, seed=1).draw(500)
    assert tl.min() >= RHO and tl[:, 0].max() <= 128 - P - RHO and tl[:, 1].max() <= 96 - P - RHO
    assert set(idx.tolist()) == {0, 1}
