"""homography_client.HomographyClient against the real app (in process), and its transport
behaviour (retries, streaming, error parsing) against httpx's MockTransport."""

from __future__ import annotations

import io
import time

import cv2
import httpx
import numpy as np
import pytest
from homography_client import HomographyClient, HomographyError, RetryPolicy, encode_png
from homography_client._core import retry_after_seconds

from tests.alignment.helpers import corner_error, photo


@pytest.fixture(scope="module")
def hc(client) -> HomographyClient:
    return HomographyClient(http_client=client)


@pytest.fixture(scope="module")
def pair() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A textured 320x240 image, a perspective view of it, and the true b_H_a."""
    a = photo("camera", (320, 240)).copy()
    b_H_a = np.array([[1.03, 0.02, 6.0], [-0.01, 0.98, -4.0], [2e-5, 1e-5, 1.0]])
    b = cv2.warpPerspective(a, b_H_a, (320, 240), flags=cv2.INTER_LINEAR)
    return a, b, b_H_a


def _corner_error(H, G) -> float:
    return corner_error(H, G, (320, 240))


def _points(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    src = rng.uniform(0, 640, (n, 4, 2))
    return src, src + rng.uniform(-30, 30, src.shape)


class TestSolve:
    def test_json_and_binary_paths_agree(self, hc):
        src, dst = _points(300)
        src[7, 1] = src[7, 0]  # a repeated point: invalid, with its reason
        j = hc.solve(src, dst, binary=False)
        b = hc.solve(src, dst, binary=True)
        assert not j.binary and b.binary
        np.testing.assert_array_equal(j.valid, b.valid)
        assert j.reason == b.reason
        assert j.reason[7] == "repeated_source_point" and not j.valid[7]
        assert np.isnan(j.dst_H_src[7]).all() and np.isnan(b.dst_H_src[7]).all()
        np.testing.assert_allclose(j.dst_H_src[j.valid], b.dst_H_src[b.valid], rtol=1e-12)
        # each matrix maps its source points onto its targets
        hom = np.concatenate([src, np.ones((300, 4, 1))], axis=2) @ b.dst_H_src.transpose(0, 2, 1)
        err = np.abs(hom[..., :2] / hom[..., 2:] - dst)[b.valid]
        assert err.max() < 1e-6

    def test_large_batches_go_binary_and_are_split(self, hc, monkeypatch):
        src, dst = _points(5000, seed=1)
        monkeypatch.setattr(hc, "binary_batch", 2000)
        r = hc.solve(src, dst)
        assert r.binary and r.requests == 3 and len(r) == 5000
        ref = hc.solve(src[:10], dst[:10])  # small: JSON
        assert not ref.binary
        np.testing.assert_allclose(r.dst_H_src[:10], ref.dst_H_src, rtol=1e-12)

    def test_json_batches_over_the_limit_are_split(self, hc, monkeypatch):
        src, dst = _points(25, seed=2)
        monkeypatch.setattr(hc, "json_batch", 10)
        r = hc.solve(src, dst, binary=False)
        assert r.requests == 3 and r.valid.shape == (25,) and r.dst_H_src.shape == (25, 3, 3)

    def test_dlt_and_ragged_robust(self, hc):
        rng = np.random.default_rng(4)
        H = np.array([[1.1, 0.05, 3.0], [0.02, 0.95, -2.0], [1e-4, 0.0, 1.0]])
        src = [rng.uniform(0, 300, (n, 2)) for n in (6, 12)]
        dst = []
        for s in src:
            p = np.c_[s, np.ones(len(s))] @ H.T
            dst.append(p[:, :2] / p[:, 2:])
        dst[1][0] += 80  # one outlier
        d = hc.solve(src, dst, method="dlt")
        np.testing.assert_allclose(d.dst_H_src[0], H, atol=1e-8)
        r = hc.solve(src, dst, robust=True, ransac={"threshold": 1.0, "seed": 0})
        assert r.inliers is not None and not r.inliers[1][0] and r.inliers[1][1:].all()
        np.testing.assert_array_equal(r.num_inliers, [6, 11])
        np.testing.assert_allclose(r.dst_H_src[1], H, atol=1e-6)

    def test_binary_needs_four_point_batches(self, hc):
        src, dst = _points(3)
        with pytest.raises(ValueError, match="binary"):
            hc.solve(src, dst, method="dlt", binary=True)

    def test_server_error_names_the_field(self, hc):
        src, dst = _points(2)
        with pytest.raises(HomographyError) as e:
            hc.solve(src[:, :3], dst[:, :3])
        assert e.value.status == 422 and e.value.field == "src[0]"
        assert "exactly 4 points" in e.value.message


class TestEstimate:
    def test_arrays_bytes_and_paths(self, hc, pair, tmp_path):
        a, b, G = pair
        path = tmp_path / "a.png"
        path.write_bytes(cv2.imencode(".png", a)[1].tobytes())
        for img_a in (a, path, str(path), path.read_bytes()):
            r = hc.estimate(img_a, b, method="features")
            assert r.b_H_a.shape == (3, 3) and r.chosen.startswith("features")
            assert _corner_error(r.b_H_a, G) < 1.0
            assert 0 <= r.confidence <= 1 and r.confidence == r.quality.confidence
            assert r.low_confidence == r.quality.low_confidence
            assert r.raw["b_H_a"] == r.b_H_a.tolist()
            assert r.image_a_size == (320, 240) and r.features is not None

    def test_network_with_refine(self, hc, pair):
        a, b, G = pair
        r = hc.estimate(a, b, refine=True)
        assert r.method == "network" and r.model is not None and r.offsets.shape == (4, 2)
        assert r.refine is not None and r.refine.applied
        assert _corner_error(r.refine.result.b_H_a, G) < 0.5
        np.testing.assert_array_equal(r.b_H_a, r.refine.result.b_H_a)  # the refined answer
        assert r.refine.start_b_H_a is not None and r.refine.start_b_H_a.shape == (3, 3)
        assert r.candidates and r.candidates[0].b_H_a.shape == (3, 3)

    def test_rgb_and_16_bit_arrays(self, hc, pair):
        a, b, G = pair
        rgb = np.dstack([a, a, a])
        r = hc.estimate(rgb, (b.astype(np.uint16) * 257), method="features")
        assert _corner_error(r.b_H_a, G) < 1.0

    def test_png_encoder_round_trips(self):
        rng = np.random.default_rng(0)
        for img in (
            rng.integers(0, 256, (7, 5), dtype=np.uint8),
            rng.integers(0, 256, (4, 6, 3), dtype=np.uint8),
            rng.integers(0, 256, (3, 3, 4), dtype=np.uint8),
            rng.integers(0, 65536, (5, 4), dtype=np.uint16),
        ):
            back = cv2.imdecode(np.frombuffer(encode_png(img), np.uint8), cv2.IMREAD_UNCHANGED)
            if img.ndim == 3:  # OpenCV decodes to BGR(A)
                back = back[..., [2, 1, 0, 3][: img.shape[2]]]
            np.testing.assert_array_equal(back, img)
        with pytest.raises(TypeError, match="uint8 or uint16"):
            encode_png(np.zeros((4, 4), np.float32))
        with pytest.raises(ValueError, match="shape"):
            encode_png(np.zeros((4, 4, 2), np.uint8))

    def test_undecodable_image(self, hc, pair):
        with pytest.raises(HomographyError) as e:
            hc.estimate(b"not an image", pair[1])
        assert e.value.status == 422 and e.value.field == "image_a"


class TestRefineAndPoseLoss:
    def test_refine_with_options(self, hc, pair):
        a, b, G = pair
        r = hc.refine(a, b, np.eye(3), max_seconds=2.0, overlay=True)
        assert _corner_error(r.b_H_a, G) < 0.5
        assert r.levels and r.overlay is not None and r.overlay.startswith(b"\x89PNG")
        assert r.error_after.mean_abs < r.error_before.mean_abs

    def test_refine_errors(self, hc, pair):
        a, b, _ = pair
        with pytest.raises(HomographyError) as e:
            hc.refine(a, b, max_seconds=-1)
        assert e.value.status == 422 and e.value.field == "options.max_seconds"
        with pytest.raises(TypeError, match="unknown option"):
            hc.refine(a, b, max_secs=1)

    def test_pose_loss(self, hc):
        r = hc.pose_loss(
            [[0, 0, -1], [0.1, 0, 0]],
            [[1, 0, 0, 0], [1, 0, 0, 0]],
            [[0, 0, 0], [0, 0, 0]],
            np.stack([np.eye(3)] * 2),
            xmin=2.0,
            xmax=4.0,
            gradients=True,
        )
        # pure translation: loss = ||c - c_hat||^2 / (xmin * xmax)
        np.testing.assert_allclose(r.loss, [1 / 8, 0.01 / 8], rtol=1e-12)
        assert r.gradients is not None and r.gradients.position.shape == (2, 3)
        assert r.gradients.quaternion.shape == (2, 4) and r.mean == pytest.approx(r.loss.mean())

    def test_pose_loss_error(self, hc):
        with pytest.raises(HomographyError) as e:
            hc.pose_loss([[0, 0, 0]], [[1, 0, 0, 0]], [[0, 0, 0]], [[1, 0, 0, 0]])
        assert e.value.status == 422 and e.value.field == "xmin"


# ------------------------------------------------------------------------ transport behaviour
class Recorder(httpx.BaseTransport):
    """Like httpx.MockTransport, but hands the handler the request body as the pieces the
    client streamed (MockTransport joins them first): ``handler(request, chunks)``."""

    def __init__(self, handler) -> None:
        self.handler = handler

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        chunks = [bytes(c) for c in request.stream]
        return self.handler(request, chunks)


def _mock(handler) -> HomographyClient:
    http = httpx.Client(base_url="http://test", transport=Recorder(handler))
    return HomographyClient(http_client=http, retry=RetryPolicy(deadline=2.0, initial=0.01))


HEALTH = {"status": "ok", "version": "x"}


def test_503_is_retried_honouring_retry_after():
    calls = []

    def handler(request, chunks):
        calls.append(time.monotonic())
        if len(calls) < 3:
            return httpx.Response(
                503, json={"detail": "queue full"}, headers={"Retry-After": "0.2"}
            )
        return httpx.Response(200, json=HEALTH)

    assert _mock(handler).health() == HEALTH
    assert len(calls) == 3 and calls[1] - calls[0] >= 0.19 and calls[2] - calls[1] >= 0.19


def test_503_past_the_deadline_raises_with_the_server_message():
    def handler(request, chunks):
        return httpx.Response(503, json={"detail": "queue full"}, headers={"Retry-After": "0.5"})

    start = time.monotonic()
    with pytest.raises(HomographyError) as e:
        _mock(handler).health()
    assert e.value.status == 503 and e.value.message.startswith("queue full")
    assert "still 503" in e.value.message and time.monotonic() - start < 2.0


def test_other_errors_are_not_retried():
    calls = []

    def handler(request, chunks):
        calls.append(1)
        return httpx.Response(
            413, json={"detail": "request body too large"}, headers={"x-request-id": "abc"}
        )

    with pytest.raises(HomographyError) as e:
        _mock(handler).health()
    assert len(calls) == 1 and e.value.status == 413 and e.value.request_id == "abc"
    assert e.value.field is None and e.value.message == "request body too large"


@pytest.mark.parametrize(
    ("detail", "message", "field"),
    [
        ("plain", "plain", None),
        ([{"loc": "src[0]", "msg": "item 0: bad"}], "src[0]: item 0: bad", "src[0]"),
        ([{"loc": ["body", "xmin", 0], "msg": "too small"}], "xmin.0: too small", "xmin.0"),
        (
            [{"loc": "a", "msg": "a: x"}, {"loc": ["query", "b"], "msg": "y"}],
            "a: x; b: y",
            "a",
        ),
    ],
)
def test_both_error_shapes_parse(detail, message, field):
    e = _error(httpx.Response(422, json={"detail": detail}))
    assert (e.message, e.field, e.detail) == (message, field, detail)


def test_non_json_error():
    e = _error(httpx.Response(502, text="<html>bad gateway</html>"))
    assert e.status == 502 and "bad gateway" in e.message


def _error(response) -> HomographyError:
    with pytest.raises(HomographyError) as e:
        _mock(lambda request, chunks: response).health()
    return e.value


def test_retry_after_forms():
    assert retry_after_seconds("3") == 3.0
    assert retry_after_seconds("0.5") == 0.5
    assert retry_after_seconds(None) is None and retry_after_seconds("soon") is None
    date = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 30))
    assert 25 < retry_after_seconds(date) <= 31


def test_binary_body_is_streamed_in_pieces_with_its_length():
    seen = {}

    def handler(request, chunks):
        body = b"".join(chunks)
        seen.update(pieces=len(chunks), length=int(request.headers["content-length"]))
        with np.load(io.BytesIO(body)) as z:
            n = len(z["src"])
        out = io.BytesIO()
        np.savez(
            out, dst_H_src=np.tile(np.eye(3), (n, 1, 1)), valid=np.ones(n, bool), reason=np.zeros(n)
        )
        seen["size"] = len(body)
        return httpx.Response(200, content=out.getvalue())

    src, dst = _points(60_000)  # ~7.7 MB of float64
    r = _mock(handler).solve(src, dst)
    assert r.binary and r.valid.all() and r.reason[0] is None
    assert seen["length"] == seen["size"] and seen["pieces"] == -(-seen["size"] // 2**20)


def test_503_resends_a_streamed_body_whole():
    sizes = []

    def handler(request, chunks):
        sizes.append(len(b"".join(chunks)))
        if len(sizes) == 1:
            return httpx.Response(503, json={"detail": "busy"}, headers={"Retry-After": "0"})
        n = 4096
        out = io.BytesIO()
        np.savez(out, dst_H_src=np.zeros((n, 3, 3)), valid=np.zeros(n, bool), reason=np.ones(n))
        return httpx.Response(200, content=out.getvalue())

    src, dst = _points(4096)
    r = _mock(handler).solve(src, dst)
    assert len(sizes) == 2 and sizes[0] == sizes[1] > 0
    assert r.reason[0] == "non_finite_input" and np.isnan(r.dst_H_src).all()


def test_api_key_header():
    def handler(request, chunks):
        assert request.headers["x-api-key"] == "s3cret"
        return httpx.Response(200, json=HEALTH)

    http = httpx.Client(base_url="http://test", transport=Recorder(handler))
    assert HomographyClient(api_key="s3cret", http_client=http).health() == HEALTH
