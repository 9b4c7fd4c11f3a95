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
# pip's notes about this machine's local package mirrors are noise for the user; errors still show.
pip_quiet() { "$PY" -m pip "$@" 2>&1 | { grep -v -e "is neither a file nor a directory" -e "^\s*$" || true; }; }
pip_quiet install -q --upgrade pip setuptools wheel
pip_quiet install -q -c constraints.txt torch torchvision
bash scripts/install_learn2learn.sh "$PY" 2>&1 | { grep -v "is neither a file nor a directory" || true; }
pip_quiet install -q -c constraints.txt -e ".$extras"
# The example external plugin package is part of the test suite (entry-point registration).
if [ -n "$extras" ]; then
  pip_quiet install -q --no-deps --no-build-isolation ./examples/plugin-package
fi
echo "environment ready: $VENV ($("$PY" -c 'import torch; print("torch", torch.__version__)'))"
