"""Compile-time reporting: TILEDSL_LOG=info says what was compiled, from which specialisation,
how long each stage took, and when a kernel is compiled again for new arguments."""

import logging
import os
import re
import subprocess
import sys

import numpy as np
import pytest

import tiledsl
import tiledsl.language as T


def make_factory():
    @tiledsl.jit(out_idx=[-1])
    def twice(N, block=32):
        @T.prim_func
        def main(A: T.Tensor((N,), "float32"), B: T.Tensor((N,), "float32")):
            with T.Kernel(T.ceildiv(N, block)) as bx:
                for i in T.Parallel(block):
                    B[bx * block + i] = A[bx * block + i] * 2.0
        return main
    return twice


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("TILEDSL_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("TILEDSL_CACHE", raising=False)
    return tmp_path / "cache"


def messages(caplog):
    return [r.getMessage() for r in caplog.records if r.name.startswith("tiledsl")]


def test_compile_recompile_and_disk_load_are_logged(cache_dir, caplog):
    twice = make_factory()
    with caplog.at_level(logging.INFO, logger="tiledsl"):
        k64 = twice(64)
        first = messages(caplog)
        caplog.clear()
        twice(64)  # the in-memory cache answers: nothing to report
        assert messages(caplog) == []
        twice(128)
        second = messages(caplog)
        caplog.clear()
        make_factory()(64)  # a new factory, as in a new process: from disk
        third = messages(caplog)
    assert len(first) == 1 and first[0].startswith("compiled twice(N=64, block=32) for cpu")
    for stage in ("frontend", "passes", "codegen", "c++", "load"):
        assert re.search(rf"\b{re.escape(stage)} \d+(\.\d+)? (ms|s)\b", first[0]), first[0]
    assert "recompiled" not in first[0]
    assert len(second) == 1 and second[0].startswith("compiled twice(N=128, block=32)")
    assert "recompiled for new arguments: N 64 -> 128" in second[0]
    assert len(third) == 1 and third[0].startswith("loaded from the disk cache twice(N=64, block=32)")
    assert "passes" not in third[0] and "c++" not in third[0]
    assert f"[cache {k64.cache_key[:12]}]" in third[0]


def test_tiledsl_log_env_configures_the_logger():
    code = "import logging, tiledsl; print(logging.getLogger('tiledsl').getEffectiveLevel())"
    for value, level in (("info", logging.INFO), ("DEBUG", logging.DEBUG)):
        out = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, TILEDSL_LOG=value),
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        assert int(out.stdout.strip()) == level
    out = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, TILEDSL_LOG="chatty"),
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "TILEDSL_LOG='chatty' is not a logging level" in out.stderr


def test_compile_of_a_primfunc_is_logged(cache_dir, caplog):
    @T.prim_func
    def inc(A: T.Tensor((16,), "float32")):
        with T.Kernel(1) as bx:
            for i in T.Parallel(16):
                A[i] = A[i] + 1.0

    with caplog.at_level(logging.INFO, logger="tiledsl"):
        k = tiledsl.compile(inc)
    a = np.zeros(16, np.float32)
    k(a)
    np.testing.assert_array_equal(a, np.ones(16, np.float32))
    assert any(m.startswith("compiled inc (a PrimFunc) for cpu") for m in messages(caplog))


@pytest.mark.parametrize("backend", ["cxx", "llvm"])
def test_the_log_line_names_the_cpu_backend(cache_dir, caplog, backend):
    if backend == "cxx":
        from tiledsl.runtime.build import compiler_info
        try:
            compiler_info()
        except tiledsl.CompileError:
            pytest.skip("no C++ compiler")
    twice = tiledsl.jit(out_idx=[-1], backend=backend)(make_factory().factory)
    with caplog.at_level(logging.INFO, logger="tiledsl"):
        twice(64)
    (line,) = messages(caplog)
    assert re.match(rf"compiled twice\(N=64, block=32\) for cpu/\w+ with {backend} in ", line), line
