"""The CUDA target.

Without a GPU: the generated CUDA is compiled by nvcc for sm_80 and sm_90a (skipped without
nvcc), and the same text is run through the CPU emulation (`target="cuda -emulate"`: each CUDA
thread an OS thread, real barriers) against numpy, which checks the thread partitioning, the
fragment index math and the barriers. With a GPU (marker `cuda`): the kernels on torch / cupy
arrays against numpy, and device errors.
"""
import shutil

import ml_dtypes
import numpy as np
import pytest

import tiledsl
import tiledsl.language as T
from tiledsl.runtime.cuda import find_nvcc

EMU = "cuda -emulate"


def matmul(M, N, K, bm=32, bn=32, bk=16, dtype="float16", acc="float32", trans_a=False, trans_b=False,
           threads=64, stages=2):
    a_shape = (K, M) if trans_a else (M, K)
    b_shape = (N, K) if trans_b else (K, N)
    a_tile = (bk, bm) if trans_a else (bm, bk)
    b_tile = (bn, bk) if trans_b else (bk, bn)

    @T.prim_func
    def main(A: T.Tensor(a_shape, dtype), B: T.Tensor(b_shape, dtype), C: T.Tensor((M, N), acc)):
        with T.Kernel(T.ceildiv(N, bn), T.ceildiv(M, bm), threads=threads) as (bx, by):
            A_s = T.alloc_shared(a_tile, dtype)
            B_s = T.alloc_shared(b_tile, dtype)
            C_f = T.alloc_fragment((bm, bn), acc)
            T.clear(C_f)
            for k in T.Pipelined(T.ceildiv(K, bk), num_stages=stages):
                if trans_a:
                    T.copy(A[k * bk, by * bm], A_s)
                else:
                    T.copy(A[by * bm, k * bk], A_s)
                if trans_b:
                    T.copy(B[bx * bn, k * bk], B_s)
                else:
                    T.copy(B[k * bk, bx * bn], B_s)
                T.gemm(A_s, B_s, C_f, transpose_A=trans_a, transpose_B=trans_b)
            T.copy(C_f, C[by * bm, bx * bn])
    return main


def softmax(M, N, bm=4, threads=64):
    @T.prim_func
    def main(A: T.Tensor((M, N), "float32"), B: T.Tensor((M, N), "float32")):
        with T.Kernel(T.ceildiv(M, bm), threads=threads) as bx:
            x = T.alloc_fragment((bm, N), "float32")
            mx = T.alloc_fragment((bm,), "float32")
            sm = T.alloc_fragment((bm,), "float32")
            T.copy(A[bx * bm, 0], x)
            T.reduce_max(x, mx, dim=1)
            for i, j in T.Parallel(bm, N):
                x[i, j] = T.exp(x[i, j] - mx[i])
            T.reduce_sum(x, sm, dim=1)
            for i, j in T.Parallel(bm, N):
                x[i, j] = x[i, j] / sm[i]
            T.copy(x, B[bx * bm, 0])
    return main


def column_sums(M, N, bn=16):
    """Reduction over dim 0, not clearing: the output starts as the first row."""
    @T.prim_func
    def main(A: T.Tensor((M, N), "float32"), S: T.Tensor((N,), "float32")):
        with T.Kernel(T.ceildiv(N, bn), threads=32) as bx:
            x = T.alloc_fragment((M, bn), "float32")
            s = T.alloc_fragment((bn,), "float32")
            T.copy(A[0, bx * bn], x)
            for j in T.Parallel(bn):
                s[j] = A[0, bx * bn + j]
            T.reduce_sum(x, s, dim=0, clear=False)
            T.copy(s, S[bx * bn])
    return main


def axpy(N, block=128):
    @T.prim_func
    def main(X: T.Tensor((N,), "float32"), Y: T.Tensor((N,), "float32"), alpha: T.float32,
             Z: T.Tensor((N,), "float32")):
        with T.Kernel(T.ceildiv(N, block), threads=128) as bx:
            for i in T.Parallel(block):
                Z[bx * block + i] = X[bx * block + i] * alpha + Y[bx * block + i]
    return main


def _ref_gemm(a, b, trans_a, trans_b):
    a = a.astype(np.float32).T if trans_a else a.astype(np.float32)
    b = b.astype(np.float32).T if trans_b else b.astype(np.float32)
    return a @ b


def _rand(shape, dtype, seed):
    x = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    return x.astype(ml_dtypes.bfloat16) if dtype == "bfloat16" else x.astype(dtype)


# ------------------------------------------------------------------------------- emulation

@pytest.mark.parametrize("M,N,K,dtype,trans_a,trans_b", [
    (64, 64, 32, "float16", False, False),
    (50, 37, 29, "float16", False, False),     # ragged everything
    (33, 40, 48, "bfloat16", False, True),
    (40, 24, 20, "float32", True, False),
    (17, 9, 5, "float32", True, True),
])
def test_emulated_gemm_matches_numpy(M, N, K, dtype, trans_a, trans_b):
    acc = "float32"
    k = tiledsl.compile(matmul(M, N, K, dtype=dtype, acc=acc, trans_a=trans_a, trans_b=trans_b),
                        out_idx=[-1], target=EMU)
    a = _rand((K, M) if trans_a else (M, K), dtype, 0)
    b = _rand((N, K) if trans_b else (K, N), dtype, 1)
    np.testing.assert_allclose(k(a, b), _ref_gemm(a, b, trans_a, trans_b), rtol=1e-4, atol=1e-4)


def test_emulated_gemm_float64_and_odd_thread_count():
    k = tiledsl.compile(matmul(24, 20, 12, bm=8, bn=20, bk=4, dtype="float64", acc="float64", threads=40),
                        out_idx=[-1], target=EMU)
    a, b = _rand((24, 12), "float64", 2), _rand((12, 20), "float64", 3)
    np.testing.assert_allclose(k(a, b), a @ b, rtol=1e-12)


def test_emulated_softmax_and_reductions():
    k = tiledsl.compile(softmax(10, 48), out_idx=[-1], target=EMU)
    a = _rand((10, 48), "float32", 4)
    ref = np.exp(a - a.max(1, keepdims=True))
    np.testing.assert_allclose(k(a), ref / ref.sum(1, keepdims=True), rtol=1e-5, atol=1e-7)
    k = tiledsl.compile(column_sums(12, 40), out_idx=[-1], target=EMU)
    a = _rand((12, 40), "float32", 5)
    np.testing.assert_allclose(k(a), a.sum(0) + a[0], rtol=1e-5, atol=1e-6)


def test_emulated_elementwise_with_scalar_and_ragged_tail():
    k = tiledsl.compile(axpy(300), out_idx=[-1], target=EMU)
    x, y = _rand((300,), "float32", 6), _rand((300,), "float32", 7)
    np.testing.assert_allclose(k(x, y, 2.5), 2.5 * x + y, rtol=1e-6)


def test_barriers_where_shared_memory_changes_hands():
    src = tiledsl.compile(matmul(64, 64, 64), target=EMU).get_kernel_source()
    body = src[src.index("_kernel0("):src.index("_launch(")]
    # one barrier before the copies (the previous k step's GEMM still reads), one before the GEMM
    assert body.count("__syncthreads();") == 2
    loop = body[body.index("for (int64_t k = 0"):]
    assert loop.index("__syncthreads();") < loop.index("A_s[") < loop.rindex("__syncthreads();")


def test_fragment_read_by_another_thread_is_an_error():
    @T.prim_func
    def main(A: T.Tensor((16, 16), "float32"), B: T.Tensor((16, 16), "float32")):
        with T.Kernel(1, threads=32) as bx:
            x = T.alloc_fragment((16, 16), "float32")
            y = T.alloc_fragment((16, 16), "float32")
            T.copy(A, x)
            for i, j in T.Parallel(16, 16):
                y[i, j] = x[j, i]
            T.copy(y, B)
    with pytest.raises(tiledsl.LoweringError, match="another thread's register") as e:
        tiledsl.compile(main, out_idx=[-1], target=EMU)
    assert "y[i, j] = x[j, i]" in str(e.value) or "T.Parallel(16, 16)" in str(e.value)


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_gemm_with_a_fragment_operand(dtype):
    """FlashAttention's P @ V: A is a fragment (the FMA row for float32, mma for float16), here
    with the fragment of a previous GEMM's accumulator, cast as P is."""
    @T.prim_func
    def main(A: T.Tensor((32, 16), dtype), B: T.Tensor((16, 32), dtype), D: T.Tensor((32, 16), dtype),
             C: T.Tensor((32, 16), "float32")):
        with T.Kernel(1, threads=64) as bx:
            a_s = T.alloc_shared((32, 16), dtype)
            b_s = T.alloc_shared((16, 32), dtype)
            d_s = T.alloc_shared((32, 16), dtype)
            s = T.alloc_fragment((32, 32), "float32")
            p = T.alloc_fragment((32, 32), dtype)
            c = T.alloc_fragment((32, 16), "float32")
            T.copy(A, a_s)
            T.copy(B, b_s)
            T.copy(D, d_s)
            T.gemm(a_s, b_s, s, clear_accum=True)
            T.copy(s, p)
            T.gemm(p, d_s, c, clear_accum=True)
            T.copy(c, C)
    rng = np.random.default_rng(5)
    a, b, d = ((rng.standard_normal(shape) / 4).astype(dtype) for shape in ((32, 16), (16, 32), (32, 16)))
    got = tiledsl.compile(main, out_idx=[-1], target=EMU)(a, b, d)
    p = (a.astype(np.float32) @ b.astype(np.float32)).astype(dtype).astype(np.float32)
    np.testing.assert_allclose(got, p @ d.astype(np.float32), rtol=2e-3, atol=2e-3)


@pytest.mark.parametrize("bm,bn", [(16, 16), (16, 8)])
def test_small_tensor_core_tile_uses_fewer_warps(bm, bn):
    """A 16 x 16 fp32 C cannot give each of 4 warps an m16n8 tile: the mma row spreads it over
    the warps that fit (the others skip the GEMM) instead of refusing it."""
    func = matmul(40, 24, 48, bm=bm, bn=bn, bk=16, threads=128)
    src = tiledsl.compile(func, out_idx=[-1], target=EMU)
    assert "mma" in src.get_kernel_source()
    rng = np.random.default_rng(9)
    a, b = rng.standard_normal((40, 48)).astype(np.float16), rng.standard_normal((48, 24)).astype(np.float16)
    np.testing.assert_allclose(src(a, b), a.astype(np.float32) @ b.astype(np.float32), rtol=1e-3, atol=1e-3)


def test_print_on_the_gpu_gives_the_cpu_lines(capfd):
    """T.print in device code: a loop's prints once per iteration (by the thread that runs it),
    a block statement's once (by thread 0), the same lines as the interpreter in any order."""
    from test_interp import printing
    a = np.array([[1, 2, 3], [4.5, 5, 6]], np.float32)
    tiledsl.compile(printing, [-1], target="interp")(a, 7)
    want = capfd.readouterr().out.splitlines()
    tiledsl.compile(printing, [-1], target=EMU)(a, 7)
    assert sorted(capfd.readouterr().out.splitlines()) == sorted(want)


# ------------------------------------------------------------------------- nvcc, no GPU needed

needs_nvcc = pytest.mark.skipif(find_nvcc() is None, reason="no CUDA toolkit (nvcc)")


def atomics_fp8_cumsum(N=1000, bins=16):
    """Atomics of three widths, float8 loads and stores, and a cumsum over a shared tile."""
    @T.prim_func
    def feat(X: T.Tensor((N,), "float8_e4m3"), H: T.Tensor((bins,), "int32"), S: T.Tensor((1,), "float32"),
             Mx: T.Tensor((1,), "float16"), Y: T.Tensor((N,), "float8_e5m2"), P: T.Tensor((N,), "float32")):
        with T.Kernel(T.ceildiv(N, 128), threads=128) as bx:
            t = T.alloc_shared((128,), "float32")
            T.copy(X[bx * 128], t)
            for i in T.Parallel(128):
                if bx * 128 + i < N:
                    T.atomic_add(H[T.cast(T.abs(t[i]), "int32") % bins], 1)
                    T.atomic_add(S[0], t[i])
                    T.atomic_max(Mx[0], t[i])
                    Y[bx * 128 + i] = t[i] * 2.0
            T.cumsum(t, dim=0)
            T.copy(t, P[bx * 128])
    return feat


def test_emulated_atomics_float8_and_cumsum():
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(1000) * 4).astype(ml_dtypes.float8_e4m3fn)
    xf = x.astype(np.float32)
    h, s = np.zeros(16, np.int32), np.zeros(1, np.float32)
    mx, y, p = np.full(1, -100, np.float16), np.zeros(1000, ml_dtypes.float8_e5m2), np.zeros(1000, np.float32)
    tiledsl.compile(atomics_fp8_cumsum(), out_idx=[], target="cuda -emulate")(x, h, s, mx, y, p)
    np.testing.assert_array_equal(h, np.bincount(np.abs(xf).astype(np.int32) % 16, minlength=16))
    np.testing.assert_allclose(s[0], xf.astype(np.float64).sum(), rtol=1e-5)
    assert mx[0] == xf.max()
    np.testing.assert_array_equal(y.view(np.uint8), (xf * 2).astype(ml_dtypes.float8_e5m2).view(np.uint8))
    tiles = np.pad(xf, (0, 24)).reshape(-1, 128)
    np.testing.assert_allclose(p, np.cumsum(tiles, axis=1).reshape(-1)[:1000], rtol=1e-5, atol=1e-5)


def atomic_float8():
    """1-byte atomics: a compare-and-swap of the 4-byte word that holds the element."""
    @T.prim_func
    def main(X: T.Tensor((8,), "float32"), Y: T.Tensor((2,), "float8_e4m3"), Q: T.Tensor((4,), "int8")):
        with T.Kernel(1, threads=32) as bx:
            for i in T.Parallel(8):
                T.atomic_add(Y[i % 2], X[i])
                T.atomic_max(Q[i % 4], T.cast(X[i], "int8") - 3)
    return main


def test_emulated_one_byte_atomics():
    y, q = np.zeros(2, ml_dtypes.float8_e4m3fn), np.full(4, -100, np.int8)
    tiledsl.compile(atomic_float8(), out_idx=[], target=EMU)(np.arange(8, dtype=np.float32), y, q)
    np.testing.assert_array_equal(y.astype(np.float32), [12.0, 16.0])
    np.testing.assert_array_equal(q, [1, 2, 3, 4])


@needs_nvcc
@pytest.mark.parametrize("arch", ["sm_80", "sm_90a"])
def test_nvcc_compiles_the_example_kernels(arch, tmp_path):
    from tiledsl.runtime.cuda import cuda_source, nvcc_compile
    from tiledsl.target import Target
    target = Target.parse(f"cuda -arch={arch}")
    kernels = {"gemm": matmul(256, 256, 256, bm=64, bn=64, bk=32, threads=128),
               "softmax": softmax(64, 256, threads=128), "atomics_fp8_cumsum": atomics_fp8_cumsum()}
    from test_interp import printing
    kernels["print"] = printing
    kernels["atomic_float8"] = atomic_float8()
    for name, func in kernels.items():
        _, source = cuda_source(func, target)
        assert "__global__" in source and "TVMFFIEnvGetStream" in source
        (tmp_path / f"{name}.cu").write_text(source)
        nvcc_compile(tmp_path / f"{name}.cu", tmp_path / f"{name}.so", arch, name)
        assert (tmp_path / f"{name}.so").stat().st_size > 0


# ---------------------------------------------------------------------------- on a real GPU

def _has_gpu() -> bool:
    try:
        import torch
        return torch.cuda.is_available()
    except ImportError:
        return False


cuda = pytest.mark.skipif(not _has_gpu(), reason="no CUDA GPU (with torch)")


@pytest.mark.cuda
@cuda
@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32"])
@pytest.mark.parametrize("M,N,K", [(256, 256, 256), (200, 130, 77)])
def test_gpu_gemm(dtype, M, N, K):
    import torch
    k = tiledsl.compile(matmul(M, N, K, bm=64, bn=64, bk=32, dtype=dtype, threads=128), out_idx=[-1],
                        target="cuda")
    a = torch.randn(M, K, device="cuda").to(getattr(torch, dtype))
    b = torch.randn(K, N, device="cuda").to(getattr(torch, dtype))
    c = k(a, b)
    ref = a.float() @ b.float()
    torch.testing.assert_close(c, ref, rtol=1e-3, atol=1e-2)


@pytest.mark.cuda
@cuda
@pytest.mark.parametrize("stages", [1, 2, 3, 4])
def test_gpu_gemm_stages_and_softmax(stages):
    import torch
    k = tiledsl.compile(matmul(128, 128, 128, bm=64, bn=64, bk=32, threads=128, stages=stages),
                        out_idx=[-1], target="cuda")
    a = torch.randn(128, 128, device="cuda", dtype=torch.float16)
    b = torch.randn(128, 128, device="cuda", dtype=torch.float16)
    torch.testing.assert_close(k(a, b), a.float() @ b.float(), rtol=1e-3, atol=1e-2)
    s = tiledsl.compile(softmax(64, 256, threads=128), out_idx=[-1], target="cuda")
    x = torch.randn(64, 256, device="cuda")
    torch.testing.assert_close(s(x), torch.softmax(x, 1), rtol=1e-5, atol=1e-6)


@pytest.mark.cuda
@cuda
def test_gpu_rejects_cpu_and_mixed_device_inputs():
    import torch
    k = tiledsl.compile(axpy(256), out_idx=[-1], target="cuda")
    x = torch.randn(256, device="cuda")
    with pytest.raises(ValueError, match="argument 'Y' expects a cuda tensor"):
        k(x, torch.randn(256), 1.0)


# ------------------------------------------------------------------- tensor-core fragments

def test_mma_register_tables_match_the_layout_fragments():
    """The element each lane's registers hold in the generated mma code (the PTX ISA tables)
    is where tiledsl.layout's m16n8k16 fragments put that (lane, slot)."""
    from tiledsl.codegen.gemm.cuda_mma import a_element, b_element, c_element
    from tiledsl.layout import mma_m16n8k16_a, mma_m16n8k16_b, mma_m16n8k16_c
    for table, frag, n in ((a_element, mma_m16n8k16_a(), 8), (b_element, mma_m16n8k16_b(), 4),
                           (c_element, mma_m16n8k16_c(), 4)):
        seen = set()
        for lane in range(32):
            for r in range(n):
                idx = table(lane, r)
                assert frag.thread(*idx) == lane and frag.index(*idx) == r, (table.__name__, lane, r)
                seen.add(idx)
        assert len(seen) == 32 * n  # every element exactly once


def test_half_precision_gemm_takes_the_tensor_core_path():
    src = tiledsl.compile(matmul(64, 64, 32, threads=128), target=EMU).get_kernel_source()
    assert "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32" in src
    src = tiledsl.compile(matmul(64, 64, 32, dtype="float32", threads=128), target=EMU).get_kernel_source()
    assert "mma.sync" not in src


# ------------------------------------------------------------------------- cupy on a real GPU

def _cupy():
    try:
        import cupy
        return cupy if cupy.cuda.runtime.getDeviceCount() > 0 else None
    except Exception:  # no cupy, no driver, or no device: cupy raises its own CUDARuntimeError
        return None


needs_cupy = pytest.mark.skipif(_cupy() is None, reason="no cupy with a CUDA GPU")


def bf16_scale(N, block=128):
    @T.prim_func
    def main(X: T.Tensor((N,), "bfloat16"), Y: T.Tensor((N,), "bfloat16")):
        with T.Kernel(T.ceildiv(N, block), threads=128) as bx:
            for i in T.Parallel(block):
                if bx * block + i < N:
                    Y[bx * block + i] = X[bx * block + i] * 2.0
    return main


@pytest.mark.cuda
@needs_cupy
def test_cupy_outputs_are_cupy_arrays_on_the_inputs_device():
    import cupy
    rng = np.random.default_rng(0)
    a, b = _rand((96, 80), "float16", 1), _rand((80, 72), "float16", 2)
    k = tiledsl.compile(matmul(96, 72, 80, bm=64, bn=64, bk=32, threads=128), out_idx=[-1], target="cuda")
    c = k(cupy.asarray(a), cupy.asarray(b))
    assert isinstance(c, cupy.ndarray) and c.dtype == np.float32 and c.shape == (96, 72)
    assert c.device.id == cupy.cuda.Device().id
    np.testing.assert_allclose(cupy.asnumpy(c), _ref_gemm(a, b, False, False), rtol=1e-3, atol=1e-2)
    x = rng.standard_normal((64, 256)).astype(np.float32)
    s = tiledsl.compile(softmax(64, 256, threads=128), out_idx=[-1], target="cuda")(cupy.asarray(x))
    e = np.exp(x - x.max(axis=1, keepdims=True))
    np.testing.assert_allclose(cupy.asnumpy(s), e / e.sum(axis=1, keepdims=True), rtol=1e-5, atol=1e-6)
    # bfloat16 travels as its bits (cupy has no float8, and bfloat16 not in every version)
    h = rng.standard_normal(300).astype(ml_dtypes.bfloat16)
    y = tiledsl.compile(bf16_scale(300), out_idx=[-1], target="cuda")(cupy.asarray(h.view(np.uint16)))
    assert isinstance(y, cupy.ndarray) and y.dtype == np.uint16
    np.testing.assert_array_equal(cupy.asnumpy(y).view(ml_dtypes.bfloat16), h * 2)


@pytest.mark.cuda
@needs_cupy
@pytest.mark.parametrize("non_blocking", [False, True])
def test_cupy_call_runs_on_the_current_cupy_stream(non_blocking):
    """The input is produced on a cupy stream behind a ~0.1 s spin, so a kernel launched on any
    other stream (the legacy default one, which a non-blocking stream does not wait for) reads
    it before it is written; the output is read back on the same stream."""
    import cupy
    spin = cupy.RawKernel(r'''
    extern "C" __global__ void spin(long long cycles) {
        long long t0 = clock64();
        while (clock64() - t0 < cycles) {}
    }''', "spin")
    n = 1 << 16
    k = tiledsl.compile(axpy(n), out_idx=[-1], target="cuda")
    with cupy.cuda.Stream(non_blocking=non_blocking) as stream:
        x = cupy.empty(n, dtype=cupy.float32)
        spin((1,), (1,), (np.int64(200_000_000),))
        x[...] = cupy.arange(n, dtype=cupy.float32)
        y = cupy.full(n, 1.0, dtype=cupy.float32)
        z = k(x, y, 2.0)
        z2 = z * 3.0  # cupy work after the kernel, on the same stream
        stream.synchronize()
        got, got2 = cupy.asnumpy(z), cupy.asnumpy(z2)
    want = np.arange(n, dtype=np.float32) * 2 + 1
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(got2, want * 3)


def test_cupy_arguments_set_the_stream_the_host_code_launches_on(monkeypatch):
    """Without a GPU: with a stand-in cupy module, a call on a cupy array sees cupy's current
    stream as tvm-ffi's environment stream (what `TVMFFIEnvGetStream` gives the launcher)."""
    import sys
    import types

    import tvm_ffi
    from tiledsl.runtime.kernel import _on_cupy_stream

    class ndarray:
        device = types.SimpleNamespace(id=0)
    fake = types.ModuleType("cupy")
    fake.ndarray = ndarray
    fake.cuda = types.SimpleNamespace(get_current_stream=lambda: types.SimpleNamespace(ptr=0x5EED))
    monkeypatch.setitem(sys.modules, "cupy", fake)
    seen = []
    fn = _on_cupy_stream(lambda *args: seen.append(tvm_ffi.get_raw_stream(tvm_ffi.device("cuda", 0))))
    fn(np.zeros(1), ndarray(), 1.0)
    fn(np.zeros(1), 1.0)
    assert seen == [0x5EED, 0]
