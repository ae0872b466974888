"""Layouts: where each element of a tile lives.

`Layout` maps a logical index to physical coordinates (shared memory, packed CPU panels);
`Fragment` maps it to (thread, register slot); swizzles are layouts; `gemm_layouts` holds the
layouts GEMM instructions need. Everything here is pure Python over IR expressions and can be
checked by brute force.
"""
from .layout import MAX_ENUMERATE, Layout, LayoutError, index_vars

__all__ = ["Layout", "LayoutError", "index_vars", "MAX_ENUMERATE"]
