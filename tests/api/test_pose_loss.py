"""POST /pose-loss: values and gradients against an independent float64 transcription of the
paper's formula (accurate at these moderate errors), depth samples, conventions, and a 422 that
names the field for every kind of invalid input."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from app.api.routes import pose_loss as route
from app.core.config import Settings
from app.geometry.pose_loss import homography_pose_loss_terms
from app.main import create_app

F64 = torch.float64


def rotation_matrix(q: torch.Tensor) -> torch.Tensor:
    """World-to-camera matrix of quaternions (w, x, y, z) of any norm (written independently)."""
    q = q / q.norm(dim=-1, keepdim=True)
    w, x, y, z = q.unbind(-1)
    return torch.stack(
        [
            torch.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
            torch.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
            torch.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
        ],
        -2,
    )


def reference(c_est, R_est, c_gt, R_gt, xmin, xmax) -> torch.Tensor:
    """L = tr A + tr B·ln(xmax/xmin)/(xmax - xmin) + tr C/(xmin·xmax), straight from the paper."""
    R_rel = R_est @ R_gt.transpose(-1, -2)
    t = (R_est @ (c_gt - c_est)[..., None])[..., 0]
    n = torch.tensor([0.0, 0.0, -1.0], dtype=F64)
    M = torch.eye(3, dtype=F64) - R_rel
    A = (M * M).sum((-1, -2))
    B = 2 * (t * (M @ n)).sum(-1)
    C = (t * t).sum(-1)
    return A + B * torch.log(xmax / xmin) / (xmax - xmin) + C / (xmin * xmax)


def batch(b: int = 12, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    q_gt = torch.randn(b, 4, generator=g, dtype=F64)
    q_est = q_gt + 0.2 * torch.randn(b, 4, generator=g, dtype=F64)
    c_gt = 2 * torch.randn(b, 3, generator=g, dtype=F64)
    c_est = c_gt + 0.3 * torch.randn(b, 3, generator=g, dtype=F64)
    xmin = 0.5 + torch.rand(b, generator=g, dtype=F64)
    xmax = xmin * (1 + 4 * torch.rand(b, generator=g, dtype=F64))
    return c_est, q_est, c_gt, q_gt, xmin, xmax


def body(c_est, rot_est, c_gt, rot_gt, **extra) -> dict:
    key_est = "quaternion" if rot_est.shape[-1] == 4 else "rotation"
    key_gt = "quaternion" if rot_gt.shape[-1] == 4 else "rotation"
    return {
        "estimated": {"position": c_est.tolist(), key_est: rot_est.tolist()},
        "true": {"position": c_gt.tolist(), key_gt: rot_gt.tolist()},
        **extra,
    }


def ok(client: TestClient, payload: dict) -> dict:
    r = client.post("/pose-loss", json=payload)
    assert r.status_code == 200, r.text
    return r.json()


class TestValues:
    def test_quaternions_per_pair_range(self, client):
        c_est, q_est, c_gt, q_gt, xmin, xmax = batch()
        out = ok(client, body(c_est, q_est, c_gt, q_gt, xmin=xmin.tolist(), xmax=xmax.tolist()))
        ref = reference(c_est, rotation_matrix(q_est), c_gt, rotation_matrix(q_gt), xmin, xmax)
        np.testing.assert_allclose(out["loss"], ref.numpy(), rtol=1e-11)
        assert out["count"] == 12
        assert out["mean"] == pytest.approx(float(ref.mean()), rel=1e-11)
        parts = np.add(np.add(out["rotation"], out["cross"]), out["translation"])
        np.testing.assert_allclose(parts, out["loss"], rtol=1e-12)
        np.testing.assert_allclose(out["xmin"], xmin.numpy(), rtol=0)
        assert out["gradients"] is None

    def test_global_range_and_matrices(self, client):
        c_est, q_est, c_gt, q_gt, _, _ = batch(seed=1)
        R_est, R_gt = rotation_matrix(q_est), rotation_matrix(q_gt)
        out = ok(client, body(c_est, R_est, c_gt, q_gt, xmin=1.5, xmax=6.0))
        ref = reference(c_est, R_est, c_gt, R_gt, torch.tensor(1.5, dtype=F64), 6.0)
        np.testing.assert_allclose(out["loss"], ref.numpy(), rtol=1e-11)
        assert out["xmin"] == [1.5] * 12 and out["xmax"] == [6.0] * 12

    def test_xmax_equal_xmin(self, client):
        c_est, q_est, c_gt, q_gt, xmin, _ = batch(seed=2)
        out = ok(client, body(c_est, q_est, c_gt, q_gt, xmin=xmin.tolist(), xmax=xmin.tolist()))
        # the limit: the integrand at xmin, ‖I - H(xmin)‖_F²
        R_est, R_gt = rotation_matrix(q_est), rotation_matrix(q_gt)
        t = (R_est @ (c_gt - c_est)[..., None])[..., 0]
        H = (
            R_est @ R_gt.transpose(-1, -2)
            - t[..., None] * torch.tensor([0.0, 0.0, -1.0], dtype=F64) / xmin[:, None, None]
        )
        ref = ((torch.eye(3, dtype=F64) - H) ** 2).sum((-1, -2))
        np.testing.assert_allclose(out["loss"], ref.numpy(), rtol=1e-11)

    def test_conventions(self, client):
        c_est, q_est, c_gt, q_gt, xmin, xmax = batch(seed=3)
        ranges = dict(xmin=xmin.tolist(), xmax=xmax.tolist())
        w2c = ok(client, body(c_est, q_est, c_gt, q_gt, **ranges))
        conj = torch.tensor([1.0, -1.0, -1.0, -1.0], dtype=F64)
        c2w = ok(
            client,
            body(c_est, q_est * conj, c_gt, q_gt * conj, convention="camera_to_world", **ranges),
        )
        np.testing.assert_allclose(c2w["loss"], w2c["loss"], rtol=1e-14)
        R_c2w_est = rotation_matrix(q_est).transpose(-1, -2)
        R_c2w_gt = rotation_matrix(q_gt).transpose(-1, -2)
        c2w_m = ok(
            client, body(c_est, R_c2w_est, c_gt, R_c2w_gt, convention="camera_to_world", **ranges)
        )
        np.testing.assert_allclose(c2w_m["loss"], w2c["loss"], rtol=1e-12)

    @pytest.mark.parametrize("mode", ["local", "global"])
    def test_depth_samples(self, client, mode):
        c_est, q_est, c_gt, q_gt, _, _ = batch(4, seed=4)
        rng = np.random.default_rng(0)
        depths = [list(rng.uniform(0.5, 30.0, size=n)) for n in (5, 40, 1, 17)]
        out = ok(client, body(c_est, q_est, c_gt, q_gt, depths=depths, depth_mode=mode))
        if mode == "local":
            expect = np.array([np.percentile(d, [2.5, 97.5]) for d in depths])
        else:
            expect = np.tile(np.percentile(np.concatenate(depths), [2.5, 97.5]), (4, 1))
        np.testing.assert_allclose(out["xmin"], expect[:, 0], rtol=1e-12)
        np.testing.assert_allclose(out["xmax"], expect[:, 1], rtol=1e-12)
        same = ok(client, body(c_est, q_est, c_gt, q_gt, xmin=out["xmin"], xmax=out["xmax"]))
        np.testing.assert_allclose(out["loss"], same["loss"], rtol=1e-14)

    def test_extreme_but_valid_values_stay_finite(self, client):
        payload = {
            "estimated": {"position": [[1e9, -1e9, 1e9]], "quaternion": [[1e-8, 0, 0, 0]]},
            "true": {"position": [[-1e9, 1e9, -1e9]], "quaternion": [[0, 1e9, 0, 0]]},
            "xmin": 1e-9,
            "xmax": 1e-9,
            "gradients": True,
        }
        out = ok(client, payload)
        assert np.isfinite(out["loss"]).all() and out["loss"][0] > 1e36


class TestGradients:
    def test_quaternions_match_autograd(self, client):
        c_est, q_est, c_gt, q_gt, xmin, xmax = batch(seed=5)
        out = ok(client, body(c_est, q_est, c_gt, q_gt, xmin=xmin.tolist(), xmax=xmax.tolist(),
                              gradients=True))  # fmt: skip
        c, q = c_est.clone().requires_grad_(), q_est.clone().requires_grad_()
        ref = reference(c, rotation_matrix(q), c_gt, rotation_matrix(q_gt), xmin, xmax)
        g_c, g_q = torch.autograd.grad(ref.sum(), (c, q))
        grads = out["gradients"]
        np.testing.assert_allclose(grads["position"], g_c.numpy(), rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(grads["quaternion"], g_q.numpy(), rtol=1e-9, atol=1e-12)
        assert grads["rotation"] is None

    def test_camera_to_world_quaternion_gradients(self, client):
        c_est, q_est, c_gt, q_gt, xmin, xmax = batch(seed=6)
        conj = torch.tensor([1.0, -1.0, -1.0, -1.0], dtype=F64)
        out = ok(client, body(c_est, q_est, c_gt, q_gt, xmin=xmin.tolist(), xmax=xmax.tolist(),
                              convention="camera_to_world", gradients=True))  # fmt: skip
        q = q_est.clone().requires_grad_()
        ref = reference(c_est, rotation_matrix(q * conj), c_gt, rotation_matrix(q_gt * conj),
                        xmin, xmax)  # fmt: skip
        (g_q,) = torch.autograd.grad(ref.sum(), q)
        np.testing.assert_allclose(
            out["gradients"]["quaternion"], g_q.numpy(), rtol=1e-9, atol=1e-12
        )

    def test_matrix_gradients_match_library_autograd(self, client):
        c_est, q_est, c_gt, q_gt, xmin, xmax = batch(seed=7)
        R_est, R_gt = rotation_matrix(q_est), rotation_matrix(q_gt)
        out = ok(client, body(c_est, R_est, c_gt, R_gt, xmin=xmin.tolist(), xmax=xmax.tolist(),
                              gradients=True))  # fmt: skip
        c, R = c_est.clone().requires_grad_(), R_est.clone().requires_grad_()
        loss = homography_pose_loss_terms(c, R, c_gt, R_gt, xmin, xmax).loss
        g_c, g_R = torch.autograd.grad(loss.sum(), (c, R))
        np.testing.assert_allclose(out["gradients"]["position"], g_c.numpy(), rtol=1e-12)
        np.testing.assert_allclose(
            out["gradients"]["rotation"], g_R.numpy(), rtol=1e-12, atol=1e-15
        )
        # and along rotations (the tangent directions R·[ω]×) it is the paper's gradient
        ref = reference(c_est, R, c_gt, R_gt, xmin, xmax)
        (g_ref,) = torch.autograd.grad(ref.sum(), R)
        for k in range(3):
            omega = torch.zeros(3, 3, dtype=F64)
            omega[(k + 1) % 3, (k + 2) % 3], omega[(k + 2) % 3, (k + 1) % 3] = -1.0, 1.0
            tangent = R_est @ omega
            ours = (torch.tensor(out["gradients"]["rotation"], dtype=F64) * tangent).sum((-1, -2))
            theirs = (g_ref * tangent).sum((-1, -2))
            np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-10, atol=1e-13)


# ------------------------------------------------------------------------------------------------
# Invalid input: 422 naming the field
# ------------------------------------------------------------------------------------------------


def valid(b: int = 3) -> dict:
    c_est, q_est, c_gt, q_gt, xmin, xmax = batch(b, seed=8)
    return body(c_est, q_est, c_gt, q_gt, xmin=xmin.tolist(), xmax=xmax.tolist())


def _set(path: str, value):
    def change(p: dict) -> dict:
        keys = path.split(".")
        node = p
        for k in keys[:-1]:
            node = node[int(k)] if isinstance(node, list) else node[k]
        last = keys[-1]
        if isinstance(node, list):
            node[int(last)] = value
        elif value is _DELETE:
            del node[last]
        else:
            node[last] = value
        return p

    return change


_DELETE = object()
R_BAD = [[1.001, 0, 0], [0, 1, 0], [0, 0, 1]]
MIRROR = [[1, 0, 0], [0, 1, 0], [0, 0, -1]]

INVALID = {
    "xmin zero": (_set("xmin", 0.0), "xmin"),
    "xmin negative in list": (_set("xmin.1", -1.0), "xmin.1"),
    "xmax below xmin": (_set("xmax.2", 0.01), "xmax[2]"),
    "xmax below global xmin": (lambda p: {**p, "xmin": 5.0, "xmax": 4.0}, "xmax"),
    "xmin list length": (_set("xmin", [1.0, 2.0]), "xmin"),
    "zero quaternion": (_set("estimated.quaternion.1", [0, 0, 0, 0]), "estimated.quaternion[1]"),
    "non-orthonormal matrix": (
        lambda p: {**p, "true": {"position": p["true"]["position"], "rotation": [R_BAD] * 3}},
        "true.rotation[0]",
    ),
    "reflection": (
        lambda p: {**p, "true": {"position": p["true"]["position"], "rotation": [MIRROR] * 3}},
        "true.rotation[0]",
    ),
    "batch sizes differ": (_set("true.position", [[0, 0, 0]] * 2), "true.position"),
    "rotations vs positions": (
        _set("estimated.quaternion", [[1, 0, 0, 0]] * 2),
        "estimated.quaternion",
    ),
    "both rotation kinds": (_set("estimated.rotation", [np.eye(3).tolist()] * 3), "estimated"),
    "no rotation": (_set("true.quaternion", _DELETE), "true"),
    "no xmin": (_set("xmin", _DELETE), "xmin"),
    "depths and xmin": (lambda p: {**p, "depths": [[1.0]] * 3}, "depths"),
    "depths count": (
        lambda p: {**_set("xmin", _DELETE)(_set("xmax", _DELETE)(p)), "depths": [[1.0]] * 2},
        "depths",
    ),
    "depth sample zero": (
        lambda p: {
            **_set("xmin", _DELETE)(_set("xmax", _DELETE)(p)),
            "depths": [[1.0], [0.0], [2.0]],
        },
        "depths.1.0",
    ),
    "position of 2": (_set("estimated.position.0", [1.0, 2.0]), "estimated.position.0"),
    "huge position": (_set("estimated.position.0.0", 1e12), "estimated.position.0.0"),
    "empty batch": (
        lambda p: {**p, "estimated": {"position": [], "quaternion": []}},
        "estimated.position",
    ),
    "bad convention": (lambda p: {**p, "convention": "opengl"}, "convention"),
    "unknown field": (lambda p: {**p, "gradient": True}, "gradient"),
}


@pytest.mark.parametrize("case", INVALID)
def test_invalid_input_names_the_field(client, case):
    change, field = INVALID[case]
    r = client.post("/pose-loss", json=change(valid()))
    assert r.status_code == 422, r.text
    locs = [d["loc"] for d in r.json()["detail"]]
    assert any(loc == field or loc.startswith(field + ".") for loc in locs), (field, r.json())
    assert all(d["msg"] for d in r.json()["detail"])


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
@pytest.mark.parametrize("where", ["estimated.position", "true.quaternion", "xmin"])
def test_non_finite_json_is_refused(client, literal, where):
    payload = valid()
    marker = 123456.789
    if where == "xmin":
        payload["xmin"] = marker
        field = "xmin.0"
    else:
        side, key = where.split(".")
        payload[side][key][0][1] = marker
        field = f"{where}.0.1"
    text = json.dumps(payload).replace(repr(marker), literal)
    r = client.post("/pose-loss", content=text, headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text
    assert [d["loc"] for d in r.json()["detail"]] == [field]


def test_batch_over_the_limit():
    settings = Settings(
        log_json=False, log_level="warning", max_pose_batch=4, max_json_body_bytes=4096
    )
    with TestClient(create_app(settings)) as small:
        assert small.post("/pose-loss", json=valid(4)).status_code == 200
        r = small.post("/pose-loss", json=valid(5))
        assert r.status_code == 422
        assert r.json()["detail"][0]["loc"] == "estimated.position"
        assert "limit" in r.json()["detail"][0]["msg"]
        r = small.post("/pose-loss", json=valid(40))  # over the JSON body limit first
        assert r.status_code == 413


def test_endpoint_runs_off_the_event_loop_and_documents_an_example(client, monkeypatch):
    threads: list[str] = []
    real = route.compute_pose_loss

    def spy(*args, **kwargs):
        threads.append(threading.current_thread().name)
        return real(*args, **kwargs)

    monkeypatch.setattr(route, "compute_pose_loss", spy)
    schema = client.get("/openapi.json").json()["components"]["schemas"]
    assert schema["PoseLossRequest"]["examples"]
    assert schema["PoseLossResponse"]["examples"]
    example = schema["PoseLossRequest"]["examples"][0]
    out = ok(client, example)
    assert threads and threads[0].startswith("work-pose_loss")  # the class's own threads
    documented = schema["PoseLossResponse"]["examples"][0]
    np.testing.assert_allclose(out["loss"], documented["loss"], rtol=1e-5)


class TestRaggedDepths:
    """Regression: ragged ``depths`` were padded to the longest list (10,000 lists of one depth
    and one of 1,000,000, a 2.4 MB body, tried to allocate 80 GB and answered 500)."""

    def test_one_huge_list_among_many_tiny_ones(self, client):
        n = 10_000
        q = [[1, 0, 0, 0]] * n
        c = np.random.default_rng(1).normal(size=(n, 3)).round(2).tolist()
        big = [2] * 990_000 + [3] * 10_000
        payload = {
            "estimated": {"position": c, "quaternion": q},
            "true": {"position": [[x + 0.1 for x in p] for p in c], "quaternion": q},
            "depths": [[1]] * (n - 1) + [big],
        }
        data = json.dumps(payload, separators=(",", ":"))
        assert len(data) < 3_500_000
        r = client.post("/pose-loss", content=data, headers={"content-type": "application/json"})
        assert r.status_code == 200, r.text[:300]
        out = r.json()
        assert out["count"] == n and out["xmin"][:-1] == [1.0] * (n - 1)
        lo, hi = np.percentile(big, [2.5, 97.5])
        assert out["xmin"][-1] == pytest.approx(lo) and out["xmax"][-1] == pytest.approx(hi)

    def test_too_many_samples_in_all_is_413(self):
        s = Settings(log_json=False, log_level="warning", max_pose_depth_samples=100)
        c_est, q_est, c_gt, q_gt, _, _ = batch(2, seed=5)
        payload = body(c_est, q_est, c_gt, q_gt, depths=[[1.0] * 60, [2.0] * 41])
        with TestClient(create_app(s)) as c:
            r = c.post("/pose-loss", json=payload)
        assert r.status_code == 413, r.text
        assert r.json()["detail"][0]["loc"] == "depths"
