"""/estimate over HTTP: both body formats, every bad input, the batching queue, the geometry
plumbing (fake engine returning the true offsets) and the equality of the API's error with the
offline evaluation's."""

from __future__ import annotations

import base64
import json
import shutil
import struct
import tempfile
import threading
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.core.config import REPO_ROOT, Settings
from app.geometry.points import image_corners
from app.inference.engine import ModelLoadError
from app.inference.homography import offsets_to_homography
from app.main import create_app
from app.services import estimate as estimate_service
from tests.inference.helpers import (
    FakeEngine,
    apply_h,
    encode,
    fixture_model,
    skimage_gray_stack,
    skimage_photo,
    true_offsets,
)


def settings(**kw) -> Settings:
    return Settings(log_json=False, log_level="warning", **kw)


def files(a: bytes, b: bytes, ta: str = "image/png", tb: str = "image/png") -> dict:
    return {"image_a": ("a.png", a, ta), "image_b": ("b.png", b, tb)}


def png_header(w: int, h: int) -> bytes:
    """A PNG whose header declares w x h (gray 8-bit) with no pixel data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def photo_pair() -> tuple[bytes, bytes]:
    img = cv2.resize(skimage_photo("astronaut.png"), (320, 240), interpolation=cv2.INTER_AREA)
    H = np.array([[1.0, 0.02, 6.0], [-0.01, 1.0, -4.0], [0.0, 0.0, 1.0]])
    return encode(img), encode(cv2.warpPerspective(img, H, (320, 240)), ".jpg")


@pytest.fixture(scope="module")
def model_client():
    """The app on the exported fixture models (regression default, classification second)."""
    s = settings(
        model_path=fixture_model("regression"),
        classification_model_path=fixture_model("classification"),
        estimate_max_wait_ms=20,
    )
    with TestClient(create_app(s)) as c:
        yield c


def fake_client(monkeypatch, engine: FakeEngine, **kw) -> TestClient:
    """An app whose /estimate runner is ``engine`` (``load_engine`` replaced; the model path
    only has to exist)."""
    monkeypatch.setattr(estimate_service, "load_engine", lambda path, s: engine)
    path = Path(tempfile.gettempdir()) / "fake-estimate-model.onnx"
    path.touch()
    return TestClient(create_app(settings(model_path=path, **kw)))


class TestHappyPath:
    def test_multipart(self, model_client: TestClient, photo_pair) -> None:
        a, b = photo_pair
        r = model_client.post("/estimate", files=files(a, b, tb="image/jpeg"))
        assert r.status_code == 200, r.text
        body = r.json()
        card = json.loads(fixture_model("regression").with_suffix(".json").read_text())
        assert body["model"] == {
            "name": "fixture_regression",
            "version": card["sha256"][:12],
            "kind": "regression",
            "sha256": card["sha256"][:12],
            "providers": ["CPUExecutionProvider"],
        }
        assert body["image_a_size"] == [320, 240] and body["image_b_size"] == [320, 240]
        assert body["confidence"] is None
        H = np.array(body["b_H_a"])
        assert H.shape == (3, 3) and H[2, 2] == 1.0
        corners = np.array(body["corners_in_b"])
        np.testing.assert_allclose(corners, apply_h(H, image_corners((320, 240))), atol=1e-9)
        # b_H_a is the ACA solution from the returned offsets
        ref = offsets_to_homography(
            np.array(body["offsets"]), (320, 240), (320, 240), 128
        ).dst_H_src[0]
        np.testing.assert_allclose(H, ref, rtol=1e-9, atol=1e-12)
        t = body["timings_ms"]
        assert set(t) == {
            "decode",
            "preprocess",
            "queue_wait",
            "inference",
            "solve",
            "features",
            "refine",
            "select",
            "total",
            "admission_wait",
            "batch_size",
        }
        assert t["features"] is None and t["refine"] is None and t["select"] >= 0
        assert t["admission_wait"] >= 0
        assert t["total"] >= t["decode"] + t["inference"] - 1e-3 and t["batch_size"] >= 1
        # every answer is scored: the network's candidate alone, unrefined
        assert body["method"] == "network" and body["chosen"] == "network"
        assert [c["name"] for c in body["candidates"]] == ["network"]
        assert body["features"] is None
        q = body["quality"]
        assert 0 <= q["confidence"] <= 1 and q["low_confidence"] == (q["confidence"] < 0.5)
        assert q["photometric"] == body["candidates"][0]["photometric"]
        assert q["photometric"]["overlap"] > 0.5

    def test_base64_equals_multipart(self, model_client, photo_pair) -> None:
        a, b = photo_pair
        m = model_client.post("/estimate", files=files(a, b)).json()
        b64 = base64.b64encode
        j1 = model_client.post(
            "/estimate", json={"image_a": b64(a).decode(), "image_b": b64(b).decode()}
        )
        j2 = model_client.post(
            "/estimate",
            json={
                "image_a": "data:image/png;base64," + b64(a).decode(),
                "image_b": "data:image/jpeg;base64," + b64(b).decode(),
            },
        )
        j3 = model_client.post(
            "/estimate/json", json={"image_a": b64(a).decode(), "image_b": b64(b).decode()}
        )
        for j in (j1, j2, j3):
            assert j.status_code == 200, j.text
            np.testing.assert_allclose(j.json()["offsets"], m["offsets"], atol=1e-5)
            np.testing.assert_allclose(j.json()["b_H_a"], m["b_H_a"], rtol=1e-5, atol=1e-8)

    def test_gray_and_colour_inputs_agree(self, model_client) -> None:
        """A gray PNG and the same gray replicated into BGR give the same answer."""
        gray = cv2.resize(cv2.cvtColor(skimage_photo("coffee.png"), cv2.COLOR_BGR2GRAY), (300, 200))
        bgr = cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)
        shifted = np.roll(gray, 5, axis=1)
        r1 = model_client.post("/estimate", files=files(encode(gray), encode(shifted))).json()
        r2 = model_client.post("/estimate", files=files(encode(bgr), encode(shifted, ".bmp")))
        assert r2.status_code == 200, r2.text
        np.testing.assert_allclose(r2.json()["offsets"], r1["offsets"], atol=1e-5)

    def test_classification_confidence(self, model_client, photo_pair) -> None:
        r = model_client.post("/estimate?model=classification", files=files(*photo_pair))
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["model"]["kind"] == "classification"
        conf = np.array(body["confidence"])
        assert conf.shape == (4,) and np.all((conf > 0) & (conf <= 1))
        assert (
            model_client.post("/estimate?model=regression", files=files(*photo_pair)).json()[
                "model"
            ]["kind"]
            == "regression"
        )

    def test_ready_reports_engine(self, model_client) -> None:
        r = model_client.get("/ready")
        assert r.status_code == 200
        eng = r.json()["engines"]["homographynet"]
        assert eng["ready"] and eng["required"]
        assert eng["info"]["providers"]["active"] == ["CPUExecutionProvider"]
        assert eng["info"]["batching"]["max_batch"] == 16
        assert r.json()["engines"]["homographynet_classification"]["info"]["kind"] == (
            "classification"
        )

    def test_openapi_declares_both_bodies(self, model_client) -> None:
        op = model_client.get("/openapi.json").json()["paths"]["/estimate"]["post"]
        content = op["requestBody"]["content"]
        assert set(content) == {"multipart/form-data", "application/json"}
        assert content["multipart/form-data"]["schema"]["required"] == ["image_a", "image_b"]
        types = {f: e["contentType"] for f, e in content["multipart/form-data"]["encoding"].items()}
        assert types == dict.fromkeys(("image_a", "image_b"), "image/*, application/octet-stream")
        ref = content["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
        spec = model_client.get("/openapi.json").json()
        assert spec["components"]["schemas"][ref]["examples"]
        example = content["application/json"]["examples"]["shifted"]["value"]
        for path in ("/estimate", "/estimate/json"):  # the documented example works
            r = model_client.post(path, json=example)
            assert r.status_code == 200, r.text
        assert {"413", "415", "422", "503"} <= set(op["responses"])


def _bad_cases() -> list:
    rng = np.random.default_rng(0)
    good = encode(cv2.resize(skimage_photo("chelsea.png"), (64, 48)))
    truncated = good[: len(good) // 2]
    tiny = encode(np.zeros((8, 40), np.uint8))
    garbage = rng.integers(0, 256, 3000, dtype=np.uint8).tobytes()
    b64 = base64.b64encode(good).decode()
    return [
        # (id, request kwargs, status, field or None, substring of the message)
        (
            "text-body",
            {"content": b"hi", "headers": {"content-type": "text/plain"}},
            415,
            None,
            "content type 'text/plain' is not supported",
        ),
        ("no-content-type", {"content": b"hi"}, 415, None, "not supported"),
        (
            "part-type",
            {"files": files(good, good, tb="text/plain")},
            415,
            "image_b",
            "not an image",
        ),
        (
            "missing-multipart",
            {"files": {"image_a": ("a.png", good, "image/png")}},
            422,
            "image_b",
            "missing",
        ),
        (
            "text-field",
            {"files": {"image_a": ("a.png", good, "image/png")}, "data": {"image_b": "hello"}},
            422,
            "image_b",
            "file upload",
        ),
        ("missing-json", {"json": {"image_a": b64}}, 422, "image_b", "Field required"),
        (
            "extra-json",
            {"json": {"image_a": b64, "image_b": b64, "x": 1}},
            422,
            "x",
            "Extra inputs",
        ),
        (
            "not-json",
            {"content": b"{", "headers": {"content-type": "application/json"}},
            422,
            "body",
            "JSON",
        ),
        (
            "bad-base64",
            {"json": {"image_a": "***", "image_b": b64}},
            422,
            "image_a",
            "not valid base64",
        ),
        ("empty-file", {"files": files(b"", good)}, 422, "image_a", "empty"),
        ("empty-base64", {"json": {"image_a": b64, "image_b": ""}}, 422, "image_b", "empty"),
        ("garbage", {"files": files(good, garbage)}, 422, "image_b", "not a decodable image"),
        ("truncated", {"files": files(truncated, good)}, 422, "image_a", "image_a"),
        ("too-small", {"files": files(good, tiny)}, 422, "image_b", "too small"),
        (
            "too-many-pixels",
            {"files": files(png_header(8000, 6000), good)},
            413,
            "image_a",
            "exceeds the limit",
        ),
        (
            "unsupported-format",
            {"files": files(good, b"%PDF-1.4\n" + garbage)},
            422,
            "image_b",
            "not a decodable image",
        ),
    ]


@pytest.mark.parametrize(
    ("case", "status", "field", "needle"),
    [pytest.param(c[1], c[2], c[3], c[4], id=c[0]) for c in _bad_cases()],
)
def test_bad_input(model_client, case, status, field, needle) -> None:
    r = model_client.post("/estimate", **case)
    assert r.status_code == status, r.text
    detail = r.json()["detail"]
    if field is None:
        assert needle in detail
    else:
        assert isinstance(detail, list)
        hit = [d for d in detail if d["loc"] == field]
        assert hit, detail
        assert needle in hit[0]["msg"], detail


@pytest.mark.parametrize(
    ("body", "status", "field", "needle"),
    [
        ({"image_a": "aGk="}, 422, "image_b", "Field required"),
        ({"image_a": "***", "image_b": "aGk="}, 422, "image_a", "not valid base64"),
        ({"image_a": "aGk=", "image_b": "aGk="}, 422, "image_a", "not a decodable image"),
    ],
)
def test_bad_input_json_path(model_client, body, status, field, needle) -> None:
    r = model_client.post("/estimate/json", json=body)
    assert r.status_code == status, r.text
    hit = [d for d in r.json()["detail"] if d["loc"] == field]
    assert hit and needle in hit[0]["msg"], r.json()


def test_huge_header_is_413(model_client) -> None:
    good = encode(np.zeros((32, 32), np.uint8))
    r = model_client.post("/estimate", files=files(png_header(10_000, 10_000), good))
    assert r.status_code == 413, r.text


def test_uploads_closed(model_client, monkeypatch) -> None:
    from starlette.datastructures import UploadFile

    closed: list[str] = []
    original = UploadFile.close

    async def close(self) -> None:
        closed.append(self.filename)
        await original(self)

    monkeypatch.setattr(UploadFile, "close", close)
    good = encode(cv2.resize(skimage_photo("chelsea.png"), (64, 48)))
    assert model_client.post("/estimate", files=files(good, good)).status_code == 200
    assert sorted(closed) == ["a.png", "b.png"]
    closed.clear()
    r = model_client.post("/estimate", files=files(good, good, tb="text/plain"))
    assert r.status_code == 415 and sorted(closed) == ["a.png", "b.png"]
    closed.clear()
    assert model_client.post("/estimate", files=files(b"", good)).status_code == 422
    assert sorted(closed) == ["a.png", "b.png"]


def test_missing_model_503_names_it(tmp_path: Path) -> None:
    absent = tmp_path / "absent.onnx"
    no_cls = tmp_path / "absent_classification.onnx"
    with TestClient(create_app(settings(model_path=absent, classification_model_path=no_cls))) as c:
        ready = c.get("/ready")
        assert ready.status_code == 200  # the rest of the service is usable
        eng = ready.json()["engines"]["homographynet"]
        assert not eng["ready"] and not eng["required"] and str(absent) in eng["detail"]
        good = encode(np.zeros((32, 32), np.uint8))
        r = c.post("/estimate", files=files(good, good))
        assert r.status_code == 503
        assert "not loaded" in r.json()["detail"] and str(absent) in r.json()["detail"]
        r = c.post("/estimate?model=classification", files=files(good, good))
        detail = r.json()["detail"][0]
        assert r.status_code == 422 and detail["loc"] == "model" and str(no_cls) in detail["msg"]


def test_present_but_corrupt_model_refused_at_startup(tmp_path: Path) -> None:
    src = fixture_model("regression")
    dst = tmp_path / src.name
    shutil.copy(src, dst)
    card = json.loads(src.with_suffix(".json").read_text()) | {"sha256": "f" * 64}
    dst.with_suffix(".json").write_text(json.dumps(card))
    with (
        pytest.raises(ModelLoadError, match="sha256"),
        TestClient(create_app(settings(model_path=dst))),
    ):
        pass


def test_queue_full_503_retry_after(monkeypatch) -> None:
    gate = threading.Event()
    engine = FakeEngine(gate=gate)
    good = encode(cv2.resize(skimage_photo("chelsea.png"), (64, 48)))
    client = fake_client(
        monkeypatch,
        engine,
        estimate_queue_size=1,
        estimate_max_batch=1,
        estimate_max_wait_ms=0,
        admission={"estimate": {"max_in_flight": 8}},  # the batcher's queue is what is tested
    )
    with client as c, ThreadPoolExecutor(2) as pool:
        batcher = c.app.state.engines.get("homographynet").batcher
        try:
            first = pool.submit(c.post, "/estimate", files=files(good, good))
            while not engine.calls:  # the first pair is in the (blocked) engine
                threading.Event().wait(0.01)
            second = pool.submit(c.post, "/estimate", files=files(good, good))
            while batcher.pending < 1:  # the second waits in the queue
                threading.Event().wait(0.01)
            r = c.post("/estimate", files=files(good, good))
            assert r.status_code == 503, r.text
            assert int(r.headers["retry-after"]) >= 1
            assert "queue is full" in r.json()["detail"]
        finally:
            gate.set()
        assert first.result().status_code == 200
        assert second.result().status_code == 200


def test_concurrent_requests_share_one_onnx_call(monkeypatch) -> None:
    """While the engine is busy, arriving pairs queue up and then go in one call."""
    gate = threading.Event()
    engine = FakeEngine(gate=gate)
    good = encode(cv2.resize(skimage_photo("chelsea.png"), (64, 48)))
    # admission lets all seven in at once (its own bounds are tested in tests/api/test_admission.py)
    wide = {"estimate": {"max_in_flight": 8}}
    with fake_client(monkeypatch, engine, admission=wide) as c, ThreadPoolExecutor(7) as pool:
        batcher = c.app.state.engines.get("homographynet").batcher
        try:
            first = pool.submit(c.post, "/estimate", files=files(good, good))
            while not engine.calls:
                threading.Event().wait(0.01)
            rest = [pool.submit(c.post, "/estimate", files=files(good, good)) for _ in range(6)]
            while batcher.pending < 6:
                threading.Event().wait(0.01)
        finally:
            gate.set()
        answers = [f.result() for f in [first, *rest]]
    assert [r.status_code for r in answers] == [200] * 7
    assert engine.calls == [1, 6]
    assert sorted(r.json()["timings_ms"]["batch_size"] for r in answers) == [1] + [6] * 6


@pytest.mark.parametrize("override", [None, {"estimate": {"max_in_flight": 5}}])
def test_estimate_admits_beyond_its_threads_only_where_batching_pays(monkeypatch, override):
    """On ONNX Runtime's CPU provider /estimate admits as many requests as it has threads (more
    would only queue for them inside); on an accelerator (here the fake engine) 2 per core, to
    fill micro-batches; an explicit setting wins either way."""
    kw = {"admission_cpus": 4} | ({"admission": override} if override else {})
    with TestClient(create_app(settings(model_path=fixture_model("regression"), **kw))) as c:
        cpu = c.app.state.admission["estimate"].limits
    with fake_client(monkeypatch, FakeEngine(), **kw) as c:
        accelerated = c.app.state.admission["estimate"].limits
    assert cpu.threads == accelerated.threads == 3
    if override:
        assert cpu.max_in_flight == accelerated.max_in_flight == 5
    else:
        assert (cpu.max_in_flight, accelerated.max_in_flight) == (3, 8)


def test_engine_failure_is_500_and_service_recovers(monkeypatch) -> None:
    engine = FakeEngine()
    good = encode(cv2.resize(skimage_photo("chelsea.png"), (64, 48)))
    real = engine.predict_batch
    calls = {"n": 0}

    def flaky(x):
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("CUDA out of memory (simulated)")
        return real(x)

    engine.predict_batch = flaky
    with fake_client(monkeypatch, engine) as c:
        r = c.post("/estimate", files=files(good, good))
        assert r.status_code == 500 and "simulated" in r.json()["detail"]
        assert c.post("/estimate", files=files(good, good)).status_code == 200


def test_degenerate_prediction_422(monkeypatch) -> None:
    from app.geometry.points import patch_corners

    engine = FakeEngine(offsets=np.full((4, 2), 60.0) - patch_corners(128))
    good = encode(cv2.resize(skimage_photo("chelsea.png"), (64, 48)))
    with fake_client(monkeypatch, engine) as c:
        r = c.post("/estimate", files=files(good, good))
    assert r.status_code == 422 and "degenerate" in r.json()["detail"]


def photometric_error(pa: np.ndarray, pb: np.ndarray, b_H_a: np.ndarray) -> float:
    """Mean |warp(pa, b_H_a) - pb| over the pixels the warp covers (borders eroded)."""
    size = (pb.shape[1], pb.shape[0])
    warped = cv2.warpPerspective(pa, b_H_a, size).astype(np.float64)
    ones = np.full_like(pa, 255)
    mask = cv2.warpPerspective(ones, b_H_a, size, flags=cv2.INTER_NEAREST) == 255
    mask = cv2.erode(mask.astype(np.uint8), np.ones((5, 5))) > 0
    return float(np.abs(warped - pb)[mask].mean())


class TestGeometryPlumbing:
    """A fake engine returns the offsets a perfect network would; the HTTP answer must then be
    the true homography, in OpenCV's convention."""

    @pytest.mark.parametrize("size_b", [(640, 480), (500, 420)])
    def test_true_offsets_give_true_corners(self, monkeypatch, size_b) -> None:
        size_a = (640, 480)
        image_a = cv2.resize(skimage_photo("astronaut.png"), size_a, interpolation=cv2.INTER_AREA)
        src = image_corners(size_a).astype(np.float32)
        dst = image_corners(size_b) + [[25, -18], [-30, 12], [-14, -26], [20, 15]]
        b_H_a = cv2.getPerspectiveTransform(src, dst.astype(np.float32))
        image_b = cv2.warpPerspective(image_a, b_H_a, size_b)
        engine = FakeEngine(offsets=true_offsets(b_H_a, size_a, size_b))
        with fake_client(monkeypatch, engine) as c:
            r = c.post("/estimate", files=files(encode(image_a), encode(image_b)))
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["image_a_size"] == list(size_a) and body["image_b_size"] == list(size_b)
        corners = np.array(body["corners_in_b"])
        assert np.abs(corners - dst).max() < 1e-6
        H = np.array(body["b_H_a"])
        pts = np.random.default_rng(0).uniform(0, 1, (50, 2)) * size_a
        assert np.abs(apply_h(H, pts) - apply_h(b_H_a, pts)).max() < 1e-6
        # OpenCV's convention: warping A by the answer lines up with B
        warped = cv2.warpPerspective(image_a, H, size_b).astype(np.float64)
        assert np.abs(warped - image_b).mean() < 0.01
        wrong = cv2.warpPerspective(image_a, np.linalg.inv(H), size_b).astype(np.float64)
        assert np.abs(wrong - image_b).mean() > 10

    @pytest.mark.parametrize("refine", [False, True])
    def test_jpegs_decoded_reduced_answer_at_full_resolution(self, monkeypatch, refine) -> None:
        """method=network without refinement decodes JPEGs at a fraction of their size (here
        1/2: 512x384 still holds the 128 px input and the 65,536 working pixels of the score,
        1/4 would not);
        the answer is the same as from the full decode, in full-resolution pixels."""
        from app.services import images

        size = (1024, 768)
        image_a = cv2.resize(skimage_photo("astronaut.png"), size, interpolation=cv2.INTER_AREA)
        src = image_corners(size).astype(np.float32)
        dst = image_corners(size) + [[40, -28], [-48, 20], [-22, -40], [32, 24]]
        b_H_a = cv2.getPerspectiveTransform(src, dst.astype(np.float32))
        image_b = cv2.warpPerspective(image_a, b_H_a, size, borderMode=cv2.BORDER_REFLECT_101)
        reductions: list[int] = []
        decode = images.decode_pixels

        def spy(data, header, field, **kw):
            out = decode(data, header, field, **kw)
            reductions.append(out.reduction)
            return out

        monkeypatch.setattr(estimate_service, "decode_pixels", spy)
        engine = FakeEngine(offsets=true_offsets(b_H_a, size, size))
        jpegs = files(encode(image_a, ".jpg"), encode(image_b, ".jpg"), "image/jpeg", "image/jpeg")
        with fake_client(monkeypatch, engine, estimate_work_pixels=4096) as c:
            r = c.post(f"/estimate?refine={str(refine).lower()}", files=jpegs)
        assert r.status_code == 200, r.text
        body = r.json()
        assert reductions == ([1, 1] if refine else [2, 2])
        assert body["image_a_size"] == list(size) and body["image_b_size"] == list(size)
        H = np.array(body["b_H_a"]) if not refine else np.array(body["refine"]["start_b_H_a"])
        pts = np.random.default_rng(0).uniform(0, 1, (50, 2)) * size
        assert np.abs(apply_h(H, pts) - apply_h(b_H_a, pts)).max() < 1e-6
        network = next(c for c in body["candidates"] if c["name"] == "network")
        np.testing.assert_allclose(network["b_H_a"], H, atol=1e-9)
        assert np.abs(np.array(body["corners_in_b"]) - dst).max() < (1.0 if refine else 1e-6)

    def test_direction_matches_the_training_data_generator(self, monkeypatch) -> None:
        """On a pair rendered by training's generator, with its label as the prediction,
        cv2.warpPerspective(patch_a, b_H_a) lines up with patch_b (the other way round does
        not): the API and the training data agree on the direction."""
        from training.data.fixed import make_fixed_set

        data = make_fixed_set(skimage_gray_stack(), 3, seed=11)
        for (pa, pb), off in zip(data["patches"], data["offsets"]):
            engine = FakeEngine(offsets=off.astype(np.float64))
            with fake_client(monkeypatch, engine) as c:
                r = c.post("/estimate", files=files(encode(pa), encode(pb)))
            H = np.array(r.json()["b_H_a"])
            assert photometric_error(pa, pb, H) < 3.0
            assert photometric_error(pa, pb, np.linalg.inv(H)) > 3 * photometric_error(pa, pb, H)


def _mace_equality(client: TestClient, model_path: Path, n: int = 20) -> tuple[float, float]:
    """API MACE vs the offline evaluation's on ``n`` generator pairs from scikit-image photos."""
    from training.data.fixed import make_fixed_set
    from training.evaluate import load_predictor
    from training.metrics import corner_errors, summarize

    data = make_fixed_set(skimage_gray_stack(), n, seed=2016)
    patches, true = data["patches"], data["offsets"]
    offline = summarize(corner_errors(load_predictor(model_path)(patches), true))["mean"]

    def post(i: int) -> np.ndarray:
        a, b = patches[i]
        if i % 3 == 1:  # the colour path: gray replicated into BGR
            a = cv2.cvtColor(a, cv2.COLOR_GRAY2BGR)
        ext = ".bmp" if i % 3 == 2 else ".png"
        r = client.post(
            "/estimate", files=files(encode(a, ext), encode(b), ta="application/octet-stream")
        )
        assert r.status_code == 200, r.text
        return np.array(r.json()["offsets"])

    with ThreadPoolExecutor(8) as pool:  # concurrent: exercises the micro-batches too
        pred = np.stack(list(pool.map(post, range(n))))
    api = summarize(corner_errors(pred, true))["mean"]
    # the comparison can fail: swapping A and B moves the fixture model's offsets by pixels
    swapped = corner_errors(load_predictor(model_path)(patches[:, ::-1].copy()), true).mean()
    assert abs(swapped - offline) > 0.1
    return api, offline


def test_mace_equals_offline_evaluation(model_client) -> None:
    api, offline = _mace_equality(model_client, fixture_model("regression"))
    assert abs(api - offline) < 1e-4, (api, offline)


@pytest.mark.parametrize("name", ["regression", "classification"])
def test_mace_equals_offline_evaluation_shipped_model(name: str) -> None:
    path = REPO_ROOT / "models" / f"homographynet_{name}.onnx"
    if not path.exists():
        pytest.skip(f"{path} not shipped yet")
    with TestClient(create_app(settings(model_path=path))) as c:
        api, offline = _mace_equality(c, path)
    assert abs(api - offline) < 1e-4, (api, offline)


def _shifted_pair() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A 320x240 photo and B = A moved by a small homography (ground truth ``b_H_a``)."""
    a = cv2.resize(skimage_photo("astronaut.png"), (320, 240), interpolation=cv2.INTER_AREA)
    H = np.array([[1.0, 0.01, 5.0], [-0.01, 1.0, -3.0], [0.0, 0.0, 1.0]])
    return a, cv2.warpPerspective(a, H, (320, 240), borderMode=cv2.BORDER_REFLECT_101), H


class TestRefineTrue:
    """``method=network&refine=true``: the estimate is refined by /refine's pipeline inside the
    service, on the images it already decoded, and the refined matrix is the answer."""

    def test_answers_the_refined_matrix_from_one_decode(self, monkeypatch) -> None:
        from app.services import images

        a, b, H = _shifted_pair()
        rough = H + np.array([[0, 0, 2.5], [0, 0, -2.0], [0, 0, 0]])  # 3 px off the truth
        calls: list[str] = []
        decode = images.decode_pixels

        def counting(data, header, field, **kw):
            calls.append(field)
            return decode(data, header, field, **kw)

        monkeypatch.setattr(estimate_service, "decode_pixels", counting)
        engine = FakeEngine(offsets=true_offsets(rough, (320, 240), (320, 240)))
        with fake_client(monkeypatch, engine) as c:
            r = c.post("/estimate?refine=true", files=files(encode(a), encode(b)))
        assert r.status_code == 200, r.text
        body = r.json()
        assert sorted(calls) == ["image_a", "image_b"]  # no second decode for the refinement
        assert body["chosen"] == "network+refine" and body["refine"]["applied"]
        refined = np.array(body["b_H_a"])
        np.testing.assert_allclose(refined, body["refine"]["result"]["b_H_a"], atol=1e-12)
        np.testing.assert_allclose(body["refine"]["start_b_H_a"], rough, atol=1e-6)
        np.testing.assert_allclose(
            body["corners_in_b"], apply_h(refined, image_corners((320, 240))), atol=1e-9
        )
        size = (320, 240)
        from app.geometry.points import corner_distance

        assert corner_distance(rough, H, size) > 2.0
        assert corner_distance(refined, H, size) < 0.3
        assert [c["name"] for c in body["candidates"]] == ["network", "network+refine"]
        assert body["quality"]["photometric_before_refine"] is not None

    def test_a_start_that_cannot_be_refined_is_reported_and_answered(self, monkeypatch) -> None:
        a, b, H = _shifted_pair()
        far = np.array([[1.0, 0, 310.0], [0, 1.0, 0], [0, 0, 1.0]])  # A lands outside B
        engine = FakeEngine(offsets=true_offsets(far, (320, 240), (320, 240)))
        with fake_client(monkeypatch, engine) as c:
            r = c.post("/estimate?refine=true", files=files(encode(a), encode(b)))
        assert r.status_code == 200, r.text
        body = r.json()
        ref = body["refine"]
        assert not ref["applied"] and "overlap" in ref["detail"] and ref["result"] is None
        assert body["chosen"] == "network"
        np.testing.assert_allclose(body["b_H_a"], far, atol=1e-6)
        np.testing.assert_allclose(ref["start_b_H_a"], body["b_H_a"], atol=1e-12)


class TestNoUsableCandidate:
    """Regression: a non-finite feature matrix, or auto with nothing finite to choose from,
    reached ``next(...)`` / ``candidates[0]`` and answered 500; now 422 naming the cause."""

    @staticmethod
    def _nan_features(monkeypatch) -> None:
        from app.features import FeatureEstimate

        def nan_fit(a, b, options=None) -> FeatureEstimate:
            return FeatureEstimate(np.full((3, 3), np.nan), (50, 50), 20, 20, 0.5, 0.01, 1.0)

        monkeypatch.setattr(estimate_service, "estimate_features", nan_fit)

    def test_features_with_a_non_finite_matrix(self, monkeypatch) -> None:
        self._nan_features(monkeypatch)
        a, b, _ = _shifted_pair()
        with fake_client(monkeypatch, FakeEngine()) as c:
            r = c.post("/estimate?method=features", files=files(encode(a), encode(b)))
        assert r.status_code == 422, r.text
        assert "no homography from features" in r.json()["detail"]

    def test_auto_with_no_finite_candidate(self, monkeypatch) -> None:
        from app.geometry.points import patch_corners

        self._nan_features(monkeypatch)
        degenerate = np.full((4, 2), 60.0) - patch_corners(128)  # all corners at one point
        a, b, _ = _shifted_pair()
        with fake_client(monkeypatch, FakeEngine(offsets=degenerate)) as c:
            r = c.post("/estimate?method=auto", files=files(encode(a), encode(b)))
        assert r.status_code == 422, r.text
        detail = r.json()["detail"]
        assert detail.startswith("no homography") and "network" in detail
