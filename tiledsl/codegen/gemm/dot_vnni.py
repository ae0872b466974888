"""The int8 micro-kernel on `vpdpbusd` (AVX512_VNNI): `C[8 x 32] += A[8 x K] B[K x 32]` in int32.

`vpdpbusd` multiplies unsigned bytes of its first source by signed bytes of its second, four per
32-bit lane, and adds the four products into the lane without saturation. For signed A the kernel
feeds `A + 128` (the byte's top bit flipped: `a ^ 0x80`, read as unsigned) and takes the excess
back at the end: `sum (a + 128) b = sum a b + 128 sum b`, where `sum_k B[k, j]`, B's column sums,
come from two more `vpdpbusd` per k-quad with a vector of ones as the unsigned operand. So per
k-quad: 2 B loads (VNNI layout: lane j holds `B[k..k+4, j]`), 8 broadcasts of A's quads, 8 XORs,
18 dot products for 16 useful ones; registers: 16 accumulators, 2 column sums, 2 B vectors and
three constants. Integer adds wrap, as numpy's int32 matmul does.
"""
from __future__ import annotations

from typing import List

from .cpu_dot import DotFamily

__all__ = ["VNNI"]

MR, NR, NV = 8, 32, 2


def render_cxx(name: str) -> str:
    acc = [[f"c{r}_{j}" for j in range(NV)] for r in range(MR)]
    lines: List[str] = [
        f"static inline __attribute__((always_inline)) void {name}(int64_t K, const int8_t* __restrict__ a,"
        f" int64_t sr, const int8_t* __restrict__ b, int64_t ldb, int32_t* __restrict__ c, int64_t ldc) {{",
        "  const __m512i flip = _mm512_set1_epi8((char)0x80), ones = _mm512_set1_epi8(1);",
        "  " + " ".join(f"__m512i s{j} = _mm512_setzero_si512();" for j in range(NV))]
    for r in range(MR):
        lines.append("  " + " ".join(f"__m512i {acc[r][j]} = _mm512_loadu_si512(c + {r} * ldc + {16 * j});"
                                     for j in range(NV)))
    lines += ["#pragma GCC unroll 2", "  for (int64_t k = 0; k < K; k += 4) {",
              "    const int8_t* bk = b + (k / 4) * ldb;"]
    lines += [f"    const __m512i b{j} = _mm512_loadu_si512(bk + {64 * j});" for j in range(NV)]
    lines += [f"    s{j} = _mm512_dpbusd_epi32(s{j}, ones, b{j});" for j in range(NV)]
    for r in range(MR):
        lines.append(f"    {{ int32_t w; memcpy(&w, a + {r} * sr + k, 4); "
                     f"const __m512i av = _mm512_xor_si512(_mm512_set1_epi32(w), flip); "
                     + " ".join(f"{acc[r][j]} = _mm512_dpbusd_epi32({acc[r][j]}, av, b{j});" for j in range(NV))
                     + " }")
    lines.append("  }")
    lines += [f"  s{j} = _mm512_slli_epi32(s{j}, 7);" for j in range(NV)]
    for r in range(MR):
        lines.append("  " + " ".join(f"_mm512_storeu_si512(c + {r} * ldc + {16 * j}, "
                                     f"_mm512_sub_epi32({acc[r][j]}, s{j}));" for j in range(NV)))
    return "\n".join(lines + ["}"])


def render_llvm(name: str) -> str:
    fn = "@llvm.x86.avx512.vpdpbusd.512"
    vt = "<16 x i32>"
    tiles = [(r, j) for r in range(MR) for j in range(NV)]
    out = [f"declare {vt} {fn}({vt}, {vt}, {vt})",
           f"define internal void @{name}(i64 %K, ptr noalias %a, i64 %sr, ptr noalias %b, i64 %ldb, "
           f"ptr noalias %c, i64 %ldc) alwaysinline nounwind \"min-legal-vector-width\"=\"512\" {{", "entry:"]
    for r, j in tiles:
        out += [f"  %crow{r}_{j} = mul i64 {r}, %ldc", f"  %cofs{r}_{j} = add i64 %crow{r}_{j}, {16 * j}",
                f"  %cp{r}_{j} = getelementptr inbounds i32, ptr %c, i64 %cofs{r}_{j}",
                f"  %c{r}_{j} = load {vt}, ptr %cp{r}_{j}, align 4"]
    out += ["  br label %head", "head:", "  %k = phi i64 [0, %entry], [%knext, %body]"]
    out += [f"  %acc{r}_{j} = phi {vt} [%c{r}_{j}, %entry], [%nacc{r}_{j}, %body]" for r, j in tiles]
    out += [f"  %s{j} = phi {vt} [zeroinitializer, %entry], [%ns{j}, %body]" for j in range(NV)]
    out += ["  %more = icmp slt i64 %k, %K", "  br i1 %more, label %body, label %end", "body:",
            "  %kq = lshr i64 %k, 2", "  %bofs = mul i64 %kq, %ldb"]
    for j in range(NV):  # 0x01010101: four unsigned ones, so the dot product sums B's column
        out += [f"  %bo{j} = add i64 %bofs, {64 * j}", f"  %bp{j} = getelementptr inbounds i8, ptr %b, i64 %bo{j}",
                f"  %bv{j} = load {vt}, ptr %bp{j}, align 1",
                f"  %ns{j} = call {vt} {fn}({vt} %s{j}, {vt} splat (i32 16843009), {vt} %bv{j})"]
    for r in range(MR):  # 0x80808080 flips each byte's sign bit: a + 128 as an unsigned byte
        out += [f"  %arow{r} = mul i64 {r}, %sr", f"  %ao{r} = add i64 %arow{r}, %k",
                f"  %ap{r} = getelementptr inbounds i8, ptr %a, i64 %ao{r}",
                f"  %aw{r} = load i32, ptr %ap{r}, align 1", f"  %ax{r} = xor i32 %aw{r}, -2139062144",
                f"  %ai{r} = insertelement {vt} poison, i32 %ax{r}, i64 0",
                f"  %av{r} = shufflevector {vt} %ai{r}, {vt} poison, <16 x i32> zeroinitializer"]
        out += [f"  %nacc{r}_{j} = call {vt} {fn}({vt} %acc{r}_{j}, {vt} %av{r}, {vt} %bv{j})" for j in range(NV)]
    out += ["  %knext = add nsw i64 %k, 4", "  br label %head", "end:"]
    out += [f"  %sh{j} = shl {vt} %s{j}, splat (i32 7)" for j in range(NV)]
    for r, j in tiles:
        out += [f"  %res{r}_{j} = sub {vt} %acc{r}_{j}, %sh{j}", f"  store {vt} %res{r}_{j}, ptr %cp{r}_{j}, align 4"]
    return "\n".join(out + ["  ret void", "}"])


VNNI = DotFamily("avx512_vnni", "avx512vnni", "int8", "int32", 4, MR, NR, render_cxx, render_llvm)
