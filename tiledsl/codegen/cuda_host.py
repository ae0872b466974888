"""The host side of a CUDA kernel built with NVRTC: C that checks the arguments and calls the
kernel's module (runtime/cuda_module.cc) instead of launching with `<<<>>>`.

The checks are the same `render_host` code as for nvcc builds and the CPU, so every error
message is unchanged. The launcher computes each grid, applies CUDA's grid limits, finds the
`__global__` function in the library's imports once (`TVMFFIEnvModLookupFromImports` on the
library context tvm-ffi sets when it loads the library) and calls it with (device, grid x, y,
z, kernel arguments). The file needs only `tvm/ffi/c_api.h`, so the host compiler takes ~0.3 s
and no CUDA toolkit is involved.
"""
from __future__ import annotations

from typing import List

from ..ir import Buffer
from .cuda import CudaParts
from .host import HOST_PRELUDE, render_host
from .names import c_value_type

__all__ = ["render_module_host", "argument_codes", "kernel_table"]

_INCLUDES = """#include <tvm/ffi/c_api.h>
#include <tvm/ffi/extra/c_env_api.h>
#include <stdint.h>
#include <stddef.h>
#include <string.h>
#include <stdio.h>
#include <stdbool.h>
"""

# tvm-ffi fills this with the library's module when it loads the library; the imports of that
# module (the CUDA module) are where the kernels are found.
_CONTEXT = """
extern "C" __attribute__((visibility("default"))) void* __tvm_ffi__library_ctx = NULL;
static int tdsl_find(const char* name, TVMFFIObjectHandle* slot, TVMFFIObjectHandle* out) {
  TVMFFIObjectHandle f = __atomic_load_n(slot, __ATOMIC_ACQUIRE);
  if (f == NULL) {
    /* The handle stays owned by the library module's lookup cache: no reference to drop. */
    if (TVMFFIEnvModLookupFromImports(__tvm_ffi__library_ctx, name, &f) != 0) return -1;
    __atomic_store_n(slot, f, __ATOMIC_RELEASE);
  }
  *out = f;
  return 0;
}
"""

_CODES = {"float": "f4", "double": "f8", "bool": "i1", "int8_t": "i1", "uint8_t": "i1", "int16_t": "i2",
          "uint16_t": "i2", "int32_t": "i4", "uint32_t": "i4", "int64_t": "i8", "uint64_t": "i8"}


def argument_codes(parts: CudaParts, params: tuple) -> List[str]:
    """The `__global__` functions' argument codes (see cuda_module.cc): tensors are pointers,
    scalars their C value type's width, symbolic sizes int64."""
    codes = ["p" if isinstance(p, Buffer) else _CODES[c_value_type(p.dtype)] for p in params]
    return codes + ["i8"] * len(parts.shape_vars)


def kernel_table(parts: CudaParts, params: tuple) -> str:
    """The module's kernel table: one line per `__global__` function."""
    codes = ",".join(argument_codes(parts, params)) or "-"
    return "".join(f"{name} {k.threads} {smem} {codes}\n" for name, k, smem in parts.launches)


def _any(kind: str, field: str, value: str) -> str:
    return (f"{{ TVMFFIAny tdsl_v; memset(&tdsl_v, 0, sizeof tdsl_v); tdsl_v.type_index = {kind}; "
            f"tdsl_v.{field} = {value}; tdsl_a[tdsl_n++] = tdsl_v; }}")


def _pack(code: str, arg: str) -> str:
    if code == "p":
        return _any("kTVMFFIOpaquePtr", "v_ptr", f"(void*){arg}")
    if code[0] == "f":
        return _any("kTVMFFIFloat", "v_float64", f"(double){arg}")
    return _any("kTVMFFIInt", "v_int64", f"(int64_t){arg}")


def render_module_host(parts: CudaParts, original, symbol: str) -> str:
    """C++ (C in style) for the host library of an NVRTC build of `original`."""
    r, k = parts.renderer, f'"{symbol}"'
    codes = argument_codes(parts, original.params)
    lines = [f"static TVMFFIObjectHandle tdsl_fn_{i} = NULL;" for i in range(len(parts.launches))]
    lines.append(f"static int {symbol}_launch(int tdsl_dev, {', '.join(parts.params)}) {{")
    for i, (name, kern, _) in enumerate(parts.launches):
        dims = [r.expr(g) for g in kern.grid] + ["1"] * (3 - len(kern.grid))
        lines += ["  {",
                  f"    const int64_t tdsl_g0 = {dims[0]}, tdsl_g1 = {dims[1]}, tdsl_g2 = {dims[2]};",
                  "    if (tdsl_g0 > 0 && tdsl_g1 > 0 && tdsl_g2 > 0) {",
                  "      if (tdsl_g0 > 2147483647LL || tdsl_g1 > 65535 || tdsl_g2 > 65535) return tdsl_fail(\"ValueError\", "
                  f"\"%s: grid %lld x %lld x %lld exceeds CUDA's limits (2^31-1 x 65535 x 65535)\", {k}, "
                  "(long long)tdsl_g0, (long long)tdsl_g1, (long long)tdsl_g2);",
                  "      TVMFFIObjectHandle tdsl_f;",
                  f"      if (tdsl_find(\"{name}\", &tdsl_fn_{i}, &tdsl_f) != 0) return -1;",
                  f"      TVMFFIAny tdsl_a[{4 + len(codes)}]; int tdsl_n = 0;",
                  "      " + _pack("i8", "tdsl_dev"),
                  *("      " + _pack("i8", g) for g in ("tdsl_g0", "tdsl_g1", "tdsl_g2")),
                  *("      " + _pack(c, arg) for c, arg in zip(codes, parts.args)),
                  "      TVMFFIAny tdsl_rv; memset(&tdsl_rv, 0, sizeof tdsl_rv);",
                  "      if (TVMFFIFunctionCall(tdsl_f, tdsl_a, tdsl_n, &tdsl_rv) != 0) return -1;",
                  "    }",
                  "  }"]
    lines += ["  return 0;", "}"]
    host = render_host(original, symbol, f"{symbol}_launch", r.names, parts.written, parts.shape_vars,
                       device="cuda", launcher=True, prelude=False)
    return (f"// tiledsl: host code of CUDA kernel '{symbol}' (NVRTC build)\n" + _INCLUDES + HOST_PRELUDE
            + _CONTEXT + "\n" + "\n".join(lines) + "\n\n" + host)
