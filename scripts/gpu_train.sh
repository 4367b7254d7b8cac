#!/usr/bin/env bash
# Train the `gpu`-preset "ours" model (the paper's architecture) on a CUDA machine, within a time
# budget, into a zoo folder to merge into asbsr/zoo; and measure the GPU's training and inference
# speed on the way. No Jupyter stack needed: torch, numpy, scikit-image, tqdm and matplotlib.
#
# From the repository root (allow it 10 minutes):
#   bash scripts/gpu_train.sh
# Its measured time on an H100 is in benchmarks/RESULTS.md.
# Three steps, each announced by `== step N: ...` and closed by `ok (Xs)` or `FAILED (...)`:
#   1  rates: benchmarks/perf.py times both training stages at the preset's size
#      (5 warm-up + 20 timed steps each) -> $OUT/perf_train.json
#   2  train: the step counts are the preset's if they fit GPU_TRAIN_BUDGET seconds (300) at the
#      measured rates, else both stages are cut by one factor (keeping their ratio), rounded
#      down to multiples of 250 steps (asbsr/lab/step_budget.py); then `python -m asbsr.lab.zoo_train
#      --preset gpu --seeds 0 --methods ours` with those counts as overrides -> $OUT/zoo/
#      (MANIFEST.json, the stage-1 file, ours-gpu-s0.pt, the validation scores in the manifest)
#   3  inference: benchmarks/perf.py, whole-image inference and the sweep -> $OUT/perf_infer.json
# Limits: 1 at most 90 s, 2 at most the budget + 60 s, 3 at most 100 s (550 s together).
# Everything printed also lands in $OUT/gpu_train.log. Then, on the machine with the checkout:
#   python -m asbsr.lab.zoo_train --merge <the fetched folder>/zoo      (adds the model to asbsr/zoo)
#
# Environment:
#   GPU_TRAIN_DRY_RUN=1       CPU rehearsal at the smoke size (tests/test_gpu_kit.py runs it)
#   GPU_TRAIN_BUDGET          seconds of training steps to fit (default 300; dry run 4)
#   GPU_TRAIN_RATES           training rates for step 2's plan instead of step 1's measured ones,
#                             it/s per stage, e.g. "1=2.5,2=1.0" (step 1 still runs); the dry-run
#                             test sets them so that its cut does not depend on the machine's speed
#   GPU_TRAIN_STEPS           which steps to run (default "1 2 3")
#   OUT                       where results go (default: a new temp folder)
#   PYTHON                    the interpreter (default python3)
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
DRY="${GPU_TRAIN_DRY_RUN:-0}"
STEPS=" ${GPU_TRAIN_STEPS:-1 2 3} "
PYTHON="${PYTHON:-python3}"
OUT="${OUT:-$(mktemp -d /tmp/gpu_train_out.XXXXXX)}"
WORK="$(mktemp -d /tmp/gpu_train_work.XXXXXX)"
if [[ "$DRY" == 1 ]]; then
  PRESET=smoke DEVICE=cpu BUDGET="${GPU_TRAIN_BUDGET:-4}" UNIT=10 TRAIN_LIMIT=300  # a busy CPU is slow
  export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
  RATE_ARGS=(--warmup 1 --steps 3)
  INFER_ARGS=(--sizes smoke --inputs 48 --scales 2 --sweep-input 32 --sweep-repeats 1 --in-process)
else
  PRESET=gpu DEVICE=cuda BUDGET="${GPU_TRAIN_BUDGET:-300}" UNIT=250
  TRAIN_LIMIT=$((BUDGET + 60))  # start-up, validation and export took 14 s on an H100
  RATE_ARGS=(--warmup 5 --steps 20)
  INFER_ARGS=(--sizes gpu,cpu --inputs 256,512 --scales 2,4 --sweep-input 256 --sweep-scale 4)
fi
mkdir -p "$OUT"
source scripts/tee_log.sh
tee_log "$OUT/gpu_train.log" "$WORK" "$OUT/zoo/.MANIFEST.lock"
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"

STARTED=$SECONDS FAILED=()
begin() { NAME="step $1: $2"; BEGUN=$SECONDS; echo "== $NAME"; }
ended() {
  if (($1 == 0)); then echo "== $NAME ok ($((SECONDS - BEGUN))s)"
  else echo "== $NAME FAILED (exit $1, $((SECONDS - BEGUN))s)"; FAILED+=("${NAME%%:*}"); fi
}
wanted() { [[ "$STEPS" == *" $1 "* ]]; }

echo "gpu_train: dry_run=$DRY preset=$PRESET device=$DEVICE budget=${BUDGET}s out=$OUT"
[[ -n "${GPU_TRAIN_RATES:-}" ]] && echo "gpu_train: step 2 plans with GPU_TRAIN_RATES=$GPU_TRAIN_RATES it/s"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
"$PYTHON" -c "import sys, torch; print('python', sys.version.split()[0], '| torch', torch.__version__,
'| cuda', torch.version.cuda, torch.cuda.is_available())"

if wanted 1; then
  begin 1 "training rates at the $PRESET size"
  timeout -k 10 90 "$PYTHON" benchmarks/perf.py --device "$DEVICE" --sizes "$PRESET" --no-infer \
    --no-sweep "${RATE_ARGS[@]}" --out "$OUT/perf_train.json"
  ended $?
fi

# The step counts: the preset's, or both cut by one factor to fit the budget at the rates of
# step 1 (or GPU_TRAIN_RATES); prints the overrides, one a line (none when the preset's fit).
plan_steps() {
  local rates=(--rates-file "$OUT/perf_train.json")
  [[ -n "${GPU_TRAIN_RATES:-}" ]] && rates=(--rates "$GPU_TRAIN_RATES")
  "$PYTHON" -m asbsr.lab.step_budget --preset "$PRESET" --budget "$BUDGET" --unit "$UNIT" "${rates[@]}"
}

if wanted 2; then
  begin 2 "train $PRESET-preset ours within ${BUDGET}s of steps"
  mapfile -t OVERRIDES < <(plan_steps)
  echo "overrides: ${OVERRIDES[*]:-none, the step counts of the preset}"
  TRAIN_ARGS=(--preset "$PRESET" --seeds 0 --methods ours --variants --device "$DEVICE"
              --work "$WORK" --zoo "$OUT/zoo")
  ((${#OVERRIDES[@]})) && TRAIN_ARGS+=(--set "${OVERRIDES[@]}")
  # the progress bars one a line, readable in the log
  timeout -k 15 "$TRAIN_LIMIT" "$PYTHON" -m asbsr.lab.zoo_train "${TRAIN_ARGS[@]}" \
    2>&1 | tr '\r' '\n' | grep -v '^$'
  ended "${PIPESTATUS[0]}"
fi

if wanted 3; then
  begin 3 "inference speed"
  timeout -k 10 100 "$PYTHON" benchmarks/perf.py --device "$DEVICE" --no-train "${INFER_ARGS[@]}" \
    --out "$OUT/perf_infer.json"
  ended $?
fi

echo "== results in $OUT: $(cd "$OUT" && find . -type f | sort | tr '\n' ' ')"
if ((${#FAILED[@]})); then echo "== gpu_train FAILED: ${FAILED[*]} ($((SECONDS - STARTED))s)"; exit 1; fi
echo "== gpu_train ok ($((SECONDS - STARTED))s)"
