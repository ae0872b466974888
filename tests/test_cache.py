"""The disk cache: entries are whole and verified, several processes agree, corrupt entries are
rebuilt and reported, keys follow every edit that changes the kernel, and it can be cleared or
turned off."""

import importlib.util
import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import tiledsl
from tiledsl.runtime import cache, cpp

KERNEL = '''
import tiledsl, tiledsl.language as T

OFFSET = {offset}

def shifted(x):
    return x + {helper}

@tiledsl.jit(out_idx=[-1])
def add_one(N, block=64):
    @T.prim_func
    def main(A: T.Tensor((N,), "float32"), B: T.Tensor((N,), "float32")):
        with T.Kernel(T.ceildiv(N, block)) as bx:
            for i in T.Parallel(block):
                B[bx * block + i] = shifted(A[bx * block + i] * {scale}) + OFFSET
    return main
'''


def write_kernel(folder: Path, name: str, offset=1.0, helper=0.0, scale=1.0) -> Path:
    path = folder / f"{name}.py"
    path.write_text(KERNEL.format(offset=offset, helper=helper, scale=scale))
    return path


def load_module(path: Path):
    spec = importlib.util.spec_from_file_location(f"{path.stem}_{abs(hash(str(path)))}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    d = tmp_path / "cache"
    monkeypatch.setenv("TILEDSL_CACHE_DIR", str(d))
    monkeypatch.delenv("TILEDSL_CACHE", raising=False)
    return d


def child_env(cache_dir: Path) -> dict:
    env = dict(os.environ, TILEDSL_CACHE_DIR=str(cache_dir), TILEDSL_LOG="info")
    env.pop("TILEDSL_CACHE", None)
    return env


CHILD = '''
import importlib.util, json, sys
import numpy as np
spec = importlib.util.spec_from_file_location("kern", sys.argv[1])
mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
k = mod.add_one(1000)
a = np.arange(1000, dtype=np.float32)
from tiledsl.runtime.cpp import tiledsl_fingerprint
print(json.dumps({"key": k.cache_key, "lib": k.library, "ok": bool(np.array_equal(k(a), a + 1)),
                  "fingerprint": tiledsl_fingerprint()}))
'''


# ---- the generic cache API (no compiler involved) ----

def test_lookup_or_build_builds_once_and_verifies(cache_dir):
    calls = []

    def build(tmp: Path) -> dict:
        calls.append(tmp)
        (tmp / "blob.bin").write_bytes(b"x" * 1000)
        return {"blob": "blob.bin"}

    fields = {"what": "blob", "n": 1}
    first = cache.lookup_or_build("test", fields, build)
    second = cache.lookup_or_build("test", fields, build)
    assert len(calls) == 1 and first.built and not second.built
    assert second.key == first.key == cache.make_key("test", fields)
    assert second.file("blob.bin").read_bytes() == b"x" * 1000
    manifest = json.loads((second.path / "manifest.json").read_text())
    assert manifest["files"]["blob.bin"]["size"] == 1000 and manifest["meta"] == {"blob": "blob.bin"}
    assert cache.lookup("test", {"what": "blob", "n": 2}) is None
    assert not list((cache_dir / "kernels" / "test" / ".tmp").iterdir())  # no leftovers


@pytest.mark.parametrize("damage", ["truncate", "flip", "partial", "manifest"])
def test_corrupt_entry_is_reported_and_rebuilt(cache_dir, caplog, damage):
    def build(tmp: Path) -> dict:
        (tmp / "blob.bin").write_bytes(bytes(range(256)) * 4)
        return {}

    entry = cache.lookup_or_build("test", {"d": damage}, build)
    blob, manifest = entry.file("blob.bin"), entry.path / "manifest.json"
    if damage == "truncate":
        blob.write_bytes(blob.read_bytes()[:100])
    elif damage == "flip":
        blob.write_bytes(b"\xff" + blob.read_bytes()[1:])
    elif damage == "partial":
        manifest.unlink()
    else:
        manifest.write_text("{not json")
    with caplog.at_level(logging.WARNING, logger="tiledsl"):
        assert cache.lookup("test", {"d": damage}) is None
        again = cache.lookup_or_build("test", {"d": damage}, build)
    assert again.built and again.file("blob.bin").read_bytes() == bytes(range(256)) * 4
    assert any("corrupt" in r.getMessage() for r in caplog.records)


def test_failed_build_leaves_nothing(cache_dir):
    def build(tmp: Path) -> dict:
        (tmp / "half.bin").write_bytes(b"...")
        raise RuntimeError("compiler crashed")

    with pytest.raises(RuntimeError, match="compiler crashed"):
        cache.lookup_or_build("test", {"x": 1}, build)
    assert cache.lookup("test", {"x": 1}) is None
    assert not list((cache_dir / "kernels" / "test" / ".tmp").iterdir())


# ---- kernels ----

def test_four_processes_compile_the_same_kernel_at_once(cache_dir, tmp_path):
    src = write_kernel(tmp_path, "kern")
    procs = [subprocess.Popen([sys.executable, "-c", CHILD, str(src)], env=child_env(cache_dir),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(4)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _, err in outs]
    answers = [json.loads(out.strip().splitlines()[-1]) for out, _ in outs]
    assert all(a["ok"] for a in answers)
    assert len({a["key"] for a in answers}) == 1 and len({a["lib"] for a in answers}) == 1
    logs = "".join(err for _, err in outs)
    # The build lock makes the others wait for the one build and load its result.
    assert logs.count("] compiled add_one(") == 1, logs
    assert logs.count("] loaded from the disk cache add_one(") == 3, logs


def test_truncated_library_is_detected_and_rebuilt(cache_dir, tmp_path, caplog, monkeypatch):
    src = write_kernel(tmp_path, "kern")
    # Built by another process: this one must never have the library it damages mapped.
    out = subprocess.run([sys.executable, "-c", CHILD, str(src)], env=child_env(cache_dir),
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    child = json.loads(out.stdout.strip().splitlines()[-1])
    # The same key here even if tiledsl's source changed since this process hashed it.
    monkeypatch.setattr(cpp, "tiledsl_fingerprint", lambda: child["fingerprint"])
    lib = Path(child["lib"])
    size = lib.stat().st_size
    lib.write_bytes(lib.read_bytes()[: size // 3])
    with caplog.at_level(logging.INFO, logger="tiledsl"):
        k = load_module(src).add_one(1000)
    messages = [r.getMessage() for r in caplog.records]
    assert any("corrupt" in m and "truncated" in m for m in messages), messages
    assert any(m.startswith("compiled add_one(") for m in messages), messages
    a = np.arange(1000, dtype=np.float32)
    np.testing.assert_array_equal(k(a), a + 1)
    assert k.library == str(lib) and lib.stat().st_size > size // 3


class _Captured(Exception):
    pass


def kernel_key(path: Path, monkeypatch, *args) -> str:
    """The disk key `tiledsl.jit` would use, found without compiling anything."""
    seen = {}

    def capture(kind, fields, build):
        seen["key"] = cache.make_key(kind, fields)
        raise _Captured()

    monkeypatch.setattr(cpp.cache, "lookup_or_build", capture)
    with pytest.raises(_Captured):
        load_module(path).add_one(*args)
    monkeypatch.undo()
    return seen["key"]


def test_key_follows_body_helper_global_and_sizes(tmp_path, monkeypatch):
    base = kernel_key(write_kernel(tmp_path, "base"), monkeypatch, 256)
    assert kernel_key(write_kernel(tmp_path, "same"), monkeypatch, 256) == base  # stable
    assert kernel_key(write_kernel(tmp_path, "body", scale=3.0), monkeypatch, 256) != base
    assert kernel_key(write_kernel(tmp_path, "helper", helper=0.5), monkeypatch, 256) != base
    assert kernel_key(write_kernel(tmp_path, "glob", offset=2.0), monkeypatch, 256) != base
    assert kernel_key(write_kernel(tmp_path, "size"), monkeypatch, 512) != base
    assert kernel_key(write_kernel(tmp_path, "tile"), monkeypatch, 256, 128) != base


def test_key_follows_target_compiler_and_versions(monkeypatch):
    import tiledsl.language as T

    @T.prim_func
    def main(A: T.Tensor((8,), "float32")):
        with T.Kernel(1) as bx:
            for i in T.Parallel(8):
                A[i] = A[i] + 1.0

    host = tiledsl.Target.parse("cpu")
    base = cache.make_key("cpp", cpp.key_fields(main, host))
    other_cpu = tiledsl.Target("cpu", host.arch + "-other", host.features, host.isa)
    fewer = tiledsl.Target("cpu", host.arch, host.features[:-1], host.isa)
    scalar = tiledsl.Target.parse("cpu -isa=scalar")
    for t in (other_cpu, fewer, scalar):
        assert cache.make_key("cpp", cpp.key_fields(main, t)) != base
    monkeypatch.setattr(cpp, "compiler_info", lambda: ("/usr/bin/g++", "g++ (Other) 99.1"))
    assert cache.make_key("cpp", cpp.key_fields(main, host)) != base
    monkeypatch.undo()
    monkeypatch.setattr(cpp, "tiledsl_fingerprint", lambda: "0.0.0+edited")
    assert cache.make_key("cpp", cpp.key_fields(main, host)) != base
    monkeypatch.undo()
    monkeypatch.setattr(cpp, "tvm_ffi_version", lambda: "9.9.9 /elsewhere")
    assert cache.make_key("cpp", cpp.key_fields(main, host)) != base


def test_edited_kernel_never_runs_stale_code(cache_dir, tmp_path):
    a = np.arange(300, dtype=np.float32)
    k1 = load_module(write_kernel(tmp_path, "v1")).add_one(300)
    k2 = load_module(write_kernel(tmp_path, "v2", offset=5.0)).add_one(300)
    np.testing.assert_array_equal(k1(a), a + 1)
    np.testing.assert_array_equal(k2(a), a + 5)
    assert k1.library != k2.library


def test_clear_and_disable(cache_dir, tmp_path, monkeypatch):
    src = write_kernel(tmp_path, "kern", offset=3.0)
    k = load_module(src).add_one(100)
    assert Path(k.library).is_relative_to(cache_dir)
    assert list((cache_dir / "kernels" / "cpp").glob("*/*/manifest.json"))
    tiledsl.cache.clear()
    assert not (cache_dir / "kernels").exists()
    a = np.ones(100, np.float32)
    np.testing.assert_array_equal(k(a), a + 3)  # a loaded kernel keeps working
    assert "__tvm_ffi_add_one" in k.get_kernel_source()

    monkeypatch.setenv("TILEDSL_CACHE", "0")
    assert not tiledsl.cache.enabled()
    k = load_module(src).add_one(100)
    np.testing.assert_array_equal(k(a), a + 3)
    assert not Path(k.library).is_relative_to(cache_dir)
    assert not (cache_dir / "kernels").exists()


def test_clear_rejects_unknown_part(cache_dir):
    with pytest.raises(ValueError, match="kernels"):
        tiledsl.cache.clear("everything")


def test_source_and_lowered_ir_of_a_kernel_loaded_from_disk(cache_dir, tmp_path):
    src = write_kernel(tmp_path, "kern", offset=4.0)
    first = load_module(src).add_one(64)
    again = load_module(src).add_one(64)  # a new factory: found on disk, never lowered here
    assert again.library == first.library
    assert "__tvm_ffi_add_one" in again.get_kernel_source()
    assert again.get_ir(lowered=True) == first.get_ir(lowered=True)
