"""FlashAttention forward (bhsd layout) with an online softmax in base 2, checked against numpy
and timed beside the plain numpy formulation (softmax(Q K^T * scale) V) measured in the same run.

    python examples/flash_attention.py                 # b=1, h=8, s=1024, d=64, causal and not
    python examples/flash_attention.py 2 4 777 64      # batch heads seq dim

Each block owns `block_M` query rows of one (batch, head) and streams the keys and values past
them `block_N` rows at a time: S = Q K^T (the transposed GEMM), a running row max and row sum
rescale what was accumulated so far, then O += P V. The seq x seq score matrix never exists.
"""
import math
import os
import sys

import numpy as np

import tiledsl
import tiledsl.language as T

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # the sibling gemm.py, also when imported
from gemm import best_time  # noqa: E402

LOG2E = 1.44269504088896340736


@tiledsl.jit(out_idx=[3])
def flash_attention(batch, heads, seq, dim, is_causal=False, block_M=64, block_N=64,
                    dtype="float32"):
    # exp(x * sm_scale) == exp2(x * scale): the log2(e) factor rides along with 1/sqrt(dim)
    scale = (1.0 / math.sqrt(dim)) * LOG2E
    shape = (batch, heads, seq, dim)
    accum = "float32"

    @T.prim_func
    def main(Q: T.Tensor(shape, dtype), K: T.Tensor(shape, dtype), V: T.Tensor(shape, dtype),
             Output: T.Tensor(shape, dtype)):
        with T.Kernel(T.ceildiv(seq, block_M), heads, batch, threads=128) as (bx, by, bz):
            Q_s = T.alloc_shared((block_M, dim), dtype)
            K_s = T.alloc_shared((block_N, dim), dtype)
            V_s = T.alloc_shared((block_N, dim), dtype)
            acc_s = T.alloc_fragment((block_M, block_N), accum)
            acc_s_cast = T.alloc_fragment((block_M, block_N), dtype)
            acc_o = T.alloc_fragment((block_M, dim), accum)
            m_prev = T.alloc_fragment((block_M,), accum)
            m_cur = T.alloc_fragment((block_M,), accum)
            rescale = T.alloc_fragment((block_M,), accum)
            row_sum = T.alloc_fragment((block_M,), accum)
            logsum = T.alloc_fragment((block_M,), accum)

            T.copy(Q[bz, by, bx * block_M:(bx + 1) * block_M, :], Q_s)
            T.fill(acc_o, 0)
            T.fill(logsum, 0)
            T.fill(m_cur, -T.infinity(accum))

            # Causal: key tiles wholly right of this block's last query row contribute nothing.
            n_tiles = (T.min(T.ceildiv(seq, block_N), T.ceildiv((bx + 1) * block_M, block_N))
                       if is_causal else T.ceildiv(seq, block_N))
            for k in T.Pipelined(n_tiles, num_stages=2):
                T.copy(K[bz, by, k * block_N:(k + 1) * block_N, :], K_s)
                # The mask is the GEMM's starting value: 0 where the key counts, -inf where it is
                # in the future (causal) or past the end of the sequence (a ragged last tile,
                # whose rows the copy filled with zeros).
                for i, j in T.Parallel(block_M, block_N):
                    if is_causal:
                        acc_s[i, j] = T.if_then_else(bx * block_M + i >= k * block_N + j,
                                                     0, -T.infinity(accum))
                    else:
                        acc_s[i, j] = T.if_then_else(k * block_N + j < seq, 0, -T.infinity(accum))
                T.gemm(Q_s, K_s, acc_s, transpose_B=True)

                T.copy(m_cur, m_prev)
                T.reduce_max(acc_s, m_cur, dim=1, clear=False)  # max with the previous max
                # Every row sees key 0 in the first tile, so m_cur is finite from then on and
                # exp2(-inf - m) below is a clean 0.
                for i in T.Parallel(block_M):
                    rescale[i] = T.exp2(m_prev[i] * scale - m_cur[i] * scale)
                for i, j in T.Parallel(block_M, block_N):
                    acc_s[i, j] = T.exp2(acc_s[i, j] * scale - m_cur[i] * scale)
                T.reduce_sum(acc_s, row_sum, dim=1)
                for i in T.Parallel(block_M):
                    logsum[i] = logsum[i] * rescale[i] + row_sum[i]
                for i, j in T.Parallel(block_M, dim):
                    acc_o[i, j] = acc_o[i, j] * rescale[i]

                T.copy(acc_s, acc_s_cast)  # P in the input dtype, as a tensor-core GEMM wants it
                T.copy(V[bz, by, k * block_N:(k + 1) * block_N, :], V_s)
                T.gemm(acc_s_cast, V_s, acc_o)

            for i, j in T.Parallel(block_M, dim):
                acc_o[i, j] = acc_o[i, j] / logsum[i]
            T.copy(acc_o, Output[bz, by, bx * block_M:(bx + 1) * block_M, :])
    return main


def attention_ref(q, k, v, is_causal=False):
    """softmax(Q K^T / sqrt(d) [+ causal mask]) V in float32 (float16 inputs are widened)."""
    q, k, v = (x.astype(np.float32) for x in (q, k, v))
    s = (q @ k.swapaxes(-1, -2)) * np.float32(1.0 / math.sqrt(q.shape[-1]))
    if is_causal:
        n = s.shape[-1]
        s = np.where(np.tril(np.ones((n, n), bool)), s, -np.inf)
    s = np.exp(s - s.max(axis=-1, keepdims=True))
    return (s / s.sum(axis=-1, keepdims=True)) @ v


def attention_flops(batch, heads, seq, dim, is_causal):
    """Two GEMMs of 2*s*s*d each per (batch, head); causal does about half the work."""
    return 4.0 * batch * heads * seq * seq * dim * (0.5 if is_causal else 1.0)


def main(batch=1, heads=8, seq=1024, dim=64) -> int:
    rng = np.random.default_rng(0)
    ok = True
    shape = (batch, heads, seq, dim)
    q, k, v = (rng.standard_normal(shape, dtype=np.float32) for _ in range(3))
    print(f"{'b x h x s x d':>18} {'causal':>6} {'max err':>9} {'tiledsl':>10} {'numpy':>10} "
          f"{'ratio':>6}  (ratio = numpy time / tiledsl time)")
    for is_causal in (False, True):
        kernel = flash_attention(*shape, is_causal=is_causal)
        o = kernel(q, k, v)
        ref = attention_ref(q, k, v, is_causal)
        err = float(np.abs(o - ref).max())
        good = err < 1e-4
        ok &= good
        ours = best_time(lambda: kernel(q, k, v))
        theirs = best_time(lambda: attention_ref(q, k, v, is_causal))
        print(f"{'x'.join(map(str, shape)):>18} {str(is_causal):>6} {err:9.1e} {ours * 1e3:7.2f} ms "
              f"{theirs * 1e3:7.2f} ms {theirs / ours:5.2f}x {'ok' if good else 'WRONG'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(*(int(a) for a in sys.argv[1:])))
