// Fused CUDA spatial soft-argmax (docs/kernels.md).
//
// Forward: one block per heatmap. Each thread walks the map with a stride of the block size and
// keeps an online softmax state (running max m of h/T, and the sums of q = exp(h/T - m), q x,
// q y, rescaled when m grows); the block merges the states (warp shuffles, then one warp over
// the per-warp states). The map is read once. stats = (m, sum of q) for softmax, (sum h,
// max(sum h, 1e-12)) for normalize="sum", as in the CPU kernel.
// Backward: one pass, one block per chunk of kBwdChunk pixels of one map:
//   softmax: dL/dh(p) = q(p) / T (g . (p - c)),   sum: dL/dh(p) = g . (p - c) / n.
//
// Accumulation is in T (float32 for float32 maps): a per-thread running sum over
// H W / kThreads pixels, then a tree across the block.
#include <cmath>

#include "common.cuh"
#include "launchers.h"
#include "segment_math.h"

namespace kp3d::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
constexpr int kBwdChunk = kThreads * 8;  // pixels per block in the backward pass
constexpr double kSumFloor = 1e-12;

template <typename T>
struct Online {
  T m, z, sx, sy;  // running max, sum of q, sum of q x, sum of q y
};

// Merge two online softmax states. m is never NaN (it only grows through `v > m`); a state whose
// max is below the merged one is scaled by exp(m_i - m), which is 0 for m_i = -inf (an empty
// state); equal maxima (also both -inf, or both +inf) are not rescaled.
template <typename T>
__device__ __forceinline__ Online<T> merge_softmax(const Online<T>& a, const Online<T>& b) {
  Online<T> o;
  o.m = a.m > b.m ? a.m : b.m;
  const T sa = a.m == o.m ? T(1) : exp(a.m - o.m);
  const T sb = b.m == o.m ? T(1) : exp(b.m - o.m);
  o.z = a.z * sa + b.z * sb;
  o.sx = a.sx * sa + b.sx * sb;
  o.sy = a.sy * sa + b.sy * sb;
  return o;
}

template <typename T, bool kSoftmax>
__device__ __forceinline__ Online<T> warp_merge(Online<T> s) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) {
    Online<T> o;
    o.m = __shfl_down_sync(kFullMask, s.m, offset);
    o.z = __shfl_down_sync(kFullMask, s.z, offset);
    o.sx = __shfl_down_sync(kFullMask, s.sx, offset);
    o.sy = __shfl_down_sync(kFullMask, s.sy, offset);
    if (kSoftmax) {
      s = merge_softmax(s, o);
    } else {
      s.z += o.z;
      s.sx += o.sx;
      s.sy += o.sy;
    }
  }
  return s;
}

// Walks pixels p, p + kThreads, ... of an H x W map, keeping (row, col) and their centres
// without a division per pixel.
template <typename T>
struct PixelWalk {
  int64_t r, c, dr, dc, H, W;
  T x, y;
  __device__ PixelWalk(int64_t p, int64_t H_, int64_t W_) : H(H_), W(W_) {
    if (W <= 0) {  // an empty map: nothing is walked
      r = c = dr = dc = 0;
      x = y = T(0);
      return;
    }
    r = p / W;
    c = p - r * W;
    dr = kThreads / W;
    dc = kThreads - dr * W;
    x = pixel_centre<T>(c, W);
    y = pixel_centre<T>(r, H);
  }
  __device__ __forceinline__ void advance() {
    const int64_t c0 = c, r0 = r;
    c += dc;
    r += dr;
    if (c >= W) {
      c -= W;
      ++r;
    }
    if (c != c0) x = pixel_centre<T>(c, W);
    if (r != r0) y = pixel_centre<T>(r, H);
  }
};

template <typename T, bool kSoftmax>
__global__ void __launch_bounds__(kThreads)
    soft_argmax_fwd_kernel(const T* __restrict__ heatmaps, int64_t maps, int64_t H, int64_t W,
                           T inv_t, T* __restrict__ coords, T* __restrict__ stats) {
  __shared__ Online<T> part[kWarps];
  const int64_t HW = H * W;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const T neg_inf = -infinity_of<T>();
  for (int64_t map = blockIdx.x; map < maps; map += gridDim.x) {
    const T* hm = heatmaps + map * HW;
    Online<T> s{neg_inf, T(0), T(0), T(0)};
    bool nan = false;
    PixelWalk<T> walk(threadIdx.x, H, W);
    for (int64_t p = threadIdx.x; p < HW; p += kThreads, walk.advance()) {
      const T v = kSoftmax ? hm[p] * inv_t : hm[p];
      if (v != v) nan = true;
      if (kSoftmax) {
        if (v > s.m) {
          const T scale = exp(s.m - v);  // 0 on the first value above -inf
          s.z *= scale;
          s.sx *= scale;
          s.sy *= scale;
          s.m = v;
        }
        // -inf contributes 0 (also while m is still -inf); NaN gives NaN.
        const T q = v == neg_inf ? T(0) : exp(v - s.m);
        s.z += q;
        s.sx += q * walk.x;
        s.sy += q * walk.y;
      } else {
        s.z += v;
        s.sx += v * walk.x;
        s.sy += v * walk.y;
      }
    }
    s = warp_merge<T, kSoftmax>(s);
    // Barrier: `part` is no longer read for the previous map; and the block's NaN vote.
    nan = __syncthreads_or(nan);
    if (lane == 0) part[warp] = s;
    __syncthreads();
    if (warp == 0) {
      s = lane < kWarps ? part[lane] : Online<T>{neg_inf, T(0), T(0), T(0)};
      s = warp_merge<T, kSoftmax>(s);
      if (lane == 0) {
        if (kSoftmax) {
          const T nanv = quiet_nan_of<T>();
          coords[map * 2] = nan ? nanv : s.sx / s.z;
          coords[map * 2 + 1] = nan ? nanv : s.sy / s.z;
          stats[map * 2] = s.m;
          stats[map * 2 + 1] = s.z;
        } else {
          // as the CPU kernel: NaN stays NaN (so the backward is NaN too)
          const T norm = s.z != s.z ? s.z : (s.z >= T(kSumFloor) ? s.z : T(kSumFloor));
          coords[map * 2] = s.sx / norm;
          coords[map * 2 + 1] = s.sy / norm;
          stats[map * 2] = s.z;
          stats[map * 2 + 1] = norm;
        }
      }
    }
  }
}

template <typename T, bool kSoftmax>
__global__ void __launch_bounds__(kThreads)
    soft_argmax_bwd_kernel(const T* __restrict__ grad_coords, const T* __restrict__ heatmaps,
                           const T* __restrict__ coords, const T* __restrict__ stats, int64_t H,
                           int64_t W, int64_t chunks_per_map, int64_t num_blocks, T inv_t,
                           T* __restrict__ grad) {
  const int64_t HW = H * W;
  for (int64_t blk = blockIdx.x; blk < num_blocks; blk += gridDim.x) {
    const int64_t map = blk / chunks_per_map;
    const int64_t p_begin = (blk - map * chunks_per_map) * kBwdChunk;
    const int64_t p_end = p_begin + kBwdChunk < HW ? p_begin + kBwdChunk : HW;
    const T gx = grad_coords[map * 2], gy = grad_coords[map * 2 + 1];
    const T* hm = heatmaps + map * HW;
    T* g = grad + map * HW;
    const int64_t p0 = p_begin + threadIdx.x;
    if (p0 >= p_end) continue;  // no barrier in this kernel
    PixelWalk<T> walk(p0, H, W);
    if (kSoftmax) {
      // d c / d h(p) = q(p) / T (p - c)
      const T cx = coords[map * 2], cy = coords[map * 2 + 1], m = stats[map * 2];
      const T inv_z = T(1) / stats[map * 2 + 1];
      const T base = -(gx * cx + gy * cy);
      for (int64_t p = p0; p < p_end; p += kThreads, walk.advance()) {
        const T q = exp(hm[p] * inv_t - m) * inv_z;
        g[p] = q * inv_t * (gx * walk.x + gy * walk.y + base);
      }
    } else {
      // c = sum h p / n, n = max(sum h, 1e-12): d c / d h(p) = (p - c) / n, or p / n where the
      // floor is active (then n does not depend on h).
      const T n = stats[map * 2 + 1];
      const bool floored = !(stats[map * 2] >= T(kSumFloor));
      const T base = floored ? T(0) : -(gx * coords[map * 2] + gy * coords[map * 2 + 1]);
      const T inv_n = T(1) / n;
      for (int64_t p = p0; p < p_end; p += kThreads, walk.advance())
        g[p] = (gx * walk.x + gy * walk.y + base) * inv_n;
    }
  }
}

}  // namespace

template <typename T>
cudaError_t soft_argmax_fwd(const T* heatmaps, int64_t maps, int64_t H, int64_t W,
                            double temperature, bool softmax, T* coords, T* stats,
                            cudaStream_t stream) {
  if (maps == 0) return cudaSuccess;
  const T inv_t = T(1) / T(temperature);
  const unsigned grid = grid_for(maps);
  if (softmax) {
    soft_argmax_fwd_kernel<T, true><<<grid, kThreads, 0, stream>>>(heatmaps, maps, H, W, inv_t,
                                                                  coords, stats);
  } else {
    soft_argmax_fwd_kernel<T, false><<<grid, kThreads, 0, stream>>>(heatmaps, maps, H, W, inv_t,
                                                                   coords, stats);
  }
  return cudaGetLastError();
}

template <typename T>
cudaError_t soft_argmax_bwd(const T* grad_coords, const T* heatmaps, const T* coords,
                            const T* stats, int64_t maps, int64_t H, int64_t W,
                            double temperature, bool softmax, T* grad_heatmaps,
                            cudaStream_t stream) {
  if (maps == 0 || H == 0 || W == 0) return cudaSuccess;
  const int64_t chunks_per_map = ceil_div(H * W, kBwdChunk);
  const int64_t num_blocks = maps * chunks_per_map;
  const T inv_t = T(1) / T(temperature);
  const unsigned grid = grid_for(num_blocks);
  if (softmax) {
    soft_argmax_bwd_kernel<T, true><<<grid, kThreads, 0, stream>>>(
        grad_coords, heatmaps, coords, stats, H, W, chunks_per_map, num_blocks, inv_t,
        grad_heatmaps);
  } else {
    soft_argmax_bwd_kernel<T, false><<<grid, kThreads, 0, stream>>>(
        grad_coords, heatmaps, coords, stats, H, W, chunks_per_map, num_blocks, inv_t,
        grad_heatmaps);
  }
  return cudaGetLastError();
}

#define KP3D_INSTANTIATE(T)                                                                  \
  template cudaError_t soft_argmax_fwd<T>(const T*, int64_t, int64_t, int64_t, double, bool, \
                                          T*, T*, cudaStream_t);                             \
  template cudaError_t soft_argmax_bwd<T>(const T*, const T*, const T*, const T*, int64_t,   \
                                          int64_t, int64_t, double, bool, T*, cudaStream_t);
KP3D_INSTANTIATE(float)
KP3D_INSTANTIATE(double)
#undef KP3D_INSTANTIATE

}  // namespace kp3d::cuda
