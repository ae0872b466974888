"""The frontend's definition-time errors and the IR printer.

Errors: every mistake is a `tiledsl.TileDSLError` (the right subclass) whose text names this
file, the line of the offending statement (found through a `# !marker` comment on it) and
shows that line. Printer: `PrimFunc.script()` depends only on the IR's value, and its text
is itself a kernel: parsing it again gives a PrimFunc that prints the same.
"""

import importlib.util
import itertools
import os

import pytest

import tiledsl
import tiledsl.language as T
from tiledsl import FrontendError, TileDSLError, TypeCheckError
from test_kernels import softmax  # the round-trip test prints and re-parses it


def _line(marker: str) -> int:
    """The line number in this file of the line that ends with the comment `# !marker`."""
    with open(__file__) as f:
        hits = [n for n, text in enumerate(f, 1) if text.rstrip().endswith("# !" + marker)]
    assert len(hits) == 1, f"marker {marker!r} found on lines {hits}"
    return hits[0]


def _source(n: int) -> str:
    with open(__file__) as f:
        return f.readlines()[n - 1].strip()


def _check(excinfo, cls, marker: str, fragment: str) -> None:
    err = excinfo.value
    assert isinstance(err, TileDSLError)
    assert isinstance(err, cls), f"{type(err).__name__} is not a {cls.__name__}"
    text = str(err)
    n = _line(marker)
    assert fragment in err.message, err.message
    assert f'File "{__file__}", line {n}' in text, text
    assert _source(n) in text, text  # the offending line is shown
    assert err.span is not None and err.span.line == n
    assert os.path.samefile(err.span.file, __file__)


# ---------------------------------------------------------------- definition-time errors

def test_undefined_name():
    with pytest.raises(TileDSLError) as e:
        @T.prim_func
        def main(A: T.Tensor((16,), "float32")):
            with T.Kernel(1) as bx:
                for i in T.Parallel(16):
                    A[i] = A[i] + scale_factor  # noqa: F821  # !undefined
    _check(e, FrontendError, "undefined", "name 'scale_factor' is not defined")


def test_while_is_not_supported():
    with pytest.raises(TileDSLError) as e:
        @T.prim_func
        def main(A: T.Tensor((16,), "float32")):
            with T.Kernel(1) as bx:
                i = 0
                while i < 16:  # !while
                    A[i] = 0.0
    _check(e, FrontendError, "while", "'While' statements are not supported")


def test_copy_shape_mismatch_between_tiles():
    with pytest.raises(TileDSLError) as e:
        @T.prim_func
        def main(A: T.Tensor((64, 64), "float32")):
            with T.Kernel(1) as bx:
                A_s = T.alloc_shared((32, 32), "float32")
                B_s = T.alloc_shared((16, 32), "float32")
                T.copy(A_s, B_s)  # !copy_tiles
    _check(e, TypeCheckError, "copy_tiles", "T.copy: source region (32, 32) of 'A_s' and destination "
                                            "(16, 32) of 'B_s' have different shapes")


def test_copy_shape_mismatch_static_slice():
    with pytest.raises(TileDSLError) as e:
        @T.prim_func
        def main(A: T.Tensor((64, 64), "float32")):
            with T.Kernel(1) as bx:
                A_s = T.alloc_shared((32, 32), "float32")
                T.copy(A[0:32, 0:16], A_s)  # !copy_static
    _check(e, TypeCheckError, "copy_static", "have different shapes")


def test_copy_shape_mismatch_block_slice():
    """`X[b, i * 16:(i + 1) * 16, :]` is 16 rows whatever i is: copying it into an 8-row tile
    is the same mistake as with constant bounds."""
    with pytest.raises(TileDSLError) as e:
        @T.prim_func
        def main(X: T.Tensor((2, 64, 8), "float32")):
            with T.Kernel(4, 2) as (i, b):
                X_s = T.alloc_shared((8, 8), "float32")
                T.copy(X[b, i * 16:(i + 1) * 16, :], X_s)  # !copy_block_slice
    _check(e, TypeCheckError, "copy_block_slice", "have different shapes")


def test_copy_out_of_tile():
    with pytest.raises(TileDSLError) as e:
        @T.prim_func
        def main(A: T.Tensor((64, 64), "float32")):
            with T.Kernel(1) as bx:
                A_s = T.alloc_shared((32, 32), "float32")
                B_s = T.alloc_shared((16, 16), "float32")
                T.copy(A_s[20:36, 0:16], B_s)  # !copy_outside
    _check(e, TypeCheckError, "copy_outside", "outside dimension 0 of 'A_s'")


def test_gemm_incompatible_shapes():
    with pytest.raises(TileDSLError) as e:
        @T.prim_func
        def main(A: T.Tensor((64, 64), "float32")):
            with T.Kernel(1) as bx:
                A_s = T.alloc_shared((32, 16), "float32")
                B_s = T.alloc_shared((32, 32), "float32")
                C_f = T.alloc_fragment((32, 32), "float32")
                T.gemm(A_s, B_s, C_f)  # !gemm_shapes
    _check(e, TypeCheckError, "gemm_shapes", "T.gemm: shapes do not agree: A is 32x16, B is 32x32, C is 32x32")


def test_gemm_incompatible_shapes_transposed():
    """The same tiles are compatible untransposed and not with transpose_B."""
    with pytest.raises(TileDSLError) as e:
        @T.prim_func
        def main(A: T.Tensor((64, 64), "float32")):
            with T.Kernel(1) as bx:
                A_s = T.alloc_shared((32, 16), "float32")
                B_s = T.alloc_shared((16, 8), "float32")
                C_f = T.alloc_fragment((32, 8), "float32")
                T.gemm(A_s, B_s, C_f)
                T.gemm(A_s, B_s, C_f, transpose_B=True)  # !gemm_trans
    _check(e, TypeCheckError, "gemm_trans", "B is 8x16 (transposed)")


def test_gemm_mismatched_dtypes():
    with pytest.raises(TileDSLError) as e:
        @T.prim_func
        def main(A: T.Tensor((64, 64), "float32")):
            with T.Kernel(1) as bx:
                A_s = T.alloc_shared((32, 32), "float16")
                B_s = T.alloc_shared((32, 32), "float32")
                C_f = T.alloc_fragment((32, 32), "float32")
                T.gemm(A_s, B_s, C_f)  # !gemm_dtypes
    _check(e, TypeCheckError, "gemm_dtypes", "T.gemm: A is float16 but B is float32")


def test_gemm_bad_accumulator_dtype():
    with pytest.raises(TileDSLError) as e:
        @T.prim_func
        def main(A: T.Tensor((64, 64), "float32")):
            with T.Kernel(1) as bx:
                A_s = T.alloc_shared((32, 32), "float64")
                B_s = T.alloc_shared((32, 32), "float64")
                C_f = T.alloc_fragment((32, 32), "float32")
                T.gemm(A_s, B_s, C_f)  # !gemm_accum
    _check(e, TypeCheckError, "gemm_accum", "float64 inputs cannot accumulate into float32 C")


def test_assign_to_tensor_parameter():
    with pytest.raises(TileDSLError) as e:
        @T.prim_func
        def main(A: T.Tensor((64,), "float32")):
            with T.Kernel(1) as bx:
                A_s = T.alloc_shared((64,), "float32")
                A = A_s  # !assign_tensor
    _check(e, FrontendError, "assign_tensor", "'A' is a kernel parameter and cannot be assigned")


def test_assign_to_scalar_parameter():
    with pytest.raises(TileDSLError) as e:
        @T.prim_func
        def main(A: T.Tensor((64,), "float32"), n: T.int32):
            with T.Kernel(1) as bx:
                for i in T.Parallel(64):
                    n += 1  # !assign_scalar
                    A[i] = n
    _check(e, FrontendError, "assign_scalar", "'n' is a kernel parameter and cannot be assigned")


def test_alloc_outside_kernel():
    with pytest.raises(TileDSLError) as e:
        @T.prim_func
        def main(A: T.Tensor((64,), "float32")):
            A_s = T.alloc_shared((64,), "float32")  # !alloc_outside
            with T.Kernel(1) as bx:
                T.copy(A, A_s)
    _check(e, FrontendError, "alloc_outside", "T.alloc_shared must be inside 'with T.Kernel(...)'")


def test_store_with_too_few_indices():
    with pytest.raises(TileDSLError) as e:
        @T.prim_func
        def main(A: T.Tensor((64, 64), "float32")):
            with T.Kernel(1) as bx:
                for i in T.Parallel(64):
                    A[i] = 1.0  # !store_few
    _check(e, TypeCheckError, "store_few", "'A' has 2 dimensions: store one element with 2 indices")


def test_store_with_too_many_indices():
    with pytest.raises(TileDSLError) as e:
        @T.prim_func
        def main(A: T.Tensor((64, 64), "float32")):
            with T.Kernel(1) as bx:
                t = T.alloc_fragment((8,), "float32")
                for i in T.Parallel(8):
                    t[i, 0] = 1.0  # !store_many
    _check(e, TypeCheckError, "store_many", "'t' has 1 dimensions")


@tiledsl.jit(out_idx=[-1])
def bad_factory(N, block=32):
    @T.prim_func
    def main(A: T.Tensor((N,), "float32"), B: T.Tensor((N,), "float32")):
        with T.Kernel(T.ceildiv(N, block)) as bx:
            A_s = T.alloc_shared((block,), "float32")
            B_s = T.alloc_shared((block * 2,), "float32")
            T.copy(A[bx * block], A_s)
            T.copy(A_s, B_s)  # !factory
    return main


def test_error_inside_a_jit_factory():
    """The error surfaces from get_ir and from compiling, at the kernel's line, before any C++."""
    with pytest.raises(TileDSLError) as e:
        bad_factory.get_ir(100)
    _check(e, TypeCheckError, "factory", "have different shapes")
    with pytest.raises(TileDSLError) as e:
        bad_factory(100)
    _check(e, TypeCheckError, "factory", "have different shapes")


_FUTURE_MODULE = '''\
from __future__ import annotations

import tiledsl.language as T


def make(N, block=16):
    shape = (N, 4)

    @T.prim_func
    def main(A: T.Tensor(shape, "float32")):
        with T.Kernel(T.ceildiv(N, block)) as bx:
            for i in T.Parallel(block):
                A[bx * block + i, 0] = 1.0
    return main
'''


def _import_file(path, name):
    spec = importlib.util.spec_from_file_location(name, str(path))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_postponed_annotations_see_factory_locals(tmp_path):
    """With `from __future__ import annotations` the annotations are strings; a name they use
    from the enclosing factory (`shape`) must still resolve as it does without the import."""
    path = tmp_path / "future_kernel.py"
    path.write_text(_FUTURE_MODULE)
    mod = _import_file(path, "tiledsl_test_future_kernel")
    func = mod.make(64)
    assert func.params[0].static_shape == (64, 4)


# ---------------------------------------------------------------- the printer

@tiledsl.jit(out_idx=[-1])
def matmul(M, N, K, block_M=64, block_N=64, block_K=32, dtype="float32"):
    @T.prim_func
    def main(A: T.Tensor((M, K), dtype), B: T.Tensor((K, N), dtype), C: T.Tensor((M, N), dtype)):
        with T.Kernel(T.ceildiv(N, block_N), T.ceildiv(M, block_M), threads=128) as (bx, by):
            A_s = T.alloc_shared((block_M, block_K), dtype)
            B_s = T.alloc_shared((block_K, block_N), dtype)
            C_f = T.alloc_fragment((block_M, block_N), "float32")
            T.clear(C_f)
            for k in T.Pipelined(T.ceildiv(K, block_K), num_stages=2):
                T.copy(A[by * block_M, k * block_K], A_s)
                T.copy(B[k * block_K, bx * block_N], B_s)
                T.gemm(A_s, B_s, C_f)
            for i, j in T.Parallel(block_M, block_N):
                C_f[i, j] = T.max(C_f[i, j], 0)
            T.copy(C_f, C[by * block_M, bx * block_N])
    return main


@tiledsl.jit(out_idx=[-1])
def matmul_again(M, N, K, block_M=64, block_N=64, block_K=32, dtype="float32"):
    """The same kernel as `matmul`, written on other lines of this file."""
    @T.prim_func
    def main(A: T.Tensor((M, K), dtype), B: T.Tensor((K, N), dtype), C: T.Tensor((M, N), dtype)):
        with T.Kernel(T.ceildiv(N, block_N), T.ceildiv(M, block_M), threads=128) as (bx, by):
            A_s = T.alloc_shared((block_M, block_K), dtype)
            B_s = T.alloc_shared((block_K, block_N), dtype)
            C_f = T.alloc_fragment((block_M, block_N), "float32")
            T.clear(C_f)
            for k in T.Pipelined(T.ceildiv(K, block_K), num_stages=2):
                T.copy(A[by * block_M, k * block_K], A_s)
                T.copy(B[k * block_K, bx * block_N], B_s)
                T.gemm(A_s, B_s, C_f)
            for i, j in T.Parallel(block_M, block_N):
                C_f[i, j] = T.max(C_f[i, j], 0)
            T.copy(C_f, C[by * block_M, bx * block_N])
    return main


def test_script_is_stable():
    a = matmul.get_ir(256, 256, 256)
    b = matmul.get_ir(256, 256, 256)
    assert isinstance(a, tiledsl.ir.PrimFunc)
    assert a is not b
    assert a.script() == b.script()
    assert a == b and hash(a) == hash(b)
    # spans are not part of the value: the same kernel from other source lines prints the same
    c = matmul_again.get_ir(256, 256, 256)
    assert c.script() == a.script()
    assert c == a


def test_script_reflects_every_parameter():
    base = matmul.get_ir(256, 256, 256).script()
    variants = [matmul.get_ir(256, 256, 256, block_K=16), matmul.get_ir(256, 256, 256, block_M=32),
                matmul.get_ir(256, 256, 128), matmul.get_ir(256, 256, 256, dtype="float16")]
    texts = [base] + [v.script() for v in variants]
    for x, y in itertools.combinations(texts, 2):
        assert x != y
    assert "T.Pipelined(8, num_stages=2)" in base
    assert "T.Pipelined(16, num_stages=2)" in texts[1]
    assert 'T.alloc_shared((32, 16), "float32")' not in base
    assert 'T.alloc_shared((64, 16), "float32")' in texts[1]
    assert 'A: T.Tensor((256, 256), "float16")' in texts[4]


# ---------------------------------------------------------------- printed text parses back

@tiledsl.jit(out_idx=[-1])
def matmul_nt(M, N, K, block_M=32, block_N=32, block_K=16):
    @T.prim_func
    def main(A: T.Tensor((K, M), "float16"), B: T.Tensor((N, K), "float16"), C: T.Tensor((M, N), "float16")):
        with T.Kernel(T.ceildiv(N, block_N), T.ceildiv(M, block_M)) as (bx, by):
            A_s = T.alloc_shared((block_K, block_M), "float16")
            B_s = T.alloc_shared((block_N, block_K), "float16")
            C_f = T.alloc_fragment((block_M, block_N), "float32")
            T.clear(C_f)
            for k in T.Pipelined(T.ceildiv(K, block_K), num_stages=3):
                T.copy(A[k * block_K, by * block_M], A_s)
                T.copy(B[bx * block_N, k * block_K], B_s)
                T.gemm(A_s, B_s, C_f, transpose_A=True, transpose_B=True)
            T.copy(C_f, C[by * block_M, bx * block_N])
    return main


def sq(x):
    return x * x


@tiledsl.jit(out_idx=[-1])
def elementwise(N, block=16):
    @T.prim_func
    def main(X: T.Tensor((N,), "float32"), I: T.Tensor((N,), "int32"), alpha: T.float32, n: T.int32,
             Y: T.Tensor((N, 4), "float16")):
        with T.Kernel(T.ceildiv(N, block), threads=64) as bx:
            for i in T.Parallel(block):
                x = X[bx * block + i]
                if x > 0.5 and I[bx * block + i] != 3:
                    Y[bx * block + i, 0] = T.cast(T.sqrt(x) * alpha, "float16")
                elif not x > 0.25:
                    Y[bx * block + i, 0] = T.cast(T.exp(x - 1), "float16")
                else:
                    Y[bx * block + i, 0] = T.float16(0.5)
                acc = T.alloc_var("float32")
                for r in T.serial(3):
                    acc += sq(x) * r
                for s in (1.0, 2.0):
                    acc = acc - s
                Y[bx * block + i, 1] = acc
                Y[bx * block + i, 2] = T.if_then_else(I[bx * block + i] % 2 == 0, T.abs(x), T.min(x, 0.5))
                Y[bx * block + i, 3] = (I[bx * block + i] // 3 + n) * 2 - (1 - (I[bx * block + i] ^ 5))
    return main


@tiledsl.jit(out_idx=[1])
def reductions(M, N):
    @T.prim_func
    def main(X: T.Tensor((M, N), "float32"), R: T.Tensor((3, N), "float32")):
        with T.Kernel(1) as bx:
            x = T.alloc_fragment((M, N), "float32")
            r = T.alloc_shared((3, N), "float32")
            col = T.alloc_fragment((N,), "float32")
            T.copy(X, x)
            T.fill(r, 1.0)
            T.fill(r[1, 2:5], 2.5)
            T.reduce_sum(x, col, dim=0)
            T.copy(col, r[0, 0])
            T.reduce_absmax(x, col, dim=0, clear=False)
            T.copy(col, r[2, 0:N])
            T.copy(r, R)
    return main


@tiledsl.jit(out_idx=[-1])
def loop_from_two(N):
    @T.prim_func
    def main(X: T.Tensor((N,), "float32"), Y: T.Tensor((N,), "float32")):
        with T.Kernel(1) as bx:
            for i in T.serial(2, N):
                Y[i] = X[i] * 2.0
    return main


@tiledsl.jit(out_idx=[-1])
def fill_neg_inf(N):
    @T.prim_func
    def main(Y: T.Tensor((N,), "float32")):
        with T.Kernel(1) as bx:
            m = T.alloc_fragment((N,), "float32")
            T.fill(m, -T.infinity("float32"))
            T.copy(m, Y)
    return main


@tiledsl.jit(out_idx=[-1])
def dynamic_rows(block=16):
    N = T.dynamic("N")

    @T.prim_func
    def main(X: T.Tensor((N, 4), "float32"), Y: T.Tensor((N, 4), "float32")):
        with T.Kernel(T.ceildiv(N, block)) as bx:
            for i, j in T.Parallel(block, 4):
                Y[bx * block + i, j] = X[bx * block + i, j] + 1.0
    return main


@tiledsl.jit(out_idx=[-1])
def same_sign(N):
    @T.prim_func
    def main(X: T.Tensor((N,), "float32"), Y: T.Tensor((N,), "int32")):
        with T.Kernel(1) as bx:
            for i in T.Parallel(N):
                if (X[i] > 0) == (X[N - 1 - i] > 0):  # a comparison of comparisons
                    Y[i] = 1
                else:
                    Y[i] = 0
    return main


_counter = itertools.count()


def _reparse(func, tmp_path):
    text = func.script()
    path = tmp_path / f"reparsed_{next(_counter)}.py"
    path.write_text("import tiledsl.language as T\n\n\n" + text)
    mod = _import_file(path, f"tiledsl_test_reparsed_{next(_counter)}")
    again = getattr(mod, func.name)
    assert isinstance(again, tiledsl.ir.PrimFunc)
    return text, again


ROUND_TRIP = {
    "matmul": lambda: matmul.get_ir(256, 256, 256),
    "matmul_ragged": lambda: matmul.get_ir(100, 70, 50, block_K=16),
    "matmul_nt_float16": lambda: matmul_nt.get_ir(96, 64, 80),
    "softmax": lambda: softmax.get_ir(21, 37),
    "elementwise": lambda: elementwise.get_ir(37),
    "reductions": lambda: reductions.get_ir(7, 13),
    "serial_from_two": lambda: loop_from_two.get_ir(10),
    "fill_neg_inf": lambda: fill_neg_inf.get_ir(8),
    "dynamic_shape": lambda: dynamic_rows.get_ir(),
    "compare_of_compares": lambda: same_sign.get_ir(8),
}


@pytest.mark.parametrize("name", list(ROUND_TRIP))
def test_printed_text_parses_back(name, tmp_path):
    func = ROUND_TRIP[name]()
    text, again = _reparse(func, tmp_path)
    assert again.script() == text
    assert again == func


def test_reparsed_kernel_computes_the_same(tmp_path):
    """A kernel whose text round-trips also compiles and runs from its printed form."""
    import numpy as np
    func = elementwise.get_ir(37)
    _, again = _reparse(func, tmp_path)
    k1 = tiledsl.compile(func, out_idx=[-1], name="elementwise")
    k2 = tiledsl.compile(again, out_idx=[-1], name="elementwise")
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, 37).astype(np.float32)
    i = rng.integers(-10, 10, 37).astype(np.int32)
    np.testing.assert_array_equal(k1(x, i, 1.5, 4), k2(x, i, 1.5, 4))
