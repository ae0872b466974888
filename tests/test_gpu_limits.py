"""What a GPU block may hold is checked when the kernel is compiled, not when it is launched.

A kernel whose shared tiles do not fit the architecture's per-block shared memory (227 KB on
sm_90 / sm_90a, 163 KB on sm_80, 99 KB on sm_86 / sm_89) is a `LoweringError` at its
`T.Kernel` line naming every shared tile and its size (`plan_shared_memory`); one that fits
gets the offsets that pass planned. No GPU needed: `cuda_source` runs the CUDA pipeline for a
given arch, and `cuda -emulate` builds and runs it on the CPU.
"""
import numpy as np
import pytest

import tiledsl
import tiledsl.language as T
from tiledsl.errors import LoweringError
from tiledsl.runtime.cuda import cuda_source
from tiledsl.target import Target
from tiledsl.transform.plan_shared_memory import shared_memory_limit


def _line(marker: str) -> int:
    with open(__file__) as f:
        hits = [n for n, text in enumerate(f, 1) if text.rstrip().endswith("# !" + marker)]
    assert len(hits) == 1, marker
    return hits[0]


def staged_copy(rows, cols, extra=0, dtype="float32", threads=32):
    """A through a (rows, cols) shared tile, plus an `extra`-element tile, into B."""
    @T.prim_func
    def main(A: T.Tensor((rows, cols), dtype), B: T.Tensor((rows, cols), dtype)):
        with T.Kernel(1, threads=threads) as bx:  # !kernel
            big = T.alloc_shared((rows, cols), dtype)
            T.copy(A[0, 0], big)
            if extra:
                tail = T.alloc_shared((extra,), dtype)
                for i in T.Parallel(extra):
                    tail[i] = big[0, i % cols]
                for i in T.Parallel(extra):
                    B[0, i] = tail[i] * 2.0
            T.copy(big[1:rows, :], B[1, 0])
            if not extra:
                T.copy(big[0:1, :], B[0, 0])
    return main


def _rejects(func, target: str, *fragments: str) -> LoweringError:
    with pytest.raises(LoweringError) as info:
        cuda_source(func, Target.parse(target))
    err = info.value
    for f in fragments:
        assert f in err.message, err.message
    assert err.span is not None and err.span.line == _line("kernel"), str(err)
    assert err.hint
    return err


def test_the_limits_by_arch():
    assert shared_memory_limit("sm_90a") == shared_memory_limit("sm_90") == 232448
    assert shared_memory_limit("sm_80") == 166912
    assert shared_memory_limit("sm_86") == shared_memory_limit("sm_89") == 101376
    assert shared_memory_limit("sm_99") == 49152  # unknown: what every GPU allows without opting in


def test_too_much_shared_memory_is_a_compile_error_naming_the_tiles():
    # two 128 KB tiles: over on every GPU
    _rejects(staged_copy(256, 128, extra=32768), "cuda -arch=sm_90a", "262144 bytes",
             "232448 bytes (227 KB)", "sm_90a", "'big' (256, 128) float32 = 131072 bytes",
             "'tail' (32768,) float32 = 131072 bytes")


def test_the_limit_is_the_architectures():
    """200 KB fits an H100's block but not an A100's."""
    func = staged_copy(200, 256)  # 204800 bytes
    lowered, src = cuda_source(func, Target.parse("cuda -arch=sm_90a"))
    assert "<<<grid, block, 204800, stream>>>" in src
    assert "cudaFuncAttributeMaxDynamicSharedMemorySize, 204800" in src
    _rejects(func, "cuda -arch=sm_80", "204800 bytes", "166912 bytes (163 KB)", "sm_80",
             "'big' (200, 256) float32 = 204800 bytes")


def test_exactly_the_limit_fits_and_sixteen_bytes_more_do_not():
    cuda_source(staged_copy(227, 256), Target.parse("cuda -arch=sm_90a"))  # 232448 bytes
    _rejects(staged_copy(227, 256, extra=4), "cuda -arch=sm_90a", "232464 bytes")


def test_offsets_are_planned_16_byte_aligned_and_rendered():
    lowered, src = cuda_source(staged_copy(4, 8, extra=3, dtype="float16"), Target.parse("cuda -arch=sm_80"))
    kernel = lowered.body.stmts[0] if isinstance(lowered.body, tiledsl.ir.Seq) else lowered.body
    assert kernel.smem == (("big", 0, 64), ("tail", 64, 6))
    assert "(tdsl_smem + 0)" in src and "(tdsl_smem + 64)" in src
    assert "<<<grid, block, 80, stream>>>" in src  # the last tile rounded up to 16 bytes


def test_emulated_compile_rejects_and_a_big_block_runs():
    with pytest.raises(LoweringError, match="one block may have") as info:
        tiledsl.compile(staged_copy(256, 256), out_idx=[-1], target="cuda -emulate")  # 256 KB
    assert info.value.span.line == _line("kernel")
    # 64 KB + 16 bytes: past the 48 KB a block gets without opting in
    a = np.arange(128 * 128, dtype=np.float32).reshape(128, 128)
    b = tiledsl.compile(staged_copy(128, 128, extra=4), out_idx=[-1], target="cuda -emulate")(a)
    want = a.copy()
    want[0, :4] = a[0, :4] * 2
    np.testing.assert_array_equal(b[1:], a[1:])
    np.testing.assert_array_equal(b[0, :4], want[0, :4])
