"""Every kernel, forward and backward, once on small non-power-of-two shapes: the program that
compute-sanitizer runs (scripts/gpu_validate.sh).

    PYTORCH_NO_CUDA_MEMORY_CACHING=1 compute-sanitizer --tool memcheck \
        python scripts/sanitize_kernels.py cuda        # or triton; racecheck likewise

The caching allocator is off so that memcheck sees each tensor's own bounds. Covers K = 2, 5, 33,
both falloffs, shared and per-sample edge weights, float32 and float16 edge-map inputs, the
edge-map forward culled (wide and narrow lines) and not, every per-tile reduction of the Triton
backward, both soft-argmax normalisations, nearest neighbour and repulsion in D = 2 and 3.
"""
import sys

import torch

import kp3d_kernels as kk
from kp3d_kernels.ops.edge_map import culling

if len(sys.argv) < 2:
    sys.exit("usage: sanitize_kernels.py BACKEND[,BACKEND...] [DEVICE]")
backends = sys.argv[1].split(",")
dev = sys.argv[2] if len(sys.argv) > 2 else "cuda"
torch.manual_seed(0)
for be in backends:
    for K in (2, 5, 33):
        B, H, W = 3, 37, 29
        E = K * (K - 1) // 2
        for falloff in ("exp", "gaussian"):
            for wshape in ((E,), (B, E)):
                for dtype in (torch.float32, torch.float16):
                    kp = (torch.rand(B, K, 2, device=dev) * 2.2 - 1.1).to(dtype).requires_grad_()
                    w = (torch.rand(*wshape, device=dev)).to(dtype).requires_grad_()
                    # a wide line; then, in float32 with per-sample weights, a narrow one (which
                    # culls most edges) culled and not
                    runs = [(0.05, True)]
                    if dtype == torch.float32 and len(wshape) == 2:
                        runs += [(1e-3, True), (1e-3, False)]
                    for sigma, cull in runs:
                        with culling(cull):
                            y = kk.edge_map(kp, w, (H, W), sigma, falloff=falloff, backend=be)
                        (y.float() * torch.randn_like(y.float())).sum().backward()
        if be == "triton":
            # the Triton backward's other per-tile reductions (not the default ones)
            from kp3d_kernels.triton import edge_map as triton_edge_map

            kp = torch.rand(B, K, 2, device=dev) * 2.2 - 1.1
            w = torch.rand(B, E, device=dev)
            edges = kk.all_pairs(K, dev)
            out, winner = triton_edge_map.forward(kp, w, edges, H, W, 1e-3, True)
            for mode in ("fused", "loop", "segmented", "onehot"):
                triton_edge_map.backward(torch.randn_like(out), kp, w, edges, winner, 1e-3, True,
                                         mode=mode)
        for norm in ("softmax", "sum"):
            h = torch.rand(B, K, H, W, device=dev)
            h.requires_grad_()
            p = kk.soft_argmax(h, normalize=norm, backend=be)
            (p * torch.randn_like(p)).sum().backward()
        for D in (2, 3):
            x = torch.randn(B, K, D, device=dev, requires_grad=True)
            d, _ = kk.nearest_neighbor(x, backend=be)
            (d * torch.randn_like(d)).sum().backward()
            kk.repulsion_loss(x, 0.3, backend=be).backward()
    if dev == "cuda":
        torch.cuda.synchronize()
    print(f"sanitize_kernels: {be} ran every kernel", flush=True)
