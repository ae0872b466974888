"""The catalogue of mistakes a kernel author can make in the language, and the error each gives.

Every entry is a small kernel with one mistake, written to its own file; the line carrying
the mistake ends with `# <-`. Each must raise the named `TileDSLError` subclass when the
kernel is defined (or compiled), whose text names that file and line, shows the line with a
caret under the offending code, and says what to do. None may reach the C++ compiler: the
catalogue is run once more through `tiledsl.jit` with the compiler replaced by a tripwire.
"""
from __future__ import annotations

import importlib.util
import textwrap
from dataclasses import dataclass

import pytest

import tiledsl
import tiledsl.language as T
from tiledsl import FrontendError, TileDSLError, TypeCheckError, VerifyError

PARAMS = ('A: T.Tensor((64, 64), "float32"), B: T.Tensor((64, 64), "float32"), '
          'n: T.int32, x: T.float32')


@dataclass(frozen=True)
class Mistake:
    name: str
    cls: type
    fragment: str  # must appear in the message
    body: str      # the kernel's body; the offending line ends with "# <-"
    hint: bool = True
    params: str = PARAMS
    header: str = ""


M = Mistake
CATALOGUE = [
    # ---- T.copy
    M("copy_arity", TypeCheckError, "T.copy(src, dst) takes exactly two arguments", """
        with T.Kernel(1) as bx:
            A_s = T.alloc_shared((16, 16), "float32")
            T.copy(A[0, 0], A_s, B)  # <-
    """),
    M("copy_shape", TypeCheckError, "source region (32, 32) of 'A_s' and destination (16, 32) of 'B_s'", """
        with T.Kernel(1) as bx:
            A_s = T.alloc_shared((32, 32), "float32")
            B_s = T.alloc_shared((16, 32), "float32")
            T.copy(A[0, 0], A_s)
            T.copy(A_s, B_s)  # <-
    """),
    M("copy_rank", TypeCheckError, "a 3-d tile does not fit in 2-d 'A'", """
        with T.Kernel(1) as bx:
            S = T.alloc_shared((2, 4, 8), "float32")
            T.fill(S, 0.0)
            T.copy(S, A[0, 0])  # <-
    """),
    M("copy_scalar", TypeCheckError, "T.copy source must be a buffer or a region", """
        with T.Kernel(1) as bx:
            A_s = T.alloc_shared((16,), "float32")
            T.copy(x, A_s)  # <-
    """),
    M("copy_outside_tile", TypeCheckError, "outside dimension 0 of 'A_s'", """
        with T.Kernel(1) as bx:
            A_s = T.alloc_shared((32, 32), "float32")
            B_s = T.alloc_shared((16, 16), "float32")
            T.copy(A_s[20:36, 0:16], B_s)  # <-
    """),
    # ---- T.gemm
    M("gemm_arity", TypeCheckError, "T.gemm(A, B, C) takes three tiles, got 2", """
        with T.Kernel(1) as bx:
            A_s = T.alloc_shared((16, 16), "float32")
            T.gemm(A_s, A_s)  # <-
    """),
    M("gemm_shapes", TypeCheckError, "A is 32x16, B is 32x32, C is 32x32", """
        with T.Kernel(1) as bx:
            A_s = T.alloc_shared((32, 16), "float32")
            B_s = T.alloc_shared((32, 32), "float32")
            C_f = T.alloc_fragment((32, 32), "float32")
            T.gemm(A_s, B_s, C_f)  # <-
    """),
    M("gemm_dtypes", TypeCheckError, "A is float16 but B is float32", """
        with T.Kernel(1) as bx:
            A_s = T.alloc_shared((32, 32), "float16")
            B_s = T.alloc_shared((32, 32), "float32")
            C_f = T.alloc_fragment((32, 32), "float32")
            T.gemm(A_s, B_s, C_f)  # <-
    """),
    M("gemm_accumulator", TypeCheckError, "int8 inputs cannot accumulate into float32 C", """
        with T.Kernel(1) as bx:
            A_s = T.alloc_shared((32, 32), "int8")
            C_f = T.alloc_fragment((32, 32), "float32")
            T.gemm(A_s, A_s, C_f)  # <-
    """),
    M("gemm_global", TypeCheckError, "'A' is a global tensor", """
        with T.Kernel(1) as bx:
            B_s = T.alloc_shared((64, 64), "float32")
            C_f = T.alloc_fragment((64, 64), "float32")
            T.gemm(A, B_s, C_f)  # <-
    """),
    M("gemm_3d", TypeCheckError, "T.gemm A must be a 2-D tile", """
        with T.Kernel(1) as bx:
            A_s = T.alloc_shared((2, 16, 16), "float32")
            B_s = T.alloc_shared((16, 16), "float32")
            C_f = T.alloc_fragment((16, 16), "float32")
            T.gemm(A_s, B_s, C_f)  # <-
    """),
    M("gemm_keyword", TypeCheckError, "T.gemm got unexpected arguments ['transpose_b']", """
        with T.Kernel(1) as bx:
            A_s = T.alloc_shared((16, 16), "float32")
            C_f = T.alloc_fragment((16, 16), "float32")
            T.gemm(A_s, A_s, C_f, transpose_b=True)  # <-
    """),
    # ---- other tile operations
    M("reduce_shape", TypeCheckError, "along dim 1 gives shape (16,), but 'r' is (8,)", """
        with T.Kernel(1) as bx:
            t = T.alloc_fragment((16, 16), "float32")
            r = T.alloc_fragment((8,), "float32")
            T.reduce_sum(t, r, dim=1)  # <-
    """),
    M("reduce_dim", TypeCheckError, "dim 2 is out of range for a 2-d tile", """
        with T.Kernel(1) as bx:
            t = T.alloc_fragment((16, 16), "float32")
            r = T.alloc_fragment((16,), "float32")
            T.reduce_max(t, r, dim=2)  # <-
    """),
    M("reduce_global", TypeCheckError, "the source must be a shared or fragment tile", """
        with T.Kernel(1) as bx:
            r = T.alloc_fragment((64,), "float32")
            T.reduce_sum(A, r, dim=1)  # <-
    """),
    M("fill_buffer_value", TypeCheckError, "T.fill value must be a scalar", """
        with T.Kernel(1) as bx:
            t = T.alloc_fragment((16,), "float32")
            T.fill(t, A)  # <-
    """),
    M("fill_string", TypeCheckError, "T.fill: cannot use str value 'zero' in an IR expression", """
        with T.Kernel(1) as bx:
            t = T.alloc_fragment((16,), "float32")
            T.fill(t, "zero")  # <-
    """),
    M("alloc_var_dtype", TypeCheckError, "T.alloc_var: unknown dtype 'f32'", """
        with T.Kernel(1) as bx:
            acc = T.alloc_var("f32")  # <-
    """),
    M("buffer_operand", TypeCheckError, "max: a whole buffer cannot be an operand here", """
        with T.Kernel(1) as bx:
            t = T.alloc_fragment((64,), "float32")
            T.fill(t, 0.0)
            A[0, 0] = T.max(t, 1.0)  # <-
    """),
    M("tile_op_in_parallel", FrontendError, "T.copy cannot be used inside a T.Parallel loop", """
        with T.Kernel(1) as bx:
            t = T.alloc_fragment((64,), "float32")
            for i in T.Parallel(64):
                T.copy(A[i, 0:64], t)  # <-
    """),
    M("tile_op_outside_kernel", FrontendError, "T.fill must be inside 'with T.Kernel(...)'", """
        T.fill(A, 0.0)  # <-
        with T.Kernel(1) as bx:
            A[0, 0] = 1.0
    """),
    # ---- buffers and scopes
    M("fragment_outside_kernel", FrontendError, "'C_f' is a fragment tile of the T.Kernel on line", """
        with T.Kernel(1) as bx:
            C_f = T.alloc_fragment((64, 64), "float32")
            T.fill(C_f, 0.0)
        T.copy(C_f, A)  # <-
    """),
    M("tile_shape_runtime", TypeCheckError, "a tile shape must be a tuple of positive Python integers", """
        with T.Kernel(1) as bx:
            t = T.alloc_shared((n, 4), "float32")  # <-
    """),
    M("unknown_dtype", TypeCheckError, "unknown dtype 'float31'", """
        with T.Kernel(1) as bx:
            t = T.alloc_shared((4, 4), "float31")  # <-
    """),
    M("store_rank", TypeCheckError, "'A' has 2 dimensions: store one element with 2 indices", """
        with T.Kernel(1) as bx:
            for i in T.Parallel(64):
                A[i] = 1.0  # <-
    """),
    M("float_index", TypeCheckError, "index x of 'A' is float32, not an integer", """
        with T.Kernel(1) as bx:
            A[0, x] = 1.0  # <-
    """),
    M("int_true_division", TypeCheckError, "use '//' for integer division", """
        with T.Kernel(1) as bx:
            for i in T.Parallel(64):
                A[i / 2, 0] = 1.0  # <-
    """),
    M("buffer_arithmetic", TypeCheckError, "arithmetic on whole buffers is not supported", """
        with T.Kernel(1) as bx:
            t = T.alloc_fragment((64,), "float32")
            u = t + 1.0  # <-
    """),
    M("store_buffer", TypeCheckError, "a buffer cannot be stored into an element", """
        with T.Kernel(1) as bx:
            t = T.alloc_fragment((64,), "float32")
            A[0, 0] = t  # <-
    """),
    M("index_scalar", FrontendError, "run-time scalars cannot be indexed", """
        with T.Kernel(1) as bx:
            A[0, 0] = x[0]  # <-
    """),
    M("float_loop_bound", TypeCheckError, "loop bound 2.5 is not an integer", """
        with T.Kernel(1) as bx:
            for i in T.Parallel(2.5):  # <-
                A[0, 0] = 1.0
    """),
    M("loop_names", FrontendError, "this loop has 2 indices: write 2 names", """
        with T.Kernel(1) as bx:
            for i in T.Parallel(8, 8):  # <-
                A[0, 0] = 1.0
    """),
    M("num_stages", TypeCheckError, "num_stages must be a Python integer >= 0", """
        with T.Kernel(1) as bx:
            for k in T.Pipelined(4, num_stages=n):  # <-
                A[k, 0] = 1.0
    """),
    M("kernel_grid", TypeCheckError, "T.Kernel grid dimension 'a' is not an integer", """
        with T.Kernel("a") as bx:  # <-
            A[0, 0] = 1.0
    """),
    M("kernel_threads", TypeCheckError, "T.Kernel threads must be a positive Python integer", """
        with T.Kernel(1, threads="many") as bx:  # <-
            A[0, 0] = 1.0
    """),
    M("kernel_nested", FrontendError, "T.Kernel cannot be nested", """
        with T.Kernel(1) as bx:
            with T.Kernel(2) as by:  # <-
                A[0, 0] = 1.0
    """),
    M("kernel_names", FrontendError, "T.Kernel has 1 grid dimensions: bind at most 1 names", """
        with T.Kernel(4) as (bx, by):  # <-
            A[0, 0] = 1.0
    """),
    M("branch_local", FrontendError, "'y' is assigned inside the if on line 9, so it does not exist after it", """
        with T.Kernel(1) as bx:
            if x > 0:
                y = x * 2.0
            else:
                y = x
            A[0, 0] = y  # <-
    """),
    M("loop_local", FrontendError, "'s' is assigned inside the loop on line 9, so it does not exist after it", """
        with T.Kernel(1) as bx:
            for i in T.serial(64):
                s = A[i, 0] * 2.0
            B[0, 0] = s  # <-
    """),
    # ---- parameters
    M("assign_scalar_param", FrontendError, "'n' is a kernel parameter and cannot be assigned", """
        with T.Kernel(1) as bx:
            n = n + 1  # <-
    """),
    M("assign_tensor_param", FrontendError, "'A' is a kernel parameter and cannot be assigned", """
        with T.Kernel(1) as bx:
            t = T.alloc_shared((64, 64), "float32")
            A = t  # <-
    """),
    M("missing_annotation", FrontendError, "parameter 'y' needs an annotation", """
        with T.Kernel(1) as bx:
            A[0, 0] = 1.0
    """, params="A: T.Tensor((64, 64), \"float32\"), y"),
    M("reserved_name", FrontendError, "names with '__' are reserved", """
        with T.Kernel(1) as bx:
            A[0, 0] = 1.0
    """, params="A: T.Tensor((64, 64), \"float32\"), i__1: T.int32"),
    # ---- Python constructs the language does not have
    M("while_loop", FrontendError, "'While' statements are not supported", """
        with T.Kernel(1) as bx:
            while n > 0:  # <-
                A[0, 0] = 1.0
    """),
    M("break", FrontendError, "'Break' statements are not supported", """
        with T.Kernel(1) as bx:
            for i in T.serial(4):
                break  # <-
    """),
    M("try", FrontendError, "'Try' statements are not supported", """
        with T.Kernel(1) as bx:
            try:  # <-
                A[0, 0] = 1.0
            except Exception:
                pass
    """),
    M("nested_def", FrontendError, "'FunctionDef' statements are not supported", """
        with T.Kernel(1) as bx:
            def helper(v):  # <-
                return v
    """),
    M("lambda", FrontendError, "'Lambda' expressions are not supported", """
        with T.Kernel(1) as bx:
            f = lambda v: v + 1  # <-
    """),
    M("comprehension", FrontendError, "'ListComp' expressions are not supported", """
        with T.Kernel(1) as bx:
            vals = [A[i, 0] for i in range(4)]  # <-
    """),
    M("fstring", FrontendError, "'JoinedStr' expressions are not supported", """
        with T.Kernel(1) as bx:
            T.print(x, f"x = {x}")  # <-
    """),
    M("return_value", FrontendError, "a kernel cannot return a value", """
        with T.Kernel(1) as bx:
            return A  # <-
    """),
    M("runtime_assert", FrontendError, "assert on a run-time value is not supported", """
        with T.Kernel(1) as bx:
            assert x > 0  # <-
    """),
    M("python_float_accumulator", FrontendError, "cannot accumulate a run-time value", """
        with T.Kernel(1) as bx:
            s = 0.0
            for i in T.serial(64):
                s += A[i, 0]  # <-
            B[0, 0] = s
    """),
    # ---- names
    M("undefined_name", FrontendError, "name 'scale' is not defined", """
        with T.Kernel(1) as bx:
            A[0, 0] = x * scale  # <-
    """),
    M("unknown_T_name", FrontendError, "T has no 'Paralel'; did you mean T.Parallel?", """
        with T.Kernel(1) as bx:
            for i in T.Paralel(64):  # <-
                A[i, 0] = 1.0
    """),
    M("python_print", FrontendError, "print() runs when the kernel is defined", """
        with T.Kernel(1) as bx:
            print(A[0, 0])  # <-
    """),
    M("python_math", TypeCheckError, "Python's math.exp cannot take a run-time value; use T.exp", """
        with T.Kernel(1) as bx:
            A[0, 0] = math.exp(x)  # <-
    """, header="import math"),
    M("runtime_truth", TypeCheckError, "the truth value of a run-time value is not known", """
        with T.Kernel(1) as bx:
            A[0, 0] = relu(x)  # <-
    """, header="def relu(v):\n    return v if v > 0 else 0.0"),
    M("print_message", TypeCheckError, "T.print: the message must be a Python string", """
        with T.Kernel(1) as bx:
            T.print(x, 3)  # <-
    """),
]


_TEMPLATE = '''\
import tiledsl.language as T
{header}


def make():
    @T.prim_func
    def main({params}):
{body}
    return main
'''


def _module(tmp_path, m: Mistake):
    body = textwrap.indent(textwrap.dedent(m.body).strip("\n"), " " * 8)
    path = tmp_path / f"mistake_{m.name}.py"
    path.write_text(_TEMPLATE.format(header=m.header, params=m.params, body=body))
    spec = importlib.util.spec_from_file_location(f"mistake_{m.name}", str(path))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    lines = path.read_text().splitlines()
    marked = [n for n, text in enumerate(lines, 1) if text.rstrip().endswith("# <-")]
    if not marked:  # a mistake in the signature: the error points at the def line
        marked = [n for n, text in enumerate(lines, 1) if text.strip().startswith("def main(")]
    return mod, path, marked[0], lines[marked[0] - 1].strip()


@pytest.mark.parametrize("m", CATALOGUE, ids=lambda m: m.name)
def test_mistake_is_reported_at_its_line(m, tmp_path):
    mod, path, line, text = _module(tmp_path, m)
    with pytest.raises(TileDSLError) as info:
        mod.make()
    err = info.value
    assert type(err) is m.cls, f"{type(err).__name__}: {err}"
    assert m.fragment in err.message, err.message
    assert err.span is not None and err.span.file == str(path) and err.span.line == line, str(err)
    shown = str(err).splitlines()
    assert f'File "{path}", line {line}' in str(err)
    where = shown.index(next(s for s in shown if s.strip() == text))
    caret = shown[where + 1]
    assert set(caret.strip()) == {"^"}, str(err)
    # the caret underlines code on that line, not the indentation
    col = len(caret) - len(caret.lstrip()) - (len(shown[where]) - len(shown[where].lstrip()))
    assert 0 <= col < len(text), str(err)
    if m.hint:
        assert err.hint and "hint: " in str(err), str(err)


def test_catalogue_is_large_and_distinct():
    assert len(CATALOGUE) >= 40
    assert len({m.name for m in CATALOGUE}) == len(CATALOGUE)
    assert len({m.fragment for m in CATALOGUE}) == len(CATALOGUE)


@pytest.fixture
def no_compiler(monkeypatch):
    """Replace the C++ compiler by a tripwire: nothing in the catalogue may get that far."""
    import tiledsl.runtime.build as build
    import tiledsl.runtime.cpp as cpp

    def tripwire(*args, **kwargs):
        raise AssertionError("a kernel with a mistake reached the C++ compiler")
    monkeypatch.setattr(build, "compile_shared", tripwire)
    monkeypatch.setattr(cpp, "compile_shared", tripwire)


@pytest.mark.parametrize("target", ["cpu", "interp"])
def test_catalogue_never_reaches_the_compiler(target, tmp_path, monkeypatch, no_compiler):
    monkeypatch.setenv("TILEDSL_CACHE_DIR", str(tmp_path / "cache"))
    for m in CATALOGUE:
        mod, _, line, _ = _module(tmp_path, m)
        factory = tiledsl.jit(lambda mod=mod: mod.make(), out_idx=[-1], target=target)
        with pytest.raises(TileDSLError) as info:
            factory()
        assert type(info.value) is m.cls and info.value.span.line == line, (m.name, str(info.value))


def test_verify_error_names_the_statement():
    """A PrimFunc built by hand that uses a variable outside its loop fails verification at
    the statement's span, before lowering."""
    from tiledsl import ir
    i = ir.Var("i")
    buf = ir.Buffer("A", (8,), ir.dtype("float32"))
    span = ir.Span(__file__, 1)
    body = ir.seq(ir.For(i, ir.const(0), ir.const(8), "serial",
                         ir.Store(buf, (i,), ir.const(1.0), span=span), span=span),
                  ir.Store(buf, (i,), ir.const(2.0), span=ir.Span(__file__, 2)))
    func = ir.PrimFunc("f", (buf,), ir.Kernel((ir.const(1),), (ir.Var("bx"),), 1, (), body))
    with pytest.raises(VerifyError) as info:
        ir.verify(func)
    assert "variable 'i' is used outside its scope" in info.value.message
    assert info.value.span.line == 2


