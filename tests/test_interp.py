"""`target="interp"`: the numpy interpreter of the tile IR.

It computes what the CPU target computes (checked here on a GEMM, ragged tiles, masked
branches and T.print), and it stops with a `TileDSLError` at the user's line, naming the
offending element, where a compiled kernel would be silently wrong: element accesses outside
a tensor, on-chip indices out of range, tiles read before written, races inside a T.Parallel
loop and between blocks, int32 overflow (and in strict mode integer division by zero),
outputs left partly unwritten.
"""
import re

import numpy as np
import pytest

import tiledsl
import tiledsl.language as T
from corpus.families import gemm_kernel
from tiledsl.interp import (ArithmeticFault, InterpKernel, OutOfBoundsError, RaceError,
                            UninitializedReadError, UnwrittenOutputError)


def _line(marker: str) -> int:
    with open(__file__) as f:
        hits = [n for n, text in enumerate(f, 1) if text.rstrip().endswith("# !" + marker)]
    assert len(hits) == 1, marker
    return hits[0]


def _interp(func, out_idx=(-1,), target="interp"):
    return tiledsl.compile(func, out_idx=list(out_idx), target=target)


def _raises(cls, marker, fragment, fn, *args):
    with pytest.raises(cls) as info:
        fn(*args)
    err = info.value
    assert fragment in err.message, err.message
    assert err.span is not None and err.span.line == _line(marker), str(err)
    assert err.hint
    return err


# ---------------------------------------------------------------- agreement with the CPU

def matmul(M, N, K, block_M=64, block_N=64, block_K=32, dtype="float32"):
    """The corpus GEMM (C in the accumulator type) with static shapes."""
    return gemm_kernel(block_M, block_N, block_K, dtype, False, 2, False, 128, shape=(M, N, K))


def test_gemm_256_cubed():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((256, 256)).astype(np.float32)
    b = rng.standard_normal((256, 256)).astype(np.float32)
    k = _interp(matmul(256, 256, 256))
    assert isinstance(k, InterpKernel)
    np.testing.assert_allclose(k(a, b), a.astype(np.float64) @ b, rtol=1e-5, atol=1e-4)


def test_ragged_gemm_matches_cpu():
    """A dropped K tail or a ragged edge would show here: 37 x 53 x 29 with 16 x 16 x 8 tiles."""
    rng = np.random.default_rng(1)
    func = matmul(37, 53, 29, 16, 16, 8, "float16")
    a = rng.standard_normal((37, 29)).astype(np.float16)
    b = rng.standard_normal((29, 53)).astype(np.float16)
    ref = a.astype(np.float64) @ b.astype(np.float64)
    got_i = _interp(func)(a, b)
    got_c = tiledsl.compile(func, out_idx=[-1])(a, b)
    np.testing.assert_allclose(got_i, ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got_c, got_i, rtol=1e-5, atol=1e-5)


@T.prim_func
def ragged_elementwise(A: T.Tensor((50, 30), "float32"), B: T.Tensor((50, 30), "float32")):
    with T.Kernel(T.ceildiv(30, 16), T.ceildiv(50, 16)) as (bx, by):
        t = T.alloc_fragment((16, 16), "float32")
        for i, j in T.Parallel(16, 16):
            # reads past the tensor give 0; the stores there are dropped (on every target)
            t[i, j] = A[by * 16 + i, bx * 16 + j] + A[by * 16 + i + 1, bx * 16 + j]
        for i, j in T.Parallel(16, 16):
            if t[i, j] > 0:
                B[by * 16 + i, bx * 16 + j] = T.sqrt(t[i, j])
            else:
                B[by * 16 + i, bx * 16 + j] = T.if_then_else(t[i, j] < -1, T.sqrt(-t[i, j]), 0.0)


def test_ragged_elementwise_and_branches_match_cpu():
    rng = np.random.default_rng(2)
    a = rng.standard_normal((50, 30)).astype(np.float32)
    s = a + np.concatenate([a[1:], np.zeros((1, 30), np.float32)])
    with np.errstate(invalid="ignore"):
        ref = np.where(s > 0, np.sqrt(s), np.where(s < -1, np.sqrt(-s), 0))
    # the unguarded reads and stores are what legalize_memory guards: -lenient holds the CPU to them
    got_i = _interp(ragged_elementwise, target="interp -lenient")(a)
    np.testing.assert_allclose(got_i, ref, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(tiledsl.compile(ragged_elementwise, [-1])(a), got_i, rtol=1e-6, atol=1e-7)


@T.prim_func
def triangle(A: T.Tensor((8, 8), "float32"), B: T.Tensor((8,), "float32")):
    with T.Kernel(1) as bx:
        for i in T.Parallel(8):
            acc = T.alloc_var("float32")
            for k in T.serial(i + 1):  # a bound that differs between iterations
                acc += A[i, k]
            B[i] = acc


def test_serial_loop_with_per_iteration_bounds():
    a = np.arange(64, dtype=np.float32).reshape(8, 8)
    np.testing.assert_array_equal(_interp(triangle)(a), np.tril(a).sum(axis=1))
    np.testing.assert_array_equal(tiledsl.compile(triangle, [-1])(a), np.tril(a).sum(axis=1))


def test_calling_convention():
    k = _interp(triangle)
    a = np.ones((8, 8), np.float32)
    out = np.zeros(8, np.float32)
    assert k(a, out) is None and out[7] == 8
    np.testing.assert_array_equal(k(A=a), np.arange(1, 9))
    with pytest.raises(TypeError, match="triangle: expects 1 argument"):
        k()
    assert "T.serial(i + 1)" in k.get_kernel_source()
    assert repr(k).startswith("<InterpKernel triangle(A)")


def test_jit_target_interp():
    fac = tiledsl.jit(out_idx=[-1], target="interp")(matmul)
    k = fac(16, 16, 16, 16, 16, 16)
    assert isinstance(k, InterpKernel) and fac(16, 16, 16, 16, 16, 16) is k
    a = np.eye(16, dtype=np.float32)
    np.testing.assert_array_equal(k(a, a * 3), a * 3)


def test_target_options():
    assert tiledsl.Target.parse("interp -strict").has("strict")
    both = tiledsl.Target.parse("interp -lenient -strict")
    assert both.has("lenient") and both.has("strict") and not tiledsl.Target.parse("interp").features
    with pytest.raises(ValueError, match="use -strict .* or -lenient"):
        tiledsl.Target.parse("interp -fast")


# ---------------------------------------------------------------- T.print

@T.prim_func
def printing(A: T.Tensor((2, 3), "float32"), n: T.int32, B: T.Tensor((2, 3), "float32")):
    with T.Kernel(2) as bx:
        row = T.alloc_fragment((3,), "float16")
        for j in T.Parallel(3):
            row[j] = A[bx, j] * 0.5
            if j > 0:
                T.print(row[j], "half")
        T.print(row, "row")
        T.print(n + bx)
        for j in T.Parallel(3):
            B[bx, j] = row[j]


def test_print_same_lines_on_cpu_and_interp(capfd):
    a = np.array([[1, 2, 3], [4.5, 5, 6]], np.float32)
    _interp(printing)(a, 7)
    lines_i = capfd.readouterr().out.splitlines()
    tiledsl.compile(printing, [-1])(a, 7)
    lines_c = capfd.readouterr().out.splitlines()
    assert lines_i[:6] == ["half [bx=0, j=1]: 1", "half [bx=0, j=2]: 1.5", "row [bx=0] row[0]: 0.5",
                           "row [bx=0] row[1]: 1", "row [bx=0] row[2]: 1.5", "[bx=0]: 7"]
    assert len(lines_i) == 12 and "[bx=1]: 8" in lines_i
    assert sorted(lines_c) == sorted(lines_i)  # blocks run on several cores: any order


# ---------------------------------------------------------------- run-time mistakes

@T.prim_func
def tile_overrun(A: T.Tensor((16,), "float32"), B: T.Tensor((16,), "float32")):
    with T.Kernel(1) as bx:
        s = T.alloc_shared((8,), "float32")
        for i in T.Parallel(16):
            s[i % 8] = A[i]
        for i in T.Parallel(8):
            B[i] = s[i + 1] if i < 7 else s[0]
        for i in T.Parallel(16):
            B[i] = s[i // 2 + 1]  # !overrun


def test_on_chip_index_out_of_range():
    err = _raises(OutOfBoundsError, "overrun", "index s[8] is out of bounds for tile 's' of shape (8,)",
                  _interp(tile_overrun), np.ones(16, np.float32))
    assert "B[i] = s[i // 2 + 1]" in str(err) and "^^^" in str(err)


@T.prim_func
def partial_tile(A: T.Tensor((16,), "float32"), B: T.Tensor((16,), "float32")):
    with T.Kernel(2) as bx:
        s = T.alloc_shared((8,), "float32")
        for i in T.Parallel(7):
            s[i] = A[bx * 8 + i]
        T.copy(s, B[bx * 8])  # !partial


def test_tile_read_before_written():
    _raises(UninitializedReadError, "partial", "'s[7]' is read before anything was written to it",
            _interp(partial_tile), np.ones(16, np.float32))


@T.prim_func
def ragged_store(A: T.Tensor((12,), "float32"), B: T.Tensor((12,), "float32")):
    with T.Kernel(2) as bx:
        s = T.alloc_shared((8,), "float32")
        for i in T.Parallel(8):
            if bx * 8 + i < 12:
                s[i] = A[bx * 8 + i]
        T.copy(s, B[bx * 8])


def test_ragged_copy_reads_only_what_it_stores():
    """Block 1 fills s[0:4] and copies s to B[8:16], of which only B[8:12] exists: the copy
    reads only the elements it stores, so nothing undefined is read."""
    a = np.arange(12, dtype=np.float32)
    np.testing.assert_array_equal(_interp(ragged_store)(a), a)
    np.testing.assert_array_equal(tiledsl.compile(ragged_store, [-1])(a), a)


@T.prim_func
def lane_write_race(A: T.Tensor((8,), "float32"), B: T.Tensor((1,), "float32")):
    with T.Kernel(1) as bx:
        for i in T.Parallel(8):
            B[0] = A[i]  # !waw


@T.prim_func
def lane_read_race(A: T.Tensor((8,), "float32"), B: T.Tensor((8,), "float32")):
    with T.Kernel(1) as bx:
        s = T.alloc_shared((8,), "float32")
        for i in T.Parallel(8):
            s[i] = A[i] * 2.0
            B[i] = s[7 - i]  # !raw


@T.prim_func
def lane_read_synchronised(A: T.Tensor((8,), "float32"), B: T.Tensor((8,), "float32")):
    with T.Kernel(1) as bx:
        s = T.alloc_shared((8,), "float32")
        for i in T.Parallel(8):
            s[i] = A[i] * 2.0
        for i in T.Parallel(8):
            B[i] = s[7 - i]


@T.prim_func
def scalar_race(A: T.Tensor((8,), "float32"), B: T.Tensor((1,), "float32")):
    with T.Kernel(1) as bx:
        acc = T.alloc_var("float32")
        for i in T.Parallel(8):
            acc += A[i]  # !scalar_race
        B[0] = acc


@T.prim_func
def same_value_everywhere(A: T.Tensor((8,), "float32"), B: T.Tensor((2,), "float32")):
    with T.Kernel(1) as bx:
        flag = T.alloc_var("float32")
        for i in T.Parallel(8):
            B[0] = A[0]            # every iteration writes the same value: no race
            if i == 3:
                flag = A[i]        # one iteration assigns: no race
        B[1] = flag


def test_races_inside_a_parallel_loop():
    a = np.arange(8, dtype=np.float32)
    _raises(RaceError, "waw", "iterations of a T.Parallel loop write different values to 'B[0]'",
            _interp(lane_write_race), a)
    _raises(RaceError, "raw", "reads 's[7]', which another iteration of the same loop wrote",
            _interp(lane_read_race), a)
    _raises(RaceError, "scalar_race", "assign different values to 'acc'", _interp(scalar_race), a)
    np.testing.assert_array_equal(_interp(lane_read_synchronised)(a), a[::-1] * 2)
    np.testing.assert_array_equal(_interp(same_value_everywhere)(a), [0, 3])


@T.prim_func
def overlapping_tiles(A: T.Tensor((64,), "float32"), B: T.Tensor((64,), "float32")):
    with T.Kernel(4) as bx:
        for i in T.Parallel(32):
            B[bx * 16 + i] = A[bx * 16 + i] * (bx + 1)  # !blocks


@T.prim_func
def dropped_tail(A: T.Tensor((100,), "float32"), B: T.Tensor((100,), "float32")):  # !tail
    with T.Kernel(100 // 32) as bx:
        for i in T.Parallel(32):
            B[bx * 32 + i] = A[bx * 32 + i]


def test_blocks_and_coverage():
    a = np.arange(100, dtype=np.float32)
    _raises(RaceError, "blocks", "blocks 0 and 1 both write 'B[16]', with different values",
            _interp(overlapping_tiles), a[:64])
    _raises(UnwrittenOutputError, "tail", "output 'B' is returned with 4 of its 100 elements never "
                                          "written, the first at B[96]", _interp(dropped_tail), a)
    out = np.zeros(100, np.float32)  # an output the caller passes is theirs to leave as it is
    _interp(dropped_tail)(a, out)
    np.testing.assert_array_equal(out[:96], a[:96])


@T.prim_func
def arithmetic(A: T.Tensor((8,), "int32"), n: T.int32, B: T.Tensor((8,), "int32")):
    with T.Kernel(1) as bx:
        for i in T.Parallel(8):
            B[i] = A[i] * n  # !overflow
        for i in T.Parallel(8):
            B[i] = 100 // A[i]  # !divide


def test_integer_faults():
    k = _interp(arithmetic)
    a = np.arange(1, 9, dtype=np.int32)
    np.testing.assert_array_equal(k(a, 3), 100 // a)
    err = _raises(ArithmeticFault, "overflow", "int32 overflow: 'A[i] * n' = 2147483648", k, a * 2 ** 27, 2)
    assert "64 bits" in err.hint
    # x // 0 is numpy's 0 on every target; strict mode reports it (it is seldom meant)
    np.testing.assert_array_equal(k(a - 1, 1)[0], 0)
    _raises(ArithmeticFault, "divide", "integer division by zero", _interp(arithmetic, target="interp -strict"),
            a - 1, 1)


@T.prim_func
def past_the_end(A: T.Tensor((10,), "float32"), B: T.Tensor((10,), "float32")):
    with T.Kernel(1) as bx:
        for i in T.Parallel(16):
            B[i] = A[i] + 1.0  # !past_end


@T.prim_func
def store_past_the_end(A: T.Tensor((10,), "float32"), B: T.Tensor((10,), "float32")):
    with T.Kernel(1) as bx:
        for i in T.serial(16):
            B[i] = 2.0  # !store_past_end


@T.prim_func
def guarded(A: T.Tensor((10,), "float32"), B: T.Tensor((10,), "float32")):
    with T.Kernel(1) as bx:
        s = T.alloc_fragment((16,), "float32")
        T.copy(A[0], s)  # a tile copy past the tensor reads 0: its documented meaning
        for i in T.Parallel(16):
            if i < 10:
                B[i] = A[i] + s[i]


def test_global_accesses_past_the_end_are_errors():
    """What the compiled targets hide (they read 0 and drop the store) is an error at the line;
    `-lenient` gives their meaning, and a guard or T.copy's ragged edge is no error."""
    a = np.arange(10, dtype=np.float32)
    err = _raises(OutOfBoundsError, "past_end", "index A[10] is out of bounds for tensor 'A' of shape (10,)",
                  _interp(past_the_end), a)
    assert "guard" in err.hint
    _raises(OutOfBoundsError, "store_past_end", "index B[10] is out of bounds for tensor 'B'",
            _interp(store_past_the_end), a)
    np.testing.assert_array_equal(_interp(past_the_end, target="interp -lenient")(a), a + 1)
    np.testing.assert_array_equal(tiledsl.compile(past_the_end, [-1])(a), a + 1)
    np.testing.assert_array_equal(_interp(guarded)(a), 2 * a)


def test_errors_are_tiledsl_errors_with_the_source_line():
    with pytest.raises(tiledsl.TileDSLError) as info:
        _interp(lane_write_race)(np.arange(8, dtype=np.float32))
    text = str(info.value)
    assert re.search(r'File ".*test_interp.py", line \d+, in lane_write_race', text)
    assert "B[0] = A[i]" in text and "hint:" in text
