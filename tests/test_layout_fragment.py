"""Fragment: construction, checks, inverse coverage, repeat."""
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from tiledsl.ir import Var
from tiledsl.layout import REP, Fragment, LayoutError, fragment_from_exprs, mma_m16n8k16_c

FAST = settings(max_examples=40, deadline=None)


def test_repr_and_queries():
    c = mma_m16n8k16_c()
    assert repr(c) == ("Fragment((16, 8), threads=32, locals=4: (i, j) -> thread i % 8 * 4 + "
                       "j // 2, slot i // 8 * 2 + j % 2)")
    assert c.num_threads == 32 and c.locals_per_thread == 4 and c.replicate == 1
    assert c.thread(9, 5) == 1 * 4 + 2 and c.index(9, 5) == 2 + 1
    x, y = Var("x"), Var("y")
    assert c.thread(x, y) == x % 8 * 4 + y // 2
    assert c.index(x, y) == x // 8 * 2 + y % 2


def test_equality_and_hash():
    a = Fragment((4, 8), lambda i, j: i * 8 + j, lambda i, j: 0)
    b = Fragment((4, 8), lambda r, c: r * 8 + c, lambda r, c: 0)
    assert a == b and hash(a) == hash(b)
    assert a != Fragment((4, 8), lambda i, j: j * 4 + i, lambda i, j: 0)
    r, c = Var("r"), Var("c")
    assert fragment_from_exprs((4, 8), (r, c), r * 8 + c, 0) == a


def test_multi_coordinate_index_is_flattened():
    f = Fragment((4, 6), lambda i, j: i, lambda i, j: [j // 3, j % 3])
    assert f.locals_per_thread == 6
    assert [f.index(0, j) for j in range(6)] == list(range(6))


def test_rejects_collisions_and_bad_functions():
    with pytest.raises(LayoutError, match="same thread and slot"):
        Fragment((4, 4), lambda i, j: i, lambda i, j: 0)
    with pytest.raises(LayoutError, match="same thread and slot"):
        Fragment((4,), lambda i: i, lambda i: 0, replicate=2)  # thread ignores rep
    with pytest.raises(LayoutError):
        Fragment((4,), lambda i: i, lambda i, j: 0)
    with pytest.raises(LayoutError, match="rep"):
        Fragment((4,), lambda i: i, lambda i: REP)               # slot may not use rep
    with pytest.raises(LayoutError):
        Fragment((4,), lambda i: i - 1, lambda i: 0)


def test_replicated_fragment():
    # 8 x 4 tile, each element held by 2 threads: threads 0..15 hold rep 0, 16..31 rep 1.
    f = Fragment((8, 4), lambda i, j, rep: (i * 4 + j) % 16 + rep * 16,
                 lambda i, j: (i * 4 + j) // 16, replicate=2)
    assert f.num_threads == 32 and f.locals_per_thread == 2
    assert f.thread(1, 1, rep=1) == 21
    assert f.thread_table().shape == (8, 4, 2)
    assert "replicate=2" in repr(f)
    inv = f.inverse()
    assert inv.shape == (32, 2) and inv.output_shape == (8, 4, 2)
    assert inv(21, 0) == (1, 1, 1)


def test_inverse_needs_every_slot():
    holes = Fragment((2, 2), lambda i, j: i * 4 + j, lambda i, j: 0)  # threads 2, 3 empty
    assert not holes.is_bijective()
    with pytest.raises(LayoutError):
        holes.inverse()


@st.composite
def fragments(draw):
    """Random valid fragments: a row-major thread/slot split, optionally replicated and
    optionally repeated over threads or registers."""
    m, n = draw(st.integers(1, 8)), draw(st.integers(1, 8))
    size = m * n
    per = draw(st.sampled_from([d for d in range(1, size + 1) if size % d == 0]))
    rep = draw(st.integers(1, 3))
    frag = Fragment((m, n), lambda i, j, r: (i * n + j) % per + r * per,
                    lambda i, j: (i * n + j) // per, replicate=rep)
    if draw(st.booleans()):
        frag = frag.repeat(draw(st.integers(1, 3)), over=draw(st.sampled_from(
            ["threads", "registers"])), dim=draw(st.integers(0, 1)))
    return frag


@FAST
@given(fragments())
def test_inverse_covers_every_element_replicate_times(frag):
    inv = frag.inverse()
    tt, ss = np.indices((frag.num_threads, frag.locals_per_thread)).reshape(2, -1)
    back = inv.evaluate(tt, ss)
    logical = list(zip(*(b.tolist() for b in back[:frag.ndim])))
    counts = Counter(logical)
    assert len(counts) == frag.size
    assert set(counts.values()) == {frag.replicate}
    # and the inverse really inverts: element -> (thread, slot) -> element
    for t, s, idx, rep in zip(tt[::7], ss[::7], logical[::7], (back[-1] if frag.replicate > 1
                                                              else np.zeros_like(tt))[::7]):
        assert frag.thread(*idx, rep=int(rep)) == t and frag.index(*idx) == s


@FAST
@given(fragments(), st.integers(1, 4), st.sampled_from(["threads", "registers"]), st.data())
def test_repeat_shifts_copies(frag, count, over, data):
    dim = data.draw(st.integers(0, frag.ndim - 1))
    big = frag.repeat(count, over=over, dim=dim)
    assert big.shape[dim] == frag.shape[dim] * count
    if over == "threads":
        assert big.num_threads == frag.num_threads * count
        assert big.locals_per_thread == frag.locals_per_thread
    else:
        assert big.num_threads == frag.num_threads
        assert big.locals_per_thread == frag.locals_per_thread * count
    idx = [data.draw(st.integers(0, n - 1)) for n in big.shape]
    r, local = divmod(idx[dim], frag.shape[dim])
    small = list(idx)
    small[dim] = local
    shift_t = r * frag.num_threads if over == "threads" else 0
    shift_s = r * frag.locals_per_thread if over == "registers" else 0
    assert big.thread(*idx) == frag.thread(*small) + shift_t
    assert big.index(*idx) == frag.index(*small) + shift_s


def test_as_layout():
    c = mma_m16n8k16_c()
    lay = c.as_layout()
    assert lay.shape == (16, 8) and lay.output_shape == (32, 4) and lay.is_bijective()
    assert lay(9, 5) == (c.thread(9, 5), c.index(9, 5))
