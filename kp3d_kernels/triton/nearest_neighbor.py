"""Triton nearest neighbour and repulsion loss (docs/kernels.md; semantics of
csrc/cpu/nearest_neighbor.cpp).

Forward, one launch: the K x K distance matrix of a sample in BLOCK_I x BLOCK_J tiles, never
stored; per point the nearest *other* point (ties to the lowest index, the first NaN distance
wins and sticks). nn: programs over (sample, point tile). repulsion: one program per sample, so
the per-sample loss is summed in registers, in a fixed order, with no atomics.

Backward, one launch: grad[j] = s_j (P_j - P_n_j) - sum_{i: n_i = j} s_i (P_i - P_n_i), with
s_i = g_i / d_i (0 where d_i = 0). The scatter to the neighbours is written as a gather over the
point tiles of the sample, so each program owns its output points: no atomics, reproducible.
Any K works (tiles loop); the cost is O(K^2) per sample, like the forward.
"""

import torch
import triton
import triton.language as tl

from . import _config
from ._math import reciprocal_of_bits, sqrt_rn

BIG = tl.constexpr(2147483647)  # "no point" in the int32 index reductions


@triton.jit
def _load_points(pb, i, mask, D: tl.constexpr):
    x = tl.load(pb + i * D, mask=mask, other=0.0)
    y = tl.load(pb + i * D + 1, mask=mask, other=0.0)
    if D == 3:
        z = tl.load(pb + i * D + 2, mask=mask, other=0.0)
    else:
        z = x * 0
    return x, y, z


@triton.jit(do_not_specialize=["h_bits"])
def _nn_fwd_kernel(p_ptr, dist_ptr, idx_ptr, loss_ptr, K, h_bits, D: tl.constexpr,
                   REPULSION: tl.constexpr, BLOCK_I: tl.constexpr, BLOCK_J: tl.constexpr):
    DT: tl.constexpr = p_ptr.dtype.element_ty
    b = tl.program_id(0).to(tl.int64)  # per-sample bases in 64 bits: B * K * D may pass 2^31
    pb = p_ptr + b * K * D
    first_tile = tl.program_id(1)
    n_prog = tl.num_programs(1)
    loss = tl.zeros([BLOCK_I], DT)
    for i0 in range(first_tile * BLOCK_I, K, n_prog * BLOCK_I):
        i = i0 + tl.arange(0, BLOCK_I)
        im = i < K
        xi, yi, zi = _load_points(pb, i, im, D)
        best = tl.full([BLOCK_I], float("inf"), DT)
        arg = tl.where(i == 0, 1, 0)  # the lowest other index, kept while every d2 is +inf
        first_nan = tl.full([BLOCK_I], BIG, tl.int32)
        for j0 in range(0, K, BLOCK_J):
            j = j0 + tl.arange(0, BLOCK_J)
            jm = j < K
            xj, yj, zj = _load_points(pb, j, jm, D)
            dx = xi[:, None] - xj[None, :]
            dy = yi[:, None] - yj[None, :]
            d2 = dx * dx + dy * dy
            if D == 3:
                dz = zi[:, None] - zj[None, :]
                d2 = d2 + dz * dz
            other = jm[None, :] & (i[:, None] != j[None, :])
            is_nan = other & (d2 != d2)
            key = tl.where(other & (d2 == d2), d2, float("inf"))
            cmin = tl.min(key, axis=1)
            carg = tl.min(tl.where(other & (key == cmin[:, None]), j[None, :], BIG), axis=1)
            take = cmin < best
            best = tl.where(take, cmin, best)
            arg = tl.where(take, carg, arg)
            first_nan = tl.minimum(first_nan, tl.min(tl.where(is_nan, j[None, :], BIG), axis=1))
        has_nan = first_nan < BIG
        arg = tl.where(has_nan, first_nan, arg)
        d = tl.where(has_nan, float("nan"), tl.where(best > 0, sqrt_rn(best), 0.0))
        tl.store(dist_ptr + b * K + i, d, mask=im)
        tl.store(idx_ptr + b * K + i, arg.to(tl.int64), mask=im)
        if REPULSION:
            inv_h = reciprocal_of_bits(h_bits, DT)
            loss += tl.where(im, -d * tl.exp(-d * inv_h), 0.0)
    if REPULSION:
        tl.store(loss_ptr + b, tl.sum(loss, axis=0))


@triton.jit
def _scaled_offsets(g_ptr, pb, dist_ptr, idx_ptr, b, K, i, mask, inv_h, D: tl.constexpr,
                    REPULSION: tl.constexpr):
    """u_i = s_i (P_i - P_n_i) with s_i = g_i / d_i (0 where d_i = 0), and n_i."""
    d = tl.load(dist_ptr + b * K + i, mask=mask, other=0.0)
    n = tl.load(idx_ptr + b * K + i, mask=mask, other=-1).to(tl.int32)
    ok = mask & (n >= 0) & (n < K) & (d != 0)  # coincident points: no gradient (contract)
    if REPULSION:
        gl = tl.load(g_ptr + b)
        g = gl * (-tl.exp(-d * inv_h) * (1.0 - d * inv_h))
    else:
        g = tl.load(g_ptr + b * K + i, mask=mask, other=0.0)
    s = g / tl.where(ok, d, 1.0)
    xi, yi, zi = _load_points(pb, i, mask, D)
    xn, yn, zn = _load_points(pb, n, ok, D)
    ux = tl.where(ok, s * (xi - xn), 0.0)
    uy = tl.where(ok, s * (yi - yn), 0.0)
    uz = tl.where(ok, s * (zi - zn), 0.0)
    return ux, uy, uz, tl.where(ok, n, -1)


@triton.jit(do_not_specialize=["h_bits"])
def _nn_bwd_kernel(g_ptr, p_ptr, dist_ptr, idx_ptr, out_ptr, K, h_bits, D: tl.constexpr,
                   REPULSION: tl.constexpr, BLOCK_I: tl.constexpr, BLOCK_J: tl.constexpr):
    DT: tl.constexpr = p_ptr.dtype.element_ty
    b = tl.program_id(0).to(tl.int64)
    pb = p_ptr + b * K * D
    inv_h = reciprocal_of_bits(h_bits, DT)
    j = tl.program_id(1) * BLOCK_J + tl.arange(0, BLOCK_J)
    jm = j < K
    # own term: grad[j] += u_j
    ax, ay, az, _ = _scaled_offsets(g_ptr, pb, dist_ptr, idx_ptr, b, K, j, jm, inv_h, D, REPULSION)
    # neighbour terms: grad[j] -= sum over i with n_i == j of u_i
    for i0 in range(0, K, BLOCK_I):
        i = i0 + tl.arange(0, BLOCK_I)
        im = i < K
        ux, uy, uz, n = _scaled_offsets(g_ptr, pb, dist_ptr, idx_ptr, b, K, i, im, inv_h, D,
                                        REPULSION)
        hit = n[:, None] == j[None, :]
        ax -= tl.sum(tl.where(hit, ux[:, None], 0.0), axis=0)
        ay -= tl.sum(tl.where(hit, uy[:, None], 0.0), axis=0)
        if D == 3:
            az -= tl.sum(tl.where(hit, uz[:, None], 0.0), axis=0)
    ob = out_ptr + b * K * D
    tl.store(ob + j * D, ax, mask=jm)
    tl.store(ob + j * D + 1, ay, mask=jm)
    if D == 3:
        tl.store(ob + j * D + 2, az, mask=jm)


def _block(K):
    cap = _config.NN_MAX_BLOCK_INTERPRET if _config.INTERPRET else _config.NN_MAX_BLOCK_GPU
    return max(min(_config.next_pow2(K), cap), 16)


def _forward(points, bandwidth, repulsion):
    B, K, D = points.shape
    dist = torch.empty((B, K), dtype=points.dtype, device=points.device)
    index = torch.empty((B, K), dtype=torch.int64, device=points.device)
    loss = torch.empty((B,), dtype=points.dtype, device=points.device)
    if B == 0:
        return loss, dist, index
    blk = _block(K)
    tiles = 1 if repulsion else triton.cdiv(K, blk)
    _nn_fwd_kernel[(B, tiles)](points, dist, index, loss, K, _config.f64_bits(bandwidth), D=D,
                               REPULSION=repulsion, BLOCK_I=blk, BLOCK_J=blk,
                               num_warps=4 if blk >= 64 else 2)
    return loss, dist, index


def _backward(grad, points, dist, index, bandwidth, repulsion):
    B, K, D = points.shape
    out = torch.empty_like(points)
    if B == 0:
        return out
    blk = _block(K)
    _nn_bwd_kernel[(B, triton.cdiv(K, blk))](grad, points, dist, index, out, K,
                                             _config.f64_bits(bandwidth), D=D,
                                             REPULSION=repulsion, BLOCK_I=blk, BLOCK_J=blk,
                                             num_warps=4 if blk >= 64 else 2)
    return out


def nn_forward(points):
    _, dist, index = _forward(points, 1.0, False)
    return dist, index


def nn_backward(grad_dist, points, dist, index):
    return _backward(grad_dist, points, dist, index, 1.0, False)


def repulsion_forward(points, bandwidth):
    return _forward(points, bandwidth, True)


def repulsion_backward(grad_loss, points, dist, index, bandwidth):
    return _backward(grad_loss, points, dist, index, bandwidth, True)
