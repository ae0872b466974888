"""The content-addressed disk cache: built kernels (and anything else a backend builds).

An entry is a directory named by its key, the SHA-256 of the canonical JSON of its key fields:

    <root>/kernels/<kind>/<key[:2]>/<key>/
        manifest.json     {"format", "kind", "key", "fields", "files": {name: {"sha256", "size"}}, "meta"}
        ...               whatever the build wrote (for "cpp": the .so and its .cc)

A backend describes what determines its binary as `fields` (a JSON-able dict: IR text, compiler
and version, flags, target, versions) and hands over a `build` callable that writes the entry's
files into an empty temporary directory and returns `meta` (a JSON-able dict: which file is the
library, the exported symbol, anything the loader needs)::

    from tiledsl.runtime import cache

    def build(tmp: Path) -> dict:
        (tmp / "k.cu").write_text(src)
        run_nvcc(tmp / "k.cu", tmp / "k.so")
        return {"library": "k.so"}

    entry = cache.lookup_or_build("cuda", fields, build)
    tvm_ffi.load_module(str(entry.file(entry.meta["library"])))

`lookup_or_build` returns a verified `Entry` (every file's size and hash match the manifest).
The build runs in `<kind>/.tmp/`, the manifest is written last, and the directory is renamed
into place, so a reader sees a whole entry or none. A per-key lock file makes concurrent
processes wait for one build instead of repeating it (after `LOCK_WAIT_S` they build anyway:
the rename protocol alone is safe). An entry that fails verification is reported (a WARNING on
the "tiledsl" logger), moved aside and rebuilt; it is never loaded.

Library file names must carry the key (a library rebuilt at a path that a process already
dlopen-ed would run the old code there); `library_name(symbol, key)` does it.

Environment: `TILEDSL_CACHE_DIR` (default `$XDG_CACHE_HOME/tiledsl`, else `~/.cache/tiledsl`);
`TILEDSL_CACHE=0` turns the disk cache off: entries then live in a private temporary directory
removed at exit, so nothing is read from or left behind in a shared place.

Trust (`trust.py`, like OpenSSH's StrictModes): the root and everything below it are created
private (0700 folders, 0600 files). A root that is owned by another user or writable by group
or others is not used: tiledsl warns once, naming it and the fix, and works in the private
temporary directory instead. An entry that is a symbolic link, holds one, or is owned by
another user or writable by others is never loaded: a warning names it, and the kernel is
built in the private directory.
"""
from __future__ import annotations

import atexit
import contextlib
import errno
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, Optional, Sequence

from . import trust

__all__ = ["Entry", "root", "private_root", "enabled", "make_key", "lookup", "lookup_or_build", "clear",
           "library_name", "write_json_atomic", "read_json_private", "CacheError", "LOCK_WAIT_S"]

log = logging.getLogger("tiledsl.cache")

FORMAT = 1
MANIFEST = "manifest.json"
LOCK_WAIT_S = 300.0
_PRIVATE: Dict[str, Path] = {}  # the TILEDSL_CACHE=0 / fallback directory; forked workers share it


class CacheError(RuntimeError):
    """An entry could not be written (disk full, permissions, a build that wrote nothing)."""


@dataclass(frozen=True)
class Entry:
    """A verified cache entry. `built` says whether this call built it (False: found on disk)."""

    kind: str
    key: str
    path: Path
    fields: dict
    meta: dict
    files: dict = field(repr=False)
    built: bool = False

    def file(self, name: str) -> Path:
        return self.path / name


def enabled() -> bool:
    """False when `TILEDSL_CACHE` is 0 / off / false / no."""
    return os.environ.get("TILEDSL_CACHE", "1").strip().lower() not in ("0", "off", "false", "no")


def root() -> Path:
    """The cache's root directory (see the module docstring), created private if missing; the
    private temporary directory when it cannot be trusted or made."""
    if not enabled():
        return private_root()
    env = os.environ.get("TILEDSL_CACHE_DIR")
    if env:
        path = Path(env).expanduser()
    else:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        path = Path(base) / "tiledsl"
    try:
        trust.mkdir_private(path)
    except OSError as e:
        trust.warn_once(path, f"it cannot be created ({e.strerror})", "point TILEDSL_CACHE_DIR at a "
                        "folder of your own", "kernels are built in a private temporary folder")
        return private_root()
    # The root may be reached through a symbolic link (a cache moved to another disk): its
    # target is what must be private.
    problem = trust.untrusted(path, folder=True, what="cache root", follow=True)
    if problem:
        fix = trust.fix_for(path, problem, False) if "writable" in problem else \
            "point TILEDSL_CACHE_DIR at a folder of your own (or unset it)"
        trust.warn_once(path, problem, fix, "kernels are built in a private temporary folder")
        return private_root()
    return path


def private_root() -> Path:
    """This process's private temporary cache (0700, removed at exit)."""
    if "dir" not in _PRIVATE:
        _PRIVATE["dir"] = Path(tempfile.mkdtemp(prefix="tiledsl-private-"))
        atexit.register(_remove_private, _PRIVATE["dir"], os.getpid())
    return _PRIVATE["dir"]


def _remove_private(path: Path, pid: int) -> None:
    if os.getpid() == pid:  # not in a forked worker that exits normally: the parent still uses it
        shutil.rmtree(path, ignore_errors=True)


def make_key(kind: str, fields: dict) -> str:
    """SHA-256 (hex) of the kind and the canonical JSON of `fields`."""
    text = json.dumps({"kind": kind, "fields": fields}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def library_name(symbol: str, key: str, suffix: str = ".so") -> str:
    """A library file name that carries the entry's key."""
    return f"{symbol}_{key[:24]}{suffix}"


def _entry_dir(base: Path, kind: str, key: str) -> Path:
    return base / "kernels" / kind / key[:2] / key


def _trusted_base(kind: str, key: str) -> Path:
    """The root, or the private directory when the entry under the root is not to be trusted."""
    base = root()
    path = _entry_dir(base, kind, key)
    problem = trust.untrusted(path, folder=True)
    if problem is None and path.is_dir():
        for f in os.scandir(path):
            problem = trust.untrusted(Path(f.path), folder=False)
            if problem:
                problem = f"{f.name}: {problem}"
                break
    if problem is None:
        return base
    fix = trust.fix_for(path, problem, True) if "owned" not in problem and "link" not in problem \
        else f"rm -rf {path}"
    trust.warn_once(path, problem, fix, "the kernel is built in a private temporary folder")
    return private_root()


def lookup(kind: str, fields: dict) -> Optional[Entry]:
    """The verified entry for `fields`, or None. A corrupt entry is reported and removed; one
    that is not to be trusted is left alone and not read (see the module docstring)."""
    key = make_key(kind, fields)
    return _lookup(_trusted_base(kind, key), kind, key)


def _lookup(base: Path, kind: str, key: str) -> Optional[Entry]:
    entry, problem = _read(kind, key, _entry_dir(base, kind, key))
    if problem:
        _report_and_discard(base, kind, key, problem)
    return entry


def lookup_or_build_reported(kind: str, fields: dict, build: Callable[[Path], dict], report,
                             build_stages: Sequence[str]) -> Entry:
    """`lookup_or_build` timed as the compile report's "cache" stage, which then counts only the
    bookkeeping (the `build_stages` it contained are taken out). A failed build carries its key
    (`tiledsl_cache_key`), so the autotuner can remember a deterministic failure."""
    try:
        with report.stage("cache"):
            entry = lookup_or_build(kind, fields, build)
    except Exception as e:
        e.tiledsl_cache_key = make_key(kind, fields)
        raise
    if entry.built:
        for stage in build_stages:
            report.stages["cache"] -= report.stages.get(stage, 0.0)
    return entry


def lookup_or_build(kind: str, fields: dict, build: Callable[[Path], dict]) -> Entry:
    """The verified entry for `fields`; built with `build(tmp_dir) -> meta` when missing or corrupt."""
    key = make_key(kind, fields)
    base = _trusted_base(kind, key)
    entry = _lookup(base, kind, key)
    if entry is not None:
        return entry
    with _lock(base, kind, key):
        entry = _lookup(base, kind, key)  # another process may have built it while we waited
        if entry is not None:
            return entry
        return _build(base, kind, key, fields, build)


def clear(what: str = "all") -> None:
    """Remove cached kernels ("kernels"), autotuning results ("autotune") or both ("all").

    Kernels already loaded in a process keep working (their files stay mapped)."""
    if what not in ("all", "kernels", "autotune"):
        raise ValueError(f"tiledsl.cache.clear: what must be 'all', 'kernels' or 'autotune', got {what!r}")
    base = root()
    names = {"all": ("kernels", "autotune", "locks", "probes", "lib"), "kernels": ("kernels", "locks", "lib"),
             "autotune": ("autotune",)}[what]
    for name in names:
        _remove_tree(base / name)
    log.info("cleared the %s cache under %s", what if what != "all" else "whole", base)


# ---- reading and verifying ----

def _read(kind: str, key: str, path: Path):
    """(entry, None) when whole and verified, (None, reason) when corrupt, (None, None) when absent."""
    try:
        text = (path / MANIFEST).read_text()
    except FileNotFoundError:
        return None, ("it has no manifest (a partial entry)" if path.exists() else None)
    except OSError as e:
        return None, f"its manifest cannot be read ({e})"
    try:
        m = json.loads(text)
        ok = m["format"] == FORMAT and m["kind"] == kind and m["key"] == key
        files, meta, fields = dict(m["files"]), dict(m["meta"]), dict(m["fields"])
    except (ValueError, KeyError, TypeError):
        return None, "its manifest is not valid JSON of this format"
    if not ok:
        return None, "its manifest names another key or format"
    for name, want in files.items():
        problem = _check_file(path / name, want)
        if problem:
            return None, f"{name} {problem}"
    return Entry(kind, key, path, fields, meta, files), None


def _check_file(p: Path, want: dict) -> Optional[str]:
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        return "is missing"
    except OSError as e:
        return f"cannot be read ({e})"
    if len(data) != want.get("size"):
        return f"has {len(data)} bytes, the manifest says {want.get('size')} (truncated?)"
    if hashlib.sha256(data).hexdigest() != want.get("sha256"):
        return "does not match its hash in the manifest"
    return None


def _report_and_discard(base: Path, kind: str, key: str, problem: str) -> None:
    log.warning("cache entry %s/%s is corrupt: %s; it is discarded and rebuilt", kind, key[:16], problem)
    _move_aside(base, kind, _entry_dir(base, kind, key))


def _move_aside(base: Path, kind: str, path: Path) -> None:
    trash = base / "kernels" / kind / ".trash"
    trust.mkdir_private(trash, base)
    target = trash / f"{path.name}-{uuid.uuid4().hex[:8]}"
    try:
        os.rename(path, target)
    except FileNotFoundError:
        return  # another process moved it first
    _remove_tree(target)


# ---- building ----

def _build(base: Path, kind: str, key: str, fields: dict, build: Callable[[Path], dict]) -> Entry:
    tmp_root = base / "kernels" / kind / ".tmp"
    trust.mkdir_private(tmp_root, base)
    tmp = Path(tempfile.mkdtemp(dir=tmp_root, prefix=f"{key[:16]}-{os.getpid()}-"))  # 0700
    try:
        meta = build(tmp)
        if not isinstance(meta, dict):
            raise CacheError(f"cache build for {kind} returned {type(meta).__name__}, expected a dict (meta)")
        for p in tmp.iterdir():  # a compiler's output follows the umask
            trust.make_private(p)
        files = {p.name: _describe(p) for p in sorted(tmp.iterdir()) if p.is_file()}
        if not files:
            raise CacheError(f"cache build for {kind} wrote no files")
        manifest = {"format": FORMAT, "kind": kind, "key": key, "fields": fields, "files": files,
                    "meta": meta, "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
        _write_json(tmp / MANIFEST, manifest)
        return _publish(base, kind, key, tmp, Entry(kind, key, _entry_dir(base, kind, key), fields, meta, files, True))
    finally:
        _remove_tree(tmp)


def _publish(base: Path, kind: str, key: str, tmp: Path, entry: Entry) -> Entry:
    final = entry.path
    trust.mkdir_private(final.parent, base)
    for _ in range(5):
        try:
            os.rename(tmp, final)
            return entry
        except OSError as e:
            if e.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise CacheError(f"cannot write the cache entry {final}: {e}") from e
        theirs, problem = _read(kind, key, final)  # a process that did not wait for the lock won
        if theirs is not None:
            return theirs
        if problem:
            _report_and_discard(base, kind, key, problem)
    raise CacheError(f"cannot place the cache entry {final}: it keeps being replaced")


def _describe(p: Path) -> dict:
    data = p.read_bytes()
    return {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}


def _write_json(path: Path, obj: Any) -> None:
    """Write JSON so that readers see the old file or the whole new one.

    No fsync: after a crash a file may be empty, and every reader verifies what it reads and
    rebuilds (or re-measures) what fails; an fsync per kernel would cost more than that."""
    trust.write_private(path, json.dumps(obj, indent=1, sort_keys=True).encode())


def _remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def _lock(base: Path, kind: str, key: str) -> Iterator[None]:
    """Hold the per-key build lock, or give up waiting after LOCK_WAIT_S and go on without it."""
    try:
        import fcntl
    except ImportError:  # not POSIX: concurrent builds just repeat the work
        yield
        return
    folder = base / "locks"
    trust.mkdir_private(folder, base)
    # Lock files are never deleted: unlinking one that another process is about to lock races.
    fd = os.open(folder / f"{kind}-{key[:32]}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + LOCK_WAIT_S
        held = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                held = True
                break
            except OSError:
                if time.monotonic() > deadline:
                    log.warning("waited %.0f s for another process building %s/%s; building here too",
                                LOCK_WAIT_S, kind, key[:16])
                    break
                time.sleep(0.02)
        try:
            yield
        finally:
            if held:
                fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write a small JSON file atomically and privately (the autotuner's results, probes)."""
    _write_json(path, obj)


def read_json_private(path: Path, what: str) -> Any:
    """A JSON file tiledsl wrote, or None when missing or not to be trusted (warned once);
    ValueError when it is not JSON."""
    data = trust.read_private(path, what)
    return None if data is None else json.loads(data)
