"""Safe NumPy (de)serialisation for binary request bodies: ``.npy`` and ``.npz`` only, never
pickle, sizes checked from the headers before anything is decompressed or copied."""

from __future__ import annotations

import io
import zipfile

import numpy as np

NPY_MAGIC = b"\x93NUMPY"
ZIP_MAGIC = b"PK\x03\x04"


class ArrayFormatError(ValueError):
    """The body is not a usable .npy/.npz payload; the message says why."""


def _parse_npy(buf: memoryview, name: str) -> np.ndarray:
    """Zero-copy view of a .npy payload."""
    f = io.BytesIO(buf)
    try:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            raise ValueError(f"unsupported .npy format version {version}")
    except Exception as exc:
        raise ArrayFormatError(f"{name}: not a valid .npy header ({exc})") from exc
    if dtype.hasobject:
        raise ArrayFormatError(f"{name}: object arrays are not accepted")
    count = int(np.prod(shape, dtype=np.int64))
    offset = f.tell()
    if len(buf) - offset < count * dtype.itemsize:
        raise ArrayFormatError(f"{name}: truncated data for shape {shape} and dtype {dtype}")
    arr = np.frombuffer(buf, dtype=dtype, count=count, offset=offset)
    return arr.reshape(shape, order="F" if fortran else "C")


def load_arrays(body: bytes, max_uncompressed: int) -> dict[str, np.ndarray]:
    """Arrays of a .npz (by member name) or a single .npy (as ``{"array": ...}``)."""
    if body.startswith(NPY_MAGIC):
        return {"array": _parse_npy(memoryview(body), "array")}
    if not body.startswith(ZIP_MAGIC):
        raise ArrayFormatError("body is neither a .npy nor a .npz file (bad magic bytes)")
    try:
        zf = zipfile.ZipFile(io.BytesIO(body))
        infos = zf.infolist()
    except zipfile.BadZipFile as exc:
        raise ArrayFormatError(f"body is not a valid .npz archive ({exc})") from exc
    total = sum(i.file_size for i in infos)
    if total > max_uncompressed:
        raise ArrayFormatError(
            f".npz members would expand to {total} bytes, over the limit of {max_uncompressed}"
        )
    out: dict[str, np.ndarray] = {}
    for info in infos:
        name = info.filename.removesuffix(".npy")
        if info.compress_type == zipfile.ZIP_STORED:
            # stored members are sliced straight out of the body: no copy
            header = body[info.header_offset : info.header_offset + 30]
            n_len = int.from_bytes(header[26:28], "little")
            x_len = int.from_bytes(header[28:30], "little")
            start = info.header_offset + 30 + n_len + x_len
            out[name] = _parse_npy(memoryview(body)[start : start + info.file_size], name)
        else:
            out[name] = _parse_npy(memoryview(zf.read(info)), name)
    return out


def dump_npz(arrays: dict[str, np.ndarray]) -> bytes:
    """Uncompressed .npz of the arrays (read it with ``np.load(..., allow_pickle=False)``)."""
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()
