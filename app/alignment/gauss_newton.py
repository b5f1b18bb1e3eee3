"""Second-order photometric alignment: inverse-compositional Gauss-Newton / Levenberg-Marquardt
on the 8 parameters of a homography, coarse to fine.

Model: find ``b_H_a`` (A pixel -> B pixel) with ``gain * B(b_H_a x) + bias ~ A(x)`` for the
pixels ``x`` of A that land inside B. A is the template: its gradients, the steepest-descent
images and the warp Jacobian are computed once per level (Baker & Matthews, "Lucas-Kanade 20
years on", the inverse-compositional algorithm), so an iteration is one bilinear sampling of B
at the template's points, a few reductions and an 8x8 solve:

    e(x)   = gain * B(W(x; p)) + bias - A(x)               (gain, bias: closed form, optional)
    dp     = (J^T w J + lambda diag(J^T w J))^-1 J^T w e    (w: overlap mask x robust weights)
    W(p)  <- W(p) o W(dp)^-1

The update is parameterised in A's normalised coordinates (centre at the image centre, the long
half-side = 1), ``dW = I + [[p0 p1 p2] [p3 p4 p5] [p6 p7 0]]``, so the 8x8 system is well
conditioned at every level. A level ends when an update moves no corner of A by more than the
level's tolerance (pixels), when its iterations run out, or when the total iteration or time
budget runs out (then the lowest-cost estimate seen at that level is returned, flagged).

At the coarsest level (long side ~40-80 px) the warp is first solved as a translation, then an
affine map, then the homography, which widens the basin; if the match is still poor there
(normalised score above ``search_threshold``), 10 more starts (shifts of +-15%, scales 0.8 and
1.25) are tried and the best kept. The robust options refit gain and bias with the IRLS weights.

Images are float32 in [0, 1]; homographies and the 8x8 systems are float64 NumPy arrays. The
image-sized work of an iteration runs on the images' device: on the CPU in two fused Numba
passes (:mod:`app.alignment._kernels`), on CUDA as torch ops (:func:`sample_at`).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F
from kornia.filters import spatial_gradient

from app.alignment import _kernels as K
from app.alignment.pyramid import gaussian_pyramid, level_from_full, num_levels_for
from app.alignment.types import LevelReport, RefineOptions, RefineResult
from app.geometry.points import image_corners

__all__ = ["align_gauss_newton", "sample_at"]

_HUBER_C = 1.345
_TUKEY_C = 4.685
_MIN_PIXELS = 32
_MAX_LAMBDA = 1e8
# coarse search starts: (scale about the centre, shift x, shift y as fractions of the size)
_SEARCH_STARTS = [
    *((1.0, tx, ty) for tx in (0.0, -0.15, 0.15) for ty in (0.0, -0.15, 0.15) if tx or ty),
    (0.8, 0.0, 0.0),
    (1.25, 0.0, 0.0),
]


@dataclass
class _CpuTemplate:
    """The CPU kernels' view of a :class:`_Template` (NumPy, zero-copy where possible) and the
    per-iteration buffers: ``xs``/``ys``/``values`` (N,) float32, ``sd`` (N, 8) float32."""

    xs: np.ndarray
    ys: np.ndarray
    values: np.ndarray
    sd: np.ndarray
    hess: np.ndarray
    sampled: np.ndarray
    inside: np.ndarray
    residuals: np.ndarray


@dataclass
class _Template:
    """Level-constant data of template A: ``points`` (3, N) homogeneous pixel coords of the used
    pixels, ``values`` (N,), ``sd`` (8, N) steepest-descent images, ``hess`` (8, 8) for the full
    mask, ``norm`` (3, 3) pixel -> normalised, ``corners`` (3, 4) normalised corners of A (both
    float64 NumPy); ``cpu``: the same for the CPU kernels (None on other devices)."""

    points: torch.Tensor
    values: torch.Tensor
    values_sq: torch.Tensor
    sd: torch.Tensor
    hess: torch.Tensor
    norm: np.ndarray
    corners: np.ndarray
    scale: float
    size: tuple[int, int]
    cpu: _CpuTemplate | None = None


def _template(a: torch.Tensor, mask: torch.Tensor | None, border: int) -> _Template:
    """a: (1, 1, h, w) float32; mask: (1, 1, h, w) bool or None."""
    h, w = a.shape[-2:]
    dev = a.device
    grad = spatial_gradient(a, mode="diff", normalized=True)[0, 0]  # (2, h, w): d/dx, d/dy
    b = max(border, 1)
    scale = max(w, h) / 2.0
    cx, cy = (w - 1) / 2.0, (h - 1) / 2.0
    if mask is None:  # the interior crop, no gather
        yy, xx = torch.meshgrid(
            torch.arange(b, h - b, dtype=torch.float32, device=dev),
            torch.arange(b, w - b, dtype=torch.float32, device=dev),
            indexing="ij",
        )
        xs, ys = xx.reshape(-1), yy.reshape(-1)
        crop = grad[:, b : h - b, b : w - b].reshape(2, -1) * scale
        gu, gv = crop[0], crop[1]
        values = a[0, 0, b : h - b, b : w - b].reshape(-1)
    else:
        keep = torch.zeros(h, w, dtype=torch.bool, device=dev)
        keep[b : h - b, b : w - b] = True
        keep &= mask[0, 0]
        idx = keep.flatten().nonzero().squeeze(1)
        ys = torch.div(idx, w, rounding_mode="floor").to(torch.float32)
        xs = (idx % w).to(torch.float32)
        gu = grad[0].flatten()[idx] * scale
        gv = grad[1].flatten()[idx] * scale
        values = a.flatten()[idx]
    u, v = (xs - cx) / scale, (ys - cy) / scale
    r = gu * u + gv * v
    sd = torch.stack([gu * u, gu * v, gu, gv * u, gv * v, gv, -u * r, -v * r])  # (8, N)
    norm = np.array([[1 / scale, 0, -cx / scale], [0, 1 / scale, -cy / scale], [0, 0, 1]])
    corners = np.ones((3, 4))  # homogeneous, one per column
    corners[:2] = image_corners((w, h)).T
    hess = (sd @ sd.T).double()
    cpu = None
    if dev.type == "cpu":
        n = values.numel()
        cpu = _CpuTemplate(
            xs=xs.contiguous().numpy(),
            ys=ys.contiguous().numpy(),
            values=values.contiguous().numpy(),
            sd=np.ascontiguousarray(sd.numpy().T),
            hess=hess.numpy(),
            sampled=np.empty(n, np.float32),
            inside=np.empty(n, np.bool_),
            residuals=np.empty(n, np.float32),
        )
    return _Template(
        points=torch.stack([xs, ys, torch.ones_like(xs)]),
        values=values,
        values_sq=values * values,
        sd=sd.contiguous(),
        hess=hess,
        norm=norm,
        corners=norm @ corners,
        scale=scale,
        size=(w, h),
        cpu=cpu,
    )


def _robust_weights(e: torch.Tensor, m: torch.Tensor, kind: str) -> tuple[torch.Tensor, float]:
    """IRLS weights for residuals ``e`` (zero off the mask ``m``) and the scale sigma."""
    r = e[m].abs()
    if r.numel() > 50_000:  # the median of a strided subsample is enough for a scale
        r = r[:: r.numel() // 50_000 + 1]
    sigma = float(r.median()) * 1.4826 + 1e-6
    a = e.abs()
    if kind == "huber":
        c = _HUBER_C * sigma
        return torch.where(a <= c, 1.0, c / a.clamp_min(1e-12)), sigma
    c = _TUKEY_C * sigma
    return (1 - (a / c).clamp(max=1.0) ** 2) ** 2, sigma


def _robust_cost(e: torch.Tensor, kind: str, sigma: float) -> torch.Tensor:
    a = e.abs()
    if kind == "huber":
        c = _HUBER_C * sigma
        return torch.where(a <= c, 0.5 * a * a, c * (a - 0.5 * c)).sum()
    c = _TUKEY_C * sigma
    return (c * c / 6 * (1 - (1 - (a / c).clamp(max=1.0) ** 2) ** 3)).sum()


def _robust_weights_np(e: np.ndarray, m: np.ndarray, kind: str) -> tuple[np.ndarray, float]:
    """:func:`_robust_weights` on NumPy arrays (the CPU path)."""
    r = np.abs(e[m])
    if r.size > 50_000:
        r = r[:: r.size // 50_000 + 1]
    sigma = float(np.median(r)) * 1.4826 + 1e-6
    a = np.abs(e)
    if kind == "huber":
        c = _HUBER_C * sigma
        return np.where(a <= c, np.float32(1.0), c / np.maximum(a, 1e-12)), sigma
    c = _TUKEY_C * sigma
    return (1 - np.minimum(a / c, 1.0) ** 2) ** 2, sigma


def _robust_cost_np(e: np.ndarray, kind: str, sigma: float) -> float:
    a = np.abs(e).astype(np.float64)
    if kind == "huber":
        c = _HUBER_C * sigma
        return float(np.where(a <= c, 0.5 * a * a, c * (a - 0.5 * c)).sum())
    c = _TUKEY_C * sigma
    return float((c * c / 6 * (1 - (1 - np.minimum(a / c, 1.0) ** 2) ** 3)).sum())


class _Evaluation:
    """``cost``: what the solver minimises; ``score``: squared residual over the template's
    variance on the overlap (2 (1 - NCC) with gain/bias), comparable between starts; ``n``:
    template pixels inside B; ``grad`` (8,) and ``hess`` (8, 8) float64 NumPy."""

    __slots__ = ("cost", "grad", "hess", "n", "score")

    def __init__(
        self, cost: float, grad: np.ndarray, hess: np.ndarray, n: int, score: float
    ) -> None:
        self.cost, self.grad, self.hess, self.n, self.score = cost, grad, hess, n, score


def sample_at(
    image: torch.Tensor, b_H_a: torch.Tensor, points: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Bilinear samples of B at the images of A's pixels: ``B(b_H_a @ x)``.

    Args:
        image: (1, C, Hb, Wb) image B.
        b_H_a: (3, 3) float64, A pixel -> B pixel.
        points: (3, N) float32 homogeneous A pixels ``(x, y, 1)``.

    Returns:
        ``values`` (N,) for C = 1, else (C, N) (zero outside B) and ``inside`` (N,) bool: the
        point lands in front of the camera and inside B's pixel centres, so all four bilinear
        neighbours are B's pixels. The same sampling as ``cv2.warpPerspective(B, b_H_a, size_a,
        flags=INTER_LINEAR | WARP_INVERSE_MAP)`` and Kornia's ``warp_perspective``.
    """
    hb, wb = image.shape[-2:]
    sx, sy = 2 / max(wb - 1, 1), 2 / max(hb - 1, 1)
    to_grid = b_H_a.new_tensor([[sx, 0, -1], [0, sy, -1], [0, 0, 1]])
    q = (to_grid @ b_H_a).to(torch.float32) @ points  # (3, N); (N, 3) @ (3, 3) is slow
    z = q[2]
    zs = z.where(z.abs() > 1e-12, 1.0)
    gx, gy = q[0] / zs, q[1] / zs
    inside = torch.maximum(gx.abs(), gy.abs()) <= 1.0
    inside &= z > 0
    grid = torch.stack([gx, gy], dim=-1).view(1, 1, -1, 2)
    values = F.grid_sample(image, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    return values[0, :, 0].squeeze(0), inside


def _evaluate(
    tpl: _Template, b: torch.Tensor | np.ndarray, b_H_a: np.ndarray, opts: RefineOptions
) -> _Evaluation | None:
    """Residuals, gradient and Gauss-Newton matrix at ``b_H_a`` ((3, 3) float64, level
    pixels); ``None`` when too few template pixels land inside B. ``b``: the level of B, an
    (Hb, Wb) float32 array on the CPU (``tpl.cpu`` set), else a (1, 1, Hb, Wb) tensor."""
    if tpl.cpu is not None:
        return _evaluate_cpu(tpl.cpu, b, b_H_a, opts)
    Ht = torch.as_tensor(b_H_a, dtype=torch.float64, device=tpl.values.device)
    return _evaluate_torch(tpl, b, Ht, opts)


def _evaluate_cpu(
    c: _CpuTemplate, b: np.ndarray, b_H_a: np.ndarray, opts: RefineOptions
) -> _Evaluation | None:
    """:func:`_evaluate_torch`'s arithmetic in the Numba kernels (sums in float64)."""
    n, st, stt, sb, sbb = K.warp_sample(b, b_H_a, c.xs, c.ys, c.values, c.sampled, c.inside)
    total = c.values.size
    if n < max(_MIN_PIXELS, total // 50):
        return None
    mean_t = st / n
    var_t = max(stt - n * mean_t * mean_t, 1e-12)
    gain, bias = 1.0, 0.0
    if opts.photometric == "gain_bias":
        mean_b = sb / n
        gain = math.sqrt(var_t / max(sbb - n * mean_b * mean_b, 1e-12))
        bias = mean_t - gain * mean_b
    grad, hess = np.empty(8), np.empty((8, 8))
    n_out = total - n
    # least squares: the full-mask matrix less the few points outside, or the inside summed
    mode = 0 if opts.robust != "none" else 1 if n_out > n else 2 if n_out else 0
    sq = K.least_squares_terms(
        c.sampled, c.inside, c.values, c.sd, gain, bias, c.residuals, grad, hess, mode
    )
    if opts.robust == "none":
        cost = sq / n
        hess = c.hess - hess if mode == 2 else hess if mode == 1 else c.hess.copy()
    else:
        e, m = c.residuals, c.inside
        rw, sigma = _robust_weights_np(e, m, opts.robust)
        w = (rw * m).astype(np.float32)
        if opts.photometric == "gain_bias":  # refit gain and bias without the outliers
            sw = float(w.sum(dtype=np.float64))
            if sw > _MIN_PIXELS:
                t, bw = c.values, c.sampled
                mt = float(np.dot(t, w)) / sw
                mb = float(np.dot(bw, w)) / sw
                vt = float(np.dot(t * t, w)) - sw * mt * mt
                vb = float(np.dot(bw * bw, w)) - sw * mb * mb
                g = math.sqrt(max(vt, 1e-12) / max(vb, 1e-12))
                e = ((bw * g + (mt - g * mb) - t) * m).astype(np.float32)
        cost = 2.0 * _robust_cost_np(e, opts.robust, sigma) / n
        K.weighted_terms(e, w, c.sd, grad, hess)
    if not math.isfinite(cost):
        return None
    return _Evaluation(cost, grad, hess, int(n), sq / var_t)


def _evaluate_torch(
    tpl: _Template, b: torch.Tensor, b_H_a: torch.Tensor, opts: RefineOptions
) -> _Evaluation | None:
    """The evaluation as torch ops on the images' device (CUDA); ``b_H_a`` a float64 tensor."""
    bw, m = sample_at(b, b_H_a, tpl.points)
    mf = m.to(torch.float32)
    n = float(mf.sum())
    if n < max(_MIN_PIXELS, tpl.values.numel() // 50):
        return None
    t = tpl.values
    mean_t = float(torch.dot(t, mf)) / n
    var_t = max(float(torch.dot(tpl.values_sq, mf)) - n * mean_t * mean_t, 1e-12)
    if opts.photometric == "gain_bias":
        bm = bw * mf
        mean_b = float(bm.sum()) / n
        var_b = float(torch.dot(bm, bw)) - n * mean_b * mean_b
        gain = math.sqrt(var_t / max(var_b, 1e-12))
        e = (bm * gain).add_(mean_t - gain * mean_b).sub_(t).mul_(mf)
    else:
        e = (bw - t).mul_(mf)
    sq = float(torch.dot(e, e))
    if opts.robust == "none":
        cost = sq / n
        grad = (tpl.sd @ e).double()  # e is zero off the overlap
    else:
        rw, sigma = _robust_weights(e, m, opts.robust)
        w = rw * mf
        if opts.photometric == "gain_bias":  # refit gain and bias without the outliers
            sw = float(w.sum())
            if sw > _MIN_PIXELS:
                mt = float(torch.dot(t, w)) / sw
                mb = float(torch.dot(bw, w)) / sw
                vt = float(torch.dot(tpl.values_sq, w)) - sw * mt * mt
                vb = float(torch.dot(bw * bw, w)) - sw * mb * mb
                gain = math.sqrt(max(vt, 1e-12) / max(vb, 1e-12))
                e = (bw * gain).add_(mt - gain * mb).sub_(t).mul_(mf)
        cost = 2.0 * float(_robust_cost(e, opts.robust, sigma)) / n
        grad = (tpl.sd @ (w * e)).double()
    if not math.isfinite(cost):
        return None
    n_out = tpl.values.numel() - int(n)
    if opts.robust != "none" or n_out > n:
        hess = ((tpl.sd * (mf if opts.robust == "none" else w)) @ tpl.sd.T).double()
    elif n_out == 0:
        hess = tpl.hess
    else:  # few pixels left the overlap: subtract their outer products from the full matrix
        out = tpl.sd[:, (~m).nonzero().squeeze(1)]
        hess = tpl.hess - (out @ out.T).double()
    return _Evaluation(cost, grad.cpu().numpy(), hess.cpu().numpy(), int(n), sq / var_t)


class _Clock:
    def __init__(self, opts: RefineOptions, total_budget: int) -> None:
        self.start = time.perf_counter()
        self.deadline = self.start + opts.max_seconds if opts.max_seconds else math.inf
        self.left = total_budget

    def tick(self) -> bool:
        """Take one iteration from the budget; False (nothing taken) when none is left."""
        if self.left <= 0 or time.perf_counter() >= self.deadline:
            return False
        self.left -= 1
        return True


def _align_level(
    tpl: _Template,
    b: torch.Tensor | np.ndarray,
    b_H_a: np.ndarray,
    opts: RefineOptions,
    tol: float,
    clock: _Clock,
    dof: int = 8,
) -> tuple[np.ndarray, int, float, bool, float, bool]:
    """Refine ``b_H_a`` ((3, 3) float64) at one level. Returns (b_H_a, iterations, last step
    px, converged, cost, budget exhausted)."""
    lm = opts.solver == "levenberg_marquardt"
    lam = 1e-4 if lm else 0.0
    norm_inv = np.linalg.inv(tpl.norm)
    H = b_H_a
    best_H, best_cost = b_H_a, math.inf
    accepted: tuple[np.ndarray, _Evaluation] | None = None
    it, step, converged, exhausted = 0, math.inf, False, False
    free = np.array({2: [2, 5], 6: [0, 1, 2, 3, 4, 5], 8: list(range(8))}[dof])
    while it < opts.max_iterations:
        if not clock.tick():
            exhausted = True
            break
        ev = _evaluate(tpl, b, H, opts)
        it += 1
        if ev is not None and ev.cost < best_cost:
            best_H, best_cost = H, ev.cost
        if accepted is not None and (ev is None or (lm and ev.cost > accepted[1].cost)):
            if not lm:  # undamped Gauss-Newton left the overlap: stop at the best so far
                break
            H, ev = accepted  # refuse the step, damp more
            lam *= 10.0
            if lam > _MAX_LAMBDA:
                break
        elif ev is None:  # no overlap at the start of the level
            break
        else:
            accepted = (H, ev)
            lam = max(lam * 0.1, 1e-7) if lm else 0.0
        H_next = np.empty((3, 3))
        step = K.damped_step(
            ev.hess, ev.grad, lam, free, H, tpl.norm, norm_inv, tpl.corners, tpl.scale, H_next
        )
        if not math.isfinite(step):  # a singular system or a step to infinity
            break
        H = H_next
        if step < tol:
            converged = True
            break
    if converged:
        return H, it, step, True, best_cost if math.isfinite(best_cost) else math.nan, False
    return best_H, it, step, False, best_cost if math.isfinite(best_cost) else math.nan, exhausted


def _coarse_start(
    tpl: _Template,
    b: torch.Tensor | np.ndarray,
    b_H_a: np.ndarray,
    opts: RefineOptions,
    tol: float,
    clock: _Clock,
) -> tuple[np.ndarray, int]:
    """At the coarsest level: translation, then affine, from the given start; when the result
    still matches poorly (score > ``opts.search_threshold``), the same from a grid of starts
    (shifts of +-15% of the size, scales 0.8 / 1 / 1.25 about the centre, composed with the
    given start), keeping the best score among those that overlap at least 30% of A."""
    its = 0

    def descend(H: np.ndarray, o: RefineOptions, dofs: tuple[int, ...]) -> np.ndarray:
        nonlocal its
        for dof in dofs:
            H, k, *_ = _align_level(tpl, b, H, o, tol, clock, dof)
            its += k
        return H

    def score(H: np.ndarray) -> float:
        ev = _evaluate(tpl, b, H, opts)
        if ev is None or ev.n < 0.3 * tpl.values.numel():
            return math.inf
        return ev.score

    best = b_H_a
    for dof in opts.coarse_dof:
        best, k, *_ = _align_level(tpl, b, best, opts, tol, clock, dof)
        its += k
    if not opts.search:
        return best, its
    best = descend(best, opts, (8,))
    best_score = score(best)
    if best_score <= opts.search_threshold:
        return best, its
    w, h = tpl.size
    quick = replace(opts, max_iterations=min(opts.max_iterations, 6))
    for sc, tx, ty in _SEARCH_STARTS:
        S = np.array(
            [
                [sc, 0.0, tx * w + (1 - sc) * (w - 1) / 2],
                [0.0, sc, ty * h + (1 - sc) * (h - 1) / 2],
                [0.0, 0.0, 1.0],
            ]
        )
        H = descend(S @ b_H_a, quick, (*opts.coarse_dof, 8))
        s = score(H)
        if s < best_score:
            best, best_score = H, s
        if clock.left <= 0 or time.perf_counter() >= clock.deadline:
            return best, its
    return best, its  # the caller converges the winner with 8 dof


def _pyramid_mask(mask: torch.Tensor, num_levels: int) -> list[torch.Tensor]:
    """Bool (1, 1, H, W) -> per level, True only where the blurred mask is (nearly) all True."""
    return [lvl > 0.999 for lvl in gaussian_pyramid(mask.float(), num_levels)]


@torch.inference_mode()
def align_gauss_newton(
    image_a: torch.Tensor,
    image_b: torch.Tensor,
    b_H_a_init: torch.Tensor | None = None,
    options: RefineOptions | None = None,
    mask_a: torch.Tensor | None = None,
) -> RefineResult:
    """Align A to B by coarse-to-fine inverse-compositional Gauss-Newton / LM.

    Args:
        image_a: (1, 1, Ha, Wa) float32 in [0, 1], the template.
        image_b: (1, 1, Hb, Wb) float32 in [0, 1], on the same device.
        b_H_a_init: (3, 3) or (1, 3, 3) start, A pixel -> B pixel; ``None`` is the identity.
        options: :class:`RefineOptions`.
        mask_a: optional (1, 1, Ha, Wa) bool, the pixels of A to use.

    Returns:
        :class:`RefineResult` with ``b_H_a`` (3, 3) float64 NumPy, ``H[2, 2] = 1``.

    Example:
        >>> a = torch.rand(1, 1, 120, 160)
        >>> align_gauss_newton(a, a).b_H_a.shape
        (3, 3)
    """
    opts = options or RefineOptions()
    if image_a.ndim != 4 or image_a.shape[:2] != (1, 1):
        raise ValueError(f"image_a must have shape (1, 1, H, W), got {tuple(image_a.shape)}")
    if image_b.ndim != 4 or image_b.shape[:2] != (1, 1):
        raise ValueError(f"image_b must have shape (1, 1, H, W), got {tuple(image_b.shape)}")
    if mask_a is not None and mask_a.shape != image_a.shape:
        raise ValueError(
            f"mask_a must have the shape of image_a {tuple(image_a.shape)}, "
            f"got {tuple(mask_a.shape)}"
        )
    dev = image_a.device
    a, b = image_a.float(), image_b.to(dev, torch.float32)
    H0 = (
        np.eye(3)
        if b_H_a_init is None
        else torch.as_tensor(b_H_a_init).detach().cpu().double().numpy().reshape(3, 3)
    )
    clock = _Clock(opts, opts.max_total_iterations or 10**9)
    size_a = (a.shape[-1], a.shape[-2])
    size_b = (b.shape[-1], b.shape[-2])
    auto = min(
        num_levels_for(size_a, opts.min_coarse_side), num_levels_for(size_b, opts.min_coarse_side)
    )
    # a requested depth is capped where the coarsest level would get too small to filter
    deepest = min(num_levels_for(size_a, 1), num_levels_for(size_b, 1))
    n_levels = min(opts.num_levels, deepest) if opts.num_levels else auto
    pa, pb = gaussian_pyramid(a, n_levels), gaussian_pyramid(b, n_levels)
    pm = _pyramid_mask(mask_a, n_levels) if mask_a is not None else [None] * n_levels
    Ta = [T.numpy() for T in level_from_full([(x.shape[-1], x.shape[-2]) for x in pa])]
    Tb = [T.numpy() for T in level_from_full([(x.shape[-1], x.shape[-2]) for x in pb])]
    # the level of B as the evaluation takes it: a NumPy view on the CPU
    bl = [x[0, 0].contiguous().numpy() if dev.type == "cpu" else x for x in pb]
    H = H0 / H0[2, 2]
    reports: list[LevelReport] = []
    total, exhausted, converged = 0, False, False
    finest = min(opts.finest_level, n_levels - 1)
    for lvl in range(n_levels - 1, finest - 1, -1):
        tpl = _template(pa[lvl], pm[lvl], opts.border)
        Hl = Tb[lvl] @ H @ np.linalg.inv(Ta[lvl])
        tol = opts.tolerance_px if lvl == finest else opts.coarse_tolerance_px
        if tpl.values.numel() < _MIN_PIXELS:
            reports.append(LevelReport(lvl, tpl.size, 0, math.nan, False, math.nan))
            continue
        its = 0
        if lvl == n_levels - 1 and n_levels > 1:
            Hl, its = _coarse_start(tpl, bl[lvl], Hl, opts, tol, clock)
        Hl, k, step, converged, cost, exhausted = _align_level(tpl, bl[lvl], Hl, opts, tol, clock)
        its += k
        total += its
        reports.append(LevelReport(lvl, tpl.size, its, step, converged, cost))
        H = np.linalg.inv(Tb[lvl]) @ Hl @ Ta[lvl]
        H = H / H[2, 2]
        if exhausted:
            break
    out = H
    sv = np.linalg.svd(out, compute_uv=False) if np.isfinite(out).all() else None
    if sv is None or sv[-1] <= 1e-12 * sv[0]:  # never hand back a non-finite/singular matrix
        out, converged = H0 / H0[2, 2], False
    return RefineResult(
        b_H_a=out,
        converged=bool(converged and not exhausted),
        budget_exhausted=exhausted,
        levels=reports,
        iterations=total,
        seconds=time.perf_counter() - clock.start,
    )
