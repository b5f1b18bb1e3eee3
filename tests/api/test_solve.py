"""/solve over HTTP (httpx through the real app)."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.core.config import Settings
from app.geometry.four_point import solve_four_point
from app.main import create_app

SQ = [[0, 0], [127, 0], [127, 127], [0, 127]]
QUAD = [[3.5, -2.0], [130.0, 4.0], [120.5, 131.0], [-6.0, 125.0]]


def npz(**arrays) -> bytes:
    b = io.BytesIO()
    np.savez(b, **arrays)
    return b.getvalue()


@pytest.fixture(scope="module")
def small_client():
    s = Settings(
        log_json=False,
        log_level="warning",
        max_body_bytes=200_000,
        max_json_body_bytes=100_000,
        max_solve_batch=100,
        max_solve_json_batch=10,
    )
    with TestClient(create_app(s)) as c:
        yield c


class TestSolveJSON:
    def test_solves_and_flags_per_item(self, client):
        body = {"src": [SQ, [[0, 0], [1, 1], [2, 2], [0, 1]], SQ], "dst": [QUAD, SQ, SQ]}
        r = client.post("/solve", json=body)
        assert r.status_code == 200
        out = json.loads(r.text, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))
        assert out["valid"] == [True, False, True] and out["valid_count"] == 2
        assert out["reason"] == [None, "collinear_source", None]
        assert out["dst_H_src"][1] is None
        ref = solve_four_point(np.array(SQ, float), np.array(QUAD, float)).dst_H_src[0]
        np.testing.assert_allclose(out["dst_H_src"][0], ref, rtol=1e-12)
        np.testing.assert_allclose(out["dst_H_src"][2], np.eye(3), atol=1e-12)

    @pytest.mark.parametrize("method", ["aca", "sks", "dlt"])
    def test_methods(self, client, method):
        r = client.post("/solve", json={"src": [SQ], "dst": [QUAD], "method": method})
        assert r.status_code == 200, r.text
        H = np.array(r.json()["dst_H_src"][0])
        p = np.c_[np.array(SQ, float), np.ones(4)] @ H.T
        np.testing.assert_allclose(p[:, :2] / p[:, 2:], QUAD, atol=1e-8)

    def test_robust_returns_inliers(self, client):
        rng = np.random.default_rng(0)
        src = rng.uniform(0, 500, (60, 2))
        dst = src * 1.1 + 4
        dst[:10] = rng.uniform(0, 500, (10, 2))
        body = {"src": [src.tolist()], "dst": [dst.tolist()], "robust": True, "method": "dlt"}
        out = client.post("/solve", json=body).json()
        assert out["valid"] == [True]
        assert out["num_inliers"] == [50] and out["inliers"][0][10:] == [True] * 50
        assert out["rms_error"][0] < 1e-6

    def test_float32_and_frobenius(self, client):
        body = {"src": [SQ], "dst": [QUAD], "dtype": "float32", "normalize": "frobenius"}
        H = np.array(client.post("/solve", json=body).json()["dst_H_src"][0])
        assert abs(np.linalg.norm(H) - 1) < 1e-6

    @pytest.mark.parametrize(
        ("body", "loc", "fragment"),
        [
            ({"src": [SQ], "dst": [QUAD, QUAD]}, "dst", "must match"),
            ({"src": [SQ + [[1, 2]]], "dst": [QUAD + [[1, 2]]]}, "src[0]", "exactly 4 points"),
            ({"src": [SQ[:3]], "dst": [QUAD[:3]], "method": "dlt"}, "src[0]", "at least 4"),
            ({"src": [SQ], "dst": [QUAD[:3]]}, "dst[0]", "3"),
            ({"src": [], "dst": []}, "src", "at least one"),
        ],
    )
    def test_bad_shapes_name_the_field(self, client, body, loc, fragment):
        r = client.post("/solve", json=body)
        assert r.status_code == 422
        d = r.json()["detail"][0]
        assert d["loc"] == loc and fragment in d["msg"]

    def test_non_numeric_and_wrong_arity(self, client):
        r = client.post("/solve", json={"src": [[["a", 0], [1, 0], [1, 1], [0, 1]]], "dst": [QUAD]})
        assert r.status_code == 422 and "src" in r.json()["detail"][0]["loc"]
        r = client.post("/solve", json={"src": [[[0, 0, 1]] * 4], "dst": [QUAD]})
        assert r.status_code == 422
        r = client.post("/solve", json={"src": [SQ], "dst": [QUAD], "method": "svd"})
        assert r.status_code == 422 and "method" in r.json()["detail"][0]["loc"]
        r = client.post(
            "/solve", content=b"{not json", headers={"content-type": "application/json"}
        )
        assert r.status_code == 422

    def test_nan_input_is_flagged_not_500(self, client):
        body = '{"src": [[[NaN, 0], [1, 0], [1, 1], [0, 1]]], "dst": [[[0, 0], [1, 0], [1, 1], [0, 1]]]}'
        r = client.post("/solve", content=body, headers={"content-type": "application/json"})
        assert r.status_code == 200 and r.json()["reason"] == ["non_finite_input"]

    def test_limits(self, small_client):
        r = small_client.post("/solve", json={"src": [SQ] * 11, "dst": [QUAD] * 11})
        assert r.status_code == 422 and "limit of 10" in r.json()["detail"][0]["msg"]
        big = {"src": [SQ] * 10, "dst": [QUAD] * 10, "pad": "x" * 200_000}
        r = small_client.post("/solve", json=big)
        assert r.status_code == 413 and "limit" in r.json()["detail"]


class TestSolveBinary:
    def test_npz_round_trip_matches_library(self, client):
        rng = np.random.default_rng(1)
        src = rng.uniform(0, 640, (5000, 4, 2))
        dst = src + rng.uniform(-40, 40, src.shape)
        dst[7] = dst[7, [0, 0, 2, 3]]  # one repeated point
        r = client.post("/solve/batch?method=sks", content=npz(src=src, dst=dst))
        assert r.status_code == 200 and r.headers["content-type"] == "application/x-npz"
        out = np.load(io.BytesIO(r.content), allow_pickle=False)
        ref = solve_four_point(src, dst, method="sks")
        np.testing.assert_array_equal(out["reason"], ref.reason)
        np.testing.assert_array_equal(out["dst_H_src"], ref.dst_H_src)
        assert out["valid"].sum() == 4999 and r.headers["x-valid-count"] == "4999"

    @pytest.mark.parametrize("dtype", ["<f4", ">f4"])
    def test_npy_stacked_float32(self, client, dtype):
        a = np.stack([np.array([SQ] * 3, dtype), np.array([QUAD] * 3, dtype)], 1)
        b = io.BytesIO()
        np.save(b, a)
        out = np.load(io.BytesIO(client.post("/solve/batch", content=b.getvalue()).content))
        assert out["dst_H_src"].dtype == np.float32 and out["valid"].all()

    def test_bad_bodies(self, client):
        assert client.post("/solve/batch", content=b"hello").status_code == 400
        r = client.post("/solve/batch", content=npz(src=np.zeros((3, 4, 2))))
        assert r.status_code == 422 and "dst" in r.json()["detail"][0]["msg"]
        r = client.post(
            "/solve/batch", content=npz(src=np.zeros((3, 5, 2)), dst=np.zeros((3, 5, 2)))
        )
        assert r.status_code == 422 and "(B, 4, 2)" in r.json()["detail"][0]["msg"]
        b = io.BytesIO()
        np.save(b, np.array([{"a": 1}], dtype=object), allow_pickle=True)
        r = client.post("/solve/batch", content=b.getvalue())
        assert r.status_code == 400 and "object" in r.json()["detail"][0]["msg"]
        r = client.post(
            "/solve/batch",
            content=npz(src=np.array([["a"] * 2] * 4)[None], dst=np.zeros((1, 4, 2))),
        )
        assert r.status_code == 422

    def test_zip_bomb_refused_before_inflating(self, small_client):
        b = io.BytesIO()
        with zipfile.ZipFile(b, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("src.npy", b"\0" * 50_000_000)
        r = small_client.post("/solve/batch", content=b.getvalue())
        assert r.status_code == 413 and "expand" in r.json()["detail"][0]["msg"]

    def test_batch_and_body_limits(self, small_client):
        r = small_client.post(
            "/solve/batch", content=npz(src=np.zeros((101, 4, 2)), dst=np.zeros((101, 4, 2)))
        )
        assert r.status_code == 413 and "limit of 100" in r.json()["detail"][0]["msg"]
        r = small_client.post("/solve/batch", content=b"\x93NUMPY" + b"0" * 300_000)
        assert r.status_code == 413
