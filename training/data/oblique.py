"""Realistic pairs of views of a planar scene: two pinhole cameras look at a textured plane.

The plane carries a mosaic of 2 x 2 photos (``texture`` pixels are the plane's units; beyond the
mosaic the texture is mirrored, so the plane never ends). Each view is a camera with its own
focal length, tilt away from the plane's normal (0-70 deg), tilt direction, roll about its
optical axis and distance (which sets the zoom); the ground truth is exact:
``b_H_a = img_b_H_plane @ inv(img_a_H_plane)`` with ``img_H_plane = K [r1 r2 t]``.

Each view is rendered with supersampling (no aliasing where the plane recedes), then degraded as a
camera would: a lighting gradient and vignetting, a global gain/bias and gamma (exposure), defocus
or motion blur, signal-dependent sensor noise, JPEG; and, sometimes, an occluder that is not on
the plane (a patch of another photo in one view only).

Kinds (``KINDS``), as in the real benchmarks (HPatches "v" and "i", Oxford's sequences):

- ``viewpoint``: B's camera tilted 20-70 deg away from A's (A nearly frontal), zoom 0.8-1.5;
- ``zoom``: zoom 0.25-4 (either way) with any roll, small tilts;
- ``photometric``: small motion; strong lighting, exposure, blur, noise or JPEG;
- ``mixed``: every range at once (tilt 0-70, zoom 0.25-4, any roll, moderate degradations).

``b_H_a`` maps A pixels to B pixels (``x_b ~ b_H_a @ x_a``, pixel centres at integers, OpenCV's
convention). Images are (H, W) uint8 gray. Deterministic for a seed and a photo list.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from app.geometry.points import image_corners, transform_points

__all__ = [
    "KINDS",
    "ObliquePair",
    "ViewParams",
    "load_photos",
    "make_oblique_pair",
    "make_oblique_pairs",
    "plane_to_image",
    "render_view",
]

KINDS = ("viewpoint", "zoom", "photometric", "mixed")
_TILE = (320, 240)  # one photo of the 2 x 2 mosaic, texture pixels


@dataclass(frozen=True)
class ViewParams:
    """One camera: ``hfov_deg`` horizontal field of view; ``tilt_deg`` angle between its optical
    axis and the plane's normal, toward ``azimuth_deg`` (in the plane); ``roll_deg`` about the
    optical axis; ``scale``: image pixels per plane unit at the point looked at, were the camera
    frontal (the zoom); ``target``: that point, plane units from the texture's centre."""

    hfov_deg: float
    tilt_deg: float
    azimuth_deg: float
    roll_deg: float
    scale: float
    target: tuple[float, float]


@dataclass(frozen=True)
class ObliquePair:
    """``a``, ``b``: (H, W) uint8; ``b_H_a``: (3, 3) float64 truth with H[2, 2] = 1; ``kind``;
    ``view_a``/``view_b``: the cameras; ``degradations``: what was applied to each image;
    ``angle_deg``: the angle between the two optical axes; ``zoom``: B's scale over A's."""

    a: np.ndarray
    b: np.ndarray
    b_H_a: np.ndarray
    kind: str
    view_a: ViewParams
    view_b: ViewParams
    angle_deg: float
    zoom: float
    photos: tuple[str, ...] = ()
    degradations: dict[str, dict[str, float]] = field(default_factory=dict)


def _rot(axis: str, deg: float) -> np.ndarray:
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    if axis == "y":
        return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def _camera_to_world(v: ViewParams) -> np.ndarray:
    """(3, 3) camera-to-world rotation: OpenCV camera axes (x right, y down, z forward); the
    plane is z = 0 and a frontal camera looks along +z, so the image is not mirrored."""
    tilt = _rot("z", v.azimuth_deg) @ _rot("y", v.tilt_deg) @ _rot("z", -v.azimuth_deg)
    return tilt @ _rot("z", v.roll_deg)


def plane_to_image(v: ViewParams, size: tuple[int, int], texture_size: tuple[int, int]):
    """(3, 3) ``img_H_tex``: texture pixel -> image pixel for camera ``v`` of image ``size``
    = (w, h) looking at a texture of ``texture_size`` = (w, h) whose centre is the plane's
    origin."""
    w, h = size
    f = (w / 2) / math.tan(math.radians(v.hfov_deg) / 2)
    K = np.array([[f, 0, (w - 1) / 2], [0, f, (h - 1) / 2], [0, 0, 1.0]])
    R_cw = _camera_to_world(v)
    d = f / v.scale  # frontal distance that gives ``scale`` pixels per plane unit
    centre = np.array([*v.target, 0.0]) - d * R_cw[:, 2]
    R = R_cw.T
    t = -R @ centre
    img_H_plane = K @ np.column_stack([R[:, 0], R[:, 1], t])
    tw, th = texture_size
    plane_H_tex = np.array([[1.0, 0, -(tw - 1) / 2], [0, 1.0, -(th - 1) / 2], [0, 0, 1]])
    H = img_H_plane @ plane_H_tex
    # scaled so that the point looked at has w = 1: w > 0 in front of the camera, whatever the
    # sign of the texture origin's depth
    tx, ty = v.target[0] + (tw - 1) / 2, v.target[1] + (th - 1) / 2
    return H / (H @ np.array([tx, ty, 1.0]))[2]


def _max_texels_per_pixel(img_H_tex: np.ndarray, size: tuple[int, int]) -> float:
    """Largest minification over the image (texture pixels per image pixel), from the
    Jacobian of ``tex_H_img`` at a grid of points."""
    w, h = size
    tex_H_img = np.linalg.inv(img_H_tex)
    xs, ys = np.meshgrid(np.linspace(0, w - 1, 9), np.linspace(0, h - 1, 9))
    p = np.stack([xs.ravel(), ys.ravel()], 1)
    worst = 0.0
    for dx, dy in ((1.0, 0.0), (0.0, 1.0)):
        q0, _ = transform_points(tex_H_img, p)
        q1, _ = transform_points(tex_H_img, p + np.array([dx, dy]))
        worst = max(worst, float(np.nanmax(np.linalg.norm(q1 - q0, axis=1))))
    return worst


def render_view(
    texture: np.ndarray, img_H_tex: np.ndarray, size: tuple[int, int], max_supersample: int = 4
) -> np.ndarray:
    """The texture seen through ``img_H_tex`` as a float32 (h, w) image in [0, 1]: rendered at
    up to ``max_supersample`` times the size (as many as the worst minification needs), then
    area-averaged down; the texture is mirrored beyond its borders."""
    ss = int(np.clip(math.ceil(_max_texels_per_pixel(img_H_tex, size)), 1, max_supersample))
    w, h = size
    S = np.array([[ss, 0, (ss - 1) / 2], [0, ss, (ss - 1) / 2], [0, 0, 1.0]])
    big = cv2.warpPerspective(
        texture.astype(np.float32) / 255.0,
        S @ img_H_tex,
        (w * ss, h * ss),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REFLECT_101,
    )
    return cv2.resize(big, size, interpolation=cv2.INTER_AREA) if ss > 1 else big


def _views_ok(
    H_a: np.ndarray, H_b: np.ndarray, size: tuple[int, int], min_overlap: float
) -> tuple[bool, float]:
    """Both views see the plane in every corner (rays hit it in front of the camera, not at a
    grazing angle); at least ``min_overlap`` of one image lies inside the other (and 2 % of
    the other inside the first)."""
    w, h = size
    corners = image_corners(size)
    for H in (H_a, H_b):
        _, wq = transform_points(np.linalg.inv(H), corners)
        if np.any(wq <= 0) or not np.all(np.isfinite(wq)):
            return False, 0.0
    b_H_a = H_b @ np.linalg.inv(H_a)
    if np.any(transform_points(b_H_a, corners)[1] <= 0):  # the corner error would be undefined
        return False, 0.0
    xs, ys = np.meshgrid(np.linspace(0, w - 1, 24), np.linspace(0, h - 1, 18))
    grid = np.stack([xs.ravel(), ys.ravel()], 1)
    fractions = []
    for H in (b_H_a, np.linalg.inv(b_H_a)):
        q, wq = transform_points(H, grid)
        inside = (
            (wq > 0) & (q[:, 0] >= 0) & (q[:, 0] <= w - 1) & (q[:, 1] >= 0) & (q[:, 1] <= h - 1)
        )
        fractions.append(float(inside.mean()))
    # the narrower view must lie mostly inside the wider one (a 4x zoom sees 1/16 of it)
    return max(fractions) >= min_overlap and min(fractions) >= 0.02, max(fractions)


def _grazing_limit(v: ViewParams, size: tuple[int, int], limit_deg: float = 84.0) -> bool:
    """True when every corner ray meets the plane at most ``limit_deg`` from its normal."""
    w, h = size
    f = (w / 2) / math.tan(math.radians(v.hfov_deg) / 2)
    R_cw = _camera_to_world(v)
    rays = np.array([[x - (w - 1) / 2, y - (h - 1) / 2, f] for x, y in image_corners(size)])
    rays = rays @ R_cw.T
    cos = rays[:, 2] / np.linalg.norm(rays, axis=1)
    return bool(np.all(cos >= math.cos(math.radians(limit_deg))))


def _draw_views(
    kind: str, rng: np.random.Generator, size: tuple[int, int]
) -> tuple[ViewParams, ViewParams]:
    u = rng.uniform
    if kind == "viewpoint":
        tilt_a, tilt_b = u(0, 10), u(20, 70)
        zoom = math.exp(u(math.log(0.8), math.log(1.5)))
        roll_a, roll_b = u(-10, 10), u(-20, 20)
    elif kind == "zoom":
        tilt_a, tilt_b = u(0, 10), u(0, 15)
        zoom = math.exp(u(math.log(0.25), math.log(4.0)))
        roll_a, roll_b = u(-10, 10), u(-180, 180)
    elif kind == "photometric":
        tilt_a, tilt_b = u(0, 10), u(0, 15)
        zoom = math.exp(u(math.log(0.8), math.log(1.25)))
        roll_a, roll_b = u(-5, 5), u(-10, 10)
    else:
        tilt_a, tilt_b = u(0, 20), u(0, 70)
        zoom = math.exp(u(math.log(0.25), math.log(4.0)))
        roll_a, roll_b = u(-180, 180), u(-180, 180)
    # the wider view sees the mosaic at about 1 texture pixel per image pixel
    base = u(1.0, 1.4)
    scale_a, scale_b = (base, base * zoom) if zoom >= 1 else (base / zoom, base)
    target = (u(-40, 40), u(-30, 30))
    # B looks near A's point: at most a fifth of the wider view's footprint away
    reach = 0.2 * size[0] / min(scale_a, scale_b)
    target_b = (target[0] + u(-reach, reach), target[1] + u(-reach, reach) * 0.75)
    va = ViewParams(_fov(u(40, 65), tilt_a, size), tilt_a, u(0, 360), roll_a, scale_a, target)
    vb = ViewParams(_fov(u(40, 65), tilt_b, size), tilt_b, u(0, 360), roll_b, scale_b, target_b)
    return va, vb


def _fov(hfov_deg: float, tilt_deg: float, size: tuple[int, int], limit_deg: float = 82.0):
    """``hfov_deg``, narrowed where needed so that the corner rays of a camera tilted by
    ``tilt_deg`` still meet the plane at most ``limit_deg`` from its normal (a steeply tilted
    camera that sees the horizon does not look at the plane any more)."""
    w, h = size
    half_diag = math.radians(max(1.0, limit_deg - tilt_deg))
    widest = 2 * math.degrees(math.atan(math.tan(half_diag) * w / math.hypot(w, h)))
    return min(hfov_deg, widest)


def _degrade(
    img: np.ndarray, kind: str, rng: np.random.Generator, occluder: np.ndarray | None
) -> tuple[np.ndarray, dict[str, float]]:
    """A camera's imperfections on a float image in [0, 1] -> uint8; the parameters used."""
    u = rng.uniform
    h, w = img.shape
    strong = kind == "photometric"
    p: dict[str, float] = {}
    if occluder is not None:
        ow, oh = int(u(0.15, 0.35) * w), int(u(0.15, 0.35) * h)
        ox, oy = int(u(0, w - ow)), int(u(0, h - oh))
        patch = cv2.resize(occluder, (ow, oh), interpolation=cv2.INTER_AREA).astype(np.float32)
        img = img.copy()
        img[oy : oy + oh, ox : ox + ow] = patch / 255.0
        p["occluder_fraction"] = ow * oh / (w * h)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    xn, yn = (xs - w / 2) / (w / 2), (ys - h / 2) / (h / 2)
    g = u(0, 0.6 if strong else 0.3)
    ang = u(0, 2 * math.pi)
    light = 1.0 + g * (math.cos(ang) * xn + math.sin(ang) * yn) / 2
    vig = u(0, 0.5)
    light *= 1.0 - vig * (xn**2 + yn**2) / 2
    gain = math.exp(u(math.log(0.35), math.log(2.2))) if strong else math.exp(u(-0.3, 0.3))
    gamma = math.exp(u(math.log(0.6), math.log(1.7))) if strong else math.exp(u(-0.15, 0.15))
    x = np.clip(img * light * gain, 0, None) ** gamma
    p.update(gradient=g, vignetting=vig, gain=gain, gamma=gamma)
    blur = u(0, 3.5) if strong and rng.random() < 0.6 else u(0, 1.2)
    if blur > 0.3:
        x = cv2.GaussianBlur(x, (0, 0), blur)
    p["blur_sigma"] = blur
    if rng.random() < (0.3 if strong else 0.1):  # camera shake: a line kernel
        length = 2 * int(u(1, 6 if strong else 3)) + 1  # odd: centred on filter2D's anchor
        k = np.zeros((length, length), np.float32)
        k[length // 2, :] = 1.0
        rot = cv2.getRotationMatrix2D(((length - 1) / 2, (length - 1) / 2), u(0, 180), 1.0)
        k = cv2.warpAffine(k, rot, (length, length))
        x = cv2.filter2D(x, -1, k / max(k.sum(), 1e-6))
        p["motion_blur_px"] = length
    read = u(0.5, 6.0 if strong else 3.0) / 255.0
    shot = u(0.0, 0.03 if strong else 0.015)
    sigma = np.sqrt(read**2 + shot * np.clip(x, 0, 1) / 10)
    x = x + rng.normal(0.0, 1.0, x.shape).astype(np.float32) * sigma.astype(np.float32)
    p.update(read_noise=read * 255, shot_noise=shot)
    out = np.clip(x * 255.0 + 0.5, 0, 255).astype(np.uint8)
    q = int(u(10, 45)) if strong and rng.random() < 0.5 else int(u(60, 95))
    out = cv2.imdecode(cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, q])[1], 0)
    p["jpeg_quality"] = q
    return out, p


def _tile(photo: np.ndarray) -> np.ndarray:
    """A gray photo centre-cropped to the tile's aspect and resized to ``_TILE``."""
    h, w = photo.shape[:2]
    tw, th = _TILE
    if w * th > h * tw:
        cw = h * tw // th
        photo = photo[:, (w - cw) // 2 : (w - cw) // 2 + cw]
    else:
        ch = w * th // tw
        photo = photo[(h - ch) // 2 : (h - ch) // 2 + ch]
    return cv2.resize(photo, _TILE, interpolation=cv2.INTER_AREA)


def make_oblique_pair(
    photos: Sequence[np.ndarray],
    kind: str,
    rng: np.random.Generator,
    size: tuple[int, int] = (640, 480),
    occluder: np.ndarray | None = None,
    min_overlap: float = 0.5,
    names: tuple[str, ...] = (),
) -> ObliquePair:
    """One pair of ``kind`` from four (H, W) uint8 gray ``photos`` (the mosaic, row-major);
    ``occluder``: a photo pasted, sometimes, into one view only (not on the plane)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if len(photos) != 4:
        raise ValueError(f"the mosaic needs 4 photos, got {len(photos)}")
    t = [_tile(p) for p in photos]
    texture = np.vstack([np.hstack(t[:2]), np.hstack(t[2:])])
    tex_size = (texture.shape[1], texture.shape[0])
    for _ in range(200):
        va, vb = _draw_views(kind, rng, size)
        if not (_grazing_limit(va, size) and _grazing_limit(vb, size)):
            continue
        H_a, H_b = plane_to_image(va, size, tex_size), plane_to_image(vb, size, tex_size)
        ok, _ = _views_ok(H_a, H_b, size, min_overlap)
        if ok:
            break
    else:
        raise RuntimeError(f"no {kind} views with {min_overlap:.0%} overlap after 200 draws")
    b_H_a = H_b @ np.linalg.inv(H_a)
    b_H_a /= b_H_a[2, 2]
    occ = occluder if occluder is not None and rng.random() < 0.3 else None
    swap = rng.random() < 0.5  # the occluder goes into one view or the other
    a, da = _degrade(render_view(texture, H_a, size), kind, rng, occ if not swap else None)
    b, db = _degrade(render_view(texture, H_b, size), kind, rng, occ if swap else None)
    axis_a, axis_b = _camera_to_world(va)[:, 2], _camera_to_world(vb)[:, 2]
    angle = math.degrees(math.acos(float(np.clip(axis_a @ axis_b, -1, 1))))
    return ObliquePair(
        a, b, b_H_a, kind, va, vb, angle, vb.scale / va.scale, names, {"a": da, "b": db}
    )


def load_photos(folder: str | Path, split: str | None = "test") -> list[tuple[str, np.ndarray]]:
    """Gray photos of ``folder`` (sorted by name), optionally one split of
    :func:`training.data.sources.split_by_hash` (so that calibration and evaluation use
    different photos)."""
    from training.data.sources import discover_images, split_by_hash

    files = discover_images(folder)
    if split is not None:
        files = split_by_hash(files)[split]
    out = []
    for f in files:
        img = cv2.imread(str(f), cv2.IMREAD_GRAYSCALE)
        if img is not None and min(img.shape) >= 64:
            out.append((f.name, img))
    return out


def make_oblique_pairs(
    photos: Sequence[tuple[str, np.ndarray]],
    n: int,
    seed: int = 0,
    kinds: Sequence[str] = KINDS,
    size: tuple[int, int] = (640, 480),
) -> list[ObliquePair]:
    """``n`` pairs, kinds in turn, each from four photos (and an occluder) drawn at random."""
    if len(photos) < 5:
        raise ValueError(f"need at least 5 photos, got {len(photos)}")
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        idx = rng.choice(len(photos), 5, replace=False)
        names = tuple(photos[j][0] for j in idx[:4])
        out.append(
            make_oblique_pair(
                [photos[j][1] for j in idx[:4]],
                kinds[i % len(kinds)],
                rng,
                size,
                occluder=photos[idx[4]][1],
                names=names,
            )
        )
    return out
