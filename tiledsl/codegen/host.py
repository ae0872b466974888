"""The host wrapper: C++ that exports `__tvm_ffi_<name>` and checks every argument.

Written against `tvm/ffi/c_api.h` alone (the C++ headers cost ~0.6 s of compile time per
kernel). Each argument is checked for kind, device, dtype, rank, shape (binding symbolic
dimensions on first sight, checking them after), strides, alignment, and outputs for
overlap with other arguments; a mistake raises TypeError / ValueError naming the kernel and
the parameter, never a crash.
"""
from __future__ import annotations

from typing import Iterable, List

from .. import ir
from ..ir import Buffer, Const, Var
from .c_expr import CExpr
from .names import CNames, c_storage_type, c_value_type

__all__ = ["render_host", "HOST_PRELUDE"]

HOST_PRELUDE = r"""
#include <stdarg.h>
static int tdsl_fail(const char* kind, const char* fmt, ...) {
  char msg[1024]; va_list ap; va_start(ap, fmt); vsnprintf(msg, sizeof msg, fmt, ap); va_end(ap);
  TVMFFIErrorSetRaisedFromCStr(kind, msg); return -1;
}
static const char* tdsl_type_name(int32_t ti) {
  switch (ti) {
    case kTVMFFINone: return "None"; case kTVMFFIInt: return "int"; case kTVMFFIBool: return "bool";
    case kTVMFFIFloat: return "float"; case kTVMFFIOpaquePtr: return "pointer";
    case kTVMFFIDataType: return "dtype"; case kTVMFFIDevice: return "device";
    case kTVMFFIRawStr: case kTVMFFISmallStr: case kTVMFFIStr: return "str";
    case kTVMFFISmallBytes: case kTVMFFIBytes: return "bytes"; case kTVMFFIFunction: return "function";
    case kTVMFFIShape: return "shape"; case kTVMFFIArray: return "list"; case kTVMFFIList: return "list";
    case kTVMFFIMap: case kTVMFFIDict: return "dict";
    case kTVMFFITensor: case kTVMFFIDLTensorPtr: return "tensor"; case kTVMFFIOpaquePyObject: return "Python object";
    default: return "object";
  }
}
static void tdsl_dtype_name(DLDataType t, char* out, size_t n) {
  const char* k = t.code == kDLInt ? "int" : t.code == kDLUInt ? "uint" : t.code == kDLFloat ? "float"
                : t.code == kDLBfloat ? "bfloat" : t.code == kDLBool ? "bool" : "type";
  if (t.code == kDLBool) snprintf(out, n, "bool");
  else if (t.lanes != 1) snprintf(out, n, "%s%dx%d", k, (int)t.bits, (int)t.lanes);
  else snprintf(out, n, "%s%d", k, (int)t.bits);
}
static void tdsl_shape_str(const int64_t* s, int nd, char* out, size_t n) {
  size_t p = (size_t)snprintf(out, n, "(");
  for (int i = 0; i < nd && p < n; ++i) p += (size_t)snprintf(out + p, n - p, i ? ", %lld" : "%lld", (long long)s[i]);
  if (p < n) snprintf(out + p, n - p, nd == 1 ? ",)" : ")");
}
static const char* tdsl_device_name(int dt) {
  switch (dt) { case kDLCPU: return "cpu"; case kDLCUDA: return "cuda"; case kDLCUDAHost: return "cuda_host";
    case kDLROCM: return "rocm"; case kDLMetal: return "metal"; default: return "another device"; }
}
/* Reads args[i] as a tensor and checks device, dtype and rank. alt_code lets a bfloat16
   parameter take the uint16 view that numpy (which has no bfloat16) hands over. */
static int tdsl_tensor(const TVMFFIAny* a, DLTensor** out, const char* k, const char* arg,
                       int dev, DLDataType want, int alt_code, int ndim, const char* want_name) {
  if (a->type_index == kTVMFFITensor) *out = (DLTensor*)((char*)a->v_obj + sizeof(TVMFFIObject));
  else if (a->type_index == kTVMFFIDLTensorPtr) *out = (DLTensor*)a->v_ptr;
  else return tdsl_fail("TypeError", "%s: argument '%s' expects a tensor, got %s", k, arg, tdsl_type_name(a->type_index));
  DLTensor* t = *out;
  if (t->device.device_type != dev)
    return tdsl_fail("ValueError", "%s: argument '%s' expects a %s tensor, got one on %s:%d", k, arg,
                     tdsl_device_name(dev), tdsl_device_name(t->device.device_type), t->device.device_id);
  int ok = t->dtype.bits == want.bits && t->dtype.lanes == 1 && (t->dtype.code == want.code || t->dtype.code == alt_code);
  if (!ok) { char got[32]; tdsl_dtype_name(t->dtype, got, sizeof got);
    return tdsl_fail("TypeError", "%s: argument '%s' expects %s, got %s", k, arg, want_name, got); }
  if (t->ndim != ndim)
    return tdsl_fail("ValueError", "%s: argument '%s' expects %d dimensions, got %d", k, arg, ndim, t->ndim);
  if (((uintptr_t)t->data + t->byte_offset) % (uintptr_t)((want.bits + 7) / 8) != 0)
    return tdsl_fail("ValueError", "%s: argument '%s' is not aligned to its element size", k, arg);
  return 0;
}
static int tdsl_check_shape(const DLTensor* t, const int64_t* want, const char* k, const char* arg, const char* names) {
  for (int i = 0; i < t->ndim; ++i) if (t->shape[i] != want[i]) {
    char w[256], g[256]; tdsl_shape_str(want, t->ndim, w, sizeof w); tdsl_shape_str(t->shape, t->ndim, g, sizeof g);
    if (names) return tdsl_fail("ValueError", "%s: argument '%s' expects shape %s = %s, got %s", k, arg, names, w, g);
    return tdsl_fail("ValueError", "%s: argument '%s' expects shape %s, got %s", k, arg, w, g);
  }
  return 0;
}
static int tdsl_check_contiguous(const DLTensor* t, const char* k, const char* arg) {
  if (t->strides == NULL) return 0;
  for (int i = 0; i < t->ndim; ++i) if (t->shape[i] == 0) return 0;  /* empty: any strides */
  int64_t expect = 1;
  for (int i = t->ndim - 1; i >= 0; --i) {
    if (t->shape[i] != 1 && t->strides[i] != expect) {
      char s[256]; tdsl_shape_str(t->strides, t->ndim, s, sizeof s);
      return tdsl_fail("ValueError", "%s: argument '%s' must be contiguous (row-major); got strides %s (in elements)", k, arg, s);
    }
    expect *= t->shape[i];
  }
  return 0;
}
static int64_t tdsl_nbytes(const DLTensor* t) {
  int64_t n = (t->dtype.bits * t->dtype.lanes + 7) / 8;
  for (int i = 0; i < t->ndim; ++i) n *= t->shape[i];
  return n;
}
static int tdsl_overlap(const DLTensor* a, const DLTensor* b) {
  int64_t na = tdsl_nbytes(a), nb = tdsl_nbytes(b);
  if (na == 0 || nb == 0) return 0;
  uintptr_t pa = (uintptr_t)a->data + a->byte_offset, pb = (uintptr_t)b->data + b->byte_offset;
  return pa < pb + (uintptr_t)nb && pb < pa + (uintptr_t)na;
}
"""

_DEVICE_CODE = {"cpu": "kDLCPU", "cuda": "kDLCUDA"}
_INT_RANGE = {"int8": (-2**7, 2**7 - 1), "int16": (-2**15, 2**15 - 1), "int32": (-2**31, 2**31 - 1),
              "uint8": (0, 2**8 - 1), "uint16": (0, 2**16 - 1), "uint32": (0, 2**32 - 1)}


def render_host(func: ir.PrimFunc, symbol: str, body_name: str, names: CNames, written: Iterable[str],
                shape_vars: List[Var], device: str, launcher: bool = False, prelude: bool = True) -> str:
    """The exported entry point: check the arguments, bind symbolic sizes, call the body.

    With `launcher`, the body is a GPU launcher: it gets the tensors' device id first (all
    tensors must share it) and returns nonzero after raising an error."""
    k = f'"{symbol}"'
    params = list(func.params)
    pnames = ", ".join(p.name for p in params)
    out: List[str] = [HOST_PRELUDE] if prelude else []
    out.append(f'extern "C" __attribute__((visibility("default"))) int __tvm_ffi_{symbol}('
               f"void* self, const TVMFFIAny* args, int32_t num_args, TVMFFIAny* result) {{")
    out.append(f"  if (num_args != {len(params)}) return tdsl_fail(\"TypeError\", \"%s: expects "
               f"{len(params)} argument{'s' if len(params) != 1 else ''} ({pnames}), got %d\", {k}, (int)num_args);")
    bound: dict = {}
    call_args = []
    tensors = []
    for i, p in enumerate(params):
        if isinstance(p, Buffer):
            t = f"t_{names.buffer(p)}"
            tensors.append((p, t))
            dt = p.dtype
            alt = "kDLUInt" if dt.numpy_view else "-1"  # ml_dtypes arrays come as unsigned views
            out.append(f"  DLTensor* {t};")
            out.append(f"  if (tdsl_tensor(&args[{i}], &{t}, {k}, \"{p.name}\", {_DEVICE_CODE[device]}, "
                       f"DLDataType{{{dt.dlpack_code}, {dt.bits}, 1}}, {alt}, {p.ndim}, \"{dt}\")) return -1;")
            out.extend(_bind_shape(p, t, bound, names))
            want = ", ".join(_dim_expr(s, names) for s in p.shape)
            label = _shape_label(p)
            out.append(f"  {{ const int64_t want[] = {{{want}}}; if (tdsl_check_shape({t}, want, {k}, "
                       f"\"{p.name}\", {label})) return -1; }}")
            out.append(f"  if (tdsl_check_contiguous({t}, {k}, \"{p.name}\")) return -1;")
            ctype = c_storage_type(dt)
            call_args.append(f"({ctype}*)((char*){t}->data + {t}->byte_offset)")
        else:
            out.extend(_scalar(p, i, k, names))
            call_args.append(names.var(p))
    written = set(written)
    for p, t in tensors:
        if p.name not in written:
            continue
        for q, u in tensors:
            if q is not p:
                out.append(f"  if (tdsl_overlap({t}, {u})) return tdsl_fail(\"ValueError\", \"%s: argument "
                           f"'{p.name}' is written by the kernel and overlaps argument '{q.name}' in memory\", {k});")
    for v in shape_vars:
        call_args.append(names.var(v))
    if launcher:
        out.append(f"  int tdsl_dev = {tensors[0][1] + '->device.device_id' if tensors else '0'};")
        for p, t in tensors[1:]:
            out.append(f"  if ({t}->device.device_id != tdsl_dev) return tdsl_fail(\"ValueError\", \"%s: "
                       f"argument '{p.name}' is on {device}:%d but '{tensors[0][0].name}' is on {device}:%d; "
                       f"all tensors must be on one device\", {k}, {t}->device.device_id, tdsl_dev);")
        out.append(f"  if ({body_name}({', '.join(['tdsl_dev'] + call_args)})) return -1;")
    else:
        out.append(f"  {body_name}({', '.join(call_args)});")
    out.append("  return 0;")
    out.append("}")
    return "\n".join(out) + "\n"


def _bind_shape(p: Buffer, t: str, bound: dict, names: CNames) -> List[str]:
    lines = []
    for d, s in enumerate(p.shape):
        if isinstance(s, Var) and s not in bound:
            bound[s] = names.var(s)
            lines.append(f"  const int64_t {bound[s]} = {t}->shape[{d}];")
    return lines


def _dim_expr(s, names: CNames) -> str:
    if isinstance(s, Const):
        return str(s.value)
    return CExpr(names).expr(s)


def _shape_label(p: Buffer) -> str:
    if all(isinstance(s, Const) for s in p.shape):
        return "NULL"
    text = ", ".join(str(s) for s in p.shape) + ("," if p.ndim == 1 else "")
    return f"\"({text})\""


def _scalar(p: Var, i: int, k: str, names: CNames) -> List[str]:
    dt, v = p.dtype, names.var(p)
    ctype = c_value_type(dt)
    if dt.is_float:
        return [f"  {ctype} {v};",
                f"  if (args[{i}].type_index == kTVMFFIFloat) {v} = ({ctype})args[{i}].v_float64;",
                f"  else if (args[{i}].type_index == kTVMFFIInt || args[{i}].type_index == kTVMFFIBool) "
                f"{v} = ({ctype})args[{i}].v_int64;",
                f"  else return tdsl_fail(\"TypeError\", \"%s: argument '{p.name}' expects a {dt} scalar, "
                f"got %s\", {k}, tdsl_type_name(args[{i}].type_index));"]
    lines = [f"  if (args[{i}].type_index != kTVMFFIInt && args[{i}].type_index != kTVMFFIBool) "
             f"return tdsl_fail(\"TypeError\", \"%s: argument '{p.name}' expects an integer ({dt}), got %s\", "
             f"{k}, tdsl_type_name(args[{i}].type_index));"]
    if dt.name in _INT_RANGE:
        lo, hi = _INT_RANGE[dt.name]
        lines.append(f"  if (args[{i}].v_int64 < {lo}LL || args[{i}].v_int64 > {hi}LL) return tdsl_fail("
                     f"\"ValueError\", \"%s: argument '{p.name}' = %lld does not fit in {dt}\", {k}, "
                     f"(long long)args[{i}].v_int64);")
    cast = "!= 0" if dt.is_bool else ""
    lines.append(f"  const {ctype} {v} = ({ctype})(args[{i}].v_int64 {cast});")
    return lines
