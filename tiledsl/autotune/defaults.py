"""Default GEMM tiles for the host, measured rather than guessed (see benchmarks/bench_gemm.py).

On the CPU a block's A and B tiles are re-filled for every block and k step, so tiles must be
large enough that filling them is cheap next to the multiply (work grows with bm*bn*bk, the
copies with (bm+bn)*bk), yet small enough that B's tile stays in L2 and the grid still has a
few blocks per core.
"""
from __future__ import annotations

from typing import Optional

from ..target import Target

__all__ = ["default_gemm_tiles"]


def default_gemm_tiles(M: int, N: int, K: int, dtype: str = "float32",
                       target: Optional[Target] = None) -> dict:
    """`dict(block_M=..., block_N=..., block_K=...)` for an M x N x K GEMM on the CPU. The
    same for every x86 / AArch64 host measured so far; `target` is there for when it is not."""
    wide = dtype == "float64"
    bm, bn, bk = (64, 128, 256) if not wide else (64, 64, 256)
    bm, bn, bk = min(bm, _round_up(M, 8)), min(bn, _round_up(N, 32)), min(bk, _round_up(K, 8))
    return {"block_M": bm, "block_N": bn, "block_K": bk}


def _round_up(x: int, m: int) -> int:
    return max(m, -(-x // m) * m)
