#!/usr/bin/env bash
# Is RL on the tiny preset short of compute? (issue 18): from the SFT policy of finished `bash run.sh`
# runs, PPO and GRPO (outcome reward) at learning rates LRS (1e-4 and 3e-5), 256 rollouts an iteration
# (the pipeline's default: 64 x 24), all runs at once on one GPU, each cut after LIMIT seconds; a run
# cut short is evaluated from its last validated checkpoint. Then the tables (results/rl/summary.py).
#   bash results/rl/long.sh out/tiny out/tiny_seed1     # writes OUT/rl_long/ for each OUT
set -uo pipefail
cd "$(dirname "$0")/../.."
LIMIT=${LIMIT:-400} ITERATIONS=${ITERATIONS:-200} LRS=${LRS:-1e-4 3e-5}
PY=${PYTHON:-$(command -v python3 || command -v python)}
one() {  # one OUT NAME FLAGS...: train_rl.py in OUT/rl_long/NAME, beside links to the data, SFT policy and PRM
  local out=$1 name=$2; shift 2
  local dir=$out/rl_long/$name meta=$out/data/meta.json
  local flags=(--preset "$("$PY" -c "import json; print(json.load(open('$meta'))['preset'])")"
               --seed "$("$PY" -c "import json; print(json.load(open('$meta'))['seed'])")" --out "$dir"
               --rollouts 256 --minibatch 64 --eval-every 10 "$@")
  [ -e "$dir/rl/metrics.json" ] && return  # done in an earlier call
  mkdir -p "$dir"
  for x in data sft prm; do [ -e "$dir/$x" ] || ln -s "$(cd "$out/$x" && pwd)" "$dir/$x"; done
  OMP_NUM_THREADS=2 timeout "$LIMIT" "$PY" train_rl.py "${flags[@]}" --iterations "$ITERATIONS" >"$dir/log.txt" 2>&1
  [ -e "$dir/rl/metrics.json" ] ||  # cut short: no iterations left to run, so it only evaluates the checkpoint
    "$PY" train_rl.py "${flags[@]}" --resume --iterations 1 >>"$dir/log.txt" 2>&1
  echo "long: $dir done"
}
for out in "$@"; do
  for lr in $LRS; do
    one "$out" "ppo_$lr" --algo ppo --lr "$lr" &
    one "$out" "grpo_$lr" --algo grpo --lr "$lr" &
  done
done
wait
for out in "$@"; do echo "== $out"; "$PY" results/rl/summary.py "$out" rl_long; done
