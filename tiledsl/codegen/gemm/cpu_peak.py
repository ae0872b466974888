"""The CPU's arithmetic peak, measured with the instructions the GEMM micro-kernels are built from.

A probe function `name(n, out)` runs `n` iterations of `CHAINS` independent accumulator chains of
one vector instruction, seeded from `out[0]`, (an FMA for float32 / float64, `vdpbf16ps` for bfloat16, `vpdpbusd` for
int8), with no memory operand inside the loop, and stores the accumulators' sum to `out[1]` so
nothing is dead. Twelve chains cover the FMA latency times the pipes of the x86 cores measured
(Zen 4: 4 cycles x 1 zmm per cycle; Intel server cores: 4 x 2) and still leave registers for the
operands under AVX2's 16. It is rendered for both CPU backends (C++ intrinsics, LLVM vector IR)
so a benchmark can time it through the same compiler and thread pool as the GEMM it compares
(`benchmarks/peak.py` builds the kernel around it).
"""
from __future__ import annotations

from typing import List

from .cpu_ukernel import ISAS

__all__ = ["CHAINS", "PEAK_KINDS", "peak_ops_per_iter", "render_peak", "render_llvm_peak"]

CHAINS = 12
# kind -> (accumulator C type, element LLVM type, ops one lane of one instruction does)
PEAK_KINDS = {"float32": ("float", "float", 2), "float64": ("double", "double", 2),
              "bfloat16": ("float", "float", 4), "int8": ("int32_t", "i32", 8)}


def _lanes(isa: str, kind: str) -> int:
    width = ISAS[isa].vec_bytes
    return width // (8 if kind == "float64" else 4) if width else 1


def peak_ops_per_iter(isa: str, kind: str) -> int:
    """Arithmetic operations (a multiply and an add count two) of one probe iteration."""
    return CHAINS * _lanes(isa, kind) * PEAK_KINDS[kind][2]


def _check(isa: str, kind: str) -> None:
    if kind in ("bfloat16", "int8") and isa != "avx512":
        raise ValueError(f"the {kind} dot-product peak needs AVX-512 (vdpbf16ps / vpdpbusd)")


def render_peak(name: str, isa: str, kind: str) -> str:
    """C++ for `name(int64_t n, <acc type>* out)`; `out[0]` also seeds the operands at run time, so
    the compiler cannot fold the chains."""
    _check(isa, kind)
    ct = PEAK_KINDS[kind][0]
    head = f"static void {name}(int64_t n, {ct}* out) {{"
    if isa == "scalar":
        body = [f"  {ct} b = out[0], " + ", ".join(f"a{i} = out[0] + {i}" for i in range(CHAINS)) + ";",
                "  for (int64_t k = 0; k < n; ++k) {",
                "    " + " ".join(f"a{i} = a{i} * b + b;" for i in range(CHAINS)), "  }",
                "  out[1] = " + " + ".join(f"a{i}" for i in range(CHAINS)) + ";", "}"]
        return "\n".join([head] + body)
    p = "_mm512" if isa == "avx512" else "_mm256"
    if kind in ("float32", "float64"):
        s = "pd" if kind == "float64" else "ps"
        vt = ("__m512" if isa == "avx512" else "__m256") + ("d" if kind == "float64" else "")
        seed, step = f"{p}_set1_{s}(out[0])", f"{p}_fmadd_{s}(a{{i}}, b, b)"
        set1 = f"{p}_set1_{s}"
        add, red = f"{p}_add_{s}", f"{p}_storeu_{s}(t, s)"
        tmp = f"{ct} t[{_lanes(isa, kind)}];"
    else:
        vt = "__m512i" if kind == "int8" else "__m512"
        if kind == "int8":
            seed, set1 = "_mm512_set1_epi32((int32_t)out[0])", "_mm512_set1_epi32"
            step, add = "_mm512_dpbusd_epi32(a{i}, b, b)", "_mm512_add_epi32"
            red, tmp = "_mm512_storeu_si512(t, s)", "int32_t t[16];"
        else:
            seed, set1 = "_mm512_set1_ps(out[0])", "_mm512_set1_ps"
            step, add = "_mm512_dpbf16_ps(a{i}, (__m512bh)_mm512_castps_si512(b), " \
                        "(__m512bh)_mm512_castps_si512(b))", "_mm512_add_ps"
            red, tmp = "_mm512_storeu_ps(t, s)", "float t[16];"
    body = [f"  const {vt} b = {seed};",
            "  " + " ".join(f"{vt} a{i} = {add}(b, {set1}({i}));" for i in range(CHAINS)),
            "  for (int64_t k = 0; k < n; ++k) {",
            "    " + " ".join(f"a{i} = {step.format(i=i)};" for i in range(CHAINS)), "  }",
            f"  {vt} s = a0;", "  " + " ".join(f"s = {add}(s, a{i});" for i in range(1, CHAINS)),
            f"  {tmp} {red};", f"  {ct} r = 0; for (int j = 0; j < (int)(sizeof t / sizeof t[0]); ++j) r += t[j];",
            "  out[1] = r;", "}"]
    return "\n".join([head] + body)


def render_llvm_peak(name: str, isa: str, kind: str) -> str:
    """LLVM IR for the same function: the chains are SSA values carried by phis."""
    _check(isa, kind)
    el = PEAK_KINDS[kind][1]
    lanes = _lanes(isa, kind)
    vt = f"<{lanes} x {el}>" if lanes > 1 else el
    attrs = "nounwind" + (' "min-legal-vector-width"="512"' if isa == "avx512" else "")
    out: List[str] = []
    if kind in ("float32", "float64") and lanes > 1:
        fn = f"@llvm.fma.v{lanes}f{64 if el == 'double' else 32}"
        out.append(f"declare {vt} {fn}({vt}, {vt}, {vt})")
        step = f"call {vt} {fn}({vt} %a{{i}}, {vt} %b, {vt} %b)"
    elif kind == "bfloat16":
        fn = "@llvm.x86.avx512bf16.dpbf16ps.512"
        out.append(f"declare {vt} {fn}({vt}, <16 x i32>, <16 x i32>)")
        step = f"call {vt} {fn}({vt} %a{{i}}, <16 x i32> %bi, <16 x i32> %bi)"
    elif kind == "int8":
        fn = "@llvm.x86.avx512.vpdpbusd.512"
        out.append(f"declare {vt} {fn}({vt}, {vt}, {vt})")
        step = f"call {vt} {fn}({vt} %a{{i}}, {vt} %b, {vt} %b)"
    add = "add" if el == "i32" else "fadd"
    out += [f"define internal void @{name}(i64 %n, ptr noalias %out) {attrs} {{", "entry:",
            f"  %s0 = load {el}, ptr %out, align 4"]
    if lanes > 1:
        out += [f"  %bx = insertelement {vt} poison, {el} %s0, i64 0",
                f"  %b = shufflevector {vt} %bx, {vt} poison, <{lanes} x i32> zeroinitializer"]
    else:
        out.append(f"  %b = fadd {el} %s0, 0.0")
    if kind == "bfloat16":
        out.append(f"  %bi = bitcast {vt} %b to <16 x i32>")
    # Distinct seeds: identical chains would be one chain to a CSE pass.
    for i in range(CHAINS):
        lit = str(i) if el == "i32" else f"{i}.0"
        splat = f"splat ({el} {lit})" if lanes > 1 else lit
        out.append(f"  %s{i}.0 = {add} {vt} %b, {splat}")
    out += ["  br label %head", "head:", "  %k = phi i64 [0, %entry], [%kn, %body]"]
    out += [f"  %a{i} = phi {vt} [%s{i}.0, %entry], [%n{i}, %body]" for i in range(CHAINS)]
    out += ["  %more = icmp slt i64 %k, %n", "  br i1 %more, label %body, label %end", "body:"]
    for i in range(CHAINS):
        if lanes > 1:
            out.append(f"  %n{i} = " + step.format(i=i))
        else:  # the scalar ISA has no FMA instruction: a multiply and an add, as its C++ twin
            out += [f"  %m{i} = fmul {el} %a{i}, %b", f"  %n{i} = fadd {el} %m{i}, %b"]
    out += ["  %kn = add nsw i64 %k, 1", "  br label %head", "end:"]
    prev = "%a0"
    for i in range(1, CHAINS):
        out.append(f"  %r{i} = {add} {vt} {prev}, %a{i}")
        prev = f"%r{i}"
    if lanes > 1:
        out += [f"  %e{j} = extractelement {vt} {prev}, i64 {j}" for j in range(lanes)]
        tot = "%e0"
        for j in range(1, lanes):
            out.append(f"  %t{j} = {add} {el} {tot}, %e{j}")
            tot = f"%t{j}"
        prev = tot
    out += [f"  %res = getelementptr inbounds {el}, ptr %out, i64 1",
            f"  store {el} {prev}, ptr %res, align 4", "  ret void", "}"]
    return "\n".join(out)
