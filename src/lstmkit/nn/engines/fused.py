"""The fused engine: torch's native recurrent kernel, called with lstmkit's parameter tensors.

On the CPU ``torch.lstm`` dispatches to oneDNN (float32/bfloat16) or torch's generic kernel;
on CUDA to cuDNN. It is the same function torch.nn.LSTM/GRU call, so our numbers equal
torch.nn's by construction. Weight drop and a batch-shared recurrent-dropout mask only change
the weight tensors handed to it (h ⊙ m fed to W_hh is W_hh with its columns scaled by m), so
they run here at full speed; anything else goes to the scan engine (engines.select_engine).

Variable lengths on the CPU rarely go through PackedSequence, whose kernel leaves oneDNN and
costs 3-6x the dense call: ``_lengths_path`` picks, by a cost model, dense segments between
distinct lengths (``_run_segments``), or one dense call for the steps every row runs and the
ragged rest on the scan engine's compiled loops (``_run_tail``), or those loops alone (on
CUDA cuDNN's packed path is fast and is used as it is).

``torch.lstm`` and ``torch.gru`` are undocumented functions of the torch namespace (bound to
``torch._VF``); ``native_rnn`` is the one place that calls them, and
tests/nn/test_engines.py::test_native_rnn_contract fails loudly if their signature changes.
"""

from __future__ import annotations

from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from . import (
    DirectionMasks,
    DirectionParams,
    RecurrentSpec,
    RunResult,
    reverse_within_lengths,
)


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
    kernel's ``train`` flag is on when a backward pass can follow (cuDNN keeps what its
    backward needs only then), whatever the module's mode.
    """
    h0, c0 = hx
    train = torch.is_grad_enabled() and (
        x.requires_grad or h0.requires_grad or (c0 is not None and c0.requires_grad)
        or any(w.requires_grad for w in flat_weights))
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
    ragged_on_scan: bool = True,
) -> RunResult:
    """Run the stack over x (T, B, F) in torch's kernel; see engines.run_stack for the rules.

    ``ragged_on_scan=False`` keeps every step in torch's kernel (packed or dense segments with
    lengths), as ``engine="fused"`` asked for by name does: second derivatives then work.

    In one call when it can. Layer by layer when dropout acts between layers in training (so
    that the dropout is ours: the same masks as the other engines for the same seed), and,
    on the CPU, for a bidirectional stack with lengths (each direction runs on its own).
    """
    # Decided once for the whole stack, so that every call below agrees.
    path = _lengths_path(x, lengths, params, ragged_on_scan)
    segmented = path != "packed"  # each direction on its own
    if not ((training and spec.dropout > 0 and spec.num_layers > 1)
            or (segmented and spec.bidirectional)):
        return RunResult(*_run_layers(x, lengths, hx, params, masks, spec, spec.num_layers,
                                      spec.bidirectional, path, training))
    D = spec.num_directions
    h0, c0 = hx
    layer_input, h_n, c_n = x, [], []
    for layer in range(spec.num_layers):
        if layer > 0 and training and spec.dropout > 0:
            layer_input = F.dropout(layer_input, spec.dropout, training=True)
        start, stop = layer * D, (layer + 1) * D
        if segmented and spec.bidirectional:
            outputs = []
            for k, reverse in ((start, False), (start + 1, True)):
                inp = reverse_within_lengths(layer_input, lengths) if reverse else layer_input
                state = (h0[k:k + 1], None if c0 is None else c0[k:k + 1])
                out, h, c = _run_layers(inp, lengths, state, params[k:k + 1], masks[k:k + 1],
                                        spec, 1, False, path, training)
                outputs.append(reverse_within_lengths(out, lengths) if reverse else out)
                h_n.append(h)
                c_n.append(c)
            layer_input = torch.cat(outputs, dim=2)  # (T, B, 2R)
        else:
            state = (h0[start:stop], None if c0 is None else c0[start:stop])
            layer_input, h, c = _run_layers(layer_input, lengths, state, params[start:stop],
                                            masks[start:stop], spec, 1, spec.bidirectional,
                                            path, training)
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
    bidirectional: bool,
    path: str = "packed",
    training: bool = False,
) -> tuple[Tensor, Tensor, Tensor | None]:
    """torch's kernel over these layer-directions: dense, or with lengths as ``path`` says
    (see _lengths_path; "tail" and "segments" unidirectional only)."""
    flat = _flat_weights(params, masks)
    args = (flat, spec.bias, num_layers, bidirectional)
    if lengths is None:
        return native_rnn(spec.mode, x, None, hx, *args)
    if path in ("tail", "scan") and not bidirectional:
        tail = replace(spec, num_layers=num_layers, bidirectional=False, dropout=0.0)
        return _run_tail(x, lengths, hx, params, masks, tail, training, args, path == "tail")
    if path == "segments" and not bidirectional:
        return _run_segments(spec.mode, x, lengths, hx, *args)
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


def _lengths_path(x: Tensor, lengths: Tensor | None, params: list[DirectionParams],
                  ragged_on_scan: bool = True) -> str:
    """How torch's kernel runs a batch with lengths, the cheapest by a cost model fitted to
    benchmarks/rnn_speed.py on the 2-core CPU (README, "Speed"):

    - "packed": torch's PackedSequence kernel; one call, but on the CPU it leaves oneDNN for
      a generic kernel about 3x slower (pytorch#149194). On CUDA cuDNN's is fast: always.
    - "segments": the rows sorted by length and the time axis cut at each distinct length,
      each piece one dense call; a call costs ~150 us plus the preparation of its weights
      (~0.8 ns a weight), the arithmetic ~400 GFLOP/s forward and backward.
    - "tail": one dense call for the m = min(lengths) steps every row runs, the ragged rest on
      the scan engine's compiled loops (where they run), which compute only the rows still
      running (loops, input projection and weight gradients alike) at about 1.4x the dense
      kernel's cost per row-step.
    - "scan": the compiled loops alone (a tail with m = 0), for small batches where every call
      into torch's kernel costs more than the arithmetic.
    """
    if lengths is None or x.device.type != "cpu":
        return "packed"
    from . import scan  # imported late: scan imports this package

    weights = sum(w.numel() for p in params for w in (p.w_ih, p.w_hh, p.w_hr)
                  if w is not None)  # the whole stack's
    B = x.shape[1]
    per_call = 1.5e-4 + 0.8e-9 * weights * 2

    def arithmetic(row_steps: float) -> float:  # seconds, forward + backward
        return 6.0 * weights * row_steps / 4e11

    steps = float(lengths.sum())  # row-steps actually computed
    m = int(lengths.min())
    costs = {"packed": per_call + 3.0 * arithmetic(steps),
             "segments": len(torch.unique(lengths)) * per_call + arithmetic(steps)}
    if ragged_on_scan and scan.compiled_loops_run(x):
        costs["tail"] = 2 * per_call + arithmetic(m * B) + 1.4 * arithmetic(steps - m * B)
        costs["scan"] = per_call + 1.4 * arithmetic(steps)
    return min(costs, key=costs.get)


def _run_tail(x: Tensor, lengths: Tensor, hx, params: list[DirectionParams],
              masks: list[DirectionMasks], spec: RecurrentSpec, training: bool,
              args: tuple, prefix: bool) -> tuple[Tensor, Tensor, Tensor | None]:
    """Variable lengths, unidirectional, on the CPU: with ``prefix``, the first m = min(lengths)
    steps, which every row runs, in one dense call of torch's kernel; the ragged rest (all of
    it without ``prefix``) from its states on the scan engine's compiled loops, which multiply
    only the rows still running at each step (no padded step is computed, no call per
    distinct length is made). ``spec`` describes these layers alone (no dropout between them:
    run() splits the stack where it acts)."""
    from . import scan  # imported late: scan imports this package

    T = x.shape[0]
    m = int(lengths.min()) if prefix else 0
    longest = int(lengths.max())
    out, h, c = None, *hx
    if m > 0:
        out, h, c = native_rnn(spec.mode, x[:m], None, hx, *args)  # (m, B, R), (L, B, R), ...
    if longest > m:  # the steps some row still runs
        rest, h, c = scan.run(x[m:longest], lengths - m, (h, c), params, masks, spec, training)
        out = rest if out is None else torch.cat([out, rest])
    if longest < T:
        out = F.pad(out, (0, 0, 0, 0, 0, T - longest))  # (T, B, R)
    return out, h, c


def _run_segments(mode: str, x: Tensor, lengths: Tensor, hx, flat, has_biases: bool,
                  num_layers: int, bidirectional: bool) -> tuple[Tensor, Tensor, Tensor | None]:
    """Variable lengths as dense calls, for a unidirectional stack on the CPU.

    torch's packed path leaves oneDNN for a generic kernel 3-6x slower than the dense one
    (benchmarks/rnn_speed.py; pytorch#149194). Instead the rows are sorted by length and the
    time axis is cut at each distinct length: each segment is one dense call over the rows
    still running, which start from the states the previous segment left. Finished rows keep
    their final state, and no padded step is ever computed.
    """
    T, B, _ = x.shape
    order = torch.argsort(lengths, descending=True, stable=True)  # (B,), CPU
    sorted_lengths = lengths[order]
    device_order = order.to(x.device)
    x = x.index_select(1, device_order)  # (T, B, F), longest rows first
    h0, c0 = hx
    h = h0.index_select(1, device_order)
    c = None if c0 is None else c0.index_select(1, device_order)
    outputs, start = [], 0
    for stop in torch.unique(sorted_lengths).tolist():
        n = int((sorted_lengths >= stop).sum())  # rows still running in [start, stop)
        out, h_run, c_run = native_rnn(mode, x[start:stop, :n], None,
                                       (h[:, :n], None if c is None else c[:, :n]), flat,
                                       has_biases, num_layers, bidirectional)
        if n < B:
            out = F.pad(out, (0, 0, 0, B - n))  # (stop - start, B, R), zeros for finished rows
            h = torch.cat([h_run, h[:, n:]], dim=1)
            c = None if c is None else torch.cat([c_run, c[:, n:]], dim=1)
        else:
            h, c = h_run, c_run
        outputs.append(out)
        start = stop
    out = torch.cat(outputs)  # (max length, B, R)
    if start < T:
        out = F.pad(out, (0, 0, 0, 0, 0, T - start))  # (T, B, R)
    restore = torch.argsort(device_order)
    return (out.index_select(1, restore), h.index_select(1, restore),
            None if c is None else c.index_select(1, restore))
