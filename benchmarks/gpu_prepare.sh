#!/usr/bin/env bash
# Prepares .gpu/ (git-ignored) for benchmarks/gpu_check.sh on a GPU machine without internet:
# the project as a wheel, the peers' wheels (easyfsl, submitit, gym), learn2learn's sdist with its C files
# regenerated (that machine has a compiler and Python 3.12), and FER2013 with the paper split's test classes
# complete and 3000 images of each training class (49 MiB), Omniglot at 28×28 (6.6 MiB) and CSRN's FER2013 CRN
# checkpoint (2.7 MiB): under the 64 MiB a device call accepts.
#   bash benchmarks/gpu_prepare.sh [path/to/fer2013.npz]      (after scripts/setup.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
FER=${1:-../shared/data/fer2013.npz}
PY=.venv/bin/python
grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >> .git/info/exclude
mkdir -p .gpu/whl .gpu/data
rm -f .gpu/whl/fewshot_bench-*.whl
"$PY" -m pip wheel -q --no-deps -w .gpu/whl . 2>&1 | { grep -v "is neither a file nor a directory" || true; }
[ -f .gpu/whl/easyfsl-1.5.0-py3-none-any.whl ] || python3 -m pip download -q --no-deps --only-binary=:all: \
  -d .gpu/whl easyfsl==1.5.0 submitit==1.5.4
[ -f .gpu/whl/gym-0.26.2-py3-none-any.whl ] || "$PY" -m pip wheel -q --no-deps -w .gpu/whl gym==0.26.2 gym_notices
if [ ! -d .gpu/l2l-src ]; then
  tmp=$(mktemp -d)
  (cd "$tmp" && python3 -m pip download -q --no-deps --no-binary learn2learn learn2learn==0.2.0 && tar xzf learn2learn-0.2.0.tar.gz)
  rm -rf "$tmp"/learn2learn-0.2.0/{docs,examples,tests} "$tmp"/learn2learn-0.2.0/learn2learn/data/*.c
  (cd "$tmp/learn2learn-0.2.0" && "$OLDPWD/$PY" -m cython -3 learn2learn/data/*.pyx)
  mv "$tmp/learn2learn-0.2.0" .gpu/l2l-src && rm -rf "$tmp"
fi
[ -f .gpu/data/fer2013-gpu.npz ] || "$PY" benchmarks/grid.py --make-subset .gpu/data/fer2013-gpu.npz --data "$FER" \
  --cap 3000 --uncapped angry,disgust,fear
# The context stage: Omniglot for the budget curve, and CSRN's released CRN checkpoint when a clone of their
# repository is at $CSRN (github.com/smu-ivpl/CSRN; the file is theirs and is not committed here).
[ -f .gpu/data/omniglot28.npz ] || cp "${OMNIGLOT:-../shared/data/omniglot28.npz}" .gpu/data/omniglot28.npz
CSRN=${CSRN:-../CSRN}
if [ -f "$CSRN/weights/fer2013/CRN_fer2013_feature_encoder_model_best.pth" ]; then
  mkdir -p .gpu/csrn && cp "$CSRN/weights/fer2013/CRN_fer2013_feature_encoder_model_best.pth" .gpu/csrn/
else
  echo "note: no CSRN checkpoint at $CSRN/weights/fer2013 (git clone https://github.com/smu-ivpl/CSRN $CSRN); the context stage skips it"
fi
du -sh .gpu
