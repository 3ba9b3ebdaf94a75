"""audiosort: learn audio representations without labels by sorting audio.

A track is cut into n chunks with random gaps between them, the chunks are
shuffled, and a network learns to restore their order. The encoder it learns
is then reused as a feature extractor.

Importing the package registers audiosort's custom Keras layers, so that
``keras.saving.load_model("run/encoder.keras")`` works after ``import audiosort``.
"""

import os

# TensorFlow's C++ start-up chatter ("could not find cuda drivers", oneDNN notes)
# drowns the one-line errors the CLI promises; users can still lower it.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from audiosort.errors import AudiosortError  # noqa: E402

__version__ = "0.1.0"
__all__ = ["AudiosortError", "__version__"]
