"""Symbolic shapes: `M = T.dynamic("M")` in tensor shapes gives one compiled kernel for every M,
bound from the arguments at call time, checked across arguments, with ragged last tiles; the
compile log shows that nothing was compiled again."""
import logging

import numpy as np
import pytest

import tiledsl
import tiledsl.language as T


def make_matmul():
    @tiledsl.jit(out_idx=[-1])
    def matmul_dyn(N, K, block_M=32, block_N=32, block_K=16):
        M = T.dynamic("M")

        @T.prim_func
        def main(A: T.Tensor((M, K), "float32"), B: T.Tensor((K, N), "float32"),
                 C: T.Tensor((M, N), "float32")):
            with T.Kernel(T.ceildiv(N, block_N), T.ceildiv(M, block_M)) as (bx, by):
                A_s = T.alloc_shared((block_M, block_K), "float32")
                B_s = T.alloc_shared((block_K, block_N), "float32")
                C_f = T.alloc_fragment((block_M, block_N), "float32")
                T.clear(C_f)
                for k in T.Pipelined(T.ceildiv(K, block_K), num_stages=2):
                    T.copy(A[by * block_M, k * block_K], A_s)
                    T.copy(B[k * block_K, bx * block_N], B_s)
                    T.gemm(A_s, B_s, C_f)
                T.copy(C_f, C[by * block_M, bx * block_N])
        return main
    return matmul_dyn


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("TILEDSL_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def compile_logs(caplog):
    return [r.getMessage() for r in caplog.records
            if r.name.startswith("tiledsl") and r.getMessage().startswith(("compiled", "loaded"))]


def test_one_compile_serves_every_m(cache_dir, caplog):
    matmul = make_matmul()
    rng = np.random.default_rng(0)
    b = rng.standard_normal((40, 50), dtype=np.float32)
    with caplog.at_level(logging.INFO, logger="tiledsl"):
        kernels = set()
        for m in (1, 17, 1000):
            a = rng.standard_normal((m, 40), dtype=np.float32)
            kernel = matmul(50, 40)
            kernels.add(id(kernel))
            c = kernel(a, b)
            assert c.shape == (m, 50)
            np.testing.assert_allclose(c, a @ b, rtol=1e-5, atol=1e-4)
    logs = compile_logs(caplog)
    assert len(kernels) == 1
    assert len(logs) == 1 and logs[0].startswith("compiled matmul_dyn(N=50, K=40"), logs


def test_symbolic_sizes_must_agree_across_arguments():
    kernel = make_matmul()(50, 40)
    rng = np.random.default_rng(1)
    a = rng.standard_normal((7, 40), dtype=np.float32)
    b = rng.standard_normal((40, 50), dtype=np.float32)
    with pytest.raises(ValueError, match=r"main: argument 'C' expects shape \(M, 50\) = \(7, 50\)"):
        tiledsl.compile(make_matmul().get_ir(50, 40), out_idx=[])(a, b, np.zeros((8, 50), np.float32))
    with pytest.raises(ValueError, match=r"matmul_dyn: argument 'A' expects shape \(M, 40\) = \(7, 40\), got \(7, 39\)"):
        kernel(a[:, :39].copy(), b)


def test_symbolic_m_in_the_interpreter():
    func = make_matmul().get_ir(50, 40)
    kernel = tiledsl.compile(func, out_idx=[-1], target="interp")
    rng = np.random.default_rng(2)
    b = rng.standard_normal((40, 50), dtype=np.float32)
    for m in (1, 17, 33):
        a = rng.standard_normal((m, 40), dtype=np.float32)
        np.testing.assert_allclose(kernel(a, b), a @ b, rtol=1e-5, atol=1e-4)
