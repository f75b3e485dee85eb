#!/usr/bin/env bash
# The GPU check of kp3d_kernels, on a machine with a CUDA GPU, a CUDA build of torch and the
# CUDA toolkit (nvcc, compute-sanitizer): builds the extension in place, runs the whole test
# suite (the backend tests pick the cuda and triton backends up on CUDA tensors), runs every
# kernel forward and backward under compute-sanitizer (memcheck and racecheck for `cuda`,
# memcheck for `triton`), benchmarks every op at AutoLink's training shape into one
# pytest-benchmark JSON per op, and times one training step (B=64, K=32, 128x128) fused vs the
# reference. Logs and JSON go to OUT_DIR (default runs/gpu-validate).
#
#   bash scripts/gpu_validate.sh [OUT_DIR]
#   python -m benchmarks.report benchmarks/results/*.json --out docs/performance.md
#
# (merge the four JSON files into benchmarks/results/<device>-<date>.json first; see
# docs/benchmarks.md). Needs pytest-xdist for the parallel test run.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT_DIR="${1:-$ROOT/runs/gpu-validate}"
mkdir -p "$OUT_DIR"
cd "$ROOT"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
PY="${PYTHON:-python3}"
status=0
step() { echo "== $*"; }

step "build (TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:=9.0})"
export TORCH_CUDA_ARCH_LIST
"$PY" setup.py build_ext --inplace > "$OUT_DIR/build.log" 2>&1 || { echo "build failed: $OUT_DIR/build.log"; exit 1; }
"$PY" -c "import kp3d_kernels as k; b = k.available_backends('cuda'); print('backends on cuda:', b); assert 'cuda' in b and 'triton' in b, b"

step "tests"
"$PY" -m pytest tests -q -p no:cacheprovider -n 4 -rfE > "$OUT_DIR/tests.log" 2>&1 || status=1
tail -1 "$OUT_DIR/tests.log"

step "compute-sanitizer"
for run in "memcheck cuda" "racecheck cuda" "memcheck triton"; do
  set -- $run
  log="$OUT_DIR/sanitize-$1-$2.log"
  PYTORCH_NO_CUDA_MEMORY_CACHING=1 compute-sanitizer --tool "$1" --error-exitcode 9 \
    "$PY" scripts/sanitize_kernels.py "$2" > "$log" 2>&1 || status=1
  echo "$1 $2: $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$log" | tail -1)"
done

step "benchmarks (scale gpu)"
for op in edge_map soft_argmax repulsion_loss nearest_neighbor; do
  "$PY" -m pytest "benchmarks/test_bench_$op.py" -q -p no:cacheprovider \
    --benchmark-max-time 0.2 --benchmark-min-rounds 5 --benchmark-columns median,rounds \
    --benchmark-json "$OUT_DIR/bench_$op.json" > "$OUT_DIR/bench_$op.log" 2>&1 || status=1
  echo "$op: $(tail -1 "$OUT_DIR/bench_$op.log")"
done

step "one training step, B=64 K=32 128x128, widths 32-64-128, float32"
for backend in auto torch; do
  "$PY" -P benchmarks/train_step.py --device cuda --model.backend "$backend" --timed-steps 10 --warmup 3 \
    --keypoints 32 --image-size 128 --batch-size 64 --train.amp false --reconstruction random \
    > "$OUT_DIR/step_$backend.json" || status=1
  "$PY" -c "import json,sys; d = json.load(open(sys.argv[1])); print(f\"{sys.argv[2]}: {d['step_s_median'] * 1e3:.1f} ms median, peak {d['peak_cuda_mib'] / 1024:.2f} GiB\")" \
    "$OUT_DIR/step_$backend.json" "$backend"
done
exit $status
