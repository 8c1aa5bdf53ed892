"""unrolled: recurrent neural networks made real, correct to the last gate.

The package reads as its architecture: `cells` (one step of RNN, LSTM, GRU),
`recurrent` (unrolling any cell over time: stacked, bidirectional, variable
lengths, torch's fused kernel when it computes the same function).
"""

from unrolled.cells import Cell, GRUCell, LSTMCell, RNNCell, make_cell
from unrolled.recurrent import Recurrent, reverse_padded, unroll

__all__ = ["Cell", "GRUCell", "LSTMCell", "RNNCell", "Recurrent", "make_cell", "reverse_padded", "unroll"]
__version__ = "0.1.0"
