"""Shared-memory swizzles as layouts, and a bank-conflict counter to prove they work.

NVIDIA shared memory has 32 banks of 4 bytes: bytes `[128q + 4b, 128q + 4b + 4)` are in bank
`b`. A row-major tile whose rows are a multiple of 128 bytes puts a whole column in one bank,
so eight lanes reading eight rows at the same column (ldmatrix, a 16-byte vector column read)
serialise. The XOR swizzles of CUTLASS (`Swizzle<B, 4, 3>` on byte addresses: 16-byte
chunk bits `[4, 4+B)` ^= bits `[7, 7+B)`) permute the 16-byte chunks inside each row so that
those eight rows hit eight different 16-byte bank groups.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from .layout import Layout, LayoutError

__all__ = ["swizzle", "swizzle_32b", "swizzle_64b", "swizzle_128b", "bank_conflicts",
           "shared_wavefronts", "ldmatrix_pattern", "column_read_pattern", "Access",
           "NUM_BANKS", "BANK_BYTES"]

NUM_BANKS = 32
BANK_BYTES = 4
CHUNK_BYTES = 16  # the swizzle unit: one 16-byte vector (ldmatrix row, cp.async, LDS.128)

Access = Optional[tuple]  # (logical start index, vector width in elements), None: lane idle


def swizzle(shape: Sequence[int], dtype_bits: int, swizzle_bytes: int) -> Layout:
    """The `swizzle_bytes` (32, 64 or 128) XOR swizzle of a 2-D `(rows, cols)` tile of
    `dtype_bits`-bit elements, as a layout `(i, j) -> (i, j')` onto the same shape.

    Within each `swizzle_bytes`-wide segment of a row, 16-byte chunk `c` moves to
    `c ^ ((i // (128 / swizzle_bytes)) % (swizzle_bytes / 16))`: exactly CUTLASS
    `Swizzle<1|2|3, 4, 3>` applied to the byte address of a tile whose rows are
    `swizzle_bytes` long. Wider rows (a multiple of `swizzle_bytes`) swizzle every segment
    the same way, as CUTLASS does when it tiles a swizzle atom over a larger tile.
    """
    if len(tuple(shape)) != 2:
        raise LayoutError(f"swizzles apply to 2-D tiles, got shape {tuple(shape)}")
    rows, cols = (int(s) for s in shape)
    if dtype_bits not in (8, 16, 32, 64):
        raise LayoutError(f"swizzle needs 8-, 16-, 32- or 64-bit elements, got {dtype_bits}")
    if swizzle_bytes not in (32, 64, 128):
        raise LayoutError(f"swizzle width must be 32, 64 or 128 bytes, got {swizzle_bytes}")
    if (cols * dtype_bits) % (swizzle_bytes * 8):
        raise LayoutError(f"a {swizzle_bytes}B swizzle needs rows of a multiple of "
                          f"{swizzle_bytes} bytes; {cols} x {dtype_bits}-bit elements is "
                          f"{cols * dtype_bits // 8} bytes")
    vec = CHUNK_BYTES * 8 // dtype_bits           # elements per 16-byte chunk
    chunks = swizzle_bytes // CHUNK_BYTES         # chunks per swizzle segment: 2, 4 or 8
    rows_per_line = 128 // swizzle_bytes          # rows sharing one 128-byte bank line

    def fn(i, j):
        return [i, j ^ (i // rows_per_line % chunks) * vec]

    return Layout((rows, cols), fn)


def swizzle_32b(shape: Sequence[int], dtype_bits: int = 16) -> Layout:
    """32-byte swizzle (CUTLASS `Swizzle<1, 4, 3>`)."""
    return swizzle(shape, dtype_bits, 32)


def swizzle_64b(shape: Sequence[int], dtype_bits: int = 16) -> Layout:
    """64-byte swizzle (CUTLASS `Swizzle<2, 4, 3>`)."""
    return swizzle(shape, dtype_bits, 64)


def swizzle_128b(shape: Sequence[int], dtype_bits: int = 16) -> Layout:
    """128-byte swizzle (CUTLASS `Swizzle<3, 4, 3>`)."""
    return swizzle(shape, dtype_bits, 128)


def _lane_words(layout: Layout, access: tuple, elem_bytes: int) -> np.ndarray:
    """The 4-byte words one lane's vector touches (a vector runs along the last dim)."""
    start, width = access
    start = tuple(int(x) for x in (start if isinstance(start, (tuple, list)) else (start,)))
    idx = [np.full(width, s, dtype=np.int64) for s in start]
    idx[-1] = idx[-1] + np.arange(width, dtype=np.int64)
    if int(idx[-1][-1]) >= layout.shape[-1]:
        raise LayoutError(f"access {access} runs past the tile's last dimension "
                          f"({layout.shape[-1]})")
    coords = layout.evaluate(*idx)
    flat = np.zeros(width, dtype=np.int64)
    for c, n in zip(coords, layout.output_shape):
        flat = flat * n + c
    return np.unique(flat * elem_bytes // BANK_BYTES)


def shared_wavefronts(layout: Layout, accesses: Sequence[Access], elem_bits: int) -> tuple:
    """`(wavefronts, minimum)` for one warp-wide shared-memory access; see `bank_conflicts`."""
    if len(accesses) > 32:
        raise LayoutError(f"a warp has 32 lanes, got {len(accesses)} accesses")
    if elem_bits % 8:
        raise LayoutError(f"elements must be whole bytes, got {elem_bits} bits")
    elem_bytes = elem_bits // 8
    widths = {a[1] for a in accesses if a is not None}
    if not widths:
        return 0, 0
    lane_bytes = max(widths) * elem_bytes
    if lane_bytes > 16 or lane_bytes & (lane_bytes - 1):
        raise LayoutError(f"a lane accesses 1, 2, 4, 8 or 16 bytes, not {lane_bytes}")
    # Accesses wider than 4 bytes are split into phases of 128 bytes: 8-byte vectors are
    # served 16 lanes at a time, 16-byte vectors (and ldmatrix rows) 8 lanes at a time.
    lanes_per_phase = NUM_BANKS * BANK_BYTES // max(lane_bytes, BANK_BYTES)
    wavefronts = minimum = 0
    for p in range(0, 32, lanes_per_phase):
        banks: dict = {}
        for a in accesses[p:p + lanes_per_phase]:
            if a is None:
                continue
            for w in _lane_words(layout, a, elem_bytes):
                banks.setdefault(int(w) % NUM_BANKS, set()).add(int(w))
        if banks:
            # Lanes reading the same word share it (broadcast); distinct words in one bank
            # need one wavefront each.
            wavefronts += max(len(words) for words in banks.values())
            minimum += 1
    return wavefronts, minimum


def bank_conflicts(layout: Layout, accesses: Sequence[Access], elem_bits: int) -> int:
    """Extra shared-memory wavefronts a warp access needs beyond the minimum.

    `accesses[l]` is lane `l`'s `(logical start index, width in elements)` (a vector along the
    tile's last dimension) or None for an idle lane; `layout` maps the tile to its physical
    element offset. Definition: the warp's lanes are split into phases (32 lanes for accesses
    up to 4 bytes, 16 for 8 bytes, 8 for 16 bytes); a phase needs as many wavefronts as the
    largest number of distinct 4-byte words any one bank must deliver. The result is the
    total over phases minus the number of active phases, so 0 means conflict-free.
    """
    wavefronts, minimum = shared_wavefronts(layout, accesses, elem_bits)
    return wavefronts - minimum


def ldmatrix_pattern(row: int = 0, col: int = 0, num: int = 4, elem_bits: int = 16) -> list:
    """Addresses of `ldmatrix.sync.aligned.m8n8.x{num}`: lanes `8m .. 8m+7` each give one
    16-byte row of 8x8 matrix `m`. The matrices are arranged as for an mma A operand:
    lane `l` reads the 16 bytes at row `row + l % 16`, column `col + (l // 16) * V` (`V`
    elements per 16 bytes: 8 for 16-bit), so x4 covers a 16 x 16 block of 16-bit elements;
    lanes past `8 * num` are idle."""
    if num not in (1, 2, 4):
        raise LayoutError(f"ldmatrix loads 1, 2 or 4 matrices, not {num}")
    vec = CHUNK_BYTES * 8 // elem_bits
    return [((row + lane % 16, col + (lane // 16) * vec), vec) if lane < 8 * num else None
            for lane in range(32)]


def column_read_pattern(col: int = 0, row: int = 0, lanes: int = 32, elem_bits: int = 16,
                        vector_bytes: int = 16) -> list:
    """Lane `l` reads `vector_bytes` starting at `(row + l, col)`: walking down a column of
    16-byte chunks, as a transposing copy or a K-major operand load does."""
    vec = max(1, vector_bytes * 8 // elem_bits)
    return [((row + lane, col), vec) if lane < lanes else None for lane in range(32)]
