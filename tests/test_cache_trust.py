"""The disk cache trusts only what this user alone could have written (OpenSSH's StrictModes):
private folders and files whatever the umask; a world-writable root, an entry planted by
another uid, a symbolic link in place of an entry or of one of its files, or a tampered tuning
result is never used: one warning names it and the fix, and the work is done in a private
folder instead."""
import os
import stat
import warnings
from pathlib import Path

import numpy as np
import pytest

import tiledsl
import tiledsl.language as T
from tiledsl.autotune import store
from tiledsl.autotune.choose import OK, Record
from tiledsl.runtime import cache, trust
from tiledsl.runtime.trust import CacheTrustWarning

OTHER_UID = 54321
as_root = pytest.mark.skipif(os.getuid() != 0, reason="planting another uid's files needs root (os.chown)")


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    d = tmp_path / "cache"
    monkeypatch.setenv("TILEDSL_CACHE_DIR", str(d))
    monkeypatch.delenv("TILEDSL_CACHE", raising=False)
    monkeypatch.setattr(trust, "_warned", set())  # each test sees its own first warning
    return d


def mode(p: Path) -> int:
    return stat.S_IMODE(os.lstat(p).st_mode)


def blob_build(calls):
    def build(tmp: Path) -> dict:
        calls.append(tmp)
        (tmp / "blob.bin").write_bytes(b"code")
        return {}
    return build


def only_warning(record, *fragments):
    msgs = [str(w.message) for w in record if issubclass(w.category, CacheTrustWarning)]
    assert len(msgs) == 1, msgs
    for f in fragments:
        assert f in msgs[0], msgs[0]
    return msgs[0]


def test_created_private_whatever_the_umask(cache_dir):
    old = os.umask(0o002)  # a user-private-group umask: group-writable by default
    try:
        entry = cache.lookup_or_build("test", {"n": 1}, blob_build([]))
        cache.write_json_atomic(cache.root() / "probes" / "p.json", {})
    finally:
        os.umask(old)
    for d in (cache_dir, cache_dir / "kernels", entry.path, entry.path.parent, cache_dir / "locks",
              cache_dir / "probes"):
        assert mode(d) == 0o700, d
    for f in (entry.file("blob.bin"), entry.path / "manifest.json", cache_dir / "probes" / "p.json"):
        assert mode(f) & 0o077 == 0, f


def test_world_writable_root_is_not_used(cache_dir):
    cache_dir.mkdir()
    os.chmod(cache_dir, 0o777)
    calls = []
    with pytest.warns(CacheTrustWarning) as record:
        entry = cache.lookup_or_build("test", {"n": 2}, blob_build(calls))
        assert cache.lookup_or_build("test", {"n": 2}, blob_build(calls)).path == entry.path  # warned once
    only_warning(record, str(cache_dir), "writable by group and others", f"chmod go-w {cache_dir}")
    assert calls and not entry.path.is_relative_to(cache_dir)
    assert list(cache_dir.iterdir()) == []  # nothing written where others can change it
    os.chmod(cache_dir, 0o700)  # fixed as the warning says: used again
    assert cache.root() == cache_dir


def test_kernel_with_a_shared_tmp_cache_dir_builds_privately(cache_dir):
    """TILEDSL_CACHE_DIR=/tmp/x style: a folder anyone may write is never where a library that
    this process loads comes from."""
    cache_dir.mkdir()
    os.chmod(cache_dir, 0o1777)

    @T.prim_func
    def inc(A: T.Tensor((16,), "float32"), B: T.Tensor((16,), "float32")):
        with T.Kernel(1) as bx:
            for i in T.Parallel(16):
                B[i] = A[i] + 1.0

    with pytest.warns(CacheTrustWarning, match="writable by"):
        k = tiledsl.compile(inc, out_idx=[-1], name="trust_inc")
    a = np.arange(16, dtype=np.float32)
    np.testing.assert_array_equal(k(a), a + 1)
    assert not any(p.name == "kernels" for p in cache_dir.iterdir())
    if k.library:
        assert not Path(k.library).is_relative_to(cache_dir)


@as_root
def test_root_owned_by_another_user_is_not_used(cache_dir):
    cache_dir.mkdir(mode=0o700)
    os.chown(cache_dir, OTHER_UID, OTHER_UID)
    with pytest.warns(CacheTrustWarning) as record:
        assert cache.root() != cache_dir
    only_warning(record, f"owned by uid {OTHER_UID}", "TILEDSL_CACHE_DIR")


@as_root
def test_entry_planted_by_another_uid_is_never_loaded(cache_dir):
    calls = []
    entry = cache.lookup_or_build("test", {"n": 3}, blob_build(calls))
    for p in (entry.path, *entry.path.iterdir()):
        os.chown(p, OTHER_UID, OTHER_UID)
    with pytest.warns(CacheTrustWarning) as record:
        assert cache.lookup("test", {"n": 3}) is None
        again = cache.lookup_or_build("test", {"n": 3}, blob_build(calls))
    only_warning(record, str(entry.path), f"owned by uid {OTHER_UID}", f"rm -rf {entry.path}")
    assert len(calls) == 2 and again.built and again.path != entry.path
    assert os.stat(entry.path).st_uid == OTHER_UID  # left alone: not ours to delete


@as_root
def test_file_planted_by_another_uid_in_an_entry_is_never_loaded(cache_dir):
    entry = cache.lookup_or_build("test", {"n": 4}, blob_build([]))
    os.chown(entry.file("blob.bin"), OTHER_UID, OTHER_UID)
    with pytest.warns(CacheTrustWarning, match=f"blob.bin: it is owned by uid {OTHER_UID}"):
        assert cache.lookup("test", {"n": 4}) is None


def test_group_writable_entry_is_never_loaded(cache_dir):
    entry = cache.lookup_or_build("test", {"n": 5}, blob_build([]))
    os.chmod(entry.file("blob.bin"), 0o664)
    with pytest.warns(CacheTrustWarning) as record:
        assert cache.lookup("test", {"n": 5}) is None
    only_warning(record, "writable by group", f"chmod -R go-w {entry.path}")


@pytest.mark.parametrize("what", ["entry", "file"])
def test_symlinked_entry_is_never_loaded(cache_dir, tmp_path, what):
    calls = []
    entry = cache.lookup_or_build("test", {"n": 6, "w": what}, blob_build(calls))
    elsewhere = tmp_path / "elsewhere"
    if what == "entry":  # the whole entry moved out of the cache and linked back
        os.rename(entry.path, elsewhere)
        os.symlink(elsewhere, entry.path)
    else:
        elsewhere.write_bytes(entry.file("blob.bin").read_bytes())
        entry.file("blob.bin").unlink()
        os.symlink(elsewhere, entry.file("blob.bin"))
    with pytest.warns(CacheTrustWarning, match="symbolic link"):
        again = cache.lookup_or_build("test", {"n": 6, "w": what}, blob_build(calls))
    assert len(calls) == 2 and again.path != entry.path


def test_untrusted_tuning_result_is_measured_again(cache_dir):
    key = "ab" * 32
    store.save(key, Record(0, {"block": 64}, OK, 1.0, 0.9, 1.1, ""), None)
    path = cache_dir / "autotune" / key[:2] / f"{key}.json"
    assert mode(path) & 0o077 == 0 and mode(path.parent) == 0o700
    assert store.load(key, 0, {"block": 64}, None).status == OK
    os.chmod(path, 0o666)  # anyone could have written "this config is the fastest"
    with pytest.warns(CacheTrustWarning, match="tuning result"):
        assert store.load(key, 0, {"block": 64}, None) is None
    store.save(key, Record(0, {"block": 64}, OK, 1.0, 0.9, 1.1, ""), None)  # replaced privately
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheTrustWarning)
        assert store.load(key, 0, {"block": 64}, None).status == OK
