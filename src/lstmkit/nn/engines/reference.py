"""The reference engine: a Python loop over the cells of lstmkit.nn.cells, one step at a time.

Slow and obviously right: the reverse direction walks the time steps backwards, a row's state
changes only at its valid steps (t < length), and zoneout mixes the new state with the old one
as Krueger et al. 2016 (arXiv:1606.01305) §2 write it. The tests hold every engine to this one.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..cells import LayerNormParams, gru_cell, lstm_cell
from . import (
    DirectionMasks,
    DirectionParams,
    DirectionResult,
    RecurrentSpec,
    RunResult,
    run_stack,
)


def run(
    x: Tensor,
    lengths: Tensor | None,
    hx: tuple[Tensor, Tensor | None],
    params: list[DirectionParams],
    masks: list[DirectionMasks],
    spec: RecurrentSpec,
    training: bool,
) -> RunResult:
    """Run the stack over x (T, B, F); see :func:`lstmkit.nn.engines.run_stack`."""
    return run_stack(_run_direction, x, lengths, hx, params, masks, spec, training)


def _run_direction(
    x: Tensor,
    lengths: Tensor | None,
    h: Tensor,
    c: Tensor | None,
    p: DirectionParams,
    m: DirectionMasks,
    spec: RecurrentSpec,
    training: bool,
    reverse: bool,
) -> DirectionResult:
    T, B, _ = x.shape
    norm = LayerNormParams(p.ln_ih, p.ln_hh, p.ln_cell_weight, p.ln_cell_bias)
    outputs: list[Tensor | None] = [None] * T
    for t in (reversed(range(T)) if reverse else range(T)):
        if spec.mode == "lstm":
            h_new, c_new = lstm_cell(x[t], h, c, p.w_ih, p.w_hh, p.b_ih, p.b_hh, p.w_hr, norm,
                                     m.recurrent)
        else:
            h_new = gru_cell(x[t], h, p.w_ih, p.w_hh, p.b_ih, p.b_hh, norm, m.recurrent,
                             spec.reset_after)
        if m.zoneout_h is not None:  # keep each unit of the old state with probability z
            h_new = m.zoneout_h[t] * h + (1 - m.zoneout_h[t]) * h_new
        if m.zoneout_c is not None:
            c_new = m.zoneout_c[t] * c + (1 - m.zoneout_c[t]) * c_new
        if lengths is None:
            h = h_new
            c = c_new if spec.mode == "lstm" else None
            outputs[t] = h
        else:
            valid = (t < lengths).to(x.device).unsqueeze(1)  # (B, 1)
            h = torch.where(valid, h_new, h)
            if spec.mode == "lstm":
                c = torch.where(valid, c_new, c)
            outputs[t] = torch.where(valid, h, torch.zeros_like(h))
    return DirectionResult(torch.stack(outputs), h, c)  # output (T, B, R)
