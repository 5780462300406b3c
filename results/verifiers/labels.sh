#!/usr/bin/env bash
# Oracle against Monte Carlo labels (issue 17, point 2): the PRM trained on the same 2048 of the
# SFT policy's solutions with the oracle's labels, Math-Shepherd's hard labels and its soft ones
# (M rollouts per step), each judged on the same test samples (train_prm.py's verifier table) and
# by what it buys (search.py: PRM best-of-4 and -16 on the grid's problems); then the table.
# Needs a finished `bash run.sh` (the SFT policy). Two runs at a time, a thread each.
#   bash results/verifiers/labels.sh [OUT] [M]     # OUT defaults to out/tiny, M to 4; writes OUT/prm_labels/
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-out/tiny} M=${2:-4}
[ -e "$OUT/sft/ckpt.pt" ] || { echo "error: no $OUT/sft/ckpt.pt: run bash run.sh first" >&2; exit 1; }
PRESET=$(python -c "import json; print(json.load(open('$OUT/data/meta.json'))['preset'])")
SEED=$(python -c "import json; print(json.load(open('$OUT/data/meta.json'))['seed'])")
one() {  # one LABELS: the PRM on those labels in OUT/prm_labels/LABELS, then its best-of-N
  local dir=$OUT/prm_labels/$1
  mkdir -p "$dir"
  for x in data sft; do [ -e "$dir/$x" ] || ln -s "$(cd "$OUT/$x" && pwd)" "$dir/$x"; done
  local common=(--preset "$PRESET" --seed "$SEED" --out "$dir")
  [ -e "$dir/prm/metrics.json" ] || OMP_NUM_THREADS=1 python train_prm.py "${common[@]}" --labels "$1" --problems 2048 \
    --steps 300 --rollouts "$M" >"$dir/prm_log.txt" 2>&1
  [ -e "$dir/search/scaling.json" ] || OMP_NUM_THREADS=1 python search.py "${common[@]}" --method bon-prm --budget 4,16 \
    >"$dir/search_log.txt" 2>&1
  echo "labels: $1 done"
}
one oracle & a=$!; one mc-hard & b=$!; wait $a $b
one mc-soft
python results/verifiers/labels_summary.py "$OUT"
