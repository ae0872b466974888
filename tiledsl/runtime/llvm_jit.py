"""The LLVM backend's runtime: compile a kernel's LLVM IR in process and call it through TVM-FFI.

    text --parse--> module --O3 (new pass manager)--> object code --ORC LLJIT link--> address
         --tvm_ffi.Function.__from_extern_c__--> the same callable the C++ backend's library gives

No C++ compiler is involved: a kernel compiles in tens of milliseconds. The object code is
the same one `export_library` hands to the system linker, so a kernel exported as a `.so`
runs the code the JIT ran. Object code is kept in the disk cache (`runtime/cache.py`, kind
"llvm") under a key computed before lowering, like the C++ libraries (`key_fields`): a second
process skips the passes, the code generator and LLVM's optimiser, and only links the object.

The runtime module (argument checks and the thread pool, `codegen/llvm/runtime.py`) is
compiled once per process into its own JIT library that every kernel links against, so all
kernels share one pool. The TVM-FFI global function `tiledsl.parallel_launch` is registered
here too: the alternative launcher (`parallel="ffi"`), a pool of Python threads calling the
task through ctypes, which releases the GIL while native code runs.
"""
from __future__ import annotations

import ctypes
import functools
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple

import tvm_ffi
import tvm_ffi.libinfo as libinfo

from .. import ir
from ..errors import CompileError
from ..target import Target, host_cpu, host_llvm_cpu
from . import cache, trust
from .cpp import normal_out_idx, tiledsl_fingerprint, tvm_ffi_version
from .kernel import JITKernel
from .report import CompileReport

__all__ = ["compile_llvm", "Machine", "machine_for", "compile_ir", "export_library", "link_shared",
           "llvm_version", "key_fields", "KIND"]

KIND = "llvm"

_lock = threading.RLock()  # llvmlite objects are not thread-safe; compiles are short


@dataclass(frozen=True)
class Machine:
    """What the object code is generated for: the LLVM CPU name and feature string."""
    triple: str
    cpu: str
    features: str

    @property
    def arch(self) -> str:
        return self.triple.split("-", 1)[0]


# A forced ISA compiles for the matching x86-64 level, as the C++ backend's -march does.
_ISA_CPU = {"avx512": "x86-64-v4", "avx2": "x86-64-v3", "scalar": "x86-64"}


@functools.lru_cache(maxsize=None)
def machine_for(target: Target) -> Machine:
    """The host's CPU and features for its own ISA; the x86-64 level for a forced one."""
    triple, cpu, features = host_llvm_cpu()
    if target.isa in ("", host_cpu().isa) or not triple.startswith("x86_64"):
        return Machine(triple, cpu, features)
    return Machine(triple, _ISA_CPU[target.isa], "")


def _llvm():
    with _lock:  # the JIT's set-up thread may be doing this right now
        return _init_llvm()


@functools.lru_cache(maxsize=None)
def _init_llvm():
    import llvmlite.binding as llvm
    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    # The generated code calls TVMFFIErrorSetRaisedFromCStr & co.: make libtvm_ffi's symbols
    # visible to the JIT's process-symbol lookup (tvm_ffi loaded it with RTLD_LOCAL).
    llvm.load_library_permanently(libinfo.find_libtvm_ffi())
    return llvm


def llvm_version() -> str:
    return ".".join(map(str, _llvm().llvm_version_info))


@functools.lru_cache(maxsize=None)
def _target_machine(m: Machine, opt: int = 3):
    llvm = _llvm()
    target = llvm.Target.from_triple(m.triple)
    return target.create_target_machine(cpu=m.cpu, features=m.features, opt=opt, reloc="pic",
                                        codemodel="default")


def _optimize(text: str, m: Machine, runtime: Optional[str] = None, opt: int = 3):
    """Parse, (link the runtime into,) verify and optimise at `-O<opt>` for `m`."""
    llvm = _llvm()
    tm = _target_machine(m, opt)
    try:
        mod = llvm.parse_assembly(text)
        if runtime is not None:
            mod.link_in(llvm.parse_assembly(runtime))
        mod.triple = m.triple
        mod.data_layout = str(tm.target_data)
        mod.verify()
    except RuntimeError as e:
        raise CompileError(f"LLVM rejected the IR generated for a kernel (a bug in tiledsl): {e}") from None
    if opt:
        pto = llvm.create_pipeline_tuning_options(speed_level=opt)
        pto.loop_vectorization = pto.slp_vectorization = opt >= 2
        # Heuristic unrolling off (T.unroll's metadata still unrolls): on tile loops it bloats
        # the code up to 10x (a row softmax: 0.4 s of LLVM instead of 30 ms) for no speed; the
        # vectoriser's interleaving already keeps several vectors in flight.
        pto.loop_unrolling = False
        pb = llvm.create_pass_builder(tm, pto)
        pb.getModulePassManager().run(mod, pb)
    return mod


def emit_object(text: str, m: Machine, runtime: Optional[str] = None, opt: int = 3) -> bytes:
    """Object code for the module `text` (with `runtime` linked in, for a standalone library)."""
    with _lock:
        mod = _optimize(text, m, runtime, opt)
        return _target_machine(m, opt).emit_object(mod)


class _Jit:
    """One ORC LLJIT per process: the runtime library, then one library per kernel."""

    def __init__(self):
        llvm = _llvm()
        self.host = machine_for(host_cpu())
        self.lljit = llvm.create_lljit_compiler()
        # Argument checks and thread management: not worth the -O3 compile time (~100 ms).
        obj, symbols = _runtime_object(self.host)
        b = llvm.JITLibraryBuilder().add_object_img(obj).add_current_process()
        for s in symbols:
            b.export_symbol(s)
        self.runtime = b.link(self.lljit, "tiledsl_runtime")
        self.kernels: Dict[str, Tuple[int, Any]] = {}
        _register_ffi_launcher()

    def load(self, obj: bytes, entry: str, key: str) -> Tuple[int, Any]:
        """(address of `entry`, the resource tracker that keeps it alive); the caller has
        checked that `key` is not loaded yet."""
        llvm = _llvm()
        b = (llvm.JITLibraryBuilder().add_object_img(obj).add_jit_library("tiledsl_runtime")
             .add_current_process().export_symbol(entry))
        tracker = b.link(self.lljit, f"tiledsl_{key}")
        self.kernels[key] = (tracker[entry], tracker)
        return self.kernels[key]


def _object_key(text: str, m: Machine) -> str:
    """What names the object code of the module `text` compiled for `m`."""
    return hashlib.sha256("\n".join([text, m.triple, m.cpu, m.features, llvm_version()]).encode()).hexdigest()[:24]


def _runtime_object(m: Machine) -> Tuple[bytes, list]:
    """The runtime module's object code (-O0) and the symbols it exports, compiled once per
    machine, llvmlite version and tiledsl source, and remembered in `<cache>/probes/` next to
    the host CPU probe: it is tiledsl's own code, the same for every kernel; its ~12 ms would
    otherwise hold LLVM's lock during every process's first kernel compile, and a process that
    links kernels from the disk cache does not import the code generator for it (~30 ms)."""
    import llvmlite
    key = hashlib.sha256("\n".join([tiledsl_fingerprint(), m.triple, m.cpu, m.features,
                                    llvmlite.__version__]).encode()).hexdigest()[:24]
    path = cache.root() / "probes" / f"llvm-runtime-{key}.o"
    try:  # symbols (a JSON line), the object, then their sha256: a damaged or untrusted file is
        data = trust.read_private(path, "LLVM runtime object")  # compiled again
        if data is not None and len(data) > 32 and hashlib.sha256(data[:-32]).digest() == data[-32:]:
            head, obj = data[:-32].split(b"\n", 1)
            return obj, json.loads(head)
    except (OSError, ValueError):
        pass
    from ..codegen.llvm import RUNTIME_SYMBOLS, render_runtime
    obj = emit_object(render_runtime(m.arch), m, opt=0)
    body = json.dumps(list(RUNTIME_SYMBOLS)).encode() + b"\n" + obj
    try:
        trust.write_private(path, body + hashlib.sha256(body).digest())
    except OSError:
        pass  # a read-only cache only costs the compile next time
    return obj, list(RUNTIME_SYMBOLS)


_JIT: Optional[_Jit] = None
_SETUP: Optional[threading.Thread] = None  # the thread making _JIT, once started
_setup_lock = threading.Lock()


def _jit() -> _Jit:
    """The process's JIT, made on first use (once, even when threads compile at once)."""
    global _JIT
    with _lock:
        if _JIT is None:
            _JIT = _Jit()
        return _JIT


def _start_setup() -> Optional[threading.Thread]:
    """Make the process's JIT on a second thread while this one lowers the first kernel.

    The set-up (importing llvmlite, ~16 ms; compiling the runtime module, ~12 ms) is a quarter
    of a first compile, and LLVM runs without the GIL (llvmlite serialises its own calls, so
    this overlaps the lowering's Python, not another compile). The caller has imported the code
    generator already, so the two threads never import the same tiledsl modules at once (that
    can hand one of them a partly initialised module). Returns the thread, to be joined."""
    global _SETUP
    with _setup_lock:
        if _JIT is not None or _SETUP is not None:
            return None
        _SETUP = threading.Thread(target=_setup_quietly, name="tiledsl-llvm-setup", daemon=True)
    _SETUP.start()
    return _SETUP


def _setup_quietly() -> None:
    try:
        _jit()
    except Exception:  # the compile that waits for the JIT makes it again and reports the error
        pass


def compile_ir(text: str, symbol: str, m: Machine) -> Tuple[Any, str]:
    """The kernel in `text` as a `tvm_ffi.Function`, and the key naming its compiled code
    (compiled in this process, not cached on disk)."""
    key = _object_key(text, m)
    return _load_object(lambda: emit_object(text, m), symbol, key), key


def _load_object(obj: Any, symbol: str, key: str) -> Any:
    """The function `__tvm_ffi_<symbol>` of the object code `obj()`, linked once per key."""
    jit = _jit()
    with _lock:
        if key in jit.kernels:
            addr, tracker = jit.kernels[key]
        else:
            addr, tracker = jit.load(obj(), f"__tvm_ffi_{symbol}", key)
    return tvm_ffi.Function.__from_extern_c__(addr, keep_alive_object=tracker)


def key_fields(func: ir.PrimFunc, target: Target, out_idx: Sequence[int] = ()) -> dict:
    """Everything that determines the object code built for `func` (named as its symbol): the
    C++ backend's fields with the LLVM machine, llvmlite's version (its LLVM) and the launcher
    in place of the compiler and flags."""
    import llvmlite  # the package alone: its binding (LLVM itself) loads on the set-up thread
    m = machine_for(target)
    return {
        "out_idx": normal_out_idx(func, out_idx),
        "ir": func.script(),
        "target": {"kind": target.kind, "arch": target.arch, "features": list(target.features),
                   "isa": target.isa},
        "machine": [m.triple, m.cpu, m.features],
        "llvmlite": llvmlite.__version__,
        "options": _options(target, m),
        "tiledsl": tiledsl_fingerprint(),
        "tvm_ffi": tvm_ffi_version(),
    }


def compile_llvm(func: ir.PrimFunc, target: Target, out_idx: Sequence[int] = (),
                 report: Optional[CompileReport] = None) -> JITKernel:
    """Lower, render as LLVM IR, compile and JIT-link `func`, whose name is the exported symbol;
    the object code comes from the disk cache when it is there.

    The kernel's `library` is None (it lives in this process), `get_kernel_source()` is its
    LLVM IR and `export_library(path)` writes a `.so` (see `export_library`)."""
    report = report or CompileReport(func.name)
    symbol = func.name
    m = machine_for(target)
    with report.stage("key"):
        fields = key_fields(func, target, out_idx)
        key = cache.make_key(KIND, fields)
    with report.stage("cache"):
        entry = cache.lookup(KIND, fields)
    setup = None
    if entry is None:
        # A miss: the JIT's set-up overlaps the lowering. (A hit has nothing to overlap and
        # makes the JIT when it links: importing the code generator would cost it more.) The
        # code generator is imported first, so the two threads never import it at once.
        from ..codegen import llvm  # noqa: F401
        setup = _start_setup()
    try:
        def build(tmp: Path) -> dict:
            from ..codegen.llvm import render_llvm
            with report.stage("passes"):
                from .. import transform
                lowered = transform.run(func, target)
            with report.stage("codegen"):
                source = render_llvm(lowered, func, render_options(symbol, target, m))
            with report.stage("llvm"):
                obj = emit_object(source, m)
            (tmp / f"{symbol}.ll").write_text(source)
            (tmp / cache.library_name(symbol, key, ".o")).write_bytes(obj)
            return {"object": cache.library_name(symbol, key, ".o"), "source": f"{symbol}.ll",
                    "symbol": symbol, "written": sorted(ir.stored_buffers(lowered))}

        if entry is None:
            entry = cache.lookup_or_build_reported(KIND, fields, build, report, ("passes", "codegen", "llvm"))
        with report.stage("load"):
            fn = _load_object(lambda: entry.file(entry.meta["object"]).read_bytes(), symbol, key)
    finally:
        if setup is not None:
            setup.join()  # never leave it running: the autotuner forks after a failed compile
    report.log("compiled" if entry.built else "loaded", target, key)
    source = entry.file(entry.meta["source"]).read_text()  # now: a later clear() must not take it
    written = entry.meta["written"]

    def export(path: str) -> str:
        from .metadata import describe, llvm_metadata_function
        meta = describe(func, out_idx, target, key, written)
        # The metadata goes into exported libraries only: in process the JITKernel is the metadata.
        return export_library(source + llvm_metadata_function(symbol, meta, declared=source), m, path)

    return JITKernel(func, lambda: _lower(func, target), source, None, fn, out_idx, target,
                     written=written, cache_key=key, exporter=export)


def _lower(func: ir.PrimFunc, target: Target) -> ir.PrimFunc:
    from .. import transform
    return transform.run(func, target)


def render_options(symbol: str, target: Target, m: Machine):
    """How the code generator is set for this machine; `$TILEDSL_LLVM_PARALLEL` picks the
    parallel launcher ("pool", the default, or "ffi")."""
    from ..codegen.llvm import RenderOptions
    return RenderOptions(symbol, **_options(target, m))


def _options(target: Target, m: Machine) -> dict:
    """`RenderOptions` but the symbol, as data (a cache key field; no code generator import)."""
    parallel = os.environ.get("TILEDSL_LLVM_PARALLEL", "pool")
    if parallel not in ("pool", "ffi"):
        raise ValueError(f"TILEDSL_LLVM_PARALLEL={parallel!r}: expected 'pool' or 'ffi'")
    f16_hw = m.arch == "aarch64" or "+f16c" in m.features.split(",") or m.cpu in ("x86-64-v3", "x86-64-v4")
    return {"f16_hw": f16_hw, "parallel": parallel}


def export_library(source: str, machine: Machine, path: "str | os.PathLike") -> str:
    """A `.so` exporting `__tvm_ffi_<name>` from a kernel's LLVM IR, with its own copy of the
    runtime (hidden symbols, its own thread pool), linked by the system linker. A path ending
    in `.o` gets the object file alone, for a build that links it itself."""
    from ..codegen.llvm import render_runtime
    obj = emit_object(source, machine, render_runtime(machine.arch, embedded=True))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".o":
        path.write_bytes(obj)
        return str(path)
    with tempfile.TemporaryDirectory(prefix="tiledsl-export-") as tmp:
        o = Path(tmp) / "kernel.o"
        o.write_bytes(obj)
        out = Path(tmp) / path.name
        link_shared(str(o), str(out))
        os.replace(out, path) if path.parent == out.parent else shutil.move(str(out), str(path))
    return str(path)


def link_shared(obj: str, out: str) -> None:
    """Link one object into a shared library against libtvm_ffi: with a C compiler driver when
    there is one (it knows where libc is), else with `ld` directly."""
    libdir = os.path.dirname(libinfo.find_libtvm_ffi())
    tvm = [f"-L{libdir}", "-ltvm_ffi"]
    for driver in ([os.environ["CC"]] if os.environ.get("CC") else []) + ["cc", "gcc", "clang"]:
        exe = shutil.which(driver)
        if exe:
            _run([exe, "-shared", "-o", out, obj, *tvm, f"-Wl,-rpath,{libdir}", "-lm", "-lpthread"])
            return
    for linker in ("ld", "ld.lld", "ld.gold"):
        exe = shutil.which(linker)
        if exe:
            base = [exe, "-shared", "-o", out, obj, *tvm, "-rpath", libdir]
            try:  # libm / libc by soname, where the linker finds them; else resolved at load time
                _run(base + ["-l:libm.so.6", "-l:libc.so.6"])
            except CompileError:
                _run(base)
            return
    raise CompileError("export_library needs a linker (cc, gcc, clang or ld) on PATH to make a "
                       ".so; install binutils, or export to a path ending in '.o' for the object file")


def _run(cmd) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise CompileError(f"linking failed: {' '.join(cmd)}\n{proc.stderr[-2000:]}")


# ---- the TVM-FFI parallel launcher (parallel="ffi") ----

_TASK = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64)


@functools.lru_cache(maxsize=None)
def _python_pool() -> Tuple[Any, int]:
    from concurrent.futures import ThreadPoolExecutor  # only this launcher needs it
    n = int(os.environ.get("TILEDSL_NUM_THREADS") or os.environ.get("OMP_NUM_THREADS", "0").split(",")[0] or 0)
    n = n if n > 0 else len(os.sched_getaffinity(0))
    return ThreadPoolExecutor(max_workers=max(1, n - 1), thread_name_prefix="tiledsl"), n


def _parallel_launch(task: Any, ctx: Any, total: int) -> None:
    """tiledsl.parallel_launch(task, ctx, total): run task(ctx, begin, end) over static shares
    of [0, total), the calling thread taking the first."""
    pool, n = _python_pool()
    fn = _TASK(_address(task))
    c = _address(ctx)
    shares = [(w * total // n, (w + 1) * total // n) for w in range(n)]
    futures = [pool.submit(fn, c, b, e) for b, e in shares[1:] if b < e]
    fn(c, *shares[0])
    for f in futures:
        f.result()


def _address(p: Any) -> int:
    return p.value if isinstance(p, ctypes.c_void_p) else int(p or 0)


@functools.lru_cache(maxsize=None)
def _register_ffi_launcher() -> None:
    tvm_ffi.register_global_func("tiledsl.parallel_launch", _parallel_launch, override=True)
