"""A built kernel as a value that can travel: the disk-cache entry (library, source, manifest).

A Ray build task returns an `Artifact`; Ray's object store carries it to the tasks that
measure the config, which `install` it into their own node's disk cache before loading the
kernel through the ordinary `tiledsl.compile` path. Their compile then finds the entry, so a
config is compiled once however many machines handle it. Because the measuring node computes
the cache key itself, an artifact only serves a node that would have built the same binary
(same IR, target features, compiler, flags, tiledsl and tvm-ffi); any other node builds its
own, and that shows up as `rebuilt` in the record's `extra`.

Only the public cache API is used: the entry is found by its documented place on disk
(`kernels/<kind>/<key[:2]>/<key>/manifest.json`) and verified with `cache.lookup`; it is
written with `cache.lookup_or_build`, so the receiving cache keeps its own rename-into-place
and locking protocol.
"""
from __future__ import annotations

import hashlib
import json
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional

from ..runtime import cache

__all__ = ["Artifact", "ArtifactError", "artifact_of", "install", "origin"]


class ArtifactError(RuntimeError):
    """An artifact arrived damaged (a file whose hash is not the manifest's) or inconsistent."""


@dataclass(frozen=True)
class Artifact:
    """One cache entry's files and manifest data; `origin` says which host and process built it."""

    kind: str
    key: str
    fields: Dict[str, Any]
    meta: Dict[str, Any]
    hashes: Dict[str, Dict[str, Any]]  # file name -> {"sha256", "size"}, as in the manifest
    files: Dict[str, bytes] = field(repr=False)
    origin: str = ""

    @property
    def size(self) -> int:
        return sum(len(b) for b in self.files.values())


def origin() -> str:
    """This host and process, as records name where a config was built or measured."""
    return f"{socket.gethostname()}:{os.getpid()}"


def artifact_of(kernel: Any) -> Optional[Artifact]:
    """The cache entry `kernel` was loaded from (a C++ or CUDA library, LLVM object code), or
    None for a kernel that has none (the interpreter)."""
    key = getattr(kernel, "cache_key", None)
    if not key:
        return None
    for manifest in sorted((cache.root() / "kernels").glob(f"*/{key[:2]}/{key}/manifest.json")):
        kind = manifest.parent.parent.parent.name
        try:
            fields = json.loads(manifest.read_text())["fields"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        entry = cache.lookup(kind, fields)  # verifies every file against the manifest
        if entry is None or entry.key != key:
            continue
        files = {name: entry.file(name).read_bytes() for name in entry.files}
        return Artifact(kind, key, dict(entry.fields), dict(entry.meta), dict(entry.files), files, origin())
    return None


def install(artifact: Artifact) -> str:
    """Put `artifact` into this process's disk cache: "installed", or "present" when the
    entry was already there (this node built or received it before)."""
    if cache.make_key(artifact.kind, artifact.fields) != artifact.key:
        raise ArtifactError(f"artifact {artifact.key[:16]}: its fields do not hash to its key")
    if cache.lookup(artifact.kind, artifact.fields) is not None:
        return "present"
    for name, data in artifact.files.items():
        want = artifact.hashes.get(name, {})
        if len(data) != want.get("size") or hashlib.sha256(data).hexdigest() != want.get("sha256"):
            raise ArtifactError(f"artifact {artifact.key[:16]}: {name} does not match its manifest "
                                f"(damaged in transit?)")

    def write(tmp: Path) -> dict:
        for name, data in artifact.files.items():
            (tmp / name).write_bytes(data)
        return dict(artifact.meta)

    entry = cache.lookup_or_build(artifact.kind, artifact.fields, write)
    return "installed" if entry.built else "present"
