"""Safe NumPy (de)serialisation for binary request bodies: ``.npy`` and ``.npz`` only, never
pickle. A body is read in two steps, so that nothing is inflated or copied before it is known to
be wanted:

1. :func:`open_arrays` reads the structure only: the zip's central directory and each member's
   local header (compression method, flags, sizes) and ``.npy`` header (dtype, shape, order),
   checking that the declared sizes agree (a deflated member has only its first bytes inflated
   to read its ``.npy`` header). The caller checks names, shapes and dtypes on these headers.
2. :meth:`ArrayPayload.load` materialises the arrays: stored members are views of the body,
   deflated ones are inflated in bounded pieces straight into a preallocated array (never more
   than the declared size, so a bomb stops at its header's word), and every member's CRC-32 is
   verified. Run it in a worker thread: zlib releases the GIL while it inflates and hashes.

Problems are :class:`DomainError`s on ``body``: ``malformed`` for anything corrupt or
inconsistent, ``unsupported`` for zip features we do not read (encryption, methods other than
stored and deflate), ``too_large`` past the size limit.
"""

from __future__ import annotations

import io
import math
import struct
import zipfile
from dataclasses import dataclass

import numpy as np
from zlib_ng import zlib_ng as zlib  # zlib's API; CRC-32 ~10x faster (PCLMUL), faster inflate

from app.core.errors import DomainError

__all__ = ["ArrayPayload", "NpyHeader", "npz_chunks", "open_arrays"]

NPY_MAGIC = b"\x93NUMPY"
ZIP_MAGIC = b"PK\x03\x04"
_MAX_HEADER = 16 * 1024  # largest .npy header read (numpy writes 64 to a few hundred bytes)
_MAX_MEMBERS = 16
_INFLATE_IN = 1 << 20  # compressed bytes handed to zlib at a time
_INFLATE_OUT = 4 << 20  # most bytes zlib may produce per call (bounds the temporary copies)
_LOCAL = struct.Struct("<IHHHHHIIIHH")  # zip local file header, 30 bytes


def _malformed(message: str) -> DomainError:
    return DomainError(message, "malformed", "body")


@dataclass(frozen=True)
class NpyHeader:
    """A ``.npy`` header: ``shape``, ``dtype``, ``fortran`` order, ``offset`` of the data from
    the start of the ``.npy`` bytes, ``nbytes`` of the data it declares."""

    shape: tuple[int, ...]
    dtype: np.dtype
    fortran: bool
    offset: int

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize


def _npy_header(head: bytes, name: str) -> NpyHeader:
    """Parse the ``.npy`` header at the start of ``head`` (no data needed)."""
    f = io.BytesIO(head)
    try:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(
                f, max_header_size=_MAX_HEADER
            )
        elif version in ((2, 0), (3, 0)):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(
                f, max_header_size=_MAX_HEADER
            )
        else:
            raise ValueError(f"unsupported .npy format version {version}")
    except Exception as exc:  # numpy raises ValueError, EOFError, SyntaxError...
        raise _malformed(f"{name}: not a valid .npy header ({exc})") from exc
    if dtype.hasobject or dtype.fields is not None or dtype.subdtype is not None:
        raise _malformed(f"{name}: object, structured and sub-array dtypes are not accepted")
    if any(not isinstance(n, int) or n < 0 for n in shape):
        raise _malformed(f"{name}: invalid shape {shape}")
    return NpyHeader(tuple(shape), dtype, bool(fortran), f.tell())


@dataclass(frozen=True)
class _Member:
    name: str
    header: NpyHeader
    start: int  # offset of the member's data (the .npy bytes, compressed or not) in the body
    compressed_size: int
    file_size: int
    crc: int
    deflated: bool


class ArrayPayload:
    """A checked ``.npy``/``.npz`` body whose arrays are not materialised yet: ``headers`` by
    name (a lone ``.npy`` is ``"array"``), then :meth:`load`."""

    def __init__(self, view: memoryview, members: list[_Member]) -> None:
        self._view, self._members = view, members
        self.headers: dict[str, NpyHeader] = {m.name: m.header for m in members}

    @property
    def nbytes(self) -> int:
        """Bytes the arrays occupy once loaded."""
        return sum(m.header.nbytes for m in self._members)

    def load(self, names: tuple[str, ...] | None = None) -> dict[str, np.ndarray]:
        """The arrays ``names`` (default: all): views of the body for stored members, fresh
        arrays for deflated ones; CRC-32 checked for zip members."""
        wanted = [m for m in self._members if names is None or m.name in names]
        return {m.name: self._load(m) for m in wanted}

    def _load(self, m: _Member) -> np.ndarray:
        h = m.header
        if not m.deflated:
            data = self._view[m.start : m.start + m.file_size]
            if m.crc >= 0 and zlib.crc32(data) != m.crc:
                raise _malformed(f"{m.name}: CRC-32 mismatch (the member is corrupt)")
            count = math.prod(h.shape)
            arr = np.frombuffer(data, dtype=h.dtype, count=count, offset=h.offset)
            return arr.reshape(h.shape, order="F" if h.fortran else "C")
        return self._inflate(m)

    def _inflate(self, m: _Member) -> np.ndarray:
        h = m.header
        flat = np.empty(h.nbytes, np.uint8)  # the array's memory, written once
        src = self._view[m.start : m.start + m.compressed_size]
        d = zlib.decompressobj(-zlib.MAX_WBITS)
        crc, produced = 0, 0  # produced: .npy bytes so far, header included
        try:
            for pos in range(0, max(len(src), 1), _INFLATE_IN):
                data = bytes(src[pos : pos + _INFLATE_IN])
                while True:
                    piece = d.decompress(data, _INFLATE_OUT)
                    data = d.unconsumed_tail
                    end = produced + len(piece)
                    if end > m.file_size:
                        raise _malformed(
                            f"{m.name}: inflates beyond its declared size of {m.file_size} bytes"
                        )
                    crc = zlib.crc32(piece, crc)
                    if end > h.offset:
                        lo = max(produced, h.offset)
                        flat[lo - h.offset : end - h.offset] = np.frombuffer(piece, np.uint8)[
                            lo - produced :
                        ]
                    produced = end
                    if d.eof or (not data and len(piece) < _INFLATE_OUT):
                        break
                if d.eof:
                    break
        except zlib.error as exc:
            raise _malformed(f"{m.name}: corrupt deflate stream ({exc})") from exc
        if not d.eof or produced != m.file_size:
            raise _malformed(
                f"{m.name}: inflated to {produced} bytes (stream "
                f"{'complete' if d.eof else 'truncated'}), its header declares {m.file_size}"
            )
        if crc != m.crc:
            raise _malformed(f"{m.name}: CRC-32 mismatch (the member is corrupt)")
        return flat.view(h.dtype).reshape(h.shape, order="F" if h.fortran else "C")


def _check_size(name: str, header: NpyHeader, size: int) -> None:
    if header.offset + header.nbytes != size:
        raise _malformed(
            f"{name}: {size} bytes, but its .npy header declares {header.offset} + "
            f"{header.nbytes} (shape {header.shape}, {header.dtype})"
        )


def _zip_members(view: memoryview, max_uncompressed: int) -> list[_Member]:
    try:
        infos = zipfile.ZipFile(_BufferReader(view)).infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError, OSError) as exc:
        raise _malformed(f"body is not a valid .npz archive ({exc})") from exc
    if not infos:
        raise _malformed("the .npz archive is empty")
    if len(infos) > _MAX_MEMBERS:
        raise _malformed(f".npz holds {len(infos)} members; at most {_MAX_MEMBERS} are read")
    total = sum(i.file_size for i in infos)
    if total > max_uncompressed:
        raise DomainError(
            f".npz members would expand to {total} bytes, over the limit of {max_uncompressed}",
            "too_large",
            "body",
        )
    members: list[_Member] = []
    for info in infos:
        name = info.filename.removesuffix(".npy")
        if any(m.name == name for m in members):
            raise _malformed(f".npz holds the member {info.filename!r} twice")
        if info.flag_bits & 0x1:
            raise DomainError(
                f"{name}: encrypted .npz members are not supported", "unsupported", "body"
            )
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise DomainError(
                f"{name}: zip compression method {info.compress_type} is not supported "
                "(stored or deflate only)",
                "unsupported",
                "body",
            )
        local = bytes(view[info.header_offset : info.header_offset + _LOCAL.size])
        if len(local) < _LOCAL.size or _LOCAL.unpack(local)[0] != 0x04034B50:
            raise _malformed(f"{name}: bad local file header")
        n_len, x_len = _LOCAL.unpack(local)[9:11]
        start = info.header_offset + _LOCAL.size + n_len + x_len
        if start + info.compress_size > len(view):
            raise _malformed(f"{name}: member data runs past the end of the body")
        deflated = info.compress_type == zipfile.ZIP_DEFLATED
        if deflated:
            try:
                d = zlib.decompressobj(-zlib.MAX_WBITS)
                head = d.decompress(
                    bytes(view[start : start + min(info.compress_size, _MAX_HEADER)]), _MAX_HEADER
                )
            except zlib.error as exc:
                raise _malformed(f"{name}: corrupt deflate stream ({exc})") from exc
        else:
            if info.compress_size != info.file_size:
                raise _malformed(f"{name}: stored member with different sizes")
            head = bytes(view[start : start + min(info.file_size, _MAX_HEADER)])
        header = _npy_header(head, name)
        _check_size(name, header, info.file_size)
        members.append(
            _Member(name, header, start, info.compress_size, info.file_size, info.CRC, deflated)
        )
    return members


def open_arrays(
    body: bytes | bytearray | memoryview | np.ndarray, max_uncompressed: int
) -> ArrayPayload:
    """The structure of a ``.npz`` (members by name) or a single ``.npy`` (``"array"``), checked
    as the module docstring says; nothing is inflated. ``max_uncompressed`` bounds the total
    size of the arrays (``too_large`` past it)."""
    view = memoryview(body).cast("B")
    head = bytes(view[:8])
    if head.startswith(NPY_MAGIC):
        header = _npy_header(bytes(view[:_MAX_HEADER]), "array")
        if header.nbytes > max_uncompressed:
            raise DomainError(
                f"the .npy array holds {header.nbytes} bytes, over the limit of {max_uncompressed}",
                "too_large",
                "body",
            )
        if len(view) - header.offset < header.nbytes:
            raise _malformed(
                f"array: truncated data for shape {header.shape} and dtype {header.dtype}"
            )
        size = header.offset + header.nbytes
        return ArrayPayload(view, [_Member("array", header, 0, size, size, -1, False)])
    if not head.startswith(ZIP_MAGIC):
        raise _malformed("body is neither a .npy nor a .npz file (bad magic bytes)")
    return ArrayPayload(view, _zip_members(view, max_uncompressed))


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
