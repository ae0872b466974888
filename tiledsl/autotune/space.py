"""Configuration spaces: what `@tiledsl.autotune(configs=...)` accepts, in one canonical form."""
from __future__ import annotations

import inspect
import itertools
from typing import Any, Callable, Dict, List, Mapping, Sequence, Union

__all__ = ["expand_configs", "ConfigSpace"]

ConfigSpace = Union[Sequence[Mapping[str, Any]], Mapping[str, Sequence[Any]], Callable[..., Any]]


def expand_configs(configs: ConfigSpace, signature: inspect.Signature, kernel: str,
                   args: Sequence[Any] = (), kwargs: Mapping[str, Any] = ()) -> List[Dict[str, Any]]:
    """The list of config dicts, in the user's order, each checked against the factory's parameters.

    `configs` is a list of dicts, a dict of axes (`{"block_M": [32, 64], "block_N": [64, 128]}`:
    their product, the last axis varying fastest), or a callable taking the factory's arguments and
    returning either. Duplicates are dropped (the first one stays)."""
    if callable(configs) and not isinstance(configs, Mapping):
        configs = configs(*args, **dict(kwargs))
    if isinstance(configs, Mapping):
        axes = {k: list(v) if isinstance(v, (list, tuple, range)) else [v] for k, v in configs.items()}
        empty = [k for k, v in axes.items() if not v]
        if empty:
            raise ValueError(f"{kernel}: autotune axis {empty[0]!r} has no values")
        out = [dict(zip(axes, combo)) for combo in itertools.product(*axes.values())]
    elif isinstance(configs, (list, tuple)):
        out = []
        for c in configs:
            if not isinstance(c, Mapping):
                raise TypeError(f"{kernel}: each autotune config must be a dict of parameter values, "
                                f"got {type(c).__name__} {c!r}")
            out.append(dict(c))
    else:
        raise TypeError(f"{kernel}: autotune configs must be a list of dicts, a dict of axes or a "
                        f"callable returning one, got {type(configs).__name__}")
    if not out:
        raise ValueError(f"{kernel}: autotune was given no configs")
    params = signature.parameters
    names = ", ".join(params)
    unique: List[Dict[str, Any]] = []
    for c in out:
        for k in c:
            if k not in params:
                raise TypeError(f"{kernel}: autotune config {c!r} sets {k!r}, which is not a parameter "
                                f"of {kernel}({names})")
        if c not in unique:
            unique.append(c)
    return unique
