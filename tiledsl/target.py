"""Targets: what code is generated for, and the host facts that change the binary."""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import Optional

__all__ = ["Target", "host_cpu", "host_llvm_cpu", "CPU_BACKENDS", "CUDA_COMPILERS"]

CPU_BACKENDS = ("cxx", "llvm")  # how CPU code is compiled: C++ with g++, or LLVM IR with llvmlite
CUDA_COMPILERS = ("nvrtc", "nvcc")  # how device code is compiled: in process, or by the toolkit


@dataclass(frozen=True)
class Target:
    """`kind` is "cpu", "cuda" or "interp"; `arch` the CPU name or sm arch;
    `features` the sorted instruction-set features code may use (part of every cache key)."""

    kind: str
    arch: str = ""
    features: tuple = ()
    isa: str = ""  # CPU: "avx512", "avx2" or "scalar": which micro-kernels and flags to use
    backend: str = ""  # CPU: "cxx" (C++ and g++) or "llvm" (llvmlite); "" until jit.py decides;
    # CUDA: "nvrtc" or "nvcc" (-compiler=), "" until runtime/cuda.py decides

    def has(self, feature: str) -> bool:
        return feature in self.features

    @staticmethod
    def parse(spec: "str | Target | None") -> "Target":
        """`"cpu"` (the host), `"cpu -isa=avx2"`, `"interp"`, `"interp -strict"`, `"cuda"`, `"cuda -arch=sm_80"`,
        `"cuda -emulate"` (the CUDA code run on the CPU, for tests), `"cuda -compiler=nvcc"` (or nvrtc)."""
        if isinstance(spec, Target):
            return spec
        spec = (spec or "cpu").strip()
        kind, _, rest = spec.partition(" ")
        if kind in ("cpu", "auto", "llvm", "c"):
            host = host_cpu()
            for opt in rest.split():
                key, _, value = opt.lstrip("-").partition("=")
                if key == "backend" and value in CPU_BACKENDS:
                    host = Target("cpu", host.arch, host.features, host.isa, value)
                    continue
                if key != "isa" or value not in ("avx512", "avx2", "scalar"):
                    raise ValueError(f"unknown CPU target option {opt!r}; use -isa=avx512, "
                                     f"-isa=avx2, -isa=scalar, -backend=cxx or -backend=llvm")
                if value == "avx512" and not host.has("avx512f"):
                    raise ValueError("-isa=avx512: this CPU has no AVX-512")
                host = Target("cpu", host.arch, host.features, value, host.backend)
            return host
        if kind == "interp":
            opts = tuple(sorted({o.lstrip("-") for o in rest.split()}))
            if not set(opts) <= {"strict", "lenient"}:
                raise ValueError(f"unknown interp target option in {spec!r}; use -strict (integer "
                                 f"division by zero is an error too) or -lenient (element accesses "
                                 f"outside a tensor read 0 / are dropped, as on compiled targets)")
            return Target("interp", features=opts)
        if kind == "cuda":
            arch, feats, compiler = "", (), ""
            for opt in rest.split():
                key, _, value = opt.lstrip("-").partition("=")
                if key == "emulate" and not value:
                    feats = ("emulate",)  # run the CUDA code on the CPU (tests; see runtime/cuda.py)
                elif key == "arch" and value.startswith("sm_"):
                    arch = value
                elif key == "compiler" and value in CUDA_COMPILERS:
                    compiler = value
                else:
                    raise ValueError(f"unknown CUDA target option {opt!r}; use -arch=sm_90a, -emulate, "
                                     f"-compiler=nvrtc or -compiler=nvcc")
            return Target("cuda", arch or cuda_arch(), feats, backend=compiler)
        raise ValueError(f"unknown target {spec!r}; expected 'cpu', 'cuda' or 'interp'")


def cuda_arch() -> str:
    """`$TILEDSL_CUDA_ARCH`, else the first GPU's (from nvidia-smi), else sm_90a."""
    env = os.environ.get("TILEDSL_CUDA_ARCH")
    return env if env else _gpu_arch() or "sm_90a"


@functools.lru_cache(maxsize=None)
def _gpu_arch() -> str:
    import shutil
    import subprocess
    smi = shutil.which("nvidia-smi")
    if not smi:
        return ""
    try:
        out = subprocess.run([smi, "--query-gpu=compute_cap", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20).stdout.split()
    except (OSError, subprocess.SubprocessError):
        return ""
    if not out or "." not in out[0]:
        return ""
    major, minor = out[0].split(".")[:2]
    return f"sm_{major}{minor}" + ("a" if major == "9" and minor == "0" else "")


@functools.lru_cache(maxsize=None)
def host_cpu() -> Target:
    """The machine we run on, as llvmlite reports it (see `host_llvm_cpu`)."""
    name, feats = _host_features()
    t = Target("cpu", name, feats)
    isa = "avx512" if t.has("avx512f") else "avx2" if t.has("avx2") and t.has("fma") else "scalar"
    return Target("cpu", name, feats, isa)


def _host_features() -> tuple:
    try:
        _, name, features = host_llvm_cpu()
    except Exception:  # llvmlite without a host target: fall back to no SIMD claims
        import platform
        return platform.machine(), ()
    return name, tuple(sorted(f[1:] for f in features.split(",") if f.startswith("+")))


# /proc/cpuinfo lines that say which CPU this is and what it can do (x86, then AArch64); the
# rest (clock, bogomips, microcode, core ids) changes without the CPU changing.
_CPUINFO_KEYS = ("vendor_id", "cpu family", "model", "model name", "stepping", "flags",
                 "CPU implementer", "CPU architecture", "CPU variant", "CPU part", "CPU revision",
                 "Features")


@functools.lru_cache(maxsize=None)
def host_llvm_cpu() -> tuple:
    """(process triple, LLVM CPU name, LLVM feature string "+avx2,-avx512f,...") of this machine.

    Asked of llvmlite once per machine and remembered in `<cache>/probes/`, indexed by the
    llvmlite version and the CPU's description in /proc/cpuinfo (whose flags are the ones the
    kernel lets programs use): importing llvmlite.binding to ask costs ~16 ms, a process that
    loads C++ kernels from disk needs nothing else of it, and the LLVM backend's first compile
    imports it on a second thread while this one lowers the kernel."""
    import json

    import llvmlite

    from .runtime import cache
    try:
        with open("/proc/cpuinfo") as f:
            lines = sorted({ln.strip() for ln in f if ln.split(":", 1)[0].strip() in _CPUINFO_KEYS})
    except OSError:
        lines = []  # not Linux: no stable description to index a memo by
    if not lines:
        return _ask_llvm()
    import hashlib
    import platform
    desc = "\n".join([platform.machine(), llvmlite.__version__, *lines])
    memo = cache.root() / "probes" / f"cpu-{hashlib.sha256(desc.encode()).hexdigest()[:24]}.json"
    try:
        got = cache.read_json_private(memo, "CPU probe")
        found = (got["triple"], got["cpu"], got["features"])
        if all(isinstance(x, str) for x in found):
            return found
    except (OSError, ValueError, KeyError, TypeError):
        pass
    found = _ask_llvm()
    try:
        cache.write_json_atomic(memo, dict(zip(("triple", "cpu", "features"), found),
                                           llvmlite=llvmlite.__version__))
    except OSError:
        pass  # a read-only cache only costs the question next time
    return found


def _ask_llvm() -> tuple:
    import llvmlite.binding as llvm
    return llvm.get_process_triple(), llvm.get_host_cpu_name(), llvm.get_host_cpu_features().flatten()


def cpu_isa_flags(target: Target) -> tuple:
    """-march for the target: the host's own ISA builds with -march=native, a forced one with
    the matching x86-64 level (so the compiler cannot use what the ISA does not have)."""
    if target.isa == host_cpu().isa:
        return ("-march=native",)
    return {"avx512": ("-march=x86-64-v4",), "avx2": ("-march=x86-64-v3",),
            "scalar": ("-march=x86-64",)}[target.isa]
