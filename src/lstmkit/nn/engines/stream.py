"""The streaming step of a plain LSTM on the compiled loops (native_scan.cpp, lstm_cell_step).

``LSTM.step()`` at batch 1 is bound by reading the weights: about 1.2 MB a step at H = 256.
torch's F.linear reads W_ih and W_hh in two MKL calls on one core; the compiled step reads
both, as they are stored, in one pass of dot products split across the cores, then runs the
scan's gate kernel, all in one call. It serves inference only (no autograd graph) on the CPU
in float32/float64, for layers without projection or layer normalisation; everything else
takes the cells' path (lstmkit.nn.cells), which gives the same numbers.
"""

from __future__ import annotations

import torch
from torch import Tensor

from . import DirectionParams, scan


def runs(x: Tensor, state: tuple[Tensor, Tensor | None], params: list[DirectionParams],
         mode: str, proj_size: int, layer_norm: bool) -> bool:
    """Whether the compiled step can run this call of step() (x, state (h0, c0))."""
    if mode != "lstm" or proj_size > 0 or layer_norm:
        return False
    if torch.is_grad_enabled() and any(
            t is not None and t.requires_grad for t in (x, *state, *(w for p in params
                                                                     for w in p))):
        return False  # a graph is wanted: the cells' path builds it
    return scan.compiled_loops_run(x)  # CPU, float32/64, the library built


def lstm_step(x: Tensor, h: Tensor, c: Tensor, p: DirectionParams) -> tuple[Tensor, Tensor]:
    """One plain LSTM step: x (B, F), h and c (B, H) -> h', c' (B, H)."""
    h_next, c_next = torch.ops.lstmkit_native.lstm_cell_step(x, h, c, p.w_ih, p.w_hh, p.b_ih,
                                                             p.b_hh)
    return h_next, c_next
