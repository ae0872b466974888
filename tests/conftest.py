"""Shared pytest configuration.

`--backend=cxx|llvm` compiles every CPU kernel of the run with that backend (it sets
`$TILEDSL_CPU_BACKEND`, which `tiledsl.jit` reads at compile time), so the whole CPU suite runs
against either: `python -m pytest -q tests --backend=llvm`.
"""
import os


def pytest_addoption(parser):
    parser.addoption("--backend", choices=("cxx", "llvm"), default=None,
                     help="CPU backend for the kernels the tests compile (default: "
                          "$TILEDSL_CPU_BACKEND, else C++ when a C++ compiler is on PATH)")


def pytest_configure(config):
    backend = config.getoption("--backend")
    if backend:
        os.environ["TILEDSL_CPU_BACKEND"] = backend
