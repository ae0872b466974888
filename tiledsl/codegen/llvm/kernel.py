"""LLVM IR for the statements of the flattened loop IR, and the outlining of the grid.

The IR is what `codegen/cpu.py` renders as C++; each construct keeps the C++ backend's
meaning. A `Kernel` (the grid) becomes three functions, because LLVM has no OpenMP pragma to
lean on:

    <sym>_blocks<n>(A, B, ..., begin, end)  runs blocks [begin, end) of the grid: declares the
                                            block's tiles once (64-byte aligned; on the stack up
                                            to 64 KiB, else on the heap) and reuses them, as the
                                            C++ backend does per OpenMP worker. Tensor pointers
                                            are `noalias`, like `__restrict__` there.
    <sym>_task<n>(ctx, begin, end)          the same with its arguments packed in a context
                                            block, the signature the parallel runtime calls.
    the launch site                         packs the context and calls the runtime's
                                            parallel-for over the flattened grid (bx fastest).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Dict, List

from ... import ir
from ...ir import (Assign, Buffer, BufferPtr, Const, Decl, Evaluate, ExternCall, For, If, Kernel, Load,
                   Seq, Stmt, Store, Var, walk)
from ...ir.analysis import loop_range
from ...ir.expr import INDEX as _INDEX
from .builder import Function, Module, Val
from .expr import ExprEmitter, storage_type, value_type
from .externs import llvm_definition

__all__ = ["BodyEmitter", "RenderOptions", "ident"]

_STACK_LIMIT = 64 * 1024  # bytes; as the C++ backend


@dataclass(frozen=True)
class RenderOptions:
    """What besides the IR shapes the generated module (all of it part of the cache key)."""
    symbol: str
    f16_hw: bool = True          # the target converts float16 in hardware (F16C, AArch64)
    parallel: str = "pool"       # "pool": the runtime's thread pool; "ffi": a TVM-FFI global function
    fn_attrs: str = "nounwind"   # attributes of every kernel function


def ident(name: str) -> str:
    """An LLVM local name for an IR name."""
    return re.sub(r"[^A-Za-z0-9_.]", "_", name)


class BodyEmitter(ExprEmitter):
    """Emits statements into `fn`; `Kernel`s are outlined into functions of `module`."""

    def __init__(self, fn: Function, module: Module, opts: RenderOptions, counter: List[int]):
        super().__init__(fn, opts.f16_hw)
        self.module, self.opts, self.counter = module, opts, counter

    def stmt(self, s: Stmt) -> None:
        getattr(self, "s_" + type(s).__name__)(s)

    def s_Seq(self, s: Seq) -> None:
        for x in s.stmts:
            self.stmt(x)

    def s_For(self, s: For) -> None:
        f = self.fn
        ty = value_type(s.var.dtype)
        start = self.convert(self.expr(s.start), s.start.dtype, s.var.dtype)
        ext = self.convert(self.expr(s.extent), s.extent.dtype, s.var.dtype)
        zero = isinstance(s.start, Const) and s.start.value == 0
        end = ext if zero else f.op(ty, f"add nsw {start}, {ext.ref}")
        slot = f.alloca(ty, base="i." + ident(s.var.name) + ".")
        f.store(start, slot)
        head, body, done = f.new_label("for.head"), f.new_label("for.body"), f.new_label("for.end")
        f.br(head)
        f.start_block(head)
        i = f.load(ty, slot)
        f.cbr(f.op("i1", f"icmp slt {i}, {end.ref}"), body, done)
        f.start_block(body)
        self.values[s.var] = i
        self.ranges[s.var] = loop_range(s.start, s.extent, self.ranges)
        self.stmt(s.body)
        del self.values[s.var], self.ranges[s.var]
        f.store(f.op(ty, f"add nsw {i}, 1"), slot)
        f.br(head, self._loop_md(s))
        f.start_block(done)

    def _loop_md(self, s: For) -> str:
        if s.kind == "vectorized":
            return self.module.loop_md('!{!"llvm.loop.vectorize.enable", i1 true}')
        if s.kind == "unroll":  # the C++ backend's `#pragma GCC unroll 16`
            return self.module.loop_md('!{!"llvm.loop.unroll.count", i32 16}')
        return ""

    def s_If(self, s: If) -> None:
        f = self.fn
        cond = self.expr(s.cond)
        then, other, done = f.new_label("if.then"), f.new_label("if.else"), f.new_label("if.end")
        f.cbr(cond, then, other if s.else_ is not None else done)
        f.start_block(then)
        self.stmt(s.then)
        f.br(done)
        if s.else_ is not None:
            f.start_block(other)
            self.stmt(s.else_)
            f.br(done)
        f.start_block(done)

    def s_Store(self, s: Store) -> None:
        if not s.atomic and _same_narrow_float(s):  # a copy moves the stored bits (as numpy does)
            dt = s.buffer.dtype
            raw = self.fn.load(storage_type(dt), self.address(s.value.buffer, s.value.indices[0]))
            self.fn.store(raw, self.address(s.buffer, s.indices[0]))
            return
        v = self.convert(self.expr(s.value), s.value.dtype, s.buffer.dtype)
        if s.atomic:
            self.atomic_store(s, v, self.address(s.buffer, s.indices[0]))
            return
        self.fn.store(self.to_storage(v, s.buffer.dtype), self.address(s.buffer, s.indices[0]))

    def atomic_store(self, s: Store, v: Val, ptr: Val) -> None:
        """`T.atomic_*` on one element, as the C++ backend: an integer add is one `atomicrmw`;
        everything else a `cmpxchg` loop on the element's bits that combines the old value as
        the non-atomic code would (`old > v ? old : v` for max, 16-bit floats in float)."""
        f, dt = self.fn, s.buffer.dtype
        st, bits = storage_type(dt), f"i{dt.bits}"
        if s.atomic == "add" and dt.is_int:
            f.op(st, f"atomicrmw add ptr {ptr.ref}, {v} monotonic")
            return
        as_bits = (lambda x: x) if st == bits else (lambda x: f.op(bits, f"bitcast {x} to {bits}"))
        first = as_bits(f.op(st, f"load atomic {st}, ptr {ptr.ref} monotonic, align {dt.itemsize}"))
        before, loop, done = f.cur_label, f.new_label("atomic"), f.new_label("atomic_done")
        f.br(loop)
        f.start_block(loop)
        body = f.cur
        old, seen = f.tmp("old"), f.tmp("seen")
        stored = Val(old, bits) if st == bits else f.op(st, f"bitcast {bits} {old} to {st}")
        op = {"add": "+", "max": "max", "min": "min"}[s.atomic]
        new = self.arith(op, self.from_storage(stored, dt), v, dt, None, dt)
        pair = f.op(f"{{ {bits}, i1 }}", f"cmpxchg ptr {ptr.ref}, {bits} {old}, "
                                         f"{as_bits(self.to_storage(new, dt))} monotonic monotonic")
        f.emit(f"{seen} = extractvalue {pair}, 0")
        ok = f.op("i1", f"extractvalue {pair}, 1")
        body.insert(0, f"{old} = phi {bits} [ {first.ref}, %{before} ], [ {seen}, %{f.cur_label} ]")
        f.cbr(ok, done, loop)
        f.start_block(done)

    def s_Decl(self, s: Decl) -> None:
        if s.var not in self.slots:
            self.slots[s.var] = self.fn.alloca(value_type(s.var.dtype), base=ident(s.var.name) + ".")
        self.s_Assign(s)

    def s_Assign(self, s: Assign) -> None:
        v = self.convert(self.expr(s.value), s.value.dtype, s.var.dtype)
        self.fn.store(v, self.slots[s.var])

    def s_Evaluate(self, s: Evaluate) -> None:
        self.expr(s.value)

    def s_ExternCall(self, s: ExternCall) -> None:
        """A call of a GEMM micro-kernel (written in LLVM IR by its registry row) or of a
        `T.print` function (see externs.py)."""
        self.module.define(s.name, llvm_definition(s))
        args = [self.address(a.buffer, a.offset) if isinstance(a, BufferPtr) else self.expr(a)
                for a in s.args]
        self.fn.call("void", "@" + s.name, args)

    # ---- the grid ----

    def s_Kernel(self, k: Kernel) -> None:
        if self.fn.ret != "i32":
            raise NotImplementedError("a T.Kernel inside another T.Kernel")
        n = self.counter[0]
        self.counter[0] += 1
        sym = self.opts.symbol
        bufs, scalars = self._captures(k)
        blocks = self._blocks_function(k, f"{sym}_blocks{n}", bufs, scalars)
        task = self._task_function(f"{sym}_task{n}", blocks, bufs, scalars)
        f = self.fn
        blocks_total = ir.const(1)
        for g in k.grid:
            blocks_total = blocks_total * g  # folds when the grid is static
        total = self.index(blocks_total)
        nslots = max(1, len(bufs) + len(scalars))
        ctx = f.alloca("i64", nslots, align=8, base="ctx")
        values = [self.buffers[b.name] for b in bufs] + [self.expr(v) for v in scalars]
        for i, v in enumerate(values):
            f.store(v, f.gep("i64", ctx, Val(str(i), "i64")))
        launch = "@tdsl_parallel_for" if self.opts.parallel == "pool" else "@tdsl_ffi_parallel_for"
        self.module.declare(launch[1:], f"declare i32 {launch}(ptr, ptr, i64)")
        rc = f.call("i32", launch, [Val("@" + task, "ptr"), ctx, total])
        ok, failed = f.new_label("launched"), f.new_label("launch.failed")
        f.cbr(f.op("i1", f"icmp eq {rc}, 0"), ok, failed)
        f.start_block(failed)  # the launcher raised (a TVM-FFI error is set): pass it on
        f.emit("ret i32 -1")
        f.start_block(ok)

    def _captures(self, k: Kernel):
        """The tensors and scalar variables of the enclosing scope that the kernel uses."""
        local = {b.name for b in k.allocs}
        bufs: Dict[str, Buffer] = {}
        vars_: Dict[Var, None] = {}

        def visit(node):
            b = getattr(node, "buffer", None)
            if isinstance(node, (Load, Store, BufferPtr)) and b.name not in local:
                bufs.setdefault(b.name, b)
            elif isinstance(node, Var) and (node in self.values or node in self.slots):
                vars_[node] = None
        walk(k, visit)
        return list(bufs.values()), [v for v in vars_ if v not in k.block_vars]

    def _blocks_function(self, k: Kernel, name: str, bufs, scalars) -> str:
        params = [("ptr", "b." + ident(b.name), "noalias") for b in bufs]
        params += [(value_type(v.dtype), "v." + ident(v.name), "") for v in scalars]
        params += [("i64", "begin", ""), ("i64", "end", "")]
        fn = self.module.function(name, "void", params, attrs=self.opts.fn_attrs)
        inner = BodyEmitter(fn, self.module, self.opts, self.counter)
        inner.buffers = {b.name: Val("%b." + ident(b.name), "ptr") for b in bufs}
        inner.values = {v: Val("%v." + ident(v.name), value_type(v.dtype)) for v in scalars}
        inner.ranges = {v: r for v, r in self.ranges.items() if v in inner.values}
        heap = []
        for b in k.allocs:
            count, st = b.shape[0].value, storage_type(b.dtype)
            if count * b.dtype.itemsize <= _STACK_LIMIT:
                inner.buffers[b.name] = fn.alloca(st, max(count, 1), align=64, base=ident(b.name) + ".")
            else:
                inner.buffers[b.name] = _heap_alloc(fn, self.module, count * b.dtype.itemsize)
                heap.append(inner.buffers[b.name])
        grid = [inner.index(g) for g in k.grid]
        id_slot = fn.alloca("i64", base="block.")
        fn.store(Val("%begin", "i64"), id_slot)
        head, body, done = fn.new_label("grid.head"), fn.new_label("grid.body"), fn.new_label("grid.end")
        fn.br(head)
        fn.start_block(head)
        bid = fn.load("i64", id_slot)
        fn.cbr(fn.op("i1", f"icmp slt {bid}, %end"), body, done)
        fn.start_block(body)
        rest = bid
        for d, (v, g) in enumerate(zip(k.block_vars, grid)):  # bx varies fastest, as on a GPU
            last = d == len(grid) - 1
            idx = rest if last else fn.op("i64", f"urem {rest}, {g.ref}")
            if not last:
                rest = fn.op("i64", f"udiv {rest}, {g.ref}")
            inner.values[v] = inner.convert(idx, _INDEX, v.dtype)
            inner.ranges[v] = loop_range(Const(0), k.grid[d], inner.ranges)
        inner.stmt(k.body)
        fn.store(fn.op("i64", f"add nsw {bid}, 1"), id_slot)
        fn.br(head)
        fn.start_block(done)
        for p in heap:
            fn.call("void", "@free", [p])
        fn.emit("ret void")
        return name

    def _task_function(self, name: str, blocks: str, bufs, scalars) -> str:
        fn = self.module.function(name, "void", [("ptr", "ctx", "nocapture readonly"), ("i64", "begin", ""),
                                                 ("i64", "end", "")], attrs=self.opts.fn_attrs)
        types = ["ptr"] * len(bufs) + [value_type(v.dtype) for v in scalars]
        args = [fn.load(t, fn.gep("i64", Val("%ctx", "ptr"), Val(str(i), "i64"))) for i, t in enumerate(types)]
        fn.call("void", "@" + blocks, args + [Val("%begin", "i64"), Val("%end", "i64")])
        fn.emit("ret void")
        return name


def _heap_alloc(fn: Function, module: Module, nbytes: int) -> Val:
    module.declare("posix_memalign", "declare i32 @posix_memalign(ptr, i64, i64) nounwind")
    module.declare("free", "declare void @free(ptr) nounwind")
    module.declare("abort", "declare void @abort() noreturn nounwind")
    slot = fn.alloca("ptr", base="heap.")
    rc = fn.call("i32", "@posix_memalign", [slot, Val("64", "i64"), Val(str(max(nbytes, 64)), "i64")])
    ok, bad = fn.new_label("alloc.ok"), fn.new_label("alloc.fail")
    fn.cbr(fn.op("i1", f"icmp eq {rc}, 0"), ok, bad)
    fn.start_block(bad)
    fn.call("void", "@abort", [])
    fn.emit("unreachable")
    fn.start_block(ok)
    return fn.load("ptr", slot)


def _same_narrow_float(s: Store) -> bool:
    """A narrow float stored straight from a load of the same type: a copy, with no rounding to
    do. Going through float would cost a conversion each way and quiet signalling NaNs."""
    v = s.value
    return (isinstance(v, Load) and s.buffer.dtype.is_narrow_float
            and v.buffer.dtype == s.buffer.dtype and v.dtype == s.buffer.dtype)
