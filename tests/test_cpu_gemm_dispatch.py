"""CPU GEMM dispatch: every micro-kernel ISA and dtype against numpy, ragged edges, the
registry's choice and errors, and layouts (swizzled or not) never changing results."""
import ml_dtypes
import numpy as np
import pytest

import tiledsl
import tiledsl.language as T
from tiledsl import ir
from tiledsl.codegen.gemm import registry
from tiledsl.layout import Layout, swizzle_128b
from tiledsl.target import Target, host_cpu

ISAS = ["scalar"] + (["avx2"] if host_cpu().has("avx2") else []) + \
    (["avx512"] if host_cpu().has("avx512f") else [])
DTYPES = {"float32": (np.float32, "float32", 1e-5), "float64": (np.float64, "float64", 1e-12),
          "bfloat16": (ml_dtypes.bfloat16, "float32", 2e-2), "float16": (np.float16, "float32", 2e-3)}


def make_gemm(isa, M, N, K, bm, bn, bk, dtype, ta=False, tb=False, swizzle=False, target=None):
    acc = "int32" if dtype == "int8" else DTYPES[dtype][1]

    @tiledsl.jit(out_idx=[-1], target=target or f"cpu -isa={isa}")
    def gemm(M, N, K, bm, bn, bk, dtype, ta, tb, swizzle):
        @T.prim_func
        def main(A: T.Tensor((K, M) if ta else (M, K), dtype), B: T.Tensor((N, K) if tb else (K, N), dtype),
                 C: T.Tensor((M, N), acc)):
            with T.Kernel(T.ceildiv(N, bn), T.ceildiv(M, bm)) as (bx, by):
                A_s = T.alloc_shared((bk, bm) if ta else (bm, bk), dtype)
                B_s = T.alloc_shared((bn, bk) if tb else (bk, bn), dtype)
                C_f = T.alloc_fragment((bm, bn), acc)
                if swizzle:
                    T.annotate_layout({A_s: swizzle_128b(A_s.shape, 32 if dtype == "float32" else 64)})
                T.clear(C_f)
                for k in T.Pipelined(T.ceildiv(K, bk), num_stages=2):
                    if ta:
                        T.copy(A[k * bk, by * bm], A_s)
                    else:
                        T.copy(A[by * bm, k * bk], A_s)
                    if tb:
                        T.copy(B[bx * bn, k * bk], B_s)
                    else:
                        T.copy(B[k * bk, bx * bn], B_s)
                    T.gemm(A_s, B_s, C_f, transpose_A=ta, transpose_B=tb)
                T.copy(C_f, C[by * bm, bx * bn])
        return main
    return gemm(M, N, K, bm, bn, bk, dtype, ta, tb, swizzle)


def check(kernel, M, N, K, dtype, ta=False, tb=False, seed=0):
    rng = np.random.default_rng(seed)
    npdt, _, tol = DTYPES[dtype]
    a = rng.standard_normal((K, M) if ta else (M, K)).astype(npdt)
    b = rng.standard_normal((N, K) if tb else (K, N)).astype(npdt)
    c = kernel(a, b)
    A = a.astype(np.float64).T if ta else a.astype(np.float64)
    B = b.astype(np.float64).T if tb else b.astype(np.float64)
    ref = A @ B
    scale = np.abs(A) @ np.abs(B) + 1e-30
    assert np.all(np.abs(c.astype(np.float64) - ref) <= tol * scale + 1e-30), dtype
    return c


def used_impl(kernel):
    src = kernel.get_kernel_source()
    return "dot" if "tdsl_ukd_" in src else "ukr" if "tdsl_ukr_" in src else "loops"


# The dot-product rows take bfloat16 / int8 where the host has the instruction (and the build is
# for the host's own ISA); elsewhere bfloat16 takes the converting FMA kernel, int8 the loops.
HAS_BF16 = host_cpu().isa == "avx512" and host_cpu().has("avx512bf16")
HAS_VNNI = host_cpu().isa == "avx512" and host_cpu().has("avx512vnni")


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("dtype", list(DTYPES))
def test_micro_kernel_per_isa_and_dtype(isa, dtype):
    if isa == "scalar" and dtype in ("bfloat16", "float16"):
        pass  # the scalar kernel converts too: covered like the others
    M, N, K = 67, 45, 33  # ragged against every MR, NR and the tiles
    k = make_gemm(isa, M, N, K, 32, 64, 16, dtype)
    if dtype == "bfloat16" and isa == "avx512" and HAS_BF16:
        assert "tdsl_ukd_avx512_bf16_" in k.get_kernel_source()
    else:
        assert used_impl(k) == "ukr", f"{isa}/{dtype} should use its micro-kernel"
        assert f"tdsl_ukr_{isa}_" in k.get_kernel_source()
    check(k, M, N, K, dtype)


def check_int8(kernel, M, N, K, ta=False, tb=False, seed=0, extreme=False):
    rng = np.random.default_rng(seed)
    if extreme:  # every product at the ends of the range: the +128 offset and its correction
        a = rng.choice(np.array([-128, 127], np.int8), (K, M) if ta else (M, K))
        b = rng.choice(np.array([-128, 127], np.int8), (N, K) if tb else (K, N))
    else:
        a = rng.integers(-128, 128, (K, M) if ta else (M, K)).astype(np.int8)
        b = rng.integers(-128, 128, (N, K) if tb else (K, N)).astype(np.int8)
    A = a.astype(np.int64).T if ta else a.astype(np.int64)
    B = b.astype(np.int64).T if tb else b.astype(np.int64)
    c = kernel(a, b)
    assert c.dtype == np.int32
    np.testing.assert_array_equal(c, A @ B)


DOT_CASES = [((67, 45, 36), (32, 64, 16), False, False), ((128, 96, 128), (64, 64, 64), False, False),
             ((70, 90, 52), (32, 64, 16), True, True), ((33, 70, 256), (32, 64, 128), False, True),
             ((40, 31, 20), (32, 32, 8), True, False), ((5, 3, 9), (8, 32, 8), False, False)]


@pytest.mark.skipif(not HAS_BF16, reason="the host has no AVX512_BF16")
@pytest.mark.parametrize("shape,tiles,ta,tb", DOT_CASES)
def test_bf16_dot_product_kernel_against_numpy(shape, tiles, ta, tb):
    M, N, K = shape
    k = make_gemm("avx512", M, N, K, *tiles, "bfloat16", ta, tb)
    assert "tdsl_ukd_avx512_bf16_8x32" in k.get_kernel_source()
    check(k, M, N, K, "bfloat16", ta, tb)


@pytest.mark.skipif(not HAS_VNNI, reason="the host has no AVX512_VNNI")
@pytest.mark.parametrize("shape,tiles,ta,tb", DOT_CASES)
def test_int8_vnni_kernel_against_numpy(shape, tiles, ta, tb):
    M, N, K = shape
    k = make_gemm("avx512", M, N, K, *tiles, "int8", ta, tb)
    assert "tdsl_ukd_avx512_vnni_8x32" in k.get_kernel_source()
    check_int8(k, M, N, K, ta, tb)
    check_int8(k, M, N, K, ta, tb, seed=1, extreme=True)


@pytest.mark.parametrize("dtype", ["bfloat16", "int8"])
def test_dot_rows_fall_back_without_the_instruction(dtype):
    """A host without AVX512_BF16 / AVX512_VNNI (simulated: the features taken off the target), a
    forced ISA (built for the plain x86-64 level) and a tile K that is not whole groups all get
    the FMA kernel (bfloat16) or the loops (int8), with the same answers."""
    h = host_cpu()
    feats = tuple(f for f in h.features if f not in ("avx512bf16", "avx512vnni"))
    targets = [Target("cpu", h.arch, feats, h.isa)]
    if h.has("avx2") and h.isa != "avx2":
        targets.append(Target.parse("cpu -isa=avx2"))
    M, N, K = 45, 70, 37
    for t in targets:
        k = make_gemm(h.isa, M, N, K, 32, 64, 16, dtype, target=t)
        assert used_impl(k) == ("loops" if dtype == "int8" or t.isa == "scalar" else "ukr")
        check_int8(k, M, N, K) if dtype == "int8" else check(k, M, N, K, dtype)
    odd_k = make_gemm(h.isa, M, N, K, 32, 64, 6 if dtype == "int8" else 7, dtype)
    assert used_impl(odd_k) != "dot"
    check_int8(odd_k, M, N, K) if dtype == "int8" else check(odd_k, M, N, K, dtype)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("shape,tiles", [((1, 7, 130), (32, 32, 32)), ((5, 3, 1), (8, 32, 8)),
                                         ((100, 1, 64), (24, 16, 16)), ((64, 64, 64), (64, 64, 64))])
def test_edges_and_tiles_not_multiples_of_the_micro_tile(isa, shape, tiles):
    M, N, K = shape
    check(make_gemm(isa, M, N, K, *tiles, "float32"), M, N, K, "float32")


@pytest.mark.parametrize("ta,tb", [(False, True), (True, False), (True, True)])
def test_transposed_operands(ta, tb):
    M, N, K = 50, 70, 40
    k = make_gemm(host_cpu().isa, M, N, K, 32, 32, 16, "float32", ta, tb)
    check(k, M, N, K, "float32", ta, tb)


@pytest.mark.parametrize("isa", [i for i in ISAS if i != "scalar"])
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("ta", [False, True])
def test_16bit_kernels_convert_a_in_chunks(isa, dtype, ta):
    """The converting FMA kernel turns A into float 64 k values at a time (vector conversions
    when A's k is contiguous, element by element when A is transposed): K spans several chunks
    and a ragged last one. bfloat16 is kept off the dot-product row by taking its feature off."""
    h = host_cpu()
    feats = tuple(f for f in h.features if f != "avx512bf16")
    M, N, K = 37, 70, 150
    k = make_gemm(isa, M, N, K, 32, 64, 144, dtype, ta=ta, target=Target("cpu", h.arch, feats, isa))
    assert f"tdsl_ukr_{isa}_{dtype}_" in k.get_kernel_source()
    check(k, M, N, K, dtype, ta=ta)


def test_forced_scalar_gives_the_same_answers_as_the_host_isa():
    M, N, K = 96, 96, 64
    host = check(make_gemm(host_cpu().isa, M, N, K, 32, 32, 32, "float64"), M, N, K, "float64")
    scalar = check(make_gemm("scalar", M, N, K, 32, 32, 32, "float64"), M, N, K, "float64")
    np.testing.assert_allclose(host, scalar, rtol=1e-13, atol=1e-13)


def test_swizzled_shared_tile_gives_identical_results():
    """A user layout on A_s makes the micro-kernel decline (it reads row-major tiles) and the
    loops implementation take over; results must not change."""
    M, N, K = 70, 64, 96
    plain = make_gemm(host_cpu().isa, M, N, K, 32, 32, 32, "float32")
    swz = make_gemm(host_cpu().isa, M, N, K, 32, 32, 32, "float32", swizzle=True)
    assert "^" in swz.get_ir(lowered=True)  # the swizzle is in the addresses
    np.testing.assert_allclose(check(plain, M, N, K, "float32"), check(swz, M, N, K, "float32"),
                               rtol=1e-5, atol=1e-5)


def test_layout_inference_decides_every_on_chip_buffer():
    from tiledsl.transform.infer_layout import infer_layout
    k = make_gemm(host_cpu().isa, 64, 64, 64, 32, 32, 32, "float32", tb=True)
    out = infer_layout(k.func, Target.parse("cpu"))
    layouts = {}
    ir.walk(out.body, lambda n: layouts.update({b.name: b.layout for b in n.allocs})
            if isinstance(n, ir.Kernel) else None)
    assert set(layouts) == {"A_s", "B_s", "C_f"}
    assert layouts["A_s"] == Layout.identity((32, 32))
    assert layouts["C_f"] == Layout.identity((32, 32))
    assert layouts["B_s"] == Layout((32, 32), lambda j, kk: [kk, j])  # K-major for transpose_B


def test_registry_reports_no_match_and_ambiguity_at_the_gemm_line():
    k = make_gemm(host_cpu().isa, 16, 16, 16, 16, 16, 16, "float32")
    gemm = []
    ir.walk(k.func.body, lambda n: gemm.append(n) if isinstance(n, ir.Gemm) else None)
    with pytest.raises(tiledsl.LoweringError, match="no GEMM implementation") as e:
        registry.resolve(gemm[0], Target("interp"))
    assert "test_cpu_gemm_dispatch.py" in str(e.value)
    registry.register("test.dup_a", lambda g, t: t.kind == "cpu", object(), priority=9)
    registry.register("test.dup_b", lambda g, t: t.kind == "cpu", object(), priority=9)
    try:
        with pytest.raises(tiledsl.LoweringError, match="ambiguous GEMM dispatch"):
            registry.resolve(gemm[0], Target.parse("cpu"))
    finally:
        registry._ROWS[:] = [r for r in registry._ROWS if not r.name.startswith("test.")]


def test_isa_is_part_of_the_cache_key():
    a = make_gemm("scalar", 16, 16, 16, 16, 16, 16, "float32")
    b = make_gemm(host_cpu().isa, 16, 16, 16, 16, 16, 16, "float32")
    assert a.cache_key != b.cache_key
    if a.library is not None:  # the C++ backend: the library's file name carries the key
        assert a.library != b.library


def test_unknown_isa_is_rejected():
    with pytest.raises(ValueError, match="isa"):
        Target.parse("cpu -isa=neon")


@pytest.mark.parametrize("kind", ["float32", "float64", "bfloat16", "int8"])
def test_peak_probe_runs_its_chains_on_every_thread(kind):
    """benchmarks/peak.py's probe (codegen/gemm/cpu_peak.py), built by whichever backend the run
    uses: every block writes its chains' sum and its done flag. float32 / float64 chains
    a = a * 0.5 + 0.5 converge to 1, so 12 chains of 16 / 8 lanes sum to 192 / 96."""
    import os
    import sys
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "benchmarks"))
    from peak import PeakProbe
    isa = host_cpu().isa
    if kind in ("bfloat16", "int8") and not (isa == "avx512" and host_cpu().has(
            "avx512bf16" if kind == "bfloat16" else "avx512vnni")):
        pytest.skip(f"the host has no {kind} dot product")
    probe = PeakProbe(kind, 2, "cpu")
    probe.call(2000)
    slots = probe.out.reshape(2, 16)
    assert (slots[:, 2] == 1).all()
    if kind in ("float32", "float64") and isa != "scalar":
        lanes = {"avx512": 64, "avx2": 32}[isa] // (8 if kind == "float64" else 4)
        np.testing.assert_allclose(slots[:, 1], 12 * lanes, rtol=1e-6)
    else:
        assert np.isfinite(slots[:, 1]).all() and (slots[:, 1] != 0).all()
    assert probe.ops(10) == 10 * 2 * 12 * {"float32": 32, "float64": 16, "bfloat16": 64, "int8": 128}[kind] \
        or isa != "avx512"
