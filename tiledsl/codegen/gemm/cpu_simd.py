"""The SIMD CPU GEMM: packed panels walked by register-blocked micro-kernels.

The block's C tile is walked MR x NR at a time by one generated micro-kernel. The kernel
broadcasts single A elements, so A's tile may stay in either orientation; it loads rows of B
as vectors, so B's tile must be K-major: a plain (K, N) tile already is, and for a transposed
B the implementation asks layout inference to store the (N, K) tile K-major, which turns the
`T.copy` that fills it into the packing (transposing) loop of a BLIS-style GEMM.

Why not BLIS's MR-interleaved A panels: the tile program re-fills its A and B tiles for every
block and k step, so packing cost is paid per block. A row-major tile is filled by contiguous
vector copies (~1/16 cycle per element); an interleaved panel needs a transpose (~1 cycle per
element), which at 64x64 tiles costs as much as the multiply itself. The packed layouts stay
available as data (`tiledsl.layout.packed_a_layout`) for kernels that want them.
"""
from __future__ import annotations

from ... import ir
from ...ir import BufferPtr, ExternCall, Gemm
from ...layout import Layout
from ...target import Target
from .cpu_ukernel import render_ukernel, ukernel_shape

_ACC_FOR = {"float32": "float32", "float64": "float64", "bfloat16": "float32", "float16": "float32"}


def _full_2d(region: ir.Region) -> bool:
    b = region.buffer
    return b.ndim == 2 and region == ir.Region.full(b)


def k_major_b(shape: tuple) -> Layout:
    """A transposed B tile (N, K) stored K-major, so each k's row of N values is contiguous:
    the copy into it is the (transposing) packing step."""
    return Layout(shape, lambda j, kk: [kk, j])


class CpuSimd:
    def __init__(self, isa: str):
        self.isa = isa
        self.name = f"cpu.{isa}"

    def accepts(self, g: Gemm, t: Target) -> bool:
        if t.kind != "cpu" or t.isa != self.isa:
            return False
        a, b, c = g.a.buffer, g.b.buffer, g.c.buffer
        if a.dtype != b.dtype or _ACC_FOR.get(a.dtype.name) != c.dtype.name or a.name == b.name:
            return False
        if not (_full_2d(g.a) and _full_2d(g.b) and _full_2d(g.c)):
            return False
        want = self.layouts(g, t)
        if a.layout not in (None, want[a.name]) or b.layout not in (None, want[b.name]):
            return False
        return c.layout is None or c.layout == Layout.identity(c.static_shape)

    def layouts(self, g: Gemm, t: Target) -> dict:
        a, b = g.a.buffer, g.b.buffer
        return {a.name: Layout.identity(a.static_shape),
                b.name: k_major_b(b.static_shape) if g.trans_b else Layout.identity(b.static_shape)}

    def lower(self, g: Gemm, t: Target, namer) -> ir.Stmt:
        acc = g.c.buffer.dtype
        mr, nr = ukernel_shape(self.isa, acc.name)
        m, n = g.c.buffer.static_shape
        a_shape = g.a.buffer.static_shape
        k = a_shape[0] if g.trans_a else a_shape[1]
        name = f"tdsl_ukr_{self.isa}_{g.a.buffer.dtype.name}_{mr}x{nr}"
        definition = render_ukernel(name, self.isa, g.a.buffer.dtype.name, acc.name)
        mi, ni = namer("mi"), namer("ni")
        rows = ir.min_(ir.const(mr), m - mi * mr) if m % mr else ir.const(mr)
        cols = ir.min_(ir.const(nr), n - ni * nr) if n % nr else ir.const(nr)
        # A element (r, k) lives at r * sr + k * sk; B row k at k * n (K-major, width n).
        sr, sk = (1, m) if g.trans_a else (k, 1)
        call = ExternCall(name, (ir.const(k), BufferPtr(g.a.buffer, mi * (mr * sr)), ir.const(sr),
                                 ir.const(sk), BufferPtr(g.b.buffer, ni * nr), ir.const(n),
                                 BufferPtr(g.c.buffer, mi * (mr * n) + ni * nr), ir.const(n), rows, cols),
                          definition, span=g.span)
        # ni outer: one K x NR strip of B stays in L1 while the A rows stream past it.
        nest = ir.For(ni, ir.const(0), ir.const(-(-n // nr)), "serial",
                      ir.For(mi, ir.const(0), ir.const(-(-m // mr)), "serial", call, span=g.span),
                      span=g.span)
        if g.clear_accum:
            return ir.seq(ir.Fill(g.c, ir.const(0, acc), span=g.span), nest)
        return nest
