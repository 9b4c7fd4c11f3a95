#!/usr/bin/env bash
# Creates (or refreshes) the project's virtual environment in .venv:
# pinned torch/torchvision, learn2learn built from source, and this package (editable).
#   scripts/setup.sh          runtime only
#   scripts/setup.sh --dev    plus the test tools
set -euo pipefail
cd "$(dirname "$0")/.."
extras=""
[ "${1:-}" = "--dev" ] && extras="[dev]"
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PY="$VENV/bin/python"
"$PY" -m pip install -q --upgrade pip setuptools wheel
"$PY" -m pip install -q -c constraints.txt torch torchvision
bash scripts/install_learn2learn.sh "$PY"
"$PY" -m pip install -q -c constraints.txt -e ".$extras"
echo "environment ready: $VENV ($("$PY" -c 'import torch; print("torch", torch.__version__)'))"
