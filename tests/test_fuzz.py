"""Property-based and metamorphic tests: Hypothesis draws shapes (primes and 1 among them),
tile configurations and dtypes for a GEMM and for an elementwise + row-reduction kernel, and
holds the CPU target and the interpreter to numpy and to each other:

- cpu == interp == numpy (within the accumulation error bound of any summation order; exact
  for integers), over symbolic shapes and, for a few examples, shapes compiled in;
- num_stages 1 vs 3, and threads=128 vs 256, give bitwise identical results;
- swizzled vs plain shared-tile layouts give identical results (exact integer-valued data);
- the compiled kernel's results do not depend on the number of OpenMP threads (1, 2, 3);
- copies of windows at offsets before, inside and past the ends of a tensor (in and out,
  with a dtype conversion) match numpy slicing exactly;
- integer // and % of every integer dtype, edge values (MIN, -1, 0, MAX) drawn often, give
  numpy's answer exactly (MIN // -1 wraps, x // 0 == x % 0 == 0: no target may trap).

Shapes are symbolic, so each configuration compiles once and serves every drawn shape
(19 compiles in all: the file takes 15-35 s on 2 cores with a cold kernel cache).

Hypothesis profiles (TILEDSL_FUZZ_PROFILE selects one):
- `tiledsl-ci` (default): derandomize=True (the same examples every run), database=None,
  deadline=None, max_examples=200, scaled per test: 200 GEMM, 80 stages/threads, 80 swizzle,
  40 OpenMP threads, 200 elementwise + reduction, 200 copies, and 3 static-shape GEMMs.
- `tiledsl-fuzz`: random, max_examples=4000 (100 static-shape GEMMs), for a local or nightly hunt.

A failure prints the falsifying spec and the command that keeps it as a corpus file
(tests/corpus/add_case.py); with TILEDSL_FUZZ_SAVE=1 the test writes that file itself.
"""
import contextlib
import ctypes
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, note, settings, strategies as st
from hypothesis.control import current_build_context

from corpus.add_case import save
from corpus.families import CopySpec, DivSpec, GemmSpec, RowSpec

settings.register_profile("tiledsl-ci", max_examples=200, deadline=None, derandomize=True,
                          database=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("tiledsl-fuzz", max_examples=4000, deadline=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
# The row and division kernels index past the ends of ragged tensors without guards, on purpose:
# legalize_memory guards those accesses on the CPU (reads give 0, stores are dropped), and the
# interpreter holds it to that only when lenient (by default it reports the access).
LENIENT = "interp -lenient"
PROFILE = os.environ.get("TILEDSL_FUZZ_PROFILE", "tiledsl-ci")
BASE = settings.get_profile(PROFILE)


def budget(fraction: float) -> settings:
    return settings(BASE, max_examples=max(3, int(BASE.max_examples * fraction)))


SIZES = st.one_of(st.sampled_from([1, 2, 3, 5, 7, 8, 13, 16, 17, 31, 32, 33, 61, 64]),
                  st.integers(1, 72))

GEMM_CONFIGS = [
    dict(block_M=16, block_N=16, block_K=8, dtype="float32", threads=128),
    dict(block_M=32, block_N=16, block_K=16, dtype="float16", trans_b=True, threads=64),
    dict(block_M=8, block_N=32, block_K=32, dtype="bfloat16", threads=256),
    dict(block_M=16, block_N=8, block_K=16, dtype="int8"),
    dict(block_M=16, block_N=32, block_K=8, dtype="float64", trans_a=True, trans_b=True),
]
ROW_CONFIGS = [(4, 16, "float32", "sum"), (8, 8, "float16", "absmax"), (4, 8, "int8", "sum"),
               (16, 4, "bfloat16", "max")]


@st.composite
def gemm_specs(draw, configs=tuple(range(len(GEMM_CONFIGS))), exact=False, static=False):
    cfg = GEMM_CONFIGS[draw(st.sampled_from(configs))]
    return GemmSpec(**cfg, M=draw(SIZES), N=draw(SIZES), K=draw(SIZES),
                    seed=draw(st.integers(0, 2 ** 16)), exact=exact, static=static)


@st.composite
def row_specs(draw):
    bm, bn, dtype, kind = draw(st.sampled_from(ROW_CONFIGS))
    alpha = draw(st.floats(-2, 2, allow_nan=False, width=32))
    return RowSpec(bm, bn, dtype, kind, M=draw(SIZES), N=draw(SIZES), alpha=float(alpha),
                   seed=draw(st.integers(0, 2 ** 16)))


DIV_DTYPES = ["int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"]


@st.composite
def div_specs(draw):
    return DivSpec(draw(st.sampled_from(DIV_DTYPES)), draw(st.sampled_from([4, 16])), N=draw(SIZES),
                   edges=draw(st.sampled_from([0.0, 0.5, 1.0])), seed=draw(st.integers(0, 2 ** 16)))


COPY_CONFIGS = [(8, 16, "float32", "float32"), (5, 3, "float16", "float32"), (16, 4, "int8", "int32")]


@st.composite
def copy_specs(draw):
    tr, tc, src, dst = draw(st.sampled_from(COPY_CONFIGS))
    dims = st.integers(1, 40)
    R, C, R2, C2 = draw(dims), draw(dims), draw(dims), draw(dims)
    return CopySpec(tr, tc, src, dst, B=draw(st.integers(1, 3)), R=R, C=C, R2=R2, C2=C2,
                    r0=draw(st.integers(-tr - 2, R + 2)), c0=draw(st.integers(-tc - 2, C + 2)),
                    r1=draw(st.integers(-tr - 2, R2 + 2)), c1=draw(st.integers(-tc - 2, C2 + 2)),
                    seed=draw(st.integers(0, 2 ** 16)))


@contextlib.contextmanager
def keep_if_failing(spec, why: str):
    """On a failure, say how to keep the example; with TILEDSL_FUZZ_SAVE=1 keep it."""
    try:
        yield
    except Exception:
        note(f"keep it: python tests/corpus/add_case.py {repr(spec)!r} --why {why!r}")
        # Only the shrunk example Hypothesis replays last, not every one it tried on the way.
        if os.environ.get("TILEDSL_FUZZ_SAVE") == "1" and current_build_context().is_final:
            note(f"saved {save(repr(spec), why)}")
        raise


def _within(got, want, tol, what):
    err = np.abs(got.astype(np.float64) - want.astype(np.float64))
    bad = err > tol
    assert not bad.any(), f"{what}: {int(bad.sum())} elements off, first at {np.argwhere(bad)[0]}: " \
                          f"{got.flat[np.argmax(bad)]} vs {want.flat[np.argmax(bad)]}"


@budget(1.0)
@given(spec=gemm_specs())
def test_gemm_cpu_interp_numpy(spec):
    _check_gemm(spec)


def _check_gemm(spec):
    a, b = spec.inputs()
    with keep_if_failing(spec, "cpu, interp and numpy disagree on a GEMM"):
        want = spec.reference(a, b)
        got_c = spec.kernel("cpu")(a, b)
        got_i = spec.kernel("interp")(a, b)
        if spec.dtype == "int8":
            np.testing.assert_array_equal(got_c, want)
            np.testing.assert_array_equal(got_i, want)
        else:
            tol = spec.tolerance(a, b)
            _within(got_i, want, tol, "interp vs numpy")
            _within(got_c, want, tol, "cpu vs numpy")
            _within(got_c, got_i, 2 * tol, "cpu vs interp")


@settings(BASE, max_examples=3 if PROFILE == "tiledsl-ci" else 100)
@given(spec=gemm_specs(configs=(0, 1, 4), static=True))
def test_gemm_static_shapes_cpu_interp_numpy(spec):
    """Shapes compiled in: interval analysis drops the guards it proves unneeded (each example
    is one compile, hence the few examples)."""
    _check_gemm(spec)


@budget(0.4)
@given(spec=gemm_specs(configs=(0,)))
def test_gemm_num_stages_and_threads_change_nothing(spec):
    a, b = spec.inputs()
    with keep_if_failing(spec, "num_stages or threads= changed a GEMM's result"):
        base = spec.kernel("cpu")(a, b)
        for variant in (spec.with_config(num_stages=1), spec.with_config(num_stages=3, threads=256)):
            np.testing.assert_array_equal(variant.kernel("cpu")(a, b), base)
            np.testing.assert_array_equal(variant.kernel("interp")(a, b), spec.kernel("interp")(a, b))


@budget(0.4)
@given(spec=gemm_specs(configs=(0, 1), exact=True))
def test_gemm_swizzled_layouts_change_nothing(spec):
    """Integer-valued data: every product and partial sum is exact, so any difference is an
    element read from the wrong place (a swizzled tile read linearly), not rounding."""
    a, b = spec.inputs()
    with keep_if_failing(spec, "a swizzled layout changed a GEMM's result"):
        plain = spec.kernel("cpu")(a, b)
        swizzled = spec.with_config(swizzle_tiles=True)
        np.testing.assert_array_equal(swizzled.kernel("cpu")(a, b), plain)
        np.testing.assert_array_equal(swizzled.kernel("interp")(a, b), plain)
        np.testing.assert_array_equal(plain, spec.reference(a, b))


@contextlib.contextmanager
def omp_threads():
    """`set(n)`: how many OpenMP threads the next parallel regions of this thread use."""
    try:
        lib = ctypes.CDLL("libgomp.so.1")
    except OSError:
        pytest.skip("no libgomp")
    before = lib.omp_get_max_threads()
    try:
        yield lib.omp_set_num_threads
    finally:
        lib.omp_set_num_threads(before)


@budget(0.2)
@given(spec=gemm_specs(configs=(0, 2)))
def test_gemm_independent_of_cpu_threads(spec):
    a, b = spec.inputs()
    k = spec.kernel("cpu")
    with keep_if_failing(spec, "a GEMM's result depends on the number of OpenMP threads"), \
            omp_threads() as omp:
        omp(1)
        one = k(a, b)
        for n in (2, 3):
            omp(n)
            np.testing.assert_array_equal(k(a, b), one)


@budget(1.0)
@given(spec=row_specs())
def test_rows_cpu_interp_numpy(spec):
    x, alpha = spec.inputs()
    with keep_if_failing(spec, "cpu, interp and numpy disagree on the elementwise + reduction kernel"):
        want_y, want_r = spec.reference(x, alpha)
        got = [spec.kernel(t)(x, alpha) for t in ("cpu", LENIENT)]
        if spec.dtype.startswith("int"):
            for y, r in got:
                np.testing.assert_array_equal(y, want_y)
                np.testing.assert_array_equal(r, want_r)
            return
        v = np.abs(x.astype(np.float64) * alpha) + 1
        # y: one rounding into the output type (plus one of float32 arithmetic, fused or not)
        y_tol = {"float16": 2.0 ** -10, "bfloat16": 2.0 ** -7}.get(spec.dtype, 2.0 ** -22) * v + 1e-30
        r_tol = (spec.N + 2) * 2.0 ** -23 * v.sum(axis=1) + 1e-30
        if spec.kind != "sum":
            r_tol = 2.0 ** -22 * v.max(axis=1) + 1e-30
        for (y, r), who in zip(got, ("cpu", "interp")):
            assert y.dtype == want_y.dtype and r.dtype == want_r.dtype
            _within(y, want_y, y_tol, f"{who} Y vs numpy")
            _within(r, want_r, r_tol, f"{who} R vs numpy")


@budget(1.0)
@given(spec=copy_specs())
def test_copy_windows_cpu_interp_numpy(spec):
    """Copies of windows that start before, inside or past the end of the tensor, in and out:
    the zeros read outside and the writes dropped outside must match numpy's slicing exactly."""
    args = spec.inputs()
    with keep_if_failing(spec, "a copy with offsets disagrees with numpy"):
        want = spec.reference(*args)
        for target in ("cpu", "interp"):
            y = args[-1].copy()
            spec.kernel(target)(*args[:-1], y)
            np.testing.assert_array_equal(y, want, err_msg=target)


@budget(0.5)
@given(spec=div_specs())
def test_integer_division_cpu_interp_numpy(spec):
    a, b = spec.inputs()
    with keep_if_failing(spec, "integer // or % disagrees with numpy"):
        want = spec.reference(a, b)
        for target in ("cpu", LENIENT):
            q, r = spec.kernel(target)(a, b)
            np.testing.assert_array_equal(q, want[0], err_msg=target)
            np.testing.assert_array_equal(r, want[1], err_msg=target)
