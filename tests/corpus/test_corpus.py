"""Every kernel of the corpus gives the same outputs on the CPU and in the interpreter, and
the ones numpy can express give numpy's."""
import pytest

from corpus import all_cases, check

CASES = all_cases()


def test_corpus_is_large_enough():
    assert len(CASES) >= 15


@pytest.mark.parametrize("case", [c for _, c in CASES], ids=[name for name, _ in CASES])
def test_cpu_and_interp_agree(case):
    check(case)
