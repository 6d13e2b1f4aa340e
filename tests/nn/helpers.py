"""Shared helpers of the core's tests: build layers, run them, collect every gradient."""

from __future__ import annotations

import torch
from torch.func import functional_call

from lstmkit.nn import GRU, LSTM

DOUBLE = torch.float64


def make_layer(mode: str, **kwargs):
    """An lstmkit LSTM/GRU with random (not default-initialised) float64 weights."""
    cls = LSTM if mode == "lstm" else GRU
    layer = cls(**kwargs).to(DOUBLE)
    with torch.no_grad():
        for p in layer.parameters():
            p.copy_(torch.randn_like(p) * 0.5)
    return layer


def make_inputs(layer, T: int, B: int, with_lengths: bool, seed: int = 0):
    """A non-contiguous input, h0 != c0, lengths with padding garbage, random grad outputs."""
    g = torch.Generator().manual_seed(seed)
    F = layer.input_size
    base = torch.randn(T, B, 2 * F, generator=g, dtype=DOUBLE)
    x = base[..., ::2]  # (T, B, F), non-contiguous
    if layer.batch_first:
        x = x.transpose(0, 1)  # (B, T, F)
    DL = layer.num_layers * (2 if layer.bidirectional else 1)
    R = layer.proj_size if getattr(layer, "proj_size", 0) else layer.hidden_size
    h0 = torch.randn(DL, B, R, generator=g, dtype=DOUBLE)
    c0 = torch.randn(DL, B, layer.hidden_size, generator=g, dtype=DOUBLE)
    lengths = None
    if with_lengths:
        lengths = torch.randint(1, T + 1, (B,), generator=g)
        lengths[0] = T  # the longest row has all T steps; the others have padding
    D = 2 if layer.bidirectional else 1
    out_shape = (B, T, D * R) if layer.batch_first else (T, B, D * R)
    grads = (torch.randn(out_shape, generator=g, dtype=DOUBLE),
             torch.randn(DL, B, R, generator=g, dtype=DOUBLE),
             torch.randn(DL, B, layer.hidden_size, generator=g, dtype=DOUBLE))
    return x, h0, c0, lengths, grads


def run_with_grads(layer, x, h0, c0, lengths, grads, seed: int = 1234):
    """Outputs, final states and the gradients of input, h0, c0 and every parameter."""
    x, h0, c0 = (t.detach().clone().requires_grad_() for t in (x, h0, c0))
    torch.manual_seed(seed)  # the same regulariser masks for every engine
    if layer.mode == "lstm":
        out, (h_n, c_n) = layer(x, (h0, c0), lengths=lengths)
        loss = (out * grads[0]).sum() + (h_n * grads[1]).sum() + (c_n * grads[2]).sum()
        inputs = [x, h0, c0]
        results = [out, h_n, c_n]
    else:
        out, h_n = layer(x, h0, lengths=lengths)
        loss = (out * grads[0]).sum() + (h_n * grads[1]).sum()
        inputs = [x, h0]
        results = [out, h_n]
    names = ["x", "h0", "c0"][: len(inputs)] + [n for n, _ in layer.named_parameters()]
    tensors = torch.autograd.grad(loss, inputs + list(layer.parameters()))
    labels = ["output", "h_n", "c_n"][: len(results)] + [f"grad {n}" for n in names]
    return dict(zip(labels, [r.detach() for r in results] + list(tensors), strict=True))


def assert_same(got: dict, want: dict, atol: float, rtol: float = 0.0) -> None:
    assert got.keys() == want.keys()
    for key in want:
        torch.testing.assert_close(got[key], want[key], atol=atol, rtol=rtol, msg=lambda m,
                                   key=key: f"{key}: {m}")


def functional(layer, seed: int = 1234, lengths=None):
    """f(x, h0, [c0,] *params) -> flat outputs, with masks re-drawn from ``seed`` each call."""
    names = [n for n, _ in layer.named_parameters()]

    def f(x, *rest):
        torch.manual_seed(seed)
        n_state = 2 if layer.mode == "lstm" else 1
        state, params = rest[:n_state], rest[n_state:]
        hx = tuple(state) if layer.mode == "lstm" else state[0]
        out, h = functional_call(layer, dict(zip(names, params, strict=True)), (x, hx),
                                 {"lengths": lengths})
        return (out,) + (tuple(h) if isinstance(h, tuple) else (h,))

    return f
