// Host launchers of the CUDA kernels (csrc/cuda/*.cu).
//
// The kernels and these launchers need only the CUDA runtime and csrc/segment_math.h, so CI
// compiles them with a bare `nvcc -c` (scripts/ci_cuda_compile.sh); the torch glue
// (ops_cuda.cpp) validates tensors, allocates the outputs and calls these on the current stream.
//
// Contract (the same as the CPU kernels, csrc/ops.cpp): every pointer is to contiguous device
// memory of one device, T is float or double, indices in `edges` are in [0, K), E < 2^31, and
// the sizes are those of the tensors. A launcher enqueues its work on `stream` and returns the
// launch status (cudaGetLastError after the last launch); zero-sized problems launch nothing.
#pragma once

#include <cstdint>

#include <cuda_runtime_api.h>

namespace kp3d::cuda {

// out (B, H, W) = max_e w_e exp(-f_e), winner (B, H, W) int32 = its edge. `cull`: skip, per
// tile of pixels, the edges that provably cannot win there (the same bits as cull = false).
template <typename T>
cudaError_t edge_map_fwd(const T* keypoints, const T* weights, const int64_t* edges, int64_t B,
                         int64_t K, int64_t E, int64_t H, int64_t W, double sigma, bool gaussian,
                         bool cull, T* out, int32_t* winner, cudaStream_t stream);

// The row bands per sample of the backward; its scratch holds B * bands * E * 5 elements.
int64_t edge_map_bwd_bands(int64_t B, int64_t H);

// grad_keypoints (B, K, 2) and grad_weights (B, E), both fully written, deterministically (fixed
// summation order, no atomics, no memsets); `scratch` is uninitialised memory of
// B * edge_map_bwd_bands(B, H) * E * 5 elements.
template <typename T>
cudaError_t edge_map_bwd(const T* grad_out, const T* keypoints, const T* weights,
                         const int64_t* edges, const int32_t* winner, int64_t B, int64_t K,
                         int64_t E, int64_t H, int64_t W, double sigma, bool gaussian,
                         T* scratch, T* grad_keypoints, T* grad_weights, cudaStream_t stream);

// coords (B*K, 2) and stats (B*K, 2) of `maps` = B*K heatmaps of H x W (docs/kernels.md).
template <typename T>
cudaError_t soft_argmax_fwd(const T* heatmaps, int64_t maps, int64_t H, int64_t W,
                            double temperature, bool softmax, T* coords, T* stats,
                            cudaStream_t stream);

template <typename T>
cudaError_t soft_argmax_bwd(const T* grad_coords, const T* heatmaps, const T* coords,
                            const T* stats, int64_t maps, int64_t H, int64_t W,
                            double temperature, bool softmax, T* grad_heatmaps,
                            cudaStream_t stream);

// Nearest other point (B, K) and, when `loss` is not null, the repulsion loss (B,) with
// bandwidth h (docs/kernels.md). D is 2 or 3.
template <typename T>
cudaError_t nn_fwd(const T* points, int64_t B, int64_t K, int64_t D, T* dist, int64_t* index,
                   T* loss, double bandwidth, cudaStream_t stream);

// grad_points (B, K, D): the gradient of sum_i c_i d_i with c_i = grad_dist[b, i] (nn_bwd,
// grad_loss == nullptr) or c_i = grad_loss[b] dl/dd(d_i) (repulsion_bwd, grad_dist == nullptr).
template <typename T>
cudaError_t nn_bwd(const T* grad_dist, const T* grad_loss, const T* points, const T* dist,
                   const int64_t* index, int64_t B, int64_t K, int64_t D, double bandwidth,
                   T* grad_points, cudaStream_t stream);

}  // namespace kp3d::cuda
