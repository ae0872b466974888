"""Register-blocked CPU GEMM micro-kernels, generated as C++ with SIMD intrinsics.

A micro-kernel computes `C[MR x NR] += A[MR x K] B[K x NR]`, reading element (r, k) of A at
`a[r * sr + k * sk]` (broadcast, so A needs no particular order) and row k of B as vectors
at `b + k * ldb` (so B must be K-major: a row-major (K, N) tile, or a transposed B tile stored
that way by its layout). The accumulator tile is a set of named vector variables, fully
unrolled: g++ keeps an accumulator array in memory unless every loop touching it is
unrolled, which halves the speed.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List

from ...ir import dtype
from ..names import c_from_storage

__all__ = ["Isa", "ISAS", "ukernel_shape", "render_ukernel"]


@dataclass(frozen=True)
class Isa:
    name: str
    vec_bytes: int  # 0: scalar
    flags: tuple    # compiler flags when this ISA is forced rather than the host's


ISAS = {
    "avx512": Isa("avx512", 64, ("-march=x86-64-v4", "-mtune=znver3")),
    "avx2": Isa("avx2", 32, ("-march=x86-64-v3", "-mtune=znver3")),
    "scalar": Isa("scalar", 0, ("-march=x86-64",)),
}

# (MR, NR) per ISA and accumulator type: accumulators + B vectors + one broadcast fit the
# register file (32 zmm / 16 ymm), and MR, NR divide the usual 64-wide tiles.
_SHAPES = {
    ("avx512", "float32"): (8, 32), ("avx512", "float64"): (8, 16),
    ("avx2", "float32"): (4, 16), ("avx2", "float64"): (4, 8),
    ("scalar", "float32"): (4, 4), ("scalar", "float64"): (4, 4),
}


def ukernel_shape(isa: str, acc: str) -> tuple:
    return _SHAPES[(isa, acc)]


_CT = {"float32": "float", "float64": "double", "float16": "uint16_t", "bfloat16": "uint16_t"}


class _Vec:
    """Names of the intrinsics for one (ISA, accumulator type)."""

    def __init__(self, isa: str, acc: str):
        wide = isa == "avx512"
        p, s = ("_mm512", "ps") if wide else ("_mm256", "ps")
        if acc == "float64":
            s = "pd"
        self.t = ("__m512" if wide else "__m256") + ("d" if acc == "float64" else "")
        self.lanes = (64 if wide else 32) // (8 if acc == "float64" else 4)
        self.load = f"{p}_loadu_{s}"
        self.store = f"{p}_storeu_{s}"
        self.set1 = f"{p}_set1_{s}"
        self.fma = f"{p}_fmadd_{s}"
        self.prefix = p


def _load_b(v: _Vec, inp: str, ptr: str) -> str:
    """A vector of B values at `ptr`, converted to the accumulator type."""
    if inp in ("float32", "float64"):
        return f"{v.load}({ptr})"
    half = "_mm256_loadu_si256((const __m256i*)(" + ptr + "))" if v.prefix == "_mm512" \
        else "_mm_loadu_si128((const __m128i*)(" + ptr + "))"
    if inp == "float16":
        return f"{v.prefix}_cvtph_ps({half})"
    widen = "_mm512_cvtepu16_epi32" if v.prefix == "_mm512" else "_mm256_cvtepu16_epi32"
    shift = "_mm512_slli_epi32" if v.prefix == "_mm512" else "_mm256_slli_epi32"
    cast = "_mm512_castsi512_ps" if v.prefix == "_mm512" else "_mm256_castsi256_ps"
    return f"{cast}({shift}({widen}({half}), 16))"


def _scalar_a(inp: str, expr: str) -> str:
    return c_from_storage(dtype(inp), expr)


_KC = 64  # k values of A converted to float per chunk: 8 rows x 64 floats, 2 KiB of L1


def _converted_k_loop(v: _Vec, inp: str, it: str, mr: int, nv: int) -> List[str]:
    """The k loop for 16-bit inputs. Converting each broadcast A element on its own is a scalar
    conversion per FMA row (8 per 16 FMAs) and was the kernel's bottleneck; instead each chunk of
    `_KC` k values of the MR rows is converted with vector conversions (vcvtph2ps, or the bf16
    shift) into a float panel first, and the loop broadcasts from it as the float32 kernel does.
    B rows are converted as they are loaded (one vector conversion per vector of FMAs)."""
    L = v.lanes
    out = [f"  alignas(64) float ap[{mr * _KC}];",
           f"  for (int64_t k0 = 0; k0 < K; k0 += {_KC}) {{",
           f"    const int64_t kc = K - k0 < {_KC} ? K - k0 : {_KC};",
           f"    for (int r = 0; r < {mr}; ++r) {{",
           f"      const {it}* ar = a + r * sr + k0 * sk; float* apr = ap + r * {_KC}; int64_t q = 0;",
           f"      if (sk == 1) for (; q + {L} <= kc; q += {L}) {v.store}(apr + q, {_load_b(v, inp, 'ar + q')});",
           f"      for (; q < kc; ++q) apr[q] = {_scalar_a(inp, 'ar[q * sk]')};",
           "    }", "#pragma GCC unroll 2", "    for (int64_t k = 0; k < kc; ++k) {",
           "      const " + it + "* bk = b + (k0 + k) * ldb;"]
    for j in range(nv):
        out.append(f"      const {v.t} b{j} = {_load_b(v, inp, f'bk + {j * L}')};")
    for r in range(mr):
        out.append(f"      {{ const {v.t} av = {v.set1}(ap[{r * _KC} + k]); "
                   + " ".join(f"c{r}_{j} = {v.fma}(av, b{j}, c{r}_{j});" for j in range(nv)) + " }")
    return out + ["    }"]


def render_ukernel(name: str, isa: str, inp: str, acc: str) -> str:
    """C++ for `name(K, a, sr, sk, b, ldb, c, ldc, m, n)`: the full MR x NR kernel, and plain
    loops for an m x n edge micro-tile."""
    mr, nr = ukernel_shape(isa, acc)
    it, ct = _CT[inp], _CT[acc]
    lines: List[str] = [f"static inline __attribute__((always_inline)) void {name}_full("
                        f"int64_t K, const {it}* __restrict__ a, int64_t sr, int64_t sk, "
                        f"const {it}* __restrict__ b, int64_t ldb, {ct}* __restrict__ c, int64_t ldc) {{"]
    if isa == "scalar":
        acc_names = [[f"c{r}_{j}" for j in range(nr)] for r in range(mr)]
        for r in range(mr):
            lines.append("  " + " ".join(f"{ct} {acc_names[r][j]} = c[{r} * ldc + {j}];" for j in range(nr)))
        lines.append("  for (int64_t k = 0; k < K; ++k) {")
        for j in range(nr):
            lines.append(f"    const {ct} b{j} = {_scalar_a(inp, f'b[k * ldb + {j}]')};")
        for r in range(mr):
            lines.append(f"    const {ct} a{r} = {_scalar_a(inp, f'a[{r} * sr + k * sk]')};")
            lines.append("    " + " ".join(f"{acc_names[r][j]} += a{r} * b{j};" for j in range(nr)))
        lines.append("  }")
        for r in range(mr):
            lines.append("  " + " ".join(f"c[{r} * ldc + {j}] = {acc_names[r][j]};" for j in range(nr)))
    else:
        v = _Vec(isa, acc)
        nv = nr // v.lanes
        for r in range(mr):
            lines.append("  " + " ".join(f"{v.t} c{r}_{j} = {v.load}(c + {r} * ldc + {j * v.lanes});"
                                         for j in range(nv)))
        if inp in ("float16", "bfloat16"):
            lines += _converted_k_loop(v, inp, it, mr, nv)
        else:
            lines.append("#pragma GCC unroll 2")
            lines.append("  for (int64_t k = 0; k < K; ++k) {")
            for j in range(nv):
                lines.append(f"    const {v.t} b{j} = {_load_b(v, inp, f'b + k * ldb + {j * v.lanes}')};")
            for r in range(mr):
                lines.append(f"    {{ const {v.t} av = {v.set1}({_scalar_a(inp, f'a[{r} * sr + k * sk]')}); "
                             + " ".join(f"c{r}_{j} = {v.fma}(av, b{j}, c{r}_{j});" for j in range(nv)) + " }")
        lines.append("  }")
        for r in range(mr):
            lines.append("  " + " ".join(f"{v.store}(c + {r} * ldc + {j * v.lanes}, c{r}_{j});"
                                         for j in range(nv)))
    lines.append("}")
    # Edge micro-tiles (a tile that MR / NR do not divide) take plain loops over exactly m x n:
    # the vector path would read past the tile's last row or column.
    a_rk = _scalar_a(inp, "a[r * sr + k * sk]")
    b_kj = _scalar_a(inp, "b[k * ldb + j]")
    lines.append(f"""static inline __attribute__((always_inline)) void {name}(int64_t K, const {it}* __restrict__ a,
    int64_t sr, int64_t sk, const {it}* __restrict__ b, int64_t ldb, {ct}* __restrict__ c, int64_t ldc,
    int64_t m, int64_t n) {{
  if (m == {mr} && n == {nr}) {{ {name}_full(K, a, sr, sk, b, ldb, c, ldc); return; }}
  for (int64_t r = 0; r < m; ++r)
    for (int64_t k = 0; k < K; ++k) {{
      const {ct} av = {a_rk};
      for (int64_t j = 0; j < n; ++j) c[r * ldc + j] += av * {b_kj};
    }}
}}""")
    return "\n".join(lines)
