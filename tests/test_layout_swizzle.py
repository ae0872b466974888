"""Swizzles: bijections, involutions on their address bits, CUTLASS-equivalent, conflict-free."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from tiledsl.layout import (Layout, LayoutError, bank_conflicts, column_read_pattern,
                            ldmatrix_pattern, shared_wavefronts, swizzle, swizzle_32b,
                            swizzle_64b, swizzle_128b)

FAST = settings(max_examples=40, deadline=None)


@st.composite
def swizzles(draw):
    bits = draw(st.sampled_from([8, 16, 32, 64]))
    width = draw(st.sampled_from([32, 64, 128]))
    cols = draw(st.integers(1, 3)) * width * 8 // bits
    rows = draw(st.integers(1, 40))
    return swizzle((rows, cols), bits, width), bits, width


@FAST
@given(swizzles())
def test_swizzle_is_a_bijective_involution(case):
    sw, bits, width = case
    assert sw.output_shape == sw.shape and sw.is_bijective()
    # Applying it twice is the identity, even structurally (the XORs cancel).
    assert sw.compose(sw) == Layout.identity(sw.shape)
    assert sw.inverse().equivalent(sw)


@FAST
@given(swizzles())
def test_swizzle_only_touches_chunk_bits(case):
    sw, bits, width = case
    rows, cols = np.indices(sw.shape)
    r2, c2 = sw.evaluate(rows, cols)
    assert np.array_equal(r2, rows)
    vec = 128 // bits
    chunk_mask = (width // 16 - 1) * vec  # bits of the chunk index inside one segment
    assert not np.any((c2 ^ cols) & ~chunk_mask)


def cutlass_swizzle(addr, b, m=4, s=3):
    """CUTLASS Swizzle<B, M, S> on a byte address: bits [M, M+B) ^= bits [M+S, M+S+B)."""
    return addr ^ (((addr >> (m + s)) & ((1 << b) - 1)) << m)


@pytest.mark.parametrize("width, b", [(32, 1), (64, 2), (128, 3)])
@pytest.mark.parametrize("bits", [16, 32])
def test_matches_cutlass_on_one_atom_wide_tiles(width, b, bits):
    cols = width * 8 // bits
    sw = swizzle((32, cols), bits, width)
    elem = bits // 8
    for i in range(32):
        for j in range(cols):
            assert sw.offset(i, j) * elem == cutlass_swizzle((i * cols + j) * elem, b)


def test_named_constructors_and_errors():
    assert swizzle_128b((8, 64)) == swizzle((8, 64), 16, 128)
    assert swizzle_64b((8, 32), 16) == swizzle((8, 32), 16, 64)
    assert swizzle_32b((8, 8), 32) == swizzle((8, 8), 32, 32)
    assert repr(swizzle_128b((8, 64))) == \
        "Layout((8, 64) -> (8, 64): (i, j) -> (i, j ^ i % 8 * 8))"
    with pytest.raises(LayoutError, match="multiple of 128"):
        swizzle((8, 32), 16, 128)
    with pytest.raises(LayoutError):
        swizzle((8, 64), 16, 256)
    with pytest.raises(LayoutError):
        swizzle((8, 8, 8), 16, 32)


# -- bank conflicts ----------------------------------------------------------------------------

@pytest.mark.parametrize("width", [32, 64, 128])
@pytest.mark.parametrize("bits", [16, 32])
def test_swizzle_removes_ldmatrix_conflicts(width, bits):
    cols = width * 8 // bits
    vec = 128 // bits
    for row0, col0 in ((0, 0), (16, cols - 2 * vec), (8, 0)):
        pattern = ldmatrix_pattern(row0, col0, 4, bits)
        plain = bank_conflicts(Layout.row_major((32, cols)), pattern, bits)
        swz = bank_conflicts(swizzle((32, cols), bits, width), pattern, bits)
        assert plain > 0 and swz == 0


def test_ldmatrix_conflict_counts():
    pattern = ldmatrix_pattern()
    # 128-byte rows: the 8 rows of each matrix sit in the same 4 banks -> 8 wavefronts each.
    assert shared_wavefronts(Layout.row_major((64, 64)), pattern, 16) == (32, 4)
    assert bank_conflicts(Layout.row_major((64, 64)), pattern, 16) == 28
    assert bank_conflicts(swizzle_128b((64, 64)), pattern, 16) == 0
    # wider rows keep the per-segment swizzle conflict-free
    assert bank_conflicts(Layout.row_major((64, 128)), ldmatrix_pattern(0, 64), 16) == 28
    assert bank_conflicts(swizzle_128b((64, 128)), ldmatrix_pattern(0, 64), 16) == 0
    assert bank_conflicts(swizzle_128b((64, 64)), ldmatrix_pattern(num=1), 16) == 0


@pytest.mark.parametrize("width", [32, 64, 128])
@pytest.mark.parametrize("bits", [16, 32])
def test_swizzle_removes_column_read_conflicts(width, bits):
    cols = width * 8 // bits
    pattern = column_read_pattern(col=0, elem_bits=bits)
    assert bank_conflicts(Layout.row_major((32, cols)), pattern, bits) > 0
    assert bank_conflicts(swizzle((32, cols), bits, width), pattern, bits) == 0


def test_scalar_column_read_is_only_reduced():
    # 4-byte lanes down a column: a 16-byte-chunk swizzle spreads rows over 8 bank groups,
    # not 32 banks, so 4 rows still share a bank.
    pattern = column_read_pattern(col=0, elem_bits=32, vector_bytes=4)
    assert bank_conflicts(Layout.row_major((32, 32)), pattern, 32) == 31
    assert bank_conflicts(swizzle_128b((32, 32), 32), pattern, 32) == 3


def test_conflict_free_basics():
    row = [((0, lane), 1) for lane in range(32)]
    assert bank_conflicts(Layout.row_major((4, 32)), row, 32) == 0
    broadcast = [((0, 0), 1)] * 32
    assert bank_conflicts(Layout.row_major((4, 32)), broadcast, 32) == 0
    assert shared_wavefronts(Layout.row_major((4, 32)), [None] * 32, 32) == (0, 0)
    with pytest.raises(LayoutError):
        bank_conflicts(Layout.row_major((4, 32)), [((0, 0), 3)] * 32, 32)  # 12-byte lanes
    with pytest.raises(LayoutError):
        bank_conflicts(Layout.row_major((4, 32)), [((0, 30), 4)] * 32, 32)  # past the row
