"""Binary bodies (.npy/.npz): structure checked from headers before anything is inflated,
bounded inflation, CRCs verified, round trips against np.load."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest

from app.core.errors import DomainError
from app.services.arrays import npz_chunks, open_arrays


def savez(compressed: bool, **arrays) -> bytes:
    b = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(b, **arrays)
    return b.getvalue()


@pytest.mark.parametrize("compressed", [False, True])
@pytest.mark.parametrize(
    "array",
    [
        np.arange(24, dtype=np.float64).reshape(3, 4, 2),
        np.asfortranarray(np.arange(24, dtype=np.float32).reshape(3, 4, 2)),
        np.arange(24, dtype=">f8").reshape(3, 4, 2),
        np.zeros((0, 4, 2)),
        np.arange(5_000_000, dtype=np.int32),  # inflated over several bounded pieces
    ],
    ids=["f64", "f32-fortran", "big-endian", "empty", "20MB"],
)
def test_round_trip_matches_np_load(compressed, array):
    body = savez(compressed, a=array, b=array[:1])
    payload = open_arrays(np.frombuffer(body, np.uint8).copy(), max_uncompressed=1 << 30)
    assert payload.headers["a"].shape == array.shape
    out = payload.load()
    ref = np.load(io.BytesIO(body))
    for name in ("a", "b"):
        np.testing.assert_array_equal(out[name], ref[name])
        assert out[name].dtype == ref[name].dtype
        assert out[name].flags.writeable  # the request path hands writeable arrays on


def test_headers_are_read_without_inflating(monkeypatch):
    from app.services import arrays

    monkeypatch.setattr(arrays.ArrayPayload, "_inflate", lambda self, m: 1 / 0)
    body = savez(True, src=np.zeros((1000, 4, 2)), dst=np.zeros((1000, 4, 2)))
    payload = open_arrays(body, max_uncompressed=1 << 30)
    assert payload.headers["src"].shape == (1000, 4, 2)
    assert payload.nbytes == 2 * 64_000


def zip_of(name: str, data: bytes, compressed: bool = True) -> bytes:
    b = io.BytesIO()
    with zipfile.ZipFile(b, "w", zipfile.ZIP_DEFLATED if compressed else zipfile.ZIP_STORED) as z:
        z.writestr(name, data)
    return b.getvalue()


def npy(a: np.ndarray) -> bytes:
    b = io.BytesIO()
    np.save(b, a)
    return b.getvalue()


def test_a_bomb_is_stopped_by_its_declared_size():
    """A member whose header declares 8 bytes of data but that inflates to 50 MB."""
    head = npy(np.zeros(1))
    body = zip_of("x.npy", head + b"\0" * 50_000_000)
    with pytest.raises(DomainError) as e:
        open_arrays(body, max_uncompressed=1 << 30).load()
    assert e.value.kind == "malformed" and "declares" in e.value.message


def test_total_size_is_bounded_before_inflating():
    body = zip_of("x.npy", npy(np.zeros(1_000_000)))
    with pytest.raises(DomainError) as e:
        open_arrays(body, max_uncompressed=1_000_000)
    assert e.value.kind == "too_large"


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        (b"\x93NUMPY\x01\x00" + b"\xff" * 20, "not a valid .npy header"),
        (npy(np.zeros(10))[:-8], "truncated|declares"),
        (npy(np.array([{"a": 1}], dtype=object)), "object"),
        (npy(np.zeros(2, dtype=[("a", "f8"), ("b", "f8")])), "structured"),
    ],
    ids=["bad-header", "truncated", "object", "structured"],
)
def test_bad_npy_payloads_are_refused(data, needle):
    for body in (data, zip_of("x.npy", data)):
        with pytest.raises(DomainError) as e:
            open_arrays(body, max_uncompressed=1 << 30).load()
        assert e.value.kind == "malformed", e.value.message
        assert any(n in e.value.message for n in needle.split("|")), e.value.message


def test_not_an_archive():
    for body in (b"", b"hello", b"PK\x03\x04" + b"\0" * 40):
        with pytest.raises(DomainError) as e:
            open_arrays(body, max_uncompressed=1 << 30)
        assert e.value.kind == "malformed"


def test_npz_chunks_reads_back_with_np_load():
    arrays = {"H": np.random.default_rng(0).normal(size=(10, 3, 3)), "v": np.ones(10, bool)}
    chunks, length = npz_chunks(arrays)
    body = b"".join(bytes(c) for c in chunks)
    assert len(body) == length
    out = np.load(io.BytesIO(body))
    np.testing.assert_array_equal(out["H"], arrays["H"])
    # and our own reader verifies the CRCs it wrote
    np.testing.assert_array_equal(open_arrays(body, 1 << 20).load()["v"], arrays["v"])
