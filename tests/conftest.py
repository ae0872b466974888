"""Shared pytest configuration.

`--backend=cxx|llvm` compiles every CPU kernel of the run with that backend (it sets
`$TILEDSL_CPU_BACKEND`, which `tiledsl.jit` reads at compile time), so the whole CPU suite runs
against either: `python -m pytest -q tests --backend=llvm`.
"""
import os

import pytest

# Tests of what only the C++ backend has: its disk cache of built libraries and the library
# files themselves. The LLVM backend compiles in process and keeps nothing on disk, so under
# --backend=llvm they are skipped. New tests of that kind: mark them @pytest.mark.cxx_only.
CXX_ONLY = ("test_cache.py::", "test_logging.py::test_compile_recompile_and_disk_load_are_logged")


def pytest_addoption(parser):
    parser.addoption("--backend", choices=("cxx", "llvm"), default=None,
                     help="CPU backend for the kernels the tests compile (default: "
                          "$TILEDSL_CPU_BACKEND, else C++ when a C++ compiler is on PATH)")


def pytest_configure(config):
    config.addinivalue_line("markers", "cxx_only: about the C++ backend's libraries (skipped under --backend=llvm)")
    backend = config.getoption("--backend")
    if backend:
        os.environ["TILEDSL_CPU_BACKEND"] = backend


def pytest_collection_modifyitems(config, items):
    if os.environ.get("TILEDSL_CPU_BACKEND") != "llvm":
        return
    skip = pytest.mark.skip(reason="about the C++ backend's library files and disk cache")
    for item in items:
        name = item.nodeid.rsplit("/", 1)[-1]
        if item.get_closest_marker("cxx_only") or name.startswith(CXX_ONLY):
            item.add_marker(skip)
