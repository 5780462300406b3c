#!/usr/bin/env bash
# The main job: the whole o1 pipeline with the preset the hardware calls for (small on a GPU,
# tiny on a CPU): prepare the task, chain-of-thought SFT, the PRM and ORM, PPO, and the search
# grid for the SFT and the RL policy; SFT at smaller widths with their grids (train-time against
# test-time compute) and on self-correction traces, beside the main chain; then out/PRESET/report.md gathers every table.
# A stage whose metrics.json is newer than its inputs is skipped; a stage that was killed after a
# checkpoint resumes from it. PRESET=... and OUT=... override the choice.
set -euo pipefail
cd "$(dirname "$0")"
bash test.sh --install-only
PY=${PYTHON:-$(command -v python3 || command -v python)}
PRESET=${PRESET:-$("$PY" -c 'import torch; print("small" if torch.cuda.is_available() else "tiny")')}
OUT=${OUT:-out/$PRESET}
echo "run.sh: preset $PRESET, outputs in $OUT"

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
}

resume_flag() {  # --resume when a killed run left a checkpoint behind
  [ -e "$1" ] && echo "--resume" || true
}

common=(--preset "$PRESET" --out "$OUT")
stage prepare "$OUT/data/meta.json" "data/task.py data/tokenizer.py" \
  "$PY" data/prepare.py "${common[@]}"

# Two lanes side by side, each with half the cores: the o1 chain (SFT -> PRM -> PPO -> search), and
# the extra SFT runs (smaller widths, self-correction) that need only the data. Small models do
# not use 2 threads well: on a 2-core CPU two 1-thread runs at once finish sooner than in turn.
THREADS=$(( $("$PY" -c 'import os; print(os.cpu_count() or 2)') / 2 )); THREADS=$(( THREADS > 0 ? THREADS : 1 ))
SIDE_LOG=$OUT/side_lane.log SIDE_SUMMARY=$OUT/side_lane.summary
: >"$SIDE_SUMMARY"
logged() { "$@" >>"$SIDE_LOG" 2>&1; }  # the side lane's progress bars go to its log, its summaries to SIDE_SUMMARY
WIDTHS=$("$PY" -c "from common import PRESETS; print(*PRESETS['$PRESET'].sweep_widths)")
SC=$OUT/selfcorrect W=${WIDTHS##* }  # self-correction at the largest sweep width
(
  export OMP_NUM_THREADS=$THREADS
  exec 3>>"$SIDE_SUMMARY"  # on the terminal its summaries would land inside the main lane's progress bars
  # train-time against test-time compute: the same SFT at smaller widths
  for W in $WIDTHS; do
    stage "sft (width $W)" "$OUT/sft_w$W/metrics.json" "$OUT/data/meta.json" \
      logged "$PY" train_sft.py "${common[@]}" --width "$W" $(resume_flag "$OUT/sft_w$W/ckpt.pt")
  done
  # self-correction: traces where some steps are written wrong and then taken back; report.md
  # compares this SFT with the same width trained on clean traces
  stage "prepare (self-correction traces)" "$SC/data/meta.json" "data/task.py data/tokenizer.py" \
    logged "$PY" data/prepare.py --preset "$PRESET" --out "$SC" --self-correct 0.2
  stage "sft (self-correction, width $W)" "$SC/sft_w$W/metrics.json" "$SC/data/meta.json" \
    logged "$PY" train_sft.py --preset "$PRESET" --out "$SC" --width "$W" $(resume_flag "$SC/sft_w$W/ckpt.pt")
) &
side=$!
trap 'pkill -P "$side" 2>/dev/null; kill "$side" 2>/dev/null || true' EXIT  # main lane failed or interrupted: stop the side lane
echo "run.sh: the extra SFT runs (widths $WIDTHS, self-correction) run beside the main chain; their output is in $SIDE_LOG, their summaries follow the main chain's"
(
  export OMP_NUM_THREADS=$THREADS
  stage sft "$OUT/sft/metrics.json" "$OUT/data/meta.json" \
    "$PY" train_sft.py "${common[@]}" $(resume_flag "$OUT/sft/ckpt.pt")
  stage prm "$OUT/prm/metrics.json" "$OUT/sft/metrics.json" \
    "$PY" train_prm.py "${common[@]}"
  stage rl "$OUT/rl/metrics.json" "$OUT/prm/metrics.json" \
    "$PY" train_rl.py "${common[@]}" $(resume_flag "$OUT/rl/ckpt.pt")
  stage "search (sft policy)" "$OUT/search/scaling.json" "$OUT/prm/metrics.json" \
    "$PY" search.py "${common[@]}" --method all --budget 1,4,16 --policy sft
)
wait "$side" || { cat "$SIDE_SUMMARY"; echo "run.sh: an extra SFT run failed: see $SIDE_LOG" >&2; exit 1; }
cat "$SIDE_SUMMARY"
trap - EXIT

# every core again: the RL policy's grid and the smaller widths' grids
stage "search (rl policy)" "$OUT/search_rl/scaling.json" "$OUT/rl/metrics.json" \
  "$PY" search.py "${common[@]}" --method all --budget 1,4,16 --policy rl
for W in $WIDTHS; do
  stage "search (width $W)" "$OUT/search_sft_w$W/scaling.json" "$OUT/sft_w$W/metrics.json $OUT/prm/metrics.json" \
    "$PY" search.py "${common[@]}" --method all --budget 1,4,16 --policy "sft_w$W"
done
"$PY" report.py --out "$OUT"
echo "run.sh: the whole pipeline in ${SECONDS}s"
