#!/usr/bin/env bash
# Configures and builds csrc/ against libtorch with CMake (CMakeLists.txt) in a temporary build
# directory, and runs the C++ tests with ctest. The torch used is that of $PYTHON (default
# `python`). With a CPU-only torch only the CPU kernels are built; with a CUDA build of torch the
# CUDA kernels too (TORCH_CUDA_ARCH_LIST, default "8.0;9.0"), and the CUDA checks run if a GPU is
# visible.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python}"
PYTHON="$(command -v "$PYTHON")"
prefix="$("$PYTHON" -c 'import torch; print(torch.utils.cmake_prefix_path)')"
echo "ci_cmake: torch $("$PYTHON" -c 'import torch; print(torch.__version__)') from $prefix"

build="$(mktemp -d)"
trap 'rm -rf "$build"' EXIT
generator=()
if command -v ninja >/dev/null 2>&1; then generator=(-G Ninja); fi

# -O1 -g0: this build checks that the code compiles, links and passes; it is not for speed.
cmake -S "$ROOT" -B "$build" "${generator[@]}" \
  -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_CXX_FLAGS_RELEASE="-O1 -g0 -DNDEBUG" \
  -DCMAKE_PREFIX_PATH="$prefix" \
  -DPython3_EXECUTABLE="$PYTHON"
cmake --build "$build" -j 2
ctest --test-dir "$build" --output-on-failure
