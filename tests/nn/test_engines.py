"""Every engine against the reference engine: float64, forward and every gradient (R5)."""

from __future__ import annotations

import inspect
import itertools

import pytest
import torch

from lstmkit.nn.engines import fused
from tests.nn.helpers import assert_same, functional, make_inputs, make_layer, run_with_grads

FLAGS = list(itertools.product([False, True], repeat=5))  # bias, batch_first, bidir, lengths, L=2


def _options(mode: str, engine: str, training: bool, num_layers: int, proj: bool) -> dict:
    """Every option the engine can run, switched on, so that the comparison covers them."""
    options = dict(weight_drop=0.3, recurrent_dropout=0.25)
    if num_layers == 2:
        options["dropout"] = 0.2
    if engine == "fused":
        options["recurrent_dropout_mode"] = "per_batch"
    else:
        options |= dict(zoneout=0.2, layer_norm=True)
    if mode == "lstm" and proj:
        options["proj_size"] = 2
    return options


@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("engine", ["fused", "scan"])
@pytest.mark.parametrize("mode,proj", [("lstm", False), ("lstm", True), ("gru", False)])
@pytest.mark.parametrize("bias,batch_first,bidirectional,with_lengths,two_layers", FLAGS)
def test_engine_matches_reference(mode, proj, engine, training, bias, batch_first,
                                  bidirectional, with_lengths, two_layers):
    num_layers = 2 if two_layers else 1
    layer = make_layer(mode, input_size=3, hidden_size=4, num_layers=num_layers, bias=bias,
                       batch_first=batch_first, bidirectional=bidirectional,
                       **_options(mode, engine, training, num_layers, proj))
    layer.train(training)
    inputs = make_inputs(layer, T=5, B=3, with_lengths=with_lengths)
    layer.engine = "reference"
    want = run_with_grads(layer, *inputs)
    layer.engine = engine
    got = run_with_grads(layer, *inputs)
    assert layer.last_engine == engine
    assert_same(got, want, atol=1e-10)


@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("engine", ["scan"])
@pytest.mark.parametrize("layer_norm", [False, True])
def test_gru_reset_before_matches_reference(engine, training, layer_norm):
    layer = make_layer("gru", input_size=3, hidden_size=4, num_layers=2, bidirectional=True,
                       reset_after=False, layer_norm=layer_norm, zoneout=0.2,
                       recurrent_dropout=0.25, weight_drop=0.2, dropout=0.1)
    layer.train(training)
    inputs = make_inputs(layer, T=6, B=3, with_lengths=True)
    layer.engine = "reference"
    want = run_with_grads(layer, *inputs)
    layer.engine = engine
    assert_same(run_with_grads(layer, *inputs), want, atol=1e-10)


REGULARISERS = {
    "plain": {},
    "recurrent_dropout": dict(recurrent_dropout=0.3),
    "recurrent_dropout_per_batch": dict(recurrent_dropout=0.3,
                                        recurrent_dropout_mode="per_batch"),
    "weight_drop": dict(weight_drop=0.3),
    "zoneout": dict(zoneout=0.3),
    "layer_norm": dict(layer_norm=True),
    "dropout": dict(dropout=0.3, num_layers=2),
    "proj": dict(proj_size=2),
    "reset_before": dict(reset_after=False),
}


def _gradcheck_cases():
    for name, options in REGULARISERS.items():
        for mode in ("lstm", "gru"):
            if (name == "proj" and mode == "gru") or (name == "reset_before" and mode == "lstm"):
                continue
            for engine in ("reference", "fused", "scan"):
                unsupported = engine == "fused" and name in (
                    "recurrent_dropout", "zoneout", "layer_norm", "reset_before")
                if not unsupported:
                    yield pytest.param(mode, engine, options, id=f"{mode}-{engine}-{name}")


@pytest.mark.parametrize("mode,engine,options", list(_gradcheck_cases()))
def test_gradcheck(mode, engine, options):
    layer = make_layer(mode, input_size=2, hidden_size=3, bidirectional=True, engine=engine,
                       **options)
    layer.train()
    x, h0, c0, lengths, _ = make_inputs(layer, T=4, B=2, with_lengths=True)
    state = (h0, c0) if mode == "lstm" else (h0,)
    args = [t.detach().clone().requires_grad_() for t in (x, *state)]
    args += [p.detach().clone().requires_grad_() for p in layer.parameters()]
    assert torch.autograd.gradcheck(functional(layer, lengths=lengths), tuple(args))


def test_native_rnn_contract():
    """torch.lstm / torch.gru (private, bound to torch._VF) keep the signature fused.py uses."""
    assert callable(torch.lstm) and callable(torch.gru)
    reference = torch.nn.LSTM(3, 4, num_layers=2, bidirectional=True, proj_size=2).double()
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    want, (h_want, c_want) = reference(x)
    weights = [p for p in reference.parameters()]
    state = (torch.zeros(4, 2, 2, dtype=torch.float64), torch.zeros(4, 2, 4, dtype=torch.float64))
    out, h_n, c_n = fused.native_rnn("lstm", x, None, state, weights, True, 2, True)
    torch.testing.assert_close(out, want, atol=0, rtol=0)
    torch.testing.assert_close((h_n, c_n), (h_want, c_want), atol=0, rtol=0)
    gru = torch.nn.GRU(3, 4).double()
    out, h_n, _ = fused.native_rnn("gru", x, None, (torch.zeros(1, 2, 4, dtype=torch.float64),
                                                    None), list(gru.parameters()), True, 1, False)
    torch.testing.assert_close(out, gru(x)[0], atol=0, rtol=0)
    assert "native_rnn" in inspect.getsource(fused.run.__globals__["_run_layers"])
