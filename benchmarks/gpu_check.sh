#!/usr/bin/env bash
# The GPU check of one short GPU job (about 9 minutes on one H100, install included), from the repository
# root of a machine with a CUDA GPU, Python and PyTorch but no internet, after benchmarks/gpu_prepare.sh
# made .gpu/ on a machine with internet (carry .gpu with the code):
#   1. install the project and the peers from .gpu/ into /tmp/site (learn2learn builds in the background);
#   2. tests/test_gpu.py: no host sync in the episode loops; CUDA-graph steps equal eager steps;
#   3. the FER2013 paper grid (configs/fer2013-grid.yaml, 63 cells) with --jobs $JOBS, stopped after
#      $GRID_S seconds if unfinished (it resumes with the same command: finished cells are kept);
#   4. benchmarks/throughput.py --device cuda against easyfsl and learn2learn (steady state, one process), and
#      MAML with meta-batches of 4 (the task-batched program) against learn2learn's loop ($MAML_BATCH_ARGS);
#   optional stage "modern": configs/fer2013-modern.yaml (Baseline, Baseline++, SimpleShot, FEAT) beside the
#   grid, --jobs $MODERN_JOBS, stopped after $MODERN_S seconds;
#   optional stage "context": the context issue's runs at the GPU budget, each stopped after a third of $CONTEXT_S
#   seconds and resumable: the FER2013 context table (configs/fer2013-context.yaml: five methods and
#   crn[js_scale=standardise] with floor, seen and ceiling rows; $CONTEXT_ARGS, default 3000 training and 600 test
#   episodes, seeds 0-2), CSRN's CRN checkpoint on 3000 test episodes (when gpu_prepare.sh found it) and the
#   Omniglot accuracy-versus-budget curve to 30,000 episodes at 1 and 5 shots ($CURVE_ARGS);
#   optional stage "scaling": a short ProtoNet + MAML grid with --jobs 1, 2, 4, 8 ($SCALING_JOBS), for how
#   many workers one GPU serves best. MPS=1 starts the CUDA MPS daemon first (workers' kernels then run
#   concurrently instead of time-sliced) and stops it at the end.
# Logs and the run folder (runs.tgz) go to $OUT (default ./gpu-out).
#   bash benchmarks/gpu_check.sh     STAGES="tests grid throughput" JOBS=4 GRID_S=400 THROUGHPUT_S=120 RUN_ID=fer2013-grid-gpu
# by default; a .gpu/runs.tgz from an earlier call is unpacked first, so a stopped grid continues.
set -u
REPO=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-$REPO/gpu-out}; mkdir -p "$OUT"
DEVICE=${DEVICE:-cuda}; GRID_ARGS=${GRID_ARGS:-}  # DEVICE=cpu GRID_ARGS=--reduced: a dry run of the script
MODERN_S=${MODERN_S:-300}; MODERN_JOBS=${MODERN_JOBS:-3}; MODERN_ARGS=${MODERN_ARGS:-}
CONTEXT_S=${CONTEXT_S:-540}; CONTEXT_ARGS=${CONTEXT_ARGS:---train-episodes 3000 --test-episodes 600 --seeds 0,1,2}
CURVE_ARGS=${CURVE_ARGS:-}; CHECKPOINT_ARGS=${CHECKPOINT_ARGS:-}  # dry runs: smaller budgets
STAGES=${STAGES:-tests grid throughput}; JOBS=${JOBS:-4}; GRID_S=${GRID_S:-400}; THROUGHPUT_S=${THROUGHPUT_S:-120}; RUN_ID=${RUN_ID:-fer2013-grid-gpu}; RUNS=${RUNS:-/tmp/runs}
# The CPU dry run (tests/test_gpu_script.py): DEVICE=cpu INSTALL=0 PY=<a python with the project installed>
# GPU=<folder of tiny data> PROJ=<scratch> RUNS=<scratch>, tiny budgets through GRID_ARGS=--tiny, MODERN_ARGS,
# CONTEXT_ARGS, CHECKPOINT_ARGS, CURVE_ARGS, THROUGHPUT_ARGS and MAML_BATCH_ARGS (flags given later override
# earlier ones).
GPU=${GPU:-$REPO/.gpu}; PY=${PY:-python3}; PROJ=${PROJ:-/tmp/proj}; INSTALL=${INSTALL:-1}; THROUGHPUT_ARGS=${THROUGHPUT_ARGS:-}
MAML_BATCH_ARGS=${MAML_BATCH_ARGS:-}
export PYTHONUNBUFFERED=1 COLUMNS=200
if command -v nvidia-smi > /dev/null; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | tee "$OUT/gpu.txt"
else
  echo "no nvidia-smi: device $DEVICE" | tee "$OUT/gpu.txt"
fi
builder=
if [ "$INSTALL" = 1 ]; then
  export PYTHONPATH=/tmp/site
  $PY -m pip install -q --no-index --no-deps --no-compile --target /tmp/site "$GPU"/whl/*.whl || exit 1
  rm -rf /tmp/l2l-src && cp -r "$GPU/l2l-src" /tmp/l2l-src  # built in a copy: the build writes into its source
  ($PY -m pip install -q --no-deps --no-build-isolation --target /tmp/site /tmp/l2l-src \
    > "$OUT/l2l-build.log" 2>&1; echo "exit $?" >> "$OUT/l2l-build.log") &
  builder=$!
fi
# Run from a copy without the source folders: with the repository root on sys.path, fewshot_bench would be
# imported from the source tree, where fewshot_bench.methods (mapped from methods/ by an install) is missing.
rm -rf "$PROJ" && mkdir -p "$PROJ" && cp -r "$REPO"/benchmarks "$REPO"/configs "$REPO"/tests "$PROJ" && cd "$PROJ"
if [ -f "$GPU/runs.tgz" ]; then mkdir -p "$RUNS" && tar xzf "$GPU/runs.tgz" -C "$RUNS"; fi
$PY -c "import torch, fewshot_bench; print('torch', torch.__version__, 'fewshot_bench', fewshot_bench.__file__)"
if [ "${MPS:-0}" = 1 ]; then
  export CUDA_MPS_PIPE_DIRECTORY=/tmp/mps-pipe CUDA_MPS_LOG_DIRECTORY=/tmp/mps-log
  mkdir -p /tmp/mps-pipe /tmp/mps-log && nvidia-cuda-mps-control -d && echo "MPS daemon started"
  trap 'echo quit | nvidia-cuda-mps-control' EXIT
fi
if [[ " $STAGES " == *" tests "* ]]; then
  timeout 150 $PY -m pytest -q -p no:cacheprovider tests/test_gpu.py > "$OUT/test_gpu.log" 2>&1
  status=$?; tail -40 "$OUT/test_gpu.log"
  # A failing GPU test (CUDA graphs not equal to eager steps, say) makes the grid's numbers suspect: say so.
  [ "$status" = 0 ] || echo "WARNING: tests/test_gpu.py failed (exit $status); check it before trusting the grid"
fi
if [[ " $STAGES " == *" modern "* ]]; then
  # The modern baselines (configs/fer2013-modern.yaml) beside the grid: the GPU is launch-bound, not busy.
  (timeout "$MODERN_S" $PY -m fewshot_bench run --config configs/fer2013-modern.yaml \
     --data-root "$GPU/data/fer2013-gpu.npz" --device "$DEVICE" --jobs "$MODERN_JOBS" --output-dir "$RUNS" \
     --run-id fer2013-modern-gpu --checkpoint-interval 500 $MODERN_ARGS > "$OUT/modern.log" 2>&1
   echo "modern exit $?" >> "$OUT/modern.log") &
  modern=$!
fi
if [[ " $STAGES " == *" grid "* ]]; then
  grid_start=$SECONDS
  timeout "$GRID_S" $PY benchmarks/grid.py --data "$GPU/data/fer2013-gpu.npz" --device "$DEVICE" --jobs "$JOBS" \
    --output-dir "$RUNS" --run-id "$RUN_ID" $GRID_ARGS > "$OUT/grid.log" 2>&1
  status=$?; echo "grid exit $status" >> "$OUT/grid.log"
  # --jobs on CUDA has failed before (workers that could not see the GPU): finish in one process rather than
  # lose the call. Finished cells are kept, so the second invocation only runs what is left.
  left=$((GRID_S - (SECONDS - grid_start)))
  if [ "$status" != 0 ] && [ "$status" != 124 ] && [ "$JOBS" != 1 ] && [ "$left" -gt 30 ]; then
    echo "grid with --jobs $JOBS failed; the rest with --jobs 1 in ${left} s" | tee -a "$OUT/grid.log"
    timeout "$left" $PY benchmarks/grid.py --data "$GPU/data/fer2013-gpu.npz" --device "$DEVICE" --jobs 1 \
      --output-dir "$RUNS" --run-id "$RUN_ID" $GRID_ARGS >> "$OUT/grid.log" 2>&1
    echo "grid exit $?" >> "$OUT/grid.log"
  fi
  tail -80 "$OUT/grid.log"
fi
if [ -n "${modern:-}" ]; then wait "$modern"; tail -40 "$OUT/modern.log"; fi
if [[ " $STAGES " == *" context "* ]]; then
  share=$((CONTEXT_S / 3))
  timeout "$share" $PY -m fewshot_bench run --config configs/fer2013-context.yaml \
    --data-root "$GPU/data/fer2013-gpu.npz" --device "$DEVICE" --jobs "$JOBS" --output-dir "$RUNS" \
    --run-id fer2013-context-gpu $CONTEXT_ARGS > "$OUT/context.log" 2>&1
  echo "context table exit $?" >> "$OUT/context.log"
  checkpoint="$GPU/csrn/CRN_fer2013_feature_encoder_model_best.pth"
  if [ -f "$checkpoint" ]; then
    timeout "$share" $PY -m fewshot_bench run --config configs/reproduce/csrn-checkpoint-fer2013.yaml \
      --methods "crn[weights=$checkpoint,weights_layout=csrn]" --data-root "$GPU/data/fer2013-gpu.npz" \
      --device "$DEVICE" --output-dir "$RUNS" --run-id csrn-checkpoint-fer2013-gpu --test-episodes 3000 $CHECKPOINT_ARGS \
      >> "$OUT/context.log" 2>&1
    echo "checkpoint exit $?" >> "$OUT/context.log"
  else
    echo "checkpoint skipped: $checkpoint is missing (gpu_prepare.sh copies it from \$CSRN, ../CSRN)" >> "$OUT/context.log"
  fi
  timeout "$share" $PY -m fewshot_bench run --config configs/reproduce/omniglot-curve-cpu.yaml \
    --data-root "$GPU/data/omniglot28.npz" --device "$DEVICE" --jobs "$JOBS" --output-dir "$RUNS" \
    --run-id omniglot-curve-gpu --shots 1,5 --train-episodes 30000 --budget-curve 300,1000,3000,10000 $CURVE_ARGS \
    >> "$OUT/context.log" 2>&1
  echo "budget curve exit $?" >> "$OUT/context.log"
  tail -60 "$OUT/context.log"
fi
if [[ " $STAGES " == *" grid "* || " $STAGES " == *" modern "* || " $STAGES " == *" context "* ]]; then
  # Claims, checkpoints and pre-trained backbones stay behind: a claim names this machine's processes, the
  # weights are large.
  tar czf "$OUT/runs.tgz" --exclude='checkpoints' --exclude='claims' --exclude='pretrained' -C "$RUNS" . 2>/dev/null
fi
if [[ " $STAGES " == *" throughput "* ]]; then
  if [ -n "$builder" ]; then wait "$builder"; tail -2 "$OUT/l2l-build.log"; fi
  timeout "$THROUGHPUT_S" $PY benchmarks/throughput.py --device "$DEVICE" --datasets fer2013 \
    --methods protonet,relationnet,matchingnet,maml --fer2013 "$GPU/data/fer2013-gpu.npz" \
    --train 150 --test 150 $THROUGHPUT_ARGS 2>&1 | tee "$OUT/throughput.log"
  # MAML at Finn's miniImageNet 1-shot meta-batch (4 tasks a step): ours as one task-batched program on CUDA
  # against learn2learn's task loop.
  timeout "$THROUGHPUT_S" $PY benchmarks/throughput.py --device "$DEVICE" --datasets fer2013 \
    --methods maml --meta-batch 4 --fer2013 "$GPU/data/fer2013-gpu.npz" \
    --train 160 --test 50 $MAML_BATCH_ARGS 2>&1 | tee -a "$OUT/throughput.log"
fi
if [[ " $STAGES " == *" scaling "* ]]; then
  for jobs in ${SCALING_JOBS:-1 2 4 8}; do
    start=$SECONDS
    timeout 200 $PY -m fewshot_bench run --dataset fer2013 --data-root "$GPU/data/fer2013-gpu.npz" \
      --methods protonet,maml --shots 1 --seeds 0,1,2,3 --train-episodes 500 --test-episodes 100 --device "$DEVICE" \
      --jobs "$jobs" --output-dir /tmp/scaling --run-id "jobs$jobs" > "$OUT/scaling-$jobs.log" 2>&1
    rc=$?
    echo "scaling: --jobs $jobs, 8 cells of 600 episodes: $((SECONDS - start)) s wall (exit $rc)" | tee -a "$OUT/scaling.txt"
  done
fi
# One line per stage's exit, and a failing exit (a timeout, 124, is a stop the next call resumes) for the script.
summary=$(grep -h -E "^(grid|modern|context table|checkpoint|budget curve) exit [0-9]+" "$OUT"/*.log 2>/dev/null)
echo "$summary" | sed '/^$/d' | tee "$OUT/summary.txt"
if echo "$summary" | grep -E "exit [0-9]+" | grep -v -E "exit (0|124)$" > /dev/null; then exit 1; fi
