"""pytest-benchmark suite of kp3d_kernels: every op x backend x direction x shape (docs/benchmarks.md).

Scales (`--bench-scale`, or the KP3D_BENCH_SCALE environment variable):

- `smoke`: tiny shapes, every backend this machine has (CPU, and CUDA when there is a GPU); the
  default with `--benchmark-disable`, which runs each benchmark once, so CI keeps them working.
- `cpu`: CPU tensors, shapes that finish in minutes on a small machine; the default without a GPU.
- `gpu`: CUDA tensors, AutoLink's training shape (B = 64, 128 x 128, K in 8..64); the default
  when CUDA is available.

The triton backend runs on CPU tensors only under TRITON_INTERPRET=1, an emulator: it is
benchmarked on CPU in smoke mode only (to keep the code path alive), never timed there.

Each benchmark's parameters are named `op`, `backend`, `direction` (`fwd` or `fwd+bwd`) and the
sizes `B`, `K`, `H`, `W` (edge map, soft-argmax; plus `falloff` for the edge map) or `B`, `K`,
`D` (nearest neighbour, repulsion), so the JSON can be compared by machine. `extra_info` holds
the device name, `peak_mem_bytes` (see memory.py) and the library versions.
"""

import datetime
import importlib.util
import os
import pathlib
import platform

import pytest
import torch

import kp3d_kernels

SCALES = ("smoke", "cpu", "gpu")
DIRECTIONS = ("fwd", "fwd+bwd")
GiB = 1024 ** 3

# ---------------------------------------------------------------------------------------------
# Shapes per scale.  Edge map / soft-argmax: (B, K, H, W); nearest neighbour / repulsion: (B, K, D).
# ---------------------------------------------------------------------------------------------
K_SWEEP = (8, 16, 24, 32, 64)

SHAPES = {
    "smoke": {
        "edge_map": [("gaussian", (2, 4, 16, 16)), ("exp", (2, 4, 16, 16))],
        "soft_argmax": [(2, 4, 16, 16)],
        "nearest_neighbor": [(2, 8, 2), (2, 8, 3)],
        "repulsion_loss": [(2, 8, 2), (2, 8, 3)],
    },
    "cpu": {
        # K sweep at B = 8, 64 x 64; and the two shapes the foundation issue reports
        # (B=8, K=16, 64x64 and B=4, K=32, 128x128), in both falloffs.
        "edge_map": [("gaussian", (8, k, 64, 64)) for k in K_SWEEP]
        + [("gaussian", (4, 32, 128, 128)), ("exp", (8, 16, 64, 64)), ("exp", (4, 32, 128, 128))],
        "soft_argmax": [(8, k, 128, 128) for k in K_SWEEP],
        "nearest_neighbor": [(64, k, 2) for k in K_SWEEP + (256,)] + [(64, 64, 3)],
        "repulsion_loss": [(64, k, 2) for k in K_SWEEP + (256,)] + [(64, 64, 3)],
    },
    "gpu": {
        # AutoLink's training shape: B = 64, 128 x 128, K in {8, 16, 24, 32} and 64.
        "edge_map": [("gaussian", (64, k, 128, 128)) for k in K_SWEEP]
        + [("exp", (64, k, 128, 128)) for k in (16, 32)],
        "soft_argmax": [(64, k, 128, 128) for k in K_SWEEP],
        "nearest_neighbor": [(64, k, 2) for k in K_SWEEP + (256, 1024)] + [(64, 64, 3)],
        "repulsion_loss": [(64, k, 2) for k in K_SWEEP + (256, 1024)] + [(64, 64, 3)],
    },
}

# Baselines beside the `torch` reference (AutoLink's materialising approach):
# op -> name -> need(device)
BASELINES = {
    "soft_argmax": {"kornia": lambda device: importlib.util.find_spec("kornia") is not None},
    "nearest_neighbor": {"cdist": lambda device: True},
    "edge_map": {
        # the fused CPU kernel without culling, timed beside the culled one in the same run
        "cpu-unculled": lambda device: device == "cpu" and "cpu" in kp3d_kernels.available_backends(device),
        # what a user would pick to reduce over all edges without materialising (optional)
        "keops": lambda device: importlib.util.find_spec("pykeops") is not None,
    },
}


def pytest_addoption(parser):
    group = parser.getgroup("kp3d benchmarks")
    group.addoption("--bench-scale", choices=SCALES, default=None,
                    help="shapes to benchmark: smoke (tiny, default with --benchmark-disable), "
                         "cpu (default without CUDA) or gpu (default with CUDA)")
    group.addoption("--bench-mem-limit-gib", type=float, default=None,
                    help="skip configurations whose estimated memory exceeds this "
                         "(default: 8 GiB on CPU, 90%% of the GPU's memory on CUDA)")


def _scale(config):
    scale = config.getoption("--bench-scale") or os.environ.get("KP3D_BENCH_SCALE") or None
    if scale is None:
        if config.getoption("benchmark_disable", False):
            scale = "smoke"
        else:
            scale = "gpu" if torch.cuda.is_available() else "cpu"
    if scale not in SCALES:
        raise pytest.UsageError(f"--bench-scale / KP3D_BENCH_SCALE must be one of {SCALES}, "
                                f"got {scale!r}")
    if scale == "gpu" and not torch.cuda.is_available():
        raise pytest.UsageError("--bench-scale gpu needs CUDA, and torch.cuda.is_available() "
                                "is False here")
    return scale


def _devices(scale):
    if scale == "cpu":
        return ["cpu"]
    if scale == "gpu":
        return ["cuda"]
    return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _backends(op, device, scale):
    """The backends to benchmark on `device`: the library's, then the op's baselines."""
    names = list(kp3d_kernels.available_backends(device))
    if device == "cpu" and "triton" in names and scale != "smoke":
        names.remove("triton")  # the Triton interpreter is an emulator, not a CPU backend
    for name, present in BASELINES.get(op, {}).items():
        if present(device):
            names.append(name)
    return names


def _case_id(values):
    return "-".join(str(v) for v in values)


def pytest_generate_tests(metafunc):
    """Parametrise every `test_<op>` over backend x direction x shape of the chosen scale."""
    marker = metafunc.definition.get_closest_marker("bench_op")
    if marker is None:
        return
    op = marker.args[0]
    scale = _scale(metafunc.config)
    if op == "edge_map":
        names = ["op", "device", "backend", "direction", "falloff", "B", "K", "H", "W"]
        shapes = [(falloff,) + shape for falloff, shape in SHAPES[scale][op]]
    elif op == "soft_argmax":
        names = ["op", "device", "backend", "direction", "B", "K", "H", "W"]
        shapes = SHAPES[scale][op]
    else:
        names = ["op", "device", "backend", "direction", "B", "K", "D"]
        shapes = SHAPES[scale][op]
    cases = [(op, device, backend, direction) + tuple(shape)
             for device in _devices(scale)
             for backend in _backends(op, device, scale)
             for direction in DIRECTIONS
             for shape in shapes]
    metafunc.parametrize(names, cases, ids=[_case_id(c[1:]) for c in cases])


def pytest_configure(config):
    config.addinivalue_line("markers", "bench_op(name): a kp3d_kernels op benchmark")


def pytest_report_header(config):
    scale = _scale(config)
    return (f"kp3d benchmarks: scale={scale}, devices={_devices(scale)}, "
            f"device name={', '.join(device_name(d) for d in _devices(scale))}, "
            f"torch threads={torch.get_num_threads()}")


# ---------------------------------------------------------------------------------------------
# Machine description, recorded in the JSON's machine_info and each benchmark's extra_info.
# ---------------------------------------------------------------------------------------------
def _cpu_model():
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_name(device):
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{_cpu_model()} ({os.cpu_count()} cores)"


def _version(module):
    if importlib.util.find_spec(module) is None:
        return None
    try:
        return __import__(module).__version__
    except Exception:  # noqa: BLE001 - a broken install is reported as such, not fatal
        return "unimportable"


def versions():
    return {
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "triton": _version("triton"),
        "kornia": _version("kornia"),
        "kp3d_kernels": kp3d_kernels.__version__,
        "python": platform.python_version(),
    }


def _loadavg():
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def pytest_sessionstart(session):
    session.config._kp3d_loadavg_start = _loadavg()


def pytest_benchmark_update_machine_info(config, machine_info):
    scale = _scale(config)
    machine_info["kp3d"] = {
        "scale": scale,
        "devices": {d: device_name(d) for d in _devices(scale)},
        "torch_threads": torch.get_num_threads(),
        "versions": versions(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        # the host's 1/5/15-minute load averages: how busy the machine was (CPU timings)
        "loadavg_start": getattr(config, "_kp3d_loadavg_start", None),
        "loadavg_end": _loadavg(),
    }


# ---------------------------------------------------------------------------------------------
# The runner shared by every benchmark.
# ---------------------------------------------------------------------------------------------
def _load_memory_module():
    path = pathlib.Path(__file__).with_name("memory.py")
    spec = importlib.util.spec_from_file_location("kp3d_bench_memory", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_memory = _load_memory_module()


@pytest.fixture(scope="session")
def peak_extra_bytes():
    """memory.peak_extra_bytes(fn, device): the peak extra memory of one call."""
    return _memory.peak_extra_bytes


def _memory_limit(config, device):
    option = config.getoption("--bench-mem-limit-gib")
    if option is not None:
        return option * GiB
    if torch.device(device).type == "cuda":
        return 0.9 * torch.cuda.get_device_properties(torch.device(device)).total_memory
    return 8 * GiB


class Runner:
    """Warm up, measure the peak memory of one untimed call, then time the call."""

    def __init__(self, request, benchmark):
        self.request = request
        self.benchmark = benchmark
        self.config = request.config
        self.scale = _scale(self.config)

    def __call__(self, fn, *, device, estimate_bytes=None, check=None, info=None):
        """fn() runs the op (and its backward); estimate_bytes is an upper estimate of its memory.

        check(result) is run once on a warm-up result in smoke mode (baselines compare
        themselves with the reference there).
        """
        device = torch.device(device)
        limit = _memory_limit(self.config, device)
        if estimate_bytes is not None and estimate_bytes > limit:
            pytest.skip(f"needs about {estimate_bytes / GiB:.1f} GiB (estimated), over the "
                        f"{limit / GiB:.1f} GiB limit (--bench-mem-limit-gib)")
        cuda = device.type == "cuda"

        def timed():
            out = fn()
            if cuda:
                torch.cuda.synchronize(device)  # the time includes the kernels, not just launches
            return out

        try:
            # warm-up: JIT compilation, Triton autotuning, allocator caches (not timed)
            warmups = 1 if self.scale == "smoke" else (3 if cuda else 1)
            for _ in range(warmups):
                result = timed()
            if check is not None and self.scale == "smoke":
                check(result)
            del result
            peak = _memory.peak_extra_bytes(fn, device)
        except torch.cuda.OutOfMemoryError as error:
            torch.cuda.empty_cache()
            pytest.skip(f"out of GPU memory: {str(error).splitlines()[0]}")

        self.benchmark.extra_info.update({
            "device": device_name(device),
            "device_type": device.type,
            "peak_mem_bytes": peak,
            "peak_mem_method": ("torch.cuda.max_memory_allocated" if cuda
                                else "torch.profiler allocation events"),
            "scale": self.scale,
            "torch_threads": torch.get_num_threads(),
            **versions(),
            **(info or {}),
        })
        if cuda:
            torch.cuda.empty_cache()
        self.benchmark(timed)


@pytest.fixture
def run_bench(request, benchmark):
    return Runner(request, benchmark)
