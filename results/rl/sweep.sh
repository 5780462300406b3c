#!/usr/bin/env bash
# Which reward, which algorithm (issue 18, points 3 and 4): every reward (outcome, process, both)
# with PPO and with GRPO at equal rollouts (PPO without the critic's warm-up, whose rollouts
# would count), and PPO from the self-correction policy; then the tables (results/rl/summary.py).
# Needs a finished `bash run.sh` (the SFT policies and the PRM). Two runs at a time, a thread each.
#   bash results/rl/sweep.sh [OUT]     # OUT defaults to out/tiny; writes OUT/rl_sweep/ and prints the tables
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-out/tiny}
PRESET=$(python -c "import json; print(json.load(open('$OUT/data/meta.json'))['preset'])")
SEED=$(python -c "import json; print(json.load(open('$OUT/data/meta.json'))['seed'])")
for need in "$OUT/sft/ckpt.pt" "$OUT/prm/ckpt.pt"; do
  [ -e "$need" ] || { echo "error: no $need: run bash run.sh first" >&2; exit 1; }
done
one() {  # one NAME FLAGS...: train_rl.py in OUT/rl_sweep/NAME, beside links to the data, SFT policy and PRM
  local name=$1 dir=$OUT/rl_sweep/$1; shift
  mkdir -p "$dir"
  for x in data sft prm; do [ -e "$dir/$x" ] || ln -s "$(cd "$OUT/$x" && pwd)" "$dir/$x"; done
  [ -e "$dir/rl/metrics.json" ] && return
  OMP_NUM_THREADS=1 python train_rl.py --preset "$PRESET" --seed "$SEED" --out "$dir" "$@" >"$dir/log.txt" 2>&1
  echo "sweep: $name done"
}
pids=()
for reward in outcome process both; do
  one "ppo_$reward" --algo ppo --reward "$reward" --critic-warmup 0 & pids+=($!)
  one "grpo_$reward" --algo grpo --reward "$reward" & pids+=($!)
  for p in "${pids[@]}"; do wait "$p"; done; pids=()
done
SC=$OUT/selfcorrect
W=$(ls -d "$SC"/sft_w* 2>/dev/null | head -1 | xargs -r basename)
if [ -n "$W" ] && [ ! -e "$SC/rl_$W/metrics.json" ]; then  # RL from the policy trained on retry traces
  OMP_NUM_THREADS=2 python train_rl.py --preset "$PRESET" --seed "$SEED" --out "$SC" --policy "$W" >"$OUT/rl_sweep/selfcorrect_log.txt" 2>&1
  echo "sweep: self-correction ($W) done"
fi
python results/rl/summary.py "$OUT"
