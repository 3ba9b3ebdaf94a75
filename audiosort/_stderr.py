"""Keep native libraries' start-up chatter off stderr, where the CLI's one-line errors go."""

import contextlib
import logging
import os


# TensorFlow's C++ log level as the user gave it, before audiosort set its own (None: not given).
_USER_TF_LOG_LEVEL = os.environ.get("TF_CPP_MIN_LOG_LEVEL")


def set_tensorflow_log_level(level: str) -> None:
    """Set ``TF_CPP_MIN_LOG_LEVEL`` (read when TensorFlow is imported) unless the user set it."""
    if _USER_TF_LOG_LEVEL is None:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = level


def quiet_tensorflow_logs() -> None:
    """Before TensorFlow is imported: keep its runtime's log lines and its Python warnings off stderr.

    ``TF_CPP_MIN_LOG_LEVEL=3`` drops the C++ runtime's lines up to ERROR, which
    here are notes, not failures: "failed call to cuInit" on a machine without
    a GPU, and at n = 20 "oneDNN supports DT_INT64 only on platforms with
    AVX-512" (Keras's TensorFlow ``take_along_axis`` casts its indices to
    int64). A failing op still raises its Python exception, and a value the
    user set (``TF_CPP_MIN_LOG_LEVEL=0`` shows everything) is kept. The
    ``tensorflow`` Python logger at ERROR drops warnings such as "triggered
    tf.function retracing", which the audit provokes by training a fresh model
    per sanity set; TensorFlow keeps a level set before it is imported
    (tensorflow/python/platform/tf_logging.py).
    """
    set_tensorflow_log_level("3")
    logging.getLogger("tensorflow").setLevel(logging.ERROR)


@contextlib.contextmanager
def native_stderr_silenced():
    """Send file descriptor 2 to /dev/null for the duration (Python exceptions still raise)."""
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
