"""SIMD building blocks for the Numba kernels that Numba cannot express itself.

:func:`transpose8` moves an 8 x 8 tile between an item-major layout (one item's values
contiguous, as ``(B, 4, 2)`` points and ``(B, 3, 3)`` matrices are stored) and a lane-major one
(one value of 8 consecutive items contiguous, what a vectorised loop reads). LLVM would turn the
stride-8 loads of such a loop into gathers, and the stride-9 stores into scatters, both several
times slower than these 8 vector loads, 24 two-input shuffles and 8 vector stores.
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import errors
from numba.extending import intrinsic

__all__ = ["TRANSPOSE8_MASKS", "transpose8"]

# A three-stage butterfly: each stage pairs registers and interleaves runs of 1, 2, then 4
# elements (vunpck{l,h}pd, vpermt2pd/vshufpd, vshuff64x2 on AVX-512; the same masks on AVX2).
TRANSPOSE8_MASKS = (
    ((0, 8, 2, 10, 4, 12, 6, 14), (1, 9, 3, 11, 5, 13, 7, 15)),
    ((0, 1, 8, 9, 4, 5, 12, 13), (2, 3, 10, 11, 6, 7, 14, 15)),
    ((0, 1, 2, 3, 8, 9, 10, 11), (4, 5, 6, 7, 12, 13, 14, 15)),
)


def butterfly8(rows: list, shuffle) -> list:
    """The transpose of 8 rows of 8 elements with ``shuffle(a, b, mask)`` (``mask`` indexes the
    concatenation of ``a`` and ``b``), stage by stage; returns the 8 columns."""
    (lo1, hi1), (lo2, hi2), (lo4, hi4) = TRANSPOSE8_MASKS
    t = [None] * 8
    for k in range(0, 8, 2):
        t[k], t[k + 1] = shuffle(rows[k], rows[k + 1], lo1), shuffle(rows[k], rows[k + 1], hi1)
    u = [None] * 8
    for base in (0, 4):
        for a in (0, 1):
            x, y = t[base + a], t[base + a + 2]
            u[base + a], u[base + a + 2] = shuffle(x, y, lo2), shuffle(x, y, hi2)
    return [
        shuffle(u[a], u[a + 4], mask) for mask, a in ((m, a) for m in (lo4, hi4) for a in range(4))
    ]


def _element_ptr(context, builder, arr_type, arr, index):
    data = context.make_array(arr_type)(context, builder, arr).data
    return builder.gep(data, [index])


@intrinsic
def transpose8(typingctx, src, src_start, src_stride, dst, dst_start, dst_stride):
    """``dst[dst_start + c * dst_stride + r] = src[src_start + r * src_stride + c]`` for
    ``r, c < 8``: 8 rows of 8 contiguous elements in, 8 columns of 8 contiguous elements out.

    ``src`` and ``dst``: 1-D C-contiguous float32 or float64 arrays of the same dtype (any
    alignment; the caller guarantees every index is in bounds: nothing is checked).
    """
    ok = (
        all(isinstance(a, types.Array) and a.ndim == 1 and a.layout == "C" for a in (src, dst))
        and src.dtype == dst.dtype
        and src.dtype in (types.float32, types.float64)
        and all(isinstance(i, types.Integer) for i in (src_start, src_stride))
        and all(isinstance(i, types.Integer) for i in (dst_start, dst_stride))
    )
    if not ok:
        raise errors.TypingError(
            "transpose8 takes two 1-D C-contiguous float32/float64 arrays of one dtype and "
            f"integer offsets, got {src}, {dst}"
        )
    sig = types.void(src, types.intp, types.intp, dst, types.intp, types.intp)

    def codegen(context, builder, signature, args):
        s, s0, ss, d, d0, ds = args
        vec = ir.VectorType(context.get_data_type(src.dtype), 8)
        mask_type = ir.VectorType(ir.IntType(32), 8)

        def at(arr_type, arr, start, stride, k):
            index = builder.add(start, builder.mul(stride, ir.Constant(stride.type, k)))
            ptr = _element_ptr(context, builder, arr_type, arr, index)
            return builder.bitcast(ptr, vec.as_pointer())

        rows = [builder.load(at(src, s, s0, ss, r), align=1) for r in range(8)]
        cols = butterfly8(
            rows, lambda a, b, m: builder.shuffle_vector(a, b, ir.Constant(mask_type, m))
        )
        for c, col in enumerate(cols):
            builder.store(col, at(dst, d, d0, ds, c), align=1)
        return context.get_dummy_value()

    return sig, codegen
