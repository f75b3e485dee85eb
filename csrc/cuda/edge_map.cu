// Fused CUDA edge map, forward and backward.
//
// Forward (culled, the default): one block per tile of kTileH x kTileW pixels of one sample,
// two pixels per thread. The block first finds the edge of smallest lower bound over the tile
// (tile_cost_bound of segment_math.h: from the distance between the segment and the tile's box)
// and evaluates it; then, in chunks of kEdgeChunk edges in edge order, it stages the chunk's
// per-edge constants in shared memory, keeps (compacted, in edge order) only the edges whose
// bound is not strictly above the tile's worst per-pixel best cost, and evaluates those. The
// running best is lex_better: (NaN first, cost, index), so the first edge's visit out of order
// changes nothing; output and winner are bit for bit those of the all-edges kernel, which runs
// with KP3D_EDGE_MAP_CULL=0 (one block per kTile consecutive pixels, every edge). One exp per
// pixel; nothing of size (B, E, H, W) is formed.
//
// Backward (deterministic, no atomics, no memsets): three launches.
// 1. One block per (sample, band of rows). Each pixel recomputes its winning edge's gradient
//    (edge_grad); a warp sums the lanes that share an edge in lane order (shuffles), and warp 0
//    adds the warps' sums, warp after warp, into the block's own row of a (B, bands, E, 5)
//    scratch, which the block zero-fills first.
// 2. One thread per (sample, edge): the bands summed in band order -> grad_weights, and the
//    five totals kept in band 0's row.
// 3. One thread per (sample, keypoint): the totals of the edges that end there, in edge order
//    -> grad_keypoints.
// The order of every sum is fixed, so two runs give the same bits.
#include <cmath>

#include "common.cuh"
#include "launchers.h"
#include "segment_math.h"

namespace kp3d::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kItems = 2;                     // pixels per thread (forward)
constexpr int kTile = kThreads * kItems;      // pixels per block tile (forward)
constexpr int kEdgeChunk = kThreads;          // edges staged in shared memory per pass

constexpr int kWarps = kThreads / 32;
constexpr int kTileW = 32;                    // culled forward: a tile of kTileH x kTileW
constexpr int kTileH = 2 * kWarps;            // pixels, thread (row ty, ty + kWarps; col tx)

// The per-edge constants; an index out of [0, K) (possible only with trusted edges) gives a NaN
// edge instead of an out-of-bounds read.
template <typename T>
__device__ __forceinline__ Segment<T> load_segment(const T* kp, const T* w, const int64_t* edges,
                                                   int64_t K, int64_t e) {
  const int64_t a = edges[2 * e], b = edges[2 * e + 1];
  if (a < 0 || a >= K || b < 0 || b >= K) {
    const T nan = quiet_nan_of<T>();
    return make_segment<T>(nan, nan, nan, nan, w[e]);
  }
  return make_segment<T>(kp[2 * a], kp[2 * a + 1], kp[2 * b], kp[2 * b + 1], w[e]);
}

template <typename T, bool kGaussian>
__global__ void __launch_bounds__(kThreads)
    edge_map_fwd_kernel(const T* __restrict__ keypoints, const T* __restrict__ weights,
                        const int64_t* __restrict__ edges, int64_t K, int64_t E, int64_t H,
                        int64_t W, int64_t tiles_per_sample, int64_t num_tiles, T inv_sigma,
                        T* __restrict__ out, int32_t* __restrict__ winner) {
  __shared__ Segment<T> segs[kEdgeChunk];
  const int64_t HW = H * W;
  for (int64_t tile = blockIdx.x; tile < num_tiles; tile += gridDim.x) {
    const int64_t b = tile / tiles_per_sample;
    const int64_t p0 = (tile - b * tiles_per_sample) * kTile;
    const T* kp = keypoints + b * K * 2;
    const T* w = weights + b * E;

    T px[kItems], py[kItems], best[kItems];
    int32_t arg[kItems];
#pragma unroll
    for (int i = 0; i < kItems; ++i) {
      const int64_t p = p0 + i * kThreads + threadIdx.x;
      const int64_t pc = p < HW ? p : HW - 1;  // a partial tile computes a valid pixel, stores none
      const int64_t r = pc / W, c = pc - r * W;
      px[i] = pixel_centre<T>(c, W);
      py[i] = pixel_centre<T>(r, H);
      best[i] = infinity_of<T>();
      arg[i] = 0;
    }

    for (int64_t e0 = 0; e0 < E; e0 += kEdgeChunk) {
      __syncthreads();  // every thread is done with the previous chunk (or tile)
      if (e0 + threadIdx.x < E) segs[threadIdx.x] = load_segment(kp, w, edges, K, e0 + threadIdx.x);
      __syncthreads();
      const int n = static_cast<int>(E - e0 < kEdgeChunk ? E - e0 : kEdgeChunk);
#pragma unroll 2
      for (int j = 0; j < n; ++j) {
        const Segment<T> s = segs[j];  // the same address in every thread: a broadcast
        const int32_t ej = static_cast<int32_t>(e0 + j);
#pragma unroll
        for (int i = 0; i < kItems; ++i) {
          const T cost = falloff_exponent(project(s, px[i], py[i]), inv_sigma, kGaussian) +
                         s.neg_log_w;
          const bool take = better(cost, best[i]);
          best[i] = take ? cost : best[i];
          arg[i] = take ? ej : arg[i];
        }
      }
    }

#pragma unroll
    for (int i = 0; i < kItems; ++i) {
      const int64_t p = p0 + i * kThreads + threadIdx.x;
      if (p < HW) {
        out[b * HW + p] = exp(-best[i]);
        winner[b * HW + p] = arg[i];
      }
    }
  }
}

// ---- culled forward -----------------------------------------------------------------------------

// The largest of the block's per-pixel best costs, NaN if any is NaN. Every thread calls it; it
// begins with a barrier (so the caller may then overwrite shared memory read before it).
template <typename T>
__device__ __forceinline__ T block_worst(T b0, T b1, T* red, int* red_nan) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  int nan = (b0 != b0) | (b1 != b1);
  T m = b0 > b1 ? b0 : b1;
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) {
    const T o = __shfl_xor_sync(kFullMask, m, offset);
    m = o > m ? o : m;
    nan |= __shfl_xor_sync(kFullMask, nan, offset);
  }
  __syncthreads();
  if (lane == 0) {
    red[warp] = m;
    red_nan[warp] = nan;
  }
  __syncthreads();
  T worst = red[0];
  int any_nan = red_nan[0];
#pragma unroll
  for (int i = 1; i < kWarps; ++i) {
    worst = red[i] > worst ? red[i] : worst;
    any_nan |= red_nan[i];
  }
  return any_nan ? quiet_nan_of<T>() : worst;
}

template <typename T, bool kGaussian>
__global__ void __launch_bounds__(kThreads)
    edge_map_fwd_culled_kernel(const T* __restrict__ keypoints, const T* __restrict__ weights,
                               const int64_t* __restrict__ edges, int64_t K, int64_t E,
                               int64_t H, int64_t W, int64_t tiles_w, int64_t tiles_per_sample,
                               int64_t num_tiles, T inv_sigma, T* __restrict__ out,
                               int32_t* __restrict__ winner) {
  __shared__ Segment<T> segs[kEdgeChunk];
  __shared__ int32_t list[kEdgeChunk];
  __shared__ int warp_count[kWarps];
  __shared__ T red[kWarps];
  __shared__ int red_nan[kWarps];
  __shared__ T red_bound[kWarps];
  __shared__ int32_t red_edge[kWarps];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int64_t HW = H * W;
  for (int64_t tile = blockIdx.x; tile < num_tiles; tile += gridDim.x) {
    const int64_t b = tile / tiles_per_sample;
    const int64_t t = tile - b * tiles_per_sample;
    const int64_t r0 = (t / tiles_w) * kTileH, c0 = (t % tiles_w) * kTileW;
    const int64_t rows = H - r0 < kTileH ? H - r0 : kTileH;
    const int64_t cols = W - c0 < kTileW ? W - c0 : kTileW;
    const T* kp = keypoints + b * K * 2;
    const T* w = weights + b * E;

    // This thread's two pixels (a slot outside the image repeats the tile's last row or
    // column: it changes neither the results nor the worst, and is not stored).
    T px[2], py[2], best[2];
    int32_t arg[2];
    const int64_t c = c0 + (lane < cols ? lane : cols - 1);
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      const int64_t dr = warp + i * kWarps;
      const int64_t r = r0 + (dr < rows ? dr : rows - 1);
      px[i] = pixel_centre<T>(c, W);
      py[i] = pixel_centre<T>(r, H);
      best[i] = infinity_of<T>();
      arg[i] = 0;
    }
    // The box of the tile's pixel centres (the centre formula is monotone in the index).
    const double bx0 = pixel_centre<T>(c0, W), bx1 = pixel_centre<T>(c0 + cols - 1, W);
    const double by0 = pixel_centre<T>(r0, H), by1 = pixel_centre<T>(r0 + rows - 1, H);

    // 1. The edge of smallest bound (the lowest index among equal bounds), evaluated first.
    T lmin = infinity_of<T>();
    int32_t emin = 0;
    for (int64_t e = threadIdx.x; e < E; e += kThreads) {
      const T bound = tile_cost_bound(load_segment(kp, w, edges, K, e), bx0, bx1, by0, by1,
                                      inv_sigma, kGaussian);
      if (bound < lmin) {
        lmin = bound;
        emin = static_cast<int32_t>(e);
      }
    }
#pragma unroll
    for (int offset = 16; offset > 0; offset >>= 1) {
      const T ob = __shfl_xor_sync(kFullMask, lmin, offset);
      const int32_t oe = __shfl_xor_sync(kFullMask, emin, offset);
      const bool take = ob < lmin || (ob == lmin && oe < emin);
      lmin = take ? ob : lmin;
      emin = take ? oe : emin;
    }
    __syncthreads();  // the previous tile is done with the shared arrays
    if (lane == 0) {
      red_bound[warp] = lmin;
      red_edge[warp] = emin;
    }
    __syncthreads();
    int32_t first = red_edge[0];
    T first_bound = red_bound[0];
#pragma unroll
    for (int i = 1; i < kWarps; ++i) {
      const bool take = red_bound[i] < first_bound ||
                        (red_bound[i] == first_bound && red_edge[i] < first);
      first_bound = take ? red_bound[i] : first_bound;
      first = take ? red_edge[i] : first;
    }
    {
      const Segment<T> s = load_segment(kp, w, edges, K, first);
#pragma unroll
      for (int i = 0; i < 2; ++i) {
        const T cost = falloff_exponent(project(s, px[i], py[i]), inv_sigma, kGaussian) +
                       s.neg_log_w;
        const bool take = lex_better(cost, first, best[i], arg[i]);
        best[i] = take ? cost : best[i];
        arg[i] = take ? first : arg[i];
      }
    }

    // 2. Every other edge, chunk by chunk in edge order, unless its bound is strictly above
    // the tile's worst best cost (then it can neither win nor tie at any pixel of the tile).
    for (int64_t e0 = 0; e0 < E; e0 += kEdgeChunk) {
      const T worst = block_worst(best[0], best[1], red, red_nan);  // begins with a barrier
      const int64_t e = e0 + threadIdx.x;
      bool keep = false;
      if (e < E && e != first) {
        const Segment<T> s = load_segment(kp, w, edges, K, e);
        segs[threadIdx.x] = s;
        keep = !(tile_cost_bound(s, bx0, bx1, by0, by1, inv_sigma, kGaussian) > worst);
      }
      const unsigned kept = __ballot_sync(kFullMask, keep);
      if (lane == 0) warp_count[warp] = __popc(kept);
      __syncthreads();
      int base = 0, total = 0;
#pragma unroll
      for (int i = 0; i < kWarps; ++i) {
        base += i < warp ? warp_count[i] : 0;
        total += warp_count[i];
      }
      if (keep) list[base + __popc(kept & ((1u << lane) - 1u))] = threadIdx.x;
      __syncthreads();
      for (int j = 0; j < total; ++j) {
        const int slot = list[j];  // the same address in every thread: a broadcast
        const Segment<T> s = segs[slot];
        const int32_t ej = static_cast<int32_t>(e0 + slot);
#pragma unroll
        for (int i = 0; i < 2; ++i) {
          const T cost = falloff_exponent(project(s, px[i], py[i]), inv_sigma, kGaussian) +
                         s.neg_log_w;
          const bool take = lex_better(cost, ej, best[i], arg[i]);
          best[i] = take ? cost : best[i];
          arg[i] = take ? ej : arg[i];
        }
      }
    }

#pragma unroll
    for (int i = 0; i < 2; ++i) {
      const int64_t r = r0 + warp + i * kWarps, cc = c0 + lane;
      if (r < r0 + rows && lane < cols) {
        out[b * HW + r * W + cc] = exp(-best[i]);
        winner[b * HW + r * W + cc] = arg[i];
      }
    }
  }
}

// ---- deterministic backward ----------------------------------------------------------------------

// Pass 1: one block per (sample, band of rows); its row of `partial` (E x 5: dL/dw, dL/dP_a,
// dL/dP_b) holds the band's per-edge sums, written in a fixed order.
template <typename T, bool kGaussian>
__global__ void __launch_bounds__(kThreads)
    edge_map_bwd_band_kernel(const T* __restrict__ grad_out, const T* __restrict__ keypoints,
                             const T* __restrict__ weights, const int64_t* __restrict__ edges,
                             const int32_t* __restrict__ winner, int64_t K, int64_t E,
                             int64_t H, int64_t W, int64_t bands, int64_t num_blocks,
                             T inv_sigma, T* __restrict__ partial) {
  __shared__ int32_t slot_edge[kThreads];
  __shared__ T slot_val[5][kThreads];
  const int lane = threadIdx.x & 31;
  const int64_t HW = H * W;
  for (int64_t job = blockIdx.x; job < num_blocks; job += gridDim.x) {
    const int64_t b = job / bands, band = job - b * bands;
    const T* kp = keypoints + b * K * 2;
    const T* w = weights + b * E;
    T* row = partial + job * E * 5;
    __syncthreads();  // the previous job is done with the shared slots and its row
    for (int64_t j = threadIdx.x; j < E * 5; j += kThreads) row[j] = T(0);
    const int64_t p_lo = (band * H / bands) * W, p_hi = ((band + 1) * H / bands) * W;
    for (int64_t p0 = p_lo; p0 < p_hi; p0 += kThreads) {
      const int64_t p = p0 + threadIdx.x;
      int32_t e = -1;
      T val[5] = {T(0), T(0), T(0), T(0), T(0)};
      if (p < p_hi) {
        const int32_t we = winner[b * HW + p];
        if (we >= 0 && we < E) {  // else: not a winner from edge_map_fwd, contributes nothing
          e = we;
          const int64_t r = p / W, c = p - r * W;
          const Segment<T> s = load_segment(kp, w, edges, K, e);
          const Projection<T> pr = project(s, pixel_centre<T>(c, W), pixel_centre<T>(r, H));
          const T f = falloff_exponent(pr, inv_sigma, kGaussian);
          const EdgeGrad<T> g = edge_grad(s, pr, w[e], f, inv_sigma, kGaussian, grad_out[b * HW + p]);
          val[0] = g.w;
          val[1] = g.ax;
          val[2] = g.ay;
          val[3] = g.bx;
          val[4] = g.by;
        }
      }
      // The lanes that share this lane's edge, summed in lane order (every lane of the group
      // gets the same bits); the lowest such lane is the group's leader.
      T sum[5] = {T(0), T(0), T(0), T(0), T(0)};
      int leader = -1;
      for (int l = 0; l < 32; ++l) {
        const int32_t el = __shfl_sync(kFullMask, e, l);
#pragma unroll
        for (int k = 0; k < 5; ++k) {
          const T v = __shfl_sync(kFullMask, val[k], l);
          sum[k] = el == e ? sum[k] + v : sum[k];
        }
        leader = (leader < 0 && el == e) ? l : leader;
      }
      __syncthreads();  // warp 0 is done with the previous chunk's slots
      slot_edge[threadIdx.x] = (leader == lane) ? e : -1;
#pragma unroll
      for (int k = 0; k < 5; ++k) slot_val[k][threadIdx.x] = sum[k];
      __syncthreads();
      if (threadIdx.x < 32) {
        // warp after warp: within one warp the leaders' edges are distinct
        for (int i = 0; i < kWarps; ++i) {
          const int slot = i * 32 + lane;
          const int32_t se = slot_edge[slot];
          if (se >= 0) {
#pragma unroll
            for (int k = 0; k < 5; ++k) row[se * 5 + k] += slot_val[k][slot];
          }
          __syncwarp();
        }
      }
    }
  }
}

// Pass 2: per (sample, edge), the bands in order; grad_weights, and the totals in band 0's row.
template <typename T>
__global__ void edge_map_bwd_edges_kernel(T* __restrict__ partial, int64_t B, int64_t E,
                                          int64_t bands, T* __restrict__ grad_w) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < B * E;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t b = i / E, e = i - b * E;
    T s[5] = {T(0), T(0), T(0), T(0), T(0)};
    for (int64_t band = 0; band < bands; ++band) {
      const T* v = partial + ((b * bands + band) * E + e) * 5;
#pragma unroll
      for (int k = 0; k < 5; ++k) s[k] += v[k];
    }
    grad_w[i] = s[0];
    T* total = partial + (b * bands * E + e) * 5;
#pragma unroll
    for (int k = 0; k < 5; ++k) total[k] = s[k];
  }
}

// Pass 3: per (sample, keypoint), the totals of the edges that end there, in edge order.
template <typename T>
__global__ void edge_map_bwd_keypoints_kernel(const T* __restrict__ partial,
                                              const int64_t* __restrict__ edges, int64_t B,
                                              int64_t K, int64_t E, int64_t bands,
                                              T* __restrict__ grad_kp) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < B * K;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t b = i / K, k = i - b * K;
    const T* total = partial + b * bands * E * 5;
    T gx = T(0), gy = T(0);
    for (int64_t e = 0; e < E; ++e) {
      const T* t = total + e * 5;
      if (edges[2 * e] == k) {
        gx += t[1];
        gy += t[2];
      }
      if (edges[2 * e + 1] == k) {
        gx += t[3];
        gy += t[4];
      }
    }
    grad_kp[2 * i] = gx;
    grad_kp[2 * i + 1] = gy;
  }
}

}  // namespace

template <typename T>
cudaError_t edge_map_fwd(const T* keypoints, const T* weights, const int64_t* edges, int64_t B,
                         int64_t K, int64_t E, int64_t H, int64_t W, double sigma, bool gaussian,
                         bool cull, T* out, int32_t* winner, cudaStream_t stream) {
  if (B == 0 || H == 0 || W == 0) return cudaSuccess;
  const T inv_sigma = T(1) / T(sigma);
  if (cull && E > 0) {
    const int64_t tiles_w = ceil_div(W, kTileW);
    const int64_t tiles_per_sample = ceil_div(H, kTileH) * tiles_w;
    const int64_t num_tiles = B * tiles_per_sample;
    const unsigned grid = grid_for(num_tiles);
    if (gaussian) {
      edge_map_fwd_culled_kernel<T, true><<<grid, kThreads, 0, stream>>>(
          keypoints, weights, edges, K, E, H, W, tiles_w, tiles_per_sample, num_tiles, inv_sigma,
          out, winner);
    } else {
      edge_map_fwd_culled_kernel<T, false><<<grid, kThreads, 0, stream>>>(
          keypoints, weights, edges, K, E, H, W, tiles_w, tiles_per_sample, num_tiles, inv_sigma,
          out, winner);
    }
    return cudaGetLastError();
  }
  const int64_t tiles_per_sample = ceil_div(H * W, kTile);
  const int64_t num_tiles = B * tiles_per_sample;
  const unsigned grid = grid_for(num_tiles);
  if (gaussian) {
    edge_map_fwd_kernel<T, true><<<grid, kThreads, 0, stream>>>(
        keypoints, weights, edges, K, E, H, W, tiles_per_sample, num_tiles, inv_sigma, out,
        winner);
  } else {
    edge_map_fwd_kernel<T, false><<<grid, kThreads, 0, stream>>>(
        keypoints, weights, edges, K, E, H, W, tiles_per_sample, num_tiles, inv_sigma, out,
        winner);
  }
  return cudaGetLastError();
}

int64_t edge_map_bwd_bands(int64_t B, int64_t H) {
  // About two blocks per SM of a large GPU in pass 1, at most one band per row.
  int64_t bands = ceil_div(264, B > 0 ? B : 1);
  bands = bands < 64 ? bands : 64;
  return bands < H ? bands : (H > 0 ? H : 1);
}

template <typename T>
cudaError_t edge_map_bwd(const T* grad_out, const T* keypoints, const T* weights,
                         const int64_t* edges, const int32_t* winner, int64_t B, int64_t K,
                         int64_t E, int64_t H, int64_t W, double sigma, bool gaussian,
                         T* scratch, T* grad_keypoints, T* grad_weights, cudaStream_t stream) {
  if (B == 0) return cudaSuccess;
  const int64_t bands = edge_map_bwd_bands(B, H);
  const T inv_sigma = T(1) / T(sigma);
  if (E > 0) {
    const int64_t blocks = B * bands;  // H == 0 or W == 0: the rows are zero-filled only
    if (gaussian) {
      edge_map_bwd_band_kernel<T, true><<<grid_for(blocks), kThreads, 0, stream>>>(
          grad_out, keypoints, weights, edges, winner, K, E, H, W, bands, blocks, inv_sigma,
          scratch);
    } else {
      edge_map_bwd_band_kernel<T, false><<<grid_for(blocks), kThreads, 0, stream>>>(
          grad_out, keypoints, weights, edges, winner, K, E, H, W, bands, blocks, inv_sigma,
          scratch);
    }
    edge_map_bwd_edges_kernel<T><<<grid_for(ceil_div(B * E, kThreads)), kThreads, 0, stream>>>(
        scratch, B, E, bands, grad_weights);
  }
  if (K > 0) {
    edge_map_bwd_keypoints_kernel<T><<<grid_for(ceil_div(B * K, kThreads)), kThreads, 0,
                                       stream>>>(scratch, edges, B, K, E, bands, grad_keypoints);
  }
  return cudaGetLastError();
}

#define KP3D_INSTANTIATE(T)                                                                   \
  template cudaError_t edge_map_fwd<T>(const T*, const T*, const int64_t*, int64_t, int64_t,  \
                                       int64_t, int64_t, int64_t, double, bool, bool, T*,     \
                                       int32_t*, cudaStream_t);                               \
  template cudaError_t edge_map_bwd<T>(const T*, const T*, const T*, const int64_t*,          \
                                       const int32_t*, int64_t, int64_t, int64_t, int64_t,    \
                                       int64_t, double, bool, T*, T*, T*, cudaStream_t);
KP3D_INSTANTIATE(float)
KP3D_INSTANTIATE(double)
#undef KP3D_INSTANTIATE

}  // namespace kp3d::cuda
