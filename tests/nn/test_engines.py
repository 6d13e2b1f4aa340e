"""Every engine against the reference engine: float64, forward and every gradient (R5)."""

from __future__ import annotations

import inspect
import itertools

import pytest
import torch

from lstmkit.nn.engines import fused
from tests.nn.helpers import assert_same, functional, make_inputs, make_layer, run_with_grads

FLAGS = list(itertools.product([False, True], repeat=5))  # bias, batch_first, bidir, lengths, L=2


def _options(mode: str, engine: str, regularised: bool, num_layers: int, proj: bool) -> dict:
    """Plain, or every option the engine can run switched on, so that both paths are covered."""
    options = {"proj_size": 2} if mode == "lstm" and proj else {}
    if not regularised:
        return options
    options |= dict(weight_drop=0.3, recurrent_dropout=0.25)
    if num_layers == 2:
        options["dropout"] = 0.2
    if engine == "fused":
        options["recurrent_dropout_mode"] = "per_batch"
    else:
        options |= dict(zoneout=0.2, layer_norm=True)
    return options


@pytest.mark.parametrize("regularised", [False, True], ids=["plain", "regularised"])
@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("engine", ["fused", "scan"])
@pytest.mark.parametrize("mode,proj", [("lstm", False), ("lstm", True), ("gru", False)])
@pytest.mark.parametrize("bias,batch_first,bidirectional,with_lengths,two_layers", FLAGS)
def test_engine_matches_reference(mode, proj, engine, training, regularised, bias, batch_first,
                                  bidirectional, with_lengths, two_layers):
    num_layers = 2 if two_layers else 1
    layer = make_layer(mode, input_size=3, hidden_size=4, num_layers=num_layers, bias=bias,
                       batch_first=batch_first, bidirectional=bidirectional,
                       **_options(mode, engine, regularised, num_layers, proj))
    layer.train(training)
    inputs = make_inputs(layer, T=5, B=3, with_lengths=with_lengths)
    layer.engine = "reference"
    want = run_with_grads(layer, *inputs)
    layer.engine = engine
    got = run_with_grads(layer, *inputs)
    assert layer.last_engine == engine
    assert_same(got, want, atol=1e-10)


@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("regularised", [False, True], ids=["plain", "regularised"])
@pytest.mark.parametrize("bias,bidirectional,with_lengths,two_layers",
                         list(itertools.product([False, True], repeat=4)))
def test_gru_reset_before_matches_reference(training, regularised, bias, bidirectional,
                                            with_lengths, two_layers):
    options = dict(layer_norm=True, zoneout=0.2, recurrent_dropout=0.25, weight_drop=0.2,
                   dropout=0.1 if two_layers else 0.0) if regularised else {}
    layer = make_layer("gru", input_size=3, hidden_size=4, num_layers=2 if two_layers else 1,
                       bias=bias, bidirectional=bidirectional, reset_after=False, **options)
    layer.train(training)
    inputs = make_inputs(layer, T=6, B=3, with_lengths=with_lengths)
    layer.engine = "reference"
    want = run_with_grads(layer, *inputs)
    layer.engine = "scan"
    assert_same(run_with_grads(layer, *inputs), want, atol=1e-10)


@pytest.mark.parametrize("lengths", [None, torch.tensor([3])], ids=["dense", "lengths"])
@pytest.mark.parametrize("mode", ["lstm", "gru"])
def test_one_sequence_bidirectional_zoneout_matches_reference(mode, lengths):
    # A training zoneout mask of one sequence is (T, 1, R), random in time: the backward
    # direction flips it like any other (once taken for eval's constant (T, 1, 1), unflipped).
    layer = make_layer(mode, input_size=3, hidden_size=4, bidirectional=True, zoneout=0.3)
    x, h0, c0, _, grads = make_inputs(layer.train(), T=5, B=1, with_lengths=False)
    layer.engine = "reference"
    want = run_with_grads(layer, x, h0, c0, lengths, grads)
    layer.engine = "scan"
    assert_same(run_with_grads(layer, x, h0, c0, lengths, grads), want, atol=1e-10)


def test_scan_refuses_second_derivatives_clearly():
    layer = make_layer("gru", input_size=2, hidden_size=3, engine="scan")
    x = torch.randn(4, 2, 2, dtype=torch.float64, requires_grad=True)
    with pytest.raises(RuntimeError, match="engine='scan' computes first derivatives only"):
        torch.autograd.grad(layer(x)[0].sum(), x, create_graph=True)


@pytest.mark.parametrize("mode", ["lstm", "gru"])
def test_fused_by_name_keeps_second_derivatives_with_lengths(mode):
    # "auto" may run the ragged steps of a batch with lengths on the scan engine's compiled
    # loops (first derivatives only); engine="fused" asked for by name stays in torch's kernel.
    x = torch.randn(5, 3, 4, dtype=torch.float64)
    lengths = torch.tensor([5, 3, 2])
    grads = {}
    for engine in ("fused", "reference"):
        layer = make_layer(mode, input_size=4, hidden_size=8, engine=engine)
        torch.manual_seed(0)
        with torch.no_grad():
            for p in layer.parameters():
                p.copy_(torch.randn_like(p) * 0.5)
        xi = x.clone().requires_grad_()
        (g,) = torch.autograd.grad(layer(xi, lengths=lengths)[0].pow(2).sum(), xi,
                                   create_graph=True)
        (gg,) = torch.autograd.grad(g.pow(2).sum(), xi)
        grads[engine] = gg
    torch.testing.assert_close(grads["fused"], grads["reference"], atol=1e-10, rtol=0)
    auto = make_layer(mode, input_size=4, hidden_size=8)
    xi = x.clone().requires_grad_()
    with pytest.raises(RuntimeError, match="first derivatives only"):
        torch.autograd.grad(auto(xi, lengths=lengths)[0].sum(), xi, create_graph=True)


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
