"""One entry point for callers outside the package (the /refine and /estimate services, the
bench): NumPy or torch images in, a checked :class:`RefineResult` out. No HTTP here.

Convention: ``b_H_a`` maps pixel coordinates of A to pixel coordinates of B (``x_b ~ b_H_a @
x_a``, origin at the centre of the top-left pixel, ``H[2, 2] = 1``), so
``cv2.warpPerspective(image_a, b_H_a, (Wb, Hb))`` lines A up with B; the same convention as
``/estimate`` and ``/solve``.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch
from kornia.geometry.transform import warp_perspective

from app.alignment.gauss_newton import align_gauss_newton
from app.alignment.tutorial import align_tutorial_adam
from app.alignment.types import PhotometricError, RefineOptions, RefineResult
from app.core.errors import DomainError
from app.imaging import resize_matrix, to_gray

__all__ = [
    "AlignmentInputError",
    "check_homography",
    "overlay_image",
    "photometric_error",
    "refine_homography",
    "to_tensor",
]

Method = Literal["gauss_newton", "tutorial_adam"]
_COND_LIMIT = 1e12


class AlignmentInputError(DomainError, ValueError):
    """Input that cannot be aligned (kind ``invalid``); ``field`` names the argument at fault."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message, "invalid", field)


def check_homography(H: object, field: str = "init") -> np.ndarray:
    """A 3x3 finite, non-singular matrix with ``H[2, 2]`` usable for normalisation -> float64
    (3, 3) scaled so ``H[2, 2] = 1``; anything else raises :class:`AlignmentInputError`."""
    try:
        M = np.asarray(H, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise AlignmentInputError(f"{field}: not a numeric 3x3 matrix ({exc})", field) from exc
    if M.shape == (1, 3, 3):
        M = M[0]
    if M.shape != (3, 3):
        raise AlignmentInputError(f"{field}: must be a 3x3 matrix, got shape {M.shape}", field)
    if not np.isfinite(M).all():
        raise AlignmentInputError(f"{field}: has non-finite entries (NaN or inf)", field)
    scale = np.abs(M).max()
    if scale == 0:
        raise AlignmentInputError(f"{field}: is all zeros (singular)", field)
    if abs(M[2, 2]) < 1e-12 * scale:
        raise AlignmentInputError(f"{field}: H[2][2] is ~0, cannot normalise to H[2][2] = 1", field)
    M = M / M[2, 2]
    s = np.linalg.svd(M, compute_uv=False)
    if s[-1] <= s[0] / _COND_LIMIT:
        raise AlignmentInputError(
            f"{field}: is singular (condition number {s[0] / max(s[-1], 1e-300):.3g})", field
        )
    return M


def to_tensor(image: np.ndarray | torch.Tensor, field: str, device: torch.device | str = "cpu"):
    """(H, W) uint8/float image, (H, W, 3) BGR uint8, or a (1, 1, H, W) / (H, W) tensor in
    [0, 1] -> (1, 1, H, W) float32 tensor in [0, 1] on ``device``."""
    if isinstance(image, torch.Tensor):
        t = image
        if t.ndim == 2:
            t = t[None, None]
        if t.ndim != 4 or t.shape[:2] != (1, 1):
            raise AlignmentInputError(
                f"{field}: tensor must be (H, W) or (1, 1, H, W), got {tuple(t.shape)}", field
            )
        t = t.to(device, torch.float32)
    else:
        a = np.asarray(image)
        if a.ndim == 3 and a.shape[2] in (3, 4):
            a = to_gray(a)
        if a.ndim != 2:
            raise AlignmentInputError(f"{field}: expected a 2-D image, got shape {a.shape}", field)
        if a.dtype == np.uint8:
            a = a.astype(np.float32) / 255.0
        t = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))[None, None].to(device)
    if min(t.shape[-2:]) < 8:
        raise AlignmentInputError(f"{field}: {tuple(t.shape[-2:])} is too small", field)
    if not bool(torch.isfinite(t).all()):
        raise AlignmentInputError(f"{field}: has non-finite pixel values", field)
    return t


@torch.inference_mode()
def photometric_error(
    image_a: torch.Tensor, image_b: torch.Tensor, b_H_a: np.ndarray
) -> PhotometricError:
    """Mean |A - B warped onto A| in gray levels over the pixels of A that land inside B.

    Args:
        image_a: (1, 1, Ha, Wa) in [0, 1]; image_b: (1, 1, Hb, Wb) in [0, 1].
        b_H_a: (3, 3) A pixel -> B pixel.
    """
    ha, wa = image_a.shape[-2:]
    try:
        inv = np.linalg.inv(b_H_a)
    except np.linalg.LinAlgError:
        return PhotometricError(mean_abs=math.nan, overlap=0.0)
    a_H_b = torch.as_tensor(inv, dtype=torch.float32, device=image_a.device)
    stack = torch.cat([image_b, torch.ones_like(image_b)], dim=1)
    warped = warp_perspective(stack, a_H_b[None], (ha, wa), align_corners=True)
    valid = warped[:, 1:] > 0.999
    n = int(valid.sum())
    if n == 0:
        return PhotometricError(mean_abs=math.nan, overlap=0.0)
    diff = (warped[:, :1] - image_a).abs()[valid]
    return PhotometricError(mean_abs=float(diff.mean()) * 255.0, overlap=n / float(ha * wa))


@torch.inference_mode()
def overlay_image(
    image_a: torch.Tensor, image_b: torch.Tensor, b_H_a: np.ndarray, max_side: int = 1024
) -> np.ndarray:
    """A warped onto B as a false-colour composite in B's frame, (h, w, 3) uint8 BGR: B in
    green, warped A in magenta (gray where they agree); downscaled so the long side is at most
    ``max_side``."""
    hb, wb = image_b.shape[-2:]
    s = min(1.0, max_side / max(hb, wb))
    h, w = max(1, round(hb * s)), max(1, round(wb * s))
    S = resize_matrix((wb, hb), (w, h))  # B pixel -> overlay pixel
    dev = image_a.device
    M = torch.as_tensor(S @ b_H_a, dtype=torch.float32, device=dev)[None]
    warped_a = warp_perspective(image_a, M, (h, w), align_corners=True)[0, 0]
    b_small = warp_perspective(
        image_b, torch.as_tensor(S, dtype=torch.float32, device=dev)[None], (h, w)
    )[0, 0]
    rgb = torch.stack([warped_a, b_small, warped_a], dim=-1)  # B, G, R order for OpenCV
    return (rgb.clamp(0, 1) * 255 + 0.5).to(torch.uint8).cpu().numpy()


def refine_homography(
    image_a: np.ndarray | torch.Tensor,
    image_b: np.ndarray | torch.Tensor,
    b_H_a_init: np.ndarray | list | None = None,
    options: RefineOptions | None = None,
    *,
    mask_a: np.ndarray | torch.Tensor | None = None,
    method: Method = "gauss_newton",
    device: torch.device | str | None = None,
    compute_errors: bool = True,
) -> RefineResult:
    """Refine ``b_H_a`` (A pixel -> B pixel) so that B warped onto A matches A photometrically.

    Args:
        image_a, image_b: (H, W) uint8 or float in [0, 1], (H, W, 3) BGR uint8, or tensors
            (H, W) / (1, 1, H, W) in [0, 1]; sizes may differ.
        b_H_a_init: (3, 3) start (``None`` is the identity); checked by :func:`check_homography`.
        options: :class:`RefineOptions` for ``method="gauss_newton"``.
        mask_a: optional (Ha, Wa) bool / nonzero = use, the pixels of A that take part.
        method: ``"gauss_newton"`` (the second-order solver) or ``"tutorial_adam"`` (the Kornia
            tutorial's loop, for comparison; ignores ``options`` and ``mask_a``).
        device: where to compute; default: A's device (CPU for NumPy input).
        compute_errors: fill ``error_before`` / ``error_after`` (two extra warps).

    Raises:
        AlignmentInputError: bad init, image or mask (``field`` names it).

    Example:
        >>> a = (np.random.default_rng(0).random((60, 80)) * 255).astype(np.uint8)
        >>> r = refine_homography(a, a)
        >>> bool(np.allclose(r.b_H_a, np.eye(3), atol=1e-3))
        True
    """
    H0 = np.eye(3) if b_H_a_init is None else check_homography(b_H_a_init, "init")
    dev = device or (image_a.device if isinstance(image_a, torch.Tensor) else "cpu")
    a = to_tensor(image_a, "image_a", dev)
    b = to_tensor(image_b, "image_b", dev)
    mask = None
    if mask_a is not None:
        m = torch.as_tensor(np.asarray(mask_a) if not isinstance(mask_a, torch.Tensor) else mask_a)
        m = m.to(dev).reshape(m.shape[-2:]) if m.ndim >= 2 else m
        if tuple(m.shape) != tuple(a.shape[-2:]):
            raise AlignmentInputError(
                f"mask: shape {tuple(m.shape)} does not match image_a {tuple(a.shape[-2:])}",
                "mask",
            )
        mask = (m != 0)[None, None]
        if int(mask.sum()) < 64:
            raise AlignmentInputError("mask: fewer than 64 pixels are selected", "mask")
    if method == "tutorial_adam":
        import time

        start = time.perf_counter()
        H = align_tutorial_adam(a, b, H0)
        result = RefineResult(H, True, False, seconds=time.perf_counter() - start)
    elif method == "gauss_newton":
        result = align_gauss_newton(a, b, torch.as_tensor(H0), options, mask)
    else:
        raise AlignmentInputError(f"method: unknown {method!r}", "method")
    if compute_errors:
        result.error_before = photometric_error(a, b, H0)
        result.error_after = photometric_error(a, b, result.b_H_a)
    return result
