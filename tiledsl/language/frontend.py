"""The frontend: a decorated Python function's AST becomes a `PrimFunc`.

It parses, it does not trace. Names resolve in the function's own environment (closure,
globals, builtins): a Python value (a tile size, a dtype, a helper) is used as a value at
definition time, and only what depends on run-time data (block indices, loop variables,
buffer elements, scalar parameters) becomes IR. So `if block_M > 32:` picks a branch now,
while `if bx < n:` becomes an `If` node. Every node records the user's file:line.
"""
from __future__ import annotations

import ast
import builtins as _py
import difflib
import functools
import inspect
import linecache
import re
import operator
import textwrap
from typing import Any, Callable, Optional

from .. import ir
from ..errors import FrontendError, TileDSLError, TypeCheckError
from ..ir import Buffer, Expr, Span, Var
from . import builtins as T
from .tileops import TILE_HANDLERS, RegionRef, _VarDecl, usage_hint

__all__ = ["prim_func", "parse"]

_PY_BINOPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.FloorDiv: "//",
              ast.Mod: "%", ast.BitXor: "^", ast.BitAnd: "&", ast.BitOr: "|", ast.LShift: "<<",
              ast.RShift: ">>", ast.Pow: "**"}
_PY_CMPS = {ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.Eq: "==", ast.NotEq: "!="}
_PY_FUNCS = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv,
             "//": operator.floordiv, "%": operator.mod, "^": operator.xor, "&": operator.and_,
             "|": operator.or_, "<<": operator.lshift, ">>": operator.rshift, "**": operator.pow,
             "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
             "==": operator.eq, "!=": operator.ne}
_WHOLE_TILE_OPS = {"copy", "gemm", "fill", "clear", "reduce_max", "reduce_min", "reduce_sum",
                   "reduce_abssum", "reduce_absmax", "cumsum", "use_swizzle"}
_LOOP_KINDS = {"loop_parallel": "parallel", "loop_pipelined": "pipelined", "loop_serial": "serial",
               "loop_unroll": "unroll", "loop_vectorized": "vectorized"}


def prim_func(fn: Callable) -> ir.PrimFunc:
    """Parse `fn` into a PrimFunc.

    >>> @T.prim_func
    ... def add_one(A: T.Tensor((16,), "float32")):
    ...     with T.Kernel(1) as bx:
    ...         for i in T.Parallel(16):
    ...             A[i] = A[i] + 1.0
    """
    # With `from __future__ import annotations` the annotations are strings naming the
    # factory's locals, which are not closure cells unless the body uses them too.
    frame = inspect.currentframe()
    caller = frame.f_back.f_locals if frame is not None and frame.f_back is not None else None
    return parse(fn, dict(caller) if caller else None)


def source_lines(fn: Callable) -> tuple:
    """(lines, first line number) of `fn`'s definition, decorators included, as
    `inspect.getsourcelines` gives them, found with the file's AST (parsed once per file
    version) instead of inspect's pure-Python tokenizer, which costs ~10 ms a first kernel."""
    code = getattr(fn, "__code__", None)
    file = inspect.getsourcefile(fn) if code is not None else None
    lines = linecache.getlines(file, fn.__globals__) if file else []
    if lines:
        try:
            tree = _file_ast(file, "".join(lines))
        except SyntaxError:
            tree = None
        for node in ast.walk(tree) if tree is not None else ():
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == fn.__name__:
                first = min([node.lineno] + [d.lineno for d in node.decorator_list])
                if first == code.co_firstlineno:
                    return lines[first - 1:node.end_lineno], first
    return inspect.getsourcelines(fn)


@functools.lru_cache(maxsize=32)
def _file_ast(file: str, text: str) -> ast.Module:
    return ast.parse(text, file)


def parse(fn: Callable, caller_locals: Optional[dict] = None) -> ir.PrimFunc:
    try:
        lines, first_line = source_lines(fn)
    except (OSError, TypeError) as e:
        raise FrontendError(f"cannot read the source of {getattr(fn, '__name__', fn)!r}: {e}",
                            hint="define kernels in a .py file (not an interactive string)") from None
    source = textwrap.dedent("".join(lines))
    indent = len(lines[0]) - len(lines[0].lstrip())
    tree = ast.parse(source)
    fdef = tree.body[0]
    if not isinstance(fdef, (ast.FunctionDef, ast.AsyncFunctionDef)):
        raise FrontendError(f"@T.prim_func must decorate a function, got {type(fdef).__name__}")
    file = inspect.getsourcefile(fn) or "<unknown>"
    parser = Parser(fn, file, first_line - 1, indent)
    if caller_locals:
        parser.annotation_env = caller_locals
    return parser.parse_function(fdef)


class _Scope(dict):
    """Names bound inside the kernel: IR vars, buffers and Python values."""


class Parser:
    def __init__(self, fn: Callable, file: str, line_offset: int, col_offset: int):
        self.fn = fn
        self.file = file
        self.line_offset = line_offset
        self.col_offset = col_offset
        self.globals = fn.__globals__
        self.closure = dict(inspect.getclosurevars(fn).nonlocals)
        self.scopes: list[_Scope] = [_Scope()]
        self.mutable: set = set()
        self.allocs: Optional[list] = None  # buffers allocated in the current T.Kernel
        self.layouts: dict = {}  # buffer name -> (Layout, Span) from T.annotate_layout
        self.used_names: dict[str, int] = {}
        self.func_name = fn.__name__
        self.finished: dict = {}  # tile name -> (Buffer, line) of kernels already parsed
        self.parallel_depth = 0  # T.Parallel loops around the statement being parsed
        self.block_locals: dict = {}  # run-time variable -> (line, "if" / "loop") it was local to
        self.kernel_swizzle: Optional[list] = None  # T.use_swizzle of the T.Kernel being parsed
        self.macro_depth = 0
        self.hoisted: list = []  # statements of macros called in the current statement's expressions

    # ---- helpers ----

    def span(self, node: ast.AST) -> Span:
        col = getattr(node, "col_offset", 0) + self.col_offset
        end = getattr(node, "end_col_offset", None)
        line = getattr(node, "lineno", 1)
        if end is not None and getattr(node, "end_lineno", line) != line:
            end = None
        return Span(self.file, line + self.line_offset, col,
                    None if end is None else end + self.col_offset, self.func_name)

    def error(self, node: ast.AST, msg: str, hint: Optional[str] = None, cls=FrontendError):
        return cls(msg, self.span(node), hint if hint is not None else usage_hint(msg))

    def unique(self, name: str) -> str:
        # "__" marks the names passes generate (transform/common.py Namer): a user's `i__1`
        # would be the same Var as a lowering's loop index.
        name = re.sub("_{2,}", "_", name)
        n = self.used_names.get(name, 0)
        self.used_names[name] = n + 1
        return name if n == 0 else f"{name}_{n}"

    def lookup(self, name: str, node: ast.AST) -> Any:
        for scope in reversed(self.scopes):
            if name in scope:
                return scope[name]
        if name in self.closure:
            return self.closure[name]
        if name in self.globals:
            return self.globals[name]
        if hasattr(_py, name):
            return getattr(_py, name)
        if name in self.block_locals:
            line, what = self.block_locals[name]
            raise self.error(node, f"'{name}' is assigned inside the {what} on line {line}, so it does not "
                                   f"exist after it",
                             hint=f"declare it before the {what} ({name} = T.alloc_var(\"float32\") or "
                                  f"{name} = T.float32(0)) and assign it inside")
        if name in self.finished:
            buf, line = self.finished[name]
            raise self.error(node, f"'{name}' is a {buf.scope} tile of the T.Kernel on line {line}: it "
                                   f"does not exist outside that block",
                             hint=f"use '{name}' inside the 'with T.Kernel' block; copy it to a global "
                                  f"tensor there (T.copy({name}, C[...])) to keep its values")
        raise self.error(node, f"name '{name}' is not defined",
                         hint="a kernel can use Python values from its enclosing scope, T.* "
                              "constructs, and names it assigns itself")

    def note_locals(self, node: ast.AST, what: str) -> None:
        """Remember the run-time variables of the scope just closed, to explain a later use."""
        for n, v in self.last_scope.items():
            if isinstance(v, Var) and v in self.mutable:
                self.block_locals.setdefault(n, (node.lineno + self.line_offset, what))

    def bind(self, name: str, value: Any) -> None:
        self.scopes[-1][name] = value

    def in_scope(self, body: Callable[[], Any], names: Optional[dict] = None):
        self.scopes.append(_Scope(names or {}))
        try:
            return body()
        finally:
            self.last_scope = self.scopes.pop()

    # ---- function ----

    def parse_function(self, fdef: ast.FunctionDef) -> ir.PrimFunc:
        annotations = getattr(self.fn, "__annotations__", {})
        params = []
        for arg in fdef.args.args:
            ann = annotations.get(arg.arg)
            if isinstance(ann, str):
                ann = self.annotation(arg, ann)
            if isinstance(ann, T.Tensor):
                value = Buffer(arg.arg, ann.shape, ann.dtype, "global")
            elif isinstance(ann, ir.DType) or isinstance(ann, str):
                if "__" in arg.arg:
                    raise self.error(arg, f"scalar parameter '{arg.arg}': names with '__' are reserved "
                                          f"for the variables tiledsl generates",
                                     hint=f"rename it, e.g. '{re.sub('_{2,}', '_', arg.arg)}'")
                value = Var(arg.arg, ir.dtype(ann))
            else:
                raise self.error(arg, f"parameter '{arg.arg}' needs an annotation: "
                                      f"T.Tensor(shape, dtype) or a scalar dtype such as T.int32",
                                 hint=f"{arg.arg}: T.Tensor((M, N), \"float32\") for a tensor, "
                                      f"{arg.arg}: T.int32 for a scalar")
            self.used_names[arg.arg] = 1
            self.bind(arg.arg, value)
            params.append(value)
        body = self.block(fdef.body)
        func = ir.PrimFunc(fdef.name, tuple(params), body, span=self.span(fdef))
        return ir.verify(func)

    def annotation(self, arg: ast.arg, text: str) -> Any:
        env = {**self.globals, **getattr(self, "annotation_env", {}), **self.closure}
        try:
            return eval(compile(text, self.file, "eval"), env)
        except Exception as e:
            raise self.error(arg, f"cannot evaluate the annotation of '{arg.arg}': {e}") from None

    # ---- statements ----

    def block(self, stmts: list) -> ir.Stmt:
        out = []
        for s in stmts:
            r = self.stmt(s)
            if r is not None:
                out.append(r)
        return ir.seq(*out) if out else ir.Seq(())

    def stmt(self, node: ast.stmt) -> Optional[ir.Stmt]:
        method = getattr(self, "stmt_" + type(node).__name__, None)
        if method is None:
            raise self.error(node, f"'{type(node).__name__}' statements are not supported in a kernel",
                             hint="kernels use for loops over T.Parallel / T.Pipelined / T.serial / "
                                  "range, if/else, assignments and T.* calls")
        # A macro called inside an expression places its statements before this statement.
        saved, self.hoisted = self.hoisted, []
        try:
            result = method(node)
            before = self.hoisted
        finally:
            self.hoisted = saved
        if before:
            return ir.seq(*before, *([result] if result is not None else []))
        return result

    def stmt_Pass(self, node):
        return None

    def stmt_Expr(self, node: ast.Expr):
        if isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            return None  # docstring
        value = self.expr(node.value)
        if isinstance(value, ir.Stmt):
            return value
        if isinstance(value, Expr):
            return ir.Evaluate(value, span=self.span(node))
        return None

    def stmt_Return(self, node: ast.Return):
        if node.value is not None:
            raise self.error(node, "a kernel cannot return a value",
                             hint="write results into an output tensor (and use out_idx)")
        raise self.error(node, "'return' is not supported inside a kernel")

    def stmt_Assert(self, node: ast.Assert):
        test = self.expr(node.test)
        if isinstance(test, Expr):
            raise self.error(node, "assert on a run-time value is not supported",
                             hint="assert checks Python values when the kernel is defined; test run-time "
                                  "values with if, or check them with target=\"interp\"")
        if not test:
            msg = self.eval_python(node.msg) if node.msg is not None else "assertion failed"
            raise self.error(node, f"{msg}")
        return None

    def stmt_Assign(self, node: ast.Assign):
        if len(node.targets) != 1:
            raise self.error(node, "chained assignment is not supported")
        target = node.targets[0]
        if isinstance(target, ast.Name):
            node.value._tdsl_target = target.id  # names the buffer an alloc_* call makes
        value = self.expr(node.value)
        return self.assign(target, value, node)

    def stmt_AnnAssign(self, node: ast.AnnAssign):
        if node.value is None:
            raise self.error(node, "a declaration needs a value")
        value = self.expr(node.value)
        dt = self.eval_python(node.annotation)
        if isinstance(value, (Expr, int, float)) and isinstance(dt, (ir.DType, str)):
            value = ir.cast(value, dt)
        return self.assign(node.target, value, node)

    def stmt_AugAssign(self, node: ast.AugAssign):
        op = _PY_BINOPS.get(type(node.op))
        target = node.target
        current = self.expr(target)
        value = self.binop(op, current, self.expr(node.value), node)
        return self.assign(target, value, node)

    def assign(self, target: ast.expr, value: Any, node: ast.AST) -> Optional[ir.Stmt]:
        if isinstance(target, ast.Subscript):
            return self.store(target, value, node)
        if isinstance(target, (ast.Tuple, ast.List)):
            if isinstance(value, Expr) or not hasattr(value, "__iter__"):
                raise self.error(node, "only Python values can be unpacked")
            values = list(value)
            if len(values) != len(target.elts):
                raise self.error(node, f"cannot unpack {len(values)} values into {len(target.elts)} names")
            out = [self.assign(t, v, node) for t, v in zip(target.elts, values)]
            return ir.seq(*[s for s in out if s is not None]) if any(out) else None
        if not isinstance(target, ast.Name):
            raise self.error(target, f"cannot assign to {type(target).__name__}")
        name = target.id
        if isinstance(value, _VarDecl):
            self.bind(name, value.var)
            return ir.Decl(value.var, value.init, span=self.span(node))
        current, depth = None, None
        for depth in range(len(self.scopes) - 1, -1, -1):
            if name in self.scopes[depth]:
                current = self.scopes[depth][name]
                break
        else:
            depth = None
        if isinstance(current, Var) and current in self.mutable:
            if isinstance(value, Buffer):
                raise self.error(node, f"'{name}' holds a scalar; it cannot become a buffer")
            return ir.Assign(current, ir.cast(value, current.dtype), span=self.span(node))
        if isinstance(current, Var) or (isinstance(current, Buffer) and current.scope == "global"):
            raise self.error(node, f"'{name}' is a kernel parameter and cannot be assigned",
                             hint="copy it into a local variable or buffer first")
        if isinstance(value, Expr) and isinstance(current, (int, float)) and depth is not None \
                and depth < len(self.scopes) - 1:
            # `s = 0.0` outside a loop, `s += x` inside: a Python number cannot carry a run-time
            # value across iterations, and silently starting a new local each time is wrong.
            raise self.error(node, f"'{name}' holds the Python number {current!r} from outside this "
                                   f"loop or branch, so it cannot accumulate a run-time value here",
                             hint=f"declare it as a run-time variable before the loop: "
                                  f"{name} = T.alloc_var(\"{value.dtype}\", {current!r}) "
                                  f"(or {name} = T.{value.dtype}({current!r}))")
        if isinstance(value, Expr):
            var = Var(self.unique(name), value.dtype)
            self.mutable.add(var)
            self.bind(name, var)
            return ir.Decl(var, value, span=self.span(node))
        self.bind(name, value)
        return None

    def store(self, target: ast.Subscript, value: Any, node: ast.AST) -> ir.Stmt:
        buf = self.expr(target.value)
        if not isinstance(buf, Buffer):
            raise self.error(target, "only buffer elements can be assigned with [...]")
        indices = self.indices(target)
        if any(isinstance(i, slice) for i in indices) or len(indices) != buf.ndim:
            raise self.error(target, f"'{buf.name}' has {buf.ndim} dimensions: store one element "
                                     f"with {buf.ndim} indices",
                             hint="use T.copy or T.fill to write a whole region", cls=TypeCheckError)
        if isinstance(value, Buffer) or isinstance(value, RegionRef):
            raise self.error(node, "a buffer cannot be stored into an element", cls=TypeCheckError,
                             hint="use T.copy(src, dst) to copy a tile, or index one element of it")
        self.check_indices(target, buf, indices)
        try:
            v = ir.cast(value, buf.dtype)
        except TypeError as e:
            raise self.error(node, str(e), cls=TypeCheckError) from None
        return ir.Store(buf, tuple(ir.convert(i) for i in indices), v, span=self.span(node))

    def stmt_If(self, node: ast.If):
        cond = self.expr(node.test)
        if not isinstance(cond, Expr):  # a Python value: the branch is chosen now
            taken = node.body if cond else node.orelse
            return self.block(taken) if taken else None
        then = self.in_scope(lambda: self.block(node.body))
        self.note_locals(node, "if")
        else_ = self.in_scope(lambda: self.block(node.orelse)) if node.orelse else None
        if node.orelse:
            self.note_locals(node, "if")
        if not cond.dtype.is_bool:
            cond = ir.binop("!=", cond, 0)
        return ir.If(cond, then, else_, span=self.span(node))

    def stmt_For(self, node: ast.For):
        if node.orelse:
            raise self.error(node, "for/else is not supported in a kernel")
        it = self.expr(node.iter)
        if not isinstance(it, _LoopSpec):
            return self.python_loop(node, it)
        names = [node.target] if isinstance(node.target, ast.Name) else list(getattr(node.target, "elts", []))
        if not all(isinstance(n, ast.Name) for n in names) or len(names) != len(it.extents):
            raise self.error(node.target, f"this loop has {len(it.extents)} indices: "
                                          f"write {len(it.extents)} names",
                             hint="for i, j in T.Parallel(8, 8): one name per extent")
        vars_ = [Var(self.unique(n.id)) for n in names]
        scope = {n.id: (v if it.steps[k] == 1 else it.starts[k] + v * it.steps[k])
                 for k, (n, v) in enumerate(zip(names, vars_))}
        self.parallel_depth += it.kind == "parallel"
        try:
            body = self.in_scope(lambda: self.block(node.body), scope)
        finally:
            self.parallel_depth -= it.kind == "parallel"
        self.note_locals(node, "loop")
        span = self.span(node)
        for k in reversed(range(len(vars_))):
            start = it.starts[k] if it.steps[k] == 1 else 0
            body = ir.For(vars_[k], ir.convert(start), ir.convert(it.extents[k]), it.kind, body,
                          it.annotations, span=span)
        return body

    def python_loop(self, node: ast.For, iterable: Any) -> Optional[ir.Stmt]:
        """A loop over a Python iterable is unrolled while parsing."""
        if isinstance(iterable, (Expr, Buffer)) or not hasattr(iterable, "__iter__"):
            raise self.error(node.iter, "a kernel loop must iterate over T.Parallel, T.Pipelined, "
                                        "T.serial, T.unroll or range(...)")
        out = []
        for value in iterable:
            def body(value=value):
                s = self.assign(node.target, value, node)
                return ir.seq(*(x for x in (s, self.block(node.body)) if x is not None))
            out.append(self.in_scope(body))
        return ir.seq(*out) if out else None

    def stmt_With(self, node: ast.With):
        if len(node.items) != 1:
            raise self.error(node, "use one T.Kernel(...) per with statement")
        item = node.items[0]
        spec = self.expr(item.context_expr)
        if not isinstance(spec, _KernelSpec):
            raise self.error(item.context_expr, "only 'with T.Kernel(...) as ...' is supported")
        if self.allocs is not None:
            raise self.error(node, "T.Kernel cannot be nested inside another T.Kernel")
        names = []
        if item.optional_vars is not None:
            t = item.optional_vars
            names = [t] if isinstance(t, ast.Name) else list(getattr(t, "elts", []))
            if not all(isinstance(n, ast.Name) for n in names) or len(names) > len(spec.grid):
                raise self.error(t, f"T.Kernel has {len(spec.grid)} grid dimensions: "
                                    f"bind at most {len(spec.grid)} names")
        block_vars = [Var(self.unique(n.id if k < len(names) else f"b{'xyz'[k]}"))
                      for k, n in enumerate(names + [None] * (len(spec.grid) - len(names)))]
        self.allocs, self.layouts, self.kernel_swizzle = [], {}, []
        try:
            scope = {n.id: v for n, v in zip(names, block_vars)}
            body = self.in_scope(lambda: self.block(node.body), scope)
            scope = self.last_scope
            allocs = tuple(self.allocs)
            layouts = self.layouts
            swizzle = self.kernel_swizzle
        finally:
            self.allocs, self.kernel_swizzle = None, None
        if swizzle:
            block_vars, body = _swizzle(spec.grid, block_vars, body, *swizzle[0])
        for n, v in scope.items():
            if isinstance(v, Buffer):
                self.finished[n] = (v, node.lineno + self.line_offset)
        kernel = ir.Kernel(tuple(ir.convert(g) for g in spec.grid), tuple(block_vars), spec.threads,
                           allocs, body, span=self.span(node),
                           layout_spans=tuple((n, sp) for n, (_, sp) in layouts.items()))
        return _apply_layouts(kernel, layouts) if layouts else kernel

    # ---- expressions ----

    def eval_python(self, node: ast.expr) -> Any:
        value = self.expr(node)
        if isinstance(value, Expr):
            raise self.error(node, "this must be known when the kernel is defined, not at run time")
        return value

    def expr(self, node: ast.expr) -> Any:
        method = getattr(self, "expr_" + type(node).__name__, None)
        if method is None:
            raise self.error(node, f"'{type(node).__name__}' expressions are not supported in a kernel",
                             hint="T.print's message is a constant string" if isinstance(node, ast.JoinedStr)
                             else "kernels use arithmetic, comparisons, conditional expressions, indexing, "
                                  "T.* calls and calls of Python helpers")
        return method(node)

    def expr_Constant(self, node):
        return node.value

    def expr_Name(self, node: ast.Name):
        return self.lookup(node.id, node)

    def expr_Tuple(self, node):
        return tuple(self.expr(e) for e in node.elts)

    expr_List = expr_Tuple

    def expr_Dict(self, node: ast.Dict):
        if any(k is None for k in node.keys):
            raise self.error(node, "'**' in a dict literal is not supported in a kernel")
        return {self.expr(k): self.expr(v) for k, v in zip(node.keys, node.values)}

    def expr_Attribute(self, node: ast.Attribute):
        base = self.expr(node.value)
        if isinstance(base, Buffer):
            if node.attr == "shape":
                return tuple(s.value if isinstance(s, ir.Const) else s for s in base.shape)
            if node.attr == "dtype":
                return base.dtype
            raise self.error(node, f"buffers have .shape and .dtype, not .{node.attr}")
        if isinstance(base, Expr):
            if node.attr == "dtype":
                return base.dtype
            raise self.error(node, f"run-time values have no attribute '{node.attr}'")
        try:
            return getattr(base, node.attr)
        except AttributeError:
            if base is T or getattr(base, "__name__", "") == "tiledsl.language":
                close = difflib.get_close_matches(node.attr, T.__all__, n=1)
                raise self.error(node, f"T has no '{node.attr}'" + (f"; did you mean T.{close[0]}?" if close else ""),
                                 hint="the T namespace follows TileLang's names: see tiledsl.language.__all__") from None
            raise self.error(node, f"{type(base).__name__} has no attribute '{node.attr}'",
                             hint=f"{type(base).__name__} is a Python value here, evaluated when the kernel "
                                  f"is defined") from None

    def expr_BinOp(self, node: ast.BinOp):
        return self.binop(_PY_BINOPS[type(node.op)], self.expr(node.left), self.expr(node.right), node)

    def binop(self, op: str, a: Any, b: Any, node: ast.AST) -> Any:
        if isinstance(a, (Buffer, RegionRef)) or isinstance(b, (Buffer, RegionRef)):
            raise self.error(node, "arithmetic on whole buffers is not supported",
                             hint="index an element (A_s[i, j]) inside a T.Parallel loop",
                             cls=TypeCheckError)
        if not isinstance(a, Expr) and not isinstance(b, Expr):
            try:
                return _PY_FUNCS[op](a, b)
            except Exception as e:
                raise self.error(node, f"{type(e).__name__}: {e}") from None
        if op == "**":
            if isinstance(b, int) and 0 <= b <= 4:
                result: Any = 1
                for _ in range(b):
                    result = a if result == 1 else ir.binop("*", result, a)
                return ir.convert(result)
            raise self.error(node, "'**' on run-time values needs a small constant integer exponent",
                             hint="use T.exp / T.exp2 / T.log for other powers")
        try:
            return ir.binop(op, a, b)
        except (TypeError, ZeroDivisionError) as e:
            raise self.error(node, str(e), cls=TypeCheckError,
                             hint="a // b divides integers (rounding down); T.cast(a, \"float32\") / b "
                                  "divides as floats") from None

    def expr_UnaryOp(self, node: ast.UnaryOp):
        v = self.expr(node.operand)
        if not isinstance(v, Expr):
            return {ast.USub: operator.neg, ast.UAdd: operator.pos, ast.Not: operator.not_,
                    ast.Invert: operator.invert}[type(node.op)](v)
        if isinstance(node.op, ast.USub):
            return -v
        if isinstance(node.op, ast.UAdd):
            return v
        if isinstance(node.op, ast.Not):
            return ir.logical_not(v)
        return ir.UnOp("~", v, v.dtype)

    def expr_BoolOp(self, node: ast.BoolOp):
        values = [self.expr(v) for v in node.values]
        if not any(isinstance(v, Expr) for v in values):
            result = values[0]
            for v in values[1:]:
                result = (result and v) if isinstance(node.op, ast.And) else (result or v)
            return result
        fn = ir.logical_and if isinstance(node.op, ast.And) else ir.logical_or
        result = values[0]
        for v in values[1:]:
            result = fn(result, v)
        return result

    def expr_Compare(self, node: ast.Compare):
        left = self.expr(node.left)
        result = None
        for op, right_node in zip(node.ops, node.comparators):
            right = self.expr(right_node)
            if isinstance(op, (ast.Is, ast.IsNot, ast.In, ast.NotIn)) and \
                    not isinstance(left, Expr) and not isinstance(right, Expr):
                c = {ast.Is: lambda a, b: a is b, ast.IsNot: lambda a, b: a is not b,
                     ast.In: lambda a, b: a in b, ast.NotIn: lambda a, b: a not in b}[type(op)](left, right)
                result = c if result is None else (result and c)
                left = right
                continue
            if type(op) not in _PY_CMPS:
                raise self.error(node, f"'{type(op).__name__}' comparisons are not supported"
                                       + (" on kernel values; they work on Python values only"
                                          if isinstance(op, (ast.Is, ast.IsNot, ast.In, ast.NotIn)) else ""))
            c = self.binop(_PY_CMPS[type(op)], left, right, node)
            result = c if result is None else self.binop_logical(result, c)
            left = right
        return result

    @staticmethod
    def binop_logical(a, b):
        if not isinstance(a, Expr) and not isinstance(b, Expr):
            return a and b
        return ir.logical_and(a, b)

    def expr_IfExp(self, node: ast.IfExp):
        cond = self.expr(node.test)
        if not isinstance(cond, Expr):
            return self.expr(node.body if cond else node.orelse)
        return ir.select(cond, self.expr(node.body), self.expr(node.orelse))

    def indices(self, node: ast.Subscript) -> list:
        sl = node.slice
        elts = sl.elts if isinstance(sl, ast.Tuple) else [sl]
        out = []
        for e in elts:
            if isinstance(e, ast.Slice):
                if e.step is not None:
                    raise self.error(e, "slices with a step are not supported")
                lo = self.expr(e.lower) if e.lower is not None else None
                hi = self.expr(e.upper) if e.upper is not None else None
                out.append(slice(lo, hi))
            else:
                out.append(self.expr(e))
        return out

    def check_indices(self, node: ast.AST, buf: Buffer, idx: list) -> None:
        for i in idx:
            if isinstance(i, (Buffer, RegionRef)) or not isinstance(i, (Expr, int)) or isinstance(i, bool):
                raise self.error(node, f"index {i!r} of '{buf.name}' is not an integer", cls=TypeCheckError,
                                 hint="indices are integer expressions of loop and block variables")
            if isinstance(i, Expr) and not i.dtype.is_int:
                raise self.error(node, f"index {i} of '{buf.name}' is {i.dtype}, not an integer",
                                 cls=TypeCheckError, hint=f"convert it: T.cast({i}, \"int64\")")

    def expr_Subscript(self, node: ast.Subscript):
        base = self.expr(node.value)
        if not isinstance(base, Buffer):
            if isinstance(base, Expr):
                raise self.error(node, "run-time scalars cannot be indexed",
                                 hint="a scalar parameter or variable holds one value; index a buffer")
            key = self.indices(node)
            key = key[0] if len(key) == 1 else tuple(key)
            try:
                return base[key]
            except Exception as e:
                raise self.error(node, f"{type(e).__name__}: {e}") from None
        idx = self.indices(node)
        if len(idx) > base.ndim:
            raise self.error(node, f"'{base.name}' has {base.ndim} dimensions, indexed with {len(idx)}",
                             cls=TypeCheckError)
        if any(isinstance(i, slice) for i in idx) or len(idx) < base.ndim:
            return RegionRef(base, tuple(idx), self.span(node))
        self.check_indices(node, base, idx)
        return ir.Load(base, tuple(ir.convert(i) for i in idx), base.dtype)

    def expr_Call(self, node: ast.Call):
        fn = self.expr(node.func)
        args = []
        for a in node.args:
            if isinstance(a, ast.Starred):
                args.extend(self.eval_python(a.value))
            else:
                args.append(self.expr(a))
        kwargs = {}
        for kw in node.keywords:
            if kw.arg is None:
                kwargs.update(self.eval_python(kw.value))
            else:
                kwargs[kw.arg] = self.expr(kw.value)
        if isinstance(fn, T.Macro):
            return self.expand_macro(fn, node, args, kwargs)
        handler = T.STATEMENTS.get(fn) if _hashable(fn) else None
        if handler is not None:
            return self.call_statement(handler, fn, node, args, kwargs)
        if fn is _py.range:
            return self.loop_spec("serial", node, args, {})
        if fn in (_py.min, _py.max) and any(isinstance(a, Expr) for a in args):
            fn = T.min if fn is _py.min else T.max
        if fn is _py.float and args and isinstance(args[0], Expr):
            return ir.cast(args[0], "float32")
        if fn is _py.int and args and isinstance(args[0], Expr):
            return ir.cast(args[0], "int64")
        runtime = any(isinstance(a, Expr) for a in list(args) + list(kwargs.values()))
        if fn is _py.print and runtime:
            raise self.error(node, "print() runs when the kernel is defined, before any value exists",
                             hint="use T.print(value, \"message\") to print run-time values")
        try:
            return fn(*args, **kwargs)
        except (TypeError, ValueError, ZeroDivisionError) as e:
            raise self.call_error(node, fn, e, runtime, list(args) + list(kwargs.values())) from None
        except RuntimeError as e:
            raise self.error(node, str(e)) from None

    def expand_macro(self, m: "T.Macro", node: ast.Call, args: list, kwargs: dict) -> Any:
        """Parse the macro's body here, its parameters bound to the call's arguments and its other
        names resolved where it is defined. Spans point into the macro, so an error names the
        macro's line. Returns the body (a statement), the value of a final `return`, or both."""
        fn = m.fn
        if self.macro_depth > 32:
            raise self.error(node, f"T.macro '{m.__name__}' expands into itself more than 32 times",
                             hint="a macro cannot recurse on run-time values; recurse on Python values only")
        try:
            bound = inspect.signature(fn).bind(*args, **kwargs)
        except TypeError as e:
            raise self.error(node, f"T.macro '{m.__name__}': {e}", cls=TypeCheckError) from None
        bound.apply_defaults()
        try:
            lines, first_line = source_lines(fn)
        except (OSError, TypeError) as e:
            raise self.error(node, f"cannot read the source of T.macro '{m.__name__}': {e}") from None
        fdef = ast.parse(textwrap.dedent("".join(lines))).body[0]
        body = list(fdef.body)
        ret = body.pop() if body and isinstance(body[-1], ast.Return) else None
        saved = (self.fn, self.file, self.line_offset, self.col_offset, self.globals, self.closure,
                 self.scopes, self.block_locals)
        self.fn, self.file = fn, inspect.getsourcefile(fn) or "<unknown>"
        self.line_offset, self.col_offset = first_line - 1, len(lines[0]) - len(lines[0].lstrip())
        self.globals, self.closure = fn.__globals__, dict(inspect.getclosurevars(fn).nonlocals)
        self.scopes, self.block_locals = [_Scope(bound.arguments)], {}
        self.macro_depth += 1
        try:
            stmts = self.block(body)
            value = None if ret is None or ret.value is None else self.expr(ret.value)
        finally:
            (self.fn, self.file, self.line_offset, self.col_offset, self.globals, self.closure,
             self.scopes, self.block_locals) = saved
            self.macro_depth -= 1
        if ret is None or ret.value is None:
            return stmts
        if not (isinstance(stmts, ir.Seq) and not stmts.stmts):
            self.hoisted.append(stmts)  # placed before the statement that uses the value
        return value

    def call_error(self, node: ast.Call, fn, e: Exception, runtime: bool, args: list) -> Exception:
        name = getattr(fn, "__name__", repr(fn))
        if any(isinstance(a, (Buffer, RegionRef)) for a in args):
            return self.error(node, f"{name}: a whole buffer cannot be an operand here ({e})", cls=TypeCheckError,
                              hint="index an element (t[i]) inside a T.Parallel loop, or use a tile "
                                   "operation (T.copy, T.reduce_max, ...)")
        if "truth value of IR expression" in str(e):
            return self.error(node, f"{name}: the truth value of a run-time value is not known when the "
                                    f"kernel is defined", cls=TypeCheckError,
                              hint="inside helpers, choose with T.if_then_else(cond, a, b) or T.max / T.min; "
                                   "Python's if / and / or / not need Python values")
        module = getattr(fn, "__module__", "") or ""
        if runtime and not module.startswith("tiledsl") and isinstance(e, TypeError):
            qual = f"{module}.{name}" if module not in ("", "builtins") else name
            alt = f"; use T.{name}" if name in T.__all__ else ""
            return self.error(node, f"Python's {qual} cannot take a run-time value{alt}", cls=TypeCheckError,
                              hint="Python functions run when the kernel is defined; the T namespace has "
                                   "the run-time versions (T.exp, T.max, T.abs, ...)")
        return self.error(node, f"{name}: {e}", cls=TypeCheckError)

    def call_statement(self, handler: str, fn, node: ast.Call, args: list, kwargs: dict):
        if handler in _LOOP_KINDS:
            return self.loop_spec(_LOOP_KINDS[handler], node, args, kwargs)
        if handler == "kernel":
            threads = kwargs.pop("threads", 128)
            kwargs.pop("is_cpu", None)
            if kwargs:
                raise self.error(node, f"T.Kernel got unexpected arguments {sorted(kwargs)}")
            if not 1 <= len(args) <= 3:
                raise self.error(node, "T.Kernel takes 1 to 3 grid dimensions")
            for g in args:
                if not (_py_int(g) or isinstance(g, Expr) and g.dtype.is_int):
                    raise self.error(node, f"T.Kernel grid dimension {g!r} is not an integer", cls=TypeCheckError)
            threads = 128 if threads is None else threads
            if not _py_int(threads) or threads <= 0:
                raise self.error(node, f"T.Kernel threads must be a positive Python integer, got {threads!r}",
                                 cls=TypeCheckError)
            return _KernelSpec(tuple(args), int(threads))
        if self.allocs is None:
            raise self.error(node, f"T.{getattr(fn, '__name__', handler)} must be inside 'with T.Kernel(...)'",
                             hint="tile buffers and tile operations belong to a block of the grid")
        if self.parallel_depth and handler in _WHOLE_TILE_OPS:
            raise self.error(node, f"T.{fn.__name__} cannot be used inside a T.Parallel loop",
                             hint="tile operations act on whole tiles, once per block: move it out of "
                                  "the loop, or write elements (t[i] = A[r, i]) inside it")
        try:
            return TILE_HANDLERS[handler](self, node, args, kwargs)
        except TileDSLError:
            raise
        except (TypeError, ValueError) as e:  # a value the handler could not convert
            raise self.error(node, f"T.{fn.__name__}: {e}", cls=TypeCheckError) from None

    def loop_spec(self, kind: str, node: ast.Call, args: list, kwargs: dict) -> "_LoopSpec":
        annotations = ()
        if kind == "pipelined":
            stages = kwargs.pop("num_stages", 2)
            for k in ("order", "stage", "group"):
                kwargs.pop(k, None)
            if not _py_int(stages) or stages < 0:
                raise self.error(node, f"num_stages must be a Python integer >= 0, got {stages!r}",
                                 hint="T.Pipelined(n, num_stages=2): how many tiles are in flight",
                                 cls=TypeCheckError)
            annotations = (("num_stages", int(stages)),)
        if kwargs:
            raise self.error(node, f"unexpected keyword arguments {sorted(kwargs)}")
        if not args:
            raise self.error(node, "a loop needs an extent")
        for a in args:
            if isinstance(a, (Buffer, RegionRef)) or (isinstance(a, Expr) and not a.dtype.is_int) \
                    or isinstance(a, float):
                raise self.error(node, f"loop bound {a!r} is not an integer", cls=TypeCheckError,
                                 hint="loop bounds are integers; T.ceildiv(n, block) rounds a division up")
        if kind == "parallel":
            return _LoopSpec(kind, (0,) * len(args), tuple(args), (1,) * len(args), annotations)
        if len(args) > 3:
            raise self.error(node, "a loop takes (stop), (start, stop) or (start, stop, step)")
        start, stop, step = (0, args[0], 1) if len(args) == 1 else (args[0], args[1], args[2] if len(args) == 3 else 1)
        if isinstance(step, Expr) or step == 0:
            raise self.error(node, "a loop step must be a non-zero Python integer")
        extent = T.ceildiv(stop - start, step) if step > 0 else T.ceildiv(start - stop, -step)
        if not isinstance(extent, Expr):
            extent = max(extent, 0)
        return _LoopSpec(kind, (start,), (extent,), (step,), annotations)

    def add_alloc(self, buf: Buffer) -> Buffer:
        self.allocs.append(buf)
        return buf


def _apply_layouts(kernel: ir.Kernel, layouts: dict) -> ir.Kernel:
    """Put annotated layouts on the buffers, wherever they are referenced."""
    def fn(b: Buffer) -> Buffer:
        hit = layouts.get(b.name)
        return b.with_layout(hit[0]) if hit is not None and b.scope != "global" else b
    return ir.replace_buffers(kernel, fn)


def _swizzle(grid: tuple, block_vars: list, body: ir.Stmt, panel: int, order: str, span: Span):
    """`T.use_swizzle`: the kernel runs over fresh block indices and defines the user's (bx, by)
    from them at the top of the block, so every use (before or after the call) sees the
    panel order. Row order: blocks walk down a panel of `panel` block rows, column by column,
    alternating direction between panels; a bijection of the grid."""
    if len(grid) < 2:
        return block_vars, body  # one row of blocks: nothing to reorder
    gx, gy = ir.convert(grid[0]), ir.convert(grid[1])
    raw = [Var(f"{v.name}__raw", v.dtype) for v in block_vars]
    if order == "col":  # panels of block columns: the same walk with x and y exchanged
        gx, gy = gy, gx
        first, second = raw[1], raw[0]
    else:
        first, second = raw[0], raw[1]
    linear = second * gx + first
    per_panel = gx * panel
    pid, off = linear // per_panel, linear % per_panel
    rows = ir.min_(ir.const(panel, ir.INDEX), gy - pid * panel)
    col = off // rows
    col = ir.select(ir.eq(pid % 2, 1), gx - 1 - col, col)
    row = pid * panel + off % rows
    new_x, new_y = (col, row) if order == "row" else (row, col)
    decls = [ir.Decl(block_vars[0], new_x, span=span), ir.Decl(block_vars[1], new_y, span=span)]
    if len(raw) > 2:
        decls.append(ir.Decl(block_vars[2], raw[2], span=span))
    return raw, ir.seq(*decls, body)


class _LoopSpec:
    def __init__(self, kind, starts, extents, steps, annotations):
        self.kind, self.starts, self.extents, self.steps = kind, starts, extents, steps
        self.annotations = annotations


class _KernelSpec:
    def __init__(self, grid, threads):
        self.grid, self.threads = grid, threads


def _py_int(x) -> bool:
    """A Python (or numpy) integer known when the kernel is defined."""
    return not isinstance(x, (bool, Expr)) and hasattr(x, "__index__")


def _hashable(x) -> bool:
    try:
        hash(x)
        return True
    except TypeError:
        return False
