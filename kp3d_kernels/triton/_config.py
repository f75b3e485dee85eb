"""Launch configuration of the Triton kernels: autotune lists on the GPU, one fixed shape-derived
configuration under the interpreter, the 64-bit offset switch, and scalar-argument packing.

Under `TRITON_INTERPRET=1` every kernel runs as NumPy on the CPU, one program after another, and
each `tl` operation costs tens of microseconds whatever its size. There the launchers use no
autotuning and blocks as large as the problem (a whole small image or heatmap per program), so a
call is a handful of programs of a few dozen vectorised operations each. On a GPU the kernels are
autotuned over the short lists below (keyed by the sizes that change the best choice).
"""

import contextlib
import os
import struct

import torch
import triton

# Read once, at import: docs/kernels.md requires TRITON_INTERPRET to be set before any module that
# defines Triton kernels is imported.
INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"

# Tests set this to run the 64-bit index path on small shapes.
FORCE_INT64 = False

INT32_LIMIT = 2**31 - 1

# Under the interpreter: the largest number of pixels per program, and of pixel x edge pairs per
# vectorised step of the edge map forward.
INTERPRET_MAX_PIXELS = 4096
INTERPRET_MAX_PAIRS = 1 << 18


def use_int64(*extents) -> bool:
    """64-bit index math when any flat extent (a product of sizes) can pass 2^31 - 1."""
    return FORCE_INT64 or any(int(n) > INT32_LIMIT for n in extents)


def next_pow2(n: int) -> int:
    return triton.next_power_of_2(max(int(n), 1))


def f64_bits(x: float) -> int:
    """A Python float as the int64 of its IEEE double bits.

    Triton passes Python floats to kernels as float32; the float64 kernels need sigma, the
    temperature and the bandwidth to the last bit, so they travel as integers and are bitcast
    back inside the kernel (see _math.scalar_from_bits).
    """
    return struct.unpack("<q", struct.pack("<d", float(x)))[0]


def device_ctx(t: torch.Tensor):
    """Launch on the tensor's GPU (Triton launches on the current device)."""
    return torch.cuda.device(t.device) if t.is_cuda else contextlib.nullcontext()


def autotune_configs(entries):
    """[(meta-parameters, num_warps, num_stages), ...] -> triton.Config list.

    Under the interpreter the launchers do not autotune; a single config is returned so that an
    Autotuner object built at import never has more than one there.
    """
    entries = entries[:1] if INTERPRET else entries
    return [triton.Config(dict(meta), num_warps=w, num_stages=s) for meta, w, s in entries]


# ---- GPU autotune lists ------------------------------------------------------------------------
# Edge map forward: pixel tile (BLOCK_H x BLOCK_W), one edge at a time. More pixels per thread
# amortise the per-edge scalar loads; smaller tiles give more programs for small batches.
EDGE_MAP_FWD = [
    ({"BLOCK_H": 16, "BLOCK_W": 32}, 4, 1),
    ({"BLOCK_H": 32, "BLOCK_W": 32}, 4, 1),
    ({"BLOCK_H": 32, "BLOCK_W": 32}, 8, 1),
    ({"BLOCK_H": 8, "BLOCK_W": 32}, 4, 1),
]
# Edge map backward: compact tiles keep the number of distinct winning edges per tile small
# (the cost of the per-tile reduction loop); larger tiles mean fewer atomics.
EDGE_MAP_BWD = [
    ({"BLOCK_H": 16, "BLOCK_W": 16}, 4, 1),
    ({"BLOCK_H": 8, "BLOCK_W": 16}, 4, 1),
    ({"BLOCK_H": 16, "BLOCK_W": 32}, 4, 1),
    ({"BLOCK_H": 32, "BLOCK_W": 32}, 8, 1),
]
# Soft-argmax: BLOCK_M heatmaps x BLOCK_P pixels per step.
SOFT_ARGMAX_FWD = [
    ({"BLOCK_M": 1, "BLOCK_P": 2048}, 4, 2),
    ({"BLOCK_M": 1, "BLOCK_P": 4096}, 8, 2),
    ({"BLOCK_M": 2, "BLOCK_P": 1024}, 4, 2),
    ({"BLOCK_M": 8, "BLOCK_P": 256}, 4, 2),
]
SOFT_ARGMAX_BWD = [
    ({"BLOCK_M": 1, "BLOCK_P": 1024}, 4, 1),
    ({"BLOCK_M": 1, "BLOCK_P": 2048}, 8, 1),
    ({"BLOCK_M": 4, "BLOCK_P": 256}, 4, 1),
]
# Nearest neighbour: point tiles of the K x K distance matrix, picked from K (no autotuning:
# the work per sample is tiny and the launch dominates).
NN_MAX_BLOCK_GPU = 64
NN_MAX_BLOCK_INTERPRET = 256
