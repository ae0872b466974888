"""The exported entry point `int __tvm_ffi_<sym>(void*, const TVMFFIAny*, int32_t, TVMFFIAny*)`,
written directly in LLVM IR (the "generate the symbol with a code generator" path of the
TVM-FFI compiler-integration guide).

It makes the checks of the C++ host code (`codegen/host.py`), in the same order and with
the same messages: argument count; per tensor its kind (type index 70, or 7 for a raw
DLTensor*), device, dtype, rank and alignment (`tdsl_tensor` in the runtime), the binding
of symbolic dimensions, its shape and contiguity; per scalar its kind and range; then that
no written tensor overlaps another argument. Errors go through
`TVMFFIErrorSetRaisedFromCStr`, so Python sees the same TypeError / ValueError.
"""
from __future__ import annotations

from typing import Iterable, List

from ... import ir
from ...ir import Buffer, Var
from ...ir.expr import INDEX as _INDEX
from .builder import Module, Val
from .expr import ExprEmitter, value_type
from .kernel import ident

__all__ = ["render_entry", "ANY_SIZE"]

ANY_SIZE = 16  # sizeof(TVMFFIAny): int32 type_index, 4 bytes of padding, 8-byte value
_K_INT, _K_BOOL, _K_FLOAT = 1, 2, 3
_DEVICE = {"cpu": 1, "cuda": 2}  # DLDeviceType
_DL_CODE = {"int": 0, "uint": 1, "float": 2, "bfloat": 4, "bool": 6}
_INT_RANGE = {"int8": (-2**7, 2**7 - 1), "int16": (-2**15, 2**15 - 1), "int32": (-2**31, 2**31 - 1),
              "uint8": (0, 2**8 - 1), "uint16": (0, 2**16 - 1), "uint32": (0, 2**32 - 1)}
# DLTensor (dlpack.h), 64-bit: data 0, device {type 8, id 12}, ndim 16, dtype 20, shape 24,
# strides 32, byte_offset 40.
_SHAPE, _BYTE_OFFSET = 24, 40


class _Entry:
    def __init__(self, module: Module, func: ir.PrimFunc, symbol: str, f16_hw: bool):
        self.m, self.func, self.symbol = module, func, symbol
        self.fn = module.function(f"__tvm_ffi_{symbol}", "i32",
                                  [("ptr", "self", ""), ("ptr", "args", ""), ("i32", "num_args", ""),
                                   ("ptr", "result", "")], linkage="", attrs="nounwind")
        self.ex = ExprEmitter(self.fn, f16_hw)
        self.k = module.string(symbol)
        self.msg = self.fn.alloca("[1024 x i8]", base="msg")
        for name, text in _DECLS.items():
            module.declare(name, text)

    # ---- failing ----

    def check(self, ok: Val) -> None:
        """Continue where `ok` holds; otherwise return -1 (the error is already raised)."""
        f = self.fn
        good, bad = f.new_label("ok"), f.new_label("fail")
        f.cbr(ok, good, bad)
        f.start_block(bad)
        f.emit("ret i32 -1")
        f.start_block(good)

    def fail_unless(self, ok: Val, kind: str, fmt: str, args: List[Val]) -> None:
        """Raise `kind` with a printf-formatted message unless `ok`."""
        f = self.fn
        good, bad = f.new_label("ok"), f.new_label("fail")
        f.cbr(ok, good, bad)
        f.start_block(bad)
        f.call("i32", "@snprintf", [self.msg, Val("1024", "i64"), self.m.string(fmt)] + args,
               fnty="i32 (ptr, i64, ptr, ...)")
        f.call("void", "@TVMFFIErrorSetRaisedFromCStr", [self.m.string(kind), self.msg])
        f.emit("ret i32 -1")
        f.start_block(good)

    def arg(self, i: int) -> Val:
        return self.fn.gep("i8", Val("%args", "ptr"), Val(str(i * ANY_SIZE), "i64"))

    def field(self, base: Val, offset: int, ty: str) -> Val:
        return self.fn.load(ty, self.fn.gep("i8", base, Val(str(offset), "i64")))

    # ---- arguments ----

    def num_args(self) -> None:
        params = self.func.params
        n = len(params)
        names = ", ".join(p.name for p in params)
        ok = self.fn.op("i1", f"icmp eq i32 %num_args, {n}")
        self.fail_unless(ok, "TypeError", f"%s: expects {n} argument{'s' if n != 1 else ''} ({_pct(names)}), got %d",
                         [self.k, Val("%num_args", "i32")])

    def tensor(self, i: int, p: Buffer, device: str) -> Val:
        f = self.fn
        dt = p.dtype
        out = f.alloca("ptr", base="t.")
        alt = _DL_CODE["uint"] if dt.numpy_view else -1  # ml_dtypes arrays come as unsigned views
        rc = f.call("i32", "@tdsl_tensor", [
            self.arg(i), out, self.k, self.m.string(p.name), Val(str(_DEVICE[device]), "i32"),
            Val(str(dt.dlpack_code), "i32"), Val(str(dt.bits), "i32"), Val(str(alt), "i32"),
            Val(str(p.ndim), "i32"), self.m.string(str(dt))])
        self.check(f.op("i1", f"icmp eq {rc}, 0"))
        t = f.load("ptr", out)
        shape = self.field(t, _SHAPE, "ptr")
        for d, s in enumerate(p.shape):
            if isinstance(s, Var) and s not in self.ex.values:
                dim = f.load("i64", f.gep("i64", shape, Val(str(d), "i64")))
                self.ex.values[s] = self.ex.convert(dim, _INDEX, s.dtype)  # T.dynamic("N", "int32")
        want = f.alloca("i64", max(1, p.ndim), base="want.")
        for d, s in enumerate(p.shape):
            f.store(self.ex.index(s), f.gep("i64", want, Val(str(d), "i64")))
        label = _shape_label(p)
        rc = f.call("i32", "@tdsl_check_shape", [t, want, self.k, self.m.string(p.name),
                                                  self.m.string(label) if label else Val("null", "ptr")])
        self.check(f.op("i1", f"icmp eq {rc}, 0"))
        rc = f.call("i32", "@tdsl_check_contiguous", [t, self.k, self.m.string(p.name)])
        self.check(f.op("i1", f"icmp eq {rc}, 0"))
        return t

    def data(self, t: Val) -> Val:
        base = self.fn.load("ptr", t)
        return self.fn.gep("i8", base, self.field(t, _BYTE_OFFSET, "i64"), inbounds=False)

    def scalar(self, i: int, p: Var) -> Val:
        f, dt = self.fn, p.dtype
        a = self.arg(i)
        ti = f.load("i32", a)
        v64 = f.gep("i8", a, Val("8", "i64"))
        is_int = f.op("i1", f"icmp eq {ti}, {_K_INT}")
        is_intlike = f.op("i1", f"or i1 {is_int.ref}, {f.op('i1', f'icmp eq {ti}, {_K_BOOL}').ref}")
        ty = value_type(dt)
        if dt.is_float:
            is_float = f.op("i1", f"icmp eq {ti}, {_K_FLOAT}")
            ok = f.op("i1", f"or i1 {is_float.ref}, {is_intlike.ref}")
            self.fail_unless(ok, "TypeError", f"%s: argument '{_pct(p.name)}' expects a {dt} scalar, got %s",
                             [self.k, f.call("ptr", "@tdsl_type_name", [ti])])
            d = f.load("double", v64)
            if ty != "double":
                d = f.op(ty, f"fptrunc {d} to {ty}")
            i = f.op(ty, f"sitofp {f.load('i64', v64)} to {ty}")  # one rounding, as C's (float)int64
            return f.op(ty, f"select i1 {is_float.ref}, {d}, {i}")
        self.fail_unless(is_intlike, "TypeError", f"%s: argument '{_pct(p.name)}' expects an integer ({dt}), got %s",
                         [self.k, f.call("ptr", "@tdsl_type_name", [ti])])
        x = f.load("i64", v64)
        if dt.name in _INT_RANGE:
            lo, hi = _INT_RANGE[dt.name]
            ok = f.op("i1", f"and i1 {f.op('i1', f'icmp sge {x}, {lo}').ref}, "
                            f"{f.op('i1', f'icmp sle {x}, {hi}').ref}")
            self.fail_unless(ok, "ValueError", f"%s: argument '{_pct(p.name)}' = %lld does not fit in {dt}",
                             [self.k, x])
        if dt.is_bool:
            return f.op("i1", f"icmp ne {x}, 0")
        return x if ty == "i64" else f.op(ty, f"trunc {x} to {ty}")

    def overlaps(self, tensors, written: set) -> None:
        for p, t in tensors:
            if p.name not in written:
                continue
            for q, u in tensors:
                if q is p:
                    continue
                rc = self.fn.call("i32", "@tdsl_overlap", [t, u])
                self.fail_unless(self.fn.op("i1", f"icmp eq {rc}, 0"), "ValueError",
                                 f"%s: argument '{_pct(p.name)}' is written by the kernel and overlaps "
                                 f"argument '{_pct(q.name)}' in memory", [self.k])


def render_entry(module: Module, func: ir.PrimFunc, symbol: str, body: str, written: Iterable[str],
                 shape_vars: List[Var], f16_hw: bool, device: str = "cpu") -> None:
    """Add `__tvm_ffi_<symbol>` to `module`: check every argument, then call `@<body>` with the
    tensors' data pointers, the scalars and the symbolic sizes."""
    e = _Entry(module, func, symbol, f16_hw)
    e.num_args()
    call_args, tensors = [], []
    for i, p in enumerate(func.params):
        if isinstance(p, Buffer):
            t = e.tensor(i, p, device)
            tensors.append((p, t))
            call_args.append(t)
        else:
            call_args.append(e.scalar(i, p))
    e.overlaps(tensors, set(written))
    call_args = [e.data(a) if any(a is t for _, t in tensors) else a for a in call_args]
    call_args += [e.ex.values[v] for v in shape_vars]
    rc = e.fn.call("i32", "@" + body, call_args)
    e.fn.emit(f"ret {rc}")  # non-zero: a parallel launch failed and left its error raised


def _pct(text: str) -> str:
    return text.replace("%", "%%")


def _shape_label(p: Buffer) -> str:
    """`(N, 3)` for a shape with symbols (the message shows the bound values beside it)."""
    if all(isinstance(s, ir.Const) for s in p.shape):
        return ""
    return "(" + ", ".join(str(s) for s in p.shape) + ("," if p.ndim == 1 else "") + ")"


_DECLS = {
    "snprintf": "declare i32 @snprintf(ptr, i64, ptr, ...) nounwind",
    "TVMFFIErrorSetRaisedFromCStr": "declare void @TVMFFIErrorSetRaisedFromCStr(ptr, ptr) nounwind",
    "tdsl_tensor": "declare i32 @tdsl_tensor(ptr, ptr, ptr, ptr, i32, i32, i32, i32, i32, ptr)",
    "tdsl_check_shape": "declare i32 @tdsl_check_shape(ptr, ptr, ptr, ptr, ptr)",
    "tdsl_check_contiguous": "declare i32 @tdsl_check_contiguous(ptr, ptr, ptr)",
    "tdsl_overlap": "declare i32 @tdsl_overlap(ptr, ptr)",
    "tdsl_type_name": "declare ptr @tdsl_type_name(i32)",
}
