"""audiosort: learn audio representations without labels by sorting audio.

A track is cut into n chunks with random gaps between them, the chunks are
shuffled, and a network learns to restore their order. The encoder it learns
is then reused as a feature extractor.

Importing the package registers audiosort's custom Keras layers, so that
``keras.saving.load_model("runs/demo/encoder.keras")`` works after
``import audiosort``.
"""

import os

from audiosort._stderr import native_stderr_silenced
from audiosort.errors import AudiosortError

# TensorFlow 2.21 prints start-up notes from C++ (oneDNN, "could not find cuda
# drivers", and "failed call to cuInit" when it first looks for a GPU) before its
# log level applies; they would break the CLI's promise of one line on stderr.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
with native_stderr_silenced():
    import keras

    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.list_physical_devices("GPU")

from audiosort import models  # noqa: E402  (registers the custom layers)

__version__ = "0.1.0"
__all__ = ["AudiosortError", "__version__", "models"]
