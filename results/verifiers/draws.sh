#!/usr/bin/env bash
# How much do the search verdicts move between sampling draws? The SFT policy's grid of a finished
# `bash run.sh` run again with other sampling seeds (same policy, PRM, ORM and test problems), two at
# a time, a thread each; then each search row of the verdict table per draw and pooled
# (results/verifiers/draws.py).
#   bash results/verifiers/draws.sh out/tiny 100 101     # writes out/tiny_draws/seedK/ for each K
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=$1; shift
PRESET=$(python -c "import json; print(json.load(open('$OUT/data/meta.json'))['preset'])")
dirs=()
for k in "$@"; do
  dir=${OUT}_draws/seed$k; dirs+=("$dir"); mkdir -p "$dir"
  for x in data sft prm; do [ -e "$dir/$x" ] || ln -s "$(cd "$OUT/$x" && pwd)" "$dir/$x"; done
  [ -e "$dir/search/scaling.json" ] || OMP_NUM_THREADS=1 python search.py --preset "$PRESET" --out "$dir" --seed "$k" \
    --method all --budget 1,4,16,64 --max-tree-budget 16 >"$dir/log.txt" 2>&1 &
  [ $(jobs -r | wc -l) -lt 2 ] || wait -n
done
wait
python results/verifiers/draws.py "$OUT" "${dirs[@]}"
