"""Which implementations exist here, and which one a call runs on (docs/kernels.md).

`torch` is the pure-PyTorch reference and always works. `cpu` and `cuda` are the compiled
extension (`kp3d_kernels._C`, built by setup.py; when the wheel was built without torch it is
compiled from the packaged sources on first use with ninja). `triton` needs the triton package
and a CUDA device, or TRITON_INTERPRET=1 for CPU tensors.
"""

import importlib.util
import os
import pathlib
import warnings

import torch

BACKENDS = ("auto", "torch", "cpu", "cuda", "triton")

# backend="auto" on CUDA tensors: the first available of these, fastest first by the committed GPU
# measurements. The rule (docs/kernels.md, "Choosing a backend"): order the GPU backends by the
# sum, over the four ops, of their forward + backward median at the reference shape (B = 64,
# K = 32, 128 x 128) in GPU_EVIDENCE; tests/test_backend_order.py recomputes the order from that
# file. On CPU tensors: cpu, then the torch reference.
GPU_ORDER = ("cuda", "triton")
CPU_ORDER = ("cpu",)
GPU_EVIDENCE = "benchmarks/results/h100-2026-11-24.json"

# Why the compiled extension is missing, if it is (shown in errors).
_native_error = None


def _source_dir():
    """The C++ sources: packaged beside the module, or the repository's csrc/ in a checkout."""
    here = pathlib.Path(__file__).resolve().parent
    for candidate in (here / "_csrc", here.parent / "csrc"):
        if (candidate / "ops.cpp").is_file():
            return candidate
    return None


def _jit_build():
    from torch.utils import cpp_extension

    src = _source_dir()
    if src is None:
        raise RuntimeError("the C++ sources are not packaged")
    sources = [str(src / "ops.cpp")] + sorted(str(p) for p in (src / "cpu").glob("*.cpp"))
    warnings.warn(
        "kp3d_kernels: the compiled extension is not installed (the package was built without "
        "torch, e.g. by `pip install .` with build isolation), so the CPU kernels are compiled "
        "with ninja on first use (about a minute the first time; later imports reuse them). "
        "Install with `pip install --no-build-isolation .` to build them ahead of time.",
        RuntimeWarning, stacklevel=4)
    cpp_extension.load(
        name="kp3d_kernels_jit", sources=sources, is_python_module=False,
        extra_include_paths=[str(src)], extra_cflags=["-O3", "-fopenmp", "-g0", "-fno-trapping-math", "-fno-math-errno"],
        extra_ldflags=["-fopenmp"], verbose=False)


def _load_native() -> bool:
    """Load the compiled ops; on failure remember why and warn loudly (never silently)."""
    global _native_error
    try:
        from . import _C  # noqa: F401  (registers torch.ops.kp3d_kernels.*)
        return True
    except ImportError as first:
        if os.environ.get("KP3D_NO_JIT") == "1":
            _native_error = f"the compiled extension is missing ({first}) and KP3D_NO_JIT=1"
        else:
            try:
                _jit_build()
                return True
            except Exception as second:  # noqa: BLE001 - any build failure ends the same way
                _native_error = (f"the compiled extension is missing ({first}) and compiling it "
                                 f"failed ({type(second).__name__}: {second})")
    warnings.warn(f"kp3d_kernels: {_native_error}. The `cpu` and `cuda` backends are unavailable "
                  "and backend='auto' falls back to the slow `torch` reference on CPU.",
                  RuntimeWarning, stacklevel=3)
    return False


def triton_interpreted() -> bool:
    return os.environ.get("TRITON_INTERPRET") == "1"


def _load_triton() -> bool:
    """Import the Triton kernels where they can run: with a GPU, or under the interpreter."""
    global _triton_error
    if importlib.util.find_spec("triton") is None:
        _triton_error = "the triton package is not installed"
        return False
    if not (torch.cuda.is_available() or triton_interpreted()):
        _triton_error = "there is no CUDA device (set TRITON_INTERPRET=1 before import to emulate)"
        return False
    try:
        from . import triton as _triton_backend  # noqa: F401  (defines the triton_* ops)
    except ImportError as error:
        _triton_error = f"importing the Triton kernels failed ({error})"
        return False
    from ._registry import OP_NAMES

    missing = [n for n in OP_NAMES if not hasattr(torch.ops.kp3d_kernels, "triton_" + n)]
    if missing:
        _triton_error = f"the Triton kernels lack {', '.join(missing)}"
        return False
    return True


# Decided once, at import: the dispatch below then only reads constants, which torch.compile
# traces without graph breaks.
_triton_error = None
NATIVE = _load_native()
NATIVE_CUDA = NATIVE and torch._C._dispatch_has_kernel_for_dispatch_key(
    "kp3d_kernels::edge_map_fwd", "CUDA")
TRITON = _load_triton()


def _why_unavailable(backend: str, device: torch.device):
    """None when `backend` can run on tensors on `device`, else the reason."""
    if backend == "torch":
        return None
    if backend == "cpu":
        if device.type != "cpu":
            return f"it runs on CPU tensors, and the inputs are on {device}"
        return None if NATIVE else _native_error
    if backend == "cuda":
        if device.type != "cuda":
            return f"it runs on CUDA tensors, and the inputs are on {device}"
        if not NATIVE_CUDA:
            return (_native_error if not NATIVE else
                    "the extension was built without CUDA kernels (no CUDA toolkit or a CPU-only "
                    "torch at build time; rebuild with FORCE_CUDA=1)")
        return None
    if backend == "triton":
        if device.type == "cpu" and not triton_interpreted():
            return "Triton runs on CUDA tensors (or on CPU tensors with TRITON_INTERPRET=1)"
        if device.type not in ("cpu", "cuda"):
            return f"Triton does not run on {device}"
        return None if TRITON else _triton_error
    raise AssertionError(backend)


def resolve(backend, device: torch.device) -> str:
    """The backend a call runs on: `auto` is GPU_ORDER then torch on CUDA, cpu > torch on CPU."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(map(repr, BACKENDS))}, got {backend!r}")
    if backend == "auto":
        order = (GPU_ORDER if device.type == "cuda" else CPU_ORDER) + ("torch",)
        return next(b for b in order if _why_unavailable(b, device) is None)
    reason = _why_unavailable(backend, device)
    if reason is not None:
        raise RuntimeError(f"backend={backend!r} is not available: {reason}")
    return backend


def available_backends(device: torch.device | str | None = None) -> list[str]:
    """Backends that can run here: on `device` if given, else on any device of this machine.

    Example:
        >>> "torch" in available_backends("cpu")
        True
    """
    if device is not None:
        devices = [torch.device(device)]
    else:
        devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    names = ("torch", "cpu", "cuda", "triton")
    return [b for b in names if any(_why_unavailable(b, d) is None for d in devices)]
