#!/usr/bin/env bash
# Run HEAR 2021's own submission check (PyPI `hearvalidator`) on a trained run:
#   scripts/validate_hear.sh RUN [PACKAGES]
# The validator imports PyTorch as well as TensorFlow, so it and torch (several GB) are installed once into
# PACKAGES (default .hear-validator/, git-ignored), apart from the project's environment; run it with the
# project's venv active. It checks load_model's type and attributes and the shapes, dtypes and timestamps of
# get_timestamp_embeddings / get_scene_embeddings on white noise, and prints "Looks good!" on success.
# KERAS_BACKEND=jax scripts/validate_hear.sh RUN validates under JAX (TensorFlow must be installed: the
# validator imports it).
set -euo pipefail
run=${1:?usage: scripts/validate_hear.sh RUN [PACKAGES]}
packages=${2:-.hear-validator}
if [ ! -d "$packages/hearvalidator" ]; then
    pip install -q --target "$packages" torch
    # --no-deps: its other requirement, TensorFlow, is the project's own.
    pip install -q --no-deps --target "$packages" hearvalidator
fi
KERAS_BACKEND=${KERAS_BACKEND:-tensorflow} PYTHONPATH="$packages${PYTHONPATH:+:$PYTHONPATH}" python -m hearvalidator.validate audiosort.hear --model "$run"
