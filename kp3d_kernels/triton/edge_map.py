"""Triton edge map, forward and backward (docs/kernels.md; semantics of csrc/cpu/edge_map.cpp).

Three launches forward and backward alike, all O(B E) or O(B H W):

1. `_segment_kernel`: the per-edge constants of every (sample, edge) -- start point, direction,
   1 / (|v|^2 + 1e-12), -log w and w -- into a (B, E, 8) scratch buffer, so that the pixel
   kernels load them (once per tile and edge) instead of recomputing a division and a log.
2. `_edge_map_fwd_kernel`: one program per pixel tile; the running best of
   cost_e = f_e - log w_e over the edges, one exp per pixel at the end, the winning edge
   saved per pixel (int32).
3. `_edge_map_bwd_kernel`: one program per pixel tile; each pixel recomputes only its winning
   edge's projection and gradient, the tile reduces them per distinct winning edge, and each
   (tile, edge) pair does one atomic add per output value.

See docs/triton-kernels.md for the design and the arithmetic.
"""

import os

import torch
import triton
import triton.language as tl

from . import _config
from ._math import div_rn, pixel_centre, reciprocal_of_bits, sqrt_rn

SEG_STRIDE = 8  # ax, ay, vx, vy, inv_len2, neg_log_w, w, (pad)
BIG = tl.constexpr(2147483647)  # "no edge" in the int32 index reductions
PROBE_BLOCK = tl.constexpr(64)  # edges per step of the culling probe's bound scan


# ---- per-edge constants ------------------------------------------------------------------------

@triton.jit
def _segment_kernel(kp_ptr, w_ptr, edges_ptr, seg_ptr, K, E, total,
                    BLOCK: tl.constexpr, INT64: tl.constexpr):
    offs = tl.arange(0, BLOCK)
    if INT64:
        offs = offs.to(tl.int64) + tl.program_id(0).to(tl.int64) * BLOCK
    else:
        offs = offs + tl.program_id(0) * BLOCK
    mask = offs < total
    b = offs // E
    e = offs % E
    ia = tl.load(edges_ptr + 2 * e, mask=mask, other=0)
    ib = tl.load(edges_ptr + 2 * e + 1, mask=mask, other=0)
    # Indices are validated by the Python layer; one out of range (possible only with unchecked
    # edges under torch.compile) yields a NaN edge instead of an out-of-bounds read.
    ok = mask & (ia >= 0) & (ia < K) & (ib >= 0) & (ib < K)
    kp = kp_ptr + b * K * 2
    ax = tl.load(kp + 2 * ia, mask=ok, other=float("nan"))
    ay = tl.load(kp + 2 * ia + 1, mask=ok, other=float("nan"))
    bx = tl.load(kp + 2 * ib, mask=ok, other=float("nan"))
    by = tl.load(kp + 2 * ib + 1, mask=ok, other=float("nan"))
    w = tl.load(w_ptr + offs, mask=mask, other=0.0)
    vx = bx - ax
    vy = by - ay
    inv_len2 = div_rn(tl.full(vx.shape, 1.0, vx.dtype), vx * vx + vy * vy + 1e-12)
    # w > 0: -log w; w == 0: +inf (never wins unless every edge has w == 0); w < 0 or NaN: NaN.
    neg_log_w = tl.where(w > 0, -tl.log(tl.where(w > 0, w, 1.0)),
                         tl.where(w == 0, float("inf"), float("nan")))
    out = seg_ptr + offs * 8
    tl.store(out + 0, ax, mask=mask)
    tl.store(out + 1, ay, mask=mask)
    tl.store(out + 2, vx, mask=mask)
    tl.store(out + 3, vy, mask=mask)
    tl.store(out + 4, inv_len2, mask=mask)
    tl.store(out + 5, neg_log_w, mask=mask)
    tl.store(out + 6, w, mask=mask)


# ---- shared device code ------------------------------------------------------------------------

@triton.jit
def _tile(pid, B, H, W, BLOCK_H: tl.constexpr, BLOCK_W: tl.constexpr, INT64: tl.constexpr):
    """Sample b, and the rows, columns, mask and flat offsets of this program's pixel tile."""
    tiles_w = tl.cdiv(W, BLOCK_W)
    tiles = tl.cdiv(H, BLOCK_H) * tiles_w
    b = pid // tiles
    t = pid % tiles
    idx = tl.arange(0, BLOCK_H * BLOCK_W)
    r = (t // tiles_w) * BLOCK_H + idx // BLOCK_W
    c = (t % tiles_w) * BLOCK_W + idx % BLOCK_W
    mask = (r < H) & (c < W)
    if INT64:
        offs = (b.to(tl.int64) * H + r) * W + c
    else:
        offs = (b * H + r) * W + c
    return b, r, c, mask, offs


@triton.jit
def _project(px, py, ax, ay, vx, vy, inv_len2):
    """segment_math.h project: t clamped to [0, 1] (NaN kept) and the residual r = p - P_a - t v."""
    dx = px - ax
    dy = py - ay
    t = (dx * vx + dy * vy) * inv_len2
    t = tl.clamp(t, 0.0, 1.0, propagate_nan=tl.PropagateNan.ALL)
    return t, dx - t * vx, dy - t * vy


@triton.jit
def _falloff_exponent(rx, ry, inv_sigma, GAUSSIAN: tl.constexpr):
    """f = d^2 / sigma (gaussian: no square root) or d / sigma."""
    d2 = rx * rx + ry * ry
    if GAUSSIAN:
        f = d2 * inv_sigma
    else:
        f = tl.sqrt(d2) * inv_sigma
    return f


@triton.jit
def _cost(px, py, ax, ay, vx, vy, inv_len2, neg_log_w, inv_sigma, GAUSSIAN: tl.constexpr):
    """f_e(p) - log w_e."""
    t, rx, ry = _project(px, py, ax, ay, vx, vy, inv_len2)
    return _falloff_exponent(rx, ry, inv_sigma, GAUSSIAN) + neg_log_w


@triton.jit
def _tile_bound(ax, ay, vx, vy, il, nl, bx0, bx1, by0, by1, inv_sigma, GAUSSIAN: tl.constexpr,
                DT: tl.constexpr):
    """segment_math.h tile_cost_bound: a lower bound, valid in the rounding of DT, on the cost
    f - log w of the segment at every pixel centre in the box [bx0, bx1] x [by0, by1] (float64
    scalars), from the distance between the segment and the box less a rounding margin; -inf
    for an edge the analysis does not cover (never culled). See docs/kernels.md."""
    if DT == tl.float32:
        eps = 1.1920929e-7
    else:
        eps = 2.220446049250313e-16
    axd = ax.to(tl.float64)
    ayd = ay.to(tl.float64)
    vxd = vx.to(tl.float64)
    vyd = vy.to(tl.float64)
    ild = il.to(tl.float64)
    nld = nl.to(tl.float64)
    limit = 1048576.0
    ok = ((axd - axd == 0) & (ayd - ayd == 0) & (vxd - vxd == 0) & (vyd - vyd == 0)
          & (ild - ild == 0) & (tl.abs(axd) <= limit) & (tl.abs(ayd) <= limit)
          & (tl.abs(vxd) <= limit) & (tl.abs(vyd) <= limit) & ((nld - nld == 0) | (nld > 0)))
    ex = axd + vxd
    ey = ayd + vyd
    x0 = tl.minimum(axd, ex)
    x1 = tl.maximum(axd, ex)
    y0 = tl.minimum(ayd, ey)
    y1 = tl.maximum(ayd, ey)
    gx = tl.maximum(tl.maximum(x0 - bx1, bx0 - x1), 0.0)
    gy = tl.maximum(tl.maximum(y0 - by1, by0 - y1), 0.0)
    d_box = tl.sqrt(gx * gx + gy * gy)
    length = tl.sqrt(vxd * vxd + vyd * vyd)
    has_normal = length > 1e-150
    safe = tl.where(has_normal, length, 1.0)
    nx = tl.where(has_normal, -vyd / safe, 0.0)
    ny = tl.where(has_normal, vxd / safe, 0.0)
    cx = 0.5 * (bx0 + bx1)
    cy = 0.5 * (by0 + by1)
    hx = 0.5 * (bx1 - bx0)
    hy = 0.5 * (by1 - by0)
    d_normal = tl.abs(nx * (cx - axd) + ny * (cy - ayd)) - (hx * tl.abs(nx) + hy * tl.abs(ny))
    margin = 32.0 * eps * (1.0 + tl.abs(axd) + tl.abs(ayd) + tl.abs(vxd) + tl.abs(vyd))
    d = tl.maximum(tl.maximum(d_box, d_normal) - margin, 0.0)
    d2 = (d * d * (1.0 - 8.0 * eps)).to(DT)
    if GAUSSIAN:
        f = d2 * inv_sigma
    else:
        f = sqrt_rn(d2) * inv_sigma
    bound = f + nl
    return tl.where(ok, bound, float("-inf"))


@triton.jit
def _worst(best):
    """The largest value of the tile, NaN if any is NaN."""
    has_nan = tl.max((best != best).to(tl.int32), axis=0) > 0
    return tl.where(has_nan, float("nan"), tl.max(tl.where(best != best, 0.0, best), axis=0))


# ---- forward -----------------------------------------------------------------------------------

@triton.jit(do_not_specialize=["sigma_bits"])
def _edge_map_fwd_kernel(seg_ptr, out_ptr, win_ptr, B, H, W, E, sigma_bits,
                         GAUSSIAN: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_W: tl.constexpr,
                         BLOCK_E: tl.constexpr, INT64: tl.constexpr, CULL: tl.constexpr):
    DT: tl.constexpr = seg_ptr.dtype.element_ty
    b, r, c, mask, offs = _tile(tl.program_id(0), B, H, W, BLOCK_H, BLOCK_W, INT64)
    px = pixel_centre(c, W, DT)
    py = pixel_centre(r, H, DT)
    inv_sigma = reciprocal_of_bits(sigma_bits, DT)
    if INT64:
        seg = seg_ptr + b.to(tl.int64) * E * 8
    else:
        seg = seg_ptr + b * E * 8
    best = tl.full([BLOCK_H * BLOCK_W], float("inf"), DT)
    arg = tl.zeros([BLOCK_H * BLOCK_W], tl.int32)

    # Culling (docs/kernels.md, "Exact culling"): `worst` is an upper bound on every pixel's
    # final best cost (the largest cost of a probe edge -- the edge of smallest bound -- over the
    # tile, then the largest current best); an edge whose bound is strictly above it can neither
    # win nor tie anywhere in the tile and is skipped. The visiting order stays the edge order.
    worst = tl.full([], float("inf"), DT)
    if CULL:
        # the box of the tile's pixel centres (pixel_centre is monotone in the index)
        tiles_w = tl.cdiv(W, BLOCK_W)
        t = tl.program_id(0) % (tl.cdiv(H, BLOCK_H) * tiles_w)
        r_lo = (t // tiles_w) * BLOCK_H
        c_lo = (t % tiles_w) * BLOCK_W
        r_hi = tl.minimum(r_lo + BLOCK_H, H) - 1
        c_hi = tl.minimum(c_lo + BLOCK_W, W) - 1
        bx0 = pixel_centre(c_lo, W, DT).to(tl.float64)
        bx1 = pixel_centre(c_hi, W, DT).to(tl.float64)
        by0 = pixel_centre(r_lo, H, DT).to(tl.float64)
        by1 = pixel_centre(r_hi, H, DT).to(tl.float64)
        # the probe: the edge of smallest bound (the lowest index among equal bounds)
        lmin = tl.full([], float("inf"), DT)
        first = tl.full([], 0, tl.int32)
        for p0 in range(0, E, PROBE_BLOCK):
            eo = p0 + tl.arange(0, PROBE_BLOCK)
            em = eo < E
            sp = seg + eo * 8
            bnd = _tile_bound(tl.load(sp + 0, mask=em, other=0.0), tl.load(sp + 1, mask=em, other=0.0),
                              tl.load(sp + 2, mask=em, other=0.0), tl.load(sp + 3, mask=em, other=0.0),
                              tl.load(sp + 4, mask=em, other=0.0),
                              tl.load(sp + 5, mask=em, other=float("inf")),
                              bx0, bx1, by0, by1, inv_sigma, GAUSSIAN, DT)
            bnd = tl.where(em, bnd, float("inf"))
            cmin = tl.min(bnd, axis=0)
            cidx = tl.min(tl.where(bnd == cmin, eo, BIG), axis=0)
            take = cmin < lmin
            first = tl.where(take, cidx, first)
            lmin = tl.where(take, cmin, lmin)
        sf = seg + first * 8
        probe = _cost(px, py, tl.load(sf + 0), tl.load(sf + 1), tl.load(sf + 2), tl.load(sf + 3),
                      tl.load(sf + 4), tl.load(sf + 5), inv_sigma, GAUSSIAN)
        worst = _worst(tl.where(mask, probe, float("-inf")))

    if BLOCK_E == 1:
        # GPU path: one edge at a time, its constants loaded once per tile as uniform scalars
        # (the other resident warps hide their L1 latency; a manual prefetch into the next
        # iteration only added register moves in the compiled loop).
        for e in range(E):
            s = seg + e * 8
            ax = tl.load(s + 0)
            ay = tl.load(s + 1)
            vx = tl.load(s + 2)
            vy = tl.load(s + 3)
            il = tl.load(s + 4)
            nl = tl.load(s + 5)
            if CULL:
                if e % 8 == 0:  # refresh: the largest current best, when it is lower
                    current = _worst(tl.where(mask, best, float("-inf")))
                    worst = tl.where(current < worst, current, worst)
                bnd = _tile_bound(ax, ay, vx, vy, il, nl, bx0, bx1, by0, by1, inv_sigma,
                                  GAUSSIAN, DT)
                visit = (bnd > worst) == 0  # else the edge can neither win nor tie here
            else:
                visit = True
            if visit:
                cost = _cost(px, py, ax, ay, vx, vy, il, nl, inv_sigma, GAUSSIAN)
                # segment_math.h `better`: strictly smaller wins (ties keep the lowest e), the
                # first NaN wins and sticks.
                if DT == tl.float32:
                    # A NaN-propagating min keeps the exact running value; the winner changes
                    # iff the min's bits changed (min(NaN, x) is the same NaN, so a later NaN
                    # never replaces the first). Three instructions per pixel and edge.
                    new = tl.minimum(best, cost, propagate_nan=tl.PropagateNan.ALL)
                    take = new.to(tl.int32, bitcast=True) != best.to(tl.int32, bitcast=True)
                    best = new
                else:
                    take = (cost < best) | ((cost != cost) & (best == best))
                    best = tl.where(take, cost, best)
                arg = tl.where(take, e, arg)
    else:
        # Interpreter path: BLOCK_E edges x all pixels of the tile per vectorised step.
        first_nan = tl.full([BLOCK_H * BLOCK_W], BIG, tl.int32)
        for e0 in range(0, E, BLOCK_E):
            eo = e0 + tl.arange(0, BLOCK_E)
            em = eo < E
            s = seg + eo * 8
            ax = tl.load(s + 0, mask=em, other=0.0)[:, None]
            ay = tl.load(s + 1, mask=em, other=0.0)[:, None]
            vx = tl.load(s + 2, mask=em, other=0.0)[:, None]
            vy = tl.load(s + 3, mask=em, other=0.0)[:, None]
            il = tl.load(s + 4, mask=em, other=0.0)[:, None]
            nl = tl.load(s + 5, mask=em, other=float("inf"))[:, None]  # padding never wins
            if CULL:
                current = _worst(tl.where(mask, best, float("-inf")))
                worst = tl.where(current < worst, current, worst)
                bnd = _tile_bound(ax, ay, vx, vy, il, nl, bx0, bx1, by0, by1, inv_sigma,
                                  GAUSSIAN, DT)
                # a skipped edge costs +inf (never taken: `take` is strict, ties keep the lower
                # index, and a skipped edge's cost is never NaN)
                nl = tl.where(bnd > worst, float("inf"), nl)
            cost = _cost(px[None, :], py[None, :], ax, ay, vx, vy, il, nl, inv_sigma, GAUSSIAN)
            is_nan = cost != cost
            key = tl.where(is_nan, float("inf"), cost)
            cmin = tl.min(key, axis=0)
            carg = tl.min(tl.where(key == cmin[None, :], eo[:, None], BIG), axis=0)
            take = cmin < best
            best = tl.where(take, cmin, best)
            arg = tl.where(take, carg, arg)
            first_nan = tl.minimum(first_nan, tl.min(tl.where(is_nan, eo[:, None], BIG), axis=0))
        has_nan = first_nan < BIG
        arg = tl.where(has_nan, first_nan, arg)
        best = tl.where(has_nan, float("nan"), best)

    tl.store(out_ptr + offs, tl.exp(-best), mask=mask)
    tl.store(win_ptr + offs, arg, mask=mask)


# ---- backward ----------------------------------------------------------------------------------

@triton.jit
def _segmented_add5(fa, a0, a1, a2, a3, a4, fb, b0, b1, b2, b3, b4):
    """The combine of a segmented inclusive scan: (flag, values); a flagged right operand
    starts a new segment."""
    return (fa | fb, tl.where(fb != 0, b0, a0 + b0), tl.where(fb != 0, b1, a1 + b1),
            tl.where(fb != 0, b2, a2 + b2), tl.where(fb != 0, b3, a3 + b3),
            tl.where(fb != 0, b4, a4 + b4))


@triton.jit
def _add5_min(a0, a1, a2, a3, a4, a5, b0, b1, b2, b3, b4, b5):
    return a0 + b0, a1 + b1, a2 + b2, a3 + b3, a4 + b4, tl.minimum(a5, b5)


@triton.jit(do_not_specialize=["sigma_bits"])
def _edge_map_bwd_kernel(go_ptr, win_ptr, seg_ptr, edges_ptr, gkp_ptr, gw_ptr, B, H, W, K, E,
                         sigma_bits, GAUSSIAN: tl.constexpr, BLOCK_H: tl.constexpr,
                         BLOCK_W: tl.constexpr, BLOCK_E: tl.constexpr,
                         FUSED_REDUCE: tl.constexpr, INT64: tl.constexpr):
    DT: tl.constexpr = seg_ptr.dtype.element_ty
    b, r, c, mask, offs = _tile(tl.program_id(0), B, H, W, BLOCK_H, BLOCK_W, INT64)
    px = pixel_centre(c, W, DT)
    py = pixel_centre(r, H, DT)
    inv_sigma = reciprocal_of_bits(sigma_bits, DT)
    if INT64:
        b64 = b.to(tl.int64)
    else:
        b64 = b
    seg = seg_ptr + b64 * E * 8

    g = tl.load(go_ptr + offs, mask=mask, other=0.0)
    e = tl.load(win_ptr + offs, mask=mask, other=-1)
    valid = mask & (e >= 0) & (e < E)  # a winner out of range is ignored, never dereferenced
    s = seg + tl.where(valid, e, 0) * 8
    ax = tl.load(s + 0, mask=valid, other=0.0)
    ay = tl.load(s + 1, mask=valid, other=0.0)
    vx = tl.load(s + 2, mask=valid, other=0.0)
    vy = tl.load(s + 3, mask=valid, other=0.0)
    il = tl.load(s + 4, mask=valid, other=0.0)
    w = tl.load(s + 6, mask=valid, other=0.0)

    # segment_math.h project + edge_grad for the winning edge only.
    t, rx, ry = _project(px, py, ax, ay, vx, vy, il)
    ex = tl.exp(-_falloff_exponent(rx, ry, inv_sigma, GAUSSIAN))
    # Inside the segment r is orthogonal to v in exact arithmetic; project out the rounding
    # error along v, which would turn the gradient direction r/d near the segment, and treat
    # what is left below the rounding level of the inputs as d = 0 (segment_math.h edge_grad).
    if DT == tl.float32:
        eps = 1.1920929e-7
    else:
        eps = 2.220446049250313e-16
    noise = 8.0 * eps * (tl.abs(rx) + tl.abs(ry) + tl.abs(vx) + tl.abs(vy))
    along = (rx * vx + ry * vy) * il
    inside = (t > 0) & (t < 1)
    rx_c = rx - along * vx
    ry_c = ry - along * vy
    inside_noise = inside & (rx_c * rx_c + ry_c * ry_c <= noise * noise)
    rx = tl.where(inside_noise, 0.0, tl.where(inside, rx_c, rx))
    ry = tl.where(inside_noise, 0.0, tl.where(inside, ry_c, ry))
    if GAUSSIAN:
        coef = -2.0 * (w * ex) * inv_sigma
    else:
        d = tl.sqrt(rx * rx + ry * ry)
        coef = tl.where(d > 0, -(w * ex) * inv_sigma / tl.where(d > 0, d, 1.0), 0.0)
    gx = g * coef * rx
    gy = g * coef * ry
    g_w = tl.where(valid, g * ex, 0.0)
    g_ax = tl.where(valid, -(1.0 - t) * gx, 0.0)
    g_ay = tl.where(valid, -(1.0 - t) * gy, 0.0)
    g_bx = tl.where(valid, -t * gx, 0.0)
    g_by = tl.where(valid, -t * gy, 0.0)

    if INT64:
        gw_b = gw_ptr + b64 * E
        gkp_b = gkp_ptr + b64 * K * 2
    else:
        gw_b = gw_ptr + b * E
        gkp_b = gkp_ptr + b * K * 2
    key = tl.where(valid, e, BIG)
    if BLOCK_E == -1:
        # Segmented reduction: the tile's (winning edge, pixel) pairs sorted by edge, a
        # segmented inclusive scan of the five values in that order, and one relaxed atomic
        # add per output value at the last pixel of each edge's run. A fixed number of steps
        # whatever the number of distinct winners.
        N: tl.constexpr = BLOCK_H * BLOCK_W
        idx = tl.arange(0, N)
        packed = tl.sort((key.to(tl.int64) << 32) | idx.to(tl.int64), 0)
        skey = (packed >> 32).to(tl.int32)
        sidx = (packed - (skey.to(tl.int64) << 32)).to(tl.int32)
        nxt = tl.gather(skey, tl.minimum(idx + 1, N - 1), 0)
        prv = tl.gather(skey, tl.maximum(idx - 1, 0), 0)
        head = ((idx == 0) | (skey != prv)).to(tl.int32)
        tail = ((idx == N - 1) | (skey != nxt)) & (skey < BIG)
        _, s_w, s_ax, s_ay, s_bx, s_by = tl.associative_scan(
            (head, tl.gather(g_w, sidx, 0), tl.gather(g_ax, sidx, 0), tl.gather(g_ay, sidx, 0),
             tl.gather(g_bx, sidx, 0), tl.gather(g_by, sidx, 0)), 0, _segmented_add5)
        sk = tl.where(tail, skey, 0)
        ia = tl.load(edges_ptr + 2 * sk, mask=tail, other=-1)
        ib = tl.load(edges_ptr + 2 * sk + 1, mask=tail, other=-1)
        ka = tail & (ia >= 0) & (ia < K)
        kb = tail & (ib >= 0) & (ib < K)
        tl.atomic_add(gw_b + sk, s_w, mask=tail, sem="relaxed")
        tl.atomic_add(gkp_b + ia * 2, s_ax, mask=ka, sem="relaxed")
        tl.atomic_add(gkp_b + ia * 2 + 1, s_ay, mask=ka, sem="relaxed")
        tl.atomic_add(gkp_b + ib * 2, s_bx, mask=kb, sem="relaxed")
        tl.atomic_add(gkp_b + ib * 2 + 1, s_by, mask=kb, sem="relaxed")
    elif BLOCK_E == 0:
        # GPU path: one iteration per distinct winning edge of the tile, in increasing edge
        # order: masked sums over the tile, then one atomic add per output value.
        cur = tl.min(key, axis=0)
        while cur < BIG:
            sel = key == cur
            later = tl.where(key > cur, key, BIG)
            if FUSED_REDUCE:
                # one reduction (one set of barriers) for the five sums and the next edge
                s_w, s_ax, s_ay, s_bx, s_by, nxt = tl.reduce(
                    (tl.where(sel, g_w, 0.0), tl.where(sel, g_ax, 0.0), tl.where(sel, g_ay, 0.0),
                     tl.where(sel, g_bx, 0.0), tl.where(sel, g_by, 0.0), later), 0, _add5_min)
            else:
                s_w = tl.sum(tl.where(sel, g_w, 0.0), axis=0)
                s_ax = tl.sum(tl.where(sel, g_ax, 0.0), axis=0)
                s_ay = tl.sum(tl.where(sel, g_ay, 0.0), axis=0)
                s_bx = tl.sum(tl.where(sel, g_bx, 0.0), axis=0)
                s_by = tl.sum(tl.where(sel, g_by, 0.0), axis=0)
                nxt = tl.min(later, axis=0)
            ia = tl.load(edges_ptr + 2 * cur)
            ib = tl.load(edges_ptr + 2 * cur + 1)
            ka = (ia >= 0) & (ia < K)
            kb = (ib >= 0) & (ib < K)
            tl.atomic_add(gw_b + cur, s_w)
            tl.atomic_add(gkp_b + ia * 2, s_ax, mask=ka)
            tl.atomic_add(gkp_b + ia * 2 + 1, s_ay, mask=ka)
            tl.atomic_add(gkp_b + ib * 2, s_bx, mask=kb)
            tl.atomic_add(gkp_b + ib * 2 + 1, s_by, mask=kb)
            cur = nxt
    else:
        # Interpreter path: BLOCK_E edges x the tile's pixels per vectorised step (one-hot
        # masked sums), then vector atomics for the edges that won a pixel of the tile.
        for e0 in range(0, E, BLOCK_E):
            eo = e0 + tl.arange(0, BLOCK_E)
            sel = key[None, :] == eo[:, None]
            s_w = tl.sum(tl.where(sel, g_w[None, :], 0.0), axis=1)
            s_ax = tl.sum(tl.where(sel, g_ax[None, :], 0.0), axis=1)
            s_ay = tl.sum(tl.where(sel, g_ay[None, :], 0.0), axis=1)
            s_bx = tl.sum(tl.where(sel, g_bx[None, :], 0.0), axis=1)
            s_by = tl.sum(tl.where(sel, g_by[None, :], 0.0), axis=1)
            hit = tl.sum(sel.to(tl.int32), axis=1) > 0
            ia = tl.load(edges_ptr + 2 * eo, mask=hit, other=-1)
            ib = tl.load(edges_ptr + 2 * eo + 1, mask=hit, other=-1)
            ka = hit & (ia >= 0) & (ia < K)
            kb = hit & (ib >= 0) & (ib < K)
            tl.atomic_add(gw_b + eo, s_w, mask=hit)
            tl.atomic_add(gkp_b + ia * 2, s_ax, mask=ka)
            tl.atomic_add(gkp_b + ia * 2 + 1, s_ay, mask=ka)
            tl.atomic_add(gkp_b + ib * 2, s_bx, mask=kb)
            tl.atomic_add(gkp_b + ib * 2 + 1, s_by, mask=kb)


_edge_map_fwd_tuned = triton.autotune(
    configs=_config.autotune_configs(_config.EDGE_MAP_FWD), key=["H", "W", "E"],
)(_edge_map_fwd_kernel)

_edge_map_bwd_tuned = triton.autotune(
    configs=_config.autotune_configs(_config.EDGE_MAP_BWD), key=["H", "W", "E"],
    reset_to_zero=["gkp_ptr", "gw_ptr"],  # the autotuner's trial runs add into the outputs
)(_edge_map_bwd_kernel)


# ---- launchers ---------------------------------------------------------------------------------

def _interpret_tile(H, W):
    bw = min(_config.next_pow2(W), _config.INTERPRET_MAX_PIXELS)
    bh = min(_config.next_pow2(H), max(_config.INTERPRET_MAX_PIXELS // bw, 1))
    return bh, bw


def segments(keypoints, weights, edges):
    """(B, E, 8) per-edge constants (see SEG_STRIDE)."""
    B, K, _ = keypoints.shape
    E = edges.shape[0]
    seg = torch.empty((B, E, SEG_STRIDE), dtype=keypoints.dtype, device=keypoints.device)
    total = B * E
    block = min(_config.next_pow2(total), 4096 if _config.INTERPRET else 256)
    _segment_kernel[(triton.cdiv(total, block),)](
        keypoints, weights, edges, seg, K, E, total, BLOCK=block,
        INT64=_config.use_int64(total * SEG_STRIDE, B * K * 2))
    return seg


def culling_enabled():
    """The forward culls unless KP3D_EDGE_MAP_CULL=0 (read at each call; the tests compare the
    two bit for bit)."""
    return os.environ.get("KP3D_EDGE_MAP_CULL") != "0"


def forward(keypoints, weights, edges, height, width, sigma, gaussian, *, sequential=None,
            cull=None):
    """Launch the forward. `sequential` forces the GPU (True) or interpreter (False) edge loop;
    `cull` the per-tile culling (default: culling_enabled())."""
    if cull is None:
        cull = culling_enabled()
    B = keypoints.shape[0]
    E = edges.shape[0]
    out = torch.empty((B, height, width), dtype=keypoints.dtype, device=keypoints.device)
    winner = torch.empty((B, height, width), dtype=torch.int32, device=keypoints.device)
    if out.numel() == 0:
        return out, winner
    seg = segments(keypoints, weights, edges)
    int64 = _config.use_int64(B * height * width, B * E * SEG_STRIDE)
    bits = _config.f64_bits(sigma)
    if sequential is None:
        sequential = not _config.INTERPRET
    if _config.INTERPRET:
        bh, bw = _interpret_tile(height, width)
        block_e = 1 if sequential else min(_config.next_pow2(E),
                                           max(_config.INTERPRET_MAX_PAIRS // (bh * bw), 1))
        grid = (B * triton.cdiv(height, bh) * triton.cdiv(width, bw),)
        _edge_map_fwd_kernel[grid](seg, out, winner, B, height, width, E, bits,
                                   GAUSSIAN=gaussian, BLOCK_H=bh, BLOCK_W=bw, BLOCK_E=block_e,
                                   INT64=int64, CULL=cull)
    else:
        def grid(meta):
            return (B * triton.cdiv(height, meta["BLOCK_H"]) * triton.cdiv(width, meta["BLOCK_W"]),)

        _edge_map_fwd_tuned[grid](seg, out, winner, B, height, width, E, bits, GAUSSIAN=gaussian,
                                  BLOCK_E=1 if sequential else 16, INT64=int64, CULL=cull)
    return out, winner


def backward(grad_out, keypoints, weights, edges, winner, sigma, gaussian, *, mode=None):
    """Launch the backward. `mode` forces the per-tile reduction: "fused" (the GPU default: one
    loop iteration per distinct winning edge, one fused reduction each), "loop" (the same loop,
    separate reductions), "segmented" (sort by winning edge, a segmented scan, one relaxed atomic
    per edge and value; not yet measured on a GPU) or "onehot" (the interpreter default: masked
    sums over edge chunks)."""
    B, K, _ = keypoints.shape
    E = edges.shape[0]
    H, W = winner.shape[1], winner.shape[2]
    # The kernel accumulates with atomics, in the dtype of the inputs.
    grad_kp = torch.zeros_like(keypoints)
    grad_w = torch.zeros_like(weights)
    if winner.numel() == 0:
        return grad_kp, grad_w
    seg = segments(keypoints, weights, edges)
    int64 = _config.use_int64(B * H * W, B * E * SEG_STRIDE, B * K * 2)
    bits = _config.f64_bits(sigma)
    if mode is None:
        mode = "onehot" if _config.INTERPRET else "fused"
    fused = mode == "fused"
    args = (grad_out, winner, seg, edges, grad_kp, grad_w, B, H, W, K, E, bits)
    if _config.INTERPRET:
        bh, bw = _interpret_tile(H, W)
        block_e = {"segmented": -1, "onehot": min(
            _config.next_pow2(E), max(_config.INTERPRET_MAX_PAIRS // (bh * bw), 1))}.get(mode, 0)
        grid = (B * triton.cdiv(H, bh) * triton.cdiv(W, bw),)
        _edge_map_bwd_kernel[grid](*args, GAUSSIAN=gaussian, BLOCK_H=bh, BLOCK_W=bw,
                                   BLOCK_E=block_e, FUSED_REDUCE=fused, INT64=int64)
    else:
        def grid(meta):
            return (B * triton.cdiv(H, meta["BLOCK_H"]) * triton.cdiv(W, meta["BLOCK_W"]),)

        _edge_map_bwd_tuned[grid](*args, GAUSSIAN=gaussian,
                                  BLOCK_E={"segmented": -1, "onehot": 16}.get(mode, 0),
                                  FUSED_REDUCE=fused, INT64=int64)
    return grad_kp, grad_w
