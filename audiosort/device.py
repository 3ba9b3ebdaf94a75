"""The machine a run trains on: its name for the logs, the precision that suits it, a clean Keras state between runs."""

from __future__ import annotations

import gc

import keras


def describe_device() -> str:
    """The device training runs on, for the start line and metrics.json: GPU names, or why the CPU."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        names = [tf.config.experimental.get_device_details(gpu).get("device_name", gpu.name) for gpu in gpus]
    elif backend == "jax":
        import jax

        names = [device.device_kind for device in jax.devices() if device.platform in ("gpu", "tpu")]
    else:
        names = []
    if not names:
        return f"CPU: no GPU visible to {backend}"
    return ", ".join(f"{names.count(name)} x {name}" for name in dict.fromkeys(names))


def precision_policy(setting: str) -> str:
    """The Keras dtype policy for ``train.mixed_precision``: "auto" is mixed_bfloat16 on a GPU or TPU, else float32."""
    if setting != "auto":
        return setting
    return "mixed_bfloat16" if _accelerator_available() else "float32"


def _accelerator_available() -> bool:
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return bool(tf.config.list_physical_devices("GPU"))
    if backend == "jax":
        import jax

        return jax.default_backend() in ("gpu", "tpu")
    return False


def clear_keras_state() -> None:
    """Free what earlier models left behind, so runs in one process do not grow memory.

    ``keras.backend.clear_session`` alone is not enough on TensorFlow: every
    ``tf.custom_gradient`` traced in graph mode registers its gradient function
    in TensorFlow's global gradient registry under a unique
    ``CustomGradient-<uid>`` name and never removes it
    (tensorflow/python/ops/custom_gradient.py, ``_graph_mode_decorator``). That
    closure holds the whole traced train step, about 18 MiB per run here. Those
    names belong to graphs traced earlier, so dropping them between runs is safe
    as long as no other thread is tracing at the same time.
    """
    keras.backend.clear_session(free_memory=True)
    if keras.backend.backend() == "tensorflow":
        from tensorflow.python.framework import ops

        # A private registry: if a TensorFlow release renames it, skip (the memory test will say so).
        registry = getattr(getattr(ops, "_gradient_registry", None), "_registry", {})
        for name in [name for name in registry if name.startswith("CustomGradient-")]:
            del registry[name]
        gc.collect()
