#!/usr/bin/env bash
# Prove the JAX install path on a machine without TensorFlow (issue 21 §5): a fresh venv gets
# `pip install -e '.[jax]'` (dependencies resolved by pip, nothing skipped), `import tensorflow` must
# fail there, and `audiosort prepare/train/eval` must run under KERAS_BACKEND=jax on a tiny corpus.
#   scripts/check_jax_install.sh [FOLDER]      (default: a fresh temporary folder, removed afterwards)
# Too slow for the test suite (measured on the 2-core EPYC at load 9-10: install 250 s, the three
# commands 164 s); tests/test_backends.py checks the same dependency closure from installed metadata.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
work=${1:-$(mktemp -d)}
[ -n "${1:-}" ] || trap 'rm -rf "$work"' EXIT
started=$SECONDS
python3 -m venv "$work/venv"
"$work/venv/bin/pip" install -q -e "$repo[jax]"
echo "installed '.[jax]' in $((SECONDS - started)) s"
if "$work/venv/bin/python" -c "import tensorflow" 2>/dev/null; then
    echo "FAIL: tensorflow is importable after pip install -e '.[jax]'" >&2
    exit 1
fi
echo "import tensorflow fails: not installed"
started=$SECONDS
export KERAS_BACKEND=jax
tiny="$repo/configs/tiny.yaml"
"$work/venv/bin/audiosort" prepare --synthetic music --out "$work/corpus" --duration 3m --track-seconds 15 \
    --puzzles 100 --config "$tiny" --quiet
"$work/venv/bin/audiosort" train --config "$tiny" --set "data.corpus=$work/corpus" --runs-dir "$work/runs" --quiet
"$work/venv/bin/audiosort" eval "$work/runs/tiny" --sanity noise --puzzles 50 | tail -1
echo "prepare, train and eval under JAX in $((SECONDS - started)) s"
