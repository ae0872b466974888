"""The layouts GEMM instructions need, as data.

* `mma.sync.aligned.m16n8k16` operand fragments (PTX ISA, "Matrix Fragments for mma.m16n8k16
  with floating point type"), for one warp of 32 lanes. With `groupID = lane // 4` and
  `threadID_in_group = lane % 4`, element `x_r` of a lane (`r` is the PTX element number,
  two 16-bit elements per 32-bit register for A and B) sits at:

  * A (16 x 16): row `groupID + 8 * (r // 2 % 2)`, col `2 * tig + r % 2 + 8 * (r // 4)`;
  * B (16 x 8):  row `2 * tig + r % 2 + 8 * (r // 2)`, col `groupID`;
  * C, D (16 x 8): row `groupID + 8 * (r // 2)`, col `2 * tig + r % 2`.

  The fragment's register slot is that element number `r`.
* the C fragment of a whole thread block whose warps tile the block (`make_mma_block_fragment`);
* the CPU micro-kernel's packed panels (`packed_a_layout`, `packed_b_layout`): the copy into
  a shared tile with this layout is the packing step of a BLIS-style GEMM;
* the B tile of the CPU dot-product instructions (`vnni_b_layout`: `vdpbf16ps`, `vpdpbusd`),
  which multiply G consecutive k values inside each 32-bit lane.
"""
from __future__ import annotations

import enum
import math
from typing import Union

from .fragment import Fragment
from .layout import Layout, LayoutError

__all__ = ["mma_m16n8k16_a", "mma_m16n8k16_b", "mma_m16n8k16_c", "GemmWarpPolicy",
           "warp_partition", "make_mma_block_fragment", "packed_a_layout", "packed_b_layout", "vnni_b_layout",
           "MMA_M", "MMA_N", "MMA_K", "WARP_SIZE"]

WARP_SIZE = 32
MMA_M, MMA_N, MMA_K = 16, 8, 16


def mma_m16n8k16_a() -> Fragment:
    """A operand (16 x 16, M x K, fp16/bf16): 32 lanes x 8 elements (a0..a7)."""
    # Lane = groupID * 4 + tig with groupID = row % 8 and tig = (col % 8) // 2.
    return Fragment((MMA_M, MMA_K),
                    lambda i, k: i % 8 * 4 + k % 8 // 2,
                    lambda i, k: k // 8 * 4 + i // 8 * 2 + k % 2)


def mma_m16n8k16_b() -> Fragment:
    """B operand (16 x 8, K x N, fp16/bf16): 32 lanes x 4 elements (b0..b3)."""
    # groupID is the column; the lane's two registers cover rows 2*tig, +1 and 2*tig+8, +9.
    return Fragment((MMA_K, MMA_N),
                    lambda k, j: j * 4 + k % 8 // 2,
                    lambda k, j: k // 8 * 2 + k % 2)


def mma_m16n8k16_c() -> Fragment:
    """C / D accumulator (16 x 8, fp32): 32 lanes x 4 elements (c0..c3). Lane t holds rows
    t//4 and t//4 + 8, columns 2*(t%4) and 2*(t%4) + 1."""
    return Fragment((MMA_M, MMA_N),
                    lambda i, j: i % 8 * 4 + j // 2,
                    lambda i, j: i // 8 * 2 + j % 2)


class GemmWarpPolicy(enum.Enum):
    """How the warps of a block split the C tile (TileLang's names).

    * `FullRow`: every warp along M (warps stacked vertically, each owning full rows of
      the block's N extent);
    * `FullCol`: every warp along N (each warp owns full columns of the M extent);
    * `Square`: the split whose per-warp tile is the most square, ties to more warps on M.
    """

    Square = "square"
    FullRow = "full_row"
    FullCol = "full_col"


PolicyLike = Union[GemmWarpPolicy, str]


def _policy(policy: PolicyLike) -> GemmWarpPolicy:
    if isinstance(policy, GemmWarpPolicy):
        return policy
    key = str(policy).lower().replace("_", "").replace("-", "")
    for p in GemmWarpPolicy:
        if key in (p.name.lower(), p.value.replace("_", "")):
            return p
    raise LayoutError(f"unknown warp policy {policy!r}; use one of "
                      f"{[p.name for p in GemmWarpPolicy]}")


def warp_partition(block_M: int, block_N: int, num_warps: int,
                   policy: PolicyLike = GemmWarpPolicy.Square) -> tuple:
    """`(warps_M, warps_N)` with `warps_M * warps_N == num_warps` such that each warp's tile
    is a whole number of m16n8 instructions."""
    policy = _policy(policy)
    cands = [(m, num_warps // m) for m in range(1, num_warps + 1) if num_warps % m == 0]
    cands = [(m, n) for m, n in cands if block_M % (MMA_M * m) == 0 and block_N % (MMA_N * n) == 0]
    if policy is GemmWarpPolicy.FullRow:
        cands = [(m, n) for m, n in cands if n == 1]
    elif policy is GemmWarpPolicy.FullCol:
        cands = [(m, n) for m, n in cands if m == 1]
    if not cands:
        raise LayoutError(
            f"cannot split a {block_M} x {block_N} C tile over {num_warps} warps with policy "
            f"{policy.name}: each warp needs a multiple of {MMA_M} x {MMA_N}",
            hint="change the block size or the number of threads")
    # Most square per-warp tile: minimal |log(tile_m / tile_n)|; ties prefer more warps on M.
    return min(cands, key=lambda mn: (abs(math.log((block_M / mn[0]) / (block_N / mn[1]))),
                                      -mn[0]))


def make_mma_block_fragment(block_M: int, block_N: int, num_warps: int,
                            policy: PolicyLike = GemmWarpPolicy.Square) -> Fragment:
    """C fragment of a `block_M x block_N` accumulator spread over `num_warps` warps.

    The warps form a `warps_M x warps_N` grid (`warp_partition`); warp `w = wm * warps_N + wn`
    owns rows `[wm*WM, (wm+1)*WM)` and columns `[wn*WN, (wn+1)*WN)` (`WM = block_M /
    warps_M`, `WN = block_N / warps_N`), i.e. threads `32*w .. 32*w + 31`. Within a warp the
    tile is covered by `WM/16 x WN/8` m16n8 instructions and each lane's registers are laid
    out as `acc[WM/16][WN/8][4]`: slot = `(mi * (WN/8) + ni) * 4 + r` for element `c_r`.
    """
    warps_m, warps_n = warp_partition(block_M, block_N, num_warps, policy)
    warp_tile_m, warp_tile_n = block_M // warps_m, block_N // warps_n
    frag = mma_m16n8k16_c()
    frag = frag.repeat(warp_tile_n // MMA_N, over="registers", dim=1)
    frag = frag.repeat(warp_tile_m // MMA_M, over="registers", dim=0)
    frag = frag.repeat(warps_n, over="threads", dim=1)
    return frag.repeat(warps_m, over="threads", dim=0)


def packed_a_layout(block_M: int, block_K: int, MR: int) -> Layout:
    """A tile `(M, K)` packed as `ceil(M/MR)` panels of `MR` rows, each contiguous in K:
    physical `(panel, k, r)`, offset `(i // MR) * (MR * K) + k * MR + i % MR`. The last panel
    is padded to `MR` rows when `MR` does not divide `M` (the micro-kernel reads whole
    panels; the padding is never stored from C)."""
    _check_positive(block_M=block_M, block_K=block_K, MR=MR)
    panels = -(-block_M // MR)
    return Layout((block_M, block_K), lambda i, k: [i // MR, k, i % MR],
                  (panels, block_K, MR))


def packed_b_layout(block_K: int, block_N: int, NR: int) -> Layout:
    """B tile `(K, N)` packed as `ceil(N/NR)` panels of `NR` columns, each contiguous in K:
    physical `(panel, k, c)`, offset `(j // NR) * (NR * K) + k * NR + j % NR`; the last
    panel is padded to `NR` columns."""
    _check_positive(block_K=block_K, block_N=block_N, NR=NR)
    panels = -(-block_N // NR)
    return Layout((block_K, block_N), lambda k, j: [j // NR, k, j % NR],
                  (panels, block_K, NR))


def vnni_b_layout(shape: tuple, group: int, transposed: bool = False) -> Layout:
    """B tile `(K, N)` (or `(N, K)` when `transposed`) stored as `(K / G, N, G)`: the G values of
    column j for k-group p are contiguous, at offset `p * N * G + j * G`, so one 32-bit lane of a
    vector load holds what a dot-product instruction multiplies with a broadcast group of A.
    K must be a multiple of G."""
    _check_positive(group=group)
    k, n = shape[::-1] if transposed else shape
    if k % group:
        raise LayoutError(f"vnni_b_layout: the tile's K ({k}) is not a multiple of the group ({group})")
    if transposed:
        return Layout(shape, lambda j, kk: [kk // group, j, kk % group], (k // group, n, group))
    return Layout(shape, lambda kk, j: [kk // group, j, kk % group], (k // group, n, group))


def _check_positive(**sizes: int) -> None:
    for name, v in sizes.items():
        if not isinstance(v, int) or v <= 0:
            raise LayoutError(f"{name} must be a positive int, got {v!r}")
