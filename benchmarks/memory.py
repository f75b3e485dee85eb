"""Peak extra memory of one call: what the benchmarks record as `extra_info["peak_mem_bytes"]`.

On CUDA: `torch.cuda.max_memory_allocated()` after `reset_peak_memory_stats()`, minus the memory
allocated before the call (the caching allocator's own cache is not counted, only live tensors).

On CPU torch has no allocator statistics, so the call runs once under
`torch.profiler.profile(profile_memory=True)`: every allocation and free of the CPU allocator
(c10's, which every tensor of torch and of the compiled extension goes through) is recorded with
its time and size; the running sum of allocations minus frees, in time order, starts at 0 and its
maximum is the peak. It is exact for tensors. It does not see memory a kernel takes outside the
tensor allocator (`std::vector` scratch in the C++ kernels, OpenMP thread stacks); docs/kernels.md bounds
that scratch to O(B E) per-edge accumulators and O(W) per thread, small next to the O(B H W)
tensors (see docs/benchmarks.md).

Both measures count everything the call allocates and still holds at its peak, its outputs and
the gradients it returns included; memory that existed before the call (the inputs) is not counted.
"""

import torch

__all__ = ["peak_extra_bytes"]

_MEMORY_EVENT = "[memory]"


def _cuda_peak(fn, device):
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    result = fn()
    torch.cuda.synchronize(device)
    peak = torch.cuda.max_memory_allocated(device) - before
    del result
    return int(peak)


def _cpu_peak(fn):
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        result = fn()
    del result  # freed after the profiler stopped: the outputs count as part of the peak
    events = [e for e in prof.profiler.kineto_results.events()
              if e.name() == _MEMORY_EVENT and e.device_type() == torch.autograd.DeviceType.CPU]
    # stable sort: events with the same timestamp keep their recorded order
    events.sort(key=lambda e: e.start_ns())
    live = peak = 0
    for e in events:
        live += e.nbytes()
        peak = max(peak, live)
    return int(peak)


def peak_extra_bytes(fn, device="cpu"):
    """Peak bytes allocated by `fn()` above what was allocated before it, on `device`.

    CUDA: allocator statistics. CPU: the profiler's allocation events (see the module docstring).
    `fn` runs once; call it only outside timed code.
    """
    device = torch.device(device)
    if device.type == "cuda":
        return _cuda_peak(fn, device)
    if device.type == "cpu":
        return _cpu_peak(fn)
    raise ValueError(f"peak_extra_bytes supports cpu and cuda devices, got {device}")
