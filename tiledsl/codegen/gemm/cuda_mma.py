"""Tensor-core GEMM on CUDA: `mma.sync.aligned.m16n8k16` for fp16 / bf16 tiles, fp32 accumulate.

The block's warps tile C by the warp policy (`tiledsl.layout.warp_partition`); C's fragment
is `make_mma_block_fragment` (a hard requirement of this row). For each k step of 16 each warp
issues `WM/16 x WN/8` instructions through one generated device function per variant, which
gathers the lane's A and B registers from the shared tiles by the PTX ISA fragment tables
(`a_element`, `b_element`, `c_element` below, checked against `tiledsl.layout`'s fragments by
the tests) and runs the instruction. Under emulation (`TDSL_EMU`) the same function computes
the lane's four C elements from shared memory directly, so the warp tiling and C's register
mapping are what the emulated tests check.

Not yet: ldmatrix and swizzled operand tiles (this row takes row-major / K-major tiles only),
cp.async pipelining, wgmma on sm90a.
"""
from __future__ import annotations

from ... import ir
from ...ir import THREAD_X, Buffer, BufferPtr, ExternCall, Gemm, Region
from ...layout import Layout, LayoutError, make_mma_block_fragment, warp_partition
from ...target import Target
from .cuda_stage import stage_fragment_operands

__all__ = ["CudaMma", "a_element", "b_element", "c_element"]


def a_element(lane: int, r: int) -> tuple:
    """(row, k) of A register element r (0..7) of `lane` in a 16 x 16 A operand."""
    g, t = lane // 4, lane % 4
    return g + 8 * (r // 2 % 2), 2 * t + r % 2 + 8 * (r // 4)


def b_element(lane: int, r: int) -> tuple:
    """(k, col) of B register element r (0..3) of `lane` in a 16 x 8 B operand."""
    g, t = lane // 4, lane % 4
    return 2 * t + r % 2 + 8 * (r // 2), g


def c_element(lane: int, r: int) -> tuple:
    """(row, col) of accumulator element r (0..3) of `lane` in a 16 x 8 C tile."""
    g, t = lane // 4, lane % 4
    return g + 8 * (r // 2), 2 * t + r % 2


def _expr(text_fn, lane: str, r: int) -> tuple:
    """C expressions for an element's coordinates, from the Python table functions."""
    # Each coordinate is affine in (lane // 4, lane % 4) for a fixed r: recover the coefficients.
    base = text_fn(0, r)
    dg = tuple(a - b for a, b in zip(text_fn(4, r), base))
    dt = tuple(a - b for a, b in zip(text_fn(1, r), base))
    return tuple(f"({b} + {g} * ({lane} >> 2) + {t} * ({lane} & 3))" for b, g, t in zip(base, dg, dt))


def render_mma(name: str, dtype: str, trans_a: bool, trans_b: bool) -> str:
    conv = "tdsl_bf2f" if dtype == "bfloat16" else "tdsl_h2f"
    ptx_t = "bf16" if dtype == "bfloat16" else "f16"

    def at(i, k):
        return f"A[({k}) * lda + ({i})]" if trans_a else f"A[({i}) * lda + ({k})]"

    def bt(k, j):
        return f"B[({j}) * ldb + ({k})]" if trans_b else f"B[({k}) * ldb + ({j})]"

    lines = [f"__device__ __forceinline__ void {name}(float* c, const uint16_t* A, int64_t lda, "
             f"const uint16_t* B, int64_t ldb, int64_t lane) {{", "#ifdef TDSL_EMU"]
    for r in range(4):
        i, j = _expr(c_element, "lane", r)
        lines.append(f"  {{ float s = c[{r}]; for (int k = 0; k < 16; ++k) s += {conv}({at(i, 'k')}) * "
                     f"{conv}({bt('k', j)}); c[{r}] = s; }}")
    lines.append("#else")
    lines.append("  uint32_t a[4], b[2];")
    for q in range(4):
        lo, hi = _expr(a_element, "lane", 2 * q), _expr(a_element, "lane", 2 * q + 1)
        lines.append(f"  a[{q}] = (uint32_t){at(*lo)} | ((uint32_t){at(*hi)} << 16);")
    for q in range(2):
        lo, hi = _expr(b_element, "lane", 2 * q), _expr(b_element, "lane", 2 * q + 1)
        lines.append(f"  b[{q}] = (uint32_t){bt(*lo)} | ((uint32_t){bt(*hi)} << 16);")
    lines.append(f'  asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.{ptx_t}.{ptx_t}.f32 '
                 '{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"')
    lines.append('      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])')
    lines.append('      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));')
    lines.append("#endif")
    lines.append("}")
    return "\n".join(lines)


def _plain(region: Region) -> bool:
    """A whole row-major shared tile, or a fragment (staged into one by `cuda_stage`)."""
    b = region.buffer
    if b.scope == "fragment":
        return b.ndim == 2 and region == Region.full(b)
    return (b.ndim == 2 and region == Region.full(b) and b.scope == "shared"
            and (b.layout is None or b.layout == Layout.identity(b.static_shape)))


class CudaMma:
    name = "cuda.mma"
    hard_layouts = True
    per_block = True

    def accepts(self, g: Gemm, t: Target) -> bool:
        a, b, c = g.a.buffer, g.b.buffer, g.c.buffer
        if t.kind != "cuda" or a.dtype.name not in ("float16", "bfloat16") or b.dtype != a.dtype:
            return False
        if c.dtype.name != "float32" or c.scope != "fragment" or g.c != Region.full(c):
            return False
        if not (_plain(g.a) and _plain(g.b)):
            return False
        k = a.static_shape[0] if g.trans_a else a.static_shape[1]
        m, n = c.static_shape
        return k % 16 == 0 and m % 16 == 0 and n % 8 == 0  # one warp can always do it then

    def _fragment(self, g: Gemm, threads: int):
        """C's fragment over the most warps (of the block's) that tile C by m16n8: a tile too
        small for all of them leaves the rest idle during the GEMM instead of failing."""
        warps = threads // 32
        for w in sorted({w for w in range(1, warps + 1) if warps % w == 0}, reverse=True):
            try:
                return make_mma_block_fragment(*g.c.buffer.static_shape, w, g.policy)
            except LayoutError:
                continue
        return None

    def layouts(self, g: Gemm, t: Target, threads: int) -> dict:
        f = self._fragment(g, threads)
        if f is None:
            raise LayoutError(f"T.gemm: a {g.c.buffer.static_shape} fp32 tile cannot be split into "
                              f"m16n8 tiles over {threads // 32} warps", hint="use block sizes that are "
                              "multiples of 16 x 8 per warp, or threads a multiple of 32")
        return {g.c.buffer.name: f}

    def lower(self, g: Gemm, target: Target, namer) -> ir.Stmt:
        staged, g = stage_fragment_operands(g, namer)
        c = g.c.buffer
        m, n = c.static_shape
        f = c.layout
        warps = f.num_threads // 32
        warps_m, warps_n = warp_partition(m, n, warps, g.policy)
        wm_size, wn_size = m // warps_m, n // warps_n
        a_shape, b_shape = g.a.buffer.static_shape, g.b.buffer.static_shape
        k = a_shape[0] if g.trans_a else a_shape[1]
        dt = g.a.buffer.dtype.name
        fn = f"tdsl_mma16816_{'t' if g.trans_a else 'n'}{'t' if g.trans_b else 'n'}_{dt}"
        definition = render_mma(fn, dt, g.trans_a, g.trans_b)
        regs = Buffer(c.name, (ir.const(f.locals_per_thread),), c.dtype, "local")  # C's registers
        warp, lane = THREAD_X // 32, THREAD_X % 32
        row0 = (warp // warps_n) * wm_size
        col0 = (warp % warps_n) * wn_size
        k0, mi, ni = namer("k"), namer("mi"), namer("ni")
        r, col, kk = row0 + mi * 16, col0 + ni * 8, k0 * 16
        lda = a_shape[1]
        ldb = b_shape[1]
        a_off = kk * lda + r if g.trans_a else r * lda + kk
        b_off = col * ldb + kk if g.trans_b else kk * ldb + col
        call = ExternCall(fn, (BufferPtr(regs, (mi * (wn_size // 8) + ni) * 4), BufferPtr(g.a.buffer, a_off),
                               ir.const(lda), BufferPtr(g.b.buffer, b_off), ir.const(ldb), lane),
                          definition, span=g.span)
        body = ir.For(mi, ir.const(0), ir.const(wm_size // 16), "unroll",
                      ir.For(ni, ir.const(0), ir.const(wn_size // 8), "unroll", call, span=g.span), span=g.span)
        loop = ir.For(k0, ir.const(0), ir.const(k // 16), "serial", body, span=g.span)
        # C may be spread over fewer warps than the block has (a small tile): the rest skip it.
        loop = ir.If(ir.binop("<", THREAD_X, f.num_threads), loop, None, span=g.span)
        if g.clear_accum:
            loop = ir.seq(ir.Fill(g.c, ir.const(0, c.dtype), span=g.span), loop)
        return ir.seq(*staged, loop)
