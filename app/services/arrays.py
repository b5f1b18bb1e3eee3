"""Safe NumPy (de)serialisation for binary request bodies: ``.npy`` and ``.npz`` only, never
pickle, sizes checked from the headers before anything is decompressed or copied."""

from __future__ import annotations

import io
import struct
import zipfile
import zlib

import numpy as np

from app.core.errors import DomainError

NPY_MAGIC = b"\x93NUMPY"
ZIP_MAGIC = b"PK\x03\x04"
_MAX_HEADER = 16 * 1024


def _malformed(message: str) -> DomainError:
    """The body is not a usable .npy/.npz payload; the message says why."""
    return DomainError(message, "malformed", "body")


def _parse_npy(buf: memoryview, name: str) -> np.ndarray:
    """Zero-copy view of a .npy payload (only the header is copied to be parsed)."""
    f = io.BytesIO(bytes(buf[:_MAX_HEADER]))
    try:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            raise ValueError(f"unsupported .npy format version {version}")
    except Exception as exc:
        raise _malformed(f"{name}: not a valid .npy header ({exc})") from exc
    if dtype.hasobject:
        raise _malformed(f"{name}: object arrays are not accepted")
    count = int(np.prod(shape, dtype=np.int64))
    offset = f.tell()
    if len(buf) - offset < count * dtype.itemsize:
        raise _malformed(f"{name}: truncated data for shape {shape} and dtype {dtype}")
    arr = np.frombuffer(buf, dtype=dtype, count=count, offset=offset)
    return arr.reshape(shape, order="F" if fortran else "C")


class _BufferReader(io.RawIOBase):
    """A seekable, read-only file over a buffer, without copying it (``io.BytesIO`` copies
    anything but ``bytes``)."""

    def __init__(self, view: memoryview) -> None:
        super().__init__()
        self._view, self._pos = view, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: len(self._view)}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, b) -> int:  # type: ignore[override]
        n = max(0, min(len(b), len(self._view) - self._pos))
        b[:n] = self._view[self._pos : self._pos + n]
        self._pos += n
        return n


def load_arrays(
    body: bytes | bytearray | memoryview, max_uncompressed: int
) -> dict[str, np.ndarray]:
    """Arrays of a .npz (by member name) or a single .npy (as ``{"array": ...}``); the arrays
    are views of ``body`` where the format allows it."""
    view = memoryview(body).cast("B")
    head = bytes(view[:8])
    if head.startswith(NPY_MAGIC):
        return {"array": _parse_npy(view, "array")}
    if not head.startswith(ZIP_MAGIC):
        raise _malformed("body is neither a .npy nor a .npz file (bad magic bytes)")
    try:
        zf = zipfile.ZipFile(_BufferReader(view))
        infos = zf.infolist()
    except zipfile.BadZipFile as exc:
        raise _malformed(f"body is not a valid .npz archive ({exc})") from exc
    total = sum(i.file_size for i in infos)
    if total > max_uncompressed:
        raise _malformed(
            f".npz members would expand to {total} bytes, over the limit of {max_uncompressed}"
        )
    out: dict[str, np.ndarray] = {}
    for info in infos:
        name = info.filename.removesuffix(".npy")
        if info.compress_type == zipfile.ZIP_STORED:
            # stored members are sliced straight out of the body: no copy
            header = bytes(view[info.header_offset : info.header_offset + 30])
            n_len = int.from_bytes(header[26:28], "little")
            x_len = int.from_bytes(header[28:30], "little")
            start = info.header_offset + 30 + n_len + x_len
            out[name] = _parse_npy(view[start : start + info.file_size], name)
        else:
            out[name] = _parse_npy(memoryview(zf.read(info)), name)
    return out


def npz_chunks(arrays: dict[str, np.ndarray]) -> tuple[list[bytes | memoryview], int]:
    """An uncompressed .npz of ``arrays`` as a list of chunks that reference the arrays' memory
    (no copy of the data; one CRC pass), and its total length. Read it back with
    ``np.load(io.BytesIO(body), allow_pickle=False)``."""
    chunks: list[bytes | memoryview] = []
    central: list[bytes] = []
    offset = 0
    for key, value in arrays.items():
        arr = np.ascontiguousarray(value)
        head = io.BytesIO()
        np.lib.format.write_array_header_1_0(head, np.lib.format.header_data_from_array_1_0(arr))
        header = head.getvalue()
        data = memoryview(arr).cast("B") if arr.size else memoryview(b"")
        size = len(header) + data.nbytes
        if size >= 0xFFFFFFFF or offset >= 0xFFFFFFFF:
            raise ValueError("npz_chunks writes plain zip (no zip64): members must stay < 4 GiB")
        crc = zlib.crc32(data, zlib.crc32(header))
        name = f"{key}.npy".encode()
        local = struct.pack(
            "<IHHHHHIIIHH", 0x04034B50, 20, 0, 0, 0, 0x21, crc, size, size, len(name), 0
        )
        central.append(
            struct.pack(
                "<IHHHHHHIIIHHHHHII",
                0x02014B50,
                20,
                20,
                0,
                0,
                0,
                0x21,
                crc,
                size,
                size,
                len(name),
                0,
                0,
                0,
                0,
                0,
                offset,
            )
            + name
        )
        chunks += [local + name + header, data]
        offset += len(local) + len(name) + size
    cd = b"".join(central)
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(central), len(central), len(cd), offset, 0)
    chunks.append(cd + end)
    return chunks, offset + len(cd) + len(end)
