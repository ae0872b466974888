"""C = A @ B^T and C = A^T @ B (and both transposed), the operand layouts attention and
backward passes use."""
from .families import GemmSpec

CASES = [GemmSpec(block_M=16, block_N=16, block_K=16, trans_a=ta, trans_b=tb, M=33, N=20, K=45,
                  static=True).case()
         for ta, tb in ((False, True), (True, False), (True, True))]
