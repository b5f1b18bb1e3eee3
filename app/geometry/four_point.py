"""Batched minimal solvers: 4-point homographies (ACA, SKS), the rectangle-source fast path and
the 3-point affine transform.

All functions take target/source points as ``(B, 4, 2)`` (or ``(B, 3, 2)``) pixel coordinates and
return ``dst_H_src`` with ``x_dst ~ dst_H_src @ x_src`` (see ``app.geometry`` for conventions).
NumPy inputs (and CPU tensors that need no gradient) run on the Numba kernels: parallel over the
batch, results in the input dtype; float64 arithmetic inside, except the default ACA (H33 = 1) on
float32 input, which computes in float32 in a conditioned frame (its error is that of rounding
the float64 answer to float32, within a small factor) and sends flagged items to float64.
Tensors on a GPU, or that require grad, run the same algebra as vectorised torch ops
(``aca_torch``).

ACA (affine-core-affine) computes ``H = A2^-1 C A1`` with no division and no linear system; SKS
(similarity-kernel-similarity) computes ``H = S2^-1 K S1``. Both are exact for any four points in
general position; items that are not (repeated points, three collinear points, ``H33 ~ 0`` when
normalising, non-finite input) are flagged per item, their matrix zeroed, and never reach a
caller as inf/NaN.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from app.geometry import _kernels as K
from app.geometry.reasons import Reason

__all__ = [
    "AffineResult",
    "FourPointResult",
    "aca_torch",
    "affine_from_3_points",
    "rect_to_quad",
    "solve_four_point",
    "solve_homography_torch",
]

Method = Literal["aca", "sks"]
Normalize = Literal["h33", "frobenius"]

_METHODS = {"aca": 0, "sks": 1}
_NORMS = {"h33": 0, "frobenius": 1}
# Scale-free degeneracy tolerance: |sin| of the angle between two difference vectors, and the
# squared-distance ratio for coincident points. float32 inputs carry ~1e-7 relative rounding.
_TOL = {np.dtype(np.float64): 1e-12, np.dtype(np.float32): 1e-6}
_H33_TOL = 1e-14
_OK = int(Reason.OK)  # a plain int: comparing an array with the IntEnum is 10x slower
# Below this many items a parallel launch costs more than it saves (thread wake-up, worse when
# the cores are shared), so the single-threaded twin of each kernel runs instead.
PARALLEL_MIN_ITEMS = 16_384


@dataclass(frozen=True)
class FourPointResult:
    """``dst_H_src``: (B, 3, 3), zeros where invalid; ``valid``: (B,) bool; ``reason``: (B,)
    uint8 codes of :class:`app.geometry.reasons.Reason` (0 = ok)."""

    dst_H_src: np.ndarray
    valid: np.ndarray
    reason: np.ndarray


@dataclass(frozen=True)
class AffineResult:
    """``dst_A_src``: (B, 2, 3) affine matrices; ``valid``/``reason`` as in FourPointResult."""

    dst_A_src: np.ndarray
    valid: np.ndarray
    reason: np.ndarray


def _as_points(x: np.ndarray, n: int, name: str, dtype: np.dtype | None) -> np.ndarray:
    a = np.asarray(x)
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3 or a.shape[1:] != (n, 2):
        raise ValueError(f"{name} must have shape (B, {n}, 2) or ({n}, 2), got {a.shape}")
    if not np.issubdtype(a.dtype, np.number) or np.iscomplexobj(a):
        raise ValueError(f"{name} must be real numbers, got dtype {a.dtype}")
    target = np.dtype(dtype) if dtype is not None else None
    if target is None:
        # float32/float64 of either byte order keep their precision; anything else is float64
        floating = a.dtype.kind == "f" and a.dtype.itemsize in (4, 8)
        target = np.dtype(f"f{a.dtype.itemsize}") if floating else np.dtype(np.float64)
    if target not in (np.float32, np.float64):
        raise ValueError(f"dtype must be float32 or float64, got {target}")
    out = np.ascontiguousarray(a, dtype=target)  # native byte order, C order
    # Numba compiles one specialisation per layout; the warm-up builds C-contiguous, writeable
    # arrays, aligned or not (a view into a request body). A read-only input (a bytes body,
    # np.load of a file) would need its own at request time: copy it once instead.
    return out if out.flags.writeable else out.copy()


def solve_four_point(
    src: np.ndarray,
    dst: np.ndarray,
    *,
    method: Method = "aca",
    normalize: Normalize = "h33",
    dtype: np.dtype | type | None = None,
) -> FourPointResult:
    """Homographies from four correspondences per item.

    Args:
        src: (B, 4, 2) or (4, 2) source points (x, y) in pixels.
        dst: same shape, the corresponding target points, in the same order.
        method: ``"aca"`` (default; 85 flops, no division) or ``"sks"``.
        normalize: ``"h33"`` (H[2, 2] = 1) or ``"frobenius"`` (unit norm, H[2, 2] >= 0).
        dtype: float64 (default for non-float32 inputs) or float32 (half the bytes; ACA with
            ``normalize="h33"`` then computes in float32, the other paths in float64).

    Returns:
        :class:`FourPointResult` with ``dst_H_src`` (B, 3, 3).

    Example:
        >>> src = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], float)
        >>> solve_four_point(src, 2 * src).dst_H_src[0].round(6).tolist()
        [[2.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 1.0]]
    """
    if method not in _METHODS:
        raise ValueError(f"method must be one of {sorted(_METHODS)}, got {method!r}")
    if normalize not in _NORMS:
        raise ValueError(f"normalize must be one of {sorted(_NORMS)}, got {normalize!r}")
    s = _as_points(src, 4, "src", dtype)
    d = _as_points(dst, 4, "dst", s.dtype)
    if s.shape[0] != d.shape[0]:
        raise ValueError(f"src and dst batch sizes differ: {s.shape[0]} vs {d.shape[0]}")
    H = np.empty((s.shape[0], 3, 3), dtype=s.dtype)
    reason = np.empty(s.shape[0], dtype=np.uint8)
    parallel = len(s) >= PARALLEL_MIN_ITEMS
    if method == "aca" and normalize == "h33":  # the default: blocked, branch-free hot loop
        kernel = K.aca_h33_kernel if parallel else K.aca_h33_kernel_serial
        kernel(s, d, H, reason, _TOL[s.dtype], _H33_TOL)
    else:
        kernel = K.four_point_kernel if parallel else K.four_point_kernel_serial
        kernel(s, d, H, reason, _METHODS[method], _NORMS[normalize], _TOL[s.dtype], _H33_TOL)
    return FourPointResult(H, reason == _OK, reason)


def rect_to_quad(
    dst: np.ndarray,
    rect: tuple[float, float, float, float],
    *,
    normalize: Normalize = "h33",
    dtype: np.dtype | type | None = None,
) -> FourPointResult:
    """Fast path when the source is an axis-aligned rectangle (HomographyNet's patches).

    Args:
        dst: (B, 4, 2) target corners in the order top-left, top-right, bottom-right, bottom-left.
        rect: source rectangle ``(x0, y0, width, height)``: corners (x0, y0), (x0 + width, y0),
            (x0 + width, y0 + height), (x0, y0 + height).

    Returns:
        :class:`FourPointResult`; identical (to rounding) to ``solve_four_point`` on the corners.
    """
    x0, y0, w, h = (float(v) for v in rect)
    if not all(np.isfinite([x0, y0, w, h])) or w <= 0 or h <= 0:
        raise ValueError(f"rect must be finite with positive width and height, got {rect}")
    d = _as_points(dst, 4, "dst", dtype)
    H = np.empty((d.shape[0], 3, 3), dtype=d.dtype)
    reason = np.empty(d.shape[0], dtype=np.uint8)
    kernel = K.rect_kernel if len(d) >= PARALLEL_MIN_ITEMS else K.rect_kernel_serial
    kernel(d, x0, y0, w, h, H, reason, _NORMS[normalize], _TOL[d.dtype], _H33_TOL)
    return FourPointResult(H, reason == _OK, reason)


def affine_from_3_points(
    src: np.ndarray, dst: np.ndarray, *, dtype: np.dtype | type | None = None
) -> AffineResult:
    """Affine maps from three correspondences: ACA's affine step alone (one division).

    Args:
        src, dst: (B, 3, 2) or (3, 2) points.

    Returns:
        :class:`AffineResult` with ``dst_A_src`` (B, 2, 3), as ``cv2.getAffineTransform``.
    """
    s = _as_points(src, 3, "src", dtype)
    d = _as_points(dst, 3, "dst", s.dtype)
    if s.shape[0] != d.shape[0]:
        raise ValueError(f"src and dst batch sizes differ: {s.shape[0]} vs {d.shape[0]}")
    A = np.empty((s.shape[0], 2, 3), dtype=s.dtype)
    reason = np.empty(s.shape[0], dtype=np.uint8)
    kernel = K.affine_kernel if len(s) >= PARALLEL_MIN_ITEMS else K.affine_kernel_serial
    kernel(s, d, A, reason, _TOL[s.dtype])
    return AffineResult(A, reason == _OK, reason)


def _conditioner(pts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Centroid (B, 1, 2) and isotropic scale (B, 1, 1) so that the points span ~[-1, 1]."""
    c = pts.mean(dim=1, keepdim=True)
    s = (pts - c).abs().amax(dim=(1, 2), keepdim=True).clamp_min(torch.finfo(pts.dtype).tiny)
    return c, s


def aca_torch(
    src: torch.Tensor, dst: torch.Tensor, *, condition: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """ACA in vectorised torch: differentiable, any device and float dtype.

    Args:
        src, dst: (B, 4, 2) corresponding points.
        condition: solve on centred, scaled points (keeps float32 far from overflow).

    Returns:
        ``dst_H_src`` (B, 3, 3) with H[2, 2] = 1 (identity where invalid) and ``valid`` (B,) bool.
    """
    if src.shape != dst.shape or src.ndim != 3 or src.shape[1:] != (4, 2):
        raise ValueError(f"src and dst must both be (B, 4, 2), got {src.shape} and {dst.shape}")
    if condition:
        cs, ss = _conditioner(src)
        cd, sd = _conditioner(dst)
        s_, d_ = (src - cs) / ss, (dst - cd) / sd
    else:
        s_, d_ = src, dst
    M1, N1, P1, Q1 = s_.unbind(1)
    M2, N2, P2, Q2 = d_.unbind(1)

    def cross(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]

    n, p, q = N1 - M1, P1 - M1, Q1 - M1
    n2, p2, q2 = N2 - M2, P2 - M2, Q2 - M2
    f1, a3, b3 = cross(n, p), cross(q, p), cross(n, q)
    f2, a4, b4 = cross(n2, p2), cross(q2, p2), cross(n2, q2)
    w1 = f1 - a3 - b3
    c11, c22, c33 = b3 * a4 * w1, a3 * b4 * w1, a3 * b3 * (f2 - a4 - b4)
    one = torch.ones_like(c11)
    N2h = torch.stack([N2[:, 0], N2[:, 1], one], -1)
    P2h = torch.stack([P2[:, 0], P2[:, 1], one], -1)
    M2h = torch.stack([M2[:, 0], M2[:, 1], one], -1)
    g0 = c11[:, None] * N2h - c33[:, None] * M2h  # (B, 3) columns of A2^-1 C
    g1 = c22[:, None] * P2h - c33[:, None] * M2h
    g2 = c33[:, None] * M2h
    ta = p[:, 0] * M1[:, 1] - p[:, 1] * M1[:, 0]
    tb = n[:, 1] * M1[:, 0] - n[:, 0] * M1[:, 1]
    h0 = g0 * p[:, 1:2] - g1 * n[:, 1:2]
    h1 = g1 * n[:, 0:1] - g0 * p[:, 0:1]
    h2 = g0 * ta[:, None] + g1 * tb[:, None] + g2 * f1[:, None]
    H = torch.stack([h0, h1, h2], dim=-1)  # (B, 3, 3), columns stacked
    if condition:
        z, o = torch.zeros_like(ss[:, 0, 0]), torch.ones_like(ss[:, 0, 0])
        is1 = 1.0 / ss[:, 0, 0]
        T1 = torch.stack(
            [is1, z, -cs[:, 0, 0] * is1, z, is1, -cs[:, 0, 1] * is1, z, z, o], -1
        ).view(-1, 3, 3)
        s2 = sd[:, 0, 0]
        T2inv = torch.stack([s2, z, cd[:, 0, 0], z, s2, cd[:, 0, 1], z, z, o], -1).view(-1, 3, 3)
        H = T2inv @ H @ T1
    h33 = H[:, 2, 2]
    scale = H.abs().amax(dim=(1, 2))
    finite = torch.isfinite(H).all(dim=(1, 2))
    eps = torch.finfo(H.dtype).eps
    valid = finite & (h33.abs() > 64 * eps * scale) & (f1 != 0) & (f2 != 0)
    valid = valid & (a3 != 0) & (b3 != 0) & (w1 != 0) & (a4 != 0) & (b4 != 0) & (f2 - a4 - b4 != 0)
    eye = torch.eye(3, dtype=H.dtype, device=H.device).expand_as(H)
    safe = torch.where(valid[:, None, None], H, eye)
    return safe / safe[:, 2:3, 2:3], valid


def solve_homography_torch(src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
    """``dst_H_src`` (B, 3, 3), H[2, 2] = 1, from (B, 4, 2) corner tensors (ACA, torch ops;
    differentiable, on the tensors' device). Degenerate items come back as the identity; use
    :func:`aca_torch` for the validity mask."""
    return aca_torch(src, dst)[0]
