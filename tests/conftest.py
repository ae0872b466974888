"""Shared pytest configuration.

`--backend=cxx|llvm` compiles every CPU kernel of the run with that backend (it sets
`$TILEDSL_CPU_BACKEND`, which `tiledsl.jit` reads at compile time), so the whole CPU suite runs
against either: `python -m pytest -q tests --backend=llvm`.

`--target=cuda` or `--target="cuda -emulate"` compiles every kernel a test builds for the
default CPU target for that target instead (see gpu_mode.py); tests about the CPU backends
themselves are skipped then.
"""
import os

import pytest

# Tests of what only the C++ backend has: its disk cache of built libraries and the library
# files themselves. The LLVM backend compiles in process and keeps nothing on disk, so under
# --backend=llvm they are skipped. New tests of that kind: mark them @pytest.mark.cxx_only.
CXX_ONLY = ("test_cache.py::", "test_logging.py::test_compile_recompile_and_disk_load_are_logged")

# Tests about the CPU backends (their libraries, OpenMP, ISA dispatch, LLVM, exported .so
# files), skipped under --target: they mean nothing for another target. New tests of that
# kind: mark them @pytest.mark.cpu_only.
CPU_ONLY = ("test_cache.py::", "test_llvm_backend.py::", "test_cpu_gemm_dispatch.py::", "test_export.py::",
            "test_logging.py::", "test_profiler.py::", "test_autotune.py::", "test_autotune_ray.py::",
            "test_llvm_cache.py::", "test_fuzz.py::")


def pytest_addoption(parser):
    parser.addoption("--backend", choices=("cxx", "llvm"), default=None,
                     help="CPU backend for the kernels the tests compile (default: "
                          "$TILEDSL_CPU_BACKEND, else C++ when a C++ compiler is on PATH)")
    parser.addoption("--target", default=None,
                     help='compile the kernels tests build for the default CPU target for this '
                          'target instead: "cuda" or "cuda -emulate" (see gpu_mode.py)')


def pytest_configure(config):
    config.addinivalue_line("markers", "cxx_only: about the C++ backend's libraries (skipped under --backend=llvm)")
    backend = config.getoption("--backend")
    if backend:
        os.environ["TILEDSL_CPU_BACKEND"] = backend
    config.addinivalue_line("markers", "cpu_only: about the CPU backends (skipped under --target)")
    target = config.getoption("--target")
    if target:
        import gpu_mode
        gpu_mode.install(target)


def pytest_collection_modifyitems(config, items):
    if config.getoption("--target"):
        skip = pytest.mark.skip(reason=f"about the CPU backends, not {config.getoption('--target')}")
        for item in items:
            name = item.nodeid.rsplit("/", 1)[-1]
            if item.get_closest_marker("cpu_only") or name.startswith(CPU_ONLY):
                item.add_marker(skip)
    if os.environ.get("TILEDSL_CPU_BACKEND") != "llvm":
        return
    skip = pytest.mark.skip(reason="about the C++ backend's library files and disk cache")
    for item in items:
        name = item.nodeid.rsplit("/", 1)[-1]
        if item.get_closest_marker("cxx_only") or name.startswith(CXX_ONLY):
            item.add_marker(skip)
