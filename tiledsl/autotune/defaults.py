"""Default GEMM tiles for the host, measured rather than guessed (see benchmarks/bench_gemm.py).

On the CPU a block's A and B tiles are re-filled for every block and k step, so tiles must be
large enough that filling them is cheap next to the multiply (work grows with bm*bn*bk, the
copies with (bm+bn)*bk: B's tile is copied again for every bm rows of C, A's for every bn
columns), yet small enough that A's tile, B's tile and the C fragment stay in L2 and the grid
still has a few blocks per core.

Measured on a 2-core Zen 4 (AMD EPYC, 2 MiB L2 per core, 1 thread, 1024^3 and 2048^3, fastest of
alternating rounds), the README kernel:

- float32 64x128x256 (the old default) 75 GFLOP/s; 128x256x128 80-90; 256x128x128 92-96;
  256x256x128 89-95; 512x128x128 93-95: past bm = 256 the copies are no longer what costs.
- float64 64x64x256 37-38; 256x64x128 43-47; 128x128x128 45-49.
- bfloat16 (the vdpbf16ps kernel, whose B tile copy interleaves pairs of rows) 64x128x256 101;
  256x128x128 161-169; 256x128x256 173-176.
- int8 (vpdpbusd) 64x128x256 100-112 G op/s; 256x128x128 165-168; 256x128x256 215-217.
"""
from __future__ import annotations

from typing import Optional

from ..target import Target

__all__ = ["default_gemm_tiles"]

# dtype -> (block_M, block_N, block_K)
_TILES = {"float32": (256, 128, 128), "float64": (128, 128, 128),
          "bfloat16": (256, 128, 256), "float16": (256, 128, 256), "int8": (256, 128, 256)}


def default_gemm_tiles(M: int, N: int, K: int, dtype: str = "float32",
                       target: Optional[Target] = None) -> dict:
    """`dict(block_M=..., block_N=..., block_K=...)` for an M x N x K GEMM on the CPU. The
    same for every x86 / AArch64 host measured so far; `target` is there for when it is not."""
    bm, bn, bk = _TILES.get(str(dtype), _TILES["float32"])
    # Small dimensions shrink the tile to the rounded-up size: the micro-kernels' MR (8) and NR
    # (32) and the dot-product kernels' k groups (4) still divide it.
    bm, bn, bk = min(bm, _round_up(M, 8)), min(bn, _round_up(N, 32)), min(bk, _round_up(K, 8))
    return {"block_M": bm, "block_N": bn, "block_K": bk}


def _round_up(x: int, m: int) -> int:
    return max(m, -(-x // m) * m)
