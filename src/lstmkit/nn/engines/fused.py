"""The fused engine: torch's native recurrent kernel, called with lstmkit's parameter tensors.

On the CPU ``torch.lstm`` dispatches to oneDNN (float32/bfloat16) or torch's generic kernel;
on CUDA to cuDNN. It is the same function torch.nn.LSTM/GRU call, so our numbers equal
torch.nn's by construction. Weight drop and a batch-shared recurrent-dropout mask only change
the weight tensors handed to it (h ⊙ m fed to W_hh is W_hh with its columns scaled by m), so
they run here at full speed; anything else goes to the scan engine (engines.select_engine).

``torch.lstm`` and ``torch.gru`` are undocumented functions of the torch namespace (bound to
``torch._VF``); ``native_rnn`` is the one place that calls them, and
tests/nn/test_engines.py::test_native_rnn_contract fails loudly if their signature changes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from . import DirectionMasks, DirectionParams, RecurrentSpec, RunResult


def native_rnn(
    mode: str,
    x: Tensor,
    batch_sizes: Tensor | None,
    hx: tuple[Tensor, Tensor | None],
    flat_weights: list[Tensor],
    has_biases: bool,
    num_layers: int,
    bidirectional: bool,
) -> tuple[Tensor, Tensor, Tensor | None]:
    """Call torch's kernel: x (T, B, F) padded, or packed data (N, F) with batch_sizes.

    Returns output ((T, B, D*R) or (N, D*R)), h_n (D*L, B, R), c_n (D*L, B, H) or None.
    Dropout between layers is never asked of the kernel (run() applies it itself). The
    kernel's ``train`` flag follows grad mode: cuDNN keeps what its backward needs only then.
    """
    h0, c0 = hx
    train = torch.is_grad_enabled()
    if mode == "lstm":
        state = (h0, c0)
        if batch_sizes is None:
            out, h_n, c_n = torch.lstm(x, state, flat_weights, has_biases, num_layers, 0.0,
                                       train, bidirectional, False)
        else:
            out, h_n, c_n = torch.lstm(x, batch_sizes, state, flat_weights, has_biases,
                                       num_layers, 0.0, train, bidirectional)
        return out, h_n, c_n
    if batch_sizes is None:
        out, h_n = torch.gru(x, h0, flat_weights, has_biases, num_layers, 0.0, train,
                             bidirectional, False)
    else:
        out, h_n = torch.gru(x, batch_sizes, h0, flat_weights, has_biases, num_layers, 0.0,
                             train, bidirectional)
    return out, h_n, None


def _flat_weights(params: list[DirectionParams], masks: list[DirectionMasks]) -> list[Tensor]:
    # torch's order per layer-direction: w_ih, w_hh, b_ih, b_hh, w_hr.
    flat = []
    for p, m in zip(params, masks, strict=True):
        w_hh = p.w_hh if m.recurrent is None else p.w_hh * m.recurrent  # (G*H, R) * (1, R)
        flat += [t for t in (p.w_ih, w_hh, p.b_ih, p.b_hh, p.w_hr) if t is not None]
    return flat


def run(
    x: Tensor,
    lengths: Tensor | None,
    hx: tuple[Tensor, Tensor | None],
    params: list[DirectionParams],
    masks: list[DirectionMasks],
    spec: RecurrentSpec,
    training: bool,
) -> RunResult:
    """Run the stack over x (T, B, F) in torch's kernel; see engines.run_stack for the rules.

    With dropout between layers in training, the layers run one call each so that the dropout
    is ours (same masks as the other engines for the same seed); otherwise in one call.
    """
    D = spec.num_directions
    h0, c0 = hx
    if training and spec.dropout > 0 and spec.num_layers > 1:
        groups = [(layer * D, (layer + 1) * D) for layer in range(spec.num_layers)]
    else:
        groups = [(0, spec.num_layers * D)]
    layer_input, h_n, c_n = x, [], []
    for g, (start, stop) in enumerate(groups):
        if g > 0:
            layer_input = F.dropout(layer_input, spec.dropout, training=True)
        state = (h0[start:stop], None if c0 is None else c0[start:stop])
        out, h, c = _run_layers(layer_input, lengths, state, params[start:stop],
                                masks[start:stop], spec, (stop - start) // D)
        layer_input = out
        h_n.append(h)
        c_n.append(c)
    c_final = None if c0 is None else torch.cat(c_n)
    return RunResult(layer_input, torch.cat(h_n), c_final)


def _run_layers(
    x: Tensor,
    lengths: Tensor | None,
    hx: tuple[Tensor, Tensor | None],
    params: list[DirectionParams],
    masks: list[DirectionMasks],
    spec: RecurrentSpec,
    num_layers: int,
) -> tuple[Tensor, Tensor, Tensor | None]:
    flat = _flat_weights(params, masks)
    args = (flat, spec.bias, num_layers, spec.bidirectional)
    if lengths is None:
        return native_rnn(spec.mode, x, None, hx, *args)
    T = x.shape[0]
    packed = pack_padded_sequence(x, lengths.cpu(), enforce_sorted=False)
    order, restore = packed.sorted_indices, packed.unsorted_indices  # (B,)
    h0, c0 = hx
    state = (h0.index_select(1, order), None if c0 is None else c0.index_select(1, order))
    data, h_n, c_n = native_rnn(spec.mode, packed.data, packed.batch_sizes, state, *args)
    out, _ = pad_packed_sequence(
        packed._replace(data=data), total_length=T)  # (T, B, D*R), zeros at padding
    h_n = h_n.index_select(1, restore)
    c_n = None if c_n is None else c_n.index_select(1, restore)
    return out, h_n, c_n
