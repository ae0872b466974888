"""Render GPU loop IR as CUDA: one `__global__` function per `T.Kernel`, a launcher, and the
TVM-FFI host wrapper (the same checks as on the CPU, plus one device for all tensors).

The IR arrives from the CUDA pipeline already split over threads (`thread_x` is
`threadIdx.x`), with fragments as per-thread register arrays, shared tiles flattened through
their (possibly swizzled) layouts and `__syncthreads()` placed. Shared tiles live in dynamic
shared memory at 16-byte aligned offsets. The launcher takes the caller's stream from
`TVMFFIEnvGetStream`, raises the shared-memory limit when a block needs more than 48 KiB, and
turns a launch error into a Python `RuntimeError`.

The same text compiles with the host C++ compiler when `TDSL_EMU` is defined
(`tiledsl/runtime/cuda_emu.h`): blocks run one after another, each thread an OS thread, so
the tests check the CUDA code's arithmetic on a machine without a GPU.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import List

from .. import ir
from ..errors import LoweringError
from ..ir import THREAD_X, Buffer, Const, Kernel, PrimFunc, stored_buffers
from ..ir.analysis import loop_range
from .cpu import FP8_FUNCTIONS, CpuRenderer, _shape_vars
from .host import HOST_PRELUDE, render_host
from .names import c_storage_type, c_value_type

__all__ = ["render_cuda", "cuda_parts", "CudaParts"]

PRELUDE = r"""
#include <tvm/ffi/c_api.h>
#include <tvm/ffi/extra/c_env_api.h>
#include <stdint.h>
#include <stddef.h>
#include <string.h>
#include <stdio.h>
#include <math.h>
#ifndef TDSL_EMU
#include <cuda_runtime.h>
#include <cuda_fp16.h>
#define TDSL_DECLARE_SMEM extern __shared__ __align__(16) unsigned char tdsl_smem[]
#endif
#define TDSL_HD __host__ __device__ __forceinline__

TDSL_HD float tdsl_bf2f(uint16_t h) { uint32_t u = (uint32_t)h << 16; float f; memcpy(&f, &u, 4); return f; }
TDSL_HD uint16_t tdsl_f2bf(float f) {  /* round to nearest even; NaN stays NaN */
  uint32_t u; memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u);
  u += 0x7fffu + ((u >> 16) & 1u); return (uint16_t)(u >> 16);
}
#ifdef TDSL_EMU
static inline float tdsl_h2f(uint16_t h) { _Float16 x; memcpy(&x, &h, 2); return (float)x; }
static inline uint16_t tdsl_f2h(float f) { _Float16 x = (_Float16)f; uint16_t h; memcpy(&h, &x, 2); return h; }
#else
__device__ __forceinline__ float tdsl_h2f(uint16_t h) { return __half2float(__ushort_as_half(h)); }
__device__ __forceinline__ uint16_t tdsl_f2h(float f) { return __half_as_ushort(__float2half_rn(f)); }
#endif
template <class T> TDSL_HD T tdsl_max(T a, T b) { return a > b ? a : b; }
template <class T> TDSL_HD T tdsl_min(T a, T b) { return a < b ? a : b; }
/* numpy's integer // and %: floored, x // 0 == x % 0 == 0, MIN // -1 wraps to MIN (idiv traps on
   both); (T)-1 < 0 singles out signed T, and the negation goes through unsigned to wrap. */
template <class T> TDSL_HD T tdsl_floordiv(T a, T b) { if (b == 0) return 0; if ((T)-1 < 0 && b == (T)-1) return (T)(0ull - (unsigned long long)a); T q = a / b; return (q * b != a && ((a < 0) != (b < 0))) ? q - 1 : q; }
template <class T> TDSL_HD T tdsl_floormod(T a, T b) { if (b == 0 || ((T)-1 < 0 && b == (T)-1)) return 0; T r = a % b; return (r != 0 && ((r < 0) != (b < 0))) ? r + b : r; }
/* T.atomic_*: float adds use the hardware's atomicAdd; everything else is a compare-and-swap
   loop on the element's bits, `f` mapping the old stored value to the new one. */
#ifdef TDSL_EMU
template <class S, class F> static inline void tdsl_atomic_update(S* p, F f) {
  S old, next;
  __atomic_load(p, &old, __ATOMIC_RELAXED);
  do { next = f(old); } while (!__atomic_compare_exchange(p, &old, &next, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED));
}
static inline void tdsl_atomic_add_f32(float* p, float v) { tdsl_atomic_update(p, [&](float o) { return o + v; }); }
#else
template <int N> struct tdsl_bits;
template <> struct tdsl_bits<2> { typedef unsigned short type; };
template <> struct tdsl_bits<4> { typedef unsigned int type; };
template <> struct tdsl_bits<8> { typedef unsigned long long type; };
template <class F> __device__ __forceinline__ void tdsl_atomic_update(uint8_t* p, F f) {
  /* no 1-byte CAS: swap the aligned 4-byte word holding the byte (float8, int8) */
  unsigned int* w = (unsigned int*)((uintptr_t)p & ~(uintptr_t)3);
  const unsigned shift = (unsigned)((uintptr_t)p & 3) * 8u;
  unsigned int seen = *(volatile unsigned int*)w, want;
  do {
    want = seen;
    const uint8_t n = f((uint8_t)(want >> shift));
    seen = atomicCAS(w, want, (want & ~(0xffu << shift)) | ((unsigned int)n << shift));
  } while (seen != want);
}
template <class F> __device__ __forceinline__ void tdsl_atomic_update(int8_t* p, F f) {
  tdsl_atomic_update((uint8_t*)p, [&](uint8_t o) { return (uint8_t)f((int8_t)o); });
}
template <class S, class F> __device__ __forceinline__ void tdsl_atomic_update(S* p, F f) {
  typedef typename tdsl_bits<sizeof(S)>::type U;
  U* q = (U*)p;
  U seen = *(volatile U*)q, want;
  do {
    want = seen;
    S o; memcpy(&o, &want, sizeof(S));
    S n = f(o);
    U bits; memcpy(&bits, &n, sizeof(S));
    seen = atomicCAS(q, want, bits);
  } while (seen != want);
}
__device__ __forceinline__ void tdsl_atomic_add_f32(float* p, float v) { atomicAdd(p, v); }
#endif
"""

_SMEM_DEFAULT_LIMIT = 48 * 1024


class CudaRenderer(CpuRenderer):
    PRAGMAS = {"unroll": "#pragma unroll"}
    FETCH_ADD = False  # integer atomic adds go through tdsl_atomic_update too

    def __init__(self):
        super().__init__()
        self.kernels: List[tuple] = []   # (name, Kernel, shared bytes)

    def atomic_store(self, s, d) -> None:
        dt = s.buffer.dtype
        if s.atomic == "add" and dt.name == "float32":
            ref = f"{self.names.buffer(s.buffer)}[{self.expr(s.indices[0])}]"
            self.emit(d, f"tdsl_atomic_add_f32(&{ref}, {self.expr(s.value)});")
            return
        super().atomic_store(s, d)

    def s_ExternCall(self, s, d):
        if s.name.startswith("tdsl_print_"):  # T.print: the same printf, in device code
            s = dataclasses.replace(s, definition=s.definition.replace(
                "static void", "static __device__ void").replace(
                "  fflush(stdout);\n", "#ifdef TDSL_EMU\n  fflush(stdout);\n#endif\n"))
        if not s.definition:
            args = ", ".join(self.expr(a) for a in s.args)
            self.emit(d, f"{s.name}({args});")
            return
        super().s_ExternCall(s, d)

    def kernel(self, k: Kernel, name: str, params: List[str]) -> int:
        """Emit `k` as a __global__ function; returns its dynamic shared memory in bytes."""
        if len(k.grid) > 3:
            raise LoweringError("a CUDA grid has at most 3 dimensions", k.span)
        self.emit(0, f'extern "C" __global__ void __launch_bounds__({k.threads}) {name}({", ".join(params)}) {{')
        self.emit(1, "TDSL_DECLARE_SMEM;")
        self.emit(1, f"const int64_t {self.names.var(THREAD_X)} = (int64_t)threadIdx.x;")
        self.ranges[THREAD_X] = (0, k.threads - 1)
        for v, g, axis in zip(k.block_vars, k.grid, "xyz"):
            self.emit(1, f"const int64_t {self.names.var(v)} = (int64_t)blockIdx.{axis};")
            self.ranges[v] = loop_range(Const(0), g, self.ranges)
        # Shared tiles sit where plan_shared_memory put them (it checked the total against the arch).
        plan = {name: (offset, nbytes) for name, offset, nbytes in k.smem}
        total = 0
        for b in k.allocs:
            n = b.shape[0].value
            ctype = c_storage_type(b.dtype)
            if b.scope == "shared":
                if plan.get(b.name, (0, -1))[1] != n * b.dtype.itemsize:
                    raise LoweringError(f"shared tile '{b.name}' was added or resized after "
                                        f"plan_shared_memory (a bug in tiledsl's pass order)", k.span)
                offset = plan[b.name][0]
                self.emit(1, f"{ctype}* __restrict__ {self.names.buffer(b)} = ({ctype}*)(tdsl_smem + {offset});")
                total = max(total, offset + (n * b.dtype.itemsize + 15) // 16 * 16)
            else:
                self.emit(1, f"{ctype} {self.names.buffer(b)}[{n}];")
        self.stmt(k.body, 1)
        self.emit(0, "}")
        for v in (THREAD_X,) + tuple(k.block_vars):
            self.ranges.pop(v, None)
        return total


@dataclass
class CudaParts:
    """What the two builds of a kernel share: `device`, the device code alone (prelude and
    `__global__` functions, which NVRTC compiles), and what a host launcher needs: the
    `__global__` parameters and arguments as C text and each launch (name, Kernel, dynamic
    shared-memory bytes), rendered by `renderer` (whose names the host code reuses)."""
    device: str
    renderer: CudaRenderer
    params: List[str]
    args: List[str]
    launches: List[tuple]
    written: set
    shape_vars: list


def cuda_parts(lowered: PrimFunc, original: PrimFunc, symbol: str) -> CudaParts:
    """The device code and launch plan of `lowered` (see CudaParts)."""
    r = CudaRenderer()
    written = stored_buffers(lowered)
    shape_vars = _shape_vars(original)
    params, args = [], []
    for p in original.params:
        if isinstance(p, Buffer):
            const = "" if p.name in written else "const "
            params.append(f"{const}{c_storage_type(p.dtype)}* __restrict__ {r.names.buffer(p)}")
            args.append(r.names.buffer(p))
        else:
            params.append(f"{c_value_type(p.dtype)} {r.names.var(p)}")
            args.append(r.names.var(p))
    for v in shape_vars:
        params.append(f"int64_t {r.names.var(v)}")
        args.append(r.names.var(v))

    body = lowered.body.stmts if isinstance(lowered.body, ir.Seq) else (lowered.body,)
    launches = []
    for n, k in enumerate(body):
        if not isinstance(k, Kernel):
            raise LoweringError("on the GPU every statement of a kernel function must be inside "
                                "a `with T.Kernel(...)` block", getattr(k, "span", None))
        name = f"{symbol}_kernel{n}"
        smem = r.kernel(k, name, params)
        r.emit(0, "")
        launches.append((name, k, smem))
    kernels = "\n".join(d for d in r.externs.values() if d) + "\n" + "\n".join(r.lines)
    device = (f"// tiledsl: kernel '{symbol}' for CUDA\n" + PRELUDE + FP8_FUNCTIONS.replace("FP8_FN", "TDSL_HD")
              + "\n" + kernels)
    return CudaParts(device, r, params, args, launches, written, shape_vars)


def render_cuda(lowered: PrimFunc, original: PrimFunc, symbol: str) -> str:
    """CUDA source for `lowered` exporting `__tvm_ffi_<symbol>` (see the module docstring)."""
    parts = cuda_parts(lowered, original, symbol)
    r, params, args, launches = parts.renderer, parts.params, parts.args, parts.launches
    written, shape_vars = parts.written, parts.shape_vars

    k = f'"{symbol}"'
    lines = [f"static int {symbol}_launch(int tdsl_dev, {', '.join(params)}) {{"]
    lines.append("#ifndef TDSL_EMU")
    lines.append("  cudaError_t err = cudaSetDevice(tdsl_dev);")
    lines.append(f"  if (err != cudaSuccess) return tdsl_fail(\"RuntimeError\", \"%s: cannot use CUDA device %d: %s\", "
                 f"{k}, tdsl_dev, cudaGetErrorString(err));")
    lines.append("  cudaStream_t stream = (cudaStream_t)TVMFFIEnvGetStream(kDLCUDA, tdsl_dev);")
    lines.append("#endif")
    for name, kern, smem in launches:
        dims = [r.expr(g) for g in kern.grid] + ["1"] * (3 - len(kern.grid))
        lines.append("  {")
        lines.append(f"    const int64_t g0 = {dims[0]}, g1 = {dims[1]}, g2 = {dims[2]};")
        lines.append("    if (g0 > 0 && g1 > 0 && g2 > 0) {")
        lines.append("      if (g0 > 2147483647LL || g1 > 65535 || g2 > 65535) return tdsl_fail(\"ValueError\", "
                     f"\"%s: grid %lld x %lld x %lld exceeds CUDA's limits (2^31-1 x 65535 x 65535)\", {k}, "
                     "(long long)g0, (long long)g1, (long long)g2);")
        lines.append(f"      dim3 grid((unsigned)g0, (unsigned)g1, (unsigned)g2), block({kern.threads});")
        lines.append("#ifdef TDSL_EMU")
        lines.append(f"      tdsl_emu_launch({name}, grid, block, {smem}, {', '.join(args)});")
        lines.append("#else")
        if smem > _SMEM_DEFAULT_LIMIT:
            lines.append(f"      err = cudaFuncSetAttribute({name}, cudaFuncAttributeMaxDynamicSharedMemorySize, {smem});")
            lines.append(f"      if (err != cudaSuccess) return tdsl_fail(\"RuntimeError\", \"%s: the block needs {smem} "
                         f"bytes of shared memory: %s\", {k}, cudaGetErrorString(err));")
        lines.append(f"      {name}<<<grid, block, {smem}, stream>>>({', '.join(args)});")
        lines.append("      err = cudaGetLastError();")
        lines.append(f"      if (err != cudaSuccess) return tdsl_fail(\"RuntimeError\", \"%s: CUDA launch failed: %s\", "
                     f"{k}, cudaGetErrorString(err));")
        lines.append("#endif")
        lines.append("    }")
        lines.append("  }")
    lines.append("  return 0;")
    lines.append("}")

    # The host wrapper's checks are C; under emulation the tensors are CPU arrays.
    host = render_host(original, symbol, f"{symbol}_launch", r.names, written, shape_vars,
                       device="cuda", launcher=True, prelude=False)
    host_emu = render_host(original, symbol, f"{symbol}_launch", r.names, written, shape_vars,
                           device="cpu", launcher=True, prelude=False)
    return (parts.device + HOST_PRELUDE + "\n" + "\n".join(lines) + "\n\n"
            + "#ifdef TDSL_EMU\n" + host_emu + "#else\n" + host + "#endif\n")
