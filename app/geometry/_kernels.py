"""Numba CPU kernels behind ``app.geometry.four_point`` and ``app.geometry.ransac``.

Each kernel reads float32 or float64 inputs, computes in float64 (no overflow for pixel
coordinates, no precision loss in float32 mode) and writes outputs in the input dtype, except the
default ACA path (``aca_h33_kernel``), which computes float32 batches in float32 in a conditioned
frame (see its section). They are parallel over the batch; the Python wrappers own validation,
allocation and dtype handling.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from app.geometry._simd import transpose8
from app.geometry.reasons import Reason

# Reason codes as plain ints (Numba freezes module-level ints into the compiled code)
OK = int(Reason.OK)
NON_FINITE_INPUT = int(Reason.NON_FINITE_INPUT)
REPEATED_SOURCE_POINT = int(Reason.REPEATED_SOURCE_POINT)
COLLINEAR_SOURCE = int(Reason.COLLINEAR_SOURCE)
REPEATED_TARGET_POINT = int(Reason.REPEATED_TARGET_POINT)
COLLINEAR_TARGET = int(Reason.COLLINEAR_TARGET)
H33_NEAR_ZERO = int(Reason.H33_NEAR_ZERO)
NON_FINITE_RESULT = int(Reason.NON_FINITE_RESULT)
SINGULAR_SYSTEM = int(Reason.SINGULAR_SYSTEM)
FLAGGED = 255  # the tiled ACA's mark for items that need the per-item path (never returned)

_NB = {"cache": True, "nogil": True, "fastmath": False, "error_model": "numpy"}


@nb.njit(inline="always", **_NB)
def _cross(ax, ay, bx, by):
    return ax * by - ay * bx


@nb.njit(inline="always", **_NB)
def _check_quad(x0, y0, x1, y1, x2, y2, x3, y3, tol2):
    """0 if the four points are in general position, 1 if two coincide, 2 if three are collinear
    (tests are scale-free: squared sines against tol2)."""
    d01 = (x1 - x0) ** 2 + (y1 - y0) ** 2
    d02 = (x2 - x0) ** 2 + (y2 - y0) ** 2
    d03 = (x3 - x0) ** 2 + (y3 - y0) ** 2
    d12 = (x2 - x1) ** 2 + (y2 - y1) ** 2
    d13 = (x3 - x1) ** 2 + (y3 - y1) ** 2
    d23 = (x3 - x2) ** 2 + (y3 - y2) ** 2
    dmax = max(d01, d02, d03, d12, d13, d23)
    dmin = min(d01, d02, d03, d12, d13, d23)
    if dmin <= tol2 * dmax or dmax == 0.0:
        return 1
    # the four triples; each cross product is tested against the product of its two lengths
    c012 = _cross(x1 - x0, y1 - y0, x2 - x0, y2 - y0)
    c013 = _cross(x1 - x0, y1 - y0, x3 - x0, y3 - y0)
    c023 = _cross(x2 - x0, y2 - y0, x3 - x0, y3 - y0)
    c123 = _cross(x2 - x1, y2 - y1, x3 - x1, y3 - y1)
    if (
        c012 * c012 <= tol2 * d01 * d02
        or c013 * c013 <= tol2 * d01 * d03
        or c023 * c023 <= tol2 * d02 * d03
        or c123 * c123 <= tol2 * d12 * d13
    ):
        return 2
    return 0


@nb.njit(inline="always", **_NB)
def _degenerate(f, a, b, w, nx, ny, px, py, qx, qy, tol2):
    """True when the quad with sides n, p, q (from its first point) has a triangle of (near)
    zero area: any of the four triple areas f, a, b, w is below tol times the squared size."""
    s = max(nx * nx + ny * ny, px * px + py * py, qx * qx + qy * qy)
    lim = tol2 * s * s
    return f * f <= lim or a * a <= lim or b * b <= lim or w * w <= lim or s == 0.0


@nb.njit(inline="always", **_NB)
def _load4(pts, i):
    """The four points of item i of (B, 4, 2) ``pts`` in float64, flat: x0, y0, ..., x3, y3."""
    return (
        np.float64(pts[i, 0, 0]), np.float64(pts[i, 0, 1]),
        np.float64(pts[i, 1, 0]), np.float64(pts[i, 1, 1]),
        np.float64(pts[i, 2, 0]), np.float64(pts[i, 2, 1]),
        np.float64(pts[i, 3, 0]), np.float64(pts[i, 3, 1]),
    )  # fmt: skip


@nb.njit(inline="always", **_NB)
def _frame(x0, y0, x1, y1, x2, y2, x3, y3):
    """ACA's affine frame of four points: sides n, p, q from the first point and the areas
    f = n x p, a = q x p, b = n x q, w = f - a - b (zero when three points are collinear)."""
    nx, ny = x1 - x0, y1 - y0
    px, py = x2 - x0, y2 - y0
    qx, qy = x3 - x0, y3 - y0
    f = nx * py - ny * px
    a = qx * py - qy * px
    b = nx * qy - ny * qx
    return nx, ny, px, py, qx, qy, f, a, b, f - a - b


@nb.njit(inline="always", **_NB)
def _aca_assemble(
    sx0, sy0, nx, ny, px, py, f1, a3, b3, w1, tx0, ty0, tx1, ty1, tx2, ty2, a4, b4, w2
):
    """ACA's core C and the product H = A2^-1 C A1, up to scale (no division, no inverse)."""
    c11 = b3 * a4 * w1
    c22 = a3 * b4 * w1
    c33 = a3 * b3 * w2
    # A2^-1 C: columns c11 N2 - c33 M2, c22 P2 - c33 M2, c33 M2 (homogeneous)
    g00 = c11 * tx1 - c33 * tx0
    g10 = c11 * ty1 - c33 * ty0
    g20 = c11 - c33
    g01 = c22 * tx2 - c33 * tx0
    g11 = c22 * ty2 - c33 * ty0
    g21 = c22 - c33
    # times A1 = [[py, -px, ta], [-ny, nx, tb], [0, 0, f1]]
    ta = px * sy0 - py * sx0
    tb = ny * sx0 - nx * sy0
    cf = c33 * f1
    return (
        g00 * py - g01 * ny,
        g01 * nx - g00 * px,
        g00 * ta + g01 * tb + cf * tx0,
        g10 * py - g11 * ny,
        g11 * nx - g10 * px,
        g10 * ta + g11 * tb + cf * ty0,
        g20 * py - g21 * ny,
        g21 * nx - g20 * px,
        g20 * ta + g21 * tb + cf,
    )


@nb.njit(inline="always", **_NB)
def _sks(sx0, sy0, sx1, sy1, sx2, sy2, sx3, sy3, tx0, ty0, tx1, ty1, tx2, ty2, tx3, ty3):
    """SKS, H = S2^-1 K S1 up to scale; returns (ok, h00..h22)."""
    # S1 (up to the scale |h1|^2): similarity sending M1, N1 to (-1, 0), (1, 0)
    ox, oy = 0.5 * (sx0 + sx1), 0.5 * (sy0 + sy1)
    hx, hy = 0.5 * (sx1 - sx0), 0.5 * (sy1 - sy0)
    w = hx * hx + hy * hy
    # P1, Q1 in the normalised frame: (x, y, w)
    xp = hx * (sx2 - ox) + hy * (sy2 - oy)
    yp = hx * (sy2 - oy) - hy * (sx2 - ox)
    xq = hx * (sx3 - ox) + hy * (sy3 - oy)
    yq = hx * (sy3 - oy) - hy * (sx3 - ox)
    # target side
    ox2, oy2 = 0.5 * (tx0 + tx1), 0.5 * (ty0 + ty1)
    hx2, hy2 = 0.5 * (tx1 - tx0), 0.5 * (ty1 - ty0)
    w2 = hx2 * hx2 + hy2 * hy2
    Xp = hx2 * (tx2 - ox2) + hy2 * (ty2 - oy2)
    Yp = hx2 * (ty2 - oy2) - hy2 * (tx2 - ox2)
    Xq = hx2 * (tx3 - ox2) + hy2 * (ty3 - oy2)
    Yq = hx2 * (ty3 - oy2) - hy2 * (tx3 - ox2)
    # kernel K = [[a, u, b], [0, 1, 0], [b, v, a]] with K (x, y, w) ~ (X, Y, W) for P and Q.
    # After the y<->w swap the fixed points (+-1, 0) go to infinity and (a, b) solve a
    # "hyperbolic similarity": (a+b)(alpha+beta) = r1+r2, (a-b)(alpha-beta) = r1-r2.
    den = yp * yq * Yp * Yq
    if den == 0.0:
        return False, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0
    inv = 1.0 / den  # one division for the four ratios
    iyp = yq * Yp * Yq * inv
    iyq = yp * Yp * Yq * inv
    iYp = yp * yq * Yq * inv
    iYq = yp * yq * Yp * inv
    alpha = xp * iyp - xq * iyq
    beta = w * (iyp - iyq)
    r1 = Xp * iYp - Xq * iYq
    r2 = w2 * (iYp - iYq)
    sp, sm = alpha + beta, alpha - beta
    if sp == 0.0 or sm == 0.0:
        return False, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0
    apb = (r1 + r2) / sp
    amb = (r1 - r2) / sm
    a = 0.5 * (apb + amb)
    b = 0.5 * (apb - amb)
    u = Xp * iYp - a * xp * iyp - b * w * iyp
    v = w2 * iYp - a * w * iyp - b * xp * iyp
    # S1 = [[hx, hy, -(hx ox + hy oy)], [-hy, hx, hy ox - hx oy], [0, 0, w]]
    s02 = -(hx * ox + hy * oy)
    s12 = hy * ox - hx * oy
    # K S1
    k00, k01, k02 = a * hx - u * hy, a * hy + u * hx, a * s02 + u * s12 + b * w
    k10, k11, k12 = -hy, hx, s12
    k20, k21, k22 = b * hx - v * hy, b * hy + v * hx, b * s02 + v * s12 + a * w
    # S2^-1 = [[hx2, -hy2, ox2], [hy2, hx2, oy2], [0, 0, 1]]
    h00 = hx2 * k00 - hy2 * k10 + ox2 * k20
    h01 = hx2 * k01 - hy2 * k11 + ox2 * k21
    h02 = hx2 * k02 - hy2 * k12 + ox2 * k22
    h10 = hy2 * k00 + hx2 * k10 + oy2 * k20
    h11 = hy2 * k01 + hx2 * k11 + oy2 * k21
    h12 = hy2 * k02 + hx2 * k12 + oy2 * k22
    h20 = k20
    h21 = k21
    h22 = k22
    return True, h00, h01, h02, h10, h11, h12, h20, h21, h22


@nb.njit(inline="always", **_NB)
def _store(H, reason, i, h00, h01, h02, h10, h11, h12, h20, h21, h22, norm_mode, h33_tol):
    """Normalise (0: H33 = 1, 1: unit Frobenius norm with H33 >= 0), check, write item i."""
    amax = max(
        abs(h00), abs(h01), abs(h02), abs(h10), abs(h11), abs(h12), abs(h20), abs(h21), abs(h22)
    )
    if not np.isfinite(amax) or amax == 0.0:
        reason[i] = NON_FINITE_RESULT if not np.isfinite(amax) else SINGULAR_SYSTEM
        H[i, :, :] = 0.0
        return
    if norm_mode == 0:
        if abs(h22) <= h33_tol * amax:
            reason[i] = H33_NEAR_ZERO
            H[i, :, :] = 0.0
            return
        s = 1.0 / h22
    else:
        # scale by amax first so the squares cannot overflow
        g = 1.0 / amax
        n2 = 0.0
        for v in (h00, h01, h02, h10, h11, h12, h20, h21, h22):
            n2 += (v * g) * (v * g)
        s = g / np.sqrt(n2)
        if h22 < 0.0:
            s = -s
    o00, o01, o02 = h00 * s, h01 * s, h02 * s
    o10, o11, o12 = h10 * s, h11 * s, h12 * s
    o20, o21 = h20 * s, h21 * s
    o22 = 1.0 if norm_mode == 0 else h22 * s
    if not np.isfinite(o00 + o01 + o02 + o10 + o11 + o12 + o20 + o21 + o22):
        reason[i] = NON_FINITE_RESULT
        H[i, :, :] = 0.0
        return
    H[i, 0, 0] = o00
    H[i, 0, 1] = o01
    H[i, 0, 2] = o02
    H[i, 1, 0] = o10
    H[i, 1, 1] = o11
    H[i, 1, 2] = o12
    H[i, 2, 0] = o20
    H[i, 2, 1] = o21
    H[i, 2, 2] = o22
    reason[i] = OK


@nb.njit(inline="always", **_NB)
def _four_point_kernel_item(i, src, dst, H, reason, method, norm_mode, tol, h33_tol, tol2):
    sx0, sy0, sx1, sy1, sx2, sy2, sx3, sy3 = _load4(src, i)
    tx0, ty0, tx1, ty1, tx2, ty2, tx3, ty3 = _load4(dst, i)
    nx, ny, px, py, qx, qy, f1, a3, b3, w1 = _frame(sx0, sy0, sx1, sy1, sx2, sy2, sx3, sy3)
    nx2, ny2, px2, py2, qx2, qy2, f2, a4, b4, w2 = _frame(tx0, ty0, tx1, ty1, tx2, ty2, tx3, ty3)
    bad_s = _degenerate(f1, a3, b3, w1, nx, ny, px, py, qx, qy, tol2)
    bad_t = _degenerate(f2, a4, b4, w2, nx2, ny2, px2, py2, qx2, qy2, tol2)
    if bad_s or bad_t or not np.isfinite(f1 + a3 + b3 + f2 + a4 + b4 + sx0 + sy0 + tx0 + ty0):
        # slow path: say exactly why
        tot = sx0 + sy0 + sx1 + sy1 + sx2 + sy2 + sx3 + sy3
        tot += tx0 + ty0 + tx1 + ty1 + tx2 + ty2 + tx3 + ty3
        H[i, :, :] = 0.0
        if not np.isfinite(tot):
            reason[i] = NON_FINITE_INPUT
            return
        c = _check_quad(sx0, sy0, sx1, sy1, sx2, sy2, sx3, sy3, tol2)
        if c != 0 or bad_s:
            reason[i] = REPEATED_SOURCE_POINT if c == 1 else COLLINEAR_SOURCE
            return
        c = _check_quad(tx0, ty0, tx1, ty1, tx2, ty2, tx3, ty3, tol2)
        reason[i] = REPEATED_TARGET_POINT if c == 1 else COLLINEAR_TARGET
        return
    if method == 0:
        # ACA core and assembly, H = A2^-1 C A1
        h00, h01, h02, h10, h11, h12, h20, h21, h22 = _aca_assemble(
            sx0, sy0, nx, ny, px, py, f1, a3, b3, w1, tx0, ty0, tx1, ty1, tx2, ty2, a4, b4, w2
        )
    else:
        ok, h00, h01, h02, h10, h11, h12, h20, h21, h22 = _sks(
            sx0, sy0, sx1, sy1, sx2, sy2, sx3, sy3, tx0, ty0, tx1, ty1, tx2, ty2, tx3, ty3
        )
        if not ok:
            reason[i] = SINGULAR_SYSTEM
            H[i, :, :] = 0.0
            return
    _store(H, reason, i, h00, h01, h02, h10, h11, h12, h20, h21, h22, norm_mode, h33_tol)


@nb.njit(parallel=True, **_NB)
def four_point_kernel(src, dst, H, reason, method, norm_mode, tol, h33_tol):
    """src, dst: (B, 4, 2); H: (B, 3, 3) out; reason: (B,) uint8 out. method 0 ACA, 1 SKS.

    The hot path reuses ACA's cross products for the degeneracy test; only flagged items pay
    for the detailed classification (repeated vs collinear, source vs target)."""
    tol2 = tol * tol
    for i in nb.prange(src.shape[0]):
        _four_point_kernel_item(i, src, dst, H, reason, method, norm_mode, tol, h33_tol, tol2)


@nb.njit(**_NB)
def four_point_kernel_serial(src, dst, H, reason, method, norm_mode, tol, h33_tol):
    """Single-threaded twin of :func:`four_point_kernel`, for small inputs."""
    tol2 = tol * tol
    for i in range(src.shape[0]):
        _four_point_kernel_item(i, src, dst, H, reason, method, norm_mode, tol, h33_tol, tol2)


@nb.njit(inline="always", **_NB)
def _rect_kernel_item(i, dst, x0, y0, w, h, H, reason, norm_mode, tol, h33_tol, tol2, iw, ih):
    tx0, ty0 = np.float64(dst[i, 0, 0]), np.float64(dst[i, 0, 1])  # TL = M
    tx1, ty1 = np.float64(dst[i, 1, 0]), np.float64(dst[i, 1, 1])  # TR = N
    tx3, ty3 = np.float64(dst[i, 2, 0]), np.float64(dst[i, 2, 1])  # BR = Q
    tx2, ty2 = np.float64(dst[i, 3, 0]), np.float64(dst[i, 3, 1])  # BL = P
    if not np.isfinite(tx0 + ty0 + tx1 + ty1 + tx2 + ty2 + tx3 + ty3):
        reason[i] = NON_FINITE_INPUT
        H[i, :, :] = 0.0
        return
    c = _check_quad(tx0, ty0, tx1, ty1, tx2, ty2, tx3, ty3, tol2)
    if c != 0:
        reason[i] = REPEATED_TARGET_POINT if c == 1 else COLLINEAR_TARGET
        H[i, :, :] = 0.0
        return
    # the rectangle's frame is trivial: the core reduces to the target's areas
    _, _, _, _, _, _, f2, c11, c22, _ = _frame(tx0, ty0, tx1, ty1, tx2, ty2, tx3, ty3)
    c33 = c11 + c22 - f2
    g00 = c11 * tx1 - c33 * tx0
    g10 = c11 * ty1 - c33 * ty0
    g20 = c11 - c33
    g01 = c22 * tx2 - c33 * tx0
    g11 = c22 * ty2 - c33 * ty0
    g21 = c22 - c33
    a0 = -x0 * iw
    b0 = -y0 * ih
    _store(
        H,
        reason,
        i,
        g00 * iw,
        g01 * ih,
        g00 * a0 + g01 * b0 + c33 * tx0,
        g10 * iw,
        g11 * ih,
        g10 * a0 + g11 * b0 + c33 * ty0,
        g20 * iw,
        g21 * ih,
        g20 * a0 + g21 * b0 + c33,
        norm_mode,
        h33_tol,
    )


@nb.njit(parallel=True, **_NB)
def rect_kernel(dst, x0, y0, w, h, H, reason, norm_mode, tol, h33_tol):
    """Fast path: the source is the axis-aligned rectangle (x0, y0, w, h) with corners TL, TR,
    BR, BL; dst: (B, 4, 2) in the same order. ACA with M, N, P, Q = TL, TR, BL, BR collapses to
    c11 = x4, c22 = y4, c33 = x4 + y4 - f2 and A1 = diag(1/w, 1/h, 1) T(-TL)."""
    tol2 = tol * tol
    iw, ih = 1.0 / w, 1.0 / h
    for i in nb.prange(dst.shape[0]):
        _rect_kernel_item(i, dst, x0, y0, w, h, H, reason, norm_mode, tol, h33_tol, tol2, iw, ih)


@nb.njit(**_NB)
def rect_kernel_serial(dst, x0, y0, w, h, H, reason, norm_mode, tol, h33_tol):
    """Single-threaded twin of :func:`rect_kernel`, for small inputs."""
    tol2 = tol * tol
    iw, ih = 1.0 / w, 1.0 / h
    for i in range(dst.shape[0]):
        _rect_kernel_item(i, dst, x0, y0, w, h, H, reason, norm_mode, tol, h33_tol, tol2, iw, ih)


@nb.njit(inline="always", **_NB)
def _affine_kernel_item(i, src, dst, A, reason, tol, tol2):
    sx0, sy0 = np.float64(src[i, 0, 0]), np.float64(src[i, 0, 1])
    nx, ny = np.float64(src[i, 1, 0]) - sx0, np.float64(src[i, 1, 1]) - sy0
    px, py = np.float64(src[i, 2, 0]) - sx0, np.float64(src[i, 2, 1]) - sy0
    tx0, ty0 = np.float64(dst[i, 0, 0]), np.float64(dst[i, 0, 1])
    nx2, ny2 = np.float64(dst[i, 1, 0]) - tx0, np.float64(dst[i, 1, 1]) - ty0
    px2, py2 = np.float64(dst[i, 2, 0]) - tx0, np.float64(dst[i, 2, 1]) - ty0
    if not np.isfinite(sx0 + sy0 + nx + ny + px + py + tx0 + ty0 + nx2 + ny2 + px2 + py2):
        reason[i] = NON_FINITE_INPUT
        A[i, :, :] = 0.0
        return
    f1 = nx * py - ny * px
    n2, p2 = nx * nx + ny * ny, px * px + py * py
    if n2 == 0.0 or p2 == 0.0:
        reason[i] = REPEATED_SOURCE_POINT
        A[i, :, :] = 0.0
        return
    if f1 * f1 <= tol2 * n2 * p2:
        reason[i] = COLLINEAR_SOURCE
        A[i, :, :] = 0.0
        return
    g = 1.0 / f1
    # F1^-1 = [[py, -px], [-ny, nx]] / f1 after translating by -M1
    a00, a01 = py * g, -px * g
    a10, a11 = -ny * g, nx * g
    m00 = nx2 * a00 + px2 * a10
    m01 = nx2 * a01 + px2 * a11
    m10 = ny2 * a00 + py2 * a10
    m11 = ny2 * a01 + py2 * a11
    A[i, 0, 0] = m00
    A[i, 0, 1] = m01
    A[i, 0, 2] = tx0 - m00 * sx0 - m01 * sy0
    A[i, 1, 0] = m10
    A[i, 1, 1] = m11
    A[i, 1, 2] = ty0 - m10 * sx0 - m11 * sy0
    reason[i] = OK


@nb.njit(parallel=True, **_NB)
def affine_kernel(src, dst, A, reason, tol):
    """3-point affine: src, dst (B, 3, 2) -> A (B, 2, 3), dst_A_src = F2 * F1^-1."""
    tol2 = tol * tol
    for i in nb.prange(src.shape[0]):
        _affine_kernel_item(i, src, dst, A, reason, tol, tol2)


@nb.njit(**_NB)
def affine_kernel_serial(src, dst, A, reason, tol):
    """Single-threaded twin of :func:`affine_kernel`, for small inputs."""
    tol2 = tol * tol
    for i in range(src.shape[0]):
        _affine_kernel_item(i, src, dst, A, reason, tol, tol2)


@nb.njit(inline="always", **_NB)
def _msac_kernel_item(k, H, valid, src, dst, thr2, scores, counts, n):
    if not valid[k]:
        scores[k] = np.inf
        counts[k] = 0
        return
    h00, h01, h02 = H[k, 0, 0], H[k, 0, 1], H[k, 0, 2]
    h10, h11, h12 = H[k, 1, 0], H[k, 1, 1], H[k, 1, 2]
    h20, h21, h22 = H[k, 2, 0], H[k, 2, 1], H[k, 2, 2]
    s = 0.0
    c = 0
    for j in range(n):
        x, y = src[j, 0], src[j, 1]
        w = h20 * x + h21 * y + h22
        e = thr2
        if w != 0.0:
            iw = 1.0 / w
            dx = (h00 * x + h01 * y + h02) * iw - dst[j, 0]
            dy = (h10 * x + h11 * y + h12) * iw - dst[j, 1]
            e2 = dx * dx + dy * dy
            if e2 < thr2:
                e = e2
                c += 1
        s += e
    scores[k] = s
    counts[k] = c


@nb.njit(parallel=True, **_NB)
def msac_kernel(H, valid, src, dst, thr2, scores, counts):
    """Score K hypotheses H (K, 3, 3) on N correspondences: truncated squared transfer error
    sum (MSAC, lower is better) and inlier count. Invalid hypotheses get +inf."""
    n = src.shape[0]
    for k in nb.prange(H.shape[0]):
        _msac_kernel_item(k, H, valid, src, dst, thr2, scores, counts, n)


@nb.njit(**_NB)
def msac_kernel_serial(H, valid, src, dst, thr2, scores, counts):
    """Single-threaded twin of :func:`msac_kernel`, for small inputs."""
    n = src.shape[0]
    for k in range(H.shape[0]):
        _msac_kernel_item(k, H, valid, src, dst, thr2, scores, counts, n)


@nb.njit(inline="always", **_NB)
def _transfer_error_kernel_item(j, H, src, dst, out):
    x, y = src[j, 0], src[j, 1]
    w = H[2, 0] * x + H[2, 1] * y + H[2, 2]
    if w == 0.0:
        out[j] = np.inf
        return
    dx = (H[0, 0] * x + H[0, 1] * y + H[0, 2]) / w - dst[j, 0]
    dy = (H[1, 0] * x + H[1, 1] * y + H[1, 2]) / w - dst[j, 1]
    out[j] = dx * dx + dy * dy


@nb.njit(parallel=True, **_NB)
def transfer_error_kernel(H, src, dst, out):
    """Squared transfer error of one H (3, 3) on N correspondences; inf behind the camera."""
    for j in nb.prange(src.shape[0]):
        _transfer_error_kernel_item(j, H, src, dst, out)


@nb.njit(**_NB)
def transfer_error_kernel_serial(H, src, dst, out):
    """Single-threaded twin of :func:`transfer_error_kernel`, for small inputs."""
    for j in range(src.shape[0]):
        _transfer_error_kernel_item(j, H, src, dst, out)


# ---------------------------------------------------------------------------------------------
# ACA with H33 = 1, the common case, tiled. Per block of _BLOCK items: the points are transposed
# 8 items at a time from their (4, 2) rows into lanes (``inb``: one row per coordinate), a
# branch-free loop computes the block lane-parallel into ``buf`` (8 entries of H / H33) and
# ``flags`` (general position, H33 usable), the entries are transposed back into the (3, 3)
# rows of H, and the few flagged items (degenerate, H33 ~ 0, non-finite) go through the per-item
# path above, which classifies them exactly in float64. An item's result does not depend on its
# place in the batch (a last partial tile is filled lane by lane).
#
# float64 runs the arithmetic of ``_four_point_kernel_item`` in the same order (bit-identical).
# float32 computes in float32 (twice the lanes, half the bytes), in a frame that keeps the
# magnitudes small: sides from the first point, the core C divided by the source's areas (its
# entries become area ratios), the translations put back at the end; its error is that of
# rounding the float64 answer to float32 within a factor of about 2 (tests/geometry).
_BLOCK = 32  # items per block: inb and buf (6 KiB in float64) stay in L1 beside the streams
_CHUNK = 256  # blocks per parallel task, which allocates its buffers once
_LANE_ROWS = 16  # inb: sx0, sy0, ..., sx3, sy3, tx0, ..., ty3


@nb.njit(inline="always", **_NB)
def _aca_lanes_f64(inb, buf, flags, m, tol2, inv_tol):
    """Items 0..m-1 of a block: ``inb`` (16 * _BLOCK) coordinates by lane -> ``buf`` (8 * _BLOCK)
    rows h00, h01, h02, h10, h11, h12, h20, h21 (H / H33), and ``flags`` (_BLOCK,) OK, or
    FLAGGED for an item the per-item path must redo (not in general position, or
    |H33| <= h33_tol * max|H_ij|, i.e. max|H_ij / H33| >= 1 / h33_tol, or not finite)."""
    for j in range(m):
        sx0, sy0 = inb[j], inb[_BLOCK + j]
        sx1, sy1 = inb[2 * _BLOCK + j], inb[3 * _BLOCK + j]
        sx2, sy2 = inb[4 * _BLOCK + j], inb[5 * _BLOCK + j]
        sx3, sy3 = inb[6 * _BLOCK + j], inb[7 * _BLOCK + j]
        tx0, ty0 = inb[8 * _BLOCK + j], inb[9 * _BLOCK + j]
        tx1, ty1 = inb[10 * _BLOCK + j], inb[11 * _BLOCK + j]
        tx2, ty2 = inb[12 * _BLOCK + j], inb[13 * _BLOCK + j]
        tx3, ty3 = inb[14 * _BLOCK + j], inb[15 * _BLOCK + j]
        nx, ny, px, py, qx, qy, f1, a3, b3, w1 = _frame(sx0, sy0, sx1, sy1, sx2, sy2, sx3, sy3)
        nx2, ny2, px2, py2, qx2, qy2, f2, a4, b4, w2 = _frame(
            tx0, ty0, tx1, ty1, tx2, ty2, tx3, ty3
        )
        s1 = max(nx * nx + ny * ny, px * px + py * py, qx * qx + qy * qy)
        s2 = max(nx2 * nx2 + ny2 * ny2, px2 * px2 + py2 * py2, qx2 * qx2 + qy2 * qy2)
        # > 0 iff both quads are in general position (the test of _degenerate, branch-free)
        general = min(
            min(f1 * f1, a3 * a3, b3 * b3, w1 * w1) - tol2 * s1 * s1,
            min(f2 * f2, a4 * a4, b4 * b4, w2 * w2) - tol2 * s2 * s2,
        )
        h00, h01, h02, h10, h11, h12, h20, h21, h22 = _aca_assemble(
            sx0, sy0, nx, ny, px, py, f1, a3, b3, w1, tx0, ty0, tx1, ty1, tx2, ty2, a4, b4, w2
        )
        s = 1.0 / h22
        o00, o01, o02, o10 = h00 * s, h01 * s, h02 * s, h10 * s
        o11, o12, o20, o21 = h11 * s, h12 * s, h20 * s, h21 * s
        buf[j] = o00
        buf[_BLOCK + j] = o01
        buf[2 * _BLOCK + j] = o02
        buf[3 * _BLOCK + j] = o10
        buf[4 * _BLOCK + j] = o11
        buf[5 * _BLOCK + j] = o12
        buf[6 * _BLOCK + j] = o20
        buf[7 * _BLOCK + j] = o21
        big = max(abs(o00), abs(o01), abs(o02), abs(o10), abs(o11), abs(o12), abs(o20), abs(o21))
        flags[j] = OK if general > 0.0 and big < inv_tol else FLAGGED


@nb.njit(**{**_NB, "fastmath": {"contract"}})
def _aca_lanes_f32(inb, buf, flags, m, tol2, inv_tol):
    """:func:`_aca_lanes_f64` in float32 arithmetic (fused multiply-adds allowed).

    With the sides n, p, q from each quad's first point (M1, M2 at the origin), the translations
    of A1 and A2 vanish; C = diag(b3 a4 w1, a3 b4 w1, a3 b3 w2) divided by a3 b3 w1 is
    diag(a4 / a3, b4 / b3, w2 / w1), so no product grows beyond a few side lengths cubed (the
    plain assembly reaches the 9th power of the coordinates: inf in float32 from ~2e4 px).
    H = T(M2) L T(-M1) with L the local product, normalised by its H33."""
    one = np.float32(1.0)
    for j in range(m):
        sx0, sy0 = inb[j], inb[_BLOCK + j]
        sx1, sy1 = inb[2 * _BLOCK + j], inb[3 * _BLOCK + j]
        sx2, sy2 = inb[4 * _BLOCK + j], inb[5 * _BLOCK + j]
        sx3, sy3 = inb[6 * _BLOCK + j], inb[7 * _BLOCK + j]
        tx0, ty0 = inb[8 * _BLOCK + j], inb[9 * _BLOCK + j]
        tx1, ty1 = inb[10 * _BLOCK + j], inb[11 * _BLOCK + j]
        tx2, ty2 = inb[12 * _BLOCK + j], inb[13 * _BLOCK + j]
        tx3, ty3 = inb[14 * _BLOCK + j], inb[15 * _BLOCK + j]
        nx, ny, px, py, qx, qy, f1, a3, b3, w1 = _frame(sx0, sy0, sx1, sy1, sx2, sy2, sx3, sy3)
        nx2, ny2, px2, py2, qx2, qy2, f2, a4, b4, w2 = _frame(
            tx0, ty0, tx1, ty1, tx2, ty2, tx3, ty3
        )
        s1 = max(nx * nx + ny * ny, px * px + py * py, qx * qx + qy * qy)
        s2 = max(nx2 * nx2 + ny2 * ny2, px2 * px2 + py2 * py2, qx2 * qx2 + qy2 * qy2)
        general = min(
            min(f1 * f1, a3 * a3, b3 * b3, w1 * w1) - tol2 * s1 * s1,
            min(f2 * f2, a4 * a4, b4 * b4, w2 * w2) - tol2 * s2 * s2,
        )
        c11, c22, c33 = a4 / a3, b4 / b3, w2 / w1
        # A2^-1 C (M2 = 0) times A1 (M1 = 0)
        g00, g10, g20 = c11 * nx2, c11 * ny2, c11 - c33
        g01, g11, g21 = c22 * px2, c22 * py2, c22 - c33
        l00, l01 = g00 * py - g01 * ny, g01 * nx - g00 * px
        l10, l11 = g10 * py - g11 * ny, g11 * nx - g10 * px
        l20, l21 = g20 * py - g21 * ny, g21 * nx - g20 * px
        s = one / (c33 * f1 - l20 * sx0 - l21 * sy0)  # 1 / H33 of T(M2) L T(-M1)
        o20, o21 = l20 * s, l21 * s
        o00, o01 = l00 * s + tx0 * o20, l01 * s + tx0 * o21
        o10, o11 = l10 * s + ty0 * o20, l11 * s + ty0 * o21
        o02 = tx0 - (l00 * sx0 + l01 * sy0) * s
        o12 = ty0 - (l10 * sx0 + l11 * sy0) * s
        buf[j] = o00
        buf[_BLOCK + j] = o01
        buf[2 * _BLOCK + j] = o02
        buf[3 * _BLOCK + j] = o10
        buf[4 * _BLOCK + j] = o11
        buf[5 * _BLOCK + j] = o12
        buf[6 * _BLOCK + j] = o20
        buf[7 * _BLOCK + j] = o21
        big = max(abs(o00), abs(o01), abs(o02), abs(o10), abs(o11), abs(o12), abs(o20), abs(o21))
        flags[j] = OK if general > 0.0 and big < inv_tol else FLAGGED


@nb.njit(inline="always", **_NB)
def _aca_h33_blocks(src, dst, H, reason, tol, h33_tol, first, stop):
    """Blocks ``first .. stop - 1`` of the batch (see the section comment)."""
    n = src.shape[0]
    s8, d8, h9 = src.reshape(n * 8), dst.reshape(n * 8), H.reshape(n * 9)
    dt = src.dtype
    tol2 = tol * tol
    lane_tol2 = dt.type(tol2)
    inv_tol = dt.type(1.0 / h33_tol)
    inb = np.empty(_LANE_ROWS * _BLOCK, dt)
    buf = np.empty(8 * _BLOCK, dt)
    flags = np.empty(_BLOCK, np.uint8)
    for blk in range(first, stop):
        lo = blk * _BLOCK
        m = min(_BLOCK, n - lo)
        m8 = m - m % 8
        for t in range(0, m8, 8):
            transpose8(s8, 8 * (lo + t), 8, inb, t, _BLOCK)
            transpose8(d8, 8 * (lo + t), 8, inb, 8 * _BLOCK + t, _BLOCK)
        if m8 < m:  # the batch's last few items: into the lanes one by one, the rest zeroed
            for j in range(m8, m8 + 8):
                for k in range(8):
                    inside = j < m
                    inb[k * _BLOCK + j] = s8[8 * (lo + j) + k] if inside else 0.0
                    inb[(8 + k) * _BLOCK + j] = d8[8 * (lo + j) + k] if inside else 0.0
        lanes = m8 if m8 == m else m8 + 8
        if s8.itemsize == 8:  # resolved at compile time
            _aca_lanes_f64(inb, buf, flags, lanes, lane_tol2, inv_tol)
        else:
            _aca_lanes_f32(inb, buf, flags, lanes, lane_tol2, inv_tol)
        for t in range(0, m8, 8):
            transpose8(buf, t, _BLOCK, h9, 9 * (lo + t), 9)
        for j in range(m8, m):
            for k in range(8):
                h9[9 * (lo + j) + k] = buf[k * _BLOCK + j]
        flagged = 0
        for j in range(m):
            h9[9 * (lo + j) + 8] = 1.0
            reason[lo + j] = flags[j]
            flagged += flags[j]
        if flagged:
            for j in range(m):
                if flags[j] != OK:
                    _four_point_kernel_item(lo + j, src, dst, H, reason, 0, 0, tol, h33_tol, tol2)


@nb.njit(parallel=True, **_NB)
def aca_h33_kernel(src, dst, H, reason, tol, h33_tol):
    """ACA normalised to H33 = 1 (the default of ``solve_four_point``), tiled; src, dst
    (B, 4, 2) and H (B, 3, 3) C-contiguous, all float32 or all float64."""
    blocks = (src.shape[0] + _BLOCK - 1) // _BLOCK
    for c in nb.prange((blocks + _CHUNK - 1) // _CHUNK):
        stop = min(blocks, (c + 1) * _CHUNK)
        _aca_h33_blocks(src, dst, H, reason, tol, h33_tol, c * _CHUNK, stop)


@nb.njit(**_NB)
def aca_h33_kernel_serial(src, dst, H, reason, tol, h33_tol):
    """Single-threaded twin of :func:`aca_h33_kernel`, for small inputs."""
    _aca_h33_blocks(src, dst, H, reason, tol, h33_tol, 0, (src.shape[0] + _BLOCK - 1) // _BLOCK)
