"""lstmkit.nn: the recurrent core. LSTM and GRU layers and cells, drop-ins for torch.nn's.

Example:
    >>> import torch
    >>> from lstmkit.nn import LSTM
    >>> lstm = LSTM(8, 16, batch_first=True, recurrent_dropout=0.25)
    >>> output, (h_n, c_n) = lstm(torch.randn(4, 10, 8), lengths=torch.tensor([10, 7, 3, 1]))
    >>> tuple(output.shape), lstm.last_engine
    ((4, 10, 16), 'scan')
"""

from .cells import GRUCell, LSTMCell, gru_cell, lstm_cell
from .compat import from_keras, from_torch, to_keras, to_torch
from .engines import select_engine
from .layers import GRU, LSTM

__all__ = [
    "GRU",
    "GRUCell",
    "LSTM",
    "LSTMCell",
    "from_keras",
    "from_torch",
    "gru_cell",
    "lstm_cell",
    "select_engine",
    "to_keras",
    "to_torch",
]
