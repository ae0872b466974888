"""The LLVM backend's runtime, in LLVM IR: the argument checks the entry points call
(checks.py) and the parallel-for that runs a kernel's grid.

Two parallel-fors, measured against each other in benchmarks/bench_backends.py (the pool
launches a small grid ~10x faster):

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

from .builder import string_globals
from .checks import CHECK_SYMBOLS, render_checks

__all__ = ["render_runtime", "RUNTIME_SYMBOLS"]

RUNTIME_SYMBOLS = CHECK_SYMBOLS + ("tdsl_parallel_for", "tdsl_ffi_parallel_for")

_SYS_FUTEX = {"x86_64": 202, "aarch64": 98}
# The spin-wait hint: x86's `pause`, AArch64's `yield` (hint #1).
_PAUSE = {"x86_64": ("declare void @llvm.x86.sse2.pause()", "call void @llvm.x86.sse2.pause()"),
          "aarch64": ("declare void @llvm.aarch64.hint(i32)", "call void @llvm.aarch64.hint(i32 1)")}

# Spin iterations before sleeping: a worker between launches (short: the machine may be
# shared), the launching thread waiting for its workers (long: it is about to continue).
_WORKER_SPIN, _MAIN_SPIN = 20000, 1 << 20
_LAUNCH_NAME = "tiledsl.parallel_launch"
_STRINGS = {"e.threads": "TILEDSL_NUM_THREADS", "e.omp": "OMP_NUM_THREADS", "s.launch": _LAUNCH_NAME}


def render_runtime(arch: str = "x86_64", embedded: bool = False) -> str:
    """The runtime module's text for `arch` (x86_64 or aarch64); `embedded` makes the symbols
    hidden, for a library that carries its own copy."""
    if arch not in _SYS_FUTEX:
        raise ValueError(f"the LLVM backend's runtime supports x86_64 and aarch64 Linux, not {arch}")
    exported = "hidden" if embedded else ""
    subst = {"$EXPORT": exported, "$SYS_FUTEX": str(_SYS_FUTEX[arch]), "$PAUSE_DECL": _PAUSE[arch][0],
             "$PAUSE": _PAUSE[arch][1], "$WORKER_SPIN": str(_WORKER_SPIN), "$MAIN_SPIN": str(_MAIN_SPIN),
             "$LAUNCH_LEN": str(len(_LAUNCH_NAME))}
    text = _POOL + _FFI_LAUNCH
    for k in sorted(subst, key=len, reverse=True):  # $PAUSE_DECL before $PAUSE
        text = text.replace(k, subst[k])
    return "; tiledsl LLVM runtime\n" + render_checks(exported) + text + string_globals(_STRINGS)


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

; All of [0, total) on the calling thread (nothing when the grid is empty).
define internal void @tdsl_run_serial(ptr %fn, ptr %ctx, i64 %total) {
entry:
  %pos = icmp sgt i64 %total, 0
  br i1 %pos, label %run, label %done
run:
  call void %fn(ptr %ctx, i64 0, i64 %total)
  br label %done
done:
  ret void
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
  call void @tdsl_run_serial(ptr %fn, ptr %ctx, i64 %total)
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
declare i32 @TVMFFIObjectDecRef(ptr) nounwind

; The same contract through the TVM-FFI global function tiledsl.parallel_launch(task, ctx, total)
; (task and ctx as opaque pointers), looked up per launch so that re-registering it takes effect.
; A failure inside it (a Python exception) is returned as -1 with the error left raised, so the
; kernel's caller sees it.
define $EXPORT i32 @tdsl_ffi_parallel_for(ptr %fn, ptr %ctx, i64 %total) {
entry:
  %name = alloca { ptr, i64 }, align 8
  %h.out = alloca ptr, align 8
  %args = alloca [3 x { i32, i32, i64 }], align 8
  %res = alloca { i32, i32, i64 }, align 8
  %few = icmp slt i64 %total, 2
  br i1 %few, label %serial, label %lookup
lookup:
  store { ptr, i64 } { ptr @s.launch, i64 $LAUNCH_LEN }, ptr %name
  store ptr null, ptr %h.out
  %rc = call i32 @TVMFFIFunctionGetGlobal(ptr %name, ptr %h.out)
  %h = load ptr, ptr %h.out
  %found0 = icmp eq i32 %rc, 0
  %nonnull = icmp ne ptr %h, null
  %found = and i1 %found0, %nonnull
  br i1 %found, label %call, label %serial
call:
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
  %crc = call i32 @TVMFFIFunctionCall(ptr %h, ptr %args, i32 3, ptr %res)
  %d = call i32 @TVMFFIObjectDecRef(ptr %h)
  %failed = icmp ne i32 %crc, 0
  %r = select i1 %failed, i32 -1, i32 0
  ret i32 %r
serial:
  call void @tdsl_run_serial(ptr %fn, ptr %ctx, i64 %total)
  ret i32 0
}
"""
