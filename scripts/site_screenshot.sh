#!/usr/bin/env bash
# The README's screenshot of `bench site`: the site of the committed records and the reproduction card (no local
# runs), its leaderboard filtered to Omniglot 5-way 1-shot, taken by headless Chromium (Debian's `chromium`).
# Usage: scripts/site_screenshot.sh [OUT.png]   (default docs/images/site.png; PY=python to use another one)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${1:-docs/images/site.png}
CHROMIUM=$(command -v chromium || command -v chromium-headless-shell || true)
if [ -z "$CHROMIUM" ]; then
  echo "error: no chromium on PATH; install it with: apt-get install -y chromium" >&2
  exit 3
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/no-runs"  # the committed records only, whatever results/runs holds here
"$PY" -m fewshot_bench site "$work/site" --runs "$work/no-runs" --records results/records --card results/REPRODUCTION.md
mkdir -p "$(dirname "$OUT")"
"$CHROMIUM" --headless --no-sandbox --disable-gpu --hide-scrollbars --user-data-dir="$work/profile" \
  --window-size=1440,760 --screenshot="$OUT" "file://$work/site/index.html#dataset=omniglot&way=5&shot=1" 2>/dev/null
echo "wrote $OUT"
