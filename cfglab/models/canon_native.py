"""The Canon convolution's fused CPU loop (canon_kernel.cpp), built once per machine and loaded.

The target is a Canon cost of at most 15% of a training step; the eager torch path makes
~17 element-wise passes over memory and missed it by far at the demo size (benchmarks/RESULTS.md,
"Canon layers"). The loop in canon_kernel.cpp reads each row from cache K times and writes it
once, forward and backward, in fp32 arithmetic over fp32 or bf16 storage.

It is plain C++ called through ctypes, not a torch extension: it needs only a C++ compiler
($CXX, g++ or clang++, as torch.compile looks for one), builds in about a second, and depends on
neither torch's headers nor its ABI. The library is cached under $XDG_CACHE_HOME/cfglab
(~/.cache/cfglab; a per-user temporary folder where that is not writable) by a hash of the
source, the compiler and the CPU's flags (it is built with -march=native), written atomically
so that Ray trials starting together share one build.
Without a compiler the torch path runs instead, with one logged warning (CFGLAB_CANON_NATIVE=0
chooses it); the two agree to rounding (tests/test_canon.py). Speed only: cfglab's engineering,
not part of the paper's method.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import platform
import subprocess
import tempfile
from pathlib import Path

import torch
from torch import Tensor

from cfglab.compiler import cxx_compiler

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("canon_kernel.cpp")
DTYPES = {torch.float32: 0, torch.bfloat16: 1}
ABI = 1


def enabled() -> bool:
    return os.environ.get("CFGLAB_CANON_NATIVE", "1") != "0"


def supports(x: Tensor) -> bool:
    """Whether the fused loop can take x: a CPU tensor in fp32 or bf16, the switch on, built."""
    return x.device.type == "cpu" and x.dtype in DTYPES and enabled() and library() is not None


@functools.cache
def library() -> ctypes.CDLL | None:
    """The built library, or None (with one warning) where it cannot be built or loaded."""
    try:
        lib = ctypes.CDLL(str(_build()))
    except (OSError, subprocess.SubprocessError, RuntimeError) as err:
        log.warning("Canon layers use the slower torch path: %s", err)
        return None
    if lib.canon_abi_version() != ABI:
        log.warning("Canon layers use the slower torch path: stale library %s", lib._name)
        return None
    i64, ptr, i32 = ctypes.c_int64, ctypes.c_void_p, ctypes.c_int
    lib.canon_forward.argtypes = [i32, ptr, ptr, ptr, ptr, i64, i64, i64, i64, i32]
    lib.canon_backward.argtypes = [i32, ptr, ptr, ptr, ptr, ptr, ptr, i64, i64, i64, i64, i32]
    return lib


def forward(x: Tensor, taps: Tensor, flags: Tensor | None) -> Tensor:
    """x (B, T, W) fp32/bf16, taps (W, K): Σ_j taps[:, j] ⊙ x[t - j], restarted at each BOS of
    flags (B, T) bool (None: no restarts); out in x's dtype."""
    x, w, fl = x.contiguous(), _taps(taps), _flags(flags)
    out = torch.empty_like(x)
    B, T, W = x.shape
    code = _lib().canon_forward(
        DTYPES[x.dtype], x.data_ptr(), w.data_ptr(), _ptr(fl), out.data_ptr(),
        B, T, W, w.size(0), _threads(x),
    )  # fmt: skip
    _check(code)
    return out


def backward(g: Tensor, x: Tensor, taps: Tensor, flags: Tensor | None) -> tuple[Tensor, Tensor]:
    """(dx in x's dtype, d taps (W, K) fp32) of `forward` for the output gradient g."""
    g, x, w, fl = g.to(x.dtype).contiguous(), x.contiguous(), _taps(taps), _flags(flags)
    dx = torch.empty_like(x)
    B, T, W = x.shape
    dw = torch.empty(w.shape, dtype=torch.float32)
    code = _lib().canon_backward(
        DTYPES[x.dtype], g.data_ptr(), x.data_ptr(), w.data_ptr(), _ptr(fl), dx.data_ptr(),
        dw.data_ptr(), B, T, W, w.size(0), _threads(x),
    )  # fmt: skip
    _check(code)
    return dx, dw.T


def _lib() -> ctypes.CDLL:
    lib = library()
    if lib is None:
        raise RuntimeError("the fused Canon loop is not built (canon_native.supports is False)")
    return lib


def _taps(taps: Tensor) -> Tensor:
    return taps.detach().T.to(torch.float32).contiguous()  # (K, W): tap j's row is contiguous


def _flags(flags: Tensor | None) -> Tensor | None:
    """(B, T) BOS flags as the bytes the loop reads: a bool tensor is viewed, not copied."""
    if flags is None:
        return None
    flags = flags.contiguous()
    return flags.view(torch.uint8) if flags.dtype == torch.bool else flags.to(torch.uint8)


def _ptr(t: Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


def _threads(x: Tensor) -> int:
    """torch's intra-op threads, but one per 64k elements at least (a thread costs ~30 µs)."""
    return max(1, min(torch.get_num_threads(), x.numel() >> 16))


def _check(code: int) -> None:
    if code != 0:
        raise RuntimeError(f"canon_kernel returned {code}")


def _build() -> Path:
    cxx = cxx_compiler()
    if cxx is None:
        raise RuntimeError("no C++ compiler found (install g++ or set CXX)")
    source = SOURCE.read_bytes()
    key = hashlib.sha256(source + cxx.encode() + _cpu_flags().encode()).hexdigest()[:16]
    target = _cache_dir() / f"canon_kernel-{key}.so"
    if target.exists():
        return target
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        built = Path(tmp) / target.name
        cmd = [cxx, "-O3", "-march=native", "-std=c++17", "-shared", "-fPIC", "-pthread"]
        done = subprocess.run(
            [*cmd, str(SOURCE), "-o", str(built)], capture_output=True, text=True, timeout=120
        )
        if done.returncode != 0:
            raise RuntimeError(f"{cxx} failed: {done.stderr.strip()[-400:]}")
        os.replace(built, target)  # atomic: concurrent builders leave one whole file
    return target


def _cache_dir() -> Path:
    """$XDG_CACHE_HOME/cfglab (~/.cache/cfglab), or a per-user temporary folder where that
    cannot be written (a read-only home on a CI runner or a cluster node)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    folder = Path(base) / "cfglab"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if os.access(folder, os.W_OK):
            return folder
    except OSError:
        pass
    folder = Path(tempfile.gettempdir()) / f"cfglab-{os.getuid()}"
    folder.mkdir(exist_ok=True)
    return folder


def _cpu_flags() -> str:
    """The CPU's feature flags (Linux), else the platform: -march=native builds for them."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return platform.processor() + platform.machine()
