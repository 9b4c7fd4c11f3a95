#!/usr/bin/env bash
# Creates (or refreshes) the project's virtual environment in .venv:
# pinned torch/torchvision and this package (editable); learn2learn, built from source, only where it is used.
#   scripts/setup.sh                 runtime only (every method and the built-in datasets; no learn2learn)
#   scripts/setup.sh --learn2learn   plus learn2learn (the MAML cross-check in benchmarks/throughput.py, and the
#                                    tieredImageNet, CIFAR-FS, FC100 and CUB readers), about 2 minutes to build
#   scripts/setup.sh --dev           plus the test tools and learn2learn (the tests use it)
set -euo pipefail
cd "$(dirname "$0")/.."
extras=""
learn2learn=0
for arg in "$@"; do
  case "$arg" in
    --dev) extras="[dev]"; learn2learn=1 ;;
    --learn2learn) learn2learn=1 ;;
    *) echo "scripts/setup.sh: unknown option '$arg' (use --dev or --learn2learn)" >&2; exit 2 ;;
  esac
done
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PY="$VENV/bin/python"
# pip's notes about this machine's local package mirrors are noise for the user; errors still show.
pip_quiet() { "$PY" -m pip "$@" 2>&1 | { grep -v -e "is neither a file nor a directory" -e "^\s*$" || true; }; }
pip_quiet install -q --upgrade pip setuptools wheel
pip_quiet install -q -c constraints.txt torch torchvision
if [ "$learn2learn" = 1 ]; then
  bash scripts/install_learn2learn.sh "$PY" 2>&1 | { grep -v "is neither a file nor a directory" || true; }
fi
pip_quiet install -q -c constraints.txt -e ".$extras"
# The example external plugin package is part of the test suite (entry-point registration).
if [ -n "$extras" ]; then
  pip_quiet install -q --no-deps --no-build-isolation ./examples/plugin-package
fi
echo "environment ready: $VENV ($("$PY" -c 'import torch; print("torch", torch.__version__)'))"
