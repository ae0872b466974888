"""Render loop IR as C++ for the CPU: one translation unit per kernel.

A block of the grid runs on one core; the grid loops are an OpenMP work-sharing loop, and each
worker's shared / fragment tiles are declared once in the parallel region (64-byte aligned)
and reused by every block it runs. Half-precision values are stored as 16-bit integers and
computed in float, so no compiler extension type is needed.
"""
from __future__ import annotations

import functools
from typing import Dict, List

from .. import ir
from ..ir import (Assign, Buffer, BufferPtr, Const, Decl, Evaluate, For, If, Kernel, PrimFunc, Seq,
                  Stmt, Store, stored_buffers)
from ..ir.analysis import bound, loop_range
from .c_expr import CExpr
from .host import render_host
from .names import CNames, c_from_storage, c_storage_type, c_to_storage, c_value_type

__all__ = ["render_cpu"]

# Buffers at most this large live on the worker's stack; larger ones on its heap.
_STACK_LIMIT = 64 * 1024

PRELUDE = r"""
#include <tvm/ffi/c_api.h>
#include <stdint.h>
#include <stddef.h>
#include <math.h>
#include <string.h>
#include <stdio.h>
#include <stdlib.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

static inline float tdsl_bf2f(uint16_t h) {
  uint32_t u = (uint32_t)h << 16; float f; memcpy(&f, &u, 4); return f;
}
static inline uint16_t tdsl_f2bf(float f) {  /* round to nearest even; NaN stays NaN */
  uint32_t u; memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u);
  u += 0x7fffu + ((u >> 16) & 1u); return (uint16_t)(u >> 16);
}
static inline float tdsl_h2f(uint16_t h) { _Float16 x; memcpy(&x, &h, 2); return (float)x; }
static inline uint16_t tdsl_f2h(float f) { _Float16 x = (_Float16)f; uint16_t h; memcpy(&h, &x, 2); return h; }
template <class T> static inline T tdsl_max(T a, T b) { return a > b ? a : b; }
template <class T> static inline T tdsl_min(T a, T b) { return a < b ? a : b; }
/* numpy's integer // and %: floored, x // 0 == x % 0 == 0, MIN // -1 wraps to MIN (idiv traps on
   both); (T)-1 < 0 singles out signed T, and the negation goes through unsigned to wrap. */
template <class T> static inline T tdsl_floordiv(T a, T b) { if (b == 0) return 0; if ((T)-1 < 0 && b == (T)-1) return (T)(0ull - (unsigned long long)a); T q = a / b; return (q * b != a && ((a < 0) != (b < 0))) ? q - 1 : q; }
template <class T> static inline T tdsl_floormod(T a, T b) { if (b == 0 || ((T)-1 < 0 && b == (T)-1)) return 0; T r = a % b; return (r != 0 && ((r < 0) != (b < 0))) ? r + b : r; }
/* An atomic read-modify-write of one element of any 1-, 2-, 4- or 8-byte type: a
   compare-and-swap loop on its bits; `f` maps the old stored value to the new one. */
template <class S, class F> static inline void tdsl_atomic_update(S* p, F f) {
  S old, next;
  __atomic_load(p, &old, __ATOMIC_RELAXED);
  do { next = f(old); } while (!__atomic_compare_exchange(p, &old, &next, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED));
}
static inline void* tdsl_alloc(size_t n) {
  void* p = NULL; if (posix_memalign(&p, 64, n ? n : 64) != 0) abort(); return p;
}
"""

# float8 <-> float, bit for bit as ml_dtypes converts: e4m3 is ml_dtypes' float8_e4m3fn (no
# infinity: 0x7f / 0xff are NaN, overflow rounds to NaN); e5m2 has infinity (overflow gives it).
# Float to float8 rounds to nearest even on the float's bits; below the smallest normal the
# value is scaled so that rintf rounds it to a whole number of the smallest subnormal.
FP8_FUNCTIONS = r"""
FP8_FN float tdsl_fp8_to_f(uint8_t b, const int M, const int B, const int has_inf, const float sub) {
  uint32_t s = (uint32_t)(b & 0x80u) << 24, e = (uint32_t)(b & 0x7fu) >> M, m = b & ((1u << M) - 1u);
  uint32_t u; float f;
  if (has_inf ? e == (0x7fu >> M) : (b & 0x7fu) == 0x7fu) {
    u = s | (has_inf && m == 0 ? 0x7f800000u : 0x7fc00000u); memcpy(&f, &u, 4); return f;
  }
  if (e == 0) { f = (float)m * sub; return s ? -f : f; }
  u = s | ((e + 127u - (uint32_t)B) << 23) | (m << (23 - M)); memcpy(&f, &u, 4); return f;
}
FP8_FN uint8_t tdsl_f_to_fp8(float f, const int M, const int B, const uint32_t maxbits, const uint32_t over,
                             const float scale) {
  uint32_t u; memcpy(&u, &f, 4);
  uint32_t s = (u >> 24) & 0x80u, a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return (uint8_t)(s | 0x7fu);
  if (a >= ((uint32_t)(128 - B) << 23)) {
    const uint32_t sh = 23 - M;
    uint32_t bits = ((a + ((1u << (sh - 1)) - 1u) + ((a >> sh) & 1u)) >> sh) - ((uint32_t)(127 - B) << M);
    return (uint8_t)(s | (bits > maxbits ? over : bits));
  }
  return (uint8_t)(s | (uint32_t)rintf(fabsf(f) * scale));
}
FP8_FN float tdsl_e4m3_to_f(uint8_t b) { return tdsl_fp8_to_f(b, 3, 7, 0, 0.001953125f); }
FP8_FN float tdsl_e5m2_to_f(uint8_t b) { return tdsl_fp8_to_f(b, 2, 15, 1, 1.52587890625e-05f); }
FP8_FN uint8_t tdsl_f_to_e4m3(float f) { return tdsl_f_to_fp8(f, 3, 7, 0x7eu, 0x7fu, 512.0f); }
FP8_FN uint8_t tdsl_f_to_e5m2(float f) { return tdsl_f_to_fp8(f, 2, 15, 0x7bu, 0x7cu, 65536.0f); }
"""


class CpuRenderer(CExpr):
    PRAGMAS = {"vectorized": "#pragma omp simd", "unroll": "#pragma GCC unroll 16"}
    FETCH_ADD = True  # integer atomic adds as __atomic_fetch_add

    def __init__(self):
        super().__init__(CNames())
        self.lines: List[str] = []
        self.externs: Dict[str, str] = {}

    # ---- statements ----

    def emit(self, depth: int, text: str) -> None:
        self.lines.append("  " * depth + text)

    def stmt(self, s: Stmt, d: int) -> None:
        getattr(self, "s_" + type(s).__name__)(s, d)

    def s_Seq(self, s: Seq, d):
        for x in s.stmts:
            self.stmt(x, d)

    def s_For(self, s: For, d):
        v = self.names.var(s.var)
        self.ranges[s.var] = loop_range(s.start, s.extent, self.ranges)
        if s.kind in self.PRAGMAS:
            self.emit(d, self.PRAGMAS[s.kind])
        start = self.expr(s.start)
        end = self.expr(s.extent) if isinstance(s.start, Const) and s.start.value == 0 \
            else f"{start} + {self.expr(s.extent)}"
        self.emit(d, f"for (int64_t {v} = {start}; {v} < {end}; ++{v}) {{")
        self.stmt(s.body, d + 1)
        self.emit(d, "}")
        del self.ranges[s.var]

    def s_If(self, s: If, d):
        self.emit(d, f"if ({self.expr(s.cond)}) {{")
        self.stmt(s.then, d + 1)
        if s.else_ is not None:
            self.emit(d, "} else {")
            self.stmt(s.else_, d + 1)
        self.emit(d, "}")

    def s_Store(self, s: Store, d):
        if s.atomic:
            self.atomic_store(s, d)
            return
        v = s.value
        if isinstance(v, ir.Load) and s.buffer.dtype.is_narrow_float and v.buffer.dtype == s.buffer.dtype \
                and v.dtype == s.buffer.dtype:
            # A copy moves the stored bits (as numpy does): through float it would cost a conversion
            # each way, and quiet signalling NaNs.
            value = f"{self.names.buffer(v.buffer)}[{self.expr(v.indices[0])}]"
        else:
            value = c_to_storage(s.buffer.dtype, self.expr(v))
        self.emit(d, f"{self.names.buffer(s.buffer)}[{self.expr(s.indices[0])}] = {value};")

    def atomic_store(self, s: Store, d) -> None:
        """`T.atomic_*` on one element: integer adds are one fetch-add, everything else a
        compare-and-swap loop that combines the old value as the non-atomic code would
        (`old > v ? old : v` for max, 16-bit floats computed in float)."""
        dt = s.buffer.dtype
        ref = f"{self.names.buffer(s.buffer)}[{self.expr(s.indices[0])}]"
        value = self.expr(s.value)
        if s.atomic == "add" and dt.is_int and self.FETCH_ADD:
            self.emit(d, f"__atomic_fetch_add(&{ref}, ({c_value_type(dt)})({value}), __ATOMIC_RELAXED);")
            return
        old = c_from_storage(dt, "o__")
        new = c_to_storage(dt, {"add": f"{old} + v__", "max": f"tdsl_max({old}, v__)",
                                "min": f"tdsl_min({old}, v__)"}[s.atomic])
        st = c_storage_type(dt)
        self.emit(d, f"{{ {c_value_type(dt)} v__ = {value}; "
                     f"tdsl_atomic_update(&{ref}, [&]({st} o__) -> {st} {{ return ({st})({new}); }}); }}")

    def s_Decl(self, s: Decl, d):
        self.emit(d, f"{c_value_type(s.var.dtype)} {self.names.var(s.var)} = {self.expr(s.value)};")

    def s_Assign(self, s: Assign, d):
        self.emit(d, f"{self.names.var(s.var)} = {self.expr(s.value)};")

    def s_ExternCall(self, s, d):
        self.externs.setdefault(s.name, s.definition)
        args = ", ".join(f"&{self.names.buffer(a.buffer)}[{self.expr(a.offset)}]" if isinstance(a, BufferPtr)
                         else self.expr(a) for a in s.args)
        self.emit(d, f"{s.name}({args});")

    def s_Evaluate(self, s: Evaluate, d):
        self.emit(d, f"(void)({self.expr(s.value)});")

    def s_Kernel(self, k: Kernel, d):
        # One block runs on the calling thread: opening an OpenMP team for it costs more than a
        # small kernel (waking the workers: microseconds, tens of them on a busy machine).
        total = functools.reduce(lambda x, y: x * y, k.grid, Const(1))
        single = isinstance(total, Const) and total.value <= 1
        if not single:
            self.emit(d, "#pragma omp parallel" + ("" if isinstance(total, Const) else f" if({self.expr(total)} > 1)"))
        self.emit(d, "{")
        heap = []
        for b in k.allocs:
            n = b.shape[0].value
            name, ctype = self.names.buffer(b), c_storage_type(b.dtype)
            if n * b.dtype.itemsize <= _STACK_LIMIT:
                self.emit(d + 1, f"alignas(64) {ctype} {name}[{n}];")
            else:
                self.emit(d + 1, f"{ctype}* __restrict__ {name} = ({ctype}*)tdsl_alloc({n} * sizeof({ctype}));")
                heap.append(name)
        loops = list(zip(k.block_vars, k.grid))[::-1]  # bx varies fastest, as on a GPU
        collapse = f" collapse({len(loops)})" if len(loops) > 1 else ""
        if not single:
            self.emit(d + 1, f"#pragma omp for{collapse} schedule(static)")
        for n, (v, g) in enumerate(loops):
            self.ranges[v] = loop_range(Const(0), g, self.ranges)
            name = self.names.var(v)
            self.emit(d + 1 + n, f"for (int64_t {name} = 0; {name} < {self.expr(g)}; ++{name}) {{")
        self.stmt(k.body, d + 1 + len(loops))
        for n in reversed(range(len(loops))):
            self.emit(d + 1 + n, "}")
        for name in heap:
            self.emit(d + 1, f"free({name});")
        self.emit(d, "}")
        for v in k.block_vars:
            del self.ranges[v]


def render_cpu(lowered: PrimFunc, original: PrimFunc, symbol: str) -> str:
    """C++ source for `lowered` (flattened loop IR) exporting `__tvm_ffi_<symbol>`.

    `original` is the function before lowering: its parameters carry the N-d shapes the host
    code checks, and its Stores tell which tensors the kernel writes.
    """
    r = CpuRenderer()
    body_name = f"{symbol}_body"
    params = []
    written = stored_buffers(lowered)
    shape_vars = _shape_vars(original)
    for p in original.params:
        if isinstance(p, Buffer):
            const = "" if p.name in written else "const "
            params.append(f"{const}{c_storage_type(p.dtype)}* __restrict__ {r.names.buffer(p)}")
        else:
            params.append(f"{c_value_type(p.dtype)} {r.names.var(p)}")
    for v in shape_vars:
        params.append(f"int64_t {r.names.var(v)}")
    r.lines.append(f"static void {body_name}({', '.join(params)}) {{")
    r.stmt(lowered.body, 1)
    r.lines.append("}")
    body = "\n\n".join(list(r.externs.values()) + ["\n".join(r.lines)])
    host = render_host(original, symbol, body_name, r.names, written, shape_vars, device="cpu")
    header = f"// tiledsl: kernel '{symbol}' for the CPU\n"
    return header + PRELUDE + FP8_FUNCTIONS.replace("FP8_FN", "static inline") + "\n" + body + "\n\n" + host


def _shape_vars(func: PrimFunc) -> list:
    seen: list = []
    for b in func.buffers:
        for s in b.shape:
            for v in sorted(ir.free_vars(s), key=lambda x: x.name):
                if v not in seen and v not in func.params:
                    seen.append(v)
    return seen
