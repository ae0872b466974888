"""Tuning results on disk, one small JSON file per (kernel, config).

A result's key is the hash of the config and of `kernel_fields`: the specialised IR (so the
shapes, dtypes and tile sizes), the target (CPU name and features, or GPU arch), the compiler
and tiledsl's own source, so editing the
kernel, moving to another CPU or another compiler never reuses a timing, while adding a config
to the list leaves the other configs' results valid: only the new one is compiled and timed.

Files live in `<cache root>/autotune/<key[:2]>/<key>.json`, private as everything in the cache
(a result file that is a symbolic link, another user's, or writable by others is warned about
and measured again); `tiledsl.cache.clear("autotune")` removes them. Timeouts and factory
errors are not stored (they may pass on another day); a failed check is stored with the check it failed (`check_id`), so another `ref_prog` or
tolerance checks again.
"""
from __future__ import annotations

import hashlib
import inspect
import json
import logging
from pathlib import Path
from typing import Any, Callable, Dict, Optional

from ..errors import TileDSLError
from ..runtime import cache
from ..runtime.build import compiler_info
from ..runtime.cpp import tiledsl_fingerprint, tvm_ffi_version
from .choose import OK, Record

__all__ = ["kernel_fields", "result_key", "load", "save", "check_id", "jsonable"]

log = logging.getLogger("tiledsl.autotune")

FORMAT = 1
STORED = (OK, "compile_error", "check_failed", "run_error")


def jsonable(v: Any) -> Any:
    """`v` as JSON data (values JSON lacks become their repr)."""
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, (list, tuple)):
        return [jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): jsonable(x) for k, x in v.items()}
    return repr(v)


def kernel_fields(func: Any, target: Any, backend: Any = None) -> Dict[str, Any]:
    """What makes a timing valid: the specialised IR, the target (every field: kind, CPU name and
    features or GPU arch, ISA), the backend asked for, the C++ compiler, tiledsl's source and
    tvm-ffi."""
    try:
        compiler = list(compiler_info())
    except TileDSLError:
        compiler = None
    return {"ir": func.script(), "target": repr(target), "backend": jsonable(backend), "compiler": compiler,
            "tiledsl": tiledsl_fingerprint(), "tvm_ffi": tvm_ffi_version()}


def result_key(kernel_fields: Dict[str, Any], config: Dict[str, Any]) -> str:
    return cache.make_key("autotune", {"kernel": kernel_fields, "config": jsonable(config)})


def check_id(ref_prog: Optional[Callable], supply_prog: Optional[Callable], rtol: float,
             atol: float) -> Optional[str]:
    """What a result's correctness was checked against (None: not checked)."""
    if ref_prog is None:
        return None
    text = json.dumps([_callable_id(ref_prog), _callable_id(supply_prog), rtol, atol])
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _callable_id(f: Optional[Callable]) -> str:
    if f is None:
        return ""
    name = f"{getattr(f, '__module__', '')}.{getattr(f, '__qualname__', type(f).__name__)}"
    try:
        return name + ":" + hashlib.sha256(inspect.getsource(f).encode()).hexdigest()[:16]
    except (OSError, TypeError):  # built-ins, numpy ufuncs, objects defined in a REPL
        return name


def _path(key: str) -> Path:
    return cache.root() / "autotune" / key[:2] / f"{key}.json"


def load(key: str, index: int, config: Dict[str, Any], check: Optional[str]) -> Optional[Record]:
    """The stored result for `key` as a Record for this run, or None when it must be measured."""
    path = _path(key)
    try:
        data = cache.read_json_private(path, "tuning result")  # None: not there, or not trusted
        if data is None:
            return None
        status = data["status"]
        ok = data["format"] == FORMAT and data["key"] == key and status in STORED
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as e:
        log.warning("tuning result %s is unreadable (%s); measuring again", path, e)
        return None
    if not ok:
        return None
    if status in (OK, "check_failed", "run_error") and check is not None and data.get("check") != check:
        return None  # never checked against this reference: check (and time) again
    return Record(index, config, status, data.get("median"), data.get("min"), data.get("max"),
                  data.get("reason", ""), cached=True)


def save(key: str, record: Record, check: Optional[str]) -> None:
    if record.status not in STORED:
        return
    data = {"format": FORMAT, "key": key, "config": jsonable(record.config), "status": record.status,
            "median": record.median, "min": record.min, "max": record.max, "reason": record.reason,
            "check": check if record.status != "compile_error" else None}
    try:
        cache.write_json_atomic(_path(key), data)
    except OSError as e:
        log.warning("cannot store the tuning result for %s: %s", record.config, e)
