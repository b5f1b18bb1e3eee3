"""homography_client's in-place .npz reader against np.load, and on the server's own answers."""

from __future__ import annotations

import contextlib
import io
import struct

import numpy as np
import pytest
from homography_client import read_npz
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from app.services.arrays import npz_chunks

DTYPES = st.sampled_from(["<f8", ">f8", "<f4", ">f4", "<i8", "u1", "?", "<c16"])


def savez(compressed: bool = False, **arrays: np.ndarray) -> bytes:
    buf = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buf, **arrays)
    return buf.getvalue()


def assert_same(got: dict[str, np.ndarray], data: bytes) -> None:
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        assert sorted(got) == sorted(z.files)
        for name in z.files:
            ref = z[name]
            assert got[name].dtype == ref.dtype and got[name].shape == ref.shape, name
            np.testing.assert_array_equal(got[name], ref)


@settings(max_examples=60, deadline=None)
@given(
    arrays=st.dictionaries(
        st.sampled_from(["src", "dst", "dst_H_src", "valid", "x"]),
        hnp.arrays(DTYPES, hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5)),
        min_size=1,
        max_size=4,
    ),
    fortran=st.booleans(),
    compressed=st.booleans(),
)
def test_reads_what_np_load_reads(arrays, fortran, compressed):
    arrays = {k: np.asfortranarray(v) if fortran else v for k, v in arrays.items()}
    data = savez(compressed, **arrays)
    got = read_npz(data)
    assert_same(got, data)
    if not compressed:  # stored members are views of the answer's bytes, not copies
        for v in got.values():
            assert v.size == 0 or np.shares_memory(v, np.frombuffer(data, np.uint8))


def test_reads_the_servers_zero_copy_answer():
    H = np.random.default_rng(0).normal(size=(1000, 3, 3))
    arrays = {"dst_H_src": H, "valid": H[:, 0, 0] > 0, "reason": np.zeros(1000, np.uint8)}
    chunks, length = npz_chunks(arrays)
    data = b"".join(bytes(c) for c in chunks)
    assert len(data) == length
    got = read_npz(bytearray(data))  # a bytearray answer gives writable views
    assert_same(got, data)
    assert got["dst_H_src"].flags.writeable


def test_a_corrupted_member_is_refused():
    data = bytearray(savez(a=np.arange(1000.0)))
    data[200] ^= 0xFF  # inside the member's data
    with pytest.raises(ValueError, match="CRC"):
        read_npz(data)


@pytest.mark.parametrize(
    "data", [b"", b"not a zip at all", struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 1, 1, 46, 0, 0)]
)
def test_not_an_npz_is_a_value_error(data):
    with pytest.raises(ValueError):
        read_npz(data)


def test_an_offset_past_the_end_is_a_value_error():
    raw = bytearray(savez(a=np.arange(3.0)))
    (directory,) = struct.unpack_from("<I", raw, len(raw) - 22 + 16)
    struct.pack_into("<I", raw, directory + 42, 10**6)  # the member's local header offset
    with pytest.raises(ValueError, match=r"not an \.npz"):
        read_npz(raw)


def test_object_arrays_are_not_unpickled():
    data = savez(a=np.array([{"x": 1}], dtype=object))
    with pytest.raises(ValueError, match="pickle"):
        read_npz(data)


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_damaged_archives_give_arrays_or_a_value_error(data):
    """The archive cut anywhere, or a byte or a 32-bit field overwritten anywhere (often in the
    directories at its end): the arrays (when the damage missed what is checked) or a
    ValueError, never another exception."""
    raw = bytearray(savez(src=np.arange(24.0).reshape(3, 4, 2), valid=np.ones(3, bool)))
    where = st.one_of(st.integers(0, len(raw) - 4), st.integers(len(raw) - 200, len(raw) - 4))
    how = data.draw(st.sampled_from(["cut", "byte", "word"]))
    if how == "cut":
        raw = raw[: data.draw(st.integers(0, len(raw)))]
    elif how == "byte":
        raw[data.draw(where)] = data.draw(st.integers(0, 255))
    else:
        struct.pack_into("<I", raw, data.draw(where), data.draw(st.integers(0, 2**32 - 1)))
    with contextlib.suppress(ValueError):
        read_npz(raw)
