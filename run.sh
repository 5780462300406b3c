#!/usr/bin/env bash
# The main job: the o1 pipeline as far as it is built (prepare the task, chain-of-thought SFT),
# with the preset the hardware calls for: small on a GPU, tiny on a CPU. Ends with the per-bin
# accuracy table. PRESET=... and OUT=... override the choice.
set -euo pipefail
cd "$(dirname "$0")"
bash test.sh --install-only
PY=${PYTHON:-$(command -v python3 || command -v python)}
PRESET=${PRESET:-$("$PY" -c 'import torch; print("small" if torch.cuda.is_available() else "tiny")')}
OUT=${OUT:-out/$PRESET}
echo "run.sh: preset $PRESET, outputs in $OUT"
"$PY" data/prepare.py --preset "$PRESET" --out "$OUT"
"$PY" train_sft.py --preset "$PRESET" --out "$OUT"
