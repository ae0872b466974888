"""The bfloat16 micro-kernel on `vdpbf16ps` (AVX512_BF16): `C[8 x 32] += A[8 x K] B[K x 32]` in float32.

One `vdpbf16ps zmm` multiplies 16 bf16 pairs by 16 pairs and adds each lane's two products into a
float32 lane: twice the multiply-adds of an fp32 FMA in the same issue slot, and no conversion of
the inputs. Per k-pair the kernel loads B's two 64-byte vectors (32 columns, each lane the pair
`B[k, j], B[k+1, j]` of the VNNI layout), broadcasts A's pair of each of 8 rows as one 32-bit
value, and issues 16 dot products into 16 accumulators (8 x 2 zmm): with two B vectors and a
broadcast, 19 of the 32 registers. The instruction flushes denormal inputs and outputs and rounds
to nearest even whatever MXCSR says; both backends emit it, so both give the same bits.
"""
from __future__ import annotations

from typing import List

from .cpu_dot import DotFamily

__all__ = ["BF16"]

MR, NR, NV = 8, 32, 2  # NV zmm vectors of 16 float32 lanes per row


def render_cxx(name: str) -> str:
    acc = [[f"c{r}_{j}" for j in range(NV)] for r in range(MR)]
    lines: List[str] = [
        f"static inline __attribute__((always_inline)) void {name}(int64_t K, const uint16_t* __restrict__ a,"
        f" int64_t sr, const uint16_t* __restrict__ b, int64_t ldb, float* __restrict__ c, int64_t ldc) {{"]
    for r in range(MR):
        lines.append("  " + " ".join(f"__m512 {acc[r][j]} = _mm512_loadu_ps(c + {r} * ldc + {16 * j});"
                                     for j in range(NV)))
    lines += ["#pragma GCC unroll 2", "  for (int64_t k = 0; k < K; k += 2) {",
              "    const uint16_t* bk = b + (k / 2) * ldb;"]
    lines += [f"    const __m512bh b{j} = (__m512bh)_mm512_loadu_si512(bk + {32 * j});" for j in range(NV)]
    for r in range(MR):
        lines.append(f"    {{ int32_t w; memcpy(&w, a + {r} * sr + k, 4); "
                     f"const __m512bh av = (__m512bh)_mm512_set1_epi32(w); "
                     + " ".join(f"{acc[r][j]} = _mm512_dpbf16_ps({acc[r][j]}, av, b{j});" for j in range(NV))
                     + " }")
    lines.append("  }")
    for r in range(MR):
        lines.append("  " + " ".join(f"_mm512_storeu_ps(c + {r} * ldc + {16 * j}, {acc[r][j]});"
                                     for j in range(NV)))
    return "\n".join(lines + ["}"])


def render_llvm(name: str) -> str:
    fn = "@llvm.x86.avx512bf16.dpbf16ps.512"
    vt = "<16 x float>"
    tiles = [(r, j) for r in range(MR) for j in range(NV)]
    out = [f"declare {vt} {fn}({vt}, <16 x i32>, <16 x i32>)",
           f"define internal void @{name}(i64 %K, ptr noalias %a, i64 %sr, ptr noalias %b, i64 %ldb, "
           f"ptr noalias %c, i64 %ldc) alwaysinline nounwind \"min-legal-vector-width\"=\"512\" {{", "entry:"]
    for r, j in tiles:
        out += [f"  %crow{r}_{j} = mul i64 {r}, %ldc", f"  %cofs{r}_{j} = add i64 %crow{r}_{j}, {16 * j}",
                f"  %cp{r}_{j} = getelementptr inbounds float, ptr %c, i64 %cofs{r}_{j}",
                f"  %c{r}_{j} = load {vt}, ptr %cp{r}_{j}, align 4"]
    out += ["  br label %head", "head:", "  %k = phi i64 [0, %entry], [%knext, %body]"]
    out += [f"  %acc{r}_{j} = phi {vt} [%c{r}_{j}, %entry], [%nacc{r}_{j}, %body]" for r, j in tiles]
    out += ["  %more = icmp slt i64 %k, %K", "  br i1 %more, label %body, label %end", "body:",
            "  %kp = lshr i64 %k, 1", "  %bofs = mul i64 %kp, %ldb"]
    for j in range(NV):
        out += [f"  %bo{j} = add i64 %bofs, {32 * j}", f"  %bp{j} = getelementptr inbounds i16, ptr %b, i64 %bo{j}",
                f"  %bv{j} = load <16 x i32>, ptr %bp{j}, align 2"]
    for r in range(MR):
        out += [f"  %arow{r} = mul i64 {r}, %sr", f"  %ao{r} = add i64 %arow{r}, %k",
                f"  %ap{r} = getelementptr inbounds i16, ptr %a, i64 %ao{r}",
                f"  %aw{r} = load i32, ptr %ap{r}, align 2",
                f"  %ai{r} = insertelement <16 x i32> poison, i32 %aw{r}, i64 0",
                f"  %av{r} = shufflevector <16 x i32> %ai{r}, <16 x i32> poison, <16 x i32> zeroinitializer"]
        out += [f"  %nacc{r}_{j} = call {vt} {fn}({vt} %acc{r}_{j}, <16 x i32> %av{r}, <16 x i32> %bv{j})"
                for j in range(NV)]
    out += ["  %knext = add nsw i64 %k, 2", "  br label %head", "end:"]
    out += [f"  store {vt} %acc{r}_{j}, ptr %cp{r}_{j}, align 4" for r, j in tiles]
    return "\n".join(out + ["  ret void", "}"])


BF16 = DotFamily("avx512_bf16", "avx512bf16", "bfloat16", "float32", 2, MR, NR, render_cxx, render_llvm)
