"""Loading the scripts in `examples/` from tests (they are scripts, not a package), and running
a kernel both compiled for the CPU and in the interpreter."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Sequence

import tiledsl

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load_example(name: str) -> ModuleType:
    """`load_example("softmax")` imports examples/softmax.py (once per test session)."""
    key = f"tiledsl_example_{name}"
    if key in sys.modules:
        return sys.modules[key]
    spec = importlib.util.spec_from_file_location(key, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[key] = module
    spec.loader.exec_module(module)
    return module


def interp_kernel(factory, *args, out_idx: Sequence[int] = (-1,), **kwargs):
    """The kernel `factory(*args, **kwargs)` builds, run by the numpy interpreter."""
    return tiledsl.compile(factory.get_ir(*args, **kwargs), out_idx=list(out_idx), target="interp")
