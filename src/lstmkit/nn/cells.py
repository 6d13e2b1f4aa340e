"""The gate equations of one recurrent step, written once, readable as the papers.

LSTM: Hochreiter & Schmidhuber 1997, with the forget gate of Gers et al. 2000, in PyTorch's
gate order (i, f, g, o) and with its two bias vectors; the projection of Sak et al. 2014
(arXiv:1402.1128), as ``torch.nn.LSTM(proj_size=...)`` has it. GRU: Cho et al. 2014
(arXiv:1406.1078), gate order (r, z, n); by default in PyTorch's form with the reset gate
applied after the recurrent matmul (``reset_after=True``, as cuDNN and Keras' default), or in
the paper's form with the reset gate applied to the state before it (``reset_after=False``).
Layer normalisation (Ba et al. 2016, arXiv:1607.06450) normalises the input and the recurrent
pre-activations separately and, in the LSTM, the cell before its tanh, as Haste's
LayerNormLSTM does.

Every engine's forward pass reduces to these functions; the ``reference`` engine calls them
step by step, and the tests hold every other engine to it.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "LSTMCell",
    "GRUCell",
    "LayerNormParams",
    "lstm_cell",
    "gru_cell",
    "lstm_pointwise",
    "LAYER_NORM_EPS",
]

# The epsilon inside every layer norm of the core; the scan engine's hand-written layer norm
# uses the same value, so that its numbers equal F.layer_norm's.
LAYER_NORM_EPS = 1e-5


class LayerNormParams(NamedTuple):
    """The gains and biases of a layer-normalised cell; any field may be None (no norm there).

    ih: (G*H,) gain on LN(W_ih x); hh: (G*H,) gain on LN(W_hh h); cell_weight, cell_bias: (H,)
    gain and bias of LN(c) in the LSTM. G is 4 for the LSTM and 3 for the GRU.
    """

    ih: Tensor | None = None
    hh: Tensor | None = None
    cell_weight: Tensor | None = None
    cell_bias: Tensor | None = None


def _normalise(y: Tensor, gain: Tensor) -> Tensor:
    """LN(y) * gain over the last dimension, without a bias (the gate biases follow it)."""
    return F.layer_norm(y, y.shape[-1:], gain, None, LAYER_NORM_EPS)


def _affine(x: Tensor, w: Tensor, b: Tensor | None, gain: Tensor | None) -> Tensor:
    """W x + b, or LN(W x) * gain + b when the cell is layer-normalised."""
    if gain is None:
        return F.linear(x, w, b)
    y = _normalise(F.linear(x, w), gain)
    return y if b is None else y + b


def lstm_pointwise(gates: Tensor, c: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """The LSTM's element-wise step from pre-activations: (B, 4H), c (B, H) -> i, f, g, o, c'.

        i = σ(a_i),  f = σ(a_f),  g = tanh(a_g),  o = σ(a_o),  c' = f ⊙ c + i ⊙ g
    """
    H = c.shape[1]
    sigma = gates.sigmoid()  # σ of all four; only i, f, o are kept (one kernel, not three)
    i, f, o = sigma[:, :H], sigma[:, H:2 * H], sigma[:, 3 * H:]
    g = gates[:, 2 * H:3 * H].tanh()
    return i, f, g, o, torch.addcmul(f * c, i, g)


def lstm_cell(
    x: Tensor,
    h: Tensor,
    c: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor | None = None,
    b_hh: Tensor | None = None,
    w_hr: Tensor | None = None,
    norm: LayerNormParams | None = None,
    recurrent_mask: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """One LSTM step. x: (B, F); h: (B, R); c: (B, H) -> h', c' shaped like h, c.

        a = W_ih x + b_ih + W_hh (h ⊙ m) + b_hh             (B, 4H), order i, f, g, o
        i, f, g, o = σ(a_i), σ(a_f), tanh(a_g), σ(a_o)
        c' = f ⊙ c + i ⊙ g
        h' = o ⊙ tanh(c')            (then h' = W_hr h' when projected: R = P, else R = H)

    ``m`` is the variational recurrent-dropout mask (B or 1, R), or None. With ``norm``, the
    two matmuls and the cell are layer-normalised: a = LN(W_ih x) γ_ih + b_ih + LN(W_hh h) γ_hh
    + b_hh and h' = o ⊙ tanh(LN(c') γ_c + β_c), as in Ba et al. 2016 §A.
    """
    norm = norm or LayerNormParams()
    h_in = h if recurrent_mask is None else h * recurrent_mask
    gates = _affine(x, w_ih, b_ih, norm.ih) + _affine(h_in, w_hh, b_hh, norm.hh)  # (B, 4H)
    _, _, _, o, c = lstm_pointwise(gates, c)
    c_out = c
    if norm.cell_weight is not None:
        c_out = F.layer_norm(c, c.shape[-1:], norm.cell_weight, norm.cell_bias, LAYER_NORM_EPS)
    h = o * c_out.tanh()  # (B, H)
    if w_hr is not None:
        h = F.linear(h, w_hr)  # (B, P)
    return h, c


def gru_cell(
    x: Tensor,
    h: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor | None = None,
    b_hh: Tensor | None = None,
    norm: LayerNormParams | None = None,
    recurrent_mask: Tensor | None = None,
    reset_after: bool = True,
) -> Tensor:
    """One GRU step. x: (B, F); h: (B, H) -> h' (B, H). Gate order r, z, n.

    reset_after=True (PyTorch, cuDNN, Keras' default)::

        r = σ(W_ir x + b_ir + W_hr h + b_hr)
        z = σ(W_iz x + b_iz + W_hz h + b_hz)
        n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))
        h' = (1 - z) ⊙ n + z ⊙ h

    reset_after=False (Cho et al. 2014, Keras' ``reset_after=False``)::

        n = tanh(W_in x + b_in + W_hn (r ⊙ h) + b_hn)

    The recurrent-dropout mask ``m`` (B or 1, H) multiplies h inside the matmuls only, never in
    the z ⊙ h carry. With ``norm``, LN(W_ih x) γ_ih and LN(W_hh h) γ_hh replace the matmuls;
    with reset_after=False the recurrent part is normalised in two groups, (r, z) and n,
    since n's matmul can only run once r is known.
    """
    norm = norm or LayerNormParams()
    hidden = h.shape[-1]
    h_in = h if recurrent_mask is None else h * recurrent_mask
    x_r, x_z, x_n = _affine(x, w_ih, b_ih, norm.ih).chunk(3, dim=1)  # each (B, H)
    if reset_after:
        h_r, h_z, h_n = _affine(h_in, w_hh, b_hh, norm.hh).chunk(3, dim=1)  # each (B, H)
        r = (x_r + h_r).sigmoid()
        z = (x_z + h_z).sigmoid()
        n = (x_n + r * h_n).tanh()
    else:
        split = 2 * hidden
        b_rz = None if b_hh is None else b_hh[:split]
        b_n = None if b_hh is None else b_hh[split:]
        g_rz = None if norm.hh is None else norm.hh[:split]
        g_n = None if norm.hh is None else norm.hh[split:]
        h_r, h_z = _affine(h_in, w_hh[:split], b_rz, g_rz).chunk(2, dim=1)  # each (B, H)
        r = (x_r + h_r).sigmoid()
        z = (x_z + h_z).sigmoid()
        n = (x_n + _affine(r * h_in, w_hh[split:], b_n, g_n)).tanh()
    return (1 - z) * n + z * h


def _init_uniform(module: nn.Module, hidden_size: int) -> None:
    # torch.nn's initialisation: U(-1/sqrt(H), 1/sqrt(H)) for every weight and bias.
    bound = 1.0 / math.sqrt(hidden_size) if hidden_size > 0 else 0.0
    for weight in module.parameters():
        nn.init.uniform_(weight, -bound, bound)


class LSTMCell(nn.Module):
    """A single LSTM step as a module, a drop-in for ``torch.nn.LSTMCell``.

    Equations: see :func:`lstm_cell`. Same arguments, parameter names (``weight_ih``,
    ``weight_hh``, ``bias_ih``, ``bias_hh``) and shapes as ``torch.nn.LSTMCell``.

    Args:
        input_size: features F of the input.
        hidden_size: units H of the state.
        bias: use ``bias_ih`` and ``bias_hh``. Default True.

    Inputs: ``x`` (B, F) or (F,), ``hx=(h, c)`` each (B, H) or (H,), zeros when None.
    Returns: ``(h', c')`` each (B, H) (or (H,) for an unbatched input).

    Example:
        >>> cell = LSTMCell(3, 5)
        >>> h, c = cell(torch.randn(2, 3))
        >>> tuple(h.shape), tuple(c.shape)
        ((2, 5), (2, 5))
    """

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, device=None,
                 dtype=None) -> None:
        super().__init__()
        _check_sizes("LSTMCell", input_size, hidden_size)
        self.input_size, self.hidden_size, self.bias = input_size, hidden_size, bias
        kw = dict(device=device, dtype=dtype)
        self.weight_ih = nn.Parameter(torch.empty(4 * hidden_size, input_size, **kw))
        self.weight_hh = nn.Parameter(torch.empty(4 * hidden_size, hidden_size, **kw))
        self.bias_ih = nn.Parameter(torch.empty(4 * hidden_size, **kw)) if bias else None
        self.bias_hh = nn.Parameter(torch.empty(4 * hidden_size, **kw)) if bias else None
        _init_uniform(self, hidden_size)

    def forward(self, x: Tensor, hx: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, Tensor]:
        x, unbatched = _batch_cell_input("LSTMCell", x, self.input_size)
        if hx is None:
            zeros = x.new_zeros(x.shape[0], self.hidden_size)
            hx = (zeros, zeros)
        elif unbatched:
            hx = (hx[0].unsqueeze(0), hx[1].unsqueeze(0))
        h, c = lstm_cell(x, hx[0], hx[1], self.weight_ih, self.weight_hh, self.bias_ih,
                         self.bias_hh)
        return (h.squeeze(0), c.squeeze(0)) if unbatched else (h, c)

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}, bias={self.bias}"


class GRUCell(nn.Module):
    """A single GRU step as a module, a drop-in for ``torch.nn.GRUCell``.

    Equations: see :func:`gru_cell`. Same arguments, parameter names and shapes as
    ``torch.nn.GRUCell``, plus ``reset_after`` (keyword-only; True is torch's form).

    Args:
        input_size: features F of the input.
        hidden_size: units H of the state.
        bias: use ``bias_ih`` and ``bias_hh``. Default True.
        reset_after: apply the reset gate after the recurrent matmul. Default True.

    Inputs: ``x`` (B, F) or (F,), ``hx`` (B, H) or (H,), zeros when None.
    Returns: ``h'`` (B, H) (or (H,) for an unbatched input).

    Example:
        >>> cell = GRUCell(3, 5)
        >>> tuple(cell(torch.randn(2, 3)).shape)
        (2, 5)
    """

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, device=None,
                 dtype=None, *, reset_after: bool = True) -> None:
        super().__init__()
        _check_sizes("GRUCell", input_size, hidden_size)
        self.input_size, self.hidden_size, self.bias = input_size, hidden_size, bias
        self.reset_after = reset_after
        kw = dict(device=device, dtype=dtype)
        self.weight_ih = nn.Parameter(torch.empty(3 * hidden_size, input_size, **kw))
        self.weight_hh = nn.Parameter(torch.empty(3 * hidden_size, hidden_size, **kw))
        self.bias_ih = nn.Parameter(torch.empty(3 * hidden_size, **kw)) if bias else None
        self.bias_hh = nn.Parameter(torch.empty(3 * hidden_size, **kw)) if bias else None
        _init_uniform(self, hidden_size)

    def forward(self, x: Tensor, hx: Tensor | None = None) -> Tensor:
        x, unbatched = _batch_cell_input("GRUCell", x, self.input_size)
        if hx is None:
            hx = x.new_zeros(x.shape[0], self.hidden_size)
        elif unbatched:
            hx = hx.unsqueeze(0)
        h = gru_cell(x, hx, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh,
                     reset_after=self.reset_after)
        return h.squeeze(0) if unbatched else h

    def extra_repr(self) -> str:
        return (f"{self.input_size}, {self.hidden_size}, bias={self.bias}, "
                f"reset_after={self.reset_after}")


def _check_sizes(name: str, input_size: int, hidden_size: int) -> None:
    for arg, value in (("input_size", input_size), ("hidden_size", hidden_size)):
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ValueError(f"{name}({arg}={value!r}): {arg} must be a positive integer.")


def _batch_cell_input(name: str, x: Tensor, input_size: int) -> tuple[Tensor, bool]:
    if x.dim() not in (1, 2) or x.shape[-1] != input_size:
        raise ValueError(
            f"{name}(input_size={input_size}) got input of shape {tuple(x.shape)}; expected "
            f"(batch, {input_size}) or ({input_size},).")
    return (x.unsqueeze(0), True) if x.dim() == 1 else (x, False)
