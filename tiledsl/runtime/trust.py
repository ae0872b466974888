"""Who may have written what the disk cache holds: OpenSSH's StrictModes for tiledsl's folders.

The cache holds shared libraries and object code that this process loads and runs, so whoever
can write the cache can run code as the user. Hence:

- what tiledsl creates there is private: folders 0700, files 0600 (never group- or
  world-writable, whatever the umask);
- a folder or file is trusted only when it is what it says (a real folder or a regular file,
  not a symbolic link; the root may be reached through one, its target is what is checked),
  owned by this user, and writable by nobody else;
- what fails is never loaded: `untrusted()` says why, `warn_once()` tells the user once per
  path, naming the fix, and the caller builds in a private folder instead.

This is the mechanism; `cache.py` applies it to the root and to every entry, and the LLVM
runtime object and the autotuner's results go through `read_private` / `write_private`.
"""
from __future__ import annotations

import os
import stat
import threading
import uuid
import warnings
from pathlib import Path
from typing import Optional, Set

__all__ = ["CacheTrustWarning", "untrusted", "warn_once", "mkdir_private", "read_private",
           "write_private", "make_private"]

_warned: Set[str] = set()
_warned_lock = threading.Lock()


class CacheTrustWarning(UserWarning):
    """A cache folder or file that another user could have written was not used."""


def _problem(st: os.stat_result, what: str, folder: bool) -> Optional[str]:
    if stat.S_ISLNK(st.st_mode):
        return f"it is a symbolic link (a {what} must be a real {'folder' if folder else 'file'})"
    if folder != stat.S_ISDIR(st.st_mode) or (not folder and not stat.S_ISREG(st.st_mode)):
        return f"it is not a {'folder' if folder else 'regular file'}"
    if st.st_uid != os.getuid():
        return f"it is owned by uid {st.st_uid}, not by this user (uid {os.getuid()})"
    w = st.st_mode & 0o022
    if w:
        who = "group and others" if w == 0o022 else "group" if w == 0o020 else "others"
        return f"it is writable by {who} (mode {stat.S_IMODE(st.st_mode):04o})"
    return None


def untrusted(path: Path, folder: bool, what: str = "cache entry", follow: bool = False) -> Optional[str]:
    """Why `path` must not be trusted, or None (also None when it does not exist). `follow`
    checks a symbolic link's target instead of refusing the link (for the root only)."""
    try:
        st = os.stat(path) if follow else os.lstat(path)
    except FileNotFoundError:
        return None
    return _problem(st, what, folder)


def fix_for(path: Path, problem: str, folder: bool) -> str:
    """What the user runs to make `path` trustworthy again."""
    if "writable by" in problem and "owned" not in problem:
        return f"chmod {'-R ' if folder else ''}go-w {path}"
    return f"rm -r {path}" if folder and "symbolic" not in problem else f"rm {path}"


def warn_once(path: Path, problem: str, fix: str, instead: str) -> None:
    """One CacheTrustWarning per path per process."""
    with _warned_lock:
        if str(path) in _warned:
            return
        _warned.add(str(path))
    warnings.warn(f"tiledsl: not using {path}: {problem}. Anyone who can write it could make this "
                  f"process run their code; {instead}. Fix: {fix}", CacheTrustWarning, stacklevel=3)


def mkdir_private(path: Path, base: Optional[Path] = None) -> None:
    """Create `path` (and its missing parents below `base`, or all of them) as 0700 folders."""
    missing = []
    p = path
    while not p.exists() and p != p.parent and (base is None or p != base):
        missing.append(p)
        p = p.parent
    for p in reversed(missing):
        try:
            os.mkdir(p, 0o700)
        except FileExistsError:
            pass  # another process made it first


def make_private(path: Path) -> None:
    """Drop group and other permissions from a file or folder tiledsl wrote (a compiler's output
    follows the umask, which may leave it group-writable)."""
    st = os.lstat(path)
    if not stat.S_ISLNK(st.st_mode) and stat.S_IMODE(st.st_mode) & 0o077:
        os.chmod(path, stat.S_IMODE(st.st_mode) & 0o700)


def read_private(path: Path, what: str) -> Optional[bytes]:
    """The bytes of a file tiledsl wrote, or None when it is missing or not trusted (then warned:
    the caller makes it again, and `write_private` replaces the file)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        return None
    except OSError as e:  # ELOOP: a symbolic link
        warn_once(path, f"it cannot be opened as a private file ({e.strerror})", f"rm {path}",
                  f"the {what} is made again")
        return None
    with os.fdopen(fd, "rb") as f:
        problem = _problem(os.fstat(f.fileno()), what, folder=False)
        if problem:
            warn_once(path, problem, fix_for(path, problem, False), f"the {what} is made again")
            return None
        return f.read()


def write_private(path: Path, data: bytes) -> None:
    """Write `path` (mode 0600) so that readers see the old file or the whole new one."""
    mkdir_private(path.parent)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
