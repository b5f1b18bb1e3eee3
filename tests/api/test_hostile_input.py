"""The bad-input corpus of issue 12: every input that once answered 500 (or slipped past a
limit) as a regression test named for what it attacks. No 5xx, a 4xx naming what is wrong."""

from __future__ import annotations

import io
import json
import logging
import struct
import zipfile
import zlib

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.core.config import Settings
from app.main import create_app

SQ = [[0, 0], [127, 0], [127, 127], [0, 127]]
QUAD = [[3.5, -2.0], [130.0, 4.0], [120.5, 131.0], [-6.0, 125.0]]
PNG_1PX = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010800000000"
    "3a7e9b550000000a4944415478da6360000000020001e221bc330000000049454e44ae426082"
)


@pytest.fixture(scope="module")
def hclient():
    s = Settings(
        log_json=True,
        log_level="warning",
        max_body_bytes=300_000,
        max_json_body_bytes=100_000,
        max_solve_batch=1000,
        max_solve_json_batch=10,
        max_image_pixels=200_000,
    )
    with TestClient(create_app(s), raise_server_exceptions=False) as c:
        yield c


def detail(r) -> dict:
    d = r.json()["detail"]
    return d[0] if isinstance(d, list) else {"loc": None, "msg": d}


# --- numeric edge cases in the solvers -------------------------------------------------------


def test_dlt_with_coordinates_near_1e300_is_answered_per_item(client):
    rng = np.random.default_rng(0)
    src = (rng.uniform(-1, 1, (2, 6, 2)) * 1e300).tolist()
    dst = (rng.uniform(-1, 1, (2, 6, 2)) * 1e300).tolist()
    r = client.post("/solve", json={"method": "dlt", "src": src, "dst": dst})
    assert r.status_code == 200, r.text
    assert len(r.json()["valid"]) == 2


def test_ransac_inlier_fraction_underflow_is_answered(client):
    """50,000 random points at a 0.001 px threshold: a consensus of 4 makes the inlier fraction
    so small that log(1 - p) rounded to 0 (ZeroDivisionError)."""
    rng = np.random.default_rng(1)
    pts = rng.uniform(0, 1000, (2, 50_000, 2)).tolist()
    body = {"robust": True, "src": [pts[0]], "dst": [pts[1]]}
    body["ransac"] = {"threshold": 0.001, "max_iters": 256}
    r = client.post("/solve", json=body)
    assert r.status_code == 200, r.text


# --- /refine init: parsed without recursion or big-number conversion --------------------------


@pytest.mark.parametrize(
    ("init", "needle"),
    [
        pytest.param("[" * 100_000 + "]" * 100_000, "characters", id="100000-deep-nesting"),
        pytest.param("[" * 300 + "]" * 300, "recursion", id="300-deep-nesting"),
        pytest.param(f"[[{'9' * 400}, 0, 0], [0, 1, 0], [0, 0, 1]]", "non-finite", id="400-digits"),
        pytest.param(f"[[{'9' * 3000}, 0, 0], [0, 1, 0], [0, 0, 1]]", "init", id="3000-digits"),
        pytest.param(
            f"[[{'9' * 5000}, 0, 0], [0, 1, 0], [0, 0, 1]]", "characters", id="5000-digits"
        ),
    ],
)
def test_refine_init_deep_nesting_and_huge_integers_are_422(hclient, init, needle):
    files = {"image_a": ("a.png", PNG_1PX, "image/png"), "image_b": ("b.png", PNG_1PX, "image/png")}
    r = hclient.post("/refine", files=files, data={"init": init})
    assert r.status_code == 422, r.text
    assert detail(r)["loc"] == "init" and needle in detail(r)["msg"]


# --- .npz bodies: corrupt, inconsistent or unsupported members ---------------------------------


def npz(compressed: bool = False, **arrays) -> bytes:
    b = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(b, **arrays)
    return b.getvalue()


def solve_npz(compressed: bool) -> bytes:
    src = np.array([SQ] * 20, np.float64)
    return npz(compressed, src=src, dst=src + 1.5)


def central_entries(body: bytes) -> list[tuple[int, int]]:
    """(offset of the central directory entry, offset of its local header) per member."""
    end = body.rindex(b"PK\x05\x06")
    count, _, cd_offset = struct.unpack("<HII", body[end + 10 : end + 20])
    out, pos = [], cd_offset
    for _ in range(count):
        n, x, c = struct.unpack("<HHH", body[pos + 28 : pos + 34])
        out.append((pos, struct.unpack("<I", body[pos + 42 : pos + 46])[0]))
        pos += 46 + n + x + c
    return out


def patched(body: bytes, **fields: int) -> bytes:
    """Every member's central and local headers with ``flags``, ``method`` or (central only)
    ``usize`` replaced."""
    b = bytearray(body)
    for cd, local in central_entries(body):
        if "flags" in fields:
            struct.pack_into("<H", b, cd + 8, fields["flags"])
            struct.pack_into("<H", b, local + 6, fields["flags"])
        if "method" in fields:
            struct.pack_into("<H", b, cd + 10, fields["method"])
            struct.pack_into("<H", b, local + 8, fields["method"])
        if "usize" in fields:
            struct.pack_into("<I", b, cd + 24, fields["usize"])
    return bytes(b)


def data_start(body: bytes, local: int) -> int:
    n, x = struct.unpack("<HH", body[local + 26 : local + 30])
    return local + 30 + n + x


def test_npz_corrupt_deflate_stream_is_400(hclient):
    body = bytearray(solve_npz(compressed=True))
    _, local = central_entries(bytes(body))[0]
    body[data_start(bytes(body), local)] = 0xFF  # a reserved block type
    r = hclient.post("/solve/batch", content=bytes(body))
    assert r.status_code == 400, r.text
    assert "corrupt deflate stream" in detail(r)["msg"]


def test_npz_member_size_that_disagrees_with_its_header_is_400(hclient):
    for compressed in (False, True):
        r = hclient.post("/solve/batch", content=patched(solve_npz(compressed), usize=4000))
        assert r.status_code == 400, r.text
        assert "header declares" in detail(r)["msg"] or "sizes" in detail(r)["msg"]


def test_npz_compression_method_99_is_415(hclient):
    r = hclient.post("/solve/batch", content=patched(solve_npz(True), method=99))
    assert r.status_code == 415, r.text
    assert "compression method 99" in detail(r)["msg"]


def test_npz_encrypted_member_is_415(hclient):
    r = hclient.post("/solve/batch", content=patched(solve_npz(True), flags=0x1))
    assert r.status_code == 415, r.text
    assert "encrypted" in detail(r)["msg"]


@pytest.mark.parametrize("compressed", [False, True], ids=["stored", "deflated"])
def test_npz_flipped_data_byte_is_refused_by_crc(hclient, compressed):
    """A data byte of ``dst`` flipped after its CRC was computed (in transit, on disk)."""
    src = np.array([SQ] * 20, np.float64)
    good = _npy(src + 1.5)
    flipped = bytearray(good)
    flipped[-5] ^= 0x10  # a data byte, not the .npy header
    b = io.BytesIO()
    method = zipfile.ZIP_DEFLATED if compressed else zipfile.ZIP_STORED
    with zipfile.ZipFile(b, "w", method) as zf:
        zf.writestr("src.npy", _npy(src))
        zf.writestr("dst.npy", bytes(flipped))
    body = bytearray(b.getvalue())
    cd, local = central_entries(bytes(body))[1]
    struct.pack_into("<I", body, cd + 16, zlib.crc32(good))  # the CRC of the data as sent
    struct.pack_into("<I", body, local + 14, zlib.crc32(good))
    r = hclient.post("/solve/batch", content=bytes(body))
    assert r.status_code == 400, r.text
    assert "CRC-32 mismatch" in detail(r)["msg"] and "dst" in detail(r)["msg"]


def _npy(a: np.ndarray) -> bytes:
    b = io.BytesIO()
    np.save(b, a)
    return b.getvalue()


def test_npz_shape_over_the_batch_limit_is_refused_before_inflating(hclient, monkeypatch):
    """Members declaring 2,000 items (limit 1,000) are refused from their headers."""
    from app.services import arrays

    def no_inflate(self, m):
        raise AssertionError("inflated a member that its header already refuses")

    monkeypatch.setattr(arrays.ArrayPayload, "_inflate", no_inflate)
    big = np.zeros((2000, 4, 2), np.float32)  # compresses to a few hundred bytes
    r = hclient.post("/solve/batch", content=npz(True, src=big, dst=big))
    assert r.status_code == 413, r.text
    assert "limit of 1000" in detail(r)["msg"]


# --- envelope and limits --------------------------------------------------------------------


def test_two_content_type_headers_are_400(hclient):
    body = json.dumps({"src": [SQ], "dst": [QUAD]}).encode()
    r = hclient.post(
        "/solve",
        content=body,
        headers=[
            ("content-type", "application/json"),
            ("content-type", "application/octet-stream"),
        ],
    )
    assert r.status_code == 400 and "Content-Type" in detail(r)["msg"]


def chunked(total: int, piece: int = 16_384):
    for _ in range(0, total, piece):
        yield b" " * piece


@pytest.mark.parametrize(
    ("path", "ctype"),
    [
        ("/solve", "application/json"),
        ("/solve/batch", "application/octet-stream"),
        ("/pose-loss", "application/json"),
        ("/refine/json", "application/json"),
        ("/refine", "multipart/form-data; boundary=xyz"),
        ("/estimate", "multipart/form-data; boundary=xyz"),
        ("/estimate/json", "application/json"),
    ],
)
def test_chunked_body_over_the_limit_is_413_on_every_route(hclient, path, ctype):
    r = hclient.post(path, content=chunked(400_000), headers={"content-type": ctype})
    assert r.status_code == 413, (path, r.status_code, r.text)


def test_json_batch_over_the_item_limit_is_refused_before_parsing(hclient, monkeypatch):
    from app.api.schemas.solve import SolveRequest

    def no_parse(*a, **k):
        raise AssertionError("parsed a body that the pre-scan already refuses")

    monkeypatch.setattr(SolveRequest, "model_validate_json", no_parse)
    r = hclient.post("/solve", json={"src": [SQ] * 11, "dst": [QUAD] * 11})
    assert r.status_code == 422, r.text
    assert detail(r)["loc"] == "src" and "limit of 10" in detail(r)["msg"]


def test_deeply_nested_json_is_422_before_parsing(hclient):
    r = hclient.post("/solve", content=b"[" * 50_000, headers={"content-type": "application/json"})
    assert r.status_code == 422 and "nested deeper" in detail(r)["msg"]


def test_refine_multipart_policy_matches_estimate(hclient):
    img = ("a.png", PNG_1PX, "image/png")
    many_fields = {f"extra{i}": "x" for i in range(200)}
    r = hclient.post("/refine", files={"image_a": img, "image_b": img}, data=many_fields)
    assert r.status_code in (400, 422) and r.status_code != 200, r.text
    extra_files = {"image_a": img, "image_b": img, **{f"f{i}": img for i in range(20)}}
    r = hclient.post("/refine", files=extra_files)
    assert r.status_code in (400, 422), r.text
    r = hclient.post("/refine", files={"image_a": img, "image_b": img, "junk": img})
    assert r.status_code == 422 and detail(r)["loc"] == "junk"
    html = ("a.html", b"<html></html>", "text/html")
    for path in ("/refine", "/estimate"):
        r = hclient.post(path, files={"image_a": html, "image_b": img})
        assert r.status_code == 415 and detail(r)["loc"] == "image_a", (path, r.text)


def test_estimate_option_sent_as_a_form_field_is_422_naming_it(hclient):
    img = ("a.png", PNG_1PX, "image/png")
    r = hclient.post("/estimate", files={"image_a": img, "image_b": img}, data={"method": "auto"})
    assert r.status_code == 422, r.text
    assert detail(r)["loc"] == "method" and "query string" in detail(r)["msg"]


@pytest.mark.parametrize(
    ("query", "name", "needle"),
    [
        ("?methd=auto", "methd", "did you mean 'method'"),
        ("?method=network&method=auto", "method", "more than once"),
    ],
)
def test_unknown_or_repeated_query_parameters_are_422(hclient, query, name, needle):
    img = ("a.png", PNG_1PX, "image/png")
    r = hclient.post("/estimate" + query, files={"image_a": img, "image_b": img})
    assert r.status_code == 422, r.text
    assert detail(r)["loc"] == name and needle in detail(r)["msg"]
    r = hclient.post("/solve?robust=true", json={"src": [SQ], "dst": [QUAD]})
    assert r.status_code == 422 and detail(r)["loc"] == "robust"


# --- the catch-all ----------------------------------------------------------------------------


def test_unexpected_error_is_500_with_request_id_and_a_logged_traceback(hclient, monkeypatch):
    from app.api.routes import solve as route

    def boom(*a, **k):
        raise RuntimeError("simulated defect")

    monkeypatch.setattr(route, "_run_json", boom)
    handler = next(
        h
        for h in logging.getLogger().handlers
        if type(h.formatter).__name__ == "ProcessorFormatter"
    )
    out = io.StringIO()
    old = handler.setStream(out)
    try:
        r = hclient.post("/solve", json={"src": [SQ], "dst": [QUAD]})
    finally:
        handler.setStream(old)
    assert r.status_code == 500
    rid = r.headers["x-request-id"]
    assert r.json()["request_id"] == rid and "simulated" not in r.text
    lines = [json.loads(x) for x in out.getvalue().splitlines() if x.startswith("{")]
    line = next(x for x in lines if x["event"] == "unhandled_exception")
    assert line["request_id"] == rid
    assert "Traceback (most recent call last)" in line["exception"]
    assert "RuntimeError: simulated defect" in line["exception"]
    assert "<traceback object" not in out.getvalue()
