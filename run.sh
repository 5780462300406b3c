#!/usr/bin/env bash
# The main job: the whole o1 pipeline with the preset the hardware calls for (small on a GPU,
# tiny on a CPU): prepare the task, chain-of-thought SFT, the PRM and ORM, PPO, and the search
# grid for the SFT and the RL policy; SFT at smaller widths with their grids (train-time against
# test-time compute) and on self-correction traces; then out/PRESET/report.md gathers every table.
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

stage() {  # stage NAME OUTPUT "INPUTS" COMMAND...: run COMMAND unless OUTPUT is current
  local name=$1 output=$2 inputs=$3; shift 3
  if current "$output" $inputs; then
    echo "run.sh: $name is up to date ($output)"
    return
  fi
  local t0=$SECONDS
  "$@"
  echo "run.sh: $name done in $((SECONDS - t0))s"
}

resume_flag() {  # --resume when a killed run left a checkpoint behind
  [ -e "$1" ] && echo "--resume" || true
}

common=(--preset "$PRESET" --out "$OUT")
stage prepare "$OUT/data/meta.json" "data/task.py data/tokenizer.py" \
  "$PY" data/prepare.py "${common[@]}"
stage sft "$OUT/sft/metrics.json" "$OUT/data/meta.json" \
  "$PY" train_sft.py "${common[@]}" $(resume_flag "$OUT/sft/ckpt.pt")
stage prm "$OUT/prm/metrics.json" "$OUT/sft/metrics.json" \
  "$PY" train_prm.py "${common[@]}"
stage rl "$OUT/rl/metrics.json" "$OUT/prm/metrics.json" \
  "$PY" train_rl.py "${common[@]}" $(resume_flag "$OUT/rl/ckpt.pt")
stage "search (sft policy)" "$OUT/search/scaling.json" "$OUT/prm/metrics.json" \
  "$PY" search.py "${common[@]}" --method all --budget 1,4,16 --policy sft
stage "search (rl policy)" "$OUT/search_rl/scaling.json" "$OUT/rl/metrics.json" \
  "$PY" search.py "${common[@]}" --method all --budget 1,4,16 --policy rl
# train-time against test-time compute: the same SFT at smaller widths, each with its search grid
WIDTHS=$("$PY" -c "from common import PRESETS; print(*PRESETS['$PRESET'].sweep_widths)")
for W in $WIDTHS; do
  stage "sft (width $W)" "$OUT/sft_w$W/metrics.json" "$OUT/data/meta.json" \
    "$PY" train_sft.py "${common[@]}" --width "$W" $(resume_flag "$OUT/sft_w$W/ckpt.pt")
  stage "search (width $W)" "$OUT/search_sft_w$W/scaling.json" "$OUT/sft_w$W/metrics.json $OUT/prm/metrics.json" \
    "$PY" search.py "${common[@]}" --method all --budget 1,4,16 --policy "sft_w$W"
done
# self-correction: the smallest SFT again, on traces where some steps are written wrong and then
# taken back; report.md compares it with the same width trained on clean traces
SC=$OUT/selfcorrect W=${WIDTHS%% *}
stage "prepare (self-correction traces)" "$SC/data/meta.json" "data/task.py data/tokenizer.py" \
  "$PY" data/prepare.py --preset "$PRESET" --out "$SC" --self-correct 0.2
stage "sft (self-correction, width $W)" "$SC/sft_w$W/metrics.json" "$SC/data/meta.json" \
  "$PY" train_sft.py --preset "$PRESET" --out "$SC" --width "$W" $(resume_flag "$SC/sft_w$W/ckpt.pt")
"$PY" report.py --out "$OUT"
