r"""Homography-based camera pose loss (Boittiaux et al., RA-L 2022), exact and batched.

The loss between an estimated pose and a ground-truth pose is the mean, over planes facing the
ground-truth camera at depths ``x`` in ``[xmin, xmax]``, of how far the homography induced by the
two poses is from the identity:

.. math::

    L = \frac{1}{x_{max} - x_{min}} \int_{x_{min}}^{x_{max}} \lVert I - H(x) \rVert_F^2 \, dx,
    \qquad H(x) = R_{rel} - \frac{t\, n^\top}{x}

with ``R_rel = R̂ Rᵀ``, ``t = R̂ (c - ĉ)`` and ``n = (0, 0, -1)`` (the plane normal in the
ground-truth camera frame). In closed form ``L = A + w1·B + w2·C`` where

- ``A = ‖I - R_rel‖_F² = 8 sin²(θ/2)`` (θ the rotation error), the *rotation* term,
- ``B = 2 tᵀ (I - R_rel) n``, weighted by ``w1 = mean of 1/x = ln(xmax/xmin) / (xmax - xmin)``
  (``1/xmin`` in the limit ``xmax = xmin``), the *cross* term ``w1·B``,
- ``C = ‖t‖² = ‖c - ĉ‖²``, weighted by ``w2 = mean of 1/x² = 1 / (xmin·xmax)``, the
  *translation* term ``w2·C``.

Conventions (inputs and outputs, everywhere in this module):

- ``"world_to_camera"`` (the paper's, the default): a pose is ``(c, c_R_w)``, ``c`` the camera
  centre in world coordinates and ``c_R_w`` the world-to-camera rotation, so a world point ``P``
  is ``c_R_w @ (P - c)`` in the camera frame.
- ``"camera_to_world"`` (the "camera pose" of most SLAM and NeRF code): a pose is
  ``(w_t_c, w_R_c)`` with ``P = w_R_c @ P_cam + w_t_c``. It is converted with ``c = w_t_c`` and
  ``c_R_w = w_R_cᵀ`` (for quaternions: the conjugate).
- A rotation is a unit quaternion ``(w, x, y, z)`` (Hamilton, scalar first; shape ``(*, 4)``;
  normalised internally, any non-zero norm accepted; ``q`` and ``-q`` give the same loss) or a
  rotation matrix (shape ``(*, 3, 3)``). The two sides may use different representations.
- Camera frame: x right, y down, z forward (OpenCV); depths are along +z, in the units of the
  positions (metres, say). The loss is unitless (normalised image coordinates). Poses whose camera
  axes follow OpenGL (y up, z backward: NeRF, Blender) must be turned first:
  ``w_R_c @ diag(1, -1, -1)``.
- Batches: any leading shape ``*``; ``xmin``/``xmax`` are floats or tensors broadcastable to ``*``.

Numerics: nothing is formed as ``1 - cos θ``. With quaternions the relative rotation is taken
from the difference ``d = ±q̂ - q`` (``vec(d* ⊗ q)`` is the relative quaternion's vector part), so
``A`` keeps full relative precision, and ``B`` full precision relative to its scale ``2√(A·C)``,
down to rotation errors of 1e-8 rad in float64 and 1e-6 rad in float32 (when the quaternions are
unit to working precision; an unnormalised ``q̂`` costs about ``eps·|‖q̂‖/‖q‖ - 1| / θ``
relative). The sum is well conditioned: ``L >= A/2`` and ``|w1·B| <= A + w2·C``. With matrices,
``A = ‖R̂ - R‖_F²`` and ``B = -2 (R̂₃ - R₃)·(c - ĉ)`` (``R₃`` the third row) use entry
differences, exact when the matrices are orthonormal; their accuracy is limited by
``‖RᵀR - I‖ / θ``. The quaternion path is one autograd Function with a hand-written backward
(first derivatives only), run in cache-sized chunks on the CPU.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, NamedTuple

import torch
from torch import Tensor

from app.core.errors import DomainError

__all__ = [
    "PoseConvention",
    "PoseInputError",
    "PoseLossTerms",
    "check_depth_range",
    "check_pose_loss_inputs",
    "check_position",
    "check_rotation",
    "depth_range_from_lists",
    "depth_range_from_samples",
    "homography_pose_loss",
    "homography_pose_loss_terms",
    "inverse_depth_means",
    "quaternion_to_rotation_matrix",
    "world_to_camera_pose",
]

PoseConvention = Literal["world_to_camera", "camera_to_world"]
_CONVENTIONS = ("world_to_camera", "camera_to_world")

# Bytes per temporary in a chunk of the CPU quaternion kernel (32768 float32 or 16384 float64
# pairs): its ~30 live temporaries stay in cache, and each op stays at or under torch's parallel
# grain, so it runs without thread synchronisation (which costs most on a loaded machine: measured
# faster than 4x larger, 2-thread chunks there).
_CPU_CHUNK_BYTES = 1 << 17


class PoseInputError(DomainError, ValueError):
    """Invalid input to the pose loss (kind ``invalid``); ``field`` names it (e.g.
    ``"estimated.quaternion[3]"``)."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message, "invalid", field)

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


class PoseLossTerms(NamedTuple):
    """Per-pair loss and its three parts, each of shape ``(*)``; ``loss = rotation + cross +
    translation``: ``rotation = A``, ``cross = w1·B`` (may be negative), ``translation = w2·C``."""

    loss: Tensor
    rotation: Tensor
    cross: Tensor
    translation: Tensor


# ------------------------------------------------------------------------------------------------
# Conversions
# ------------------------------------------------------------------------------------------------


def quaternion_to_rotation_matrix(quaternion: Tensor) -> Tensor:
    """Rotation matrix of a quaternion ``(w, x, y, z)`` of any non-zero norm.

    Args:
        quaternion: ``(*, 4)``, Hamilton convention, scalar first.

    Returns:
        ``(*, 3, 3)`` matrix ``R`` with ``R @ v`` equal to ``q v q*`` for unit ``q``.

    Example:
        >>> quaternion_to_rotation_matrix(torch.tensor([0.0, 0.0, 0.0, 2.0]))  # 180° about z
        tensor([[-1.,  0.,  0.],
                [ 0., -1.,  0.],
                [ 0.,  0.,  1.]])
    """
    _check_last_dim(quaternion, 4, "quaternion")
    w, x, y, z = quaternion.unbind(-1)
    s = 2.0 / (w * w + x * x + y * y + z * z)
    wx, wy, wz = s * w * x, s * w * y, s * w * z
    xx, xy, xz = s * x * x, s * x * y, s * x * z
    yy, yz, zz = s * y * y, s * y * z, s * z * z
    rows = (
        1.0 - (yy + zz), xy - wz, xz + wy,
        xy + wz, 1.0 - (xx + zz), yz - wx,
        xz - wy, yz + wx, 1.0 - (xx + yy),
    )  # fmt: skip
    return torch.stack(rows, -1).unflatten(-1, (3, 3))


def world_to_camera_pose(
    position: Tensor, rotation: Tensor, convention: PoseConvention = "world_to_camera"
) -> tuple[Tensor, Tensor]:
    """A pose in the paper's convention: ``(c, c_R_w)`` from either convention.

    Args:
        position: ``(*, 3)``: the camera centre in world coordinates (in both conventions, the
            camera-to-world translation ``w_t_c`` *is* the camera centre).
        rotation: ``(*, 4)`` quaternion ``(w, x, y, z)`` or ``(*, 3, 3)`` matrix: ``c_R_w`` for
            ``"world_to_camera"``, ``w_R_c`` for ``"camera_to_world"``.
        convention: ``"world_to_camera"`` (returned as is) or ``"camera_to_world"``.

    Returns:
        ``(c, c_R_w)`` in the representation given (quaternions conjugated, matrices transposed).

    Example:
        >>> c, q = world_to_camera_pose(torch.zeros(3), torch.tensor([0.6, 0.8, 0.0, 0.0]),
        ...                             "camera_to_world")
        >>> q
        tensor([ 0.6000, -0.8000, -0.0000, -0.0000])
    """
    if convention not in _CONVENTIONS:
        raise PoseInputError(f"must be one of {_CONVENTIONS}, got {convention!r}", "convention")
    if convention == "world_to_camera":
        return position, rotation
    if _is_quaternion(rotation):
        return position, rotation * rotation.new_tensor([1.0, -1.0, -1.0, -1.0])
    return position, rotation.transpose(-1, -2)


# ------------------------------------------------------------------------------------------------
# Weights of the cross and translation terms
# ------------------------------------------------------------------------------------------------

# The derivative of phi(r) = log1p(r)/r by its series below _SERIES_R (truncation < 1e-16).
_SERIES_R = 0.05
_DPHI = [(-1.0) ** (k + 1) * (k + 1) / (k + 2) for k in range(11)]


def _horner(coefs: Sequence[float], r: Tensor) -> Tensor:
    out = torch.full_like(r, coefs[-1])
    for c in reversed(coefs[:-1]):
        out = out * r + c
    return out


def _weights(xmin: Tensor, xmax: Tensor, log_u: Tensor) -> tuple[Tensor, ...]:
    """``w1, w2`` and the parts their derivatives need, from ``log_u = log(xmax/xmin)``.

    ``w1 = phi/xmin`` with ``phi = log(u)/(u - 1)``, ``u = fl(xmax/xmin)`` (Goldberg's form of
    ``log1p(r)/r``: well conditioned in ``u``, so the rounding of ``u`` costs ~eps, however close
    xmax is to xmin), and its limit 1 at ``u = 1``. Only arithmetic here, so that the chunked
    kernel never runs a transcendental op (those are split over threads even at chunk size, which
    stalls on a loaded machine): ``log_u`` is computed once for the whole batch.
    """
    u = xmax / xmin
    r = u - 1.0
    zero = r == 0
    phi = torch.where(zero, torch.ones_like(r), log_u / torch.where(zero, torch.ones_like(r), r))
    return phi / xmin, 1.0 / (xmin * xmax), u, r, phi


def _weight_grads(xmin, xmax, log_u, gw1, gw2, parts) -> tuple[Tensor, Tensor]:
    """Gradients of ``gw1·w1 + gw2·w2`` with respect to xmin and xmax (no broadcasting undone)."""
    _, w2, u, r, phi = parts
    small = r < _SERIES_R  # the closed form of phi' cancels there: series
    safe_r = torch.where(small, torch.ones_like(r), r)
    safe_u = torch.where(small, torch.full_like(u, 2.0), u)
    big = (safe_r / safe_u - torch.where(small, torch.zeros_like(log_u), log_u)) / (safe_r * safe_r)
    dphi = torch.where(small, _horner(_DPHI, r), big)
    # w1 = phi(r)/xmin with r = xmax/xmin - 1; w2 = 1/(xmin·xmax)
    grad_lo = -(gw1 * (phi + u * dphi) / xmin + gw2 * w2) / xmin
    grad_hi = gw1 * dphi / (xmin * xmin) - gw2 * w2 / xmax
    return grad_lo, grad_hi


class _InverseDepthMeans(torch.autograd.Function):
    @staticmethod
    def forward(ctx, xmin: Tensor, xmax: Tensor):  # type: ignore[override]
        xmin_b, xmax_b = torch.broadcast_tensors(xmin, xmax)
        log_u = torch.log(xmax_b / xmin_b)
        ctx.save_for_backward(xmin_b, xmax_b, log_u)
        ctx.shapes = xmin.shape, xmax.shape
        w1, w2, *_ = _weights(xmin_b, xmax_b, log_u)
        return w1, w2

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, gw1, gw2):  # type: ignore[override]
        xmin, xmax, log_u = ctx.saved_tensors
        gw1 = torch.zeros_like(xmin) if gw1 is None else gw1
        gw2 = torch.zeros_like(xmin) if gw2 is None else gw2
        parts = _weights(xmin, xmax, log_u)
        grad_lo, grad_hi = _weight_grads(xmin, xmax, log_u, gw1, gw2, parts)
        return grad_lo.sum_to_size(ctx.shapes[0]), grad_hi.sum_to_size(ctx.shapes[1])


def inverse_depth_means(xmin: Tensor | float, xmax: Tensor | float) -> tuple[Tensor, Tensor]:
    """Means of ``1/x`` and ``1/x²`` over ``[xmin, xmax]``: the weights of the B and C terms.

    ``w1 = ln(xmax/xmin) / (xmax - xmin)``, computed as ``log(u)/((u - 1)·xmin)`` with
    ``u = xmax/xmin``, which keeps full precision however close xmax is to xmin; at
    ``xmax = xmin`` it is the limit ``1/xmin``, and its derivative uses a series near there, so
    gradients stay finite and accurate. ``w2 = 1/(xmin·xmax)``. Requires ``0 < xmin <= xmax``
    (unchecked). Floats take the dtype of the tensor argument. Once differentiable.

    Args:
        xmin, xmax: tensors of any broadcastable shapes, or floats.

    Returns:
        ``(w1, w2)`` of the broadcast shape.

    Example:
        >>> inverse_depth_means(torch.tensor(2.0), torch.tensor(2.0))
        (tensor(0.5000), tensor(0.2500))
    """
    given = [t for t in (xmin, xmax) if isinstance(t, Tensor)]
    floats = [t.dtype for t in given if t.is_floating_point()]
    dtype = torch.promote_types(floats[0], floats[-1]) if floats else torch.get_default_dtype()
    device = given[0].device if given else None
    # floats go straight to ``dtype`` (never through float32 first)
    xmin_t = torch.as_tensor(xmin, dtype=dtype, device=device)
    xmax_t = torch.as_tensor(xmax, dtype=dtype, device=device)
    return _InverseDepthMeans.apply(xmin_t, xmax_t)


# ------------------------------------------------------------------------------------------------
# Quaternion kernel: the whole loss, chunked on the CPU, with a hand-written backward
# ------------------------------------------------------------------------------------------------


def _quat_core(h: Tensor, q: Tensor, D: tuple[Tensor, Tensor, Tensor]):
    """A, B and the parts the backward needs; ``h``, ``q``: (m, 4) (w, x, y, z), ``D = c - ĉ``."""
    hw, hx, hy, hz = h.unbind(-1)
    qw, qx, qy, qz = q.unbind(-1)
    dot = hw * qw + hx * qx + hy * qy + hz * qz
    s = torch.where(dot < 0, -1.0, 1.0).to(dot.dtype)
    pw = dot.abs()  # scalar part of p = ĥ'* ⊗ q with ĥ' = s·h (the relative rotation R̂ᵀR)
    # d = s·h - q: exact when s·h and q are close, so p's vector part keeps all its digits.
    dw, dx, dy, dz = s * hw - qw, s * hx - qx, s * hy - qy, s * hz - qz
    # vec(d* ⊗ q) = dw·qv - qw·dv - dv × qv  (= vec(ĥ'* ⊗ q) since vec(q* ⊗ q) = 0)
    px = dw * qx - qw * dx - (dy * qz - dz * qy)
    py = dw * qy - qw * dy - (dz * qx - dx * qz)
    pz = dw * qz - qw * dz - (dx * qy - dy * qx)
    nh = hw * hw + hx * hx + hy * hy + hz * hz
    nq = qw * qw + qx * qx + qy * qy + qz * qz
    inv_n2 = 1.0 / (nh * nq)
    pv2 = px * px + py * py + pz * pz
    A = 8.0 * pv2 * inv_n2  # 8 sin²(θ/2)
    # z: third row of R(q) (the true optical axis in the world), times nq
    zx = 2.0 * (qx * qz - qw * qy)
    zy = 2.0 * (qy * qz + qw * qx)
    zz = (qw * qw + qz * qz) - (qx * qx + qy * qy)
    Dx, Dy, Dz = D
    # ẑ - z = (R(p) - I) z = 2 [pw (pv × z) + pv (pv·z) - z |pv|²] / |p|², |p|² = nh·nq, and
    # B = 2 tᵀ(I - R_rel)n = -2 Δ·(ẑ - z)
    cx, cy, cz = py * zz - pz * zy, pz * zx - px * zz, px * zy - py * zx
    pvz = px * zx + py * zy + pz * zz
    f = 2.0 * inv_n2 / nq
    gx = f * (pw * cx + pvz * px - pv2 * zx)
    gy = f * (pw * cy + pvz * py - pv2 * zy)
    gz = f * (pw * cz + pvz * pz - pv2 * zz)
    B = -2.0 * (gx * Dx + gy * Dy + gz * Dz)
    return A, B, (s, pw, (dw, dx, dy, dz), nh, nq, (gx, gy, gz))


def _m_times(D: tuple[Tensor, ...], v: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
    """``M_Δ v`` with ``vᵀ M_Δ v = Δ·Z(v)``, ``Z(v)`` the third row of ``R(v)`` times ``|v|²``."""
    a, b, c = D
    w, x, y, z = v
    return (c * w + b * x - a * y, b * w - c * x + a * z, b * z - a * w - c * y,
            a * x + b * y + c * z)  # fmt: skip


def _dot(u: tuple[Tensor, ...], v: tuple[Tensor, ...]) -> Tensor:
    out = u[0] * v[0]
    for a, b in zip(u[1:], v[1:], strict=True):
        out = out + a * b
    return out


def _chunks(n: int, like: Tensor) -> list[slice]:
    step = _CPU_CHUNK_BYTES // like.element_size() if like.device.type == "cpu" else max(n, 1)
    return [slice(i, i + step) for i in range(0, n, step)]


def _part(w: Tensor, sl: slice) -> Tensor:
    return w[sl] if w.dim() else w


def _delta(c_est: Tensor, c_gt: Tensor, sl: slice) -> tuple[Tensor, Tensor, Tensor]:
    # per column: every op of the kernel stays at chunk size (see _CPU_CHUNK_BYTES)
    return tuple(c_gt[sl, k] - c_est[sl, k] for k in range(3))  # type: ignore[return-value]


class _QuaternionLoss(torch.autograd.Function):
    """(q̂, q (n, 4), ĉ, c (n, 3), xmin, xmax, log(xmax/xmin) (n,) or ()) -> loss, rotation,
    cross, translation (n,).

    Everything runs chunk by chunk (on the CPU) with ops of chunk size; the backward recomputes
    the forward's parts instead of storing them. Not twice differentiable.
    """

    @staticmethod
    def forward(ctx, h, q, c_est, c_gt, xmin, xmax, log_u):  # type: ignore[override]
        n = h.shape[0]
        loss, rotation, cross, translation = (h.new_empty(n) for _ in range(4))
        scalar = xmin.dim() == 0
        if scalar:
            w1, w2, *_ = _weights(xmin, xmax, log_u)
        for sl in _chunks(n, h):
            D = _delta(c_est, c_gt, sl)
            A, B, _ = _quat_core(h[sl], q[sl], D)
            if not scalar:
                w1, w2, *_ = _weights(xmin[sl], xmax[sl], log_u[sl])
            C = D[0] * D[0] + D[1] * D[1] + D[2] * D[2]
            rotation[sl] = A
            torch.mul(w1, B, out=cross[sl])
            torch.mul(w2, C, out=translation[sl])
            torch.add(A, cross[sl], out=loss[sl]).add_(translation[sl])
        ctx.save_for_backward(h, q, c_est, c_gt, xmin, xmax, log_u)
        ctx.set_materialize_grads(False)
        return loss, rotation, cross, translation

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, gL, gR, gX, gT):  # type: ignore[override]
        h, q, c_est, c_gt, xmin, xmax, log_u = ctx.saved_tensors
        n = h.shape[0]
        need = ctx.needs_input_grad
        gL = h.new_zeros(()) if gL is None else gL
        g_rot = gL if gR is None else gL + gR  # d/dA
        g_cross = gL if gX is None else gL + gX  # d/d(w1·B)
        g_trans = gL if gT is None else gL + gT  # d/d(w2·C)
        grad_h = torch.empty_like(h) if need[0] else None
        grad_q = torch.empty_like(q) if need[1] else None
        grad_D = torch.empty(n, 3, dtype=h.dtype, device=h.device) if need[2] or need[3] else None
        grad_lo = h.new_empty(n) if need[4] else None
        grad_hi = h.new_empty(n) if need[5] else None
        for sl in _chunks(n, h):
            D = _delta(c_est, c_gt, sl)
            _, B, (s, pw, d, nh, nq, g) = _quat_core(h[sl], q[sl], D)
            lo, hi, lg = _part(xmin, sl), _part(xmax, sl), _part(log_u, sl)
            parts = _weights(lo, hi, lg)
            w1, w2 = parts[:2]
            gA, gX_, gT_ = _part(g_rot, sl), _part(g_cross, sl), _part(g_trans, sl)
            gB = gX_ * w1
            gC = gT_ * w2
            if grad_lo is not None or grad_hi is not None:
                gw1 = gX_ * B
                gw2 = gT_ * (D[0] * D[0] + D[1] * D[1] + D[2] * D[2])
                g_lo, g_hi = _weight_grads(lo, hi, lg, gw1, gw2, parts)
                if grad_lo is not None:
                    grad_lo[sl] = g_lo
                if grad_hi is not None:
                    grad_hi[sl] = g_hi
            if grad_D is not None:  # dB/dΔ = -2 (ẑ - z), dC/dΔ = 2Δ
                for k in range(3):
                    grad_D[sl, k] = 2.0 * (gC * D[k] - gB * g[k])
            hp = tuple(s * c for c in h[sl].unbind(-1))  # ĥ' = s·h
            qq = tuple(q[sl].unbind(-1))
            if grad_h is not None:
                # A = 8 (1 - pw²/(nh nq)):  dA/dĥ' = 16 pw/(nh² nq) [nh d - (ĥ'·d) ĥ']
                # B = -2 (f(ĥ') - f(q)), f(v) = vᵀMv/|v|²:  dB/dĥ' = -4 (nh Mĥ' - (ĥ'ᵀMĥ') ĥ')/nh²
                mh = _m_times(D, hp)
                hd, hmh = _dot(hp, d), _dot(hp, mh)
                ka = 16.0 * gA * pw / (nh * nh * nq) * s
                kb = -4.0 * gB / (nh * nh) * s
                for k in range(4):
                    grad_h[sl, k] = ka * (nh * d[k] - hd * hp[k]) + kb * (nh * mh[k] - hmh * hp[k])
            if grad_q is not None:
                # dA/dq = -16 pw/(nh nq²) [nq d - (q·d) q],  dB/dq = 4 (nq Mq - (qᵀMq) q)/nq²
                mq = _m_times(D, qq)
                qd, qmq = _dot(qq, d), _dot(qq, mq)
                ka = -16.0 * gA * pw / (nh * nq * nq)
                kb = 4.0 * gB / (nq * nq)
                for k in range(4):
                    grad_q[sl, k] = ka * (nq * d[k] - qd * qq[k]) + kb * (nq * mq[k] - qmq * qq[k])
        return (
            grad_h,
            grad_q,
            None if grad_D is None or not need[2] else -grad_D,
            grad_D if need[3] else None,
            None if grad_lo is None else _reduce_to(grad_lo, xmin),
            None if grad_hi is None else _reduce_to(grad_hi, xmax),
            None,
        )


def _reduce_to(grad: Tensor, like: Tensor) -> Tensor:
    return grad.sum() if like.dim() == 0 else grad


def _loss_quaternion(
    q_est: Tensor, q_gt: Tensor, c_est: Tensor, c_gt: Tensor, xmin: Tensor, xmax: Tensor
) -> PoseLossTerms:
    shape = torch.broadcast_shapes(
        q_est.shape[:-1], q_gt.shape[:-1], c_est.shape[:-1], c_gt.shape[:-1], xmin.shape, xmax.shape
    )
    n = shape.numel()

    def flat(t: Tensor, k: int) -> Tensor:
        return t.expand(*shape, k).reshape(n, k)

    if xmin.dim() or xmax.dim():  # per pair (a 0-d one is broadcast, without a copy)
        xmin, xmax = xmin.expand(shape).reshape(n), xmax.expand(shape).reshape(n)
    # the only transcendental op, once for the whole batch (see _weights)
    log_u = torch.log(xmax.detach() / xmin.detach())
    outs = _QuaternionLoss.apply(
        flat(q_est, 4), flat(q_gt, 4), flat(c_est, 3), flat(c_gt, 3), xmin, xmax, log_u
    )
    return PoseLossTerms(*(o.reshape(shape) for o in outs))


def _terms_matrix(R_est: Tensor, R_gt: Tensor, delta: Tensor) -> tuple[Tensor, Tensor]:
    # ‖I - R̂Rᵀ‖_F = ‖R - R̂‖_F and tᵀ(I - R_rel)n = nᵀ(R̂ - R)Δ for orthonormal R, R̂.
    # With n = (0, 0, -1): B = 2 nᵀ(R̂ - R)Δ = -2 (R̂₃ - R₃)·Δ, R₃ the third row.
    diff = R_est - R_gt
    A = diff.square().sum((-1, -2))
    B = -2.0 * (diff[..., 2, :] * delta).sum(-1)
    return A, B


# ------------------------------------------------------------------------------------------------
# Public loss
# ------------------------------------------------------------------------------------------------


def homography_pose_loss_terms(
    position_est: Tensor,
    rotation_est: Tensor,
    position_gt: Tensor,
    rotation_gt: Tensor,
    xmin: Tensor | float,
    xmax: Tensor | float,
    *,
    convention: PoseConvention = "world_to_camera",
) -> PoseLossTerms:
    """Per-pair homography loss and its rotation, cross and translation terms.

    Differentiable with respect to every tensor argument (once: no double backward when both
    rotations are quaternions); runs on the inputs' device and dtype.
    Values are not checked (a zero quaternion gives NaN): call :func:`check_pose_loss_inputs`
    first on untrusted data.

    Args:
        position_est: ``(*, 3)`` estimated camera centre ``ĉ`` (world coordinates).
        rotation_est: ``(*, 4)`` quaternion ``(w, x, y, z)`` or ``(*, 3, 3)`` matrix, estimated.
        position_gt: ``(*, 3)`` true camera centre ``c``.
        rotation_gt: ``(*, 4)`` or ``(*, 3, 3)``, true rotation.
        xmin, xmax: nearest and farthest depth of the scene, per pair ``(*)`` or global (a float
            or a 0-d tensor); ``0 < xmin <= xmax``.
        convention: ``"world_to_camera"`` (rotations are ``c_R_w``, the paper's) or
            ``"camera_to_world"`` (rotations are ``w_R_c``); positions are the camera centre in
            both.

    Returns:
        :class:`PoseLossTerms` of shape ``(*)``.

    Example (paper convention: the camera 1 m behind the truth along its optical axis, scene
    between 2 m and 4 m; ``L = w2·1 = 1/8``):
        >>> q = torch.tensor([[1.0, 0.0, 0.0, 0.0]])
        >>> terms = homography_pose_loss_terms(torch.tensor([[0.0, 0.0, -1.0]]), q,
        ...                                    torch.zeros(1, 3), q, 2.0, 4.0)
        >>> terms.loss, terms.translation
        (tensor([0.1250]), tensor([0.1250]))

    Example (camera-to-world poses, e.g. from a SLAM system: both cameras turned 90° about their
    optical axis, the estimate still 1 m behind the truth along it; same loss):
        >>> w_q_c = torch.tensor([[0.5**0.5, 0.0, 0.0, 0.5**0.5]])
        >>> homography_pose_loss_terms(torch.tensor([[0.0, 0.0, -1.0]]), w_q_c, torch.zeros(1, 3),
        ...                            w_q_c, 2.0, 4.0, convention="camera_to_world").loss
        tensor([0.1250])
    """
    _check_last_dim(position_est, 3, "position_est")
    _check_last_dim(position_gt, 3, "position_gt")
    _check_rotation_shape(rotation_est, "rotation_est")
    _check_rotation_shape(rotation_gt, "rotation_gt")
    dtype = position_est.dtype
    for t in (rotation_est, position_gt, rotation_gt):
        dtype = torch.promote_types(dtype, t.dtype)
    if not dtype.is_floating_point:
        raise TypeError(f"poses must be floating point, got {dtype}")
    c_est, r_est = world_to_camera_pose(position_est.to(dtype), rotation_est.to(dtype), convention)
    c_gt, r_gt = world_to_camera_pose(position_gt.to(dtype), rotation_gt.to(dtype), convention)
    xmin_t, xmax_t = _as(xmin, c_est), _as(xmax, c_est)
    if _is_quaternion(r_est) and _is_quaternion(r_gt):
        return _loss_quaternion(r_est, r_gt, c_est, c_gt, xmin_t, xmax_t)
    w1, w2 = inverse_depth_means(xmin_t, xmax_t)
    R_est = r_est if not _is_quaternion(r_est) else quaternion_to_rotation_matrix(r_est)
    R_gt = r_gt if not _is_quaternion(r_gt) else quaternion_to_rotation_matrix(r_gt)
    delta = c_gt - c_est  # Δ = c - ĉ; t = R̂Δ has the same norm
    A, B = _terms_matrix(R_est, R_gt, delta)
    C = delta.square().sum(-1)
    cross = w1 * B
    translation = w2 * C
    rotation = A.expand(torch.broadcast_shapes(A.shape, cross.shape, translation.shape))
    return PoseLossTerms(rotation + cross + translation, rotation, cross, translation)


def homography_pose_loss(
    position_est: Tensor,
    rotation_est: Tensor,
    position_gt: Tensor,
    rotation_gt: Tensor,
    xmin: Tensor | float,
    xmax: Tensor | float,
    *,
    convention: PoseConvention = "world_to_camera",
    reduction: Literal["mean", "sum", "none"] = "mean",
) -> Tensor:
    """The homography pose loss, reduced over the batch (see :func:`homography_pose_loss_terms`
    for the arguments and conventions).

    Example (training step, network output ``(B, 7)`` = position and unnormalised quaternion,
    per-image depth ranges from :func:`depth_range_from_samples`):
        >>> out = torch.tensor([[0.0, 0.0, 0.1, 0.9, 0.0, 0.1, 0.0]], requires_grad=True)
        >>> c_gt, q_gt = torch.zeros(1, 3), torch.tensor([[1.0, 0.0, 0.0, 0.0]])
        >>> loss = homography_pose_loss(out[:, :3], out[:, 3:], c_gt, q_gt, 1.0, 10.0)
        >>> loss.backward()
        >>> out.grad.shape
        torch.Size([1, 7])
    """
    loss = homography_pose_loss_terms(
        position_est, rotation_est, position_gt, rotation_gt, xmin, xmax, convention=convention
    ).loss
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    if reduction == "none":
        return loss
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


# ------------------------------------------------------------------------------------------------
# Depth range from samples
# ------------------------------------------------------------------------------------------------


def depth_range_from_samples(
    depths: Tensor,
    mask: Tensor | None = None,
    *,
    mode: Literal["local", "global"] = "local",
    percentiles: tuple[float, float] = (2.5, 97.5),
    field: str = "depths",
) -> tuple[Tensor, Tensor]:
    """``(xmin, xmax)`` as percentiles of the depths of the scene points each true camera sees.

    Percentiles use linear interpolation between order statistics (numpy's default).

    Args:
        depths: ``(B, N)`` depths (along the camera's +z, > 0) of ``N`` points per image.
        mask: ``(B, N)`` bool, ``True`` for the samples to use (ragged rows); default all.
        mode: ``"local"``: percentiles of each image's samples (the paper's local loss);
            ``"global"``: percentiles of all samples together, repeated for every image.
        percentiles: lower and upper percentile, in ``[0, 100]``.
        field: name used in errors.

    Returns:
        ``(xmin, xmax)``, each ``(B,)``, same dtype and device as ``depths``.

    Raises:
        PoseInputError: a used sample is not finite or not > 0, or an image has no sample.

    Example:
        >>> d = torch.arange(1.0, 202.0).repeat(2, 1)
        >>> depth_range_from_samples(d)
        (tensor([6., 6.]), tensor([196., 196.]))
    """
    if depths.dim() != 2:
        raise PoseInputError(f"expected shape (B, N), got {tuple(depths.shape)}", field)
    if not depths.is_floating_point():
        depths = depths.to(torch.get_default_dtype())
    if mask is None:
        mask = torch.ones_like(depths, dtype=torch.bool)
    elif mask.shape != depths.shape:
        raise PoseInputError(
            f"mask shape {tuple(mask.shape)} differs from depths {tuple(depths.shape)}", field
        )
    lo, hi = percentiles
    if not 0.0 <= lo <= hi <= 100.0:
        raise ValueError(f"percentiles must satisfy 0 <= low <= high <= 100, got {percentiles}")
    bad = mask & ~(torch.isfinite(depths) & (depths > 0))
    if bool(bad.any()):
        i, j = (int(v) for v in bad.nonzero()[0])
        raise PoseInputError(f"depth samples must be finite and > 0, got {depths[i, j]}",
                             f"{field}[{i}][{j}]")  # fmt: skip
    return depth_range_from_lists(
        depths[mask], mask.sum(-1), mode=mode, percentiles=percentiles, field=field
    )


def depth_range_from_lists(
    values: Tensor,
    lengths: Tensor,
    *,
    mode: Literal["local", "global"] = "local",
    percentiles: tuple[float, float] = (2.5, 97.5),
    field: str = "depths",
) -> tuple[Tensor, Tensor]:
    """:func:`depth_range_from_samples` for ragged samples, without padding them to the longest
    list: memory and time are O(total samples), whatever the spread of the lengths.

    Args:
        values: ``(T,)`` all samples, image 0's first, then image 1's, ...
        lengths: ``(B,)`` samples per image, summing to ``T``.
        mode, percentiles, field: as :func:`depth_range_from_samples`.

    Returns:
        ``(xmin, xmax)``, each ``(B,)``, same dtype and device as ``values``.

    Raises:
        PoseInputError: a sample is not finite or not > 0 (``field[i][j]``: list ``i``, entry
            ``j``), or a list is empty (``field[i]``).

    Example:
        >>> xmin, xmax = depth_range_from_lists(torch.tensor([3.0, 1.0, 2.0]),
        ...                                     torch.tensor([1, 2]), percentiles=(0, 100))
        >>> xmin.tolist(), xmax.tolist()
        ([3.0, 1.0], [3.0, 2.0])
    """
    if values.dim() != 1:
        raise PoseInputError(f"expected shape (T,), got {tuple(values.shape)}", field)
    if not values.is_floating_point():
        values = values.to(torch.get_default_dtype())
    lengths = torch.as_tensor(lengths, dtype=torch.long, device=values.device)
    if lengths.dim() != 1 or bool((lengths < 0).any()) or int(lengths.sum()) != values.numel():
        raise PoseInputError(
            f"lengths {tuple(lengths.shape)} must be >= 0 and sum to the {values.numel()} samples",
            field,
        )
    lo, hi = percentiles
    if not 0.0 <= lo <= hi <= 100.0:
        raise ValueError(f"percentiles must satisfy 0 <= low <= high <= 100, got {percentiles}")
    if mode not in ("local", "global"):
        raise ValueError(f"mode must be 'local' or 'global', got {mode!r}")
    ends = lengths.cumsum(0)
    starts = ends - lengths
    bad = ~(torch.isfinite(values) & (values > 0))
    if bool(bad.any()):
        k = int(bad.nonzero()[0, 0])
        i = int(torch.searchsorted(ends, torch.tensor(k, device=ends.device), right=True))
        raise PoseInputError(f"depth samples must be finite and > 0, got {values[k]}",
                             f"{field}[{i}][{k - int(starts[i])}]")  # fmt: skip
    if bool((lengths == 0).any()):
        i = int((lengths == 0).nonzero()[0, 0])
        raise PoseInputError("no depth sample for this image", f"{field}[{i}]")
    probs = values.new_tensor([lo / 100.0, hi / 100.0])
    if mode == "local":
        rows = torch.repeat_interleave(torch.arange(len(lengths), device=values.device), lengths)
        order = torch.argsort(values, stable=True)
        order = order[torch.argsort(rows[order], stable=True)]  # by row, ascending within
        ranks = _percentile_ragged(values[order], starts, lengths, probs)
        return ranks[:, 0], ranks[:, 1]
    pooled = values.sort().values
    ranks = _percentile_ragged(pooled, starts[:1] * 0, ends[-1:], probs)[0]
    b = len(lengths)
    return ranks[0].expand(b).clone(), ranks[1].expand(b).clone()


def _percentile_ragged(values: Tensor, starts: Tensor, counts: Tensor, probs: Tensor) -> Tensor:
    """Linear-interpolation percentiles (numpy's default) of ``len(counts)`` runs of the flat
    ``values``, run ``i`` sorted ascending at ``values[starts[i] : starts[i] + counts[i]]``;
    -> (B, P)."""
    pos = (counts.to(values.dtype)[:, None] - 1.0) * probs[None, :]  # (B, P)
    below = pos.floor().long()
    above = torch.minimum(below + 1, (counts - 1)[:, None])
    frac = pos - below.to(values.dtype)
    v0 = values[starts[:, None] + below]
    v1 = values[starts[:, None] + above]
    return v0 + frac * (v1 - v0)


# ------------------------------------------------------------------------------------------------
# Input checks (for untrusted data: the service, data loaders)
# ------------------------------------------------------------------------------------------------


def check_position(position: Tensor, field: str = "position") -> None:
    """Shape ``(B, 3)`` and finite values, else :class:`PoseInputError` naming ``field[i]``."""
    if position.dim() != 2 or position.shape[-1] != 3:
        raise PoseInputError(f"expected shape (B, 3), got {tuple(position.shape)}", field)
    _check_finite(position, field)


def check_rotation(
    rotation: Tensor,
    field: str = "rotation",
    *,
    orthonormal_atol: float = 1e-6,
    min_quaternion_norm: float = 1e-8,
) -> None:
    """A ``(B, 4)`` quaternion or a ``(B, 3, 3)`` rotation matrix, with valid values.

    Quaternions must be finite with norm ``>= min_quaternion_norm``; matrices finite with
    ``max |RᵀR - I| <= orthonormal_atol`` and ``det R > 0`` (no reflections).

    Raises:
        PoseInputError: naming ``field[i]`` for the first bad item.
    """
    if rotation.dim() == 2 and rotation.shape[-1] == 4:
        _check_finite(rotation, field)
        norm = torch.linalg.vector_norm(rotation, dim=-1)
        bad = norm < min_quaternion_norm
        if bool(bad.any()):
            i = int(bad.nonzero()[0, 0])
            raise PoseInputError(
                f"quaternion norm {float(norm[i]):.3g} is below {min_quaternion_norm:g} "
                "(a zero quaternion is no rotation)",
                f"{field}[{i}]",
            )
        return
    if rotation.dim() == 3 and rotation.shape[-2:] == (3, 3):
        _check_finite(rotation, field)
        R = rotation.to(torch.float64)
        err = (R.transpose(-1, -2) @ R - torch.eye(3, dtype=R.dtype, device=R.device)).abs()
        err = err.amax((-1, -2))
        bad = err > orthonormal_atol
        if bool(bad.any()):
            i = int(bad.nonzero()[0, 0])
            raise PoseInputError(
                f"not a rotation matrix: max |RᵀR - I| = {float(err[i]):.3g} exceeds "
                f"{orthonormal_atol:g}",
                f"{field}[{i}]",
            )
        det = torch.linalg.det(R)
        bad = det <= 0
        if bool(bad.any()):
            i = int(bad.nonzero()[0, 0])
            raise PoseInputError("not a rotation matrix: det <= 0 (a reflection)", f"{field}[{i}]")
        return
    raise PoseInputError(
        f"expected a (B, 4) quaternion or a (B, 3, 3) matrix, got {tuple(rotation.shape)}", field
    )


def check_depth_range(
    xmin: Tensor, xmax: Tensor, batch: int, fields: tuple[str, str] = ("xmin", "xmax")
) -> None:
    """``xmin``/``xmax`` of shape ``()``, ``(1,)`` or ``(batch,)``, finite, ``0 < xmin <= xmax``."""
    for value, name in ((xmin, fields[0]), (xmax, fields[1])):
        if value.dim() > 1 or (value.dim() == 1 and value.shape[0] not in (1, batch)):
            raise PoseInputError(
                f"expected one value or {batch} (one per pair), got shape {tuple(value.shape)}",
                name,
            )
        _check_finite(value, name)
    bad = xmin.reshape(-1) <= 0
    if bool(bad.any()):
        raise PoseInputError("must be > 0", _item(fields[0], xmin, int(bad.nonzero()[0, 0])))
    lo, hi = torch.broadcast_tensors(xmin.reshape(-1), xmax.reshape(-1))
    bad = hi < lo
    if bool(bad.any()):
        i = int(bad.nonzero()[0, 0])
        raise PoseInputError(
            f"must be >= {fields[0]} ({float(hi[i])!r} < {float(lo[i])!r})",
            _item(fields[1], xmax, i),
        )


def check_pose_loss_inputs(
    position_est: Tensor,
    rotation_est: Tensor,
    position_gt: Tensor,
    rotation_gt: Tensor,
    xmin: Tensor,
    xmax: Tensor,
    *,
    names: tuple[str, str] = ("estimated", "true"),
    orthonormal_atol: float = 1e-6,
) -> None:
    """Check a batch for :func:`homography_pose_loss_terms` (shapes ``(B, 3)``, ``(B, 4)`` or
    ``(B, 3, 3)``, ``xmin``/``xmax`` of shape ``()`` or ``(B,)``).

    Fields are named ``{names[k]}.position``, ``{names[k]}.quaternion`` or
    ``{names[k]}.rotation`` (with ``[i]`` for an item), ``xmin`` and ``xmax``.

    Raises:
        PoseInputError: the first problem found, naming its field.

    Example:
        >>> q = torch.tensor([[0.0, 0.0, 0.0, 0.0]])
        >>> try:
        ...     check_pose_loss_inputs(torch.zeros(1, 3), q, torch.zeros(1, 3), q,
        ...                            torch.tensor(1.0), torch.tensor(2.0))
        ... except PoseInputError as e:
        ...     print(e.field)
        estimated.quaternion[0]
    """
    batch = None
    for (position, rotation), name in zip(
        ((position_est, rotation_est), (position_gt, rotation_gt)), names, strict=True
    ):
        check_position(position, f"{name}.position")
        kind = "quaternion" if _is_quaternion(rotation) else "rotation"
        check_rotation(rotation, f"{name}.{kind}", orthonormal_atol=orthonormal_atol)
        for t, f in ((position, f"{name}.position"), (rotation, f"{name}.{kind}")):
            if batch is None:
                batch = t.shape[0]
            elif t.shape[0] != batch:
                raise PoseInputError(f"batch size {t.shape[0]} differs from {batch}", f)
    check_depth_range(xmin, xmax, int(batch or 0))


# ------------------------------------------------------------------------------------------------
# Helpers
# ------------------------------------------------------------------------------------------------


def _is_quaternion(rotation: Tensor) -> bool:
    return rotation.shape[-1] == 4


def _check_last_dim(t: Tensor, size: int, name: str) -> None:
    if not isinstance(t, Tensor):
        raise TypeError(f"{name} must be a Tensor, got {type(t).__name__}")
    if t.dim() < 1 or t.shape[-1] != size:
        raise ValueError(f"{name} must have shape (*, {size}), got {tuple(t.shape)}")


def _check_rotation_shape(t: Tensor, name: str) -> None:
    if not isinstance(t, Tensor):
        raise TypeError(f"{name} must be a Tensor, got {type(t).__name__}")
    if not (t.dim() >= 1 and t.shape[-1] == 4) and not (t.dim() >= 2 and t.shape[-2:] == (3, 3)):
        raise ValueError(f"{name} must have shape (*, 4) or (*, 3, 3), got {tuple(t.shape)}")


def _as(value: Tensor | float, like: Tensor) -> Tensor:
    if isinstance(value, Tensor):
        return value.to(device=like.device, dtype=like.dtype)
    return torch.tensor(float(value), device=like.device, dtype=like.dtype)


def _check_finite(t: Tensor, field: str) -> None:
    bad = ~torch.isfinite(t)
    if bool(bad.any()):
        index = bad.nonzero()[0]
        i = int(index[0]) if index.numel() else None
        raise PoseInputError("values must be finite (no NaN or infinity)",
                             field if i is None else f"{field}[{i}]")  # fmt: skip


def _item(field: str, t: Tensor, i: int) -> str:
    return f"{field}[{i}]" if t.dim() == 1 and t.shape[0] > 1 else field
