// Helpers of the CPU kernels.
#pragma once

#include <ATen/Parallel.h>
#include <torch/library.h>
#include <torch/types.h>

namespace kp3d::cpu {

inline void check_cpu_float(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.device().is_cpu(), name, " must be a CPU tensor");
  TORCH_CHECK(t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble, name,
              " must be float32 or float64 (the Python layer converts), got ", t.scalar_type());
  TORCH_CHECK(t.is_contiguous(), name, " must be contiguous");
}

}  // namespace kp3d::cpu
