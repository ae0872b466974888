"""GEMM layouts against the PTX ISA tables, the block C fragment, and the packed CPU panels."""
import itertools

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from tiledsl.layout import (GemmWarpPolicy, LayoutError, make_mma_block_fragment,
                            mma_m16n8k16_a, mma_m16n8k16_b, mma_m16n8k16_c, packed_a_layout,
                            packed_b_layout, vnni_b_layout, warp_partition)

# -- PTX ISA, "Matrix Fragments for mma.m16n8k16 with floating point type" --------------------
# Written independently of gemm_layouts.py: lane, element number -> (row, col).


def ptx_a(lane, r):
    group, tig = lane >> 2, lane % 4
    row = group if r % 4 < 2 else group + 8
    col = tig * 2 + (r & 1) + (8 if r >= 4 else 0)
    return row, col


def ptx_b(lane, r):
    group, tig = lane >> 2, lane % 4
    row = tig * 2 + (r & 1) + (8 if r >= 2 else 0)
    return row, group


def ptx_c(lane, r):
    group, tig = lane >> 2, lane % 4
    row = group if r < 2 else group + 8
    return row, tig * 2 + (r & 1)


@pytest.mark.parametrize("frag, ref, shape, regs", [
    (mma_m16n8k16_a(), ptx_a, (16, 16), 8),
    (mma_m16n8k16_b(), ptx_b, (16, 8), 4),
    (mma_m16n8k16_c(), ptx_c, (16, 8), 4),
])
def test_mma_fragments_match_ptx(frag, ref, shape, regs):
    assert frag.shape == shape
    assert frag.num_threads == 32 and frag.locals_per_thread == regs
    assert frag.is_bijective()  # every element held exactly once
    seen = set()
    for lane, r in itertools.product(range(32), range(regs)):
        row, col = ref(lane, r)
        assert (frag.thread(row, col), frag.index(row, col)) == (lane, r)
        assert frag.inverse()(lane, r) == (row, col)
        seen.add((row, col))
    assert len(seen) == shape[0] * shape[1]


def test_c_fragment_rows_and_columns():
    c = mma_m16n8k16_c()
    for t in range(32):
        cells = {c.inverse()(t, s) for s in range(4)}
        rows, cols = {r for r, _ in cells}, {k for _, k in cells}
        assert rows == {t // 4, t // 4 + 8}
        assert cols == {2 * (t % 4), 2 * (t % 4) + 1}


# -- warp partition and block fragment ---------------------------------------------------------

def test_warp_partition_policies():
    assert warp_partition(128, 128, 4, "square") == (2, 2)
    assert warp_partition(128, 128, 4, GemmWarpPolicy.FullRow) == (4, 1)
    assert warp_partition(128, 128, 4, "FullCol") == (1, 4)
    assert warp_partition(256, 128, 8, "square") == (4, 2)
    assert warp_partition(32, 256, 8, "square") == (1, 8)
    assert warp_partition(256, 64, 8, "square") == (8, 1)  # 32x64 vs 64x32: ties go to M
    assert warp_partition(16, 128, 4, "square") == (1, 4)  # M fits one warp only
    with pytest.raises(LayoutError):
        warp_partition(16, 8, 4, "FullRow")
    with pytest.raises(LayoutError):
        warp_partition(64, 64, 4, "diagonal")


@settings(max_examples=25, deadline=None)
@given(st.sampled_from([1, 2, 4, 8]), st.sampled_from(list(GemmWarpPolicy)),
       st.integers(1, 4), st.integers(1, 4), st.data())
def test_block_fragment_tiles_warps_and_instructions(num_warps, policy, mul_m, mul_n, data):
    wm, wn = {GemmWarpPolicy.FullRow: (num_warps, 1), GemmWarpPolicy.FullCol: (1, num_warps),
              GemmWarpPolicy.Square: (1, 1)}[policy]
    block_m, block_n = 16 * wm * mul_m, 8 * wn * mul_n
    if policy is GemmWarpPolicy.Square:
        block_m, block_n = 16 * num_warps * mul_m, 8 * num_warps * mul_n
    frag = make_mma_block_fragment(block_m, block_n, num_warps, policy)
    warps_m, warps_n = warp_partition(block_m, block_n, num_warps, policy)
    assert frag.num_threads == 32 * num_warps
    assert frag.locals_per_thread == block_m * block_n // (32 * num_warps)
    assert frag.is_bijective()
    tile_m, tile_n = block_m // warps_m, block_n // warps_n
    ni_count = tile_n // 8
    c = mma_m16n8k16_c()
    row = data.draw(st.integers(0, block_m - 1))
    col = data.draw(st.integers(0, block_n - 1))
    w = (row // tile_m) * warps_n + col // tile_n
    mi, ni = row % tile_m // 16, col % tile_n // 8
    assert frag.thread(row, col) == 32 * w + c.thread(row % 16, col % 8)
    assert frag.index(row, col) == (mi * ni_count + ni) * 4 + c.index(row % 16, col % 8)


def test_block_fragment_inverse_covers_block():
    frag = make_mma_block_fragment(64, 64, 4, "square")
    inv = frag.inverse()
    tt, ss = np.indices((128, 32)).reshape(2, -1)
    rows, cols = inv.evaluate(tt, ss)
    assert len(set(zip(rows.tolist(), cols.tolist()))) == 64 * 64


# -- packed panels -----------------------------------------------------------------------------

@settings(max_examples=40, deadline=None)
@given(st.integers(1, 40), st.integers(1, 12), st.integers(1, 16))
def test_packed_panels_offsets(m, k, mr):
    a = packed_a_layout(m, k, mr)
    panels = -(-m // mr)
    assert a.output_shape == (panels, k, mr)
    offs = a.offset_table()
    for i, kk in itertools.product(range(0, m, 3), range(k)):
        assert offs[i, kk] == (i // mr) * (mr * k) + kk * mr + i % mr
    assert a.is_injective()
    assert a.is_bijective() == (m % mr == 0)
    b = packed_b_layout(k, m, mr)  # the same shapes, transposed roles
    for kk, j in itertools.product(range(k), range(0, m, 3)):
        assert b.offset(kk, j) == (j // mr) * (mr * k) + kk * mr + j % mr
    assert b.output_shape == (panels, k, mr)


def test_packed_panels_inverse_and_padding():
    a = packed_a_layout(12, 8, 6)
    assert repr(a.inverse()) == "Layout((2, 8, 6) -> (12, 8): (i, j, k) -> (i * 6 + k, j))"
    padded = packed_b_layout(4, 10, 4)
    assert padded.output_shape == (3, 4, 4) and padded.physical_size == 48
    with pytest.raises(LayoutError):
        padded.inverse()
    with pytest.raises(LayoutError):
        packed_a_layout(0, 4, 4)


@pytest.mark.parametrize("k,n,group", [(8, 32, 2), (16, 10, 4), (4, 3, 4)])
def test_vnni_b_layout_groups_k_within_a_lane(k, n, group):
    """The dot-product B tile: k-group p of column j at p * n * G + j * G, k % G inside it; a
    bijection, and the transposed (N, K) tile is the same storage."""
    b = vnni_b_layout((k, n), group)
    offs = b.offset_table()
    for kk, j in itertools.product(range(k), range(n)):
        assert offs[kk, j] == (kk // group) * n * group + j * group + kk % group
    assert b.is_bijective()
    t = vnni_b_layout((n, k), group, transposed=True).offset_table()
    assert all(t[j, kk] == offs[kk, j] for kk, j in itertools.product(range(k), range(n)))
    with pytest.raises(LayoutError):
        vnni_b_layout((k + 1, n), group)
