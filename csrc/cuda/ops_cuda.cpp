// Torch glue of the CUDA kernels: checks the low-level contract (csrc/ops.cpp), allocates the
// outputs on the inputs' device, and calls the launchers (csrc/cuda/*.cu, declared in
// launchers.h) on the current stream of that device. Compiled by the host compiler inside the
// CUDAExtension (setup.py) or the CMake build when CUDA is enabled; the kernels themselves need
// no torch header.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <cstdlib>
#include <cstring>
#include <limits>

#include "launchers.h"

// The glue's own namespace, so that its op functions never overload the launchers' names.
namespace kp3d::cuda_ops {
namespace {

void check_float(const at::Tensor& t, const char* name, const at::Tensor& like) {
  TORCH_CHECK(t.is_cuda(), name, " must be a CUDA tensor");
  TORCH_CHECK(t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble, name,
              " must be float32 or float64 (the Python layer converts), got ", t.scalar_type());
  TORCH_CHECK(t.scalar_type() == like.scalar_type(), name, " must have the dtype ",
              like.scalar_type(), ", got ", t.scalar_type());
  TORCH_CHECK(t.device() == like.device(), name, " must be on ", like.device(), ", got ",
              t.device());
  TORCH_CHECK(t.is_contiguous(), name, " must be contiguous");
}

void check_index(const at::Tensor& t, const char* name, at::ScalarType dtype,
                 const at::Tensor& like) {
  TORCH_CHECK(t.scalar_type() == dtype && t.is_contiguous(), name, " must be contiguous ", dtype);
  TORCH_CHECK(t.device() == like.device(), name, " must be on ", like.device(), ", got ",
              t.device());
}

void check_shape(const at::Tensor& t, const char* name, at::IntArrayRef shape) {
  TORCH_CHECK(t.sizes() == shape, name, " must have the shape ", shape, ", got ", t.sizes());
}

void check_edges(const at::Tensor& keypoints, const at::Tensor& weights,
                 const at::Tensor& edges) {
  check_float(keypoints, "keypoints", keypoints);
  check_float(weights, "weights", keypoints);
  check_index(edges, "edges", at::kLong, keypoints);
  TORCH_CHECK(keypoints.dim() == 3 && keypoints.size(2) == 2, "keypoints must be (B, K, 2)");
  TORCH_CHECK(edges.dim() == 2 && edges.size(1) == 2, "edges must be (E, 2)");
  check_shape(weights, "weights", {keypoints.size(0), edges.size(0)});
  TORCH_CHECK(edges.size(0) <= std::numeric_limits<int32_t>::max(),
              "at most 2^31 - 1 edges (the winner map is int32)");
}

// Whether the forward culls (the default); KP3D_EDGE_MAP_CULL=0 evaluates every edge (the
// tests compare the two bit for bit).
bool culling_enabled() {
  const char* v = std::getenv("KP3D_EDGE_MAP_CULL");
  return v == nullptr || std::strcmp(v, "0") != 0;
}

std::tuple<at::Tensor, at::Tensor> edge_map_fwd(const at::Tensor& keypoints,
                                                const at::Tensor& weights,
                                                const at::Tensor& edges, int64_t height,
                                                int64_t width, double sigma, bool gaussian) {
  check_edges(keypoints, weights, edges);
  TORCH_CHECK(height >= 0 && width >= 0, "height and width must be >= 0");
  const c10::cuda::CUDAGuard guard(keypoints.device());
  const int64_t B = keypoints.size(0), K = keypoints.size(1), E = edges.size(0);
  auto out = at::empty({B, height, width}, keypoints.options());
  auto winner = at::empty({B, height, width}, keypoints.options().dtype(at::kInt));
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(keypoints.scalar_type(), "edge_map_fwd", [&] {
    C10_CUDA_CHECK(kp3d::cuda::edge_map_fwd<scalar_t>(
        keypoints.data_ptr<scalar_t>(), weights.data_ptr<scalar_t>(),
        edges.data_ptr<int64_t>(), B, K, E, height, width, sigma, gaussian, culling_enabled(),
        out.data_ptr<scalar_t>(), winner.data_ptr<int32_t>(), stream));
  });
  return {out, winner};
}

std::tuple<at::Tensor, at::Tensor> edge_map_bwd(const at::Tensor& grad_out,
                                                const at::Tensor& keypoints,
                                                const at::Tensor& weights,
                                                const at::Tensor& edges,
                                                const at::Tensor& winner, double sigma,
                                                bool gaussian) {
  check_edges(keypoints, weights, edges);
  check_float(grad_out, "grad_out", keypoints);
  check_index(winner, "winner", at::kInt, keypoints);
  TORCH_CHECK(winner.dim() == 3 && winner.size(0) == keypoints.size(0),
              "winner must be (B, H, W)");
  check_shape(grad_out, "grad_out", winner.sizes());
  // Deterministic: every sum has a fixed order (no atomics), so no alertNotDeterministic.
  const c10::cuda::CUDAGuard guard(keypoints.device());
  const int64_t B = keypoints.size(0), K = keypoints.size(1), E = edges.size(0);
  auto grad_kp = at::empty_like(keypoints);
  auto grad_w = at::empty_like(weights);
  const int64_t bands = kp3d::cuda::edge_map_bwd_bands(B, winner.size(1));
  auto scratch = at::empty({B * bands * E * 5}, keypoints.options());  // uninitialised
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(keypoints.scalar_type(), "edge_map_bwd", [&] {
    C10_CUDA_CHECK(kp3d::cuda::edge_map_bwd<scalar_t>(
        grad_out.data_ptr<scalar_t>(), keypoints.data_ptr<scalar_t>(),
        weights.data_ptr<scalar_t>(), edges.data_ptr<int64_t>(), winner.data_ptr<int32_t>(), B,
        K, E, winner.size(1), winner.size(2), sigma, gaussian, scratch.data_ptr<scalar_t>(),
        grad_kp.data_ptr<scalar_t>(), grad_w.data_ptr<scalar_t>(), stream));
  });
  return {grad_kp, grad_w};
}

std::tuple<at::Tensor, at::Tensor> soft_argmax_fwd(const at::Tensor& heatmaps, double temperature,
                                                   bool softmax) {
  check_float(heatmaps, "heatmaps", heatmaps);
  TORCH_CHECK(heatmaps.dim() == 4, "heatmaps must be (B, K, H, W)");
  const c10::cuda::CUDAGuard guard(heatmaps.device());
  const int64_t B = heatmaps.size(0), K = heatmaps.size(1);
  auto coords = at::empty({B, K, 2}, heatmaps.options());
  auto stats = at::empty({B, K, 2}, heatmaps.options());
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(heatmaps.scalar_type(), "soft_argmax_fwd", [&] {
    C10_CUDA_CHECK(kp3d::cuda::soft_argmax_fwd<scalar_t>(
        heatmaps.data_ptr<scalar_t>(), B * K, heatmaps.size(2), heatmaps.size(3), temperature,
        softmax, coords.data_ptr<scalar_t>(), stats.data_ptr<scalar_t>(), stream));
  });
  return {coords, stats};
}

at::Tensor soft_argmax_bwd(const at::Tensor& grad_coords, const at::Tensor& heatmaps,
                           const at::Tensor& coords, const at::Tensor& stats, double temperature,
                           bool softmax) {
  check_float(heatmaps, "heatmaps", heatmaps);
  TORCH_CHECK(heatmaps.dim() == 4, "heatmaps must be (B, K, H, W)");
  const int64_t B = heatmaps.size(0), K = heatmaps.size(1);
  check_float(grad_coords, "grad_coords", heatmaps);
  check_float(coords, "coords", heatmaps);
  check_float(stats, "stats", heatmaps);
  check_shape(grad_coords, "grad_coords", {B, K, 2});
  check_shape(coords, "coords", {B, K, 2});
  check_shape(stats, "stats", {B, K, 2});
  const c10::cuda::CUDAGuard guard(heatmaps.device());
  auto grad = at::empty_like(heatmaps);
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(heatmaps.scalar_type(), "soft_argmax_bwd", [&] {
    C10_CUDA_CHECK(kp3d::cuda::soft_argmax_bwd<scalar_t>(
        grad_coords.data_ptr<scalar_t>(), heatmaps.data_ptr<scalar_t>(),
        coords.data_ptr<scalar_t>(), stats.data_ptr<scalar_t>(), B * K, heatmaps.size(2),
        heatmaps.size(3), temperature, softmax, grad.data_ptr<scalar_t>(), stream));
  });
  return grad;
}

void check_points(const at::Tensor& points) {
  check_float(points, "points", points);
  TORCH_CHECK(points.dim() == 3 && points.size(1) >= 2 &&
                  (points.size(2) == 2 || points.size(2) == 3),
              "points must be (B, K >= 2, D in {2, 3})");
}

void check_neighbours(const at::Tensor& points, const at::Tensor& dist,
                      const at::Tensor& index) {
  check_float(dist, "dist", points);
  check_index(index, "index", at::kLong, points);
  check_shape(dist, "dist", {points.size(0), points.size(1)});
  check_shape(index, "index", {points.size(0), points.size(1)});
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> nn_and_loss(const at::Tensor& points,
                                                           double bandwidth, bool with_loss) {
  check_points(points);
  const c10::cuda::CUDAGuard guard(points.device());
  const int64_t B = points.size(0), K = points.size(1), D = points.size(2);
  auto dist = at::empty({B, K}, points.options());
  auto index = at::empty({B, K}, points.options().dtype(at::kLong));
  auto loss = with_loss ? at::empty({B}, points.options()) : at::Tensor();
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(points.scalar_type(), "nn_fwd", [&] {
    C10_CUDA_CHECK(kp3d::cuda::nn_fwd<scalar_t>(
        points.data_ptr<scalar_t>(), B, K, D, dist.data_ptr<scalar_t>(),
        index.data_ptr<int64_t>(), with_loss ? loss.data_ptr<scalar_t>() : nullptr, bandwidth,
        stream));
  });
  return {loss, dist, index};
}

std::tuple<at::Tensor, at::Tensor> nn_fwd(const at::Tensor& points) {
  auto [loss, dist, index] = nn_and_loss(points, 1.0, false);
  return {dist, index};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> repulsion_fwd(const at::Tensor& points,
                                                             double bandwidth) {
  return nn_and_loss(points, bandwidth, true);
}

at::Tensor nn_grad(const at::Tensor* grad_dist, const at::Tensor* grad_loss,
                   const at::Tensor& points, const at::Tensor& dist, const at::Tensor& index,
                   double bandwidth) {
  check_points(points);
  check_neighbours(points, dist, index);
  if (grad_dist != nullptr) {
    check_float(*grad_dist, "grad_dist", points);
    check_shape(*grad_dist, "grad_dist", {points.size(0), points.size(1)});
  } else {
    check_float(*grad_loss, "grad_loss", points);
    check_shape(*grad_loss, "grad_loss", {points.size(0)});
  }
  const c10::cuda::CUDAGuard guard(points.device());
  auto grad = at::empty_like(points);
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(points.scalar_type(), "nn_bwd", [&] {
    C10_CUDA_CHECK(kp3d::cuda::nn_bwd<scalar_t>(
        grad_dist != nullptr ? grad_dist->data_ptr<scalar_t>() : nullptr,
        grad_loss != nullptr ? grad_loss->data_ptr<scalar_t>() : nullptr,
        points.data_ptr<scalar_t>(), dist.data_ptr<scalar_t>(), index.data_ptr<int64_t>(),
        points.size(0), points.size(1), points.size(2), bandwidth, grad.data_ptr<scalar_t>(),
        stream));
  });
  return grad;
}

at::Tensor nn_bwd(const at::Tensor& grad_dist, const at::Tensor& points, const at::Tensor& dist,
                  const at::Tensor& index) {
  return nn_grad(&grad_dist, nullptr, points, dist, index, 1.0);
}

at::Tensor repulsion_bwd(const at::Tensor& grad_loss, const at::Tensor& points,
                         const at::Tensor& dist, const at::Tensor& index, double bandwidth) {
  return nn_grad(nullptr, &grad_loss, points, dist, index, bandwidth);
}

}  // namespace

TORCH_LIBRARY_IMPL(kp3d_kernels, CUDA, m) {
  m.impl("edge_map_fwd", &edge_map_fwd);
  m.impl("edge_map_bwd", &edge_map_bwd);
  m.impl("soft_argmax_fwd", &soft_argmax_fwd);
  m.impl("soft_argmax_bwd", &soft_argmax_bwd);
  m.impl("nn_fwd", &nn_fwd);
  m.impl("nn_bwd", &nn_bwd);
  m.impl("repulsion_fwd", &repulsion_fwd);
  m.impl("repulsion_bwd", &repulsion_bwd);
}

}  // namespace kp3d::cuda_ops
