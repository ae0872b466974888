"""CPU GEMM rows for the dot-product instructions: `vdpbf16ps` (AVX512_BF16, bfloat16 -> float32)
and `vpdpbusd` (AVX512_VNNI, int8 -> int32).

Both multiply `G` consecutive k values of A and B inside each 32-bit lane and add them into one
accumulator lane (G = 2 bf16 pairs, G = 4 byte quads). So a micro-kernel broadcasts one 32-bit
group of A's row r (`A[r, k..k+G)`, contiguous in a row-major A tile) and needs B's group for
column j in lane j: the B tile's layout is `(k // G, j, k % G)`, the "VNNI" layout
(`tiledsl.layout.vnni_b_layout`), imposed by `layouts()` like any other GEMM row's, so the
`T.copy` into the tile is the packing step (it interleaves G rows of B). A transposed A tile
is stored row-major the same way.

The walk over the C tile is `cpu_simd`'s (ni outer: one B strip in L1 while the A rows stream);
each family file (`dot_bf16.py`, `dot_vnni.py`) renders the MR x NR kernel for both backends,
and the edge micro-tiles (a tile MR / NR do not divide) take the scalar loops below.
The rows are chosen only where the compiler may use the instruction: the host has the feature
and the target builds for the host (a forced ISA builds for the plain x86-64 level).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, List

from ... import ir
from ...ir import BufferPtr, ExternCall, Gemm
from ...layout import Layout, vnni_b_layout
from ...target import Target, host_cpu
from ..names import c_from_storage

__all__ = ["DotFamily", "CpuDot"]


@dataclass(frozen=True)
class DotFamily:
    name: str           # the row is "cpu.<name>"
    feature: str        # the host feature (llvmlite's name) the instruction needs
    inp: str            # A and B dtype
    acc: str            # C dtype
    group: int          # k values per 32-bit lane
    mr: int
    nr: int
    render_cxx: Callable[[str], str]    # name -> C++ definition of name_full(K, a, sr, b, ldb, c, ldc)
    render_llvm: Callable[[str], str]   # name -> LLVM IR of @name_full, same arguments


def _full_2d(region: ir.Region) -> bool:
    b = region.buffer
    return b.ndim == 2 and region == ir.Region.full(b)


class CpuDot:
    def __init__(self, family: DotFamily):
        self.family = family
        self.name = f"cpu.{family.name}"

    def usable(self, t: Target) -> bool:
        """The instruction is there and the build targets this host (`-march=native`)."""
        return t.kind == "cpu" and t.isa == "avx512" and t.isa == host_cpu().isa and t.has(self.family.feature)

    def accepts(self, g: Gemm, t: Target) -> bool:
        f = self.family
        a, b, c = g.a.buffer, g.b.buffer, g.c.buffer
        if not self.usable(t) or a.name == b.name:
            return False
        if a.dtype.name != f.inp or b.dtype.name != f.inp or c.dtype.name != f.acc:
            return False
        if not (_full_2d(g.a) and _full_2d(g.b) and _full_2d(g.c)):
            return False
        if self._k(g) % f.group:
            return False  # a tile's k extent must hold whole groups (ragged K is padded by the copy)
        want = self.layouts(g, t)
        if a.layout not in (None, want[a.name]) or b.layout not in (None, want[b.name]):
            return False
        return c.layout is None or c.layout == Layout.identity(c.static_shape)

    @staticmethod
    def _k(g: Gemm) -> int:
        shape = g.a.buffer.static_shape
        return shape[0] if g.trans_a else shape[1]

    def layouts(self, g: Gemm, t: Target) -> dict:
        a, b = g.a.buffer, g.b.buffer
        la = Layout(a.static_shape, lambda kk, i: [i, kk]) if g.trans_a else Layout.identity(a.static_shape)
        return {a.name: la, b.name: vnni_b_layout(b.static_shape, self.family.group, g.trans_b)}

    def lower(self, g: Gemm, t: Target, namer) -> ir.Stmt:
        f = self.family
        m, n = g.c.buffer.static_shape
        k = self._k(g)
        llvm = getattr(t, "backend", "") == "llvm"
        name = f"tdsl_ukd_{f.name}_{f.mr}x{f.nr}"
        definition = render_llvm_dot(name, f) if llvm else render_cxx_dot(name, f)
        mi, ni = namer("mi"), namer("ni")
        rows = ir.min_(ir.const(f.mr), m - mi * f.mr) if m % f.mr else ir.const(f.mr)
        cols = ir.min_(ir.const(f.nr), n - ni * f.nr) if n % f.nr else ir.const(f.nr)
        # A row r at r * k (row-major, whatever the tile's logical orientation); B's k-group p of
        # column j at p * (n * G) + j * G.
        call = ExternCall(name, (ir.const(k), BufferPtr(g.a.buffer, mi * (f.mr * k)), ir.const(k),
                                 BufferPtr(g.b.buffer, ni * (f.nr * f.group)), ir.const(n * f.group),
                                 BufferPtr(g.c.buffer, mi * (f.mr * n) + ni * f.nr), ir.const(n), rows, cols),
                          definition, span=g.span)
        nest = ir.For(ni, ir.const(0), ir.const(-(-n // f.nr)), "serial",
                      ir.For(mi, ir.const(0), ir.const(-(-m // f.mr)), "serial", call, span=g.span),
                      span=g.span)
        if g.clear_accum:
            return ir.seq(ir.Fill(g.c, ir.const(0, g.c.buffer.dtype), span=g.span), nest)
        return nest


_CT = {"bfloat16": "uint16_t", "int8": "int8_t", "float32": "float", "int32": "int32_t"}


def render_cxx_dot(name: str, f: DotFamily) -> str:
    """C++ for `name(K, a, sr, b, ldb, c, ldc, m, n)`: the family's MR x NR kernel, plain loops for an
    m x n edge micro-tile."""
    it, ct = _CT[f.inp], _CT[f.acc]
    g = f.group
    a_rk = c_from_storage(ir.dtype(f.inp), "a[r * sr + k]")
    b_kj = c_from_storage(ir.dtype(f.inp), f"b[(k / {g}) * ldb + j * {g} + k % {g}]")
    cast = f"({ct})" if f.acc == "int32" else ""
    return f.render_cxx(name + "_full") + f"""
static inline __attribute__((always_inline)) void {name}(int64_t K, const {it}* __restrict__ a, int64_t sr,
    const {it}* __restrict__ b, int64_t ldb, {ct}* __restrict__ c, int64_t ldc, int64_t m, int64_t n) {{
  if (m == {f.mr} && n == {f.nr}) {{ {name}_full(K, a, sr, b, ldb, c, ldc); return; }}
  for (int64_t r = 0; r < m; ++r)
    for (int64_t k = 0; k < K; ++k) {{
      const {ct} av = {cast}{a_rk};
      for (int64_t j = 0; j < n; ++j) c[r * ldc + j] += av * {cast}{b_kj};
    }}
}}"""


def render_llvm_dot(name: str, f: DotFamily) -> str:
    """LLVM IR for the same function (edge loops as the C++ ones: no contraction, so both
    backends give the same bits)."""
    g = f.group
    el = "i16" if f.inp == "bfloat16" else "i8"
    ct = "float" if f.acc == "float32" else "i32"
    mul, add = ("fmul", "fadd") if ct == "float" else ("mul", "add")

    def scalar(dst: str, ptr: str) -> List[str]:
        conv = f"call float @tdsl_bf2f(i16 {dst}.h)" if el == "i16" else f"sext i8 {dst}.h to i32"
        return [f"  {dst}.h = load {el}, ptr {ptr}, align 1", f"  {dst} = {conv}"]

    out = [f.render_llvm(name + "_full"),
           f"define internal void @{name}(i64 %K, ptr noalias %a, i64 %sr, ptr noalias %b, i64 %ldb, "
           f"ptr noalias %c, i64 %ldc, i64 %m, i64 %n) alwaysinline nounwind {{",
           "entry:", f"  %fm = icmp eq i64 %m, {f.mr}", f"  %fn = icmp eq i64 %n, {f.nr}",
           "  %isfull = and i1 %fm, %fn", "  br i1 %isfull, label %full, label %edge",
           "full:", f"  call void @{name}_full(i64 %K, ptr %a, i64 %sr, ptr %b, i64 %ldb, ptr %c, i64 %ldc)",
           "  ret void",
           "edge:", "  br label %rhead",
           "rhead:", "  %r = phi i64 [0, %edge], [%rnext, %rlatch]",
           "  %rmore = icmp slt i64 %r, %m", "  br i1 %rmore, label %rbody, label %done",
           "rbody:", "  %erow = mul i64 %r, %ldc", "  %earow = mul i64 %r, %sr", "  br label %khead",
           "khead:", "  %k = phi i64 [0, %rbody], [%knext, %klatch]",
           "  %kmore = icmp slt i64 %k, %K", "  br i1 %kmore, label %kbody, label %rlatch",
           "kbody:", "  %eao = add i64 %earow, %k", f"  %eap = getelementptr inbounds {el}, ptr %a, i64 %eao"]
    out += scalar("%eav", "%eap")
    out += [f"  %kg = udiv i64 %k, {g}", f"  %kr = urem i64 %k, {g}", "  %ebrow = mul i64 %kg, %ldb",
            "  %ebrk = add i64 %ebrow, %kr", "  br label %jhead",
            "jhead:", "  %j = phi i64 [0, %kbody], [%jnext, %jbody]",
            "  %jmore = icmp slt i64 %j, %n", "  br i1 %jmore, label %jbody, label %klatch",
            "jbody:", f"  %ejg = mul i64 %j, {g}", "  %ebo = add i64 %ebrk, %ejg",
            f"  %ebp = getelementptr inbounds {el}, ptr %b, i64 %ebo"]
    out += scalar("%ebv", "%ebp")
    out += ["  %eco = add i64 %erow, %j", f"  %ecp = getelementptr inbounds {ct}, ptr %c, i64 %eco",
            f"  %ec = load {ct}, ptr %ecp", f"  %eprod = {mul} {ct} %eav, %ebv", f"  %esum = {add} {ct} %ec, %eprod",
            f"  store {ct} %esum, ptr %ecp", "  %jnext = add nsw i64 %j, 1", "  br label %jhead",
            "klatch:", "  %knext = add nsw i64 %k, 1", "  br label %khead",
            "rlatch:", "  %rnext = add nsw i64 %r, 1", "  br label %rhead",
            "done:", "  ret void", "}"]
    return "\n".join(out)
