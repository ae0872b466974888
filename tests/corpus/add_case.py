"""Keep a failing fuzz example as a corpus file.

    python tests/corpus/add_case.py "GemmSpec(block_M=16, ..., M=17, N=1, K=33, seed=5)" \\
        --why "the K tail of a ragged tile was dropped"

writes tests/corpus/found_gemm_<hash>.py, which test_corpus.py then runs on every CI run.
The spec is what Hypothesis prints as the falsifying example (`spec=GemmSpec(...)`).
"""
from __future__ import annotations

import argparse
import hashlib
import os
import sys
import textwrap

HERE = os.path.dirname(os.path.abspath(__file__))
FAMILIES = ("GemmSpec", "RowSpec", "CopySpec", "DivSpec")


def corpus_source(spec_repr: str, why: str) -> str:
    family = spec_repr.split("(", 1)[0].strip()
    if family not in FAMILIES:
        raise ValueError(f"expected one of {FAMILIES}, got {spec_repr!r}")
    doc = textwrap.fill(f"Found by the fuzzer (tests/test_fuzz.py): {why.strip() or 'see the commit message'}.",
                        width=96, subsequent_indent="")
    return f'"""{doc}"""\nfrom .families import {family}\n\nCASE = {spec_repr.strip()}.case()\n'



def save(spec_repr: str, why: str = "", folder: str = HERE) -> str:
    """Write the corpus file for `spec_repr` (idempotent) and return its path."""
    family = spec_repr.split("(", 1)[0].strip()
    digest = hashlib.sha1(spec_repr.strip().encode()).hexdigest()[:10]
    path = os.path.join(folder, f"found_{family[:-4].lower()}_{digest}.py")
    if not os.path.exists(path):
        with open(path, "w") as f:
            f.write(corpus_source(spec_repr, why))
    return path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("spec", help="the falsifying example's spec, e.g. \"GemmSpec(M=17, ...)\"")
    ap.add_argument("--why", default="", help="one line: what went wrong")
    args = ap.parse_args(argv)
    print(save(args.spec, args.why))
    return 0


if __name__ == "__main__":
    sys.exit(main())
