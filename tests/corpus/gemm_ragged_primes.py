"""GEMM with prime M, N, K and tiles that divide none of them: ragged rows, columns and a K
tail (the zeros a ragged copy reads must not perturb the sum)."""
from .families import GemmSpec

CASE = GemmSpec(block_M=16, block_N=16, block_K=8, M=37, N=29, K=53, static=True, seed=1).case()
