"""Warp shuffles (`shfl.sync.bfly`): the all-reduce of per-thread partial values across a warp.

`warp_allreduce(kind, dtype, threads)` is an `ExternCall` definition: after it, every lane of a
warp holds, in each of the `n` values it passed, the combination over the warp's lanes (a
butterfly of `__shfl_xor_sync` with offsets 16, 8, 4, 2, 1). In a block whose thread count is
not a multiple of 32 the last warp is partial: a partner lane that does not exist contributes
nothing. All threads of the block must reach the call (it is never under a thread guard).

Under emulation (`TDSL_EMU`) the shuffle is `tdsl_emu_shfl_xor` from `runtime/cuda_emu.h`: each
lane publishes its value in the block's exchange slots and the warp meets at a barrier of its
own, which is what a shuffle guarantees on the hardware.
"""
from __future__ import annotations

from ..ir.dtype import DType
from .names import c_value_type

__all__ = ["warp_allreduce", "allreduce_name"]

_COMBINE = {"sum": "a + b", "max": "a > b ? a : b", "min": "a < b ? a : b"}


def allreduce_name(kind: str, dtype: DType, threads: int) -> str:
    return f"tdsl_warp_allreduce_{kind}_{dtype.name}_t{threads}"


def warp_allreduce(kind: str, dtype: DType, threads: int) -> str:
    """The definition of `allreduce_name(kind, dtype, threads)(T* v, int n)`."""
    ctype = c_value_type(dtype)
    bits = "unsigned long long" if dtype.itemsize == 8 else "unsigned int"
    name = allreduce_name(kind, dtype, threads)
    partial = threads % 32 != 0
    guard = f"if (partner < {threads}) " if partial else ""
    return f"""__device__ __forceinline__ {ctype} {name}_shfl({ctype} x, int offset) {{
  {bits} u = 0; memcpy(&u, &x, sizeof(x));
#ifdef TDSL_EMU
  u = tdsl_emu_shfl_xor(u, offset);
#else
  u = __shfl_xor_sync(__activemask(), u, offset);
#endif
  memcpy(&x, &u, sizeof(x)); return x;
}}
__device__ __forceinline__ void {name}({ctype}* v, int n) {{
  const int partner_base = (int)threadIdx.x;
  for (int r = 0; r < n; ++r) {{
    {ctype} a = v[r];
#pragma unroll
    for (int offset = 16; offset > 0; offset >>= 1) {{
      {ctype} b = {name}_shfl(a, offset);
      const int partner = partner_base ^ offset;
      (void)partner;
      {guard}a = {_COMBINE[kind]};
    }}
    v[r] = a;
  }}
}}"""
