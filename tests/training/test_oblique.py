"""training.data.oblique: the plane -> image map against a camera built here (and
cv2.projectPoints), the exactness of b_H_a on rendered views, the per-kind promises of the
pairs, determinism, bad input, and the field of view narrowed for steep tilts."""

from __future__ import annotations

import math
from functools import cache

import cv2
import numpy as np
import pytest
import skimage.data
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.transform import Rotation

from app.geometry.points import image_corners, transform_points
from training.data import oblique
from training.data.oblique import (
    KINDS,
    ObliquePair,
    ViewParams,
    make_oblique_pair,
    make_oblique_pairs,
    plane_to_image,
    render_view,
)

SIZE = (320, 240)
TEX = (640, 480)  # the 2 x 2 mosaic of 320 x 240 tiles


# ---------------------------------------------------------------- an independent pinhole camera


def camera(v: ViewParams, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(K, R_wc, t) with x ~ K (R_wc X + t) for world points X (plane z = 0), built from the
    documented meaning of the parameters: the optical axis is tilted from the plane's normal
    (+z) by ``tilt_deg`` toward ``azimuth_deg`` (a rotation about the in-plane axis
    perpendicular to that direction), then rolled about itself; the camera stands back from
    ``target`` along its axis at the distance where a frontal camera sees ``scale`` px/unit."""
    w, h = size
    f = (w / 2) / math.tan(math.radians(v.hfov_deg) / 2)
    K = np.array([[f, 0, (w - 1) / 2], [0, f, (h - 1) / 2], [0, 0, 1.0]])
    az = math.radians(v.azimuth_deg)
    hinge = np.array([-math.sin(az), math.cos(az), 0.0])
    cam_to_world = Rotation.from_rotvec(math.radians(v.tilt_deg) * hinge) * Rotation.from_rotvec(
        [0.0, 0.0, math.radians(v.roll_deg)]
    )
    R_cw = cam_to_world.as_matrix()
    centre = np.array([*v.target, 0.0]) - (f / v.scale) * R_cw[:, 2]
    R_wc = R_cw.T
    return K, R_wc, -R_wc @ centre


def tex_to_world(p: np.ndarray, tex_size: tuple[int, int] = TEX) -> np.ndarray:
    """(N, 2) texture pixels -> (N, 3) plane points (the texture's centre at the origin)."""
    tw, th = tex_size
    return np.c_[p[:, 0] - (tw - 1) / 2, p[:, 1] - (th - 1) / 2, np.zeros(len(p))]


def project(v: ViewParams, size: tuple[int, int], X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, 3) world points -> ((N, 2) pixels, (N,) depth in the camera)."""
    K, R, t = camera(v, size)
    Xc = X @ R.T + t
    x = Xc @ K.T
    return x[:, :2] / x[:, 2:], Xc[:, 2]


def jacobian(H: np.ndarray, p: np.ndarray) -> np.ndarray:
    """(2, 2) derivative of the homography's point map at ``p``."""
    q = H @ np.array([p[0], p[1], 1.0])
    x = q[:2] / q[2]
    return (H[:2, :2] - np.outer(x, H[2, :2])) / q[2]


views = st.builds(
    ViewParams,
    hfov_deg=st.floats(30, 80),
    tilt_deg=st.floats(0, 70),
    azimuth_deg=st.floats(0, 360),
    roll_deg=st.floats(-180, 180),
    scale=st.floats(0.3, 3.0),
    target=st.tuples(st.floats(-100, 100), st.floats(-100, 100)),
)


class TestPlaneToImage:
    @settings(max_examples=60, deadline=None)
    @given(views, st.sampled_from([(320, 240), (640, 480), (101, 77)]))
    def test_agrees_with_projecting_plane_points(self, v: ViewParams, size) -> None:
        H = plane_to_image(v, size, TEX)
        centre = np.array(v.target) + (np.array(TEX) - 1) / 2
        # normalised so that the point looked at has w = 1 (in front of the camera)
        assert H.shape == (3, 3) and (H @ [*centre, 1.0])[2] == pytest.approx(1.0)
        rng = np.random.default_rng(0)
        tex_pts = centre + rng.uniform(-150, 150, (50, 2)) / v.scale
        ref, depth = project(v, size, tex_to_world(tex_pts))
        got, w = transform_points(H, tex_pts)
        front = depth > 0
        assert front.sum() >= 10  # most of the points near the target are in view
        np.testing.assert_allclose(got[front], ref[front], rtol=1e-7, atol=1e-6)
        # w has one sign in front of the camera and the other behind (which sign depends on
        # the normalisation H[2, 2] = 1: see test_views_ok_accepts_views_seeing_the_plane)
        s = np.sign(w[front][0])
        assert np.all(np.sign(w[front]) == s) and np.all(np.sign(w[~front]) == -s)

    def test_agrees_with_cv2_project_points(self) -> None:
        v = ViewParams(55.0, 48.0, 123.0, -31.0, 1.4, (25.0, -12.0))
        K, R, t = camera(v, SIZE)
        tex_pts = np.random.default_rng(1).uniform([250, 150], [400, 330], (30, 2))
        ref, _ = cv2.projectPoints(tex_to_world(tex_pts), cv2.Rodrigues(R)[0], t, K, None)
        got, _ = transform_points(plane_to_image(v, SIZE, TEX), tex_pts)
        np.testing.assert_allclose(got, ref.reshape(-1, 2), atol=1e-6)

    @settings(max_examples=40, deadline=None)
    @given(views)
    def test_target_at_principal_point_with_the_documented_zoom_and_foreshortening(
        self, v: ViewParams
    ) -> None:
        """The target lands on the image centre; there the plane is seen at ``scale`` px/unit
        across the tilt and ``scale cos(tilt)`` along it (the singular values of the map)."""
        H = plane_to_image(v, SIZE, TEX)
        target = np.array(v.target) + (np.array(TEX) - 1) / 2
        q, _ = transform_points(H, target[None])
        np.testing.assert_allclose(q[0], [(SIZE[0] - 1) / 2, (SIZE[1] - 1) / 2], atol=1e-7)
        s = np.linalg.svd(jacobian(H, target), compute_uv=False)
        cos_t = math.cos(math.radians(v.tilt_deg))
        np.testing.assert_allclose(s, [v.scale, v.scale * cos_t], rtol=1e-7)

    @settings(max_examples=30, deadline=None)
    @given(views, st.floats(-180, 180))
    def test_roll_rotates_the_image_about_its_centre(self, v: ViewParams, dr: float) -> None:
        """Rolling the camera by ``dr`` turns the image by ``-dr`` about the principal point."""
        H0 = plane_to_image(v, SIZE, TEX)
        rolled = ViewParams(
            v.hfov_deg, v.tilt_deg, v.azimuth_deg, v.roll_deg + dr, v.scale, v.target
        )
        H1 = plane_to_image(rolled, SIZE, TEX)
        M = cv2.getRotationMatrix2D(((SIZE[0] - 1) / 2, (SIZE[1] - 1) / 2), dr, 1.0)
        expected = np.vstack([M, [0, 0, 1]]) @ H0  # cv2's positive angle: counter-clockwise
        np.testing.assert_allclose(H1 / H1[2, 2], expected / expected[2, 2], rtol=1e-8, atol=1e-8)

    def test_frontal_camera_is_a_similarity(self) -> None:
        v = ViewParams(60.0, 0.0, 0.0, 0.0, 2.0, (10.0, -5.0))
        H = plane_to_image(v, SIZE, TEX)
        c = (np.array(TEX) - 1) / 2 + [10, -5]
        cx, cy = (SIZE[0] - 1) / 2, (SIZE[1] - 1) / 2
        expected = np.array([[2.0, 0, cx - 2 * c[0]], [0, 2.0, cy - 2 * c[1]], [0, 0, 1]])
        np.testing.assert_allclose(H, expected, atol=1e-9)


# ------------------------------------------------------------------------------ render_view


@cache
def blobs(seed: int = 0, sigma: float = 2.5, size: tuple[int, int] = TEX) -> np.ndarray:
    """A high-texture (H, W) uint8 image of random smooth blobs."""
    rng = np.random.default_rng(seed)
    x = cv2.GaussianBlur(rng.random(size[::-1]).astype(np.float32), (0, 0), sigma)
    out = cv2.normalize(x, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    out.setflags(write=False)
    return out


def test_render_view_identity_and_half_size_follow_the_pixel_centre_convention() -> None:
    tex = blobs(1)
    same = render_view(tex, np.eye(3), TEX)
    assert same.dtype == np.float32 and same.shape == tex.shape
    np.testing.assert_allclose(same * 255, tex, atol=1e-3)
    # a third of the size, pixel centres kept: supersampled by 3 then area-averaged is
    # cv2's INTER_AREA (a 3 x 3 box); without supersampling it samples one texel in nine
    tex = tex[:, :600]
    third = np.array([[1 / 3, 0, -1 / 3], [0, 1 / 3, -1 / 3], [0, 0, 1]])
    small = render_view(tex, third, (200, 160))
    ref = cv2.resize(tex.astype(np.float32) / 255, (200, 160), interpolation=cv2.INTER_AREA)
    np.testing.assert_allclose(small, ref, atol=1e-4)
    plain = render_view(tex, third, (200, 160), max_supersample=1)
    np.testing.assert_allclose(plain * 255, tex[1::3, 1::3], atol=1e-3)
    assert np.abs(plain - ref).max() > 0.02


def warp_ncc(a: np.ndarray, b: np.ndarray, b_H_a: np.ndarray) -> tuple[float, float]:
    """(NCC of A warped into B against B over the overlap, overlap fraction of B)."""
    h, w = b.shape
    warped = cv2.warpPerspective(a, b_H_a, (w, h), flags=cv2.INTER_LINEAR)
    valid = cv2.warpPerspective(np.ones_like(a, np.uint8), b_H_a, (w, h), flags=cv2.INTER_NEAREST)
    valid = cv2.erode(valid, np.ones((5, 5), np.uint8)) > 0
    x, y = warped[valid].astype(np.float64), b[valid].astype(np.float64)
    x, y = x - x.mean(), y - y.mean()
    return float((x * y).sum() / np.sqrt((x * x).sum() * (y * y).sum())), float(valid.mean())


VIEW_A = ViewParams(60.0, 5.0, 20.0, 3.0, 1.1, (0.0, 0.0))
VIEW_B = ViewParams(50.0, 55.0, 200.0, 25.0, 1.3, (20.0, 10.0))


def test_b_H_a_of_two_rendered_views_is_exact() -> None:
    """Two views of a blob texture, no degradation: A warped by b_H_a is B on the overlap;
    a b_H_a off by one pixel is clearly worse (the check can fail)."""
    tex = blobs(2)
    H_a, H_b = plane_to_image(VIEW_A, SIZE, TEX), plane_to_image(VIEW_B, SIZE, TEX)
    a, b = render_view(tex, H_a, SIZE), render_view(tex, H_b, SIZE)
    b_H_a = H_b @ np.linalg.inv(H_a)
    ncc, overlap = warp_ncc(a, b, b_H_a)
    assert overlap > 0.3
    assert ncc > 0.98
    shifted = np.array([[1.0, 0, 1.0], [0, 1, 0], [0, 0, 1]]) @ b_H_a
    assert warp_ncc(a, b, shifted)[0] < ncc - 0.05


def test_points_map_consistently_through_the_texture() -> None:
    """Small dots painted at (sub-pixel) texture points: each is found, in both rendered
    views, where plane_to_image puts it, and b_H_a carries A's dot onto B's."""
    H_a, H_b = plane_to_image(VIEW_A, SIZE, TEX), plane_to_image(VIEW_B, SIZE, TEX)
    b_H_a = H_b @ np.linalg.inv(H_a)
    xs, ys = np.meshgrid(np.linspace(30, 290, 7), np.linspace(30, 210, 5))
    grid_a = np.c_[xs.ravel(), ys.ravel()]
    in_b, _ = transform_points(b_H_a, grid_a)
    keep = np.all((in_b > 25) & (in_b < np.array(SIZE) - 26), axis=1)
    assert keep.sum() >= 8
    dots_tex, _ = transform_points(np.linalg.inv(H_a), grid_a[keep])
    ty, tx = np.mgrid[0 : TEX[1], 0 : TEX[0]].astype(np.float64)
    tex = np.zeros(TEX[::-1])
    for u, v in dots_tex:
        tex += 255 * np.exp(-((tx - u) ** 2 + (ty - v) ** 2) / (2 * 2.0**2))
    a, b = render_view(tex, H_a, SIZE), render_view(tex, H_b, SIZE)

    def centroid(img: np.ndarray, guess: np.ndarray, r: int = 8) -> np.ndarray:
        x0, y0 = np.round(guess).astype(int)
        win = img[y0 - r : y0 + r + 1, x0 - r : x0 + r + 1].astype(np.float64)
        yy, xx = np.mgrid[y0 - r : y0 + r + 1, x0 - r : x0 + r + 1]
        return np.array([(win * xx).sum(), (win * yy).sum()]) / win.sum()

    pred_a, _ = transform_points(H_a, dots_tex)
    pred_b, _ = transform_points(H_b, dots_tex)
    found_a = np.array([centroid(a, p) for p in pred_a])
    found_b = np.array([centroid(b, p) for p in pred_b])
    assert np.abs(found_a - pred_a).max() < 0.15
    assert np.abs(found_b - pred_b).max() < 0.25  # B is tilted 55 deg: a slightly skewed dot
    carried, _ = transform_points(b_H_a, found_a)
    assert np.linalg.norm(carried - found_b, axis=1).max() < 0.35


# ------------------------------------------------------------------- make_oblique_pair(s)


@cache
def photos() -> tuple[tuple[str, np.ndarray], ...]:
    out = []
    for name in ("astronaut", "camera", "coffee", "chelsea", "brick", "grass", "gravel"):
        im = getattr(skimage.data, name)()
        if im.ndim == 3:
            im = cv2.cvtColor(im[..., :3], cv2.COLOR_RGB2GRAY)
        im.setflags(write=False)
        out.append((name, im))
    return tuple(out)


def four() -> list[np.ndarray]:
    return [p for _, p in photos()[:4]]


@cache
def pairs_of(kind: str, n: int = 6) -> tuple[ObliquePair, ...]:
    return tuple(make_oblique_pairs(photos(), n, seed=11, kinds=(kind,), size=SIZE))


def axis(v: ViewParams) -> np.ndarray:
    _, R_wc, _ = camera(v, SIZE)
    return R_wc[2]  # the optical axis in world coordinates


# (tilt A, tilt B, zoom, |roll B| at most) per kind, as the module docstring promises
RANGES = {
    "viewpoint": ((0, 10), (20, 70), (0.8, 1.5), 20),
    "zoom": ((0, 10), (0, 15), (0.25, 4.0), 180),
    "photometric": ((0, 10), (0, 15), (0.8, 1.25), 10),
    "mixed": ((0, 20), (0, 70), (0.25, 4.0), 180),
}


@pytest.mark.parametrize("kind", KINDS)
def test_pairs_keep_the_promises_of_their_kind(kind: str) -> None:
    (ta_lo, ta_hi), (tb_lo, tb_hi), (z_lo, z_hi), roll_b = RANGES[kind]
    tilts_b = []
    for p in pairs_of(kind):
        va, vb = p.view_a, p.view_b
        assert p.kind == kind
        assert p.a.shape == p.b.shape == SIZE[::-1] and p.a.dtype == p.b.dtype == np.uint8
        assert ta_lo <= va.tilt_deg <= ta_hi and tb_lo <= vb.tilt_deg <= tb_hi
        assert abs(vb.roll_deg) <= roll_b
        assert z_lo <= p.zoom <= z_hi
        assert p.zoom == pytest.approx(vb.scale / va.scale)
        # the wider view sees the mosaic at 1-1.4 texture pixels per image pixel
        assert 1.0 <= min(va.scale, vb.scale) <= 1.4
        assert 0 < va.hfov_deg <= 65 and 0 < vb.hfov_deg <= 65
        cos = float(axis(va) @ axis(vb))
        assert p.angle_deg == pytest.approx(math.degrees(math.acos(min(1.0, cos))), abs=1e-6)
        assert abs(vb.tilt_deg - va.tilt_deg) - 1e-9 <= p.angle_deg
        assert p.angle_deg <= va.tilt_deg + vb.tilt_deg + 1e-9
        tilts_b.append(vb.tilt_deg)
    if kind == "viewpoint":  # the draws do use the range, not one corner of it
        assert max(tilts_b) - min(tilts_b) > 10


@pytest.mark.parametrize("kind", KINDS)
def test_b_H_a_is_the_composition_of_the_two_cameras_and_the_views_are_sound(kind: str) -> None:
    corners = image_corners(SIZE)
    xs, ys = np.meshgrid(np.linspace(0, SIZE[0] - 1, 64), np.linspace(0, SIZE[1] - 1, 48))
    grid = np.c_[xs.ravel(), ys.ravel()]
    for p in pairs_of(kind):
        H_a, H_b = plane_to_image(p.view_a, SIZE, TEX), plane_to_image(p.view_b, SIZE, TEX)
        expected = H_b @ np.linalg.inv(H_a)
        np.testing.assert_allclose(p.b_H_a, expected / expected[2, 2], rtol=1e-9, atol=1e-9)
        assert p.b_H_a[2, 2] == 1.0 and p.b_H_a.dtype == np.float64
        # A's corners see the plane in front of both cameras (a real 3-D check)
        tex_pts, w = transform_points(np.linalg.inv(H_a), corners)
        assert np.all(w > 0)
        X = tex_to_world(tex_pts)
        assert np.all(project(p.view_a, SIZE, X)[1] > 0)
        assert np.all(project(p.view_b, SIZE, X)[1] > 0)
        assert np.all(transform_points(p.b_H_a, corners)[1] > 0)
        # no corner ray of either camera grazes the plane (<= 84 deg from its normal)
        for v in (p.view_a, p.view_b):
            K, R_wc, _ = camera(v, SIZE)
            rays = np.c_[corners, np.ones(4)] @ np.linalg.inv(K).T @ R_wc
            cos = rays[:, 2] / np.linalg.norm(rays, axis=1)
            assert np.all(np.degrees(np.arccos(cos)) <= 84.0 + 1e-6)
        # overlap: at least half of one image lies in the other (grid here is finer)
        fractions = []
        for H in (p.b_H_a, np.linalg.inv(p.b_H_a)):
            q, wq = transform_points(H, grid)
            inside = (wq > 0) & np.all((q >= 0) & (q <= np.array(SIZE) - 1), axis=1)
            fractions.append(inside.mean())
        assert max(fractions) >= 0.47 and min(fractions) >= 0.015


@pytest.mark.parametrize("kind", ["viewpoint", "mixed"])
def test_degraded_images_still_line_up_under_b_H_a(kind: str) -> None:
    """The camera degradations change the pixels, not the geometry: the NCC of A warped by
    b_H_a against B peaks (parabola through shifts of -1, 0, 1 px in B) within 0.3 px of
    b_H_a in x and in y, to 0.3 px of the coarser view (B's pixels are 1/zoom of A's)."""
    for p in pairs_of(kind):

        def ncc(dx: float, dy: float, p: ObliquePair = p) -> float:
            shift = np.array([[1.0, 0, dx], [0, 1, dy], [0, 0, 1]])
            return warp_ncc(p.a, p.b, shift @ p.b_H_a)[0]

        c = ncc(0, 0)
        assert c > 0.8, p.degradations
        for lo, hi in ((ncc(-1, 0), ncc(1, 0)), (ncc(0, -1), ncc(0, 1))):
            assert c > max(lo, hi)
            peak = 0.5 * (lo - hi) / (lo - 2 * c + hi)
            assert abs(peak) < 0.3 * max(1.0, p.zoom), (p.degradations, peak)


def test_deterministic_for_a_seed() -> None:
    p1 = make_oblique_pairs(photos(), 4, seed=3, size=SIZE)
    p2 = make_oblique_pairs(photos(), 4, seed=3, size=SIZE)
    p3 = make_oblique_pairs(photos(), 4, seed=4, size=SIZE)
    for x, y in zip(p1, p2, strict=True):
        np.testing.assert_array_equal(x.a, y.a)
        np.testing.assert_array_equal(x.b, y.b)
        np.testing.assert_array_equal(x.b_H_a, y.b_H_a)
        assert (x.view_a, x.view_b, x.photos, x.degradations) == (
            y.view_a,
            y.view_b,
            y.photos,
            y.degradations,
        )
    assert not np.array_equal(p1[0].b_H_a, p3[0].b_H_a)
    r1 = make_oblique_pair(four(), "mixed", np.random.default_rng(5), SIZE)
    r2 = make_oblique_pair(four(), "mixed", np.random.default_rng(5), SIZE)
    np.testing.assert_array_equal(r1.a, r2.a)
    assert r1.view_b == r2.view_b


def test_pairs_take_kinds_in_turn_and_name_their_photos() -> None:
    ps = make_oblique_pairs(photos(), 5, seed=0, kinds=("zoom", "viewpoint"), size=SIZE)
    assert [p.kind for p in ps] == ["zoom", "viewpoint", "zoom", "viewpoint", "zoom"]
    names = {n for n, _ in photos()}
    for p in ps:
        assert len(p.photos) == 4 and len(set(p.photos)) == 4 and set(p.photos) <= names
    assert [p.kind for p in make_oblique_pairs(photos(), 8, seed=1, size=SIZE)] == [*KINDS] * 2


def test_occluder_goes_into_one_view_only_and_only_when_given() -> None:
    occluder = photos()[5][1]
    seen = 0
    for seed in range(12):
        p = make_oblique_pair(four(), "zoom", np.random.default_rng(seed), SIZE, occluder)
        has = ["occluder_fraction" in p.degradations[k] for k in ("a", "b")]
        assert sum(has) <= 1
        if any(has):
            seen += 1
            fraction = p.degradations["ab"[has.index(True)]]["occluder_fraction"]
            assert 0.15**2 * 0.9 <= fraction <= 0.35**2 * 1.1
        q = make_oblique_pair(four(), "zoom", np.random.default_rng(seed), SIZE)
        assert not any("occluder_fraction" in d for d in q.degradations.values())
    assert 1 <= seen <= 9  # about 30 % of the pairs


def test_degradations_are_reported_per_view() -> None:
    p = make_oblique_pair(four(), "photometric", np.random.default_rng(0), SIZE)
    for view in ("a", "b"):
        d = p.degradations[view]
        assert {"gain", "gamma", "blur_sigma", "read_noise", "jpeg_quality"} <= set(d)
        assert 10 <= d["jpeg_quality"] <= 95 and d["gain"] > 0


class TestBadInput:
    def test_unknown_kind(self) -> None:
        with pytest.raises(ValueError, match="kind"):
            make_oblique_pair(four(), "rotation", np.random.default_rng(0), SIZE)
        with pytest.raises(ValueError, match="kind"):
            make_oblique_pairs(photos(), 1, kinds=("tilt",), size=SIZE)

    @pytest.mark.parametrize("n", [0, 3, 5])
    def test_mosaic_needs_four_photos(self, n: int) -> None:
        ims = [photos()[i % 7][1] for i in range(n)]
        with pytest.raises(ValueError, match="4 photos"):
            make_oblique_pair(ims, "zoom", np.random.default_rng(0), SIZE)

    def test_pairs_need_five_photos(self) -> None:
        with pytest.raises(ValueError, match="5 photos"):
            make_oblique_pairs(photos()[:4], 1, size=SIZE)

    def test_impossible_overlap_raises_instead_of_looping(self) -> None:
        with pytest.raises(RuntimeError, match="overlap"):
            make_oblique_pair(four(), "zoom", np.random.default_rng(0), SIZE, min_overlap=1.01)


# ------------------------------------------------------------------------------------- _fov


def half_diagonal_deg(hfov_deg: float, size: tuple[int, int]) -> float:
    w, h = size
    return math.degrees(math.atan(math.tan(math.radians(hfov_deg) / 2) * math.hypot(w, h) / w))


@settings(max_examples=150, deadline=None)
@given(
    st.floats(20, 100),
    st.floats(0, 80),
    st.sampled_from([(640, 480), (320, 240), (480, 640), (500, 500)]),
)
def test_fov_narrows_only_as_much_as_the_tilt_needs(hfov: float, tilt: float, size) -> None:
    out = oblique._fov(hfov, tilt, size)
    assert 0 < out <= hfov
    if half_diagonal_deg(hfov, size) <= 82.0 - tilt:
        assert out == hfov  # no narrowing needed
    else:  # narrowed exactly to the limit: the corner ray meets the plane at 82 deg
        assert half_diagonal_deg(out, size) == pytest.approx(82.0 - tilt, abs=1e-9)
    assert oblique._fov(hfov, tilt + 5, size) <= out  # steeper: never wider


@settings(max_examples=60, deadline=None)
@given(
    st.floats(30, 70),
    st.floats(0, 75),
    st.floats(0, 360),
    st.floats(-180, 180),
    st.sampled_from([(640, 480), (320, 240)]),
)
def test_cameras_with_the_narrowed_fov_do_not_graze_the_plane(
    hfov: float, tilt: float, azimuth: float, roll: float, size
) -> None:
    v = ViewParams(oblique._fov(hfov, tilt, size), tilt, azimuth, roll, 1.0, (0.0, 0.0))
    K, R_wc, _ = camera(v, size)
    rays = np.c_[image_corners(size), np.ones(4)] @ np.linalg.inv(K).T @ R_wc
    angles = np.degrees(np.arccos(rays[:, 2] / np.linalg.norm(rays, axis=1)))
    assert angles.max() <= 82.0 + 1e-6
    assert oblique._grazing_limit(v, size)


def test_fov_example_values() -> None:
    # 640 x 480: the half diagonal is 5/4 of the half width (tan); 65 deg -> 38.0 deg corner
    assert oblique._fov(65.0, 10.0, (640, 480)) == 65.0
    narrowed = oblique._fov(65.0, 60.0, (640, 480))
    expected = 2 * math.degrees(math.atan(math.tan(math.radians(22.0)) * 0.8))
    assert narrowed == pytest.approx(expected)
    assert narrowed < 40.0


# ------------------------------------------------------------------- motion blur (centring)


def _spy_kernels(monkeypatch: pytest.MonkeyPatch, kind: str, seeds: range) -> list[np.ndarray]:
    """The motion-blur kernels that _degrade applies (caught at cv2.filter2D)."""
    caught: list[np.ndarray] = []
    real = cv2.filter2D

    def spy(src, ddepth, kernel, *args, **kwargs):
        caught.append(np.array(kernel))
        return real(src, ddepth, kernel, *args, **kwargs)

    monkeypatch.setattr(cv2, "filter2D", spy)
    img = np.full((24, 24), 0.5, np.float32)
    for s in seeds:
        oblique._degrade(img, kind, np.random.default_rng(s), None)
    return caught


def _shift(kernel: np.ndarray) -> np.ndarray:
    """How far cv2.filter2D (default anchor: the kernel's centre cell) moves the content."""
    kh, kw = kernel.shape
    ys, xs = np.mgrid[0:kh, 0:kw]
    c = np.array([(kernel * xs).sum(), (kernel * ys).sum()]) / kernel.sum()
    return c - [kw // 2, kh // 2]


def test_odd_motion_blur_kernels_keep_the_image_in_place(monkeypatch) -> None:
    kernels = _spy_kernels(monkeypatch, "photometric", range(60))
    odd = [k for k in kernels if k.shape[0] % 2]
    assert len(kernels) >= 5 and len(odd) == len(kernels)  # drawn, odd lengths only
    for k in odd:
        assert np.abs(_shift(k)).max() < 1e-3


# --------------------------------------------------- the sign of w and the views' validation


def test_views_ok_accepts_views_seeing_the_plane() -> None:
    va = ViewParams(50.0, 0.0, 0.0, 0.0, 1.2, (0.0, 0.0))
    vb = ViewParams(35.0, 55.0, 37.0, 0.0, 1.8, (0.0, 0.0))  # tilted away from texel (0, 0)
    corners = image_corners(SIZE)
    # the views are sound, checked with the camera built here: every corner ray of each
    # camera meets the plane in front of it, well below grazing, and they look at one point
    for v in (va, vb):
        K, R_wc, _ = camera(v, SIZE)
        rays = np.c_[corners, np.ones(4)] @ np.linalg.inv(K).T @ R_wc
        assert np.all(rays[:, 2] / np.linalg.norm(rays, axis=1) > math.cos(math.radians(80)))
        assert oblique._grazing_limit(v, SIZE)
    # texel (0, 0) is behind camera B (regression: normalising by H[2, 2], its depth, flipped
    # the sign of every w and the view was rejected as not seeing the plane)
    assert project(vb, SIZE, tex_to_world(np.zeros((1, 2))))[1][0] < 0
    H_a, H_b = plane_to_image(va, SIZE, TEX), plane_to_image(vb, SIZE, TEX)
    ok, overlap = oblique._views_ok(H_a, H_b, SIZE, 0.5)
    assert ok and overlap >= 0.5
