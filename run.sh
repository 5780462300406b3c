#!/usr/bin/env bash
# The main job: the whole o1 pipeline with the preset the hardware calls for (small on a GPU,
# tiny on a CPU): prepare the task, chain-of-thought SFT, the PRM and ORM, the SFT policy's search
# grid, PPO and its grid; SFT at a smaller width with its majority-vote grid (train-time against test-time
# compute) and on self-correction traces; then out/PRESET/report.md judges the o1 phenomena.
# SEED=1 bash run.sh runs it all again on other problems and weights, into out/PRESET_seed1.
# A stage whose metrics.json is newer than its inputs is skipped; a stage that was killed after a
# checkpoint resumes from it. PRESET=... and OUT=... override the choice (OUT is seed 0's directory).
set -euo pipefail
cd "$(dirname "$0")"
bash test.sh --install-only
PY=${PYTHON:-$(command -v python3 || command -v python)}
"$PY" -c "import matplotlib" 2>/dev/null || "$PY" -m pip install matplotlib  # the plots; the tests do not need it
PRESET=${PRESET:-$("$PY" -c 'import torch; print("small" if torch.cuda.is_available() else "tiny")')}
SEED=${SEED:-0}  # another seed: other problems, other initial weights, other samples, into OUT_seedK
BASE=${OUT:-out/$PRESET}
OUT=$BASE$([ "$SEED" = 0 ] || echo "_seed$SEED")
echo "run.sh: preset $PRESET, seed $SEED, outputs in $OUT"

current() {  # current FILE INPUT...: FILE exists and is newer than every INPUT
  local file=$1; shift
  [ -e "$file" ] || return 1
  for input in "$@"; do [ "$file" -nt "$input" ] || return 1; done
}

exec 3>&1  # stage() writes its one-line summaries to fd 3: stdout here, a file in the side lane
stage() {  # stage NAME OUTPUT "INPUTS" COMMAND...: run COMMAND unless OUTPUT is current
  local name=$1 output=$2 inputs=$3; shift 3
  if current "$output" $inputs; then
    echo "run.sh: $name is up to date ($output)" >&3
    return
  fi
  local t0=$SECONDS
  "$@"
  echo "run.sh: $name done in $((SECONDS - t0))s" >&3
  printf '%s\t%s\t%s\n' "$name" "$((SECONDS - t0))" "$t0" >>"$OUT/run_times.tsv"  # report.py's time table
}

resume_flag() {  # --resume when a killed run left a checkpoint behind
  [ -e "$1" ] && echo "--resume" || true
}

common=(--preset "$PRESET" --out "$OUT" --seed "$SEED")
mkdir -p "$OUT" && : >"$OUT/run_times.tsv"  # this invocation's stage times, for report.py
stage prepare "$OUT/data/meta.json" "data/task.py data/tokenizer.py" \
  "$PY" data/prepare.py "${common[@]}"

# The SFT policy first, with every core: everything after it needs it. Then two lanes side by
# side, each with half the cores (on a 2-core CPU two 1-thread runs at once finish sooner than in
# turn: small models do not use 2 threads well): the PRM, the verifiers' evaluation, the SFT
# policy's search grid, then a smaller width of SFT and its grid (the train-time against test-time
# exchange), beside the ORM, PPO (once the PRM is there) and its grid, and the same SFT width on
# self-correction traces.
THREADS=$(( $("$PY" -c 'import os; print(os.cpu_count() or 2)') / 2 )); THREADS=$(( THREADS > 0 ? THREADS : 1 ))
SIDE_LOG=$OUT/side_lane.log SIDE_SUMMARY=$OUT/side_lane.summary
WIDTHS=$("$PY" -c "from common import PRESETS; print(*PRESETS['$PRESET'].sft.sweep_widths)")
SC=$OUT/selfcorrect W=${WIDTHS##* }  # self-correction at the largest sweep width
lanes() {  # lanes MAIN SIDE: run two functions at once; MAIN on the terminal, SIDE's output in SIDE_LOG
  : >"$SIDE_SUMMARY"
  ( export OMP_NUM_THREADS=$THREADS; exec 3>>"$SIDE_SUMMARY"; "$2" ) >>"$SIDE_LOG" 2>&1 &
  local side=$!
  SIDE_PID=$side  # the main lane checks it is alive while it waits for the side lane's ORM
  trap "pkill -P $side 2>/dev/null; kill $side 2>/dev/null || true" EXIT  # main lane failed or interrupted: stop the side lane
  ( export OMP_NUM_THREADS=$THREADS; "$1" )
  wait "$side" || { cat "$SIDE_SUMMARY"; echo "run.sh: a side-lane stage failed: see $SIDE_LOG" >&2; exit 1; }
  trap - EXIT
  cat "$SIDE_SUMMARY"  # printed after the main lane's, which would otherwise cut through its progress bars
}

verifier_and_search() {
  stage prm "$OUT/prm/ckpt.pt" "$OUT/sft/metrics.json" \
    "$PY" train_prm.py "${common[@]}" --only prm $(resume_flag "$OUT/prm/prm_train.pt")
  until current "$OUT/prm/orm.pt" "$OUT/sft/metrics.json"; do  # the ORM trains on the side lane meanwhile
    kill -0 "$SIDE_PID" 2>/dev/null || { echo "run.sh: the side lane stopped before the ORM was trained: see $SIDE_LOG" >&2; exit 1; }
    sleep 2
  done
  stage "prm (evaluation)" "$OUT/prm/metrics.json" "$OUT/prm/ckpt.pt $OUT/prm/orm.pt" \
    "$PY" train_prm.py "${common[@]}" --only evaluate
  stage "search (sft policy)" "$OUT/search/scaling.json" "$OUT/prm/metrics.json" \
    "$PY" search.py "${common[@]}" --method all --budget 1,4,8,16,64 --max-tree-budget 16 --policy sft  # best-of-64: over-optimisation?
  for W in $WIDTHS; do  # train-time against test-time compute: the same SFT at a smaller width, and its grid
    stage "sft (width $W)" "$OUT/sft_w$W/metrics.json" "$OUT/data/meta.json" \
      "$PY" train_sft.py "${common[@]}" --width "$W" $(resume_flag "$OUT/sft_w$W/ckpt.pt")
    stage "search (width $W)" "$OUT/search_sft_w$W/scaling.json" "$OUT/sft_w$W/metrics.json" \
      "$PY" search.py "${common[@]}" --method majority --budget 1,4,16 --policy "sft_w$W"
  done
}
extra_policies_and_rl() {
  stage orm "$OUT/prm/orm.pt" "$OUT/sft/metrics.json" \
    "$PY" train_prm.py "${common[@]}" --only orm $(resume_flag "$OUT/prm/orm_train.pt")  # the baseline verifier, off the main lane's path
  until current "$OUT/prm/ckpt.pt" "$OUT/sft/metrics.json"; do sleep 2; done  # PPO's critic starts from the PRM
  stage rl "$OUT/rl/metrics.json" "$OUT/prm/ckpt.pt" \
    "$PY" train_rl.py "${common[@]}" $(resume_flag "$OUT/rl/ckpt.pt")
  stage "search (rl policy)" "$OUT/search_rl/scaling.json" "$OUT/rl/metrics.json" \
    "$PY" search.py "${common[@]}" --method majority --budget 1,4,8,16 --policy rl  # sharpening or learning?
  # self-correction: traces where some steps are written wrong and then taken back, at width W
  stage "prepare (self-correction traces)" "$SC/data/meta.json" "data/task.py data/tokenizer.py" \
    "$PY" data/prepare.py --preset "$PRESET" --out "$SC" --seed "$SEED" --self-correct 0.2
  stage "sft (self-correction, width $W)" "$SC/sft_w$W/metrics.json" "$SC/data/meta.json" \
    "$PY" train_sft.py --preset "$PRESET" --out "$SC" --seed "$SEED" --width "$W" $(resume_flag "$SC/sft_w$W/ckpt.pt")
}
stage sft "$OUT/sft/metrics.json" "$OUT/data/meta.json" \
  "$PY" train_sft.py "${common[@]}" $(resume_flag "$OUT/sft/ckpt.pt")
echo "run.sh: two lanes; the side lane (the ORM, PPO and its grid, the self-correction SFT) logs to $SIDE_LOG"
lanes verifier_and_search extra_policies_and_rl
"$PY" report.py --out "$OUT"  # its verdict table has a column for every seed run so far (OUT, OUT_seed1, ...)
[ "$OUT" = "$BASE" ] || [ ! -d "$BASE" ] || "$PY" report.py --out "$BASE"
printf 'the whole pipeline\t%s\t0\n' "$SECONDS" >>"$OUT/run_times.tsv"
echo "run.sh: the whole pipeline in ${SECONDS}s"
