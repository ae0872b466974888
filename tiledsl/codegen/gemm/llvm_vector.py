"""The SIMD CPU GEMM for the LLVM backend: the micro-kernels of `cpu_ukernel.py`, written as
LLVM vector IR instead of C++ intrinsics.

Everything but the definition is the C++ rows' (`cpu_simd.CpuSimd`): the operands accepted,
the layouts imposed on the tiles (row-major A, K-major B), the MR x NR walk over the C tile
and the micro-kernel's name and arguments `(K, a, sr, sk, b, ldb, c, ldc, m, n)`. The vectors
are `<L x float>` with L = register width / element size, and the accumulators are SSA
values, so LLVM keeps them in registers and picks AVX-512, AVX2 or NEON instructions from the
target's features. Products are `llvm.fma` (the C++ kernels' `_mm*_fmadd_*`), except in the
scalar kernel and the edge loops, which multiply and add as the C++ ones do (no contraction),
so both backends produce the same bits.
"""
from __future__ import annotations

import dataclasses
from typing import List

from ... import ir
from ...ir import ExternCall, Gemm, StmtRewriter
from ...target import Target
from .cpu_simd import CpuSimd
from .cpu_ukernel import ISAS, ukernel_shape

__all__ = ["LlvmVector", "render_llvm_ukernel"]

_ELEM = {"float32": "float", "float64": "double", "float16": "i16", "bfloat16": "i16"}


class LlvmVector(CpuSimd):
    """The `llvm.<isa>` row: `cpu.<isa>` with an LLVM IR micro-kernel."""

    def __init__(self, isa: str):
        super().__init__(isa)
        self.name = f"llvm.{isa}"

    def accepts(self, g: Gemm, t: Target) -> bool:
        return getattr(t, "backend", "") == "llvm" and super().accepts(g, t)

    def lower(self, g: Gemm, t: Target, namer) -> ir.Stmt:
        isa, inp, acc = self.isa, g.a.buffer.dtype.name, g.c.buffer.dtype.name

        class _Swap(StmtRewriter):
            def visit_ExternCall(self, s: ExternCall):
                return dataclasses.replace(s, definition=render_llvm_ukernel(s.name, isa, inp, acc))

        return _Swap().stmt(super().lower(g, t, namer))


def _lanes(isa: str, acc: str) -> int:
    width = ISAS[isa].vec_bytes
    return width // (8 if acc == "float64" else 4) if width else 1


def render_llvm_ukernel(name: str, isa: str, inp: str, acc: str) -> str:
    """LLVM IR for `name(K, a, sr, sk, b, ldb, c, ldc, m, n)`: `C[m x n] += A[m x K] B[K x n]`,
    the register-blocked MR x NR kernel when m, n are the full micro-tile, plain loops else."""
    mr, nr = ukernel_shape(isa, acc)
    lanes = _lanes(isa, acc)
    ct = "double" if acc == "float64" else "float"
    vt = f"<{lanes} x {ct}>" if lanes > 1 else ct
    fma = f"@llvm.fma.v{lanes}f{64 if ct == 'double' else 32}"
    attrs = "alwaysinline nounwind" + (' "min-legal-vector-width"="512"' if isa == "avx512" else "")
    h2f = "@tdsl_h2f_sw" if isa == "scalar" else "@tdsl_h2f_hw"
    out: List[str] = [f"declare {vt} {fma}({vt}, {vt}, {vt})"] if lanes > 1 else []
    out += [f"define internal void @{name}(i64 %K, ptr noalias %a, i64 %sr, i64 %sk, ptr noalias %b, "
            f"i64 %ldb, ptr noalias %c, i64 %ldc, i64 %m, i64 %n) {attrs} {{",
            "entry:", f"  %fm = icmp eq i64 %m, {mr}", f"  %fn = icmp eq i64 %n, {nr}",
            "  %isfull = and i1 %fm, %fn", "  br i1 %isfull, label %full, label %edge"]
    out += _full_tile(mr, nr // lanes, lanes, inp, ct, vt, fma, h2f)
    out += _edge(inp, ct, h2f)
    out.append("}")
    return "\n".join(out)


def _full_tile(mr: int, nv: int, lanes: int, inp: str, ct: str, vt: str, fma: str, h2f: str) -> List[str]:
    """The MR x NR tile as MR x nv accumulator vectors, SSA values carried around the k loop."""
    tiles = [(r, j) for r in range(mr) for j in range(nv)]
    out = ["full:"]
    for r, j in tiles:
        out += [f"  %crow{r}_{j} = mul i64 {r}, %ldc", f"  %cofs{r}_{j} = add i64 %crow{r}_{j}, {j * lanes}",
                f"  %cp{r}_{j} = getelementptr inbounds {ct}, ptr %c, i64 %cofs{r}_{j}",
                f"  %c{r}_{j} = load {vt}, ptr %cp{r}_{j}, align 4"]
    out += ["  br label %khead", "khead:", "  %k = phi i64 [0, %full], [%knext, %kbody]"]
    out += [f"  %acc{r}_{j} = phi {vt} [%c{r}_{j}, %full], [%nacc{r}_{j}, %kbody]" for r, j in tiles]
    out += ["  %kmore = icmp slt i64 %k, %K", "  br i1 %kmore, label %kbody, label %kend",
            "kbody:", "  %bofs = mul i64 %k, %ldb", "  %aofs = mul i64 %k, %sk"]
    for j in range(nv):
        out += [f"  %bo{j} = add i64 %bofs, {j * lanes}",
                f"  %bp{j} = getelementptr inbounds {_ELEM[inp]}, ptr %b, i64 %bo{j}"]
        out += _load_b(f"%bv{j}", f"%bp{j}", inp, lanes, ct, h2f)
    for r in range(mr):
        out += [f"  %arow{r} = mul i64 {r}, %sr", f"  %ao{r} = add i64 %arow{r}, %aofs",
                f"  %ap{r} = getelementptr inbounds {_ELEM[inp]}, ptr %a, i64 %ao{r}"]
        out += _load_scalar(f"%as{r}", f"%ap{r}", inp, ct, h2f)
        if lanes > 1:  # broadcast a[r][k], one FMA per accumulator vector
            out += [f"  %ai{r} = insertelement {vt} poison, {ct} %as{r}, i64 0",
                    f"  %av{r} = shufflevector {vt} %ai{r}, {vt} poison, <{lanes} x i32> zeroinitializer"]
            out += [f"  %nacc{r}_{j} = call {vt} {fma}({vt} %av{r}, {vt} %bv{j}, {vt} %acc{r}_{j})"
                    for j in range(nv)]
        else:
            for j in range(nv):
                out += [f"  %prod{r}_{j} = fmul {ct} %as{r}, %bv{j}",
                        f"  %nacc{r}_{j} = fadd {ct} %acc{r}_{j}, %prod{r}_{j}"]
    out += ["  %knext = add nsw i64 %k, 1", "  br label %khead", "kend:"]
    out += [f"  store {vt} %acc{r}_{j}, ptr %cp{r}_{j}, align 4" for r, j in tiles]
    return out + ["  ret void"]


def _load_b(dst: str, ptr: str, inp: str, lanes: int, ct: str, h2f: str) -> List[str]:
    """A vector of B values at `ptr`, converted to the accumulator type."""
    if lanes == 1:
        return _load_scalar(dst, ptr, inp, ct, h2f)
    if inp in ("float32", "float64"):
        return [f"  {dst} = load <{lanes} x {ct}>, ptr {ptr}, align 4"]
    raw = [f"  {dst}.h = load <{lanes} x i16>, ptr {ptr}, align 2"]
    if inp == "float16":
        return raw + [f"  {dst}.x = bitcast <{lanes} x i16> {dst}.h to <{lanes} x half>",
                      f"  {dst} = fpext <{lanes} x half> {dst}.x to <{lanes} x float>"]
    return raw + [f"  {dst}.w = zext <{lanes} x i16> {dst}.h to <{lanes} x i32>",
                  f"  {dst}.s = shl <{lanes} x i32> {dst}.w, splat (i32 16)",
                  f"  {dst} = bitcast <{lanes} x i32> {dst}.s to <{lanes} x float>"]


def _load_scalar(dst: str, ptr: str, inp: str, ct: str, h2f: str) -> List[str]:
    if inp in ("float32", "float64"):
        return [f"  {dst} = load {ct}, ptr {ptr}, align 4"]
    fn = "@tdsl_bf2f" if inp == "bfloat16" else h2f
    return [f"  {dst}.h = load i16, ptr {ptr}, align 2", f"  {dst} = call float {fn}(i16 {dst}.h)"]


def _edge(inp: str, ct: str, h2f: str) -> List[str]:
    """An m x n edge micro-tile (one the vectors would overrun): c[r][j] += a[r][k] * b[k][j]."""
    el = _ELEM[inp]
    out = ["edge:", "  br label %rhead",
           "rhead:", "  %r = phi i64 [0, %edge], [%rnext, %rlatch]",
           "  %rmore = icmp slt i64 %r, %m", "  br i1 %rmore, label %rbody, label %done",
           "rbody:", "  %erow = mul i64 %r, %ldc", "  %earow = mul i64 %r, %sr", "  br label %khead2",
           "khead2:", "  %ke = phi i64 [0, %rbody], [%kenext, %klatch]",
           "  %kemore = icmp slt i64 %ke, %K", "  br i1 %kemore, label %kbody2, label %rlatch",
           "kbody2:", "  %eak = mul i64 %ke, %sk", "  %eao = add i64 %earow, %eak",
           f"  %eap = getelementptr inbounds {el}, ptr %a, i64 %eao"]
    out += _load_scalar("%eav", "%eap", inp, ct, h2f)
    out += ["  %ebrow = mul i64 %ke, %ldb", "  br label %jhead",
            "jhead:", "  %j = phi i64 [0, %kbody2], [%jnext, %jbody]",
            "  %jmore = icmp slt i64 %j, %n", "  br i1 %jmore, label %jbody, label %klatch",
            "jbody:", "  %ebo = add i64 %ebrow, %j", f"  %ebp = getelementptr inbounds {el}, ptr %b, i64 %ebo"]
    out += _load_scalar("%ebv", "%ebp", inp, ct, h2f)
    out += ["  %eco = add i64 %erow, %j", f"  %ecp = getelementptr inbounds {ct}, ptr %c, i64 %eco",
            f"  %ec = load {ct}, ptr %ecp", f"  %eprod = fmul {ct} %eav, %ebv", f"  %esum = fadd {ct} %ec, %eprod",
            f"  store {ct} %esum, ptr %ecp", "  %jnext = add nsw i64 %j, 1", "  br label %jhead",
            "klatch:", "  %kenext = add nsw i64 %ke, 1", "  br label %khead2",
            "rlatch:", "  %rnext = add nsw i64 %r, 1", "  br label %rhead",
            "done:", "  ret void"]
    return out
