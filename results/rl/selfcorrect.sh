#!/usr/bin/env bash
# Self-correction through RL at the pipeline's full width (issue 18, point 4). run.sh trains its
# self-correction SFT at the smallest width for few steps, where both policies are near chance; this
# trains the preset's own SFT on retry traces (a wrong step, the back token, the right step, at rate
# 0.2 a step), then the preset's PPO from it (outcome reward, the value model from the SFT trunk), and
# prints results/rl/steps.py's table (steps written, back-token use, right answers) for the pipeline's
# SFT and RL policies and for these two. About 10 minutes alone on the 2-core CPU (SFT, then PPO).
#   bash results/rl/selfcorrect.sh [OUT]     # OUT: a finished `bash run.sh` (default out/tiny); writes OUT/selfcorrect_full
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-out/tiny}
for need in "$OUT/sft/ckpt.pt" "$OUT/rl/ckpt.pt"; do
  [ -e "$need" ] || { echo "error: no $need: run bash run.sh first" >&2; exit 1; }
done
PRESET=$(python -c "import json; print(json.load(open('$OUT/data/meta.json'))['preset'])")
SEED=$(python -c "import json; print(json.load(open('$OUT/data/meta.json'))['seed'])")
SC=$OUT/selfcorrect_full
[ -e "$SC/data/meta.json" ] || python data/prepare.py --preset "$PRESET" --out "$SC" --seed "$SEED" --self-correct 0.2
[ -e "$SC/sft/metrics.json" ] || python train_sft.py --preset "$PRESET" --out "$SC" --seed "$SEED" $([ -e "$SC/sft/ckpt.pt" ] && echo --resume)
[ -e "$SC/rl/metrics.json" ] || python train_rl.py --preset "$PRESET" --out "$SC" --seed "$SEED"
python results/rl/steps.py "$OUT" "$OUT/sft/ckpt.pt" "$OUT/rl/ckpt.pt" "$SC/sft/ckpt.pt" "$SC/rl/ckpt.pt"
