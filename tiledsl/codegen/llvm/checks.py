"""The argument checks of the LLVM backend's runtime, in LLVM IR: the C host prelude of
`codegen/host.py` function for function and message for message, so both backends raise the
same TypeError / ValueError texts. Entry points (host.py) call `tdsl_tensor`,
`tdsl_check_shape`, `tdsl_check_contiguous`, `tdsl_overlap` and `tdsl_type_name`.
"""
from __future__ import annotations

from .builder import c_string, string_globals

__all__ = ["render_checks", "CHECK_SYMBOLS"]

CHECK_SYMBOLS = ("tdsl_tensor", "tdsl_check_shape", "tdsl_check_contiguous", "tdsl_overlap",
                 "tdsl_type_name")

_TYPE_NAMES = {0: "None", 1: "int", 2: "bool", 3: "float", 4: "pointer", 5: "dtype", 6: "device",
               8: "str", 11: "str", 65: "str", 12: "bytes", 66: "bytes", 68: "function", 69: "shape",
               71: "list", 75: "list", 72: "dict", 76: "dict", 70: "tensor", 7: "tensor",
               74: "Python object"}
_DEVICE_NAMES = {1: "cpu", 2: "cuda", 3: "cuda_host", 10: "rocm", 8: "metal"}
_DTYPE_KINDS = {0: "int", 1: "uint", 2: "float", 4: "bfloat", 6: "bool"}


def _switch(name: str, table: dict, default: str, linkage: str) -> str:
    """`ptr @name(i32)`: the string for a code, through a switch."""
    lines, cases, rets = [], [], []
    for i, (code, text) in enumerate(sorted(table.items())):
        lit, n = c_string(text)
        lines.append(f"@{name}.{i} = private unnamed_addr constant [{n} x i8] {lit}")
        cases.append(f"i32 {code}, label %c{i}")
        rets.append(f"c{i}:\n  ret ptr @{name}.{i}")
    lit, n = c_string(default)
    lines.append(f"@{name}.d = private unnamed_addr constant [{n} x i8] {lit}")
    lines.append(f"define {linkage} ptr @{name}(i32 %x) nounwind {{\nentry:\n  switch i32 %x, label %dflt "
                 f"[ {' '.join(cases)} ]\n" + "\n".join(rets) + f"\ndflt:\n  ret ptr @{name}.d\n}}")
    return "\n".join(lines)


def render_checks(exported: str) -> str:
    """The checks' text; `exported` is the linkage of the symbols entry points call."""
    tables = [_switch("tdsl_type_name", _TYPE_NAMES, "object", exported),
              _switch("tdsl_device_name", _DEVICE_NAMES, "another device", "internal"),
              _switch("tdsl_dtype_kind", _DTYPE_KINDS, "type", "internal")]
    return "\n\n".join(tables) + "\n" + _HELPERS.replace("$EXPORT", exported) + string_globals(_STRINGS)


_STRINGS = {
    "s.TypeError": "TypeError", "s.ValueError": "ValueError", "s.bool": "bool", "s.dt": "%s%d",
    "s.dtl": "%s%dx%d", "s.lp": "(", "s.first": "%lld", "s.next": ", %lld", "s.rp": ")", "s.rp1": ",)",
    "f.kind": "%s: argument '%s' expects a tensor, got %s",
    "f.dev": "%s: argument '%s' expects a %s tensor, got one on %s:%d",
    "f.dtype": "%s: argument '%s' expects %s, got %s",
    "f.ndim": "%s: argument '%s' expects %d dimensions, got %d",
    "f.align": "%s: argument '%s' is not aligned to its element size",
    "f.shape_n": "%s: argument '%s' expects shape %s = %s, got %s",
    "f.shape": "%s: argument '%s' expects shape %s, got %s",
    "f.contig": "%s: argument '%s' must be contiguous (row-major); got strides %s (in elements)",
}


_HELPERS = r"""
declare i32 @snprintf(ptr, i64, ptr, ...) nounwind
declare void @TVMFFIErrorSetRaisedFromCStr(ptr, ptr) nounwind

define internal i32 @tdsl_fail(ptr %kind, ptr %msg) nounwind {
  call void @TVMFFIErrorSetRaisedFromCStr(ptr %kind, ptr %msg)
  ret i32 -1
}

; "float32", "int8", "float16x4", "bool" into out[32]
define internal void @tdsl_dtype_name(i32 %code, i32 %bits, i32 %lanes, ptr %out) nounwind {
entry:
  %kind = call ptr @tdsl_dtype_kind(i32 %code)
  %isbool = icmp eq i32 %code, 6
  br i1 %isbool, label %b, label %nb
b:
  call i32 (ptr, i64, ptr, ...) @snprintf(ptr %out, i64 32, ptr @s.bool)
  ret void
nb:
  %one = icmp eq i32 %lanes, 1
  br i1 %one, label %scalar, label %vec
scalar:
  call i32 (ptr, i64, ptr, ...) @snprintf(ptr %out, i64 32, ptr @s.dt, ptr %kind, i32 %bits)
  ret void
vec:
  call i32 (ptr, i64, ptr, ...) @snprintf(ptr %out, i64 32, ptr @s.dtl, ptr %kind, i32 %bits, i32 %lanes)
  ret void
}

; "(2, 3)" / "(5,)" into out[n]
define internal void @tdsl_shape_str(ptr %s, i32 %nd, ptr %out, i64 %n) nounwind {
entry:
  %p0 = call i32 (ptr, i64, ptr, ...) @snprintf(ptr %out, i64 %n, ptr @s.lp)
  %p0w = sext i32 %p0 to i64
  br label %head
head:
  %i = phi i32 [0, %entry], [%i1, %body]
  %p = phi i64 [%p0w, %entry], [%pn, %body]
  %more = icmp slt i32 %i, %nd
  %room = icmp slt i64 %p, %n
  %go = and i1 %more, %room
  br i1 %go, label %body, label %tail
body:
  %iw = sext i32 %i to i64
  %sp = getelementptr inbounds i64, ptr %s, i64 %iw
  %v = load i64, ptr %sp
  %first = icmp eq i32 %i, 0
  %fmt = select i1 %first, ptr @s.first, ptr @s.next
  %dst = getelementptr inbounds i8, ptr %out, i64 %p
  %left = sub i64 %n, %p
  %w = call i32 (ptr, i64, ptr, ...) @snprintf(ptr %dst, i64 %left, ptr %fmt, i64 %v)
  %ww = sext i32 %w to i64
  %pn = add i64 %p, %ww
  %i1 = add i32 %i, 1
  br label %head
tail:
  %fits = icmp slt i64 %p, %n
  br i1 %fits, label %close, label %done
close:
  %d2 = getelementptr inbounds i8, ptr %out, i64 %p
  %l2 = sub i64 %n, %p
  %one = icmp eq i32 %nd, 1
  %cl = select i1 %one, ptr @s.rp1, ptr @s.rp
  call i32 (ptr, i64, ptr, ...) @snprintf(ptr %d2, i64 %l2, ptr %cl)
  br label %done
done:
  ret void
}

; Reads a TVMFFIAny as a tensor and checks device, dtype and rank (the C tdsl_tensor).
define $EXPORT i32 @tdsl_tensor(ptr %a, ptr %out, ptr %k, ptr %arg, i32 %dev, i32 %code, i32 %bits,
                                i32 %alt, i32 %ndim, ptr %want) nounwind {
entry:
  %msg = alloca [1024 x i8]
  %got = alloca [32 x i8]
  %ti = load i32, ptr %a
  %vp.addr = getelementptr inbounds i8, ptr %a, i64 8
  %vp = load ptr, ptr %vp.addr
  %is.obj = icmp eq i32 %ti, 70
  br i1 %is.obj, label %obj, label %notobj
obj:
  %t.obj = getelementptr inbounds i8, ptr %vp, i64 24
  br label %have
notobj:
  %is.ptr = icmp eq i32 %ti, 7
  br i1 %is.ptr, label %have, label %badkind
have:
  %t = phi ptr [%t.obj, %obj], [%vp, %notobj]
  store ptr %t, ptr %out
  %devt.p = getelementptr inbounds i8, ptr %t, i64 8
  %devt = load i32, ptr %devt.p
  %devok = icmp eq i32 %devt, %dev
  br i1 %devok, label %dtype, label %baddev
dtype:
  %code.p = getelementptr inbounds i8, ptr %t, i64 20
  %c8 = load i8, ptr %code.p
  %c = zext i8 %c8 to i32
  %bits.p = getelementptr inbounds i8, ptr %t, i64 21
  %b8 = load i8, ptr %bits.p
  %b = zext i8 %b8 to i32
  %lanes.p = getelementptr inbounds i8, ptr %t, i64 22
  %l16 = load i16, ptr %lanes.p
  %l = zext i16 %l16 to i32
  %okb = icmp eq i32 %b, %bits
  %okl = icmp eq i32 %l, 1
  %okc1 = icmp eq i32 %c, %code
  %okc2 = icmp eq i32 %c, %alt
  %okc = or i1 %okc1, %okc2
  %ok1 = and i1 %okb, %okl
  %ok = and i1 %ok1, %okc
  br i1 %ok, label %rank, label %baddtype
rank:
  %nd.p = getelementptr inbounds i8, ptr %t, i64 16
  %nd = load i32, ptr %nd.p
  %ndok = icmp eq i32 %nd, %ndim
  br i1 %ndok, label %align, label %badndim
align:
  %data = load ptr, ptr %t
  %off.p = getelementptr inbounds i8, ptr %t, i64 40
  %off = load i64, ptr %off.p
  %addr0 = ptrtoint ptr %data to i64
  %addr = add i64 %addr0, %off
  %bits7 = add i32 %bits, 7
  %esize = udiv i32 %bits7, 8
  %esize64 = zext i32 %esize to i64
  %rem = urem i64 %addr, %esize64
  %aligned = icmp eq i64 %rem, 0
  br i1 %aligned, label %good, label %badalign
good:
  ret i32 0
badkind:
  %tn = call ptr @tdsl_type_name(i32 %ti)
  call i32 (ptr, i64, ptr, ...) @snprintf(ptr %msg, i64 1024, ptr @f.kind, ptr %k, ptr %arg, ptr %tn)
  %r1 = call i32 @tdsl_fail(ptr @s.TypeError, ptr %msg)
  ret i32 -1
baddev:
  %dn.want = call ptr @tdsl_device_name(i32 %dev)
  %dn.got = call ptr @tdsl_device_name(i32 %devt)
  %devid.p = getelementptr inbounds i8, ptr %t, i64 12
  %devid = load i32, ptr %devid.p
  call i32 (ptr, i64, ptr, ...) @snprintf(ptr %msg, i64 1024, ptr @f.dev, ptr %k, ptr %arg, ptr %dn.want, ptr %dn.got, i32 %devid)
  %r2 = call i32 @tdsl_fail(ptr @s.ValueError, ptr %msg)
  ret i32 -1
baddtype:
  call void @tdsl_dtype_name(i32 %c, i32 %b, i32 %l, ptr %got)
  call i32 (ptr, i64, ptr, ...) @snprintf(ptr %msg, i64 1024, ptr @f.dtype, ptr %k, ptr %arg, ptr %want, ptr %got)
  %r3 = call i32 @tdsl_fail(ptr @s.TypeError, ptr %msg)
  ret i32 -1
badndim:
  call i32 (ptr, i64, ptr, ...) @snprintf(ptr %msg, i64 1024, ptr @f.ndim, ptr %k, ptr %arg, i32 %ndim, i32 %nd)
  %r4 = call i32 @tdsl_fail(ptr @s.ValueError, ptr %msg)
  ret i32 -1
badalign:
  call i32 (ptr, i64, ptr, ...) @snprintf(ptr %msg, i64 1024, ptr @f.align, ptr %k, ptr %arg)
  %r5 = call i32 @tdsl_fail(ptr @s.ValueError, ptr %msg)
  ret i32 -1
}

define $EXPORT i32 @tdsl_check_shape(ptr %t, ptr %want, ptr %k, ptr %arg, ptr %names) nounwind {
entry:
  %nd.p = getelementptr inbounds i8, ptr %t, i64 16
  %nd = load i32, ptr %nd.p
  %shape.p = getelementptr inbounds i8, ptr %t, i64 24
  %shape = load ptr, ptr %shape.p
  br label %head
head:
  %i = phi i32 [0, %entry], [%i1, %same]
  %more = icmp slt i32 %i, %nd
  br i1 %more, label %body, label %good
body:
  %iw = sext i32 %i to i64
  %gp = getelementptr inbounds i64, ptr %shape, i64 %iw
  %g = load i64, ptr %gp
  %wp = getelementptr inbounds i64, ptr %want, i64 %iw
  %w = load i64, ptr %wp
  %eq = icmp eq i64 %g, %w
  %i1 = add i32 %i, 1
  br i1 %eq, label %same, label %bad
same:
  br label %head
good:
  ret i32 0
bad:
  %msg = alloca [1024 x i8]
  %ws = alloca [256 x i8]
  %gs = alloca [256 x i8]
  call void @tdsl_shape_str(ptr %want, i32 %nd, ptr %ws, i64 256)
  call void @tdsl_shape_str(ptr %shape, i32 %nd, ptr %gs, i64 256)
  %named = icmp ne ptr %names, null
  br i1 %named, label %withnames, label %plain
withnames:
  call i32 (ptr, i64, ptr, ...) @snprintf(ptr %msg, i64 1024, ptr @f.shape_n, ptr %k, ptr %arg, ptr %names, ptr %ws, ptr %gs)
  br label %raise
plain:
  call i32 (ptr, i64, ptr, ...) @snprintf(ptr %msg, i64 1024, ptr @f.shape, ptr %k, ptr %arg, ptr %ws, ptr %gs)
  br label %raise
raise:
  %r = call i32 @tdsl_fail(ptr @s.ValueError, ptr %msg)
  ret i32 -1
}

define $EXPORT i32 @tdsl_check_contiguous(ptr %t, ptr %k, ptr %arg) nounwind {
entry:
  %strides.p = getelementptr inbounds i8, ptr %t, i64 32
  %strides = load ptr, ptr %strides.p
  %none = icmp eq ptr %strides, null
  br i1 %none, label %good, label %scan
scan:
  %nd.p = getelementptr inbounds i8, ptr %t, i64 16
  %nd = load i32, ptr %nd.p
  %shape.p = getelementptr inbounds i8, ptr %t, i64 24
  %shape = load ptr, ptr %shape.p
  br label %zhead
zhead:                                  ; an empty tensor may have any strides
  %z = phi i32 [0, %scan], [%z1, %znext]
  %zmore = icmp slt i32 %z, %nd
  br i1 %zmore, label %zbody, label %start
zbody:
  %zw = sext i32 %z to i64
  %zp = getelementptr inbounds i64, ptr %shape, i64 %zw
  %zs = load i64, ptr %zp
  %empty = icmp eq i64 %zs, 0
  %z1 = add i32 %z, 1
  br i1 %empty, label %good, label %znext
znext:
  br label %zhead
start:
  %last = sub i32 %nd, 1
  br label %head
head:
  %i = phi i32 [%last, %start], [%i1, %next]
  %expect = phi i64 [1, %start], [%expect1, %next]
  %more = icmp sge i32 %i, 0
  br i1 %more, label %body, label %good
body:
  %iw = sext i32 %i to i64
  %sp = getelementptr inbounds i64, ptr %shape, i64 %iw
  %s = load i64, ptr %sp
  %stp = getelementptr inbounds i64, ptr %strides, i64 %iw
  %st = load i64, ptr %stp
  %unit = icmp eq i64 %s, 1
  %match = icmp eq i64 %st, %expect
  %fine = or i1 %unit, %match
  %expect1 = mul i64 %expect, %s
  %i1 = sub i32 %i, 1
  br i1 %fine, label %next, label %bad
next:
  br label %head
good:
  ret i32 0
bad:
  %msg = alloca [1024 x i8]
  %ss = alloca [256 x i8]
  call void @tdsl_shape_str(ptr %strides, i32 %nd, ptr %ss, i64 256)
  call i32 (ptr, i64, ptr, ...) @snprintf(ptr %msg, i64 1024, ptr @f.contig, ptr %k, ptr %arg, ptr %ss)
  %r = call i32 @tdsl_fail(ptr @s.ValueError, ptr %msg)
  ret i32 -1
}

define internal i64 @tdsl_nbytes(ptr %t) nounwind {
entry:
  %bits.p = getelementptr inbounds i8, ptr %t, i64 21
  %b8 = load i8, ptr %bits.p
  %b = zext i8 %b8 to i64
  %lanes.p = getelementptr inbounds i8, ptr %t, i64 22
  %l16 = load i16, ptr %lanes.p
  %l = zext i16 %l16 to i64
  %bl = mul i64 %b, %l
  %bl7 = add i64 %bl, 7
  %n0 = udiv i64 %bl7, 8
  %nd.p = getelementptr inbounds i8, ptr %t, i64 16
  %nd = load i32, ptr %nd.p
  %shape.p = getelementptr inbounds i8, ptr %t, i64 24
  %shape = load ptr, ptr %shape.p
  br label %head
head:
  %i = phi i32 [0, %entry], [%i1, %body]
  %n = phi i64 [%n0, %entry], [%n1, %body]
  %more = icmp slt i32 %i, %nd
  br i1 %more, label %body, label %done
body:
  %iw = sext i32 %i to i64
  %sp = getelementptr inbounds i64, ptr %shape, i64 %iw
  %s = load i64, ptr %sp
  %n1 = mul i64 %n, %s
  %i1 = add i32 %i, 1
  br label %head
done:
  ret i64 %n
}

define internal i64 @tdsl_address(ptr %t) nounwind {
  %data = load ptr, ptr %t
  %off.p = getelementptr inbounds i8, ptr %t, i64 40
  %off = load i64, ptr %off.p
  %a = ptrtoint ptr %data to i64
  %r = add i64 %a, %off
  ret i64 %r
}

define $EXPORT i32 @tdsl_overlap(ptr %a, ptr %b) nounwind {
entry:
  %na = call i64 @tdsl_nbytes(ptr %a)
  %nb = call i64 @tdsl_nbytes(ptr %b)
  %za = icmp eq i64 %na, 0
  %zb = icmp eq i64 %nb, 0
  %z = or i1 %za, %zb
  br i1 %z, label %no, label %test
no:
  ret i32 0
test:
  %pa = call i64 @tdsl_address(ptr %a)
  %pb = call i64 @tdsl_address(ptr %b)
  %ea = add i64 %pa, %na
  %eb = add i64 %pb, %nb
  %c1 = icmp ult i64 %pa, %eb
  %c2 = icmp ult i64 %pb, %ea
  %c = and i1 %c1, %c2
  %r = zext i1 %c to i32
  ret i32 %r
}
"""
