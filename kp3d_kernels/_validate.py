"""Input checks shared by every op, run before any kernel (docs/kernels.md).

A violation raises TypeError (wrong kind or dtype) or ValueError (wrong shape or value) whose
message names the argument and says what was expected.
"""

import math
import weakref

import torch

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _compiling() -> bool:
    return torch.compiler.is_compiling()


def tensor(name, value, *, ndim=None, floating=True):
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if ndim is not None and value.dim() != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {tuple(value.shape)}")
    if floating and value.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be a floating-point tensor (float16/bfloat16/float32/float64), "
                        f"got {value.dtype}")
    return value


def same_device(name, value, ref_name, ref):
    if value.device != ref.device:
        raise ValueError(f"{name} is on {value.device} but {ref_name} is on {ref.device}; "
                         "put them on the same device")


def positive_number(name, value):
    if isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a Python number, got a tensor")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if not (value > 0) or math.isinf(value):
        raise ValueError(f"{name} must be a finite number > 0, got {value}")
    return float(value)


def choice(name, value, options):
    if value not in options:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, options))}, got {value!r}")
    return value


def size2d(name, value):
    """An int or an (H, W) pair of positive ints."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value, value)
    if (not isinstance(value, (tuple, list, torch.Size)) or len(value) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)):
        raise TypeError(f"{name} must be an int or a pair of ints (height, width), got {value!r}")
    if value[0] < 1 or value[1] < 1:
        raise ValueError(f"{name} must be positive, got {tuple(value)}")
    return int(value[0]), int(value[1])


def keypoints(name, value, dims=(2,)):
    tensor(name, value, ndim=3)
    B, K, D = value.shape
    if D not in dims:
        raise ValueError(f"{name} must have shape (B, K, {'|'.join(map(str, dims))}), "
                         f"got {tuple(value.shape)}")
    if K < 2:
        raise ValueError(f"{name} must hold at least K = 2 points per sample, got K = {K}")
    if B < 1:
        raise ValueError(f"{name} must hold at least one sample, got shape {tuple(value.shape)}")
    return value


# The index range of every edges tensor checked so far, with the tensor version it was read at
# (an in-place change bumps the version): reading it needs the values on the host, a device
# sync for CUDA edges, so it is done once per tensor and version, not once per call. Keyed by
# id(), with a weak reference that confirms the tensor and drops the entry when it dies.
_edge_ranges = {}


def _forget(key, ref):
    entry = _edge_ranges.get(key)
    if entry is not None and entry[0] is ref:
        del _edge_ranges[key]


def _edge_range(value):
    key = id(value)
    entry = _edge_ranges.get(key)
    if entry is not None and entry[0]() is value and entry[1] == value._version:
        return entry[2], entry[3]
    lo, hi = int(value.min()), int(value.max())
    ref = weakref.ref(value, lambda r, k=key: _forget(k, r))
    _edge_ranges[key] = (ref, value._version, lo, hi)
    return lo, hi


def edges(name, value, num_keypoints, device, *, check_values=True):
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (E, 2), got {type(value).__name__}")
    if value.dim() != 2 or value.shape[1] != 2 or value.shape[0] < 1:
        raise ValueError(f"{name} must have shape (E, 2) with E >= 1, got {tuple(value.shape)}")
    if value.dtype.is_floating_point or value.dtype.is_complex or value.dtype == torch.bool:
        raise TypeError(f"{name} must be an integer tensor, got {value.dtype}")
    if value.device != device:
        raise ValueError(f"{name} is on {value.device} but keypoints are on {device}")
    # Out-of-range indices are refused here, eagerly, once per edges tensor (and version): the
    # first call with a CUDA edges tensor syncs the device once. Skipped under torch.compile (a
    # value check cannot be traced) and for EdgeMapRenderer's own edges (checked at
    # construction); the kernels then give NaN for an edge out of range, never an
    # out-of-bounds read.
    if check_values and not _compiling():
        lo, hi = _edge_range(value)
        if lo < 0 or hi >= num_keypoints:
            raise ValueError(f"{name} must index keypoints in [0, {num_keypoints - 1}], "
                             f"got values in [{lo}, {hi}]")
    return value


def edge_weights(name, value, batch, num_edges, device):
    tensor(name, value)
    if value.shape not in ((num_edges,), (batch, num_edges)):
        raise ValueError(f"{name} must have shape ({num_edges},) or ({batch}, {num_edges}) "
                         f"(one weight per edge), got {tuple(value.shape)}")
    if value.device != device:
        raise ValueError(f"{name} is on {value.device} but keypoints are on {device}")
    return value
