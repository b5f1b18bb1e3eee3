"""The /estimate geometry: network offsets -> b_H_a between the full images."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from app.geometry.four_point import solve_four_point
from app.geometry.points import image_corners, patch_corners, transform_points
from app.inference.homography import offsets_to_homography
from app.inference.preprocess import patch_to_image_matrix
from tests.inference.helpers import apply_h, true_offsets

P = 128
SIZES = [((640, 480), (640, 480)), ((640, 480), (320, 240)), ((333, 517), (1024, 77))]


def random_homography(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """A b_H_a moving the corners of a (w, h) image by up to 12 % of its size."""
    w, h = size
    src = image_corners(size)
    dst = src + rng.uniform(-0.12, 0.12, (4, 2)) * [w, h]
    return cv2.getPerspectiveTransform(src.astype(np.float32), dst.astype(np.float32))


def grid(size: tuple[int, int], n: int = 7) -> np.ndarray:
    w, h = size
    xs, ys = np.meshgrid(np.linspace(0, w - 1, n), np.linspace(0, h - 1, n))
    return np.stack([xs.ravel(), ys.ravel()], 1)


class TestOffsetsToHomography:
    def test_zero_offsets_same_size_is_identity(self) -> None:
        r = offsets_to_homography(np.zeros((4, 2)), (640, 480), (640, 480), P)
        assert r.valid.all()
        np.testing.assert_allclose(r.dst_H_src[0], np.eye(3), atol=1e-12)

    def test_zero_offsets_is_the_resize_between_the_images(self) -> None:
        """Same content at two resolutions: x_b = (x_a + 0.5) * W_b / W_a - 0.5 (cv2.resize)."""
        r = offsets_to_homography(np.zeros((4, 2)), (640, 480), (320, 120), P)
        pts = grid((640, 480))
        got = apply_h(r.dst_H_src[0], pts)
        want = (pts + 0.5) * [320 / 640, 120 / 480] - 0.5
        np.testing.assert_allclose(got, want, atol=1e-9)

    @pytest.mark.parametrize(("size_a", "size_b"), SIZES)
    def test_round_trip_true_offsets(self, size_a, size_b) -> None:
        rng = np.random.default_rng(sum(size_a) + sum(size_b))
        for _ in range(5):
            b_H_a = random_homography(rng, size_b) @ np.diag(
                [size_b[0] / size_a[0], size_b[1] / size_a[1], 1.0]
            )
            off = true_offsets(b_H_a, size_a, size_b)
            r = offsets_to_homography(off, size_a, size_b, P)
            assert r.valid.all()
            H = r.dst_H_src[0]
            assert H[2, 2] == 1.0
            pts = grid(size_a)
            err = np.linalg.norm(apply_h(H, pts) - apply_h(b_H_a, pts), axis=1).max()
            assert err < 1e-7

    def test_equals_the_preprocess_docstring_formula(self) -> None:
        """b_H_a = S_b @ inv(a_H_b) @ inv(S_a) with a_H_b = solve(corners, corners + offsets)."""
        rng = np.random.default_rng(1)
        off = rng.uniform(-32, 32, (6, 4, 2))
        size_a, size_b = (800, 600), (400, 500)
        got = offsets_to_homography(off, size_a, size_b, P)
        c = patch_corners(P).astype(np.float64)
        a_H_b = solve_four_point(np.broadcast_to(c, off.shape), c + off).dst_H_src
        S_a, S_b = patch_to_image_matrix(size_a), patch_to_image_matrix(size_b)
        want = S_b @ np.linalg.inv(a_H_b) @ np.linalg.inv(S_a)
        want /= want[:, 2:, 2:]
        for g, w in zip(got.dst_H_src, want):
            pts = grid(size_a)
            assert np.abs(apply_h(g, pts) - apply_h(w, pts)).max() < 1e-8

    def test_degenerate_prediction_flagged(self) -> None:
        c = patch_corners(P).astype(np.float64)
        off = np.full((4, 2), 50.0) - c  # all four corners on one point
        r = offsets_to_homography(off, (640, 480), (640, 480), P)
        assert not r.valid[0]
        assert r.reason[0] != 0


def test_transform_points_and_corners() -> None:
    H = np.array([[2.0, 0, 1], [0, 3, -1], [0, 0, 1]])
    pts, w = transform_points(H, image_corners((10, 5)))
    np.testing.assert_allclose(pts, [[1, -1], [19, -1], [19, 11], [1, 11]])
    np.testing.assert_allclose(w, 1.0)


@pytest.mark.parametrize(
    "name", ["rocket.jpg", "retina.jpg", "astronaut.png", "logo.png", "camera.png"]
)
def test_decoding_matches_training_loader(name: str) -> None:
    """The API's decode + preprocess equals training's loader (cv2.imread + resize_gray) on
    scikit-image's files (JPEG colour, PNG colour, RGBA and gray)."""
    from pathlib import Path

    import skimage

    from app.inference.preprocess import normalize
    from app.services.estimate import _decode_and_prepare
    from training.data.sources import load_gray_stack

    path = Path(skimage.data_dir) / name
    data = path.read_bytes()
    _, _, pair, _, _ = _decode_and_prepare(data, data, 10**8, 16, P)
    ref = normalize(load_gray_stack([path], (P, P))[0].numpy())
    np.testing.assert_array_equal(pair[0], ref)
    np.testing.assert_array_equal(pair[1], ref)
