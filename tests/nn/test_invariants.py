"""Invariants of the recurrence, not just its outputs (STYLE.md R6)."""

from __future__ import annotations

import pytest
import torch

from lstmkit.nn import GRU, LSTM
from tests.nn.helpers import DOUBLE, make_layer

ENGINES = ["reference", "fused", "scan"]
MODES = ["lstm", "gru"]


def _call(layer, x, hx=None, lengths=None):
    out, state = layer(x, hx, lengths=lengths)
    return out, state


def _states_close(a, b, atol=1e-12):
    torch.testing.assert_close(a, b, atol=atol, rtol=0)


# fused cannot run zoneout or layer_norm (test_errors pins that it says so).
CHUNK_CASES = [(engine, {}) for engine in ENGINES] + [
    (engine, dict(zoneout=0.3, layer_norm=True)) for engine in ("reference", "scan")]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("engine,options", CHUNK_CASES)
def test_chunked_equals_whole_equals_step_by_step(mode, engine, options):
    if mode == "lstm":
        options = dict(options, proj_size=2)
    layer = make_layer(mode, input_size=3, hidden_size=5, num_layers=2, batch_first=True,
                       engine=engine, **options).eval()
    x = torch.randn(2, 9, 3, dtype=DOUBLE)
    whole, whole_state = _call(layer, x)
    chunks, state = [], None
    for start, stop in ((0, 4), (4, 5), (5, 9)):
        out, state = _call(layer, x[:, start:stop], state)
        chunks.append(out)
    _states_close(torch.cat(chunks, dim=1), whole)
    _states_close(state, whole_state)
    steps, state = [], None
    for t in range(9):
        y, state = layer.step(x[:, t], state)
        steps.append(y)
    _states_close(torch.stack(steps, dim=1), whole)
    _states_close(state, whole_state)
    # one unbatched sequence, step by step: y_t is (R,) as torch.nn's unbatched convention
    state = None
    for t in range(9):
        y, state = layer.step(x[1, t], state)
        assert y.dim() == 1
    _states_close(y, whole[1, -1])


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("garbage", [100.0, float("nan"), float("inf")])
def test_padding_never_leaks(mode, engine, garbage):
    layer = make_layer(mode, input_size=3, hidden_size=4, bidirectional=True, engine=engine)
    x = torch.randn(6, 3, 3, dtype=DOUBLE)
    lengths = torch.tensor([6, 2, 4])
    out, state = _call(layer, x, lengths=lengths)
    noisy = x.clone().requires_grad_()
    with torch.no_grad():
        for row, n in enumerate(lengths):
            noisy[n:, row] = torch.randn_like(noisy[n:, row]) * garbage
    out2, state2 = _call(layer, noisy, lengths=lengths)
    _states_close(out2, out.detach())
    _states_close(state2, state)
    out2.sum().backward()  # no NaN reaches a gradient either
    assert torch.isfinite(noisy.grad).all()
    assert all(torch.isfinite(p.grad).all() for p in layer.parameters())
    for row, n in enumerate(lengths):
        assert torch.count_nonzero(out[n:, row]) == 0  # zeros at padded steps
        # each row alone, cut to its length, gives the same outputs and final state
        alone, alone_state = _call(layer, x[:n, row:row + 1])
        _states_close(out[:n, row:row + 1], alone)
        if mode == "lstm":
            _states_close(state[0][:, row], alone_state[0][:, 0])
        else:
            _states_close(state[:, row], alone_state[:, 0])


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("mode", MODES)
def test_reverse_half_is_forward_on_flipped_sequences(mode, engine):
    bi = make_layer(mode, input_size=3, hidden_size=4, bidirectional=True, engine=engine)
    uni = (LSTM if mode == "lstm" else GRU)(3, 4, engine=engine).to(DOUBLE)
    with torch.no_grad():
        for name, p in uni.named_parameters():
            p.copy_(getattr(bi, name + "_reverse"))
    x = torch.randn(7, 3, 3, dtype=DOUBLE)
    lengths = torch.tensor([7, 3, 5])
    out, _ = _call(bi, x, lengths=lengths)
    for row, n in enumerate(lengths):
        flipped = x[:n, row:row + 1].flip(0)
        rev, _ = _call(uni, flipped)
        _states_close(out[:n, row:row + 1, 4:], rev.flip(0))


@pytest.mark.parametrize("mode", MODES)
def test_batch_first_agrees(mode):
    a = make_layer(mode, input_size=3, hidden_size=4, num_layers=2, bidirectional=True)
    b = make_layer(mode, input_size=3, hidden_size=4, num_layers=2, bidirectional=True,
                   batch_first=True)
    b.load_state_dict(a.state_dict())
    x = torch.randn(5, 2, 3, dtype=DOUBLE)
    out_a, state_a = _call(a, x, lengths=torch.tensor([5, 3]))
    out_b, state_b = _call(b, x.transpose(0, 1), lengths=torch.tensor([5, 3]))
    _states_close(out_b.transpose(0, 1), out_a)
    _states_close(state_b, state_a)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("option", ["recurrent_dropout", "weight_drop", "zoneout", "dropout"])
def test_regularisers_at_zero_or_in_eval_equal_the_plain_layer(mode, option):
    plain = make_layer(mode, input_size=3, hidden_size=4, num_layers=2).train()
    x = torch.randn(5, 2, 3, dtype=DOUBLE)
    want, _ = _call(plain, x)
    for engine in ("reference", "scan"):
        zero = make_layer(mode, input_size=3, hidden_size=4, num_layers=2, engine=engine,
                          **{option: 0.0}).train()
        zero.load_state_dict(plain.state_dict())
        _states_close(_call(zero, x)[0], want)
    if option != "zoneout":  # zoneout's eval mode is its expectation, tested below
        on = make_layer(mode, input_size=3, hidden_size=4, num_layers=2, **{option: 0.5})
        on.load_state_dict(plain.state_dict())
        _states_close(_call(on.eval(), x)[0], _call(plain.eval(), x)[0])
        assert not torch.allclose(_call(on.train(), x)[0], want)  # and it does act in training


def test_zoneout_eval_uses_the_expectation():
    layer = make_layer("gru", input_size=2, hidden_size=3, zoneout=0.4).eval()
    plain = make_layer("gru", input_size=2, hidden_size=3).eval()
    plain.load_state_dict(layer.state_dict())
    x = torch.randn(4, 1, 2, dtype=DOUBLE)
    out, _ = _call(layer, x)
    h = torch.zeros(1, 1, 3, dtype=DOUBLE)
    for t in range(4):
        _, h_new = _call(plain, x[t:t + 1], h)
        h = 0.4 * h + 0.6 * h_new  # h_t = z h_{t-1} + (1 - z) h_new
        _states_close(out[t], h[0])


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("per_batch", [False, True])
def test_recurrent_dropout_mask_is_constant_over_time(mode, per_batch, monkeypatch):
    """Spy on the masks the engine receives: one per sequence, reused at every step."""
    from lstmkit.nn.engines import reference

    seen = []
    original = reference._run_direction

    def spy(x, lengths, h, c, p, m, *args, **kwargs):
        seen.append(m.recurrent)
        return original(x, lengths, h, c, p, m, *args, **kwargs)

    monkeypatch.setattr(reference, "_run_direction", spy)
    layer = make_layer(mode, input_size=2, hidden_size=64, engine="reference",
                       recurrent_dropout=0.5,
                       recurrent_dropout_mode="per_batch" if per_batch else "per_sequence")
    layer.train()
    _call(layer, torch.randn(6, 3, 2, dtype=DOUBLE))
    (mask,) = seen
    assert mask.shape == ((1, 64) if per_batch else (3, 64))  # no time dimension: constant
    assert set(mask.unique().tolist()) == {0.0, 2.0}  # inverted dropout, p = 0.5
    if not per_batch:
        assert not torch.equal(mask[0], mask[1])  # each sequence draws its own mask


@pytest.mark.parametrize("mode", MODES)
def test_weight_drop_leaves_the_first_step_alone(mode):
    """h_0 = 0 so W_hh is not used at step 1: weight drop cannot change it."""
    layer = make_layer(mode, input_size=3, hidden_size=4, weight_drop=0.5).train()
    x = torch.randn(4, 2, 3, dtype=DOUBLE)
    outputs = [_call(layer, x)[0] for _ in range(3)]
    for out in outputs[1:]:
        _states_close(out[0], outputs[0][0])
        assert not torch.allclose(out[1:], outputs[0][1:])


def test_same_seed_gives_same_masks():
    layer = make_layer("lstm", input_size=3, hidden_size=4, recurrent_dropout=0.3, zoneout=0.2,
                       weight_drop=0.2).train()
    x = torch.randn(5, 2, 3, dtype=DOUBLE)
    torch.manual_seed(7)
    a = _call(layer, x)[0]
    torch.manual_seed(7)
    b = _call(layer, x)[0]
    _states_close(a, b, atol=0)


def test_auto_picks_fused_for_plain_and_scan_for_what_fused_cannot_run():
    x = torch.randn(4, 2, 3)
    cases = [(dict(), "fused"), (dict(weight_drop=0.2), "fused"),
             (dict(recurrent_dropout=0.2, recurrent_dropout_mode="per_batch"), "fused"),
             (dict(recurrent_dropout=0.2), "scan"), (dict(zoneout=0.1), "scan"),
             (dict(layer_norm=True), "scan")]
    for options, engine in cases:
        layer = LSTM(3, 4, **options)
        layer(x)
        assert layer.last_engine == engine, options
    gru = GRU(3, 4, reset_after=False)
    gru(x)
    assert gru.last_engine == "scan"
    lstm = LSTM(3, 4, recurrent_dropout=0.3).eval()
    with torch.no_grad():
        lstm(x)  # recurrent dropout is off in eval mode: torch's kernel can run it
    assert lstm.last_engine == "fused"
    gru = GRU(3, 4)
    gru(x)  # training at batch 2 needs a backward: the scan engine's is faster on the CPU
    assert gru.last_engine == "scan"


def test_auto_sends_the_gru_to_the_compiled_scan_loops_on_the_cpu():
    from lstmkit.nn.engines import native

    assert native.available()
    gru = GRU(8, 64)
    for batch, dtype in [(2, torch.float32), (300, torch.float32), (16, torch.float64)]:
        for grad in (True, False):
            with torch.set_grad_enabled(grad):
                gru.to(dtype)(torch.randn(3, batch, 8, dtype=dtype))
            assert gru.last_engine == "scan", (batch, dtype, grad)


@pytest.fixture
def python_loops():
    """The scan engine without its compiled loops, as where no compiler is found."""
    from lstmkit.nn.engines import native

    before = native.set_enabled(False)
    yield
    native.set_enabled(before)


def test_without_compiled_loops_auto_sends_a_gru_to_scan_where_python_loops_win(python_loops):
    from lstmkit.nn.engines import gemm

    gru = GRU(3, 4)
    with torch.no_grad():
        gru(torch.randn(4, 2, 3))  # inference on small products: torch's kernel is faster
    assert gru.last_engine == "fused"
    gru = GRU(8, 256)
    x = torch.randn(2, 64, 8)
    for grad in (True, False):  # batch 64, H = 256: the products go to oneDNN
        with torch.set_grad_enabled(grad):
            gru(x)
        assert gru.last_engine == ("scan" if gemm.ONEDNN else "fused"), grad
    gru(x[:, :16])  # training at batch 16: scan where its products go to oneDNN
    assert gru.last_engine == ("scan" if gemm.ONEDNN else "fused")
    with torch.no_grad():
        gru(x[:, :16])  # inference at batch 16: a small product, torch's kernel
    assert gru.last_engine == "fused"
    gru(torch.randn(2, 512, 8))  # B * H = 131072: the scan backward loses in training
    assert gru.last_engine == "fused"
    gru.double()
    gru(x.double()[:, :16])  # float64 never takes oneDNN: scan only up to batch 8
    assert gru.last_engine == "fused"
    gru(x.double()[:, :8])
    assert gru.last_engine == "scan"


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("bidirectional", [True, False], ids=["bi", "uni"])
@pytest.mark.parametrize("forced", [None, "packed", "segments", "tail", "scan"],
                         ids=["cost-model", "packed", "segments", "tail", "scan"])
def test_fused_lengths_paths_match_reference(mode, forced, bidirectional, monkeypatch):
    """Every way the fused engine runs lengths, and whatever the cost model picks; deep, with
    dropout between layers, weight drop and a batch-shared recurrent mask."""
    from lstmkit.nn.engines import fused

    if forced:
        monkeypatch.setattr(fused, "_lengths_path", lambda *args: forced)
    layer = make_layer(mode, input_size=8, hidden_size=32, num_layers=3,
                       bidirectional=bidirectional, dropout=0.3, weight_drop=0.2,
                       recurrent_dropout=0.2, recurrent_dropout_mode="per_batch").train()
    x = torch.randn(20, 5, 8, dtype=DOUBLE)
    lengths = torch.tensor([12, 20, 17, 12, 16])  # unsorted, ties, none with all T = 20 steps
    results = {}
    for engine in ("reference", "fused"):
        layer.engine = engine
        torch.manual_seed(3)
        results[engine] = _call(layer, x, lengths=lengths)
    _states_close(results["fused"][0], results["reference"][0], atol=1e-10)
    _states_close(results["fused"][1], results["reference"][1], atol=1e-10)


@pytest.mark.parametrize("mode", MODES)
def test_parametrized_weights_run(mode):
    """torch.nn.utils.parametrizations (weight norm, ...) take parameters out of _parameters."""
    layer = make_layer(mode, input_size=3, hidden_size=4)
    torch.nn.utils.parametrizations.weight_norm(layer, "weight_hh_l0")
    plain = make_layer(mode, input_size=3, hidden_size=4)
    with torch.no_grad():
        for name, p in plain.named_parameters():
            p.copy_(getattr(layer, name))
    x = torch.randn(5, 2, 3, dtype=DOUBLE)
    _states_close(_call(layer, x)[0], _call(plain, x)[0])


def test_step_output_does_not_alias_the_state():
    layer = make_layer("lstm", input_size=3, hidden_size=4).eval()
    y, (h, c) = layer.step(torch.randn(2, 3, dtype=DOUBLE))
    before = h.clone()
    y.clamp_(min=10.0)
    _states_close(h, before, atol=0)


@pytest.mark.parametrize("mode", MODES)
def test_step_draws_the_masks_forward_draws(mode):
    layer = make_layer(mode, input_size=3, hidden_size=4, num_layers=2, zoneout=0.3,
                       dropout=0.4).train()
    x = torch.randn(2, 3, dtype=DOUBLE)
    torch.manual_seed(11)
    y, state = layer.step(x)
    torch.manual_seed(11)
    out, whole = _call(layer, x.unsqueeze(0))
    _states_close(y, out[0])  # same masks; the engines' sums may round differently
    _states_close(state, whole)
