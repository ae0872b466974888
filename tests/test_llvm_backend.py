"""The LLVM backend (`backend="llvm"`): kernels and their `__tvm_ffi_` entry points generated
as LLVM IR and compiled in process by llvmlite, with no C++ compiler.

The whole CPU suite also runs on this backend (`pytest --backend=llvm`); the tests here are
the ones about the backend itself, so they run in either mode: how it is chosen, the IR it
makes, conversions and integer semantics that must match the C++ backend bit for bit, the
entry point's checks, the thread pool (threads, fork, the TVM-FFI launcher), export to a
`.so`, and a machine without g++.
"""
import json
import os
import re
import subprocess
import sys
import textwrap
import threading

import ml_dtypes
import numpy as np
import pytest
import tvm_ffi

import tiledsl
import tiledsl.language as T
from tiledsl.errors import CompileError
from tiledsl.target import Target, host_cpu

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples"))
import gemm as gemm_example  # noqa: E402 - the README's example, held to numpy on this backend too
import test_host_errors  # noqa: E402 - its kernels, here compiled by the LLVM backend

jit_module = sys.modules["tiledsl.jit"]  # the module (tiledsl.jit is the decorator)
ISAS = ["scalar"] + (["avx2"] if host_cpu().has("avx2") else []) + \
    (["avx512"] if host_cpu().has("avx512f") else [])


def llvm_jit(**kw):
    return tiledsl.jit(out_idx=[-1], backend="llvm", **kw)


# C[i] = A[i] * alpha + n: a tensor, a float and an int scalar, and a written tensor
scale_add = llvm_jit()(test_host_errors.scale_add.factory)


def convert(N, src, dst, isa=None):
    """C = cast(A, dst), then back to float32: one rounding each way, in the kernel."""
    @tiledsl.jit(out_idx=[-1], backend="llvm", target=f"cpu -isa={isa}" if isa else "cpu")
    def k(N, src, dst):
        @T.prim_func
        def main(A: T.Tensor((N,), src), C: T.Tensor((N,), dst)):
            with T.Kernel(T.ceildiv(N, 32)) as bx:
                for i in T.Parallel(32):
                    C[bx * 32 + i] = T.cast(A[bx * 32 + i], dst)
        return main
    return k(N, src, dst)


# ---------------------------------------------------------------- choosing the backend

def test_backend_precedence(monkeypatch):
    monkeypatch.delenv("TILEDSL_CPU_BACKEND", raising=False)
    cpu = Target.parse("cpu")
    assert Target.parse("cpu -backend=llvm -isa=scalar") == Target(cpu.kind, cpu.arch, cpu.features, "scalar", "llvm")
    monkeypatch.setattr(jit_module, "compiler_info", _no_compiler)
    assert jit_module.cpu_backend(cpu) == "llvm"  # no C++ compiler: llvm
    monkeypatch.setenv("TILEDSL_CPU_BACKEND", "cxx")
    assert jit_module.cpu_backend(cpu) == "cxx"  # the environment beats the automatic choice
    assert jit_module.cpu_backend(Target.parse("cpu -backend=llvm")) == "llvm"  # the target beats it
    assert jit_module.cpu_backend(Target.parse("cpu -backend=llvm"), "cxx") == "cxx"  # the argument wins
    monkeypatch.setenv("TILEDSL_CPU_BACKEND", "gcc")
    with pytest.raises(ValueError, match="unknown CPU backend 'gcc'"):
        jit_module.cpu_backend(cpu)
    with pytest.raises(ValueError, match="-backend=llvm"):
        Target.parse("cpu -backend=clang")


def _no_compiler():
    raise CompileError("no C++ compiler found")


def test_environment_switches_a_factory_between_backends(monkeypatch):
    """The factory's memo is keyed by the backend, so a later call under another backend
    compiles again instead of returning the other backend's kernel."""
    monkeypatch.setattr(jit_module, "compiler_info", _no_compiler)
    monkeypatch.delenv("TILEDSL_CPU_BACKEND", raising=False)

    @tiledsl.jit(out_idx=[-1])
    def double(N):
        @T.prim_func
        def main(A: T.Tensor((N,), "float32"), B: T.Tensor((N,), "float32")):
            with T.Kernel(1) as bx:
                for i in T.Parallel(N):
                    B[i] = A[i] * 2.0
        return main

    k = double(8)
    assert k.target.backend == "llvm" and k.library is None
    assert k.get_kernel_source().count("define i32 @__tvm_ffi_double(") == 1
    np.testing.assert_array_equal(k(np.arange(8, dtype=np.float32)), np.arange(8) * 2.0)


# ---------------------------------------------------------------- the generated IR

@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("dtype", ["float32", "float64", "bfloat16", "float16"])
def test_gemm_micro_kernels_in_vector_ir(isa, dtype):
    acc = "float64" if dtype == "float64" else "float32"
    M, N, K = 67, 45, 33  # ragged against every micro-tile and tile
    factory = tiledsl.jit(out_idx=[-1], backend="llvm", target=f"cpu -isa={isa}")(gemm_example.matmul.factory)
    k = factory(M, N, K, 32, 64, 16, dtype, relu=False)
    src = k.get_kernel_source()
    lanes = {"avx512": 64, "avx2": 32}.get(isa, 0) // (8 if acc == "float64" else 4)
    if dtype == "bfloat16" and isa == "avx512" and host_cpu().has("avx512bf16"):
        # the dot-product row (codegen/gemm/dot_bf16.py) shadows the converting FMA kernel
        assert "define internal void @tdsl_ukd_avx512_bf16_" in src
        assert "@llvm.x86.avx512bf16.dpbf16ps.512" in src
    else:
        assert f"define internal void @tdsl_ukr_{isa}_{dtype}_" in src
        if lanes:
            assert f"@llvm.fma.v{lanes}f{acc[-2:]}" in src
    npdt = ml_dtypes.bfloat16 if dtype == "bfloat16" else np.dtype(dtype)
    rng = np.random.default_rng(0)
    a = rng.standard_normal((M, K)).astype(npdt)
    b = rng.standard_normal((K, N)).astype(npdt)
    ref = a.astype(np.float64) @ b.astype(np.float64)
    scale = np.abs(a.astype(np.float64)) @ np.abs(b.astype(np.float64))
    tol = {"float32": 1e-5, "float64": 1e-12}.get(dtype, 2e-3)
    rounding = {"bfloat16": 2.0 ** -8, "float16": 2.0 ** -11}.get(dtype, 0.0)  # of the output C
    assert np.all(np.abs(k(a, b).astype(np.float64) - ref) <= tol * scale + rounding * np.abs(ref))


def test_example_gemm_holds_to_numpy(monkeypatch, capsys):
    monkeypatch.setenv("TILEDSL_CPU_BACKEND", "llvm")
    assert gemm_example.main([96, 130]) == 0
    assert capsys.readouterr().out.count(" ok") == 2


@pytest.mark.parametrize("isa", ["scalar", host_cpu().isa])
def test_float16_conversions_match_numpy(isa):
    """float32 -> float16 rounds to nearest even, overflows to inf, keeps NaN, makes
    subnormals; back to float32 is exact. `-isa=scalar` has no F16C: bit arithmetic."""
    special = np.array([0.0, -0.0, 1.0, -2.5, 65504.0, 65520.0, 70000.0, -1e9, np.inf, -np.inf, np.nan,
                        6e-8, 3e-8, 2.9e-8, 6.1e-5, 1e-45, 1.0009765625, 1.00048828125, 1.00146484375,
                        2049.0, 2051.0, 3.14159], np.float32)
    rng = np.random.default_rng(1)
    x = np.concatenate([special, rng.standard_normal(200).astype(np.float32) * 10.0 ** rng.integers(-8, 5, 200)])
    x = x.astype(np.float32)
    h = convert(len(x), "float32", "float16", isa)(x)
    with np.errstate(over="ignore"):
        want = x.astype(np.float16)
    np.testing.assert_array_equal(h.view(np.uint16)[~np.isnan(x)], want.view(np.uint16)[~np.isnan(x)])
    assert np.isnan(h[np.isnan(x)]).all()
    bits = np.arange(0, 1 << 16, 7, dtype=np.uint16).view(np.float16)  # every kind of half
    back = convert(len(bits), "float16", "float32", isa)(bits)
    ok = ~np.isnan(bits)
    np.testing.assert_array_equal(back[ok], bits[ok].astype(np.float32))
    assert np.isnan(back[~ok]).all()


def test_bfloat16_conversions_match_ml_dtypes():
    rng = np.random.default_rng(2)
    x = np.concatenate([np.array([0.0, -0.0, 1.00390625, 1.01171875, 3.4e38, np.inf, -np.inf, 1e-40],
                                 np.float32), rng.standard_normal(100).astype(np.float32)])
    b = convert(len(x), "float32", "bfloat16")(x)
    np.testing.assert_array_equal(b.view(np.uint16), x.astype(ml_dtypes.bfloat16).view(np.uint16))


@llvm_jit()
def int_ops(N, dtype):
    @T.prim_func
    def main(A: T.Tensor((N,), dtype), B: T.Tensor((N,), dtype), C: T.Tensor((4, N), dtype)):
        with T.Kernel(T.ceildiv(N, 16)) as bx:
            for i in T.Parallel(16):
                j = bx * 16 + i
                C[0, j] = A[j] // B[j]
                C[1, j] = A[j] % B[j]
                C[2, j] = T.max(A[j], B[j]) - T.min(A[j], B[j])
                C[3, j] = (A[j] >> 2) ^ (B[j] << 1)
    return main


@pytest.mark.parametrize("dtype", ["int32", "int64", "uint32", "int8"])
def test_integer_division_is_floor_division(dtype):
    rng = np.random.default_rng(3)
    info = np.iinfo(dtype)
    a = rng.integers(max(info.min, -100), min(info.max, 100), 200, endpoint=True).astype(dtype)
    b = rng.integers(max(info.min, -9), 10, 200, endpoint=True).astype(dtype)
    b[b == 0] = 3
    if info.min < 0:  # the one quotient that overflows wraps (it would trap on x86)
        a[:2], b[:2] = info.min, -1
    c = int_ops(len(a), dtype)(a, b)
    with np.errstate(over="ignore"):
        np.testing.assert_array_equal(c[0], a // b)
        np.testing.assert_array_equal(c[1], a % b)
    np.testing.assert_array_equal(c[2], np.maximum(a, b) - np.minimum(a, b))
    np.testing.assert_array_equal(c[3], (a >> 2) ^ (b << 1))


@llvm_jit()
def float_ops(N):
    @T.prim_func
    def main(A: T.Tensor((N,), "float32"), C: T.Tensor((6, N), "float32")):
        with T.Kernel(T.ceildiv(N, 16)) as bx:
            for i in T.Parallel(16):
                x = A[bx * 16 + i]
                C[0, bx * 16 + i] = T.max(x, 0.0)  # C's `x > 0 ? x : 0`: NaN gives 0
                C[1, bx * 16 + i] = T.exp(x) + T.log(T.abs(x) + 1.0)
                C[2, bx * 16 + i] = T.sqrt(T.abs(x)) * T.rsqrt(T.abs(x) + 1.0)
                C[3, bx * 16 + i] = T.tanh(x) + T.sigmoid(x)
                C[4, bx * 16 + i] = x // 0.75
                C[5, bx * 16 + i] = x % 0.75
    return main


def test_float_semantics_follow_c():
    x = np.array([1.5, -2.25, 0.0, -0.0, np.nan, np.inf, -3.0, 10.0, 0.7, -0.7] + [0.1] * 6, np.float32)
    c = float_ops(len(x))(x)
    with np.errstate(all="ignore"):
        np.testing.assert_array_equal(c[0], np.where(x > 0, x, np.float32(0)))
        fin = np.isfinite(x)
        np.testing.assert_allclose(c[1][fin], (np.exp(x) + np.log(np.abs(x) + 1))[fin], rtol=1e-6)
        np.testing.assert_allclose(c[2][fin], (np.sqrt(np.abs(x)) / np.sqrt(np.abs(x) + 1))[fin], rtol=1e-6)
        np.testing.assert_allclose(c[3][fin], (np.tanh(x) + 1 / (1 + np.exp(-x)))[fin], rtol=1e-6)
        q = np.floor(x / np.float32(0.75))
        np.testing.assert_array_equal(c[4][fin], q[fin])
        np.testing.assert_array_equal(c[5][fin], (x - q * np.float32(0.75))[fin])


# ---------------------------------------------------------------- the entry point

@pytest.mark.parametrize("call,exc,message", [
    (lambda f, a, c: f(a, 2.0, 1), TypeError, "scale_add: expects 4 arguments (A, alpha, n, C), got 3"),
    (lambda f, a, c: f(a.astype(np.float64), 2.0, 1, c), TypeError, "scale_add: argument 'A' expects float32, got float64"),
    (lambda f, a, c: f(a[:99].copy(), 2.0, 1, c), ValueError, "scale_add: argument 'A' expects shape (100,), got (99,)"),
    (lambda f, a, c: f(a.reshape(10, 10), 2.0, 1, c), ValueError, "scale_add: argument 'A' expects 1 dimensions, got 2"),
    (lambda f, a, c: f(np.ones(200, np.float32)[::2], 2.0, 1, c), ValueError,
     "scale_add: argument 'A' must be contiguous (row-major); got strides (2,) (in elements)"),
    (lambda f, a, c: f([1.0], 2.0, 1, c), TypeError, "scale_add: argument 'A' expects a tensor, got list"),
    (lambda f, a, c: f(a, "x", 1, c), TypeError, "scale_add: argument 'alpha' expects a float32 scalar, got str"),
    (lambda f, a, c: f(a, 2.0, 1.5, c), TypeError, "scale_add: argument 'n' expects an integer (int32), got float"),
    (lambda f, a, c: f(a, 2.0, 2 ** 31, c), ValueError, "scale_add: argument 'n' = 2147483648 does not fit in int32"),
    (lambda f, a, c: f(a, 2.0, 1, a), ValueError,
     "scale_add: argument 'C' is written by the kernel and overlaps argument 'A' in memory"),
], ids=["nargs", "dtype", "shape", "ndim", "strides", "kind", "float", "int", "range", "overlap"])
def test_entry_point_checks(call, exc, message):
    """The raw exported function (no Python wrapper in between) raises what the C++ host code
    raises, before the body runs."""
    k = scale_add(100)
    a = np.arange(100, dtype=np.float32)
    c = np.full(100, 7.0, np.float32)
    with pytest.raises(exc) as e:
        call(k._fn, a, c)
    assert str(e.value) == message
    assert (c == 7.0).all()
    k._fn(a, 2, True, c)  # an int is a float32 scalar, a bool an integer
    np.testing.assert_array_equal(c, a * 2 + 1)


@llvm_jit()
def rows_sum(block=4):
    N = T.dynamic("N")

    @T.prim_func
    def main(A: T.Tensor((N, 3), "float32"), B: T.Tensor((N,), "float32")):
        with T.Kernel(T.ceildiv(N, block)) as bx:
            for i in T.Parallel(block):
                B[bx * block + i] = A[bx * block + i, 0] + A[bx * block + i, 1] + A[bx * block + i, 2]
    return main


def test_symbolic_dimensions_are_bound_per_call():
    k = rows_sum()
    for n in (0, 1, 13):
        a = np.arange(3 * n, dtype=np.float32).reshape(n, 3)
        np.testing.assert_array_equal(k(a), a.sum(1))
    with pytest.raises(ValueError) as e:
        k._fn(np.ones((5, 3), np.float32), np.ones(4, np.float32))
    assert str(e.value) == "rows_sum: argument 'B' expects shape (N,) = (5,), got (4,)"


# ---------------------------------------------------------------- running the grid

def test_parallel_launchers_agree_and_ffi_errors_propagate(monkeypatch):
    n = 1000
    a = np.random.default_rng(4).standard_normal(n).astype(np.float32)
    pool = scale_add(n)
    monkeypatch.setenv("TILEDSL_LLVM_PARALLEL", "ffi")
    ffi = tiledsl.compile(scale_add.get_ir(n), out_idx=[-1], backend="llvm", name="scale_add_ffi")
    assert "@tdsl_ffi_parallel_for" in ffi.get_kernel_source()
    assert "@tdsl_parallel_for" in pool.get_kernel_source()
    np.testing.assert_array_equal(ffi(a, 0.5, 3), pool(a, 0.5, 3))
    np.testing.assert_array_equal(ffi(a, 0.5, 3), a * np.float32(0.5) + 3)

    def broken(task, ctx, total):
        raise RuntimeError(f"launcher refused {total} blocks")
    original = tvm_ffi.get_global_func("tiledsl.parallel_launch")
    tvm_ffi.register_global_func("tiledsl.parallel_launch", broken, override=True)
    try:
        with pytest.raises(RuntimeError, match="launcher refused 16 blocks"):
            ffi(a, 0.5, 3)
    finally:
        tvm_ffi.register_global_func("tiledsl.parallel_launch", original, override=True)
    np.testing.assert_array_equal(ffi(a, 1.0, 0), a)


def test_concurrent_callers_share_the_pool():
    """A launch that finds the pool busy runs its blocks itself: results stay right."""
    k = tiledsl.jit(out_idx=[-1], backend="llvm")(gemm_example.matmul.factory)(64, 64, 64, 16, 16, 16, relu=False)
    rng = np.random.default_rng(5)
    data = [(rng.standard_normal((64, 64)).astype(np.float32), rng.standard_normal((64, 64)).astype(np.float32))
            for _ in range(3)]
    errors = []

    def work(a, b):
        for _ in range(20):
            if not np.allclose(k(a, b), a @ b, rtol=1e-4, atol=1e-4):
                errors.append("wrong")
    threads = [threading.Thread(target=work, args=d) for d in data]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_child_starts_its_own_workers():
    k = scale_add(4096)
    a = np.ones(4096, np.float32)
    np.testing.assert_array_equal(k(a, 2.0, 1), 3.0)  # the pool runs in this process now
    pid = os.fork()
    if pid == 0:  # the child: the parent's workers do not exist here
        ok = bool((k(a, 3.0, 1) == 4.0).all())
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0


# ---------------------------------------------------------------- export, and no C++ compiler

def test_export_library_runs_without_tiledsl(tmp_path):
    k = scale_add(100)
    so = k.export_library(tmp_path / "scale_add.so")
    obj = k.export_library(tmp_path / "scale_add.o")
    assert open(obj, "rb").read(4) == b"\x7fELF"
    script = textwrap.dedent(f"""
        import numpy as np, tvm_ffi, sys
        f = tvm_ffi.load_module({so!r})["scale_add"]
        a = np.arange(100, dtype=np.float32); c = np.empty_like(a)
        f(a, 2.0, 1, c)
        assert (c == a * 2 + 1).all(), c
        try:
            f(a, 2.0, 1, np.empty(3, np.float32))
        except ValueError as e:
            print(e)
        assert "tiledsl" not in sys.modules
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "scale_add: argument 'C' expects shape (100,), got (3,)"


# What `compiler_info` looks for, and the versioned / cross-prefixed names distributions install
# beside them (g++-12, x86_64-linux-gnu-g++, x86_64-conda-linux-gnu-c++): hidden from PATH.
CXX_NAME = re.compile(r"(^|-)(g\+\+|c\+\+|clang\+\+)(-[\d.]+)?$")


def path_without_cxx(bin_dir) -> str:
    """A one-folder PATH holding every program of this PATH (first one wins) but C++ compilers."""
    bin_dir.mkdir()
    for d in os.environ.get("PATH", "").split(os.pathsep):
        try:
            names = os.listdir(d or ".")
        except OSError:
            continue
        for name in names:
            target = os.path.join(d, name)
            if CXX_NAME.search(name) or (bin_dir / name).exists() or not os.access(target, os.X_OK):
                continue
            os.symlink(target, bin_dir / name)
    return str(bin_dir)


def test_without_a_cxx_compiler_llvm_is_chosen(tmp_path):
    """A PATH without g++, c++ or clang++: the README's example GEMM runs, on the LLVM backend,
    with the thread count the environment asks for. The interpreter is this one, by its own
    path, so a venv or conda env (found from the executable's location) stays what it is."""
    env = {k: v for k, v in os.environ.items() if k not in ("CXX", "TILEDSL_CPU_BACKEND", "OMP_NUM_THREADS")}
    env.update(PATH=path_without_cxx(tmp_path / "bin"), TILEDSL_CACHE_DIR=str(tmp_path / "cache"),
               TILEDSL_NUM_THREADS="3")
    examples = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples")
    script = textwrap.dedent(f"""
        import os, shutil, sys, numpy as np
        assert not any(shutil.which(c) for c in ("g++", "c++", "clang++")), os.environ["PATH"]
        sys.path.insert(0, {examples!r})
        from gemm import matmul
        threads = len(os.listdir("/proc/self/task"))
        kernel = matmul(200, 150, 100)
        a = np.random.rand(200, 100).astype(np.float32) - 0.5
        b = np.random.rand(100, 150).astype(np.float32) - 0.5
        assert np.allclose(kernel(a, b), np.maximum(a @ b, 0), rtol=1e-4, atol=1e-5)
        print(kernel.target.backend, len(os.listdir("/proc/self/task")) - threads)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["llvm", "2"]  # two workers beside the calling thread


def test_print_matches_the_interpreter(capfd):
    def kernel():
        @T.prim_func
        def main(A: T.Tensor((2, 3), "float32"), n: T.int32, B: T.Tensor((2, 3), "float32")):
            with T.Kernel(1) as bx:
                A_s = T.alloc_shared((2, 3), "float32")
                T.copy(A[0, 0], A_s)
                T.print(A_s, "tile")
                T.print(n > 2, "flag")
                for i in T.serial(2):
                    T.print(A_s[i, 0] * 2, "row")
                T.copy(A_s, B[0, 0])
        return main
    a = np.arange(6, dtype=np.float32).reshape(2, 3) / 4
    tiledsl.compile(kernel(), out_idx=[-1], backend="llvm", name="show")(a, 3)
    ours = capfd.readouterr().out
    tiledsl.compile(kernel(), out_idx=[-1], target="interp", name="show")(a, 3)
    theirs = capfd.readouterr().out
    assert ours == theirs and ours.count("\n") == 9, ours


@llvm_jit()
def dyn_i32(block=8):
    N = T.dynamic("N", "int32")

    @T.prim_func
    def main(A: T.Tensor((N,), "uint8"), B: T.Tensor((N,), "int32")):
        with T.Kernel(T.ceildiv(N, block)) as bx:
            for i in T.Parallel(block):
                B[bx * block + i] = T.cast(A[bx * block + i] + 250, "int32") + N
    return main


def test_int32_symbolic_size_and_wrapping_uint8():
    """An int32 size bound from the int64 shape, and uint8 arithmetic that wraps as in numpy."""
    a = np.arange(0, 20, dtype=np.uint8)
    np.testing.assert_array_equal(dyn_i32()(a), (a + np.uint8(250)).astype(np.int32) + 20)


def test_the_host_cpu_is_asked_of_llvm_once_per_machine(tmp_path, monkeypatch):
    from tiledsl import target
    monkeypatch.setenv("TILEDSL_CACHE_DIR", str(tmp_path))
    first = target.host_llvm_cpu.__wrapped__()
    memos = list((tmp_path / "probes").glob("cpu-*.json"))
    if not memos:
        pytest.skip("no /proc/cpuinfo to index the memo by")
    assert json.loads(memos[0].read_text())["features"] == first[2]
    monkeypatch.setattr(target, "_ask_llvm", lambda: pytest.fail("asked llvmlite again"))
    assert target.host_llvm_cpu.__wrapped__() == first
    memos[0].write_text("{")  # a damaged memo is asked again, not believed
    monkeypatch.undo()
    monkeypatch.setenv("TILEDSL_CACHE_DIR", str(tmp_path))
    assert target.host_llvm_cpu.__wrapped__() == first


def test_the_runtime_object_is_compiled_once_per_machine(tmp_path, monkeypatch):
    from tiledsl.codegen.llvm import RUNTIME_SYMBOLS
    from tiledsl.runtime import llvm_jit
    from tiledsl.target import host_cpu
    monkeypatch.setenv("TILEDSL_CACHE_DIR", str(tmp_path))
    m = llvm_jit.machine_for(host_cpu())
    first = llvm_jit._runtime_object(m)
    assert first[1] == list(RUNTIME_SYMBOLS)
    (path,) = (tmp_path / "probes").glob("llvm-runtime-*.o")
    monkeypatch.setattr(llvm_jit, "emit_object", lambda *a, **k: pytest.fail("compiled again"))
    assert llvm_jit._runtime_object(m) == first
    path.write_bytes(path.read_bytes()[:-40] + b"damaged!")  # damaged: compiled again, not loaded
    monkeypatch.undo()
    monkeypatch.setenv("TILEDSL_CACHE_DIR", str(tmp_path))
    assert llvm_jit._runtime_object(m) == first
