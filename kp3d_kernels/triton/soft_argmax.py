"""Triton spatial soft-argmax (docs/kernels.md; semantics of csrc/cpu/soft_argmax.cpp).

Forward: one pass over each heatmap, BLOCK_M heatmaps x BLOCK_P pixels per step, with an online
(max-rescaled) softmax: running max m, and the sums z, sum q x, sum q y rescaled by exp(m - m')
when the max grows. stats (B, K, 2) keep (max of h/T, z) for softmax and (sum h,
max(sum h, 1e-12)) for the sum normalisation. Backward: elementwise from the stats, one read of
the heatmap (none for the sum normalisation, whose gradient does not depend on h).
"""

import torch
import triton
import triton.language as tl

from . import _config
from ._math import div_rn, pixel_centre, reciprocal_of_bits

SUM_FLOOR = tl.constexpr(1e-12)


@triton.jit(do_not_specialize=["temp_bits"])
def _soft_argmax_fwd_kernel(h_ptr, coords_ptr, stats_ptr, M, H, W, HW, temp_bits,
                            SOFTMAX: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_P: tl.constexpr,
                            INT64: tl.constexpr):
    DT: tl.constexpr = h_ptr.dtype.element_ty
    maps = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    if INT64:
        maps = maps.to(tl.int64)
    mmask = maps < M
    base = maps * HW
    inv_t = reciprocal_of_bits(temp_bits, DT)
    m = tl.full([BLOCK_M], float("-inf"), DT)
    z = tl.zeros([BLOCK_M], DT)
    sx = tl.zeros([BLOCK_M], DT)
    sy = tl.zeros([BLOCK_M], DT)
    nan_seen = tl.zeros([BLOCK_M], tl.int32)
    acc_z = tl.zeros([BLOCK_M, BLOCK_P], DT)
    acc_x = tl.zeros([BLOCK_M, BLOCK_P], DT)
    acc_y = tl.zeros([BLOCK_M, BLOCK_P], DT)
    for p0 in range(0, HW, BLOCK_P):
        if INT64:
            p = p0 + tl.arange(0, BLOCK_P).to(tl.int64)
        else:
            p = p0 + tl.arange(0, BLOCK_P)
        pmask = p < HW
        msk = mmask[:, None] & pmask[None, :]
        h = tl.load(h_ptr + base[:, None] + p[None, :], mask=msk, other=0.0)
        x = pixel_centre(p % W, W, DT)[None, :]
        y = pixel_centre(p // W, H, DT)[None, :]
        if SOFTMAX:
            v = h * inv_t
            is_nan = v != v
            nan_seen = tl.maximum(nan_seen, tl.max(tl.where(msk & is_nan, 1, 0), axis=1))
            v = tl.where(msk & (v == v), v, float("-inf"))  # padding and NaN add nothing
            m_new = tl.maximum(m, tl.max(v, axis=1))
            # exp(m - m_new), 1 while both are -inf (nothing accumulated yet); the -inf entries
            # (and padding) give q = exp(-inf) = 0 with no -inf - -inf
            m_sub = tl.where(m_new > float("-inf"), m_new, 0.0)
            scale = tl.exp(tl.where(m_new == m, 0.0, m - m_sub))
            q = tl.exp(v - m_sub[:, None])
            z = z * scale + tl.sum(q, axis=1)
            sx = sx * scale + tl.sum(q * x, axis=1)
            sy = sy * scale + tl.sum(q * y, axis=1)
            m = m_new
        else:
            # elementwise accumulators, reduced once after the loop
            acc_z += h
            acc_x += h * x
            acc_y += h * y
    if not SOFTMAX:
        z = tl.sum(acc_z, axis=1)
        sx = tl.sum(acc_x, axis=1)
        sy = tl.sum(acc_y, axis=1)
    if SOFTMAX:
        # any NaN in the map: NaN coordinates (and z), as the reference's softmax gives
        has_nan = nan_seen > 0
        z = tl.where(has_nan, float("nan"), tl.where(mmask, z, 1.0))  # padding rows: no 0 / 0
        cx = div_rn(sx, z)
        cy = div_rn(sy, z)
        st0 = m
        st1 = z
    else:
        # max(sum, 1e-12); a NaN sum stays NaN (as the reference's clamp_min)
        # (the floor as a tensor of the dtype: Triton rounds a float literal that meets a
        # comparison to float32 first, and 1e-12 is not a float32)
        floor = tl.full([BLOCK_M], SUM_FLOOR, DT)
        norm = tl.where(z >= floor, z, tl.where(z != z, z, floor))
        cx = div_rn(sx, norm)
        cy = div_rn(sy, norm)
        st0 = z
        st1 = norm
    tl.store(coords_ptr + maps * 2, cx, mask=mmask)
    tl.store(coords_ptr + maps * 2 + 1, cy, mask=mmask)
    tl.store(stats_ptr + maps * 2, st0, mask=mmask)
    tl.store(stats_ptr + maps * 2 + 1, st1, mask=mmask)


@triton.jit(do_not_specialize=["temp_bits"])
def _soft_argmax_bwd_kernel(gc_ptr, h_ptr, coords_ptr, stats_ptr, out_ptr, M, H, W, HW,
                            temp_bits,
                            SOFTMAX: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_P: tl.constexpr,
                            INT64: tl.constexpr):
    DT: tl.constexpr = h_ptr.dtype.element_ty
    n_p = tl.cdiv(HW, BLOCK_P)
    pid = tl.program_id(0)
    maps = (pid // n_p) * BLOCK_M + tl.arange(0, BLOCK_M)
    if INT64:
        maps = maps.to(tl.int64)
        p = (pid % n_p).to(tl.int64) * BLOCK_P + tl.arange(0, BLOCK_P)
    else:
        p = (pid % n_p) * BLOCK_P + tl.arange(0, BLOCK_P)
    mmask = maps < M
    base = maps * HW
    pmask = p < HW
    msk = mmask[:, None] & pmask[None, :]
    offs = base[:, None] + p[None, :]
    x = pixel_centre(p % W, W, DT)[None, :]
    y = pixel_centre(p // W, H, DT)[None, :]
    gx = tl.load(gc_ptr + maps * 2, mask=mmask, other=0.0)[:, None]
    gy = tl.load(gc_ptr + maps * 2 + 1, mask=mmask, other=0.0)[:, None]
    cx = tl.load(coords_ptr + maps * 2, mask=mmask, other=0.0)[:, None]
    cy = tl.load(coords_ptr + maps * 2 + 1, mask=mmask, other=0.0)[:, None]
    st0 = tl.load(stats_ptr + maps * 2, mask=mmask, other=0.0)[:, None]
    st1 = tl.load(stats_ptr + maps * 2 + 1, mask=mmask, other=1.0)[:, None]
    one = tl.full([BLOCK_M, 1], 1.0, DT)
    if SOFTMAX:
        # d c / d h(p) = q(p) / T (p - c)
        inv_t = reciprocal_of_bits(temp_bits, DT)
        h = tl.load(h_ptr + offs, mask=msk, other=0.0)
        q = tl.exp(h * inv_t - st0) * div_rn(one, st1)
        g = q * inv_t * (gx * x + gy * y - (gx * cx + gy * cy))
    else:
        # c = sum h p / n, n = max(sum h, 1e-12): d c / d h(p) = (p - c) / n, or p / n where the
        # floor is active (n then does not depend on h)
        floored = ~(st0 >= tl.full([BLOCK_M, 1], SUM_FLOOR, DT))
        base_term = tl.where(floored, 0.0, -(gx * cx + gy * cy))
        g = (gx * x + gy * y + base_term) * div_rn(one, st1)
    tl.store(out_ptr + offs, g, mask=msk)


_fwd_tuned = triton.autotune(
    configs=_config.autotune_configs(_config.SOFT_ARGMAX_FWD), key=["M", "H", "W"],
)(_soft_argmax_fwd_kernel)
_bwd_tuned = triton.autotune(
    configs=_config.autotune_configs(_config.SOFT_ARGMAX_BWD), key=["M", "H", "W"],
)(_soft_argmax_bwd_kernel)


def _interpret_blocks(M, HW):
    bp = min(_config.next_pow2(HW), _config.INTERPRET_MAX_PIXELS)
    bm = min(_config.next_pow2(M), max(_config.INTERPRET_MAX_PIXELS * 4 // bp, 1))
    return bm, bp


def forward(heatmaps, temperature, softmax):
    B, K, H, W = heatmaps.shape
    M = B * K
    coords = torch.empty((B, K, 2), dtype=heatmaps.dtype, device=heatmaps.device)
    stats = torch.empty((B, K, 2), dtype=heatmaps.dtype, device=heatmaps.device)
    if M == 0:
        return coords, stats
    args = (heatmaps, coords, stats, M, H, W, H * W, _config.f64_bits(temperature))
    int64 = _config.use_int64(M * H * W)
    if _config.INTERPRET:
        bm, bp = _interpret_blocks(M, H * W)
        _soft_argmax_fwd_kernel[(triton.cdiv(M, bm),)](*args, SOFTMAX=softmax, BLOCK_M=bm,
                                                       BLOCK_P=bp, INT64=int64)
    else:
        _fwd_tuned[lambda meta: (triton.cdiv(M, meta["BLOCK_M"]),)](*args, SOFTMAX=softmax,
                                                                    INT64=int64)
    return coords, stats


def backward(grad_coords, heatmaps, coords, stats, temperature, softmax):
    B, K, H, W = heatmaps.shape
    M = B * K
    grad = torch.empty_like(heatmaps)
    if grad.numel() == 0:
        return grad
    args = (grad_coords, heatmaps, coords, stats, grad, M, H, W, H * W,
            _config.f64_bits(temperature))
    int64 = _config.use_int64(M * H * W)

    def grid(meta):
        return (triton.cdiv(M, meta["BLOCK_M"]) * triton.cdiv(H * W, meta["BLOCK_P"]),)

    if _config.INTERPRET:
        bm, bp = _interpret_blocks(M, H * W)
        _soft_argmax_bwd_kernel[grid({"BLOCK_M": bm, "BLOCK_P": bp})](
            *args, SOFTMAX=softmax, BLOCK_M=bm, BLOCK_P=bp, INT64=int64)
    else:
        _bwd_tuned[grid](*args, SOFTMAX=softmax, INT64=int64)
    return grad
