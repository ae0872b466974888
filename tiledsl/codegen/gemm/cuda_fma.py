"""The portable CUDA GEMM: every thread accumulates its own elements of C with FMAs.

C's fragment is register-blocked: the block's threads form a `TM x TN` grid and thread
`(ti, tj)` owns rows `ti, ti + TM, ...` and columns `tj, tj + TN, ...`, so each k step loads
`M/TM` A values and `N/TN` B values from shared memory for `(M/TM) * (N/TN)` FMAs, and a warp
reads consecutive B columns (no bank conflicts). The lowering is a k loop around a
`T.Parallel` nest over C; `partition_threads` turns C into registers. A fragment A or B
(FlashAttention's P) is staged through shared memory first (`cuda_stage`).
"""
from __future__ import annotations

import math

from ... import ir
from ...ir import Gemm, Region
from ...layout import Fragment
from ...target import Target
from .cuda_stage import stage_fragment_operands

__all__ = ["CudaFma", "fma_fragment"]


def fma_fragment(m: int, n: int, threads: int) -> Fragment:
    """Register-blocked C fragment: the most square `TM x TN = threads` grid dividing (m, n)."""
    best = None
    for tm in range(1, threads + 1):
        if threads % tm or m % tm or n % (threads // tm):
            continue
        tn = threads // tm
        score = abs(math.log((m / tm) / (n / tn)))
        if best is None or score < best[0]:
            best = (score, tm, tn)
    if best is None:
        return None
    _, tm, tn = best
    per_row = n // tn
    return Fragment((m, n), lambda i, j: i % tm * tn + j % tn, lambda i, j: i // tm * per_row + j // tn)


class CudaFma:
    name = "cuda.fma"
    hard_layouts = False
    per_block = True  # layouts() takes the block's thread count

    @staticmethod
    def accepts(g: Gemm, t: Target) -> bool:
        c = g.c.buffer
        return t.kind == "cuda" and c.scope == "fragment" and g.c == Region.full(c) and c.ndim == 2

    def layouts(self, g: Gemm, t: Target, threads: int) -> dict:
        c = g.c.buffer
        if c.layout is not None:
            return {}
        f = fma_fragment(*c.static_shape, threads)
        return {c.name: f} if f is not None else {}

    def lower(self, g: Gemm, target: Target, namer) -> ir.Stmt:
        staged, g = stage_fragment_operands(g, namer)
        m, n = (e.value for e in g.c.matrix_extents(2))
        ka = g.a.matrix_extents(2)
        k = (ka[0] if g.trans_a else ka[1]).value
        acc_t = g.c.buffer.dtype
        i, j, kk = namer("i"), namer("j"), namer("k")
        a = ir.cast(ir.Load(g.a.buffer, g.a.index((kk, i) if g.trans_a else (i, kk)), g.a.buffer.dtype), acc_t)
        b = ir.cast(ir.Load(g.b.buffer, g.b.index((j, kk) if g.trans_b else (kk, j)), g.b.buffer.dtype), acc_t)
        c_idx = (i, j)
        update = ir.Store(g.c.buffer, c_idx, ir.Load(g.c.buffer, c_idx, acc_t) + a * b, span=g.span)
        nest = ir.For(i, ir.const(0), ir.const(m), "parallel",
                      ir.For(j, ir.const(0), ir.const(n), "parallel", update, span=g.span), span=g.span)
        loop = ir.For(kk, ir.const(0), ir.const(k), "serial", nest, span=g.span)
        if g.clear_accum:
            loop = ir.seq(ir.Fill(g.c, ir.const(0, acc_t), span=g.span), loop)
        return ir.seq(*staged, loop)
