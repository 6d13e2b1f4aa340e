"""lstmkit: LSTM and GRU networks on PyTorch, from our own recurrent core to applications.

The recurrent core lives in :mod:`lstmkit.nn` (``LSTM``, ``GRU``, ``LSTMCell``, ``GRUCell``,
converters to and from torch.nn and Keras); the applications in :mod:`lstmkit.tasks`
(``Forecaster``, ``SequenceClassifier``); the errors a user catches in :mod:`lstmkit.errors`.
"""

from . import nn
from .errors import CheckpointError, DataError, LstmkitError
from .tasks.classify import ClassifyConfig, SequenceClassifier
from .tasks.forecast import ForecastConfig, Forecaster

__version__ = "0.1.0"

__all__ = ["CheckpointError", "ClassifyConfig", "DataError", "ForecastConfig", "Forecaster",
           "LstmkitError", "SequenceClassifier", "__version__", "nn"]
