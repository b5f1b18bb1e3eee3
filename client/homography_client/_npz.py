"""``.npz`` answers read in place: the arrays of an uncompressed archive are views of the
response's bytes (no copy, no temporary file), each member's CRC-32 verified as ``np.load``
does; anything else (deflated members, zip64, object arrays) goes through ``np.load``."""

from __future__ import annotations

import io
import struct

import numpy as np

try:  # the same API; its PCLMUL CRC-32 is ~10x the standard library's
    from zlib_ng import zlib_ng as zlib
except ImportError:  # pragma: no cover - optional
    import zlib

__all__ = ["read_npz"]

_EOCD = struct.Struct("<IHHHHIIH")  # end of central directory, without the comment
_CENTRAL = struct.Struct("<IHHHHHHIIIHHHHHII")
_LOCAL = struct.Struct("<IHHHHHIIIHH")


def read_npz(data: bytes | bytearray | memoryview) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` held in memory, by name (``.npy`` dropped).

    Stored members come back as views of ``data`` (read-only when ``data`` is ``bytes``);
    other archives as ``np.load`` reads them. Never unpickles.

    Raises:
        ValueError: not an ``.npz``, or a member whose CRC-32 does not match its bytes.
    """
    view = memoryview(data).cast("B")
    try:
        fast = _read_stored(view)
    except struct.error as exc:  # an offset or a size that points past the end
        raise ValueError(f"not an .npz: {exc}") from exc
    if fast is not None:
        return fast
    try:
        with np.load(io.BytesIO(view), allow_pickle=False) as z:
            return {name: z[name] for name in z.files}
    except ValueError:
        raise
    except Exception as exc:  # zipfile and np.load fail on damaged bytes in many ways
        raise ValueError(f"not an .npz: {type(exc).__name__}: {exc}") from exc


def _read_stored(view: memoryview) -> dict[str, np.ndarray] | None:
    """The members when every one is stored (method 0) and plain zip; None otherwise."""
    end = len(view) - _EOCD.size
    if end < 0 or _EOCD.unpack_from(view, end)[0] != 0x06054B50:
        return None  # a comment or zip64: leave it to np.load
    _, _, _, _, count, _, directory, _ = _EOCD.unpack_from(view, end)
    if directory == 0xFFFFFFFF:  # zip64
        return None
    out: dict[str, np.ndarray] = {}
    pos = directory
    for _ in range(count):
        if pos + _CENTRAL.size > end:
            raise ValueError("not an .npz: truncated central directory")
        entry = _CENTRAL.unpack_from(view, pos)
        if entry[0] != 0x02014B50:
            raise ValueError("not an .npz: bad central directory entry")
        method, crc, size, stored = entry[4], entry[7], entry[8], entry[9]
        name_len, extra_len, comment_len, offset = entry[10], entry[11], entry[12], entry[16]
        name = bytes(view[pos + _CENTRAL.size : pos + _CENTRAL.size + name_len]).decode()
        pos += _CENTRAL.size + name_len + extra_len + comment_len
        if method != 0 or size != stored or 0xFFFFFFFF in (size, offset):
            return None
        local = _LOCAL.unpack_from(view, offset)
        if local[0] != 0x04034B50:
            raise ValueError(f"not an .npz: bad local header for {name}")
        start = offset + _LOCAL.size + local[9] + local[10]
        member = view[start : start + size]
        if len(member) != size:
            raise ValueError(f"not an .npz: {name} is truncated")
        if zlib.crc32(member) & 0xFFFFFFFF != crc:
            raise ValueError(f"bad CRC-32 for {name} in the .npz")
        array = _npy_view(member)
        if array is None:
            return None
        out[name.removesuffix(".npy")] = array
    return out


def _npy_view(member: memoryview) -> np.ndarray | None:
    """A ``.npy`` member as a view of its bytes; None for object arrays."""
    if len(member) < 10 or bytes(member[:6]) != b"\x93NUMPY":
        raise ValueError("not an .npz: a member is not a .npy")
    major = member[6]
    length_size = 2 if major == 1 else 4
    (header_len,) = struct.unpack_from("<H" if major == 1 else "<I", member, 8)
    data_start = 8 + length_size + header_len
    fp = io.BytesIO(member[:data_start])
    read = (
        np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
    )
    version = np.lib.format.read_magic(fp)
    assert version[0] == major
    shape, fortran, dtype = read(fp, max_header_size=header_len + 1)
    if dtype.hasobject:
        return None
    count = int(np.prod(shape, dtype=np.int64))
    flat = np.frombuffer(member, dtype=dtype, count=count, offset=data_start)
    return flat.reshape(shape[::-1]).T if fortran else flat.reshape(shape)
