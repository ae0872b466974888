"""The LLVM backend's runtime, itself written in LLVM IR: the argument-checking helpers the
entry points call (the C host prelude of `codegen/host.py`, function for function, message
for message) and the parallel-for that runs a kernel's grid.

Two parallel-fors, measured against each other in benchmarks/bench_backends.py:

- `tdsl_parallel_for`: a thread pool in the generated code. Workers start on first use
  (`$TILEDSL_NUM_THREADS`, else `$OMP_NUM_THREADS`, else the CPUs this process may run on),
  take a static share of the blocks (OpenMP's `schedule(static)`), spin briefly and then
  sleep on a futex between launches. A launch that finds the pool busy (another thread is in
  a kernel) runs its blocks itself; a forked child starts its own workers.
- `tdsl_ffi_parallel_for`: asks the TVM-FFI global function `tiledsl.parallel_launch`
  (registered by `tiledsl.runtime.llvm_jit`) to run the task, so one process-wide pool can
  serve every library. Without that function the blocks run serially.

The JIT compiles this module once per process and shares it between kernels; an exported
library embeds its own copy with hidden symbols (`render_runtime(embedded=True)`).
"""
from __future__ import annotations

from .builder import c_string

__all__ = ["render_runtime", "RUNTIME_SYMBOLS"]

RUNTIME_SYMBOLS = ("tdsl_tensor", "tdsl_check_shape", "tdsl_check_contiguous", "tdsl_overlap",
                   "tdsl_type_name", "tdsl_parallel_for", "tdsl_ffi_parallel_for")

_TYPE_NAMES = {0: "None", 1: "int", 2: "bool", 3: "float", 4: "pointer", 5: "dtype", 6: "device",
               8: "str", 11: "str", 65: "str", 12: "bytes", 66: "bytes", 68: "function", 69: "shape",
               71: "list", 75: "list", 72: "dict", 76: "dict", 70: "tensor", 7: "tensor",
               74: "Python object"}
_DEVICE_NAMES = {1: "cpu", 2: "cuda", 3: "cuda_host", 10: "rocm", 8: "metal"}
_DTYPE_KINDS = {0: "int", 1: "uint", 2: "float", 4: "bfloat", 6: "bool"}

_SYS_FUTEX = {"x86_64": 202, "aarch64": 98}
# The spin-wait hint: x86's `pause`, AArch64's `yield` (hint #1).
_PAUSE = {"x86_64": ("declare void @llvm.x86.sse2.pause()", "call void @llvm.x86.sse2.pause()"),
          "aarch64": ("declare void @llvm.aarch64.hint(i32)", "call void @llvm.aarch64.hint(i32 1)")}

# Spin iterations before sleeping: a worker between launches (short: the machine may be
# shared), the launching thread waiting for its workers (long: it is about to continue).
_WORKER_SPIN, _MAIN_SPIN = 20000, 1 << 20


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


def render_runtime(arch: str = "x86_64", embedded: bool = False) -> str:
    """The runtime module's text for `arch` (x86_64 or aarch64); `embedded` gives every symbol
    internal linkage, for a library that carries its own copy."""
    if arch not in _SYS_FUTEX:
        raise ValueError(f"the LLVM backend's runtime supports x86_64 and aarch64 Linux, not {arch}")
    exported = "hidden" if embedded else ""
    text = _HELPERS + _POOL + _FFI_LAUNCH
    text = (text.replace("$EXPORT", exported).replace("$SYS_FUTEX", str(_SYS_FUTEX[arch]))
            .replace("$PAUSE_DECL", _PAUSE[arch][0]).replace("$PAUSE", _PAUSE[arch][1]).replace("$WORKER_SPIN", str(_WORKER_SPIN))
            .replace("$MAIN_SPIN", str(_MAIN_SPIN))
            .replace("$LAUNCH_LEN", str(len(_STRINGS["s.launch"]))))
    tables = [_switch("tdsl_type_name", _TYPE_NAMES, "object", exported),
              _switch("tdsl_device_name", _DEVICE_NAMES, "another device", "internal"),
              _switch("tdsl_dtype_kind", _DTYPE_KINDS, "type", "internal")]
    return "; tiledsl LLVM runtime\n" + "\n\n".join(tables) + "\n" + text + _strings()


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
    "e.threads": "TILEDSL_NUM_THREADS", "e.omp": "OMP_NUM_THREADS",
    "s.launch": "tiledsl.parallel_launch",
}


def _strings() -> str:
    out = []
    for name, text in _STRINGS.items():
        lit, n = c_string(text)
        out.append(f"@{name} = private unnamed_addr constant [{n} x i8] {lit}")
    return "\n".join(out) + "\n"


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

_POOL = r"""
declare i64 @syscall(i64, ...) nounwind
declare i32 @pthread_create(ptr, ptr, ptr, ptr) nounwind
declare i32 @getpid() nounwind
declare ptr @getenv(ptr) nounwind
declare i32 @atoi(ptr) nounwind
declare i32 @sched_getaffinity(i32, i64, ptr) nounwind
declare i64 @llvm.ctpop.i64(i64)
$PAUSE_DECL

@tdsl_pool_n = internal global i32 0          ; threads, the launching one included; 0: not started
@tdsl_pool_pid = internal global i32 0        ; the process that started them (a fork child has none)
@tdsl_pool_busy = internal global i32 0       ; 1 while a launch owns the pool
@tdsl_pool_gen = internal global i32 0        ; bumped per launch; idle workers wait on it
@tdsl_pool_gen0 = internal global i32 0       ; its value when the workers were started
@tdsl_pool_pending = internal global i32 0    ; workers that have not finished this launch
@tdsl_pool_fn = internal global ptr null
@tdsl_pool_ctx = internal global ptr null
@tdsl_pool_total = internal global i64 0

define internal void @tdsl_futex_wait(ptr %word, i32 %old) nounwind {
  %o = zext i32 %old to i64
  %r = call i64 (i64, ...) @syscall(i64 $SYS_FUTEX, ptr %word, i64 128, i64 %o, ptr null)
  ret void
}

define internal void @tdsl_futex_wake(ptr %word) nounwind {
  %r = call i64 (i64, ...) @syscall(i64 $SYS_FUTEX, ptr %word, i64 129, i64 2147483647, ptr null)
  ret void
}

; Returns *word once it differs from old: spin `spin` times, then sleep on the futex.
define internal i32 @tdsl_await_change(ptr %word, i32 %old, i32 %spin) nounwind {
entry:
  br label %spinning
spinning:
  %i = phi i32 [0, %entry], [%i1, %pause]
  %v = load atomic i32, ptr %word acquire, align 4
  %changed = icmp ne i32 %v, %old
  br i1 %changed, label %out, label %more
more:
  %i1 = add i32 %i, 1
  %keep = icmp ult i32 %i1, %spin
  br i1 %keep, label %pause, label %sleep
pause:
  $PAUSE
  br label %spinning
sleep:
  call void @tdsl_futex_wait(ptr %word, i32 %old)
  %w = load atomic i32, ptr %word acquire, align 4
  %woke = icmp ne i32 %w, %old
  br i1 %woke, label %out2, label %sleep
out:
  ret i32 %v
out2:
  ret i32 %w
}

; [w * total / n, (w + 1) * total / n): worker w's static share
define internal i64 @tdsl_share(i64 %total, i32 %w, i32 %n) nounwind {
  %ww = sext i32 %w to i64
  %nn = sext i32 %n to i64
  %p = mul i64 %ww, %total
  %r = sdiv i64 %p, %nn
  ret i64 %r
}

define internal ptr @tdsl_pool_worker(ptr %arg) nounwind {
entry:
  %w = ptrtoint ptr %arg to i32
  %g0 = load atomic i32, ptr @tdsl_pool_gen0 acquire, align 4
  br label %wait
wait:
  %seen = phi i32 [%g0, %entry], [%g, %next]
  %g = call i32 @tdsl_await_change(ptr @tdsl_pool_gen, i32 %seen, i32 $WORKER_SPIN)
  %fn = load ptr, ptr @tdsl_pool_fn
  %ctx = load ptr, ptr @tdsl_pool_ctx
  %total = load i64, ptr @tdsl_pool_total
  %n = load i32, ptr @tdsl_pool_n
  %begin = call i64 @tdsl_share(i64 %total, i32 %w, i32 %n)
  %w1 = add i32 %w, 1
  %end = call i64 @tdsl_share(i64 %total, i32 %w1, i32 %n)
  %some = icmp slt i64 %begin, %end
  br i1 %some, label %run, label %report
run:
  call void %fn(ptr %ctx, i64 %begin, i64 %end)
  br label %report
report:
  %left = atomicrmw sub ptr @tdsl_pool_pending, i32 1 acq_rel
  %last = icmp eq i32 %left, 1
  br i1 %last, label %wake, label %next
wake:
  call void @tdsl_futex_wake(ptr @tdsl_pool_pending)
  br label %next
next:
  br label %wait
}

define internal i32 @tdsl_env_threads(ptr %name) nounwind {
entry:
  %s = call ptr @getenv(ptr %name)
  %none = icmp eq ptr %s, null
  br i1 %none, label %zero, label %parse
parse:
  %n = call i32 @atoi(ptr %s)
  %pos = icmp sgt i32 %n, 0
  %r = select i1 %pos, i32 %n, i32 0
  ret i32 %r
zero:
  ret i32 0
}

define internal i32 @tdsl_num_threads() nounwind {
entry:
  %mask = alloca [16 x i64], align 8
  %a = call i32 @tdsl_env_threads(ptr @e.threads)
  %ha = icmp sgt i32 %a, 0
  br i1 %ha, label %done_a, label %omp
done_a:
  br label %clamp
omp:
  %b = call i32 @tdsl_env_threads(ptr @e.omp)
  %hb = icmp sgt i32 %b, 0
  br i1 %hb, label %clamp, label %affinity
affinity:
  call void @llvm.memset.p0.i64(ptr %mask, i8 0, i64 128, i1 false)
  %rc = call i32 @sched_getaffinity(i32 0, i64 128, ptr %mask)
  %ok = icmp eq i32 %rc, 0
  br i1 %ok, label %count, label %one
one:
  br label %clamp
count:
  br label %chead
chead:
  %i = phi i64 [0, %count], [%i1, %cbody]
  %acc = phi i64 [0, %count], [%acc1, %cbody]
  %more = icmp ult i64 %i, 16
  br i1 %more, label %cbody, label %cdone
cbody:
  %wp = getelementptr inbounds i64, ptr %mask, i64 %i
  %word = load i64, ptr %wp
  %bits = call i64 @llvm.ctpop.i64(i64 %word)
  %acc1 = add i64 %acc, %bits
  %i1 = add i64 %i, 1
  br label %chead
cdone:
  %c = trunc i64 %acc to i32
  br label %clamp
clamp:
  %n = phi i32 [%a, %done_a], [%b, %omp], [1, %one], [%c, %cdone]
  %lo = icmp slt i32 %n, 1
  %n1 = select i1 %lo, i32 1, i32 %n
  %hi = icmp sgt i32 %n1, 256
  %n2 = select i1 %hi, i32 256, i32 %n1
  ret i32 %n2
}
declare void @llvm.memset.p0.i64(ptr, i8, i64, i1)

; Called with the pool owned: the thread count, starting the workers in this process if needed.
define internal i32 @tdsl_pool_start() nounwind {
entry:
  %tid = alloca i64, align 8
  %pid = call i32 @getpid()
  %n0 = load i32, ptr @tdsl_pool_n
  %started = icmp ne i32 %n0, 0
  %owner = load i32, ptr @tdsl_pool_pid
  %here = icmp eq i32 %owner, %pid
  %ready = and i1 %started, %here
  br i1 %ready, label %have, label %start
have:
  ret i32 %n0
start:
  %n = call i32 @tdsl_num_threads()
  store i32 %pid, ptr @tdsl_pool_pid
  store i32 0, ptr @tdsl_pool_pending
  %g = load i32, ptr @tdsl_pool_gen
  store atomic i32 %g, ptr @tdsl_pool_gen0 release, align 4
  store i32 %n, ptr @tdsl_pool_n
  br label %head
head:
  %w = phi i32 [1, %start], [%w1, %made]
  %more = icmp slt i32 %w, %n
  br i1 %more, label %make, label %done
make:
  %arg = inttoptr i32 %w to ptr
  %rc = call i32 @pthread_create(ptr %tid, ptr null, ptr @tdsl_pool_worker, ptr %arg)
  %ok = icmp eq i32 %rc, 0
  %w1 = add i32 %w, 1
  br i1 %ok, label %made, label %short
made:
  br label %head
short:                                  ; fewer threads than asked: the pool is what started
  store i32 %w, ptr @tdsl_pool_n
  ret i32 %w
done:
  ret i32 %n
}

; Runs fn(ctx, begin, end) over [0, total) in static shares, the calling thread taking the first.
define $EXPORT i32 @tdsl_parallel_for(ptr %fn, ptr %ctx, i64 %total) nounwind {
entry:
  %few = icmp slt i64 %total, 2
  br i1 %few, label %serial, label %try
try:
  %cas = cmpxchg ptr @tdsl_pool_busy, i32 0, i32 1 acquire monotonic
  %got = extractvalue { i32, i1 } %cas, 1
  br i1 %got, label %owned, label %serial
serial:
  %pos = icmp sgt i64 %total, 0
  br i1 %pos, label %serial.run, label %serial.done
serial.run:
  call void %fn(ptr %ctx, i64 0, i64 %total)
  br label %serial.done
serial.done:
  ret i32 0
owned:
  %n = call i32 @tdsl_pool_start()
  %alone = icmp sle i32 %n, 1
  br i1 %alone, label %owned.serial, label %launch
owned.serial:
  call void %fn(ptr %ctx, i64 0, i64 %total)
  store atomic i32 0, ptr @tdsl_pool_busy release, align 4
  ret i32 0
launch:
  store ptr %fn, ptr @tdsl_pool_fn
  store ptr %ctx, ptr @tdsl_pool_ctx
  store i64 %total, ptr @tdsl_pool_total
  %workers = sub i32 %n, 1
  store atomic i32 %workers, ptr @tdsl_pool_pending release, align 4
  %g = atomicrmw add ptr @tdsl_pool_gen, i32 1 release
  call void @tdsl_futex_wake(ptr @tdsl_pool_gen)
  %end0 = call i64 @tdsl_share(i64 %total, i32 1, i32 %n)
  %mine = icmp slt i64 0, %end0
  br i1 %mine, label %run, label %wait
run:
  call void %fn(ptr %ctx, i64 0, i64 %end0)
  br label %wait
wait:
  %left = load atomic i32, ptr @tdsl_pool_pending acquire, align 4
  %done = icmp eq i32 %left, 0
  br i1 %done, label %finish, label %block
block:
  %now = call i32 @tdsl_await_change(ptr @tdsl_pool_pending, i32 %left, i32 $MAIN_SPIN)
  br label %wait
finish:
  store atomic i32 0, ptr @tdsl_pool_busy release, align 4
  ret i32 0
}
"""

_FFI_LAUNCH = r"""
declare i32 @TVMFFIFunctionGetGlobal(ptr, ptr) nounwind
declare i32 @TVMFFIFunctionCall(ptr, ptr, i32, ptr)

@tdsl_launch_fn = internal global ptr null

; The same contract through the TVM-FFI global function tiledsl.parallel_launch(task, ctx, total)
; (task and ctx as opaque pointers). A failure inside it (a Python exception) is returned as -1
; with the error left raised, so the kernel's caller sees it.
define $EXPORT i32 @tdsl_ffi_parallel_for(ptr %fn, ptr %ctx, i64 %total) {
entry:
  %name = alloca { ptr, i64 }, align 8
  %h.out = alloca ptr, align 8
  %args = alloca [3 x { i32, i32, i64 }], align 8
  %res = alloca { i32, i32, i64 }, align 8
  %few = icmp slt i64 %total, 2
  br i1 %few, label %serial, label %lookup
lookup:
  %cached = load atomic ptr, ptr @tdsl_launch_fn acquire, align 8
  %have = icmp ne ptr %cached, null
  br i1 %have, label %call, label %find
find:
  store { ptr, i64 } { ptr @s.launch, i64 $LAUNCH_LEN }, ptr %name
  store ptr null, ptr %h.out
  %rc = call i32 @TVMFFIFunctionGetGlobal(ptr %name, ptr %h.out)
  %h = load ptr, ptr %h.out
  %found0 = icmp eq i32 %rc, 0
  %nonnull = icmp ne ptr %h, null
  %found = and i1 %found0, %nonnull
  br i1 %found, label %keep, label %serial
keep:                                   ; the registry holds the function for the process's life
  store atomic ptr %h, ptr @tdsl_launch_fn release, align 8
  br label %call
call:
  %f = phi ptr [%cached, %lookup], [%h, %keep]
  %fnv = ptrtoint ptr %fn to i64
  %ctxv = ptrtoint ptr %ctx to i64
  %a0 = getelementptr inbounds [3 x { i32, i32, i64 }], ptr %args, i64 0, i64 0
  store { i32, i32, i64 } { i32 4, i32 0, i64 0 }, ptr %a0
  %a0v = getelementptr inbounds i8, ptr %a0, i64 8
  store i64 %fnv, ptr %a0v
  %a1 = getelementptr inbounds [3 x { i32, i32, i64 }], ptr %args, i64 0, i64 1
  store { i32, i32, i64 } { i32 4, i32 0, i64 0 }, ptr %a1
  %a1v = getelementptr inbounds i8, ptr %a1, i64 8
  store i64 %ctxv, ptr %a1v
  %a2 = getelementptr inbounds [3 x { i32, i32, i64 }], ptr %args, i64 0, i64 2
  store { i32, i32, i64 } { i32 1, i32 0, i64 0 }, ptr %a2
  %a2v = getelementptr inbounds i8, ptr %a2, i64 8
  store i64 %total, ptr %a2v
  store { i32, i32, i64 } zeroinitializer, ptr %res
  %crc = call i32 @TVMFFIFunctionCall(ptr %f, ptr %args, i32 3, ptr %res)
  %failed = icmp ne i32 %crc, 0
  %r = select i1 %failed, i32 -1, i32 0
  ret i32 %r
serial:
  %pos = icmp sgt i64 %total, 0
  br i1 %pos, label %serial.run, label %serial.done
serial.run:
  call void %fn(ptr %ctx, i64 0, i64 %total)
  br label %serial.done
serial.done:
  ret i32 0
}
"""
