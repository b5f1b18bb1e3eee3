"""app.features.matching, the evidence kept with an estimate: detection (contrast
normalisation, original pixels at a working resolution, affine-simulated views), the per-view
ratio test, how many matches a homography explains (``support``), matching again around a
guess (``guided_matches``), the robust fit, ASIFT on a strong tilt, and the new options."""

from __future__ import annotations

import math
from functools import cache
from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation

from app.features.affine import tilt_longitudes
from app.features.matching import (
    Correspondences,
    FeatureOptions,
    Keypoints,
    Support,
    detect,
    estimate_features,
    fit_homography,
    guided_matches,
    match_keypoints,
    support,
)
from app.geometry.points import transform_points
from tests.alignment.helpers import corner_error, random_homography

SIZE = (320, 240)


@cache
def photo(name: str = "astronaut.png", size: tuple[int, int] = SIZE) -> np.ndarray:
    """A scikit-image photo as (H, W) uint8 gray at ``size`` = (w, h)."""
    img = cv2.imread(str(Path(skimage.data_dir) / name), cv2.IMREAD_GRAYSCALE)
    out = cv2.resize(img, size, interpolation=cv2.INTER_AREA)
    out.setflags(write=False)
    return out


def keypoints(points, descriptors, view=None, norm=cv2.NORM_L2, work_scale=1.0) -> Keypoints:
    p = np.asarray(points, np.float64).reshape(-1, 2)
    v = np.zeros(len(p), np.int32) if view is None else np.asarray(view, np.int32)
    return Keypoints(p, np.asarray(descriptors), v, norm, work_scale)


def as_set(c: Correspondences) -> set[tuple[float, float, float, float]]:
    return {(*s, *d) for s, d in zip(c.src.tolist(), c.dst.tolist(), strict=True)}


def as_sorted(c: Correspondences) -> list[tuple[float, float, float, float]]:
    """Every match, duplicates kept (SIFT gives one point several orientations)."""
    return sorted((*s, *d) for s, d in zip(c.src.tolist(), c.dst.tolist(), strict=True))


# ------------------------------------------------------------------------------------ detect


def test_normalize_finds_keypoints_in_a_dark_flat_photo() -> None:
    dark = (photo().astype(np.float32) * 30 / 255 + 20).astype(np.uint8)  # levels 20..50
    with_norm = detect(dark, FeatureOptions(normalize=True))
    without = detect(dark, FeatureOptions(normalize=False))
    assert len(with_norm) >= 200
    assert len(with_norm) >= 10 * max(1, len(without))
    # a photo that already spans the range is left alone
    full = photo()
    np.testing.assert_array_equal(
        detect(full, FeatureOptions(normalize=True)).points,
        detect(full, FeatureOptions(normalize=False)).points,
    )


def test_keypoints_come_back_in_original_pixels_when_the_image_is_shrunk() -> None:
    """A 640 x 480 pair, B = A shifted by (37, -23): detected at a third of the resolution,
    the matches still differ by the shift in original pixels (in working pixels it would be
    a third of it), and the points sit where full-resolution SIFT finds its own."""
    big = photo(size=(640, 480))
    shift = np.array([37.0, -23.0])
    M = np.float32([[1, 0, shift[0]], [0, 1, shift[1]]])
    b = cv2.warpAffine(big, M, (640, 480), borderMode=cv2.BORDER_REFLECT_101)
    opts = FeatureOptions(max_pixels=40_000)
    ka, kb = detect(big, opts), detect(b, opts)
    assert ka.work_scale == pytest.approx(math.sqrt(40_000 / (640 * 480)), rel=0.02)
    assert ka.points[:, 0].max() > 600 and ka.points[:, 1].max() > 440  # spans the original
    c = match_keypoints(ka, kb, 0.75)
    assert len(c) >= 100
    d = c.dst - c.src
    np.testing.assert_allclose(np.median(d, axis=0), shift, atol=0.3)
    assert np.mean(np.linalg.norm(d - shift, axis=1) < 2.0) > 0.9
    full = detect(big, FeatureOptions())
    dist, _ = cKDTree(full.points).query(ka.points)
    assert np.median(dist) < 1.5


def test_detect_on_simulated_views() -> None:
    """ASIFT: view 0 is the image, views 1..23 the default tilts; every point is in A's
    pixels (inside the image), and the views add keypoints."""
    a = photo()
    opts = FeatureOptions(detector="asift")
    plain = detect(a, opts)
    sim = detect(a, opts, simulate=True)
    assert set(np.unique(plain.view)) == {0}
    n_views = 1 + len(tilt_longitudes(FeatureOptions().tilts))
    assert set(np.unique(sim.view)) <= set(range(n_views))
    assert len(np.unique(sim.view)) >= n_views - 2
    assert len(sim) > 3 * len(plain)
    assert sim.descriptors.shape == (len(sim), 128) and sim.descriptors.dtype == np.float32
    w, h = SIZE
    assert np.all((sim.points >= -1) & (sim.points <= [w, h]))
    # view 0 of the simulation is the plain detection
    np.testing.assert_array_equal(sim.points[sim.view == 0], plain.points)


def test_simulated_views_use_their_own_working_size() -> None:
    big = photo(size=(640, 480))
    opts = FeatureOptions(detector="asift", asift_max_pixels=40_000, asift_features=300)
    sim = detect(big, opts, simulate=True)
    assert sim.work_scale == pytest.approx(math.sqrt(40_000 / (640 * 480)), rel=0.02)
    assert detect(big, opts).work_scale == 1.0  # max_pixels (1 M) still rules plain detection
    assert np.bincount(sim.view).max() <= 300  # asift_features per view
    assert sim.points[:, 0].max() > 560


@pytest.mark.parametrize(
    ("detector", "width", "dtype"), [("sift", 128, np.float32), ("orb", 32, np.uint8)]
)
def test_detect_shapes_and_the_empty_case(detector: str, width: int, dtype) -> None:
    opts = FeatureOptions(detector=detector)
    k = detect(photo(), opts)
    assert len(k) > 100 and k.descriptors.shape == (len(k), width) and k.descriptors.dtype == dtype
    assert k.norm == (cv2.NORM_HAMMING if detector == "orb" else cv2.NORM_L2)
    empty = detect(np.full((60, 80), 90, np.uint8), opts)
    assert len(empty) == 0 and empty.points.shape == (0, 2)
    assert empty.descriptors.shape == (0, width) and empty.descriptors.dtype == dtype


def test_float_images_detect_like_uint8() -> None:
    a = photo()
    ku8 = detect(a, FeatureOptions())
    kf = detect(a.astype(np.float32) / 255, FeatureOptions())
    np.testing.assert_allclose(kf.points, ku8.points, atol=1e-3)


# ---------------------------------------------------------------------------- match_keypoints


def test_match_keypoints_is_lowes_ratio_test_of_opencv() -> None:
    a = photo()
    b = cv2.warpPerspective(
        a, random_homography(SIZE, 0.1, 5), SIZE, borderMode=cv2.BORDER_REFLECT_101
    )
    for detector in ("sift", "orb"):
        opts = FeatureOptions(detector=detector)
        ka, kb = detect(a, opts), detect(b, opts)
        got = match_keypoints(ka, kb, 0.8)
        ref = [
            (*ka.points[m[0].queryIdx].tolist(), *kb.points[m[0].trainIdx].tolist())
            for m in cv2.BFMatcher(ka.norm).knnMatch(ka.descriptors, kb.descriptors, k=2)
            if len(m) == 2 and m[0].distance < 0.8 * m[1].distance
        ]
        assert len(ref) > 50
        assert as_sorted(got) == sorted(ref)


def test_match_keypoints_per_view_with_copies_and_the_ratio() -> None:
    rng = np.random.default_rng(0)
    db = rng.normal(0, 1, (5, 128)).astype(np.float32)
    pb = rng.uniform(0, 300, (5, 2))
    da = np.stack(
        [
            db[0] + 0.01,  # a clear match of B's 0
            (db[1] + db[2]) / 2,  # halfway between two: ambiguous
            db[3] + 0.02,  # the same point seen in two simulated views: both match B's 3
            db[3] - 0.02,
            db[4] + 0.3 * (db[0] - db[4]),  # nearer B's 4 than B's 0, ratio about 0.43
        ]
    ).astype(np.float32)
    pa = rng.uniform(0, 300, (5, 2))
    ka = keypoints(pa, da, view=[0, 0, 1, 2, 0])
    kb = keypoints(pb, db, work_scale=0.5)
    c = match_keypoints(ka, kb, 0.75)
    assert as_set(c) == {(*pa[i], *pb[j]) for i, j in [(0, 0), (2, 3), (3, 3), (4, 4)]}
    assert c.px == 2.0  # original pixels of B per working pixel
    d = np.linalg.norm(da[4] - db, axis=1)
    r = np.sort(d)[0] / np.sort(d)[1]
    assert len(match_keypoints(ka, kb, r - 0.01)) == 3  # the ratio is a strict bound
    assert len(match_keypoints(ka, kb, r + 0.01)) == 4


def test_match_keypoints_without_enough_points() -> None:
    rng = np.random.default_rng(1)
    d = rng.normal(0, 1, (3, 128)).astype(np.float32)
    one = keypoints([[1.0, 2.0]], d[:1], work_scale=0.25)
    three = keypoints(rng.uniform(0, 9, (3, 2)), d)
    for c in (match_keypoints(three, one, 0.8), match_keypoints(keypoints([], d[:0]), three, 0.8)):
        assert len(c) == 0 and c.src.shape == c.dst.shape == (0, 2)
    assert match_keypoints(three, one, 0.8).px == 4.0


# ------------------------------------------------------------------------------------ support


H_TRUE = np.array([[1.05, 0.08, -6.0], [-0.06, 1.02, 4.0], [1e-4, 5e-5, 1.0]])


def corr_with_errors(errors, px: float = 1.0, seed: int = 0):
    """Matches whose transfer errors under H_TRUE are exactly ``errors`` (original px), in
    random directions."""
    rng = np.random.default_rng(seed)
    src = rng.uniform(10, 300, (len(errors), 2))
    pred, _ = transform_points(H_TRUE, src)
    ang = rng.uniform(0, 2 * np.pi, len(errors))
    dst = pred + np.asarray(errors)[:, None] * np.c_[np.cos(ang), np.sin(ang)]
    return Correspondences(src, dst, px)


def test_support_counts_exactly_the_matches_within_the_threshold() -> None:
    errors = np.array([0.0, 0.5, 1.0, 2.999, 3.001, 10.0, 50.0, 0.2])
    s = support(H_TRUE, corr_with_errors(errors), 3.0, SIZE, SIZE)
    assert isinstance(s, Support)
    np.testing.assert_array_equal(s.mask, errors <= 3.0)
    assert s.inliers == 5 and s.ratio == pytest.approx(5 / 8)
    assert s.rms_px == pytest.approx(math.sqrt(np.mean(errors[errors <= 3] ** 2)), rel=1e-9)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.floats(0, 20), min_size=1, max_size=30),
    st.floats(0.5, 8),
    st.sampled_from([0.5, 1.0, 2.0, 3.2]),
)
def test_support_threshold_is_in_working_pixels(errors: list[float], thr: float, px: float):
    """With ``px`` original pixels per working pixel, a match is in when its error (original
    pixels) is at most ``thr * px``; the rms is reported in working pixels."""
    e = np.array(errors)
    s = support(H_TRUE, corr_with_errors(e, px), thr, SIZE, SIZE)
    expected = e <= thr * px
    clear = np.abs(e - thr * px) > 1e-6
    np.testing.assert_array_equal(s.mask[clear], expected[clear])
    assert s.inliers == int(s.mask.sum()) and s.ratio == pytest.approx(s.inliers / len(e))
    if s.inliers:
        assert s.rms_px == pytest.approx(math.sqrt(np.mean((e[s.mask] / px) ** 2)), rel=1e-6)
    else:
        assert math.isnan(s.rms_px)


def test_support_spread_is_the_smaller_hull_fraction_of_the_inliers() -> None:
    """Inliers on a 100 x 80 rectangle (and inside it) in A; B twice as large; outliers far
    out do not count."""
    rect = np.array([[50, 40], [150, 40], [150, 120], [50, 120], [100, 80], [70, 60]], float)
    scale2 = np.diag([2.0, 2.0, 1.0])
    outliers = np.array([[300.0, 230.0], [5.0, 200.0]])
    src = np.r_[rect, outliers]
    dst = np.r_[rect * 2, outliers * 2 + 40]
    c = Correspondences(src, dst)
    s = support(scale2, c, 2.0, SIZE, (640, 480))
    assert s.inliers == 6
    assert s.spread == pytest.approx(8000 / (320 * 240))  # A: 8000 of 76800, B: the same
    s_small_b = support(scale2, c, 2.0, SIZE, SIZE)  # B's hull, 32000, over a 320 x 240 B
    assert s_small_b.spread == pytest.approx(8000 / (320 * 240))  # min keeps A's
    s_big_a = support(scale2, c, 2.0, (1280, 960), SIZE)
    assert s_big_a.spread == pytest.approx(8000 / (1280 * 960))
    # fewer than three inliers have no area
    assert support(scale2, Correspondences(src[:2], dst[:2]), 2.0, SIZE, SIZE).spread == 0.0


def test_support_excludes_points_behind_the_camera() -> None:
    """A homography whose w is negative for x > 100: matches there are never inliers, even
    where the mapped point is exactly the match."""
    H = np.array([[1.0, 0, 0], [0, 1.0, 0], [-0.01, 0, 1.0]])
    src = np.array([[10.0, 5], [50, 20], [90, 30], [150, 40], [200, 50]])
    dst, w = transform_points(H, src)
    assert np.all((w < 0) == (src[:, 0] > 100))
    s = support(H, Correspondences(src, dst), 3.0, SIZE, SIZE)
    np.testing.assert_array_equal(s.mask, [True, True, True, False, False])


def test_support_of_no_matches() -> None:
    s = support(np.eye(3), Correspondences(np.zeros((0, 2)), np.zeros((0, 2))), 3.0, SIZE, SIZE)
    assert (s.inliers, s.ratio, s.spread) == (0, 0.0, 0.0)
    assert math.isnan(s.rms_px) and s.mask.shape == (0,)


# ----------------------------------------------------------------------------- guided_matches


@cache
def repeated_pair() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A 48 px motif tiled over the image (plus faint noise) and its view through H_TRUE."""
    rng = np.random.default_rng(0)
    motif = cv2.GaussianBlur((rng.random((48, 48)) * 255).astype(np.uint8), (0, 0), 2)
    motif = cv2.normalize(motif, None, 0, 255, cv2.NORM_MINMAX)
    a = np.tile(motif, (6, 8))[:240, :320].astype(np.float32)
    a = np.clip(a + rng.normal(0, 3, a.shape), 0, 255).astype(np.uint8)
    b = cv2.warpPerspective(a, H_TRUE, SIZE, borderMode=cv2.BORDER_REFLECT_101)
    return a, b, H_TRUE


def n_correct(c: Correspondences, H: np.ndarray, tol: float = 2.0) -> int:
    if not len(c):
        return 0
    pred, _ = transform_points(H, c.src)
    return int((np.linalg.norm(pred - c.dst, axis=1) < tol).sum())


def test_guided_matching_beats_the_ratio_test_on_repeated_texture() -> None:
    a, b, H = repeated_pair()
    opts = FeatureOptions()
    ka, kb = detect(a, opts), detect(b, opts)
    plain = match_keypoints(ka, kb, 0.75)
    guided = guided_matches(ka, kb, H, 5.0)
    good_plain, good_guided = n_correct(plain, H), n_correct(guided, H)
    assert good_guided >= 500 and good_guided >= 5 * good_plain
    assert good_guided / len(guided) > 0.8
    # a guess off by half a period finds the wrong copies, not the truth
    off = np.array([[1.0, 0, 24.0], [0, 1, 0], [0, 0, 1]]) @ H
    wrong = guided_matches(ka, kb, off, 5.0)
    assert n_correct(wrong, H) < 0.1 * max(1, len(wrong))


def guided_setup(work_scale: float):
    """Six A points; B has each one's copy 3 original px to the right, the last one twice
    (two near-identical candidates), and an exact copy of A's first descriptor far away."""
    rng = np.random.default_rng(2)
    da = rng.normal(0, 1, (6, 128)).astype(np.float32)
    pa = np.array([[20.0, 20], [80, 20], [140, 20], [20, 90], [80, 90], [140, 90]])
    db = np.r_[da + 0.05, da[5:] - 0.05, da[:1]].astype(np.float32)
    pb = np.r_[pa + [3.0, 0], pa[5:] + [3.0, 1.0], [[250.0, 200.0]]]
    return keypoints(pa, da), keypoints(pb, db, work_scale=work_scale), pa, pb


def test_guided_radius_is_in_working_pixels_of_b() -> None:
    ka, kb, pa, pb = guided_setup(1.0)
    assert len(guided_matches(ka, kb, np.eye(3), 2.0)) == 0  # 3 px away, radius 2 px
    ka, kb, pa, pb = guided_setup(0.5)  # B matched at half size: 2 working px = 4 original
    c = guided_matches(ka, kb, np.eye(3), 2.0)
    assert c.px == 2.0
    # the five unambiguous points match their copy (the exact copy of A's first descriptor
    # lies far away); the sixth has two near-identical candidates and fails the ratio test
    assert as_set(c) == {(*pa[i], *pb[i]) for i in range(5)}


def test_guided_matches_without_enough_evidence() -> None:
    ka, kb, _, _ = guided_setup(1.0)
    few = keypoints(ka.points[:3], ka.descriptors[:3])
    assert len(guided_matches(few, kb, np.eye(3), 10.0)) == 0
    behind = np.diag([1.0, 1.0, -1.0])  # every point maps with w < 0
    assert len(guided_matches(ka, kb, behind, 1000.0)) == 0
    empty = guided_matches(ka, kb, np.eye(3), 0.1)
    assert empty.src.shape == (0, 2) and empty.px == 1.0


# ----------------------------------------------------------------------------- fit_homography


def matches_with_outliers(seed: int = 0, n: int = 80):
    rng = np.random.default_rng(seed)
    src = rng.uniform(0, 320, (n, 2))
    dst, _ = transform_points(H_TRUE, src)
    out = rng.random(n) < 0.35
    dst[out] += rng.uniform(15, 60, (out.sum(), 2)) * rng.choice([-1, 1], (out.sum(), 2))
    return src, dst, out


@pytest.mark.parametrize("robust", ["aca", "usac"])
def test_fit_homography_recovers_the_map_and_its_inliers(robust: str) -> None:
    src, dst, out = matches_with_outliers()
    H, inl = fit_homography(Correspondences(src, dst), FeatureOptions(robust=robust))
    assert H is not None and H[2, 2] == 1.0
    assert corner_error(H, H_TRUE, SIZE) < 1e-3
    np.testing.assert_array_equal(inl, ~out)


@pytest.mark.parametrize("robust", ["aca", "usac"])
def test_fit_homography_threshold_scales_with_px(robust: str) -> None:
    """Inliers 0.6 original px off: in at threshold 1 working px when a working px is 2
    original px, mostly out when it is a quarter of one."""
    src, dst, out = matches_with_outliers(1)
    ang = np.random.default_rng(3).uniform(0, 2 * np.pi, len(src))
    dst = dst + 0.6 * np.c_[np.cos(ang), np.sin(ang)] * ~out[:, None]
    opts = FeatureOptions(robust=robust, threshold_px=1.0)
    H, inl = fit_homography(Correspondences(src, dst, px=2.0), opts)
    assert H is not None and inl.sum() >= (~out).sum() - 2 and not inl[out].any()
    _, inl_fine = fit_homography(Correspondences(src, dst, px=0.25), opts)
    assert inl_fine is None or inl_fine.sum() < 0.5 * (~out).sum()


@pytest.mark.parametrize("robust", ["aca", "usac"])
def test_fit_homography_without_consensus(robust: str) -> None:
    opts = FeatureOptions(robust=robust)
    src, dst, _ = matches_with_outliers()
    assert fit_homography(Correspondences(src[:3], dst[:3]), opts) == (None, None)
    x = np.linspace(0, 300, 30)
    line = np.c_[x, 2 * x + 1]  # collinear: no homography
    assert fit_homography(Correspondences(line, line + 5), opts) == (None, None)


# -------------------------------------------------------------------- ASIFT on a strong tilt


def tilted_view(size: tuple[int, int], tilt_deg: float, azimuth_deg: float) -> np.ndarray:
    """b_H_a: a frontal camera A (50 deg field of view) and a camera B as far from the
    plane's centre, tilted by ``tilt_deg`` toward ``azimuth_deg``; B foreshortens the plane
    by cos(tilt) across the tilt axis (a tilt of 1 / cos(tilt) in ASIFT's words)."""
    w, h = size
    f = (w / 2) / math.tan(math.radians(25))
    K = np.array([[f, 0, (w - 1) / 2], [0, f, (h - 1) / 2], [0, 0, 1]])
    az = math.radians(azimuth_deg)
    R_cw = Rotation.from_rotvec(math.radians(tilt_deg) * np.array([-math.sin(az), math.cos(az), 0]))
    R = R_cw.as_matrix().T
    img_a = K @ np.array([[1.0, 0, 0], [0, 1, 0], [0, 0, f]])
    img_b = K @ np.column_stack([R[:, 0], R[:, 1], [0, 0, f]])
    H = img_b @ np.linalg.inv(img_a)
    return H / H[2, 2]


def warp_supersampled(img: np.ndarray, H: np.ndarray, size: tuple[int, int], ss: int = 4):
    """B = A through H without aliasing: warped at ``ss`` times the size, area-averaged."""
    S = np.array([[ss, 0, (ss - 1) / 2], [0, ss, (ss - 1) / 2], [0, 0, 1.0]])
    big = cv2.warpPerspective(
        img, S @ H, (size[0] * ss, size[1] * ss), borderMode=cv2.BORDER_REFLECT_101
    )
    return cv2.resize(big, size, interpolation=cv2.INTER_AREA)


@pytest.mark.parametrize("name", ["astronaut.png", "coffee.png"])
def test_asift_recovers_a_65_degree_tilt_that_sift_misses(name: str) -> None:
    a = photo(name)
    H = tilted_view(SIZE, 65.0, 90.0)
    s = np.linalg.svd(H[:2, :2] - np.outer(H[:2, 2], H[2, :2]), compute_uv=False)
    assert s[1] / s[0] == pytest.approx(math.cos(math.radians(65)), rel=0.15)  # the tilt
    b = warp_supersampled(a, H, SIZE)
    sift = estimate_features(a, b, FeatureOptions(detector="sift"))
    asift = estimate_features(a, b, FeatureOptions(detector="asift"))
    assert asift.detector == "asift" and asift.b_H_a is not None
    err = corner_error(asift.b_H_a, H, SIZE)
    assert err < 2.5
    assert asift.inliers >= 50 and asift.inliers >= 5 * sift.inliers
    assert sift.b_H_a is None or corner_error(sift.b_H_a, H, SIZE) > 2 * err
    # the evidence travels with the estimate, in A's pixels, from many simulated views
    n_views = 1 + len(tilt_longitudes(FeatureOptions().tilts))
    assert asift.kp_a is not None and len(np.unique(asift.kp_a.view)) >= n_views - 2
    assert asift.kp_b is not None and set(np.unique(asift.kp_b.view)) == {0}
    assert asift.correspondences is not None and len(asift.correspondences) == asift.matches
    assert asift.inlier_mask is not None and int(asift.inlier_mask.sum()) == asift.inliers


def test_estimate_features_keeps_its_evidence_consistent_with_support() -> None:
    a = photo()
    H = random_homography(SIZE, 0.1, 2)
    b = cv2.warpPerspective(a, H, SIZE, borderMode=cv2.BORDER_REFLECT_101)
    opts = FeatureOptions()
    r = estimate_features(a, b, opts)
    s = support(r.b_H_a, r.correspondences, opts.threshold_px, SIZE, SIZE)
    assert (r.inliers, r.rms_px, r.spread) == (s.inliers, s.rms_px, s.spread)
    np.testing.assert_array_equal(r.inlier_mask, s.mask)
    assert 0.3 < r.spread <= 1.0
    # B's keypoints handed in are used as they are (no second detection)
    again = estimate_features(a, b, opts, kp_b=r.kp_b)
    assert again.kp_b is r.kp_b
    np.testing.assert_array_equal(again.b_H_a, r.b_H_a)


# ---------------------------------------------------------------------------- FeatureOptions


@pytest.mark.parametrize(
    "kw",
    [
        {"tilts": (1.0,)},
        {"tilts": (2.0, 0.5)},
        {"tilts": (9.0,)},
        {"tilts": (math.nan,)},
        {"tilts": (2.0,) * 9},
        {"asift_max_pixels": 4095},
        {"asift_features": 7},
        {"asift_features": 100_001},
        {"detector": "ASIFT"},
    ],
)
def test_options_reject_bad_new_fields(kw: dict) -> None:
    (name,) = kw
    with pytest.raises(ValueError, match=name):
        FeatureOptions(**kw)


def test_options_accept_the_limits_of_the_new_fields() -> None:
    o = FeatureOptions(
        detector="asift",
        tilts=(1.01, 8.0) + (2.0,) * 6,
        asift_max_pixels=4096,
        asift_features=8,
        normalize=False,
    )
    assert len(o.tilts) == 8 and o.asift_features == 8 and o.normalize is False
    assert FeatureOptions(asift_features=100_000).asift_features == 100_000
    d = FeatureOptions()
    assert (d.detector, d.normalize, d.tilts) == ("sift", True, (2.0, 2.83))
