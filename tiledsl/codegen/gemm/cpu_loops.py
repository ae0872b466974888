"""The portable CPU GEMM: plain loops the C++ compiler vectorises.

Loop order i-k-j when B is K x N (the innermost loop walks rows of B and C contiguously),
i-j-k with a scalar accumulator when B is transposed (both operands contiguous in k).
"""
from __future__ import annotations

from ... import ir
from ...ir import Gemm
from ...target import Target


class CpuLoops:
    name = "cpu.loops"

    def lower(self, g: Gemm, target: Target, namer) -> ir.Stmt:
        m, n = (e.value for e in g.c.matrix_extents(2))
        ka = g.a.matrix_extents(2)
        k = (ka[0] if g.trans_a else ka[1]).value
        acc_t = g.c.buffer.dtype
        i, j, kk = namer("i"), namer("j"), namer("k")

        def a(ii, kx):
            idx = g.a.index((kx, ii) if g.trans_a else (ii, kx))
            return ir.cast(ir.Load(g.a.buffer, idx, g.a.buffer.dtype), acc_t)

        def b(kx, jj):
            idx = g.b.index((jj, kx) if g.trans_b else (kx, jj))
            return ir.cast(ir.Load(g.b.buffer, idx, g.b.buffer.dtype), acc_t)

        c_idx = g.c.index((i, j))
        c = ir.Load(g.c.buffer, c_idx, acc_t)
        span = g.span
        if not g.trans_b:
            a_val = namer("a", acc_t)
            update = ir.Store(g.c.buffer, c_idx, c + a_val * b(kk, j), span=span)
            inner = ir.For(j, ir.const(0), ir.const(n), "vectorized", update, span=span)
            body = ir.seq(ir.Decl(a_val, a(i, kk), span=span), inner)
            nest = ir.For(i, ir.const(0), ir.const(m), "serial",
                          ir.For(kk, ir.const(0), ir.const(k), "serial", body, span=span), span=span)
        else:
            acc = namer("acc", acc_t)
            red = ir.For(kk, ir.const(0), ir.const(k), "serial",
                         ir.Assign(acc, acc + a(i, kk) * b(kk, j), span=span), span=span)
            body = ir.seq(ir.Decl(acc, ir.const(0, acc_t) if g.clear_accum else c, span=span), red,
                          ir.Store(g.c.buffer, c_idx, acc, span=span))
            return ir.For(i, ir.const(0), ir.const(m), "serial",
                          ir.For(j, ir.const(0), ir.const(n), "serial", body, span=span), span=span)
        if g.clear_accum:
            return ir.seq(ir.Fill(g.c, ir.const(0, acc_t), span=span), nest)
        return nest


def _is_cpu(g: Gemm, t: Target) -> bool:
    return t.kind == "cpu"
