"""GEMM whose tiles divide the matrices (compiled-in shapes): no guard anywhere, the fast path."""
from .families import GemmSpec

CASE = GemmSpec(block_M=32, block_N=32, block_K=16, num_stages=3, M=64, N=64, K=64, static=True).case()
