"""The SASS of a cubin, for audits of the instruction mix without a GPU.

`cuobjdump -sass` from the `nvidia-cuda-cuobjdump` wheel (the `cuda-test` extra) or the CUDA
toolkit. Tests read opcode counts per kernel: tensor-core GEMMs must show HMMA, register-blocked
ones FFMA, and local-memory traffic (LDL / STL: spilled registers or arrays the compiler could
not keep in registers) shows where a fragment fell out of the register file.
"""
from __future__ import annotations

import collections
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile
from typing import Dict, Optional

__all__ = ["find_cuobjdump", "disassemble", "opcode_counts"]


def find_cuobjdump() -> Optional[str]:
    for site in sys.path:
        for path in sorted(glob.glob(os.path.join(site, "nvidia", "cu1[2-9]", "bin", "cuobjdump"))):
            return path
    for home in filter(None, (os.environ.get("CUDA_HOME"), "/usr/local/cuda")):
        path = os.path.join(home, "bin", "cuobjdump")
        if os.path.exists(path):
            return path
    return shutil.which("cuobjdump")


def disassemble(cubin: bytes) -> str:
    """`cuobjdump -sass` of a cubin."""
    tool = find_cuobjdump()
    if tool is None:
        raise RuntimeError("no cuobjdump (pip install nvidia-cuda-cuobjdump)")
    with tempfile.TemporaryDirectory(prefix="tiledsl-sass-") as tmp:
        path = os.path.join(tmp, "k.cubin")
        with open(path, "wb") as f:
            f.write(cubin)
        proc = subprocess.run([tool, "-sass", path], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"cuobjdump failed: {proc.stderr[-2000:]}")
    return proc.stdout


_FUNCTION = re.compile(r"Function : (\S+)")
# "/*0040*/   @!P0 LDG.E.128 R4, desc[UR4][R2.64] ;": the opcode, without its modifiers
_INSTR = re.compile(r"/\*[0-9a-f]{4,}\*/\s+(?:@!?U?P[T0-9]+\s+)?([A-Z][A-Z0-9_]*)")


def opcode_counts(sass: str) -> Dict[str, collections.Counter]:
    """Per kernel (function name), how often each opcode occurs."""
    out: Dict[str, collections.Counter] = {}
    current = None
    for line in sass.splitlines():
        m = _FUNCTION.search(line)
        if m:
            current = out.setdefault(m.group(1), collections.Counter())
            continue
        m = _INSTR.search(line)
        if m and current is not None:
            current[m.group(1)] += 1
    return out
