"""Layout inference: annotations, propagation through T.copy and T.Parallel over fragments,
conflicts named by both lines, and results unchanged by the layouts it picks."""

import numpy as np
import pytest

import tiledsl
import tiledsl.language as T
from tiledsl.ir import Kernel, walk
from tiledsl.layout import Fragment, Layout, mma_m16n8k16_c, swizzle_128b
from tiledsl.target import Target
from tiledsl.transform.infer_layout import infer_layout, strided_fragment

MMA_C = mma_m16n8k16_c()
ROWS = Fragment((16, 8), lambda i, j: i * 2 + j // 4, lambda i, j: j % 4)  # another 32-thread split


def _layouts(func, target=Target("cuda")) -> dict:
    out = {}
    walk(infer_layout(func, target).body,
         lambda n: out.update({b.name: b.layout for b in n.allocs}) if isinstance(n, Kernel) else None)
    return out


def _chain(c_layout=None, d_layout=None, e_layout=None):
    """A -> C (fragment) -> D (Parallel, elementwise) -> E (T.copy) -> B."""
    @T.prim_func
    def main(A: T.Tensor((16, 8), "float32"), B: T.Tensor((16, 8), "float32")):
        with T.Kernel(1) as bx:
            C = T.alloc_fragment((16, 8), "float32")
            D = T.alloc_fragment((16, 8), "float32")
            E = T.alloc_fragment((16, 8), "float32")
            if c_layout is not None:
                T.annotate_layout({C: c_layout})
            if d_layout is not None:
                T.annotate_layout({D: d_layout})
            if e_layout is not None:
                T.annotate_layout({E: e_layout})
            T.copy(A, C)
            for i, j in T.Parallel(16, 8):
                D[i, j] = C[i, j] * 2.0 + 1.0
            T.copy(D, E)
            T.copy(E, B)
    return main


def test_fragment_propagates_through_parallel_loop_and_copy():
    got = _layouts(_chain(c_layout=MMA_C))
    assert got["C"] == MMA_C and got["D"] == MMA_C and got["E"] == MMA_C


def test_propagation_runs_backwards_too():
    got = _layouts(_chain(e_layout=ROWS))
    assert got["C"] == ROWS and got["D"] == ROWS


def test_no_decision_means_identity_on_cpu_and_strided_threads_on_gpu():
    got = _layouts(_chain(), Target.parse("cpu"))
    assert all(v == Layout.identity((16, 8)) for v in got.values())
    got = _layouts(_chain())
    assert all(v == strided_fragment((16, 8), 128) for v in got.values())
    f = got["C"]
    assert f.num_threads == 128 and f.thread(1, 2) == 10 and f.index(15, 7) == 0


def test_strided_fragment_is_a_bijection_for_any_size():
    for shape in [(97,), (10, 10), (3, 5, 7), (256, 4)]:
        f = strided_fragment(shape, 128)
        assert f.is_bijective() and f.num_threads <= 128


def test_row_operand_of_a_wider_loop_is_replicated_on_gpu():
    @T.prim_func
    def main(A: T.Tensor((16, 8), "float32"), B: T.Tensor((16, 8), "float32")):
        with T.Kernel(1, threads=64) as bx:
            C = T.alloc_fragment((16, 8), "float32")
            m = T.alloc_fragment((16,), "float32")
            T.copy(A, C)
            T.reduce_max(C, m, dim=1)
            for i, j in T.Parallel(16, 8):
                C[i, j] = C[i, j] - m[i]
            T.copy(C, B)
    got = _layouts(main)
    assert got["m"].replicate == 64 and got["m"].thread(3, rep=5) == 5 and got["m"].index(3) == 3


def test_partial_index_does_not_link():
    """`D[i, j] = C[j % 16, i % 8]`-style accesses are not element by element: no link."""
    frag = Fragment((16, 16), lambda i, j: i * 2 + j // 8, lambda i, j: j % 8)

    @T.prim_func
    def main(A: T.Tensor((16, 16), "float32"), B: T.Tensor((16, 16), "float32")):
        with T.Kernel(1) as bx:
            C = T.alloc_fragment((16, 16), "float32")
            D = T.alloc_fragment((16, 16), "float32")
            T.annotate_layout({C: frag})
            T.copy(A, C)
            for i, j in T.Parallel(16, 16):
                D[i, j] = C[j, i]
            T.copy(D, B)
    got = _layouts(main)
    assert got["D"] == strided_fragment((16, 16), 128) != got["C"]


def test_conflicting_fragments_name_both_lines():
    src = open(__file__).read().splitlines()
    c_line = 1 + next(n for n, t in enumerate(src) if "T.annotate_layout({C: c_layout})" in t)
    d_line = 1 + next(n for n, t in enumerate(src) if "T.annotate_layout({D: d_layout})" in t)
    with pytest.raises(tiledsl.LoweringError) as e:
        tiledsl.compile(_chain(c_layout=MMA_C, d_layout=ROWS), out_idx=[-1])
    msg = str(e.value)
    assert "'C'" in msg and "'D'" in msg and "T.Parallel" in msg
    # the two annotation lines, and a caret under the loop
    assert f"line {c_line} (T.annotate_layout)" in msg and f"line {d_line} (T.annotate_layout)" in msg
    assert "for i, j in T.Parallel(16, 8):" in msg


def test_conflict_through_copy():
    with pytest.raises(tiledsl.LoweringError, match="T.copy uses 'E' and 'D'|T.copy uses 'D' and 'E'"):
        tiledsl.compile(_chain(d_layout=MMA_C, e_layout=ROWS), out_idx=[-1])


@pytest.mark.cpu_only  # a plain Layout on a fragment is a CPU storage order; the GPU needs a Fragment
def test_storage_layouts_may_differ():
    """Plain Layouts on fragments are storage orders: two different ones may meet."""
    k = tiledsl.compile(_chain(c_layout=Layout((16, 8), lambda i, j: [j, i]),
                               d_layout=Layout.identity((16, 8))), out_idx=[-1])
    a = np.random.default_rng(0).standard_normal((16, 8)).astype(np.float32)
    np.testing.assert_allclose(k(a), a * 2 + 1, rtol=1e-6)


@pytest.mark.cpu_only
@pytest.mark.parametrize("c_layout", [None, MMA_C, ROWS, Layout((16, 8), lambda i, j: [j, i])])
def test_cpu_results_do_not_depend_on_fragment_layouts(c_layout):
    k = tiledsl.compile(_chain(c_layout=c_layout), out_idx=[-1])
    a = np.random.default_rng(1).standard_normal((16, 8)).astype(np.float32)
    np.testing.assert_allclose(k(a), a * 2 + 1, rtol=1e-6)


def test_annotation_against_hard_gemm_requirement(monkeypatch):
    """A GEMM implementation with hard needs (a GPU's mma accumulator) against an annotation."""
    from tiledsl.codegen.gemm import registry

    class Hard:
        hard_layouts = True

        def layouts(self, g, t):
            return {g.c.buffer.name: MMA_C}

    monkeypatch.setattr(registry, "_ROWS", [registry.Row("fake.mma", lambda g, t: True, Hard())])

    @T.prim_func
    def main(A: T.Tensor((16, 16), "float16"), B: T.Tensor((16, 8), "float16"),
             C: T.Tensor((16, 8), "float32")):
        with T.Kernel(1) as bx:
            A_s = T.alloc_shared((16, 16), "float16")
            B_s = T.alloc_shared((16, 8), "float16")
            C_f = T.alloc_fragment((16, 8), "float32")
            T.annotate_layout({C_f: ROWS})
            T.copy(A, A_s)
            T.copy(B, B_s)
            T.gemm(A_s, B_s, C_f, clear_accum=True)
            T.copy(C_f, C)
    with pytest.raises(tiledsl.LoweringError) as e:
        infer_layout(main, Target("fake"))
    msg = str(e.value)
    assert "'C_f' needs two different layouts" in msg and "T.annotate_layout" in msg and "T.gemm" in msg


def test_swizzled_shared_tile_keeps_annotation():
    @T.prim_func
    def main(A: T.Tensor((64, 64), "float16"), B: T.Tensor((64, 64), "float16")):
        with T.Kernel(1) as bx:
            S = T.alloc_shared((64, 64), "float16")
            T.annotate_layout({S: swizzle_128b((64, 64), 16)})
            T.copy(A, S)
            T.copy(S, B)
    got = _layouts(main, Target.parse("cpu"))
    assert got["S"] == swizzle_128b((64, 64), 16)
