"""The sorting network in Keras 3: chunk encoders, sorter heads (:mod:`audiosort.heads`), normalizations.

Importing this package registers audiosort's custom layers, losses and
metrics (package "audiosort"), which ``keras.saving.load_model`` needs to
reload a saved model (compiled or not) or encoder. Only ``keras.layers`` and ``keras.ops`` are used, so the models run
under the TensorFlow and JAX backends alike.
"""

from audiosort.models import layers, objectives, views
from audiosort.models.build import NORMALIZATIONS, build_feature_model, build_model, build_training_twin
from audiosort.models.encoders import ENCODERS, build_encoder
from audiosort.models.sorters import build_sorter

__all__ = [
    "ENCODERS", "NORMALIZATIONS", "build_encoder", "build_feature_model", "build_model", "build_sorter", "build_training_twin",
    "layers", "objectives",
]
