"""app.features.affine: a simulated view puts every original pixel where its affine map says
(a bright dot is found there), ``to_original`` undoes the map, the view's size and mask are
right, and ASIFT's longitudes are counted as in Morel & Yu."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.features.affine import SimulatedView, simulate_view, tilt_longitudes

H, W = 120, 160
YS, XS = np.mgrid[0:H, 0:W]


def dot(x0: float, y0: float, sigma: float = 2.0) -> np.ndarray:
    """(H, W) uint8: a bright Gaussian dot centred on the (sub-pixel) point (x0, y0)."""
    return (255 * np.exp(-((XS - x0) ** 2 + (YS - y0) ** 2) / (2 * sigma**2)) + 0.5).astype(
        np.uint8
    )


def centroid(img: np.ndarray) -> np.ndarray:
    im = img.astype(np.float64)
    ys, xs = np.mgrid[0 : im.shape[0], 0 : im.shape[1]]
    return np.array([(im * xs).sum(), (im * ys).sum()]) / im.sum()


@settings(max_examples=40, deadline=None)
@given(
    st.floats(1.05, 8.0),
    st.floats(0, 180, exclude_max=True),
    st.floats(30, W - 31),
    st.floats(30, H - 31),
)
def test_a_dot_lands_where_the_map_puts_it(tilt: float, phi: float, x0: float, y0: float) -> None:
    v = simulate_view(dot(x0, y0), tilt, phi)
    expected = v.view_A_orig @ [x0, y0, 1.0]
    found = centroid(v.image)
    assert np.abs(found - expected).max() < 0.1
    # back in the original: the y error is not magnified, the x error by at most the tilt
    assert np.abs(v.to_original(found[None])[0] - [x0, y0]).max() < 0.1 * tilt


def test_the_map_is_a_rotation_then_a_squeeze_along_x() -> None:
    """``view_A_orig`` = S(1/t along x) @ R(phi) + a translation: its linear part has
    singular values 1 and about 1/t (the width is rounded) and rotates x by phi."""
    for tilt, phi in [(2.0, 0.0), (2.83, 25.4), (4.0, 90.0), (1.5, 135.0)]:
        v = simulate_view(np.zeros((H, W), np.uint8), tilt, phi)
        A = v.view_A_orig[:, :2]
        s = np.linalg.svd(A, compute_uv=False)
        assert s[0] == pytest.approx(1.0, abs=1e-9)
        assert s[1] == pytest.approx(1 / tilt, rel=0.02)
        c, si = math.cos(math.radians(phi)), math.sin(math.radians(phi))
        np.testing.assert_allclose(A[1], [si, c], atol=1e-9)  # y: the rotation's row
        np.testing.assert_allclose(A[0] / np.linalg.norm(A[0]), [c, -si], atol=1e-9)


@settings(max_examples=50, deadline=None)
@given(
    st.floats(1.05, 8.0),
    st.floats(0, 180, exclude_max=True),
    st.lists(st.tuples(st.floats(-50, 250), st.floats(-50, 200)), min_size=1, max_size=8),
)
def test_to_original_inverts_the_map(tilt: float, phi: float, pts: list) -> None:
    v = simulate_view(np.zeros((H, W), np.uint8), tilt, phi)
    p = np.array(pts, np.float64)
    in_view = p @ v.view_A_orig[:, :2].T + v.view_A_orig[:, 2]
    np.testing.assert_allclose(v.to_original(in_view), p, atol=1e-9)


@pytest.mark.parametrize(
    ("tilt", "phi", "shape"),
    [
        (2.0, 0.0, (H, 80)),  # no rotation: the width shrinks by the tilt
        (4.0, 0.0, (H, 40)),
        (2.0, 90.0, (W, 60)),  # a quarter turn: width and height swap first
        # 45 deg: the bounding box of the rotated pixel centres, ceil(278 / sqrt(2)) + 1 = 198
        (3.0, 45.0, (198, 66)),
    ],
)
def test_shapes(tilt: float, phi: float, shape: tuple[int, int]) -> None:
    v = simulate_view(np.zeros((H, W), np.uint8), tilt, phi)
    assert isinstance(v, SimulatedView)
    assert v.image.shape == shape and v.image.dtype == np.uint8
    assert v.mask is not None and v.mask.shape == shape and v.mask.dtype == np.uint8
    assert set(np.unique(v.mask)) <= {0, 255}
    assert v.view_A_orig.shape == (2, 3)
    assert (v.tilt, v.phi_deg) == (tilt, phi) and isinstance(v.tilt, float)


def test_docstring_example_and_the_smallest_width() -> None:
    assert simulate_view(np.zeros((60, 80), np.uint8), 2.0, 0.0).image.shape == (60, 40)
    assert simulate_view(np.zeros((30, 20), np.uint8), 8.0, 0.0).image.shape == (30, 8)


@pytest.mark.parametrize("tilt", [1.5, 2.0, 2.83, 4.0, 5.66])
@pytest.mark.parametrize("phi", [0.0, 11.0, 45.0, 88.0, 121.0, 165.0])
def test_mask_marks_the_original_and_keeps_out_the_black_border(tilt: float, phi: float) -> None:
    """A constant image: inside the mask (away from the view's own edges, where SIFT never
    looks) the view is that constant, not the black border of the rotated frame; mask pixels
    map into the original (to half a view pixel along x); most of the original is covered;
    far outside the original the mask is 0."""
    v = simulate_view(np.full((H, W), 200, np.uint8), tilt, phi)
    m = v.mask > 0
    vh, vw = m.shape
    yy, xx = np.mgrid[0:vh, 0:vw]
    orig = v.to_original(np.c_[xx.ravel(), yy.ravel()].astype(np.float64)).reshape(vh, vw, 2)
    margin = np.maximum.reduce(
        [
            -0.5 - orig[..., 0],
            orig[..., 0] - (W - 0.5),
            -0.5 - orig[..., 1],
            orig[..., 1] - (H - 0.5),
        ]
    )  # > 0: how far outside the original image a view pixel maps
    assert margin[m].max() <= tilt / 2 + 0.5
    assert not m[margin > tilt + 3].any()
    inner = m.copy()
    inner[:5], inner[-5:], inner[:, :5], inner[:, -5:] = False, False, False, False
    assert v.image[inner].min() >= 190
    well_inside = margin < -3
    assert (m & well_inside).sum() >= 0.75 * well_inside.sum()


@pytest.mark.parametrize(
    ("tilt", "count"), [(1.5, 4), (2.0, 5), (2.83, 8), (4.0, 10), (5.66, 15), (8.0, 20)]
)
def test_tilt_longitudes_count(tilt: float, count: int) -> None:
    out = tilt_longitudes((tilt,))
    assert len(out) == count
    phis = [p for _, p in out]
    assert phis[0] == 0.0 and phis[-1] < 180.0
    np.testing.assert_allclose(np.diff(phis), 72.0 / tilt)
    assert all(t == tilt for t, _ in out)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(1.01, 8.0), max_size=5))
def test_tilt_longitudes_of_several_tilts(tilts: list[float]) -> None:
    """ASIFT: phi = 0, 72/t, 144/t, ... below 180 for each t, in the order given."""
    out = tilt_longitudes(tuple(tilts))
    expected = [(t, k * 72.0 / t) for t in tilts for k in range(math.ceil(2.5 * t - 1e-6))]
    assert [t for t, _ in out] == [t for t, _ in expected]
    np.testing.assert_allclose([p for _, p in out], [p for _, p in expected], atol=1e-9)
    assert all(0.0 <= p < 180.0 for _, p in out)


def test_default_tilts_give_23_views() -> None:
    assert len(tilt_longitudes((2.0, 2.83, 4.0))) == 23
    assert tilt_longitudes(()) == []


@pytest.mark.parametrize("bad", [1.0, 0.99, 0.0, -2.0])
def test_tilt_longitudes_reject_tilts_of_one_or_less(bad: float) -> None:
    with pytest.raises(ValueError, match="tilts must be > 1"):
        tilt_longitudes((2.0, bad))


def test_views_of_a_photo_keep_its_content() -> None:
    """A textured image: the view resampled back through the map matches the original
    (blurred along the squeezed axis) where the mask says the view shows it."""
    rng = np.random.default_rng(0)
    img = cv2.GaussianBlur((rng.random((H, W)) * 255).astype(np.uint8), (0, 0), 4)
    img = cv2.normalize(img, None, 0, 255, cv2.NORM_MINMAX)
    v = simulate_view(img, 2.0, 30.0)
    back = cv2.warpAffine(
        v.image, v.view_A_orig, (W, H), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    )
    valid = cv2.warpAffine(
        v.mask, v.view_A_orig, (W, H), flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP
    )
    valid = cv2.erode(valid, np.ones((5, 5), np.uint8)) > 0
    assert valid.mean() > 0.6
    diff = np.abs(back.astype(float) - img.astype(float))[valid]
    assert np.median(diff) < 3 and np.percentile(diff, 99) < 15
