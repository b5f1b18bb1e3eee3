"""Tests of app.geometry.pose_loss: the closed form against a numerical integral of the definition
(in 40-digit arithmetic, so the reference's own error is far below the tolerances), gradients,
invariances, conventions, float32 accuracy and the depth-range helper."""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import app.geometry.pose_loss as pl
from app.geometry.pose_loss import (
    PoseInputError,
    check_pose_loss_inputs,
    depth_range_from_lists,
    depth_range_from_samples,
    homography_pose_loss,
    homography_pose_loss_terms,
    inverse_depth_means,
    quaternion_to_rotation_matrix,
    world_to_camera_pose,
)

F64 = torch.float64
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no CUDA device"))]  # fmt: skip
mpmath.mp.dps = 40

# ------------------------------------------------------------------------------------------------
# Reference: the definition, evaluated exactly (40 digits) from the float64 inputs
# ------------------------------------------------------------------------------------------------


def _mp(x: float) -> mpmath.mpf:
    return mpmath.mpf(float(x))  # exact: every float64 is an mpf


def mp_rotation(rotation: np.ndarray) -> mpmath.matrix:
    """World-to-camera matrix from a quaternion (w, x, y, z) (normalised exactly) or a matrix."""
    rotation = np.asarray(rotation, dtype=np.float64)
    if rotation.shape == (3, 3):
        return mpmath.matrix([[_mp(v) for v in row] for row in rotation])
    w, x, y, z = (_mp(v) for v in rotation)
    n = w * w + x * x + y * y + z * z
    return mpmath.matrix(
        [
            [(w * w + x * x - y * y - z * z) / n, 2 * (x * y - w * z) / n, 2 * (x * z + w * y) / n],
            [2 * (x * y + w * z) / n, (w * w - x * x + y * y - z * z) / n, 2 * (y * z - w * x) / n],
            [2 * (x * z - w * y) / n, 2 * (y * z + w * x) / n, (w * w - x * x - y * y + z * z) / n],
        ]
    )


def mp_definition(c_est, rot_est, c_gt, rot_gt, xmin, xmax, convention="world_to_camera"):
    """(mean of ‖I - H(x)‖_F² over [xmin, xmax] by quadrature, A, B, C), from the definition
    H(x) = R_rel - t nᵀ/x with R_rel = R̂Rᵀ, t = R̂(c - ĉ), n = (0, 0, -1)."""
    R_est, R_gt = mp_rotation(rot_est), mp_rotation(rot_gt)
    if convention == "camera_to_world":
        R_est, R_gt = R_est.T, R_gt.T
    R_rel = R_est * R_gt.T
    t = R_est * mpmath.matrix([_mp(a) - _mp(b) for a, b in zip(c_gt, c_est, strict=True)])
    n = mpmath.matrix([0, 0, -1])
    M = mpmath.eye(3) - R_rel
    T = t * n.T

    def integrand(x):
        E = M + T / x  # I - H(x)
        return mpmath.fsum(E[i, j] ** 2 for i in range(3) for j in range(3))

    A = mpmath.fsum(M[i, j] ** 2 for i in range(3) for j in range(3))
    B = 2 * (t.T * M * n)[0]
    C = mpmath.fsum(v**2 for v in t)
    a, b = _mp(xmin), _mp(xmax)
    if a == b:
        return integrand(a), A, B, C
    # x = e^u: the integrand in u is entire, so tanh-sinh quadrature converges to full precision
    value, err = mpmath.quad(
        lambda u: integrand(mpmath.exp(u)) * mpmath.exp(u), [mpmath.log(a), mpmath.log(b)],
        error=True,
    )  # fmt: skip
    assert err <= mpmath.mpf(10) ** -20 * abs(value) + mpmath.mpf(10) ** -60, "quadrature"
    return value / (b - a), A, B, C


# ------------------------------------------------------------------------------------------------
# Pose pairs
# ------------------------------------------------------------------------------------------------


def qmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton product of (w, x, y, z) quaternions."""
    aw, av, bw, bv = a[0], a[1:], b[0], b[1:]
    return np.r_[aw * bw - av @ bv, aw * bv + bw * av + np.cross(av, bv)]


def unit(v) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v)


def rotate(q: np.ndarray, theta: float, axis: np.ndarray) -> np.ndarray:
    """q composed with a rotation of theta about axis (the relative rotation has angle theta)."""
    return qmul(np.r_[math.cos(theta / 2), math.sin(theta / 2) * unit(axis)], q)


def vec(dim: int, lo: float = -1.0, hi: float = 1.0):
    return st.lists(st.floats(lo, hi), min_size=dim, max_size=dim).filter(
        lambda v: np.linalg.norm(v) > 0.1
    )


@st.composite
def pose_pairs(draw):
    """Rotation errors 1e-8 rad..π, translation errors over 8 decades around the size where the
    three terms are comparable (|Δ|/xmin ≈ θ), depth ranges from xmax = xmin to 1e4·xmin."""
    q = unit(draw(vec(4)))
    log_theta = draw(
        st.one_of(st.just(-8.0), st.just(math.log10(math.pi)), st.floats(-8.0, math.log10(math.pi)))
    )
    theta = min(10.0**log_theta, math.pi)
    q_est = rotate(q, theta, np.asarray(draw(vec(3)))) * draw(st.sampled_from([1.0, -1.0]))
    xmin = 10.0 ** draw(st.floats(-2.0, 3.0))
    ratio = draw(st.one_of(st.just(0.0), st.floats(-15.0, 4.0).map(lambda e: 10.0**e)))
    xmax = xmin * (1.0 + ratio)
    c_gt = np.asarray(draw(st.lists(st.floats(-100, 100), min_size=3, max_size=3)))
    if draw(st.integers(0, 5)) == 0:
        offset = np.zeros(3)  # pure rotation error
    else:
        size = xmin * max(theta, 1e-8) * 10.0 ** draw(st.floats(-4.0, 4.0))
        offset = size * unit(draw(vec(3)))
    return dict(
        c_est=c_gt + offset, q_est=q_est, c_gt=c_gt, q_gt=q, xmin=xmin, xmax=xmax, theta=theta
    )


def tensors(pair: dict, dtype=F64, device="cpu") -> tuple:
    def t(v):
        return torch.as_tensor(np.asarray(v), dtype=dtype, device=device)[None]

    return t(pair["c_est"]), t(pair["q_est"]), t(pair["c_gt"]), t(pair["q_gt"])


def random_batch(b: int, dtype=F64, seed: int = 0, scale: float = 0.3):
    g = torch.Generator().manual_seed(seed)
    q_gt = torch.randn(b, 4, generator=g, dtype=dtype)
    q_est = q_gt + scale * torch.randn(b, 4, generator=g, dtype=dtype)
    c_gt = 3 * torch.randn(b, 3, generator=g, dtype=dtype)
    c_est = c_gt + torch.randn(b, 3, generator=g, dtype=dtype)
    xmin = 0.5 + torch.rand(b, generator=g, dtype=dtype)
    xmax = xmin * (1 + 5 * torch.rand(b, generator=g, dtype=dtype))
    return c_est, q_est, c_gt, q_gt, xmin, xmax


def transcription(c_est, q_est, c_gt, q_gt, xmin, xmax):
    """The paper's formula written naively (1 - cos θ from matrices): the foil for float32."""
    R_est, R_gt = quaternion_to_rotation_matrix(q_est), quaternion_to_rotation_matrix(q_gt)
    R_rel = R_est @ R_gt.transpose(-1, -2)
    t = (R_est @ (c_gt - c_est)[..., None])[..., 0]
    A = 6 - 2 * R_rel.diagonal(dim1=-2, dim2=-1).sum(-1)
    B = 2 * ((t * R_rel[..., :, 2]).sum(-1) - t[..., 2])
    C = (t * t).sum(-1)
    return A + B * torch.log(xmax / xmin) / (xmax - xmin) + C / (xmin * xmax)


HYPO = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ------------------------------------------------------------------------------------------------
# Exactness
# ------------------------------------------------------------------------------------------------


class TestAgainstDefinition:
    @HYPO
    @given(pose_pairs())
    def test_quaternions_match_integral(self, pair):
        terms = homography_pose_loss_terms(*tensors(pair), pair["xmin"], pair["xmax"])
        ref, A, B, C = mp_definition(
            pair["c_est"], pair["q_est"], pair["c_gt"], pair["q_gt"], pair["xmin"], pair["xmax"]
        )
        assert float(terms.loss[0]) == pytest.approx(float(ref), rel=1e-12, abs=0)
        # every term on its own, at full precision (B relative to its bound 2·sqrt(A·C))
        assert float(terms.rotation[0]) == pytest.approx(float(A), rel=1e-12, abs=0)
        w1, w2 = inverse_depth_means(torch.tensor(pair["xmin"], dtype=F64), pair["xmax"])
        bound = 2 * math.sqrt(float(A) * float(C)) + 1e-300
        assert abs(float(terms.cross[0]) / float(w1) - float(B)) <= 1e-12 * bound
        assert float(terms.translation[0]) == pytest.approx(float(C) * float(w2), rel=1e-12)

    @HYPO
    @given(pose_pairs())
    def test_matrices_match_integral(self, pair):
        # Rounded rotation matrices are orthonormal to ~1e-16 only, which bounds the agreement
        # at ~1e-16/θ relative: well within the 1e-7 asked for, down to θ = 1e-8.
        c_est, q_est, c_gt, q_gt = tensors(pair)
        R_est, R_gt = quaternion_to_rotation_matrix(q_est), quaternion_to_rotation_matrix(q_gt)
        loss = homography_pose_loss_terms(c_est, R_est, c_gt, R_gt, pair["xmin"], pair["xmax"])
        ref, *_ = mp_definition(
            pair["c_est"], R_est[0].numpy(), pair["c_gt"], R_gt[0].numpy(), pair["xmin"],
            pair["xmax"],
        )  # fmt: skip
        assert float(loss.loss[0]) == pytest.approx(float(ref), rel=1e-7, abs=0)

    @pytest.mark.parametrize("convention", ["world_to_camera", "camera_to_world"])
    @pytest.mark.parametrize("theta", [1e-8, 1e-4, 1.0, math.pi])
    @pytest.mark.parametrize("shift", [0.0, 1e-4, 1.0, 1e4])
    def test_grid(self, convention, theta, shift):
        """Corners of the ranges, both conventions, several pairs and a global range at once."""
        rng = np.random.default_rng(int(theta * 1e3) + int(shift))
        pairs, refs = [], []
        for _ in range(3):
            q = unit(rng.normal(size=4))
            q_est = rotate(q, theta, rng.normal(size=3))
            c = rng.normal(size=3) * 10
            c_est = c + shift * unit(rng.normal(size=3))
            pairs.append((c_est, q_est, c, q))
            refs.append(float(mp_definition(c_est, q_est, c, q, 0.5, 20.0, convention)[0]))
        c_est, q_est, c_gt, q_gt = (torch.tensor(np.stack(v)) for v in zip(*pairs, strict=True))
        loss = homography_pose_loss(
            c_est, q_est, c_gt, q_gt, 0.5, 20.0, convention=convention, reduction="none"
        )
        np.testing.assert_allclose(loss.numpy(), refs, rtol=1e-12)

    def test_naive_transcription_fails_at_small_angles(self):
        """The same check catches 1 - cos θ: the naive form is off at θ = 1e-8 even in float64."""
        q = unit([0.3, -0.2, 0.9, 0.1])
        q_est = rotate(q, 1e-8, np.array([0.0, 1.0, 0.0]))
        c = np.array([1.0, 2.0, 3.0])
        args = [torch.tensor(v)[None] for v in (c, q_est, c, q)]
        ref = float(mp_definition(c, q_est, c, q, 1.0, 2.0)[0])
        xs = torch.tensor(1.0, dtype=F64), torch.tensor(2.0, dtype=F64)
        naive = float(transcription(*args, *xs))
        ours = float(homography_pose_loss(*args, 1.0, 2.0))
        assert abs(naive - ref) > 1e-3 * ref
        assert ours == pytest.approx(ref, rel=1e-13)


class TestDepthRangeLimit:
    @pytest.mark.parametrize("rel", [0.0, 1e-16, 1e-13, 1e-9, 1e-5, 1e-2, 0.05, 0.06, 1.0])
    def test_xmax_to_xmin(self, rel):
        rng = np.random.default_rng(7)
        q = unit(rng.normal(size=4))
        q_est = rotate(q, 0.3, rng.normal(size=3))
        c, c_est = rng.normal(size=3), rng.normal(size=3)
        xmin = 1.7
        xmax = xmin * (1 + rel)
        ref = float(mp_definition(c_est, q_est, c, q, xmin, xmax)[0])
        got = homography_pose_loss(*[torch.tensor(v)[None] for v in (c_est, q_est, c, q)],
                                   xmin, xmax)  # fmt: skip
        assert float(got) == pytest.approx(ref, rel=1e-13)

    def test_weights(self):
        xmin = torch.tensor([2.0, 2.0, 1.0, 1.0], dtype=F64)
        xmax = torch.tensor([2.0, 2.0 + 1e-14, 1.0 + 1e-3, math.e], dtype=F64)
        w1, w2 = inverse_depth_means(xmin, xmax)
        expect = [
            0.5,
            float(mpmath.log(_mp(2.0 + 1e-14) / 2) / (_mp(2.0 + 1e-14) - 2)),
            float(mpmath.log(_mp(1.001)) / (_mp(1.001) - 1)),
            1 / (math.e - 1),
        ]
        np.testing.assert_allclose(w1.numpy(), expect, rtol=1e-15)
        np.testing.assert_allclose(w2.numpy(), (1 / (xmin * xmax)).numpy(), rtol=1e-15)

    def test_weight_gradients_at_the_limit(self):
        xmin = torch.tensor([1.5, 1.5, 1.5, 1.5], dtype=F64, requires_grad=True)
        gap = torch.tensor([0.0, 1e-9, 0.07, 3.0], dtype=F64, requires_grad=True)
        assert torch.autograd.gradcheck(lambda a, g: inverse_depth_means(a, a + g), (xmin, gap))
        w1, _ = inverse_depth_means(xmin, xmin + gap)
        gx, gg = torch.autograd.grad(w1.sum(), (xmin, gap))
        # w1 = 1/xmin - gap/(2 xmin²) + ...: at gap = 0, dw1/dxmin = -1/xmin², dw1/dgap = -1/(2xmin²)
        assert float(gx[0]) == pytest.approx(-1 / 1.5**2, rel=1e-14)
        assert float(gg[0]) == pytest.approx(-0.5 / 1.5**2, rel=1e-14)


# ------------------------------------------------------------------------------------------------
# Gradients
# ------------------------------------------------------------------------------------------------


def _terms_fn(convention="world_to_camera"):
    def f(*args):
        return tuple(homography_pose_loss_terms(*args, convention=convention))

    return f


class TestGradients:
    @pytest.mark.parametrize("convention", ["world_to_camera", "camera_to_world"])
    @pytest.mark.parametrize("scale", [1.0, 1e-3])
    def test_gradcheck_quaternions(self, convention, scale):
        c_est, q_est, c_gt, q_gt, xmin, xmax = random_batch(6, scale=scale)
        q_est[0] = -q_est[0]  # the other hemisphere
        xmax[1] = xmin[1]  # the limit
        xmax[2] = xmin[2] * (1 + 1e-3)
        inputs = [t.clone().requires_grad_() for t in (c_est, q_est, c_gt, q_gt, xmin, xmax)]
        assert torch.autograd.gradcheck(_terms_fn(convention), inputs)

    def test_gradcheck_global_range_and_chunks(self, monkeypatch):
        monkeypatch.setattr(pl, "_CPU_CHUNK_BYTES", 3 * 8)  # chunks of 3 pairs
        c_est, q_est, c_gt, q_gt, _, _ = random_batch(8)
        xmin = torch.tensor(0.7, dtype=F64, requires_grad=True)
        xmax = torch.tensor(4.0, dtype=F64, requires_grad=True)
        inputs = [t.clone().requires_grad_() for t in (c_est, q_est, c_gt, q_gt)]
        assert torch.autograd.gradcheck(_terms_fn(), (*inputs, xmin, xmax))

    @pytest.mark.parametrize("convention", ["world_to_camera", "camera_to_world"])
    def test_gradcheck_matrices_and_mixed(self, convention):
        c_est, q_est, c_gt, q_gt, xmin, xmax = random_batch(5)
        R_est = quaternion_to_rotation_matrix(q_est)
        for rot_est, rot_gt in ((R_est, quaternion_to_rotation_matrix(q_gt)), (R_est, q_gt)):
            inputs = [t.clone().requires_grad_() for t in (c_est, rot_est, c_gt, rot_gt)]
            assert torch.autograd.gradcheck(_terms_fn(convention), (*inputs, xmin, xmax))

    def test_matches_autograd_of_plain_formula(self):
        """The hand-written backward against autograd through the naive formula (accurate at
        these moderate errors), with respect to every input."""
        args = [t.requires_grad_() for t in random_batch(50, seed=3)]
        ours = homography_pose_loss(*args, reduction="sum")
        ref = transcription(*args).sum()
        assert float(ours.detach()) == pytest.approx(float(ref.detach()), rel=1e-12)
        for g_ours, g_ref in zip(
            torch.autograd.grad(ours, args), torch.autograd.grad(ref, args), strict=True
        ):
            torch.testing.assert_close(g_ours, g_ref, rtol=1e-9, atol=1e-12)

    def test_only_some_outputs_used(self):
        args = [t.requires_grad_() for t in random_batch(4)]
        terms = homography_pose_loss_terms(*args)
        g = torch.autograd.grad(terms.translation.sum(), args[0])[0]
        delta = (args[2] - args[0]).detach()
        expect = -2 * delta / (args[4] * args[5]).detach()[:, None]
        torch.testing.assert_close(g, expect)

    def test_gradient_zero_at_match(self):
        c, q = torch.randn(3, 3, dtype=F64), torch.randn(3, 4, dtype=F64)
        c_est, q_est = c.clone().requires_grad_(), q.clone().requires_grad_()
        loss = homography_pose_loss(c_est, q_est, c, q, 1.0, 5.0)
        assert float(loss.detach()) == 0.0
        gc, gq = torch.autograd.grad(loss, (c_est, q_est))
        assert float(gc.abs().max()) == 0.0 and float(gq.abs().max()) == 0.0


# ------------------------------------------------------------------------------------------------
# Invariances, representations, conventions
# ------------------------------------------------------------------------------------------------


class TestInvariances:
    def test_sign_of_quaternions(self):
        args = list(random_batch(20, seed=1))
        base = homography_pose_loss(*args, reduction="none")
        for which in ((1,), (3,), (1, 3)):  # q̂ → -q̂, q → -q, both
            flipped = [-t if k in which else t for k, t in enumerate(args)]
            assert torch.equal(homography_pose_loss(*flipped, reduction="none"), base)

    def test_sign_flips_gradient(self):
        c_est, q_est, c_gt, q_gt, xmin, xmax = random_batch(5, seed=2)
        a = q_est.clone().requires_grad_()
        b = (-q_est).requires_grad_()
        (ga,) = torch.autograd.grad(homography_pose_loss(c_est, a, c_gt, q_gt, xmin, xmax), a)
        (gb,) = torch.autograd.grad(homography_pose_loss(c_est, b, c_gt, q_gt, xmin, xmax), b)
        torch.testing.assert_close(gb, -ga, rtol=0, atol=0)

    @HYPO
    @given(pose_pairs(), st.floats(0.1, 10.0), st.floats(0.1, 10.0))
    def test_normalised_internally(self, pair, s_est, s_gt):
        c_est, q_est, c_gt, q_gt = tensors(pair)
        base = homography_pose_loss(c_est, q_est, c_gt, q_gt, pair["xmin"], pair["xmax"])
        scaled = homography_pose_loss(
            c_est, s_est * q_est, c_gt, s_gt * q_gt, pair["xmin"], pair["xmax"]
        )
        # Scaling rounds each component, which turns the quaternion by ~eps: that costs
        # ~eps·|s - 1|/θ relative on the rotation term (see the module docstring).
        tol = 1e-13 + 2e-16 * 10 / pair["theta"]
        assert float(scaled) == pytest.approx(float(base), rel=tol)

    @HYPO
    @given(pose_pairs())
    def test_quaternions_and_matrices_agree(self, pair):
        c_est, q_est, c_gt, q_gt = tensors(pair)
        R_est, R_gt = quaternion_to_rotation_matrix(q_est), quaternion_to_rotation_matrix(q_gt)
        x = (pair["xmin"], pair["xmax"])
        from_q = float(homography_pose_loss(c_est, q_est, c_gt, q_gt, *x))
        for rot_est, rot_gt in ((R_est, R_gt), (q_est, R_gt), (R_est, q_gt)):
            got = float(homography_pose_loss(c_est, rot_est, c_gt, rot_gt, *x))
            assert got == pytest.approx(from_q, rel=1e-7)

    @pytest.mark.parametrize("matrices", [False, True])
    def test_conventions_agree_for_the_same_cameras(self, matrices):
        c_est, q_est, c_gt, q_gt, xmin, xmax = random_batch(30, seed=5)
        rot_est, rot_gt = q_est, q_gt
        if matrices:
            rot_est, rot_gt = (
                quaternion_to_rotation_matrix(q_est),
                quaternion_to_rotation_matrix(q_gt),
            )
        w2c = homography_pose_loss(c_est, rot_est, c_gt, rot_gt, xmin, xmax, reduction="none")
        # the same cameras written camera-to-world: centre unchanged, rotation inverted
        if matrices:
            c2w_est, c2w_gt = rot_est.transpose(-1, -2), rot_gt.transpose(-1, -2)
        else:
            conj = torch.tensor([1.0, -1.0, -1.0, -1.0], dtype=F64)
            c2w_est, c2w_gt = rot_est * conj, rot_gt * conj
        c2w = homography_pose_loss(
            c_est, c2w_est, c_gt, c2w_gt, xmin, xmax, convention="camera_to_world",
            reduction="none",
        )  # fmt: skip
        torch.testing.assert_close(c2w, w2c, rtol=1e-14, atol=0)
        assert float((w2c - homography_pose_loss(
            c_est, c2w_est, c_gt, c2w_gt, xmin, xmax, reduction="none")).abs().max()) > 1e-3  # fmt: skip

    @pytest.mark.parametrize("convention", ["world_to_camera", "camera_to_world"])
    def test_physical_meaning(self, convention):
        """Cameras built from their axes (look-at), written in either convention:
        - backed 1 m along its own optical axis: 1/(xmin·xmax);
        - turned by φ about its optical axis: 8 sin²(φ/2) at any depth;
        - moved sideways by δ along its own x axis and turned (about its y axis) to look at the
          point at depth x0 again: the plane at x0 is seen almost unchanged, so the cross term
          (its sign, and the convention) cancels most of the others: to first order only the
          (2, 0) entry φ of I - H(x0) is left, L ≈ φ² while A ≈ 2φ², w2·C ≈ φ², w1·B ≈ -2φ²."""
        centre = torch.tensor([2.0, -1.0, 0.5], dtype=F64)
        z = torch.nn.functional.normalize(torch.tensor([1.0, 3.0, 0.2], dtype=F64), dim=0)
        up = torch.tensor([0.0, 0.0, 1.0], dtype=F64)
        x = torch.nn.functional.normalize(torch.linalg.cross(z, up), dim=0)
        y = torch.linalg.cross(z, x)
        w_R_c = torch.stack([x, y, z], dim=1)  # columns: the camera axes in the world

        def loss(c_est, w_R_est, xmin, xmax):
            if convention == "camera_to_world":
                rot_est, rot = w_R_est, w_R_c
            else:
                rot_est, rot = w_R_est.T, w_R_c.T
            return homography_pose_loss_terms(
                c_est[None], rot_est[None], centre[None], rot[None], xmin, xmax,
                convention=convention,
            )  # fmt: skip

        assert float(loss(centre - z, w_R_c, 2.0, 8.0).loss) == pytest.approx(1 / 16, rel=1e-14)
        phi = 0.3
        c, s_ = math.cos(phi), math.sin(phi)
        roll = torch.tensor([[c, -s_, 0], [s_, c, 0], [0, 0, 1]], dtype=F64)
        assert float(loss(centre, w_R_c @ roll, 2.0, 8.0).loss) == pytest.approx(
            8 * math.sin(phi / 2) ** 2, rel=1e-14
        )
        x0, delta = 5.0, 0.01
        phi = math.atan(delta / x0)
        c, s_ = math.cos(phi), math.sin(phi)
        turn = torch.tensor([[c, 0, -s_], [0, 1, 0], [s_, 0, c]], dtype=F64)  # Ry(-φ)
        terms = loss(centre + delta * x, w_R_c @ turn, x0, x0)
        assert float(terms.loss) == pytest.approx(phi**2, rel=1e-3)
        assert float(terms.cross) == pytest.approx(-2 * phi**2, rel=1e-3)
        assert float(terms.rotation + terms.translation) == pytest.approx(3 * phi**2, rel=1e-3)

    def test_batch_shapes_and_broadcasting(self):
        c_est, q_est, c_gt, q_gt, xmin, xmax = random_batch(6)
        flat = homography_pose_loss(c_est, q_est, c_gt, q_gt, xmin, xmax, reduction="none")
        shaped = homography_pose_loss(
            c_est.view(2, 3, 3), q_est.view(2, 3, 4), c_gt.view(2, 3, 3), q_gt.view(2, 3, 4),
            xmin.view(2, 3), xmax.view(2, 3), reduction="none",
        )  # fmt: skip
        torch.testing.assert_close(shaped.reshape(6), flat, rtol=0, atol=0)
        one = homography_pose_loss(c_est, q_est, c_gt[:1], q_gt[:1], 1.0, 3.0, reduction="none")
        each = homography_pose_loss(
            c_est, q_est, c_gt[:1].expand(6, 3), q_gt[:1].expand(6, 4), 1.0, 3.0, reduction="none"
        )
        torch.testing.assert_close(one, each, rtol=0, atol=0)
        assert float(homography_pose_loss(c_est, q_est, c_gt, q_gt, xmin, xmax)) == pytest.approx(
            float(flat.mean()), rel=1e-15
        )
        assert float(homography_pose_loss(c_est, q_est, c_gt, q_gt, xmin, xmax, reduction="sum")) \
            == pytest.approx(float(flat.sum()), rel=1e-15)  # fmt: skip
        with pytest.raises(ValueError, match="shape"):
            homography_pose_loss(c_est, q_est[:, :3], c_gt, q_gt, xmin, xmax)

    def test_chunking_gives_the_same_numbers(self, monkeypatch):
        args = random_batch(1000, seed=9)
        whole = homography_pose_loss_terms(*args)
        monkeypatch.setattr(pl, "_CPU_CHUNK_BYTES", 7 * 8)
        chunked = homography_pose_loss_terms(*args)
        for a, b in zip(whole, chunked, strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=0)

    def test_world_to_camera_pose(self):
        q = torch.tensor([0.5, 0.5, -0.5, 0.5], dtype=F64)
        c = torch.tensor([1.0, 2.0, 3.0], dtype=F64)
        c2, q2 = world_to_camera_pose(c, q, "camera_to_world")
        assert torch.equal(c2, c)
        torch.testing.assert_close(
            quaternion_to_rotation_matrix(q2), quaternion_to_rotation_matrix(q).T
        )
        with pytest.raises(PoseInputError) as e:
            world_to_camera_pose(c, q, "world")  # type: ignore[arg-type]
        assert e.value.field == "convention"


# ------------------------------------------------------------------------------------------------
# float32 and devices
# ------------------------------------------------------------------------------------------------


class TestFloat32:
    @settings(max_examples=40, deadline=None)
    @given(st.floats(-6.0, -2.0), vec(4), vec(3), st.floats(-3.0, 1.0))
    def test_small_angles_quaternions(self, log_theta, q, axis, log_shift):
        """Inputs in float32 (unit to float32 precision); the reference is the exact value for
        those float32 numbers. The naive 1 - cos θ form is off by >100% at these angles."""
        theta = 10.0**log_theta
        q32 = torch.nn.functional.normalize(torch.tensor(q, dtype=torch.float32), dim=0)
        q_est32 = torch.nn.functional.normalize(
            torch.tensor(rotate(q32.double().numpy(), theta, np.asarray(axis)),
                         dtype=torch.float32), dim=0)  # fmt: skip
        c32 = torch.tensor([0.3, -1.0, 2.0])
        c_est32 = c32 + torch.tensor([1.0, 0.5, -0.2]) * 10.0**log_shift * theta
        args = [t[None] for t in (c_est32, q_est32, c32, q32)]
        terms = homography_pose_loss_terms(*args, 1.0, 4.0)
        ref, A, _, _ = mp_definition(*(t.double().numpy() for t in (c_est32, q_est32, c32, q32)),
                                     1.0, 4.0)  # fmt: skip
        assert terms.loss.dtype == torch.float32
        assert float(terms.rotation[0]) == pytest.approx(float(A), rel=2e-6)
        assert float(terms.loss[0]) == pytest.approx(float(ref), rel=2e-6)

    def test_naive_float32_is_wrong_ours_is_right(self):
        q = torch.nn.functional.normalize(torch.tensor([[0.2, 0.7, -0.3, 0.5]]), dim=-1)
        q_est = torch.nn.functional.normalize(
            torch.tensor(rotate(q[0].double().numpy(), 1e-4, np.array([1.0, 0, 0])),
                         dtype=torch.float32)[None], dim=-1)  # fmt: skip
        c = torch.zeros(1, 3)
        ref = float(mp_definition(c[0].numpy(), q_est[0].double().numpy(), c[0].numpy(),
                                  q[0].double().numpy(), 1.0, 2.0)[0])  # fmt: skip
        naive = float(transcription(c, q_est, c, q, torch.tensor(1.0), torch.tensor(2.0)))
        assert abs(naive - ref) > 1e-2 * ref
        assert float(homography_pose_loss(c, q_est, c, q, 1.0, 2.0)) == pytest.approx(ref, rel=2e-6)

    def test_small_angles_matrices(self):
        """Entry differences, not products, in float32: equal to the float64 evaluation of the
        same float32 matrices."""
        rng = np.random.default_rng(4)
        q = unit(rng.normal(size=(64, 4)).T).T
        q_est = np.stack([rotate(v, t, rng.normal(size=3))
                          for v, t in zip(q, np.logspace(-5, -2, 64), strict=True)])  # fmt: skip
        R = quaternion_to_rotation_matrix(torch.tensor(q)).float()
        R_est = quaternion_to_rotation_matrix(torch.tensor(q_est)).float()
        c = torch.tensor(rng.normal(size=(64, 3)), dtype=torch.float32)
        c_est = c + 1e-4 * torch.tensor(rng.normal(size=(64, 3)), dtype=torch.float32)
        got = homography_pose_loss(c_est, R_est, c, R, 1.0, 3.0, reduction="none")
        ref = homography_pose_loss(c_est.double(), R_est.double(), c.double(), R.double(),
                                   1.0, 3.0, reduction="none")  # fmt: skip
        torch.testing.assert_close(got.double(), ref, rtol=2e-6, atol=0)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_devices(device, dtype):
    args64 = [t.requires_grad_() for t in random_batch(257, seed=11)]
    ref = homography_pose_loss_terms(*args64)
    ref_grads = torch.autograd.grad(ref.loss.sum(), args64)
    args = [t.detach().to(device=device, dtype=dtype).requires_grad_() for t in args64]
    terms = homography_pose_loss_terms(*args)
    assert terms.loss.device.type == device and terms.loss.dtype == dtype
    grads = torch.autograd.grad(terms.loss.sum(), args)
    tol = dict(rtol=1e-4, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-12, atol=1e-14)
    for a, b in zip((*terms, *grads), (*ref, *ref_grads), strict=True):
        torch.testing.assert_close(a.detach().cpu().double(), b.detach(), **tol)


# ------------------------------------------------------------------------------------------------
# Depth range and input checks
# ------------------------------------------------------------------------------------------------


class TestDepthRange:
    @settings(max_examples=40, deadline=None)
    @given(
        st.lists(st.lists(st.floats(1e-3, 1e3), min_size=1, max_size=30), min_size=1, max_size=6)
    )
    def test_matches_numpy_percentiles(self, rows):
        width = max(map(len, rows))
        depths = torch.ones(len(rows), width, dtype=F64)
        mask = torch.zeros(len(rows), width, dtype=torch.bool)
        for i, r in enumerate(rows):
            depths[i, : len(r)] = torch.tensor(r, dtype=F64)
            mask[i, : len(r)] = True
        xmin, xmax = depth_range_from_samples(depths, mask)
        for i, r in enumerate(rows):
            lo, hi = np.percentile(r, [2.5, 97.5])
            assert float(xmin[i]) == pytest.approx(lo, rel=1e-12)
            assert float(xmax[i]) == pytest.approx(hi, rel=1e-12)
            assert min(r) <= float(xmin[i]) <= float(xmax[i]) <= max(r)
        gmin, gmax = depth_range_from_samples(depths, mask, mode="global")
        lo, hi = np.percentile(np.concatenate(rows), [2.5, 97.5])
        np.testing.assert_allclose(gmin.numpy(), lo, rtol=1e-12)
        np.testing.assert_allclose(gmax.numpy(), hi, rtol=1e-12)

    def test_errors_name_the_sample(self):
        d = torch.tensor([[1.0, 2.0], [3.0, -1.0]])
        with pytest.raises(PoseInputError) as e:
            depth_range_from_samples(d)
        assert e.value.field == "depths[1][1]"
        with pytest.raises(PoseInputError) as e:
            depth_range_from_samples(torch.tensor([[1.0, float("nan")]]))
        assert e.value.field == "depths[0][1]"
        mask = torch.tensor([[True, True], [False, False]])
        with pytest.raises(PoseInputError) as e:
            depth_range_from_samples(torch.ones(2, 2), mask)
        assert e.value.field == "depths[1]"
        # masked-out samples are ignored, whatever they hold
        xmin, _ = depth_range_from_samples(d, torch.tensor([[True, True], [True, False]]))
        assert float(xmin[1]) == 3.0


class TestDepthRangeFromLists:
    """Ragged samples as one flat array and the lengths: no padding to the longest list."""

    @settings(max_examples=40, deadline=None)
    @given(
        st.lists(st.lists(st.floats(1e-3, 1e3), min_size=1, max_size=30), min_size=1, max_size=6),
        st.sampled_from(["local", "global"]),
    )
    def test_matches_numpy_percentiles(self, rows, mode):
        values = torch.tensor([v for r in rows for v in r], dtype=F64)
        lengths = torch.tensor([len(r) for r in rows])
        xmin, xmax = depth_range_from_lists(values, lengths, mode=mode)
        pooled = np.percentile(np.concatenate(rows), [2.5, 97.5])
        for i, r in enumerate(rows):
            lo, hi = np.percentile(r, [2.5, 97.5]) if mode == "local" else pooled
            assert float(xmin[i]) == pytest.approx(lo, rel=1e-12)
            assert float(xmax[i]) == pytest.approx(hi, rel=1e-12)

    def test_one_long_list_among_short_ones(self):
        """The shape of the /pose-loss defect: 2,000 lists of one sample and one of 20,000
        (padding them would be a (2001, 20000) array)."""
        long = torch.arange(1.0, 20_001.0, dtype=F64)
        values = torch.cat([torch.full((2000,), 7.0, dtype=F64), long])
        lengths = torch.tensor([1] * 2000 + [20_000])
        xmin, xmax = depth_range_from_lists(values, lengths)
        assert torch.equal(xmin[:2000], torch.full((2000,), 7.0, dtype=F64))
        lo, hi = np.percentile(long.numpy(), [2.5, 97.5])
        assert float(xmin[-1]) == pytest.approx(lo) and float(xmax[-1]) == pytest.approx(hi)

    def test_errors_name_the_list_and_entry(self):
        values = torch.tensor([1.0, 2.0, 3.0, -1.0])
        with pytest.raises(PoseInputError) as e:
            depth_range_from_lists(values, torch.tensor([2, 2]))
        assert e.value.field == "depths[1][1]"
        with pytest.raises(PoseInputError) as e:
            depth_range_from_lists(torch.ones(3), torch.tensor([2, 0, 1]))
        assert e.value.field == "depths[1]"
        with pytest.raises(PoseInputError, match="sum to"):
            depth_range_from_lists(torch.ones(3), torch.tensor([2, 2]))


class TestChecks:
    def good(self):
        c, q = torch.zeros(3, 3, dtype=F64), torch.tensor([[1.0, 0, 0, 0]] * 3, dtype=F64)
        return [
            c,
            q,
            c.clone(),
            q.clone(),
            torch.tensor(1.0, dtype=F64),
            torch.tensor(2.0, dtype=F64),
        ]

    def field_of(self, args, **kw):
        with pytest.raises(PoseInputError) as e:
            check_pose_loss_inputs(*args, **kw)
        return e.value.field

    def test_good_passes(self):
        check_pose_loss_inputs(*self.good())
        R = torch.eye(3, dtype=F64).expand(3, 3, 3)
        args = self.good()
        check_pose_loss_inputs(args[0], R, args[2], R, args[4], args[5])

    def test_each_problem_names_its_field(self):
        cases = {
            "estimated.quaternion[1]": (1, lambda q: q.index_fill(0, torch.tensor([1]), 0.0)),
            "true.position[2]": (2, lambda c: c.index_fill(0, torch.tensor([2]), float("inf"))),
            "true.quaternion[0]": (3, lambda q: q.index_fill(0, torch.tensor([0]), float("nan"))),
            "true.position": (2, lambda c: c[:2]),
            "xmin": (4, lambda x: x * 0),
            "xmax": (5, lambda x: x * 0 + 0.5),
        }
        for field, (k, change) in cases.items():
            args = self.good()
            args[k] = change(args[k])
            assert self.field_of(args) == field
        args = self.good()
        args[4], args[5] = torch.tensor([1.0, 1.0, 1.0], dtype=F64), torch.tensor([2.0, 0.9, 3.0])
        assert self.field_of(args) == "xmax[1]"
        args[5] = torch.tensor([2.0, 3.0], dtype=F64)
        assert self.field_of(args) == "xmax"

    def test_matrices(self):
        args = self.good()
        R = torch.eye(3, dtype=F64).repeat(3, 1, 1)
        bad = R.clone()
        bad[2, 0, 0] = 1.001
        assert (
            self.field_of([args[0], bad, args[2], R, args[4], args[5]]) == "estimated.rotation[2]"
        )
        flip = R.clone()
        flip[1] = torch.diag(torch.tensor([1.0, 1.0, -1.0], dtype=F64))
        assert self.field_of([args[0], R, args[2], flip, args[4], args[5]]) == "true.rotation[1]"
        slightly = R.clone()
        slightly[0, 0, 0] += 1e-8  # within the tolerance
        check_pose_loss_inputs(args[0], slightly, args[2], R, args[4], args[5])
