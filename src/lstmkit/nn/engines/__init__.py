"""How a whole sequence is run: three engines with one signature, chosen in one place.

Every engine is a function ``run(x, lengths, hx, params, masks, spec, training)`` that runs the
whole stack (every layer and direction) over a time-major padded input and returns a
:class:`RunResult`. The layer (``lstmkit.nn.layers``) builds the parameters and the
regulariser masks; the engines only do the maths, so that all of them give the same numbers
and none of them decides anything about dropout or parameters.

- ``reference``: a loop over :mod:`lstmkit.nn.cells`; slow, obviously right, the yardstick.
- ``fused``: torch's native kernel (oneDNN on the CPU, cuDNN on CUDA) called with our
  parameter tensors; plain layers, weight drop and a batch-shared recurrent-dropout mask.
- ``scan``: ours; the input projection of every step as one GEMM, the recurrence in a loop
  with fused gate maths, a hand-written backward through time whose weight gradients are one
  GEMM after the loop; runs every option.

``select_engine`` is the only place that knows which engine can run what and which is
fastest (R7 of STYLE.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from . import gemm, native

__all__ = [
    "ENGINE_NAMES",
    "DirectionMasks",
    "DirectionParams",
    "RecurrentSpec",
    "RunResult",
    "engine_limitation",
    "get_engine",
    "run_stack",
    "select_engine",
]

ENGINE_NAMES = ("auto", "reference", "fused", "scan")


@dataclass(frozen=True)
class RecurrentSpec:
    """What a recurrent stack computes; everything an engine needs besides tensors."""

    mode: str  # "lstm" or "gru"
    input_size: int  # F, features of the first layer's input
    hidden_size: int  # H, units per direction
    num_layers: int  # L
    bias: bool  # the layers have bias_ih and bias_hh
    bidirectional: bool  # D = 2 when True
    proj_size: int  # P, LSTM projection size; 0 for none
    dropout: float  # between layers, on every layer's output but the last
    recurrent_dropout: float  # variational dropout of h_{t-1}
    recurrent_dropout_mode: str  # "per_sequence" (a mask per row) or "per_batch" (one mask)
    weight_drop: float  # DropConnect on W_hh
    zoneout: float  # probability of keeping each unit of the previous state
    layer_norm: bool  # layer-normalised gates (and cell, for the LSTM)
    reset_after: bool  # GRU form; True is torch's

    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def state_size(self) -> int:
        """R: size of the h state, P when projected, else H."""
        return self.proj_size if self.proj_size > 0 else self.hidden_size

    @property
    def num_gates(self) -> int:
        return 4 if self.mode == "lstm" else 3


class DirectionParams(NamedTuple):
    """One layer-direction's parameters, as the engine receives them (weight drop applied).

    G is 4 (LSTM) or 3 (GRU); F_l is the layer's input size; R the state size.
    """

    w_ih: Tensor  # (G*H, F_l)
    w_hh: Tensor  # (G*H, R)
    b_ih: Tensor | None  # (G*H,)
    b_hh: Tensor | None  # (G*H,)
    w_hr: Tensor | None  # (P, H), LSTM projection
    ln_ih: Tensor | None  # (G*H,) gain of LN(W_ih x)
    ln_hh: Tensor | None  # (G*H,) gain of LN(W_hh h)
    ln_cell_weight: Tensor | None  # (H,) gain of LN(c), LSTM
    ln_cell_bias: Tensor | None  # (H,) bias of LN(c), LSTM


class DirectionMasks(NamedTuple):
    """One layer-direction's regulariser masks, drawn by the layer; None where unused.

    ``recurrent`` multiplies h_{t-1} before W_hh (values 0 or 1/(1-p)). ``zoneout_h`` and
    ``zoneout_c`` give, per time step t of the *input* (whatever the direction), how much of
    the previous state each unit keeps: 0/1 draws in training, the probability in eval mode.
    """

    recurrent: Tensor | None  # (B, R) per sequence, or (1, R) shared by the batch
    zoneout_h: Tensor | None  # (T, B, R) in training, (T, 1, 1) in eval mode
    zoneout_c: Tensor | None  # (T, B, H) or (T, 1, 1); LSTM only


class RunResult(NamedTuple):
    """An engine's answer: output (T, B, D*R), zero at padded steps; h_n (D*L, B, R);
    c_n (D*L, B, H) for the LSTM, None for the GRU."""

    output: Tensor
    h_n: Tensor
    c_n: Tensor | None


class DirectionResult(NamedTuple):
    """One direction's run: output (T, B, R) zero at padding; h (B, R); c (B, H) or None."""

    output: Tensor
    h: Tensor
    c: Tensor | None


DirectionRunner = Callable[..., DirectionResult]


def engine_limitation(engine: str, spec: RecurrentSpec, device: torch.device,
                      training: bool = True) -> str | None:
    """Why ``engine`` cannot run ``spec``, as text naming the option, or None if it can.

    In eval mode recurrent dropout is off, so it does not stand in the fused kernel's way.
    """
    if engine in ("reference", "scan"):
        return None
    # engine == "fused": only what changes the weight tensors fits torch's kernel.
    if spec.layer_norm:
        return "layer_norm=True (torch's kernel has no layer normalisation)"
    if spec.zoneout > 0:
        return f"zoneout={spec.zoneout} (torch's kernel has no zoneout)"
    if training and spec.recurrent_dropout > 0 and spec.recurrent_dropout_mode == "per_sequence":
        return (f"recurrent_dropout={spec.recurrent_dropout} with "
                "recurrent_dropout_mode='per_sequence' (torch's kernel shares weights across "
                "the batch; recurrent_dropout_mode='per_batch' fits it)")
    if spec.mode == "gru" and not spec.reset_after:
        return "reset_after=False (torch's kernel has only the reset-after GRU)"
    return None


def select_engine(spec: RecurrentSpec, device: torch.device, requested: str = "auto",
                  needs_grad: bool = True, training: bool = True,
                  batch_size: int | None = None, dtype: torch.dtype = torch.float32) -> str:
    """The engine that runs ``spec`` on ``device``: ``requested``, or the fastest for "auto".

    ``needs_grad`` (a backward pass will follow), ``batch_size`` and ``dtype`` change the
    GRU's answer. Raises ValueError for an unknown name, or an explicit engine that cannot
    run an option.
    """
    if requested not in ENGINE_NAMES:
        raise ValueError(f"unknown engine={requested!r}; choose one of {', '.join(ENGINE_NAMES)}.")
    if requested != "auto":
        why = engine_limitation(requested, spec, device, training)
        if why is not None:
            raise ValueError(f"engine={requested!r} cannot run {why}; use engine='auto' or "
                             "engine='scan'.")
        return requested
    fits = engine_limitation("fused", spec, device, training) is None
    if fits and not _gru_scan_is_faster(spec, device, needs_grad, batch_size, dtype):
        return "fused"
    return "scan"


# Measured thresholds of the GRU's engine choice on the CPU (see _gru_scan_is_faster).
SCAN_GRU_MAX_BATCH = 8  # training up to this batch: scan, whatever the GEMM library
SCAN_GRU_MAX_TRAIN_CELLS = 1 << 17  # training from this B*H on: fused
SCAN_GRU_MIN_INFER_MACS = 1 << 22  # inference from this B*H*3H on: scan


def _gru_scan_is_faster(spec: RecurrentSpec, device: torch.device, needs_grad: bool,
                        batch_size: int | None, dtype: torch.dtype) -> bool:
    """Whether a GRU that ``fused`` could run is faster on ``scan`` (measured rules).

    Measured with benchmarks/rnn_speed.py on a 2-core CPU, torch 2.13 (README, "Speed"):
    - CUDA: cuDNN beats a Python loop over steps on every shape; the LSTM has torch's oneDNN
      kernel on the CPU, near the GEMM peak: fused wherever it runs.
    - The GRU has no oneDNN kernel on the CPU: torch's runs its GEMMs through MKL, at half
      oneDNN's speed on an AMD EPYC, while the scan engine sends its larger products to
      oneDNN (engines.gemm). Training, scan over nn.GRU's time: 0.36 at (1, 1000, 40, 256),
      0.64 at (8, 100, 64, 256), 0.80 at (16, 50, 64, 128), 0.93 at (32, 7, 1, 64), 0.74 at
      (64, 100, 64, 256), 0.56 at (64, 35, 400, 1150); but 1.04 at (256, 50, 128, 512), where
      the element-wise backward over B*H = 131072 units a step is memory-bound. Without
      oneDNN (float64, a build without it) scan wins only at batch 1-8 (0.51-0.73).
    - Inference has no backward to win on: scan takes 0.74 at (64, 100, 64, 256), 0.40 at
      (64, 35, 400, 1150), 0.70 at (256, 50, 128, 512), but 1.1-1.9 where the recurrent
      product is under ~4M multiply-adds (batch 1-16 at H <= 256).
    - The rules above are for the scan engine's Python loops. Its compiled loops (native.py)
      win on every shape we measure, training 0.12-0.88 and inference 0.38-0.97 of nn.GRU
      (README, "Speed"): where they run, scan always.
    """
    if device.type != "cpu" or spec.mode != "gru" or batch_size is None:
        return False
    if dtype in (torch.float32, torch.float64) and native.available():
        return True
    H = spec.hidden_size
    onednn = gemm.onednn_for(dtype, device)
    if not needs_grad:
        return onednn and batch_size * H * 3 * H >= SCAN_GRU_MIN_INFER_MACS
    if batch_size <= SCAN_GRU_MAX_BATCH:
        return True
    return onednn and batch_size * H < SCAN_GRU_MAX_TRAIN_CELLS


_RUNNERS: dict[str, Callable[..., RunResult]] = {}


def get_engine(name: str, requested: bool = False) -> Callable[..., RunResult]:
    """The ``run`` function of the engine called ``name`` (not "auto").

    ``requested``: the user named the engine. ``fused`` then runs torch's kernel only; chosen
    by "auto", it may run the ragged steps of a batch with lengths on the CPU on the scan
    engine's compiled loops (fused.run), which give first derivatives only.
    """
    if not _RUNNERS:
        from . import fused, reference, scan  # imported late: each engine imports this module

        _RUNNERS.update(reference=reference.run, fused=fused.run, scan=scan.run,
                        fused_only=partial(fused.run, ragged_on_scan=False))
    return _RUNNERS["fused_only" if requested and name == "fused" else name]


def reverse_within_lengths(x: Tensor, lengths: Tensor | None) -> Tensor:
    """Flip each sequence of a time-major (T, B, ...) tensor within its own length.

    Padded steps stay where they are; applying the function twice gives ``x`` back.
    """
    if lengths is None:
        return x.flip(0)
    T, B = x.shape[0], x.shape[1]
    steps = torch.arange(T, device=x.device).unsqueeze(1)  # (T, 1)
    lens = lengths.to(x.device).unsqueeze(0)  # (1, B)
    index = torch.where(steps < lens, lens - 1 - steps, steps)  # (T, B)
    index = index.reshape(T, B, *([1] * (x.dim() - 2))).expand_as(x)  # (T, B, ...)
    return x.gather(0, index)


def run_stack(
    run_direction: DirectionRunner,
    x: Tensor,
    lengths: Tensor | None,
    hx: tuple[Tensor, Tensor | None],
    params: list[DirectionParams],
    masks: list[DirectionMasks],
    spec: RecurrentSpec,
    training: bool,
) -> RunResult:
    """Run every layer and direction with ``run_direction``, torch.nn's stacking rules.

    x: (T, B, F) time-major; hx: h0 (D*L, B, R) and c0 (D*L, B, H) or None; params and masks
    indexed by layer * D + direction. Between layers, ``F.dropout(p=spec.dropout)`` on the
    layer's output in training, as torch.nn does.
    """
    h0, c0 = hx
    D = spec.num_directions
    layer_input = x
    h_n, c_n = [], []
    for layer in range(spec.num_layers):
        outputs = []
        for direction in range(D):
            k = layer * D + direction
            result = run_direction(
                layer_input, lengths, h0[k], None if c0 is None else c0[k], params[k],
                masks[k], spec, training, reverse=direction == 1)
            outputs.append(result.output)
            h_n.append(result.h)
            c_n.append(result.c)
        layer_input = outputs[0] if D == 1 else torch.cat(outputs, dim=2)  # (T, B, D*R)
        if training and spec.dropout > 0 and layer < spec.num_layers - 1:
            layer_input = F.dropout(layer_input, spec.dropout, training=True)
    return RunResult(layer_input, torch.stack(h_n), None if c0 is None else torch.stack(c_n))
