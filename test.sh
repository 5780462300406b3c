#!/usr/bin/env bash
# The tests. Installs what is missing, then runs pytest (extra arguments go to pytest).
#   bash test.sh                  # everything (GPU tests skip without CUDA)
#   bash test.sh -m "not slow"    # skip the end-to-end runs
#   bash test.sh --install-only   # only install (run.sh calls this)
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-$(command -v python3 || command -v python)}

if ! "$PY" -c "import torch" 2>/dev/null; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi >/dev/null 2>&1; then
    "$PY" -m pip install torch            # a GPU machine: the CUDA build
  else
    "$PY" -m pip install torch==2.13.0    # a CPU machine: pinned, so pip takes the CPU build, not GBs of CUDA
  fi
fi                                        # a torch already installed (say, a CUDA build) is kept as it is
missing=$("$PY" -c 'import importlib.util as u; print(" ".join(m for m in ("numpy", "tiktoken", "tqdm", "pytest") if u.find_spec(m) is None))')
if [ -n "$missing" ]; then
  "$PY" -m pip install $missing
fi
if "$PY" -c "import torch, sys; sys.exit(0 if torch.version.cuda else 1)" && ! "$PY" -c "import ninja" 2>/dev/null; then
  "$PY" -m pip install ninja              # a CUDA torch builds kernels.cu with torch.utils.cpp_extension, which needs ninja
fi
if [ "${1:-}" = "--install-only" ]; then
  exit 0
fi
exec "$PY" -m pytest "$@"
