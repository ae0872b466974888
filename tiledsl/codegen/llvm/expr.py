"""LLVM IR for IR expressions, with the C backend's semantics (codegen/c_expr.py) so that both
backends compute bit-identical results: no fast-math, no contraction of `a * b + c` into an
FMA, `max(a, b)` as `a > b ? a : b`, floor division and modulo for signed integers.

`Select`, `and` and `or` only evaluate the side that is taken, as in C: a guarded load
(`i < n ? A[i] : 0`) must not be executed when the guard fails. Sides that cannot fault
become `select` instructions instead of branches, which keeps loops vectorisable.
"""
from __future__ import annotations

from typing import Dict, Optional

from ...ir import BinOp, Call, Cast, Const, DType, Expr, Load, Select, UnOp, Var, walk
from ...ir.analysis import bound
from ...ir.dtype import float32 as _F32, int32 as _I32, int64 as _I64, uint32 as _U32
from .builder import Function, Val, float_literal

__all__ = ["ExprEmitter", "value_type", "storage_type", "PRELUDE"]


def value_type(dt: DType) -> str:
    """How values of `dt` live in registers (16-bit floats are computed in float)."""
    if dt.is_bool:
        return "i1"
    if dt.is_int:
        return f"i{dt.bits}"
    return "double" if dt.name == "float64" else "float"


def storage_type(dt: DType) -> str:
    """How elements of `dt` are stored in memory."""
    if dt.is_bool:
        return "i8"
    if dt.name in ("float16", "bfloat16"):
        return "i16"
    if dt.kind == "float8":
        return "i8"
    return value_type(dt)


# Conversions for 16-bit floats, as the C prelude has them. bfloat16 rounds to nearest even and
# keeps NaN a NaN. float16 goes through LLVM's `half` where the target converts in hardware
# (F16C, AArch64); elsewhere through bit arithmetic, so that no compiler runtime
# (__extendhfsf2) has to be found at load time.
PRELUDE = r"""
define internal float @tdsl_bf2f(i16 %h) alwaysinline {
  %w = zext i16 %h to i32
  %s = shl i32 %w, 16
  %f = bitcast i32 %s to float
  ret float %f
}
define internal i16 @tdsl_f2bf(float %f) alwaysinline {
  %u = bitcast float %f to i32
  %abs = and i32 %u, 2147483647
  %nan = icmp ugt i32 %abs, 2139095040
  %hi = lshr i32 %u, 16
  %q = or i32 %hi, 64
  %lsb = and i32 %hi, 1
  %bias = add i32 %lsb, 32767
  %r = add i32 %u, %bias
  %rh = lshr i32 %r, 16
  %o = select i1 %nan, i32 %q, i32 %rh
  %t = trunc i32 %o to i16
  ret i16 %t
}
define internal float @tdsl_h2f_hw(i16 %h) alwaysinline {
  %x = bitcast i16 %h to half
  %f = fpext half %x to float
  ret float %f
}
define internal i16 @tdsl_f2h_hw(float %f) alwaysinline {
  %x = fptrunc float %f to half
  %h = bitcast half %x to i16
  ret i16 %h
}
define internal float @tdsl_h2f_sw(i16 %h) alwaysinline {
entry:
  %w = zext i16 %h to i32
  %sign = and i32 %w, 32768
  %s32 = shl i32 %sign, 16
  %e = lshr i32 %w, 10
  %exp = and i32 %e, 31
  %mant = and i32 %w, 1023
  %m13 = shl i32 %mant, 13
  %isden = icmp eq i32 %exp, 0
  br i1 %isden, label %den, label %norm
den:
  %mf = uitofp i32 %mant to float
  %v = fmul float %mf, 0x3E70000000000000
  %vb = bitcast float %v to i32
  %vs = or i32 %vb, %s32
  br label %done
norm:
  %isinf = icmp eq i32 %exp, 31
  %e2 = add i32 %exp, 112
  %e3 = select i1 %isinf, i32 255, i32 %e2
  %e4 = shl i32 %e3, 23
  %b1 = or i32 %e4, %m13
  %b2 = or i32 %b1, %s32
  br label %done
done:
  %bits = phi i32 [%vs, %den], [%b2, %norm]
  %f = bitcast i32 %bits to float
  ret float %f
}
define internal i16 @tdsl_f2h_sw(float %x) alwaysinline {
entry:
  %u = bitcast float %x to i32
  %sign = and i32 %u, 2147483648
  %a = xor i32 %u, %sign
  %big = icmp uge i32 %a, 1199570944
  br i1 %big, label %over, label %small
over:
  %isnan = icmp ugt i32 %a, 2139095040
  %o1 = select i1 %isnan, i32 32256, i32 31744
  br label %done
small:
  %den = icmp ult i32 %a, 947912704
  br i1 %den, label %denorm, label %norm
denorm:
  %af = bitcast i32 %a to float
  %sum = fadd float %af, 0x3FE0000000000000
  %sb = bitcast float %sum to i32
  %o2 = sub i32 %sb, 1056964608
  br label %done
norm:
  %odd0 = lshr i32 %a, 13
  %odd = and i32 %odd0, 1
  %r1 = add i32 %a, -939520001
  %r2 = add i32 %r1, %odd
  %o3 = lshr i32 %r2, 13
  br label %done
done:
  %o = phi i32 [%o1, %over], [%o2, %denorm], [%o3, %norm]
  %sh = lshr i32 %sign, 16
  %r = or i32 %o, %sh
  %t = trunc i32 %r to i16
  ret i16 %t
}
"""


def _fp8_functions(name: str, M: int, B: int, has_inf: bool, maxbits: int, over: int) -> str:
    """float8 <-> float as the C prelude's tdsl_fp8_to_f / tdsl_f_to_fp8 (codegen/cpu.py), for
    one format: M mantissa bits, exponent bias B."""
    sub_scale = float_literal(2.0 ** -(B + M - 1), "float")
    scale = float_literal(2.0 ** (B + M - 1), "float")
    special = (f"  %ones = icmp eq i32 %e, {0x7f >> M}\n  %minf = icmp eq i32 %m, 0\n"
               f"  %isinf = and i1 %ones, %minf\n  %sb = select i1 %isinf, i32 2139095040, i32 2143289344\n"
               if has_inf else
               "  %ones = icmp eq i32 %mag, 127\n  %sb = add i32 2143289344, 0\n")
    return f"""
define internal float @tdsl_{name}_to_f(i8 %b) alwaysinline {{
  %x = zext i8 %b to i32
  %s0 = and i32 %x, 128
  %s = shl i32 %s0, 24
  %mag = and i32 %x, 127
  %e = lshr i32 %mag, {M}
  %m = and i32 %x, {(1 << M) - 1}
{special}  %nanbits = or i32 %s, %sb
  %nan = bitcast i32 %nanbits to float
  %eb = add i32 %e, {127 - B}
  %es = shl i32 %eb, 23
  %ms = shl i32 %m, {23 - M}
  %n0 = or i32 %s, %es
  %n1 = or i32 %n0, %ms
  %norm = bitcast i32 %n1 to float
  %mf = uitofp i32 %m to float
  %sub = fmul float %mf, {sub_scale}
  %subn = fneg float %sub
  %neg = icmp ne i32 %s0, 0
  %subv = select i1 %neg, float %subn, float %sub
  %zero = icmp eq i32 %e, 0
  %v = select i1 %zero, float %subv, float %norm
  %r = select i1 %ones, float %nan, float %v
  ret float %r
}}
define internal i8 @tdsl_f_to_{name}(float %f) alwaysinline {{
  %u = bitcast float %f to i32
  %s0 = lshr i32 %u, 24
  %s = and i32 %s0, 128
  %a = and i32 %u, 2147483647
  %isnan = icmp ugt i32 %a, 2139095040
  %isnorm = icmp uge i32 %a, {(128 - B) << 23}
  %odd0 = lshr i32 %a, {23 - M}
  %odd = and i32 %odd0, 1
  %r0 = add i32 %a, {(1 << (22 - M)) - 1}
  %r1 = add i32 %r0, %odd
  %r2 = lshr i32 %r1, {23 - M}
  %bits = sub i32 %r2, {(127 - B) << M}
  %ovf = icmp ugt i32 %bits, {maxbits}
  %nb = select i1 %ovf, i32 {over}, i32 %bits
  %af = call float @llvm.fabs.f32(float %f)
  %sc = fmul float %af, {scale}
  %rd = call float @llvm.roundeven.f32(float %sc)
  %sbits = fptoui float %rd to i32
  %mb = select i1 %isnorm, i32 %nb, i32 %sbits
  %mb2 = select i1 %isnan, i32 127, i32 %mb
  %o = or i32 %s, %mb2
  %t = trunc i32 %o to i8
  ret i8 %t
}}
"""


PRELUDE += _fp8_functions("e4m3", 3, 7, False, 0x7E, 0x7F) + _fp8_functions("e5m2", 2, 15, True, 0x7B, 0x7C) + """
declare float @llvm.fabs.f32(float)
declare float @llvm.roundeven.f32(float)
"""

_FLOAT_INTRINSICS = {"exp": "exp", "exp2": "exp2", "log": "log", "log2": "log2", "sqrt": "sqrt",
                     "abs": "fabs", "sin": "sin", "cos": "cos", "floor": "floor", "ceil": "ceil",
                     "pow": "pow"}
_LIBM = {"tanh": "tanh", "erf": "erf"}  # no LLVM intrinsic: the C library's
_ICMP = {"<": "lt", "<=": "le", ">": "gt", ">=": "ge"}
_FCMP = {"<": "olt", "<=": "ole", ">": "ogt", ">=": "oge", "==": "oeq", "!=": "une"}


def _suffix(ty: str) -> str:
    return "f64" if ty == "double" else "f32"


def may_trap(e: Expr) -> bool:
    """Whether evaluating `e` when it is not needed could fault: a load (integer division is
    total, see `ExprEmitter.divide`)."""
    found = []
    walk(e, lambda n: found.append(n) if isinstance(n, Load) else None)
    return bool(found)


class ExprEmitter:
    """Emits expressions into `fn`. Variables are SSA values (`values`) or stack slots
    (`slots`, for `Decl`s and loop counters; mem2reg turns them into SSA). `ranges` bounds
    integer variables, so non-negative division needs no floor correction."""

    def __init__(self, fn: Function, f16_hw: bool):
        self.fn = fn
        self.f16 = "hw" if f16_hw else "sw"
        self.values: Dict[Var, Val] = {}
        self.slots: Dict[Var, Val] = {}
        self.buffers: Dict[str, Val] = {}
        self.ranges: Dict[Var, tuple] = {}

    def expr(self, e: Expr) -> Val:
        return getattr(self, "e_" + type(e).__name__)(e)

    # ---- leaves ----

    def e_Const(self, e: Const) -> Val:
        ty = value_type(e.dtype)
        if e.dtype.is_bool:
            return Val("true" if e.value else "false", ty)
        if e.dtype.is_int:  # LLVM integers have no sign: a uint64 above 2^63 is written negative
            v = int(e.value) % (1 << e.dtype.bits)
            return Val(str(v - (1 << e.dtype.bits) if v >= 1 << (e.dtype.bits - 1) else v), ty)
        return Val(float_literal(e.value, ty), ty)

    def e_Var(self, e: Var) -> Val:
        if e in self.values:
            return self.values[e]
        if e in self.slots:
            return self.fn.load(value_type(e.dtype), self.slots[e])
        raise KeyError(f"variable {e.name} is not defined here")

    def address(self, buffer, index: Expr) -> Val:
        return self.fn.gep(storage_type(buffer.dtype), self.buffers[buffer.name], self.index(index))

    def index(self, e: Expr) -> Val:
        """An index as i64 (the IR's indices are int64, a user's int32 scalar is widened)."""
        v = self.expr(e)
        return v if v.ty == "i64" else self.convert(v, e.dtype, _I64)

    def e_Load(self, e: Load) -> Val:
        st = storage_type(e.buffer.dtype)
        raw = self.fn.load(st, self.address(e.buffer, e.indices[0]))
        return self.from_storage(raw, e.buffer.dtype)

    def from_storage(self, raw: Val, dt: DType) -> Val:
        if dt.is_bool:
            return self.fn.op("i1", f"icmp ne i8 {raw.ref}, 0")
        if dt.name == "bfloat16":
            return self.fn.call("float", "@tdsl_bf2f", [raw])
        if dt.name == "float16":
            return self.fn.call("float", f"@tdsl_h2f_{self.f16}", [raw])
        if dt.kind == "float8":
            return self.fn.call("float", f"@tdsl_{dt.name[7:]}_to_f", [raw])
        return raw

    def to_storage(self, v: Val, dt: DType) -> Val:
        if dt.is_bool:
            return self.fn.op("i8", f"zext i1 {v.ref} to i8")
        if dt.name == "bfloat16":
            return self.fn.call("i16", "@tdsl_f2bf", [v])
        if dt.name == "float16":
            return self.fn.call("i16", f"@tdsl_f2h_{self.f16}", [v])
        if dt.kind == "float8":
            return self.fn.call("i8", f"@tdsl_f_to_{dt.name[7:]}", [v])
        return v

    # ---- conversions ----

    def e_Cast(self, e: Cast) -> Val:
        return self.convert(self.expr(e.value), e.value.dtype, e.dtype)

    def convert(self, v: Val, src: DType, dst: DType) -> Val:
        f = self.fn
        to = value_type(dst)
        if dst.is_bool:
            if src.is_bool:
                return v
            if src.is_float:
                return f.op("i1", f"fcmp une {v}, 0.0")
            return f.op("i1", f"icmp ne {v}, 0")
        if dst.is_narrow_float:  # computed in float, rounded to 16 or 8 bits
            x = self.convert(v, src, _F32)
            return self.from_storage(self.to_storage(x, dst), dst)
        if v.ty == to:
            return v
        if dst.is_int:
            if src.is_float:
                return f.op(to, f"{'fptoui' if dst.kind == 'uint' else 'fptosi'} {v} to {to}")
            wider = dst.bits > (1 if src.is_bool else src.bits)
            if not wider:
                return f.op(to, f"trunc {v} to {to}")
            ext = "sext" if src.kind == "int" else "zext"
            return f.op(to, f"{ext} {v} to {to}")
        if src.is_float:  # float <-> double
            return f.op(to, f"{'fpext' if to == 'double' else 'fptrunc'} {v} to {to}")
        return f.op(to, f"{'sitofp' if src.kind == 'int' else 'uitofp'} {v} to {to}")

    # ---- operators ----

    def e_UnOp(self, e: UnOp) -> Val:
        a = self.expr(e.a)
        return self.fn.op(a.ty, f"xor {a}, {'true' if e.op == 'not' else '-1'}")

    def e_Call(self, e: Call) -> Val:
        f = self.fn
        args = [self.expr(a) for a in e.args]
        ty = value_type(e.dtype)
        if e.dtype.is_int:  # integer abs
            x = args[0]
            neg = f.op(ty, f"sub {ty} 0, {x.ref}")
            lt = f.op("i1", f"icmp slt {x}, 0")
            return f.op(ty, f"select i1 {lt.ref}, {neg}, {x}")
        one = Val(float_literal(1.0, ty), ty)
        if e.op == "rsqrt":
            return f.op(ty, f"fdiv {one}, {self.intrinsic('sqrt', ty, args).ref}")
        if e.op == "sigmoid":
            neg = f.op(ty, f"fneg {args[0]}")
            den = f.op(ty, f"fadd {one}, {self.intrinsic('exp', ty, [neg]).ref}")
            return f.op(ty, f"fdiv {one}, {den.ref}")
        if e.op in _LIBM:
            name = _LIBM[e.op] + ("" if ty == "double" else "f")
            self.fn.module.declare(name, f"declare {ty} @{name}({ty}) nounwind")
            return f.call(ty, "@" + name, args)
        return self.intrinsic(_FLOAT_INTRINSICS[e.op], ty, args)

    def intrinsic(self, name: str, ty: str, args) -> Val:
        full = f"llvm.{name}.{_suffix(ty)}"
        self.fn.module.declare(full, f"declare {ty} @{full}({', '.join([ty] * len(args))})")
        return self.fn.call(ty, "@" + full, list(args))

    def e_BinOp(self, e: BinOp) -> Val:
        if e.op in ("and", "or"):
            return self.logical(e)
        a, b = self.expr(e.a), self.expr(e.b)
        return self.arith(e.op, a, b, e.a.dtype, e, e.dtype)

    def arith(self, op: str, a: Val, b: Val, dt: DType, e: Optional[BinOp], out: DType) -> Val:
        f = self.fn
        ty = a.ty
        fl = dt.is_float
        signed = dt.kind == "int"
        if op in _ICMP or op in ("==", "!="):
            if fl:
                return f.op("i1", f"fcmp {_FCMP[op]} {a}, {b.ref}")
            pred = {"==": "eq", "!=": "ne"}.get(op) or ("s" if signed else "u") + _ICMP[op]
            return f.op("i1", f"icmp {pred} {a}, {b.ref}")
        if op in ("min", "max"):  # a > b ? a : b, as the C helper (NaN picks b)
            cmp = self.arith(">" if op == "max" else "<", a, b, dt, None, out)
            return f.op(ty, f"select i1 {cmp.ref}, {a}, {b}")
        if fl:
            if op in ("//", "%"):
                q = self.intrinsic("floor", ty, [f.op(ty, f"fdiv {a}, {b.ref}")])
                if op == "//":
                    return q
                return f.op(ty, f"fsub {a}, {f.op(ty, f'fmul {q}, {b.ref}').ref}")
            name = {"+": "fadd", "-": "fsub", "*": "fmul", "/": "fdiv"}[op]
            return f.op(ty, f"{name} {a}, {b.ref}")
        if dt.bits < 32 and op in ("//", "%", "<<", ">>"):
            # C computes 8- and 16-bit integers in int and then wraps: a division or shift
            # of the narrow type itself could overflow (-128 // -1) or shift out of range.
            wide = self.convert(a, dt, _I32), self.convert(b, dt, _I32)
            r = self.arith(op, *wide, _I32 if signed else _U32, e, _I32 if signed else _U32)
            return self.fn.op(ty, f"trunc {r} to {ty}")
        if op in ("//", "%"):
            return self.divide(op, a, b, dt, e)
        nsw = " nsw" if signed and dt.bits >= 32 else ""
        name = {"+": "add" + nsw, "-": "sub" + nsw, "*": "mul" + nsw, "&": "and", "|": "or",
                "^": "xor", "<<": "shl", ">>": "ashr" if signed else "lshr"}[op]
        return f.op(ty, f"{name} {a}, {b.ref}")

    def divide(self, op: str, a: Val, b: Val, dt: DType, e: Optional[BinOp]) -> Val:
        """numpy's integer // and %, as the C prelude's tdsl_floordiv: floored, x // 0 == x % 0
        == 0, MIN // -1 wraps (x86's div traps on a zero divisor and on MIN / -1)."""
        f = self.fn
        const_b = b.ref.lstrip("-").isdigit()
        safe_b = (const_b and int(b.ref) not in (0, -1)) or (e is not None and self._positive(e.b))
        zero = None
        if not safe_b:  # divide by 1 where b is 0 (or -1, below), then patch the answer
            zero = f.op("i1", f"icmp eq {b}, 0")
        if dt.kind == "uint" or (e is not None and self._nonneg(e.a) and self._nonneg(e.b)):
            kind = ("u" if dt.kind == "uint" else "s") + ("div" if op == "//" else "rem")
            b_div = b if zero is None else f.op(a.ty, f"select i1 {zero.ref}, {a.ty} 1, {b}")
            r = f.op(a.ty, f"{kind} {a}, {b_div.ref}")  # x % 1 == 0 already
            return r if zero is None or op == "%" else f.op(a.ty, f"select i1 {zero.ref}, {a.ty} 0, {r}")
        neg1 = None
        if zero is not None:
            neg1 = f.op("i1", f"icmp eq {b}, -1")
            special = f.op("i1", f"or i1 {zero.ref}, {neg1.ref}")
            b_div = f.op(a.ty, f"select i1 {special.ref}, {a.ty} 1, {b}")
        else:
            b_div = b
        # floor semantics: correct C's truncation when the signs differ and it was inexact
        q = f.op(a.ty, f"sdiv {a}, {b_div.ref}")
        r = f.op(a.ty, f"srem {a}, {b_div.ref}")
        if neg1 is not None:
            q = f.op(a.ty, f"select i1 {neg1.ref}, {f.op(a.ty, f'sub {a.ty} 0, {a.ref}')}, {q}")
            q = f.op(a.ty, f"select i1 {zero.ref}, {a.ty} 0, {q}")
        inexact = f.op("i1", f"icmp ne {r}, 0")
        rneg = f.op("i1", f"icmp slt {r}, 0")
        bneg = f.op("i1", f"icmp slt {b}, 0")
        differ = f.op("i1", f"xor i1 {rneg.ref}, {bneg.ref}")
        fix = f.op("i1", f"and i1 {inexact.ref}, {differ.ref}")
        if op == "//":
            q1 = f.op(a.ty, f"sub {q}, 1")
            return f.op(a.ty, f"select i1 {fix.ref}, {q1}, {q}")
        r1 = f.op(a.ty, f"add {r}, {b.ref}")
        return f.op(a.ty, f"select i1 {fix.ref}, {r1}, {r}")

    def _positive(self, e: Expr) -> bool:
        lo, _ = bound(e, self.ranges)
        return lo is not None and lo >= 1

    def _nonneg(self, e: Expr) -> bool:
        lo, _ = bound(e, self.ranges)
        return lo is not None and lo >= 0

    # ---- what C evaluates lazily ----

    def logical(self, e: BinOp) -> Val:
        a = self.expr(e.a)
        if not may_trap(e.b):
            b = self.expr(e.b)
            return self.fn.op("i1", f"{e.op} i1 {a.ref}, {b.ref}")
        short = Val("false" if e.op == "and" else "true", "i1")
        if e.op == "and":
            return self.branch(a, lambda: self.expr(e.b), lambda: short)
        return self.branch(a, lambda: short, lambda: self.expr(e.b))

    def e_Select(self, e: Select) -> Val:
        c = self.expr(e.cond)
        if not may_trap(e.t) and not may_trap(e.f):
            t, fv = self.expr(e.t), self.expr(e.f)
            return self.fn.op(t.ty, f"select i1 {c.ref}, {t}, {fv}")
        return self.branch(c, lambda: self.expr(e.t), lambda: self.expr(e.f))

    def branch(self, cond: Val, then, else_) -> Val:
        """`cond ? then() : else_()` with only the taken side evaluated."""
        f = self.fn
        lt, le, lj = f.new_label("sel.t"), f.new_label("sel.f"), f.new_label("sel.j")
        f.cbr(cond, lt, le)
        f.start_block(lt)
        tv = then()
        t_end = f.cur_label
        f.br(lj)
        f.start_block(le)
        fv = else_()
        f_end = f.cur_label
        f.br(lj)
        f.start_block(lj)
        return f.op(tv.ty, f"phi {tv.ty} [{tv.ref}, %{t_end}], [{fv.ref}, %{f_end}]")

