"""audiosort: learn audio representations without labels by sorting audio.

A track is cut into n chunks with random gaps between them, the chunks are
shuffled, and a network learns to restore their order. The encoder it learns
is then reused as a feature extractor.

Importing the package imports neither Keras nor TensorFlow (``audiosort
--help`` and a usage error stay fast). Import ``audiosort.models`` to register
audiosort's custom Keras layers before ``keras.saving.load_model`` on a run's
file, or load it with :func:`audiosort.run.load_encoder` /
:func:`audiosort.run.load_run_model`, which do that.
"""

from audiosort._stderr import set_tensorflow_log_level
from audiosort.errors import AudiosortError

# TensorFlow 2.21 prints start-up notes from C++ below WARNING once it is imported (by whichever
# module needs it); audiosort.cli also silences the notes printed before the level applies.
set_tensorflow_log_level("2")

__version__ = "0.1.0"
__all__ = ["AudiosortError", "__version__"]
