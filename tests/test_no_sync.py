"""EdgeMapRenderer.forward (and its backward) never wait for the device: no op in the call
reads a tensor's value on the host. On the CPU this is checked with a dispatch mode that records
every op (a host read of a value is `aten::_local_scalar_dense`, what `.item()`, `int()` and
`bool()` of a tensor run); on a GPU with torch.cuda.set_sync_debug_mode("error")."""

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import kp3d_kernels as kk
from helpers import rand_keypoints

# Ops that copy a value to the host (a device sync on CUDA) or have a data-dependent shape.
HOST_READS = {"_local_scalar_dense", "nonzero", "unique", "masked_select", "item"}


class RecordOps(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.ops = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.append(func.__name__.split(".")[0])
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("custom_edges", [False, True])
def test_renderer_forward_reads_nothing_on_the_host(custom_edges):
    edges = torch.tensor([[0, 1], [1, 2], [2, 3], [3, 0], [0, 2]]) if custom_edges else None
    renderer = kk.EdgeMapRenderer(4, (9, 11), 0.05, edges=edges, falloff="gaussian")
    kp = rand_keypoints(2, 4, seed=1, dtype=torch.float32).requires_grad_()
    with RecordOps() as rec:
        out = renderer(kp)
        out.sum().backward()
    assert not HOST_READS & set(rec.ops), f"host reads: {sorted(HOST_READS & set(rec.ops))}"
    assert any("edge_map_fwd" in op for op in rec.ops)  # the mode did see the call
    # The call's op count (the "launches" of a GPU call): softplus(lr_scale * theta), the
    # (B, E) weights, the fused op; backward: the fused op and the sum of the weight gradient
    # over the batch. A change here is deliberate or a regression.
    fwd_bwd = [op for op in rec.ops if op not in ("detach", "alias", "view", "unsqueeze",
                                                   "squeeze", "expand", "t", "ones_like")]
    assert len(fwd_bwd) <= 12, fwd_bwd


def test_edge_map_checks_custom_edges_once():
    kp = rand_keypoints(1, 4, seed=2, dtype=torch.float32)
    edges = torch.tensor([[0, 1], [2, 3]])
    w = torch.ones(2)
    kk.edge_map(kp, w, 8, 0.1, edges=edges)  # the first call reads the index range
    with RecordOps() as rec:
        kk.edge_map(kp, w, 8, 0.1, edges=edges)
    assert "_local_scalar_dense" not in rec.ops
    edges[1, 1] = 4  # an in-place change is seen (the tensor's version moved)
    with pytest.raises(ValueError, match="edges must index keypoints"):
        kk.edge_map(kp, w, 8, 0.1, edges=edges)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("backend", ["auto", "cuda", "triton"])
def test_renderer_forward_does_not_sync_the_gpu(backend):
    if backend not in ("auto",) + tuple(kk.available_backends("cuda")):
        pytest.skip(f"{backend} is not available")
    renderer = kk.EdgeMapRenderer(6, 32, 2.5e-3, falloff="gaussian", backend=backend).cuda()
    kp = rand_keypoints(4, 6, seed=3, dtype=torch.float32).cuda().requires_grad_()
    renderer(kp).sum().backward()  # warm-up: compilation, autotuning, allocator
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        out = renderer(kp)
        out.sum().backward()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    torch.cuda.synchronize()
