// Fused CUDA edge map (SPEC section 3), forward and backward.
//
// Forward: one block per tile of kTile consecutive pixels (row-major) of one sample. The
// per-edge constants (Segment<T>: start point, direction, 1/|v|^2, -log w) are computed once per
// block and staged in shared memory in chunks of kEdgeChunk edges; every thread keeps a running
// argmin of cost = f_e - log w_e over the edges for its kItems pixels (the `better` rule of
// segment_math.h: ties keep the lower edge, the first NaN sticks) and writes exp(-cost) (one
// exp per pixel) and the winning edge (int32). Nothing of size (B, E, H, W) is formed.
//
// Backward: the same tiling. Each thread recomputes the gradient of its pixels' winning edges
// (edge_grad of segment_math.h), the block sums them per edge in shared memory (a warp whose
// pixels share one edge first reduces with shuffles and issues one shared atomic), and each
// (block, edge) with a nonzero sum issues one global atomicAdd per output: into grad_weights
// (B, E) and, through the edge's end points, into grad_keypoints (B, K, 2).
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
constexpr int kBwdItems = 2;                  // pixels per thread (backward)
constexpr int kBwdTile = kThreads * kBwdItems;
constexpr int kAccEdges = 2 * kThreads;       // per-edge accumulators per pass (backward)

template <typename T>
__device__ __forceinline__ Segment<T> load_segment(const T* kp, const T* w, const int64_t* edges,
                                                   int64_t e) {
  const int64_t a = edges[2 * e], b = edges[2 * e + 1];
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
      if (e0 + threadIdx.x < E) segs[threadIdx.x] = load_segment(kp, w, edges, e0 + threadIdx.x);
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

template <typename T, bool kGaussian>
__global__ void __launch_bounds__(kThreads)
    edge_map_bwd_kernel(const T* __restrict__ grad_out, const T* __restrict__ keypoints,
                        const T* __restrict__ weights, const int64_t* __restrict__ edges,
                        const int32_t* __restrict__ winner, int64_t K, int64_t E, int64_t H,
                        int64_t W, int64_t tiles_per_sample, int64_t num_tiles, T inv_sigma,
                        T* __restrict__ grad_kp, T* __restrict__ grad_w) {
  // acc[k][e - e0]: k = 0 dL/dw, 1-2 dL/dP_a (x, y), 3-4 dL/dP_b (x, y).
  __shared__ T acc[5][kAccEdges];
  const int64_t HW = H * W;
  const int lane = threadIdx.x & 31;
  for (int64_t tile = blockIdx.x; tile < num_tiles; tile += gridDim.x) {
    const int64_t b = tile / tiles_per_sample;
    const int64_t p0 = (tile - b * tiles_per_sample) * kBwdTile;
    const T* kp = keypoints + b * K * 2;
    const T* w = weights + b * E;

    // This thread's pixels: winning edge (-1 for none) and its five gradient terms.
    int64_t pe[kBwdItems];
    T val[kBwdItems][5];
#pragma unroll
    for (int i = 0; i < kBwdItems; ++i) {
      const int64_t p = p0 + i * kThreads + threadIdx.x;
      int64_t e = -1;
      if (p < HW) {
        e = winner[b * HW + p];
        if (e < 0 || e >= E) e = -1;  // not a winner from edge_map_fwd: contributes nothing
      }
      pe[i] = e;
#pragma unroll
      for (int k = 0; k < 5; ++k) val[i][k] = T(0);
      if (e >= 0) {
        const int64_t r = p / W, c = p - r * W;
        const Segment<T> s = load_segment(kp, w, edges, e);  // its -log w is not used (dead)
        const Projection<T> pr = project(s, pixel_centre<T>(c, W), pixel_centre<T>(r, H));
        const T f = falloff_exponent(pr, inv_sigma, kGaussian);
        const EdgeGrad<T> g =
            edge_grad(s, pr, w[e], f, inv_sigma, kGaussian, grad_out[b * HW + p]);
        val[i][0] = g.w;
        val[i][1] = g.ax;
        val[i][2] = g.ay;
        val[i][3] = g.bx;
        val[i][4] = g.by;
      }
    }

    for (int64_t e0 = 0; e0 < E; e0 += kAccEdges) {
      bool mine = false;
#pragma unroll
      for (int i = 0; i < kBwdItems; ++i) mine |= pe[i] >= e0 && pe[i] < e0 + kAccEdges;
      // A barrier (the previous pass's flush, or the previous tile, is done) and a vote.
      if (!__syncthreads_or(mine)) continue;  // the whole block agrees: no pixel in this chunk
      for (int j = threadIdx.x; j < kAccEdges; j += kThreads) {
#pragma unroll
        for (int k = 0; k < 5; ++k) acc[k][j] = T(0);
      }
      __syncthreads();
#pragma unroll
      for (int i = 0; i < kBwdItems; ++i) {
        const int64_t e = pe[i];
        const bool in_chunk = e >= e0 && e < e0 + kAccEdges;
        // Every lane of the warp takes part in the vote and the shuffles (no early exit).
        const bool uniform = __all_sync(kFullMask, e == __shfl_sync(kFullMask, e, 0));
        if (uniform) {
          if (in_chunk) {  // the same for the whole warp, so every lane shuffles
            T s[5];
#pragma unroll
            for (int k = 0; k < 5; ++k) s[k] = warp_sum(val[i][k]);
            if (lane == 0) {
#pragma unroll
              for (int k = 0; k < 5; ++k) atomicAdd(&acc[k][e - e0], s[k]);
            }
          }
        } else if (in_chunk) {
#pragma unroll
          for (int k = 0; k < 5; ++k) atomicAdd(&acc[k][e - e0], val[i][k]);
        }
      }
      __syncthreads();
      for (int j = threadIdx.x; j < kAccEdges && e0 + j < E; j += kThreads) {
        const T s0 = acc[0][j], s1 = acc[1][j], s2 = acc[2][j], s3 = acc[3][j], s4 = acc[4][j];
        // NaN != 0, so NaN reaches the outputs.
        if (s0 != T(0) || s1 != T(0) || s2 != T(0) || s3 != T(0) || s4 != T(0)) {
          const int64_t e = e0 + j;
          const int64_t a = edges[2 * e], bb = edges[2 * e + 1];
          atomicAdd(grad_w + b * E + e, s0);
          atomicAdd(grad_kp + (b * K + a) * 2, s1);
          atomicAdd(grad_kp + (b * K + a) * 2 + 1, s2);
          atomicAdd(grad_kp + (b * K + bb) * 2, s3);
          atomicAdd(grad_kp + (b * K + bb) * 2 + 1, s4);
        }
      }
    }
  }
}

}  // namespace

template <typename T>
cudaError_t edge_map_fwd(const T* keypoints, const T* weights, const int64_t* edges, int64_t B,
                         int64_t K, int64_t E, int64_t H, int64_t W, double sigma, bool gaussian,
                         T* out, int32_t* winner, cudaStream_t stream) {
  if (B == 0 || H == 0 || W == 0) return cudaSuccess;
  const int64_t tiles_per_sample = ceil_div(H * W, kTile);
  const int64_t num_tiles = B * tiles_per_sample;
  const T inv_sigma = T(1) / T(sigma);
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

template <typename T>
cudaError_t edge_map_bwd(const T* grad_out, const T* keypoints, const T* weights,
                         const int64_t* edges, const int32_t* winner, int64_t B, int64_t K,
                         int64_t E, int64_t H, int64_t W, double sigma, bool gaussian,
                         T* grad_keypoints, T* grad_weights, cudaStream_t stream) {
  // The sums below accumulate into zeroed outputs (an all-zero bit pattern is +0.0).
  cudaError_t err = cudaSuccess;
  if (B * K > 0) err = cudaMemsetAsync(grad_keypoints, 0, sizeof(T) * B * K * 2, stream);
  if (err != cudaSuccess) return err;
  if (B * E > 0) err = cudaMemsetAsync(grad_weights, 0, sizeof(T) * B * E, stream);
  if (err != cudaSuccess) return err;
  if (B == 0 || H == 0 || W == 0 || E == 0) return cudaSuccess;
  const int64_t tiles_per_sample = ceil_div(H * W, kBwdTile);
  const int64_t num_tiles = B * tiles_per_sample;
  const T inv_sigma = T(1) / T(sigma);
  const unsigned grid = grid_for(num_tiles);
  if (gaussian) {
    edge_map_bwd_kernel<T, true><<<grid, kThreads, 0, stream>>>(
        grad_out, keypoints, weights, edges, winner, K, E, H, W, tiles_per_sample, num_tiles,
        inv_sigma, grad_keypoints, grad_weights);
  } else {
    edge_map_bwd_kernel<T, false><<<grid, kThreads, 0, stream>>>(
        grad_out, keypoints, weights, edges, winner, K, E, H, W, tiles_per_sample, num_tiles,
        inv_sigma, grad_keypoints, grad_weights);
  }
  return cudaGetLastError();
}

#define KP3D_INSTANTIATE(T)                                                                   \
  template cudaError_t edge_map_fwd<T>(const T*, const T*, const int64_t*, int64_t, int64_t,  \
                                       int64_t, int64_t, int64_t, double, bool, T*, int32_t*, \
                                       cudaStream_t);                                         \
  template cudaError_t edge_map_bwd<T>(const T*, const T*, const T*, const int64_t*,          \
                                       const int32_t*, int64_t, int64_t, int64_t, int64_t,    \
                                       int64_t, double, bool, T*, T*, cudaStream_t);
KP3D_INSTANTIATE(float)
KP3D_INSTANTIATE(double)
#undef KP3D_INSTANTIATE

}  // namespace kp3d::cuda
