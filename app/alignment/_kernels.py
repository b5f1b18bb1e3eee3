"""Numba CPU kernels behind :mod:`app.alignment.gauss_newton`: one iteration's image-sized work
(warp the template's points, sample B, the residuals, ``J^T e`` and the Gauss-Newton matrix) in
two fused passes over the template's pixels instead of some forty small torch ops, and the
damped 8x8 solve and warp update in one call instead of a dozen small NumPy ones.

Conventions as in :func:`app.alignment.gauss_newton.sample_at`: pixel coordinates with the
origin at the centre of the top-left pixel; a point is inside B when it lands in front of the
camera (w > 0) and within B's pixel centres, ``0 <= u <= W - 1`` and ``0 <= v <= H - 1``, so its
four bilinear neighbours are B's pixels (the same sample as ``cv2.warpPerspective(B, b_H_a,
size_a, flags=INTER_LINEAR | WARP_INVERSE_MAP)``). Images and steepest-descent images are
float32; the warp and every sum are float64.
"""

from __future__ import annotations

import numba as nb
import numpy as np

__all__ = ["damped_step", "least_squares_terms", "warp_sample", "weighted_terms"]

_NB = {"cache": True, "nogil": True, "fastmath": False, "error_model": "numpy"}


@nb.njit(**_NB)
def warp_sample(b, H, xs, ys, t, values, inside):
    """Sample B at ``H @ (x, y, 1)`` for the template's points.

    Args:
        b: (Hb, Wb) float32 image B.
        H: (3, 3) float64, A pixel -> B pixel.
        xs, ys: (N,) float32 pixel coordinates in A; t: (N,) float32 A's values there.
        values: (N,) float32 out: B's bilinear samples (0 outside).
        inside: (N,) bool out.

    Returns:
        ``(n, sum t, sum t^2, sum b, sum b^2)`` over the points inside (float64 sums).
    """
    hb, wb = b.shape
    umax, vmax = wb - 1.0, hb - 1.0
    # the top-left neighbour stays one short of the last column/row, so that u = W - 1 reads
    # the last pixel with weight 1 (a one-pixel-wide image reads its only column)
    xlast, ylast = max(wb - 2, 0), max(hb - 2, 0)
    dx, dy = min(wb - 1, 1), min(hb - 1, 1)
    h00, h01, h02 = H[0, 0], H[0, 1], H[0, 2]
    h10, h11, h12 = H[1, 0], H[1, 1], H[1, 2]
    h20, h21, h22 = H[2, 0], H[2, 1], H[2, 2]
    n = 0
    st = stt = sb = sbb = 0.0
    for i in range(xs.shape[0]):
        x, y = np.float64(xs[i]), np.float64(ys[i])
        w = h20 * x + h21 * y + h22
        iw = 1.0 / w if w > 0.0 else np.nan  # behind the camera: u, v are NaN, outside
        u = (h00 * x + h01 * y + h02) * iw
        v = (h10 * x + h11 * y + h12) * iw
        if not (0.0 <= u <= umax and 0.0 <= v <= vmax):
            values[i] = 0.0
            inside[i] = False
            continue
        x0 = min(int(u), xlast)
        y0 = min(int(v), ylast)
        fx, fy = u - x0, v - y0
        p00, p01 = np.float64(b[y0, x0]), np.float64(b[y0, x0 + dx])
        p10, p11 = np.float64(b[y0 + dy, x0]), np.float64(b[y0 + dy, x0 + dx])
        top = p00 + fx * (p01 - p00)
        s = top + fy * (p10 + fx * (p11 - p10) - top)
        values[i] = s
        inside[i] = True
        tv = np.float64(t[i])
        n += 1
        st += tv
        stt += tv * tv
        sb += s
        sbb += s * s
    return n, st, stt, sb, sbb


@nb.njit(**_NB)
def least_squares_terms(values, inside, t, sd, gain, bias, e, grad, hess, hess_mode):
    """Residuals ``e = (gain * B + bias - A) * inside`` (written to ``e``, float32), their sum of
    squares (returned), ``grad = sd^T e`` (8,) and into ``hess`` (8, 8) the sum of ``sd_i sd_i^T``
    over the points inside (``hess_mode`` 1) or outside (2: to subtract from the full matrix);
    0 leaves ``hess`` alone.

    ``sd``: (N, 8) float32 steepest-descent images, one row per point."""
    sq = 0.0
    g = np.zeros(8)
    h = np.zeros((8, 8))
    for i in range(t.shape[0]):
        row = sd[i]
        if inside[i]:
            r = gain * values[i] + bias - t[i]
            e[i] = r
            sq += r * r
            for k in range(8):
                g[k] += row[k] * r
        else:
            e[i] = 0.0
        if hess_mode != 0 and inside[i] == (hess_mode == 1):
            for k in range(8):
                rk = np.float64(row[k])
                for m in range(k + 1):
                    h[k, m] += rk * row[m]
    for k in range(8):
        grad[k] = g[k]
        if hess_mode != 0:
            for m in range(k + 1):
                hess[k, m] = h[k, m]
                hess[m, k] = h[k, m]
    return sq


@nb.njit(**_NB)
def weighted_terms(e, w, sd, grad, hess):
    """``grad = sd^T (w e)`` and ``hess = sd^T diag(w) sd`` (the IRLS system)."""
    g = np.zeros(8)
    h = np.zeros((8, 8))
    for i in range(e.shape[0]):
        wi = np.float64(w[i])
        if wi == 0.0:
            continue
        row = sd[i]
        we = wi * e[i]
        for k in range(8):
            rk = np.float64(row[k])
            g[k] += rk * we
            wr = wi * rk
            for m in range(k + 1):
                h[k, m] += wr * row[m]
    for k in range(8):
        grad[k] = g[k]
        for m in range(k + 1):
            hess[k, m] = h[k, m]
            hess[m, k] = h[k, m]


@nb.njit(**_NB)
def _solve_subsystem(A, b, free):
    """``A[free][:, free] x = b[free]`` by Gaussian elimination with partial pivoting, scattered
    into an (8,) vector (zeros elsewhere); all-NaN when a pivot is exactly zero."""
    k = free.shape[0]
    M = np.empty((k, k + 1))
    for r in range(k):
        for c in range(k):
            M[r, c] = A[free[r], free[c]]
        M[r, k] = b[free[r]]
    x = np.zeros(8)
    for c in range(k):
        p = c
        for r in range(c + 1, k):
            if abs(M[r, c]) > abs(M[p, c]):
                p = r
        if M[p, c] == 0.0:
            x[:] = np.nan
            return x
        if p != c:
            for j in range(c, k + 1):
                M[c, j], M[p, j] = M[p, j], M[c, j]
        for r in range(c + 1, k):
            f = M[r, c] / M[c, c]
            for j in range(c, k + 1):
                M[r, j] -= f * M[c, j]
    sol = np.empty(k)
    for r in range(k - 1, -1, -1):
        acc = M[r, k]
        for j in range(r + 1, k):
            acc -= M[r, j] * sol[j]
        sol[r] = acc / M[r, r]
    for r in range(k):
        x[free[r]] = sol[r]
    return x


@nb.njit(**_NB)
def _inverse3(M):
    """Inverse of a (3, 3) matrix by its adjugate; all-NaN when singular."""
    c00 = M[1, 1] * M[2, 2] - M[1, 2] * M[2, 1]
    c01 = M[1, 2] * M[2, 0] - M[1, 0] * M[2, 2]
    c02 = M[1, 0] * M[2, 1] - M[1, 1] * M[2, 0]
    det = M[0, 0] * c00 + M[0, 1] * c01 + M[0, 2] * c02
    out = np.empty((3, 3))
    if det == 0.0:
        out[:] = np.nan
        return out
    g = 1.0 / det
    out[0, 0] = c00 * g
    out[1, 0] = c01 * g
    out[2, 0] = c02 * g
    out[0, 1] = (M[0, 2] * M[2, 1] - M[0, 1] * M[2, 2]) * g
    out[1, 1] = (M[0, 0] * M[2, 2] - M[0, 2] * M[2, 0]) * g
    out[2, 1] = (M[0, 1] * M[2, 0] - M[0, 0] * M[2, 1]) * g
    out[0, 2] = (M[0, 1] * M[1, 2] - M[0, 2] * M[1, 1]) * g
    out[1, 2] = (M[0, 2] * M[1, 0] - M[0, 0] * M[1, 2]) * g
    out[2, 2] = (M[0, 0] * M[1, 1] - M[0, 1] * M[1, 0]) * g
    return out


@nb.njit(**_NB)
def damped_step(hess, grad, lam, free, H, norm, norm_inv, corners, scale, out):
    """One inverse-compositional update: ``dp`` from ``(hess + lam diag(hess) + ridge) dp =
    grad`` over the ``free`` parameters (int indices into the 8), ``dW = I + [dp, 0]`` in the
    template's normalised frame, ``out = H norm^-1 dW^-1 norm`` scaled to ``H33 = 1``.

    Returns the largest displacement of the template's ``corners`` ((3, 4) normalised,
    homogeneous) under ``dW``, in level pixels (``scale`` per normalised unit); NaN or inf
    (``out`` then undefined) when the system or ``dW`` is singular or the step not finite."""
    A = hess.copy()
    if lam > 0.0:
        for k in range(8):
            A[k, k] += lam * hess[k, k]
    ridge = 1e-12 * max(A[0, 0], A[1, 1], A[2, 2], A[3, 3], A[4, 4], A[5, 5], A[6, 6], A[7, 7])
    for k in range(8):
        A[k, k] += ridge
    dp = _solve_subsystem(A, grad, free)
    dW = np.eye(3)
    for k in range(8):
        dW[k // 3, k % 3] += dp[k]
    step = 0.0
    for c in range(4):
        x, y, w = corners[0, c], corners[1, c], corners[2, c]
        qx = dW[0, 0] * x + dW[0, 1] * y + dW[0, 2] * w
        qy = dW[1, 0] * x + dW[1, 1] * y + dW[1, 2] * w
        qw = dW[2, 0] * x + dW[2, 1] * y + dW[2, 2] * w
        dx, dy = qx / qw - x / w, qy / qw - y / w
        d = np.sqrt(dx * dx + dy * dy)
        if not d <= step:  # NaN propagates
            step = d
    step *= scale
    if not np.isfinite(step):
        return step
    G = H @ norm_inv @ _inverse3(dW) @ norm
    out[:, :] = G / G[2, 2]
    return step
