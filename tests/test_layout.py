"""Layout: construction, evaluation, algebra, and the properties every layout must keep."""
import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from tiledsl.ir import Const, Var, expr_str, substitute
from tiledsl.layout import Layout, LayoutError, index_vars, swizzle
from tiledsl.layout._eval import eval_scalar, eval_vector
from tiledsl.layout._simplify import simplify
from tiledsl.layout.gemm_layouts import mma_m16n8k16_c, packed_a_layout

FAST = settings(max_examples=40, deadline=None)


# -- basics ------------------------------------------------------------------------------------

def test_transpose_repr_and_apply():
    t = Layout((64, 32), lambda i, j: [j, i])
    assert repr(t) == "Layout((64, 32) -> (32, 64): (i, j) -> (j, i))"
    assert t.shape == (64, 32) and t.output_shape == (32, 64)
    assert t.vars == (Var("i"), Var("j"))
    assert t(3, 5) == (5, 3) and t.apply(3, 5) == (5, 3)
    assert t.offset(3, 5) == 5 * 64 + 3
    assert t.is_bijective() and not t.is_identity()


def test_apply_on_exprs_substitutes():
    t = Layout((64, 32), lambda i, j: [j, i * 2 + 1])
    x, y = Var("x"), Var("y")
    assert t.apply(x, y) == (y, x * 2 + 1)
    assert t.apply(Const(3), 4) == (Const(4), Const(7))
    assert expr_str(t.offset(x, y)) == "y * 128 + x * 2 + 1"


def test_structural_equality_ignores_parameter_names():
    a = Layout((8, 8), lambda i, j: [j, i])
    b = Layout((8, 8), lambda row, col: [col, row])
    assert a == b and hash(a) == hash(b)
    assert a != Layout((8, 8), lambda i, j: [i, j])
    assert a != Layout((8, 4), lambda i, j: [j, i])
    assert len({a, b}) == 1


def test_identity_and_row_major():
    ident, rm = Layout.identity((4, 6)), Layout.row_major((4, 6))
    assert ident.output_shape == (4, 6) and rm.output_shape == (24,)
    assert ident.is_identity() and rm.is_identity()
    assert rm(2, 3) == (15,)
    assert repr(rm) == "Layout((4, 6) -> (24,): (i, j) -> (i * 6 + j))"


def test_single_expr_and_constants():
    lay = Layout((8,), lambda i: i * 2)
    assert lay.forward == (Var("i") * 2,) and lay.output_shape == (15,)
    assert not lay.is_bijective() and lay.is_injective()
    const = Layout((3,), lambda i: [0, i])
    assert const.output_shape == (1, 3) and const.is_bijective()


def test_errors():
    with pytest.raises(LayoutError):
        Layout((4, 4), lambda i: [i])          # wrong arity
    with pytest.raises(LayoutError):
        Layout((4,), lambda i: [i - 1])         # negative coordinate
    with pytest.raises(LayoutError):
        Layout((4,), lambda i: [i + Var("n")])  # free variable
    with pytest.raises(LayoutError):
        Layout((0, 4), lambda i, j: [i, j])
    with pytest.raises(LayoutError):
        Layout((4,), lambda i: [i], output_shape=(3,))
    with pytest.raises(LayoutError):
        Layout((4, 4), lambda i, j: [i // 2, j]).inverse()
    with pytest.raises(LayoutError):
        Layout((4,), lambda i: [i])(1, 2)
    with pytest.raises(ValueError):             # LayoutError is also a ValueError
        Layout.row_major((2, 3)).reshape((7,))


def test_from_exprs_renames_to_canonical():
    r, c = Var("r"), Var("c")
    assert Layout.from_exprs((4, 8), (r, c), [c, r]) == Layout((4, 8), lambda i, j: [j, i])


def test_vectorised_evaluation_matches_scalar():
    lay = swizzle((16, 64), 16, 128)
    rows, cols = np.indices(lay.shape)
    vi, vj = lay.evaluate(rows, cols)
    for i in range(0, 16, 3):
        for j in range(0, 64, 7):
            assert lay(i, j) == (vi[i, j], vj[i, j])


def test_declared_output_shape_is_padding():
    pa = packed_a_layout(10, 4, 4)
    assert pa.output_shape == (3, 4, 4) and pa.physical_size == 48
    assert pa.is_injective() and not pa.is_bijective()


# -- inverse -----------------------------------------------------------------------------------

def test_inverse_closed_forms():
    t = Layout((64, 32), lambda i, j: [j, i])
    assert t.inverse() == Layout((32, 64), lambda i, j: [j, i])
    assert repr(Layout.row_major((4, 6)).inverse()) == \
        "Layout((24,) -> (4, 6): (i) -> (i // 6, i % 6))"
    sw = swizzle((8, 64), 16, 128)
    assert repr(sw.inverse()) == "Layout((8, 64) -> (8, 64): (i, j) -> (i, j ^ i * 8))"
    assert not sw.inverse().tables
    assert repr(mma_m16n8k16_c().inverse()) == \
        "Layout((32, 4) -> (16, 8): (i, j) -> (i // 4 + j // 2 * 8, i % 4 * 2 + j % 2))"


def test_inverse_falls_back_to_a_table():
    lay = Layout((15,), lambda i: [i * 7 % 15])
    inv = lay.inverse()
    assert inv.tables and inv.shape == (15,) and inv.output_shape == (15,)
    for x in range(15):
        assert inv(*lay(x)) == (x,)
    assert inv.inverse().equivalent(lay)
    assert inv == lay.inverse()  # deterministic table name: stable cache keys


def _shapes(max_dims=3, max_extent=12):
    return st.lists(st.integers(1, max_extent), min_size=1, max_size=max_dims).map(tuple)


@st.composite
def bijective_layouts(draw):
    kind = draw(st.sampled_from(["permute", "row_major", "swizzle", "packed", "mod", "split"]))
    if kind == "permute":
        shape = draw(_shapes())
        perm = draw(st.permutations(range(len(shape))))
        return Layout(shape, lambda *idx: [idx[p] for p in perm])
    if kind == "row_major":
        return Layout.row_major(draw(_shapes()))
    if kind == "swizzle":
        bits = draw(st.sampled_from([8, 16, 32, 64]))
        width = draw(st.sampled_from([32, 64, 128]))
        cols = draw(st.integers(1, 2)) * width * 8 // bits
        return swizzle((draw(st.integers(1, 24)), cols), bits, width)
    if kind == "packed":
        mr, panels, k = draw(st.integers(1, 8)), draw(st.integers(1, 4)), draw(st.integers(1, 6))
        return packed_a_layout(mr * panels, k, mr)
    if kind == "mod":  # i -> a*i mod n with gcd(a, n) = 1: no closed form, table inverse
        n = draw(st.integers(2, 40))
        a = draw(st.integers(1, n - 1).filter(lambda a: math.gcd(a, n) == 1))
        return Layout((n,), lambda i: [i * a % n])
    m, n = draw(st.integers(1, 8)), draw(st.integers(1, 8))
    return Layout((m * n,), lambda i: [i % m, i // m])


@FAST
@given(bijective_layouts(), st.data())
def test_inverse_round_trip(lay, data):
    assert lay.is_bijective()
    inv = lay.inverse()
    assert inv.shape == lay.output_shape and inv.output_shape == lay.shape
    x = tuple(data.draw(st.integers(0, n - 1)) for n in lay.shape)
    assert inv(*lay(x)) == x
    y = tuple(data.draw(st.integers(0, n - 1)) for n in lay.output_shape)
    assert lay(*inv(y)) == y
    assert inv.compose(lay).is_identity() and lay.compose(inv).is_identity()


# -- compose, reshape, repeat ----------------------------------------------------------------

def _factorisations(n):
    return [(a, n // a) for a in range(1, n + 1) if n % a == 0]


@FAST
@given(bijective_layouts(), st.data())
def test_reshape_keeps_the_physical_map(lay, data):
    new_shape = data.draw(st.sampled_from(_factorisations(lay.size)))
    r = lay.reshape(new_shape)
    assert r.shape == new_shape and r.output_shape == lay.output_shape
    assert np.array_equal(r.offset_table().reshape(-1), lay.offset_table().reshape(-1))
    assert r.reshape(lay.shape).equivalent(lay)


@FAST
@given(bijective_layouts(), st.data())
def test_compose_is_function_composition(lay, data):
    perm = data.draw(st.permutations(range(lay.ndim)))
    inner_shape = tuple(lay.shape[p] for p in perm)
    # inner: a transpose whose output lands in lay's domain
    inv_perm = [perm.index(d) for d in range(lay.ndim)]
    inner = Layout(inner_shape, lambda *idx: [idx[q] for q in inv_perm])
    both = lay.compose(inner)
    assert both.shape == inner_shape and both.output_shape == lay.output_shape
    x = tuple(data.draw(st.integers(0, n - 1)) for n in inner_shape)
    assert both(*x) == lay(*inner(*x))


def test_compose_rejects_mismatched_spaces():
    with pytest.raises(LayoutError):
        Layout.identity((4, 4)).compose(Layout.row_major((4, 4)))


def test_repeat_stacks_copies():
    sw = swizzle((8, 64), 16, 128)
    assert sw.repeat(4, dim=0).equivalent(swizzle((32, 64), 16, 128))
    rm = Layout.row_major((2, 3))
    rep = rm.repeat(3, dim=1)
    assert rep.shape == (2, 9) and rep.output_shape == (18,)
    assert rep(1, 4) == (rm(1, 1)[0] + 6,)
    spaced = Layout.identity((2, 2)).repeat(2, dim=1, out_dim=1, stride=4)
    assert spaced.output_shape == (2, 6) and spaced(1, 3) == (1, 5)


# -- evaluator and simplifier ------------------------------------------------------------------

I, J = Var("i"), Var("j")
RANGES = {I: (0, 11), J: (0, 7)}


def _exprs():
    leaves = st.sampled_from([I, J]) | st.integers(0, 9).map(Const)

    def extend(children):
        pos = st.integers(1, 9)
        return st.one_of(
            st.tuples(children, children).map(lambda p: p[0] + p[1]),
            st.tuples(children, st.integers(-3, 6)).map(lambda p: p[0] * p[1]),
            st.tuples(children, pos).map(lambda p: p[0] // p[1]),
            st.tuples(children, pos).map(lambda p: p[0] % p[1]),
            st.tuples(children, children).map(lambda p: p[0] ^ p[1]),
            st.tuples(children, children).map(lambda p: p[0] - p[1]),
        )
    return st.recursive(leaves, extend, max_leaves=8)


@settings(max_examples=200, deadline=None)
@given(_exprs())
def test_simplify_and_evaluators_agree_with_substitute(e):
    ii, jj = np.indices((12, 8)).reshape(2, -1)
    simple = simplify(e, RANGES)
    (full,) = eval_vector([e], [I, J], [ii, jj])
    (simp,) = eval_vector([simple], [I, J], [ii, jj])
    assert np.array_equal(full, simp), (expr_str(e), expr_str(simple))
    for x, y in ((0, 0), (11, 7), (5, 3)):
        folded = substitute(e, {I: Const(x), J: Const(y)})
        assert eval_scalar([e], [I, J], [x, y]) == (folded.value,)


def test_simplify_examples():
    assert simplify((I * 8 + J) // 8, RANGES) == I
    assert simplify((I * 8 + J) % 8, RANGES) == J
    assert simplify(I % 4 + I // 4 * 4, RANGES) == I
    assert simplify(J ^ I * 8 ^ I * 8, RANGES) == J
    assert simplify(I // 2 // 3, RANGES) == I // 6


def test_index_vars():
    assert [v.name for v in index_vars(2)] == ["i", "j"]
    assert [v.name for v in index_vars(5)] == ["i0", "i1", "i2", "i3", "i4"]


def test_substitution_is_simultaneous():
    # {i: 0, j: i} on i * 2 + j must give i, not 0 (a renaming must not be applied twice).
    rm = Layout.row_major((1, 2))
    back = rm.compose(rm.inverse())
    assert back.forward == (Var("i"),) and back.is_identity()
