"""torch.library registration: opcheck of every low-level op, torch.compile without graph
breaks, available_backends."""

import pytest
import torch

import kp3d_kernels as kk
from backends import KERNEL_BACKENDS
from helpers import rand_keypoints, rand_weights
from kp3d_kernels._dispatch import family


def op_samples(device):
    kp = rand_keypoints(2, 4, seed=1).to(device)
    w = rand_weights((2, 6), seed=1).to(device)
    edges = kk.all_pairs(4, device)
    h = torch.randn(2, 3, 5, 6, dtype=torch.float64, device=device)
    pts = rand_keypoints(2, 5, 3, seed=2).to(device)
    return kp, w, edges, h, pts


@pytest.mark.parametrize("backend,device", KERNEL_BACKENDS)
@pytest.mark.parametrize("falloff", ["exp", "gaussian"])
def test_opcheck(backend, device, falloff):
    fam = family(backend)
    kp, w, edges, h, pts = op_samples(device)
    gaussian = falloff == "gaussian"
    rg = lambda t: t.clone().requires_grad_()  # noqa: E731
    out, winner = fam.edge_map_fwd(kp, w, edges, 5, 7, 0.2, gaussian)
    torch.library.opcheck(fam.edge_map_fwd, (rg(kp), rg(w), edges, 5, 7, 0.2, gaussian))
    torch.library.opcheck(fam.edge_map_bwd, (torch.ones_like(out), kp, w, edges, winner, 0.2, gaussian))
    for softmax in (True, False):
        coords, stats = fam.soft_argmax_fwd(h, 0.5, softmax)
        torch.library.opcheck(fam.soft_argmax_fwd, (rg(h), 0.5, softmax))
        torch.library.opcheck(fam.soft_argmax_bwd, (torch.ones_like(coords), h, coords, stats, 0.5, softmax))
    dist, index = fam.nn_fwd(pts)
    torch.library.opcheck(fam.nn_fwd, (rg(pts),))
    torch.library.opcheck(fam.nn_bwd, (torch.ones_like(dist), pts, dist, index))
    torch.library.opcheck(fam.repulsion_fwd, (rg(pts), 0.3))
    torch.library.opcheck(fam.repulsion_bwd, (torch.ones(2, dtype=pts.dtype, device=device), pts, dist, index, 0.3))


class TinyKeypointModel(torch.nn.Module):
    """Heatmaps -> soft-argmax -> edge map, plus the repulsion loss: every op in one graph."""

    def __init__(self, K, backend):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, K, 3, padding=1)
        self.soft_argmax = kk.SoftArgmax2d(backend=backend)
        self.renderer = kk.EdgeMapRenderer(K, 12, 0.05, backend=backend)
        self.repulsion = kk.RepulsionLoss(0.1, backend=backend)

    def forward(self, image):
        kp = self.soft_argmax(self.conv(image))
        dist, _ = kk.nearest_neighbor(kp, backend=self.renderer.backend)
        return self.renderer(kp).mean() + self.repulsion(kp) + dist.mean()


@pytest.mark.parametrize("backend,device", KERNEL_BACKENDS)
def test_torch_compile_fullgraph(backend, device):
    torch._dynamo.reset()
    model = TinyKeypointModel(5, backend).to(device)
    image = torch.randn(2, 3, 12, 12, device=device)
    eager = model(image)
    eager.backward()
    eager_grad = model.conv.weight.grad.clone()
    model.zero_grad()
    compiled = torch.compile(model, fullgraph=True)
    out = compiled(image)
    out.backward()
    torch.testing.assert_close(out, eager)
    torch.testing.assert_close(model.conv.weight.grad, eager_grad)


def test_available_backends():
    names = kk.available_backends()
    assert names[:2] == ["torch", "cpu"], names  # the extension is built in the tested install
    assert kk.available_backends("cpu")[0] == "torch"
    if not torch.cuda.is_available():
        assert "cuda" not in names
