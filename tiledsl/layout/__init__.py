"""Layouts: where each element of a tile lives.

`Layout` maps a logical index to physical coordinates (shared memory, packed CPU panels);
`Fragment` maps it to (thread, register slot); swizzles are layouts; `gemm_layouts` holds the
layouts GEMM instructions need. Everything here is pure Python over IR expressions and can be
checked by brute force. See docs/layouts.md.
"""
from .layout import MAX_ENUMERATE, Layout, LayoutError, index_vars
from .fragment import REP, Fragment, fragment_from_exprs
from .swizzle import (Access, bank_conflicts, column_read_pattern, ldmatrix_pattern,
                      shared_wavefronts, swizzle, swizzle_32b, swizzle_64b, swizzle_128b)
from .gemm_layouts import (GemmWarpPolicy, make_mma_block_fragment, mma_m16n8k16_a,
                           mma_m16n8k16_b, mma_m16n8k16_c, packed_a_layout, packed_b_layout,
                           vnni_b_layout, warp_partition)
from .plot import plot

__all__ = [
    "Layout", "LayoutError", "index_vars", "MAX_ENUMERATE",
    "Fragment", "REP", "fragment_from_exprs",
    "swizzle", "swizzle_32b", "swizzle_64b", "swizzle_128b",
    "bank_conflicts", "shared_wavefronts", "ldmatrix_pattern", "column_read_pattern", "Access",
    "GemmWarpPolicy", "warp_partition", "make_mma_block_fragment",
    "mma_m16n8k16_a", "mma_m16n8k16_b", "mma_m16n8k16_c",
    "packed_a_layout", "packed_b_layout", "vnni_b_layout",
    "plot",
]
