#!/usr/bin/env bash
# GPU check of model/ on a machine with CUDA and a pip PyTorch (nothing else of samda needed):
#   1. build model/ alone against the pip torch (find_package(Torch) through torch.utils.cmake_prefix_path;
#      if that fails, e.g. no CUDA toolkit for TorchConfig.cmake, link the wheel's libraries directly);
#   2. parity test on CUDA in float32 with TF32 off (tolerances as in test_sam_parity.cpp: 1e-4 with
#      the original float32 weights, derived from the rounding with tests/data's float16 copy), then
#      with a bfloat16 encoder (encoder stage checked relative to the embedding's magnitude; decoder
#      stages stay float32);
#   3. the other model tests on CUDA;
#   4. vit_b benchmark with random weights: batch 8 and 16, bfloat16 (and batch 8 float32);
#   5. one bfloat16 batch under the profiler: trace.json and GPU time per operator (trace_summary.py).
# MODE=adapt instead builds only samda-adapter and runs the adaptation benchmark on CUDA
# (tests/bench/bench_adapt.sh, the sites in parallel; ADAPT_TIMEOUT seconds at most, default 420):
# table.md and the rows of each site as they come. MODE=adapt_shift does the same with
# tests/bench/bench_adapt_shift.sh (shift families E-H, seeds, TTA and supervised safety; its
# FAMILIES, SEEDS, NS, EPOCHS knobs pass through; give it ADAPT_TIMEOUT=570 or fewer seeds).
# Warnings are not errors here (an unknown compiler or a newer torch may deprecate an API).
# Budget: about 8 minutes in all (the build is most of it). Usage, from the repository root:
#   tests/gpu/run.sh [build-dir]        (env: PYTHON=python3, JOBS=nproc, SAMDA_FIXTURES=tests/data)
# Output: results under $OUT (or the build dir): build.log, tests.log, bench_*.json, trace.json, summary.txt.
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${1:-$ROOT/build-gpu}
PY=${PYTHON:-python3}
JOBS=${JOBS:-$(nproc)}
RES=${OUT:-$BUILD}
mkdir -p "$BUILD" "$RES"
export SAMDA_FIXTURES=${SAMDA_FIXTURES:-$ROOT/tests/data}
SUMMARY=$RES/summary.txt
: > "$SUMMARY"
say() { echo "== $*" | tee -a "$SUMMARY"; }
t_start=$(date +%s)

say "python: $($PY -c 'import torch,sys; print(sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda, "gpu", torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)' 2>&1)"
PREFIX=$($PY -c 'import torch; print(torch.utils.cmake_prefix_path)') || { say "FAIL: no torch in $PY"; exit 1; }
TORCH_DIR=$($PY -c 'import torch, os; print(os.path.dirname(torch.__file__))')
ABI=$($PY -c 'import torch; print(int(torch._C._GLIBCXX_USE_CXX11_ABI))')
# nvcc helps TorchConfig.cmake find the CUDA toolkit when it is installed but not on PATH.
for d in /usr/local/cuda/bin /usr/local/cuda-*/bin; do [ -x "$d/nvcc" ] && export PATH="$PATH:$d" && break; done

configure() {
  cmake -S "$ROOT/model" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DSAMDA_WERROR=OFF -DSAMDA_TEST_DEVICE=cuda "$@" >> "$RES/build.log" 2>&1
}
: > "$RES/build.log"
if configure -DCMAKE_PREFIX_PATH="$PREFIX"; then
  say "configure: find_package(Torch) via $PREFIX"
else
  say "configure: find_package(Torch) failed (see build.log); linking $TORCH_DIR/lib directly (ABI $ABI)"
  rm -rf "$BUILD/CMakeCache.txt" "$BUILD/CMakeFiles"
  configure -DSAMDA_TORCH_DIR="$TORCH_DIR" -DSAMDA_TORCH_CXX11_ABI="$ABI" || { say "FAIL: configure"; tail -30 "$RES/build.log"; exit 1; }
fi
MODE=${MODE:-all}
ADAPT_BENCH=bench_adapt.sh
if [ "$MODE" = adapt_shift ]; then MODE=adapt; ADAPT_BENCH=bench_adapt_shift.sh; fi
if ! cmake --build "$BUILD" -j"$JOBS" $([ "$MODE" = adapt ] && echo --target samda-adapter) >> "$RES/build.log" 2>&1; then
  say "FAIL: build"; grep -E "error" -A3 "$RES/build.log" | head -40; exit 1
fi
say "build: $(( $(date +%s) - t_start )) s"
export LD_LIBRARY_PATH="$TORCH_DIR/lib:${LD_LIBRARY_PATH:-}"

if [ "$MODE" = adapt ]; then
  work=$(mktemp -d /tmp/samda-adapt.XXXXXX)
  SAMDA_ADAPTER="$BUILD/samda-adapter" DEVICE=cuda PARALLEL=1 THREADS=4 WORK="$work" \
    timeout "${ADAPT_TIMEOUT:-420}" sh "$ROOT/tests/bench/$ADAPT_BENCH" > "$RES/table.md" 2> "$RES/adapt.log"
  rc=$?
  cp "$work"/rows.* "$RES/" 2>/dev/null
  say "adaptation benchmark: rc $rc, $(( $(date +%s) - t_start )) s"
  cat "$RES/table.md" "$RES"/rows.* | tee -a "$SUMMARY"
  exit $rc
fi

status=0
run_test() {  # name, env...
  local name=$1; shift
  local t0=$(date +%s)
  if env "$@" timeout 180 "$BUILD/tests/unit/model/$name" >> "$RES/tests.log" 2>&1; then
    say "PASS $name $* ($(( $(date +%s) - t0 )) s)"
  else
    local rc=$?
    if [ $rc -eq 77 ]; then say "SKIP $name $* (fixtures absent: set SAMDA_FIXTURES)"; else say "FAIL $name $* (rc $rc)"; status=1; fi
  fi
}
: > "$RES/tests.log"
echo "--- parity float32 (TF32 off) ---" >> "$RES/tests.log"
run_test test_sam_parity SAMDA_TEST_DEVICE=cuda SAMDA_TEST_DTYPE=float32
echo "--- parity bfloat16 encoder ---" >> "$RES/tests.log"
run_test test_sam_parity SAMDA_TEST_DEVICE=cuda SAMDA_TEST_DTYPE=bfloat16
echo "--- C API on CUDA ---" >> "$RES/tests.log"
run_test test_model SAMDA_TEST_DEVICE=cuda
run_test test_cache SAMDA_TEST_DEVICE=cuda
grep -E "^stage|^model:" "$RES/tests.log" | tee -a "$SUMMARY"

bench() {  # tag, args...
  local tag=$1; shift
  if timeout 150 "$BUILD/tests/bench/bench_model" --arch vit_b --random-weights --device cuda "$@" > "$RES/bench_$tag.json" 2>> "$RES/tests.log"; then
    say "bench $tag: $(tr -d '\n' < "$RES/bench_$tag.json" | tr -s ' ')"
  else
    say "FAIL bench $tag (rc $?)"; status=1
  fi
}
bench bf16_b8  --dtype bfloat16 --batch 8  --iters 5 --warmup 2
bench bf16_b16 --dtype bfloat16 --batch 16 --iters 3 --warmup 1
bench fp32_b8  --dtype float32  --batch 8  --iters 3 --warmup 1
# Where the GPU time goes: one more bf16 batch of 8 under the Kineto profiler, summed per operator.
if timeout 150 "$BUILD/tests/bench/bench_model" --arch vit_b --random-weights --device cuda --dtype bfloat16 \
     --batch 8 --iters 2 --warmup 1 --decode-iters 1 --trace "$RES/trace.json" > /dev/null 2>> "$RES/tests.log"; then
  $PY "$ROOT/tests/gpu/trace_summary.py" "$RES/trace.json" --top 12 | tee -a "$SUMMARY"
else
  say "trace: not made (see tests.log)"
fi
say "total: $(( $(date +%s) - t_start )) s, status $status"
exit $status
