#!/usr/bin/env bash
# Compiles every CUDA kernel translation unit (csrc/cuda/*.cu) with `nvcc -c` for sm_80 and
# sm_90, so that a change that breaks the CUDA build fails CI on a machine without a GPU or a
# CUDA build of torch. The kernels need only the CUDA runtime and csrc/ (no torch headers); the
# torch glue (csrc/cuda/ops_cuda.cpp) is compiled only by the real CUDA builds.
# Exits 0 with a message when nvcc is absent; non-zero when any unit fails to compile.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
NVCC="${NVCC:-}"
if [[ -z "$NVCC" ]]; then
  if command -v nvcc >/dev/null 2>&1; then
    NVCC="$(command -v nvcc)"
  elif [[ -x "${CUDA_HOME:-/usr/local/cuda}/bin/nvcc" ]]; then
    NVCC="${CUDA_HOME:-/usr/local/cuda}/bin/nvcc"
  else
    echo "ci_cuda_compile: SKIPPED: nvcc not found (set NVCC or CUDA_HOME to check the CUDA kernels)"
    exit 0
  fi
fi

shopt -s nullglob
units=("$ROOT"/csrc/cuda/*.cu)
if (( ${#units[@]} == 0 )); then
  echo "ci_cuda_compile: no csrc/cuda/*.cu files" >&2
  exit 1
fi

out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
echo "ci_cuda_compile: $("$NVCC" --version | tail -n 1)"
# -O1 and no debug info keep it fast; -Werror all-warnings: a warning in a kernel is a failure
# here, as it would be noise in every real build.
flags=(-c -std=c++17 -O1 -I "$ROOT/csrc" -Werror all-warnings
       -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90)
pids=()
for unit in "${units[@]}"; do
  name="$(basename "$unit" .cu)"
  ( "$NVCC" "${flags[@]}" "$unit" -o "$out/$name.o" > "$out/$name.log" 2>&1 ) &
  pids+=("$!")
done
status=0
for i in "${!units[@]}"; do
  name="$(basename "${units[$i]}" .cu)"
  if wait "${pids[$i]}"; then
    echo "ci_cuda_compile: ok   csrc/cuda/$name.cu (sm_80, sm_90)"
  else
    echo "ci_cuda_compile: FAIL csrc/cuda/$name.cu" >&2
    cat "$out/$name.log" >&2
    status=1
  fi
done
exit "$status"
