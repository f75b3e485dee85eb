// Schemas of the compiled ops. The CPU kernels live in csrc/cpu, the CUDA kernels in
// csrc/cuda; fake (meta) implementations and autograd formulas are registered from Python
// (kp3d_kernels/_registry.py), as in pytorch/extension-cpp.
//
// The low-level contract, shared with the Triton backend: float tensors are contiguous and of
// one dtype (float32 or float64), `edges` is contiguous int64 (E, 2) with indices in range and
// `weights` is (B, E); the Python layer validates and converts before calling.
#include <torch/library.h>

TORCH_LIBRARY(kp3d_kernels, m) {
  m.def("edge_map_fwd(Tensor keypoints, Tensor weights, Tensor edges, int height, int width, "
        "float sigma, bool gaussian) -> (Tensor, Tensor)");
  m.def("edge_map_bwd(Tensor grad_out, Tensor keypoints, Tensor weights, Tensor edges, "
        "Tensor winner, float sigma, bool gaussian) -> (Tensor, Tensor)");
  m.def("soft_argmax_fwd(Tensor heatmaps, float temperature, bool softmax) -> (Tensor, Tensor)");
  m.def("soft_argmax_bwd(Tensor grad_coords, Tensor heatmaps, Tensor coords, Tensor stats, "
        "float temperature, bool softmax) -> Tensor");
  m.def("nn_fwd(Tensor points) -> (Tensor, Tensor)");
  m.def("nn_bwd(Tensor grad_dist, Tensor points, Tensor dist, Tensor index) -> Tensor");
  m.def("repulsion_fwd(Tensor points, float bandwidth) -> (Tensor, Tensor, Tensor)");
  m.def("repulsion_bwd(Tensor grad_loss, Tensor points, Tensor dist, Tensor index, "
        "float bandwidth) -> Tensor");
}

// An empty module so that `import kp3d_kernels._C` loads this library (and its
// TORCH_LIBRARY registrations) like any Python extension. The CMake build (a plain shared
// library for C++ users and tests/cpp) defines KP3D_NO_PYTHON_MODULE and needs no Python.
#ifndef KP3D_NO_PYTHON_MODULE
#include <Python.h>
extern "C" PyObject* PyInit__C(void) {
  static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module);
}
#endif
