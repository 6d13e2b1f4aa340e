"""The scan engine's compiled loops (engines/native.py): they build here, they give the Python
loops' numbers over every option, and where they cannot build the Python loops take over."""

from __future__ import annotations

import itertools

import pytest
import torch

from lstmkit.nn.engines import native

from .helpers import assert_same, functional, make_inputs, make_layer, run_with_grads


def test_the_compiled_loops_build_and_load_on_this_machine():
    # CI builds them (make venv); without them the scan engine silently runs 1.5-3x slower.
    assert native.available(), "the compiled scan loops did not build: see the warning above"
    assert native.library_path().exists()


def _both_loops(layer, args):
    """run_with_grads through the compiled loops and through the Python loops."""
    got = run_with_grads(layer, *args)
    assert layer.last_engine == "scan"
    before = native.set_enabled(False)
    try:
        want = run_with_grads(layer, *args)
    finally:
        native.set_enabled(before)
    return got, want


LSTM_OPTIONS = [
    dict(proj_size=p, layer_norm=ln, recurrent_dropout=rd, zoneout=z, bidirectional=bi)
    for p, ln, rd, z, bi in itertools.product((0, 4), (False, True), (0.0, 0.3), (0.0, 0.2),
                                              (False, True))
]
GRU_OPTIONS = [
    dict(reset_after=ra, layer_norm=ln, recurrent_dropout=rd, zoneout=z, bidirectional=bi)
    for ra, ln, rd, z, bi in itertools.product((True, False), (False, True), (0.0, 0.3),
                                               (0.0, 0.2), (False, True))
]
CASES = [("lstm", o) for o in LSTM_OPTIONS] + [("gru", o) for o in GRU_OPTIONS]


@pytest.mark.parametrize("batch", [1, 3, 70], ids=["gemv", "small-gemm", "library-product"])
@pytest.mark.parametrize("mode,options", CASES,
                         ids=[m + "-" + "-".join(f"{k}={v}" for k, v in o.items())
                              for m, o in CASES])
def test_compiled_loops_match_the_python_loops_in_float64(mode, options, batch):
    assert native.available()
    layer = make_layer(mode, input_size=3, hidden_size=6, num_layers=2, engine="scan",
                       **options)
    args = make_inputs(layer, T=5, B=batch, with_lengths=batch > 1)
    got, want = _both_loops(layer, args)
    assert_same(got, want, atol=1e-12, rtol=1e-10)


UNSORTED = [
    ("lstm", dict(proj_size=3, layer_norm=True, recurrent_dropout=0.3, zoneout=0.2)),
    ("lstm", dict(recurrent_dropout=0.3, recurrent_dropout_mode="per_batch")),
    ("gru", dict(layer_norm=True, recurrent_dropout=0.3, zoneout=0.2)),
    ("gru", dict(reset_after=False, recurrent_dropout=0.3)),
]


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("batch", [3, 6], ids=["library-product", "rows-drop-to-own-product"])
@pytest.mark.parametrize("mode,options", UNSORTED, ids=[f"{m}-{i}" for i, (m, _) in
                                                         enumerate(UNSORTED)])
def test_compiled_loops_skip_padded_rows_of_an_unsorted_batch(mode, options, batch, training):
    # With lengths, the compiled loops sort the rows longest first and multiply only the rows
    # still running (a step with 1-2 rows left uses the own product); ties, the longest row
    # last, and rows that end at step 1 all occur here.
    layer = make_layer(mode, input_size=3, hidden_size=6, num_layers=2, engine="scan",
                       bidirectional=True, **options).train(training)
    x, h0, c0, _, grads = make_inputs(layer, T=5, B=batch, with_lengths=False)
    lengths = torch.tensor([2, 5, 1, 5, 3, 4][:batch]) if batch == 6 else torch.tensor([1, 3, 4])
    got, want = _both_loops(layer, (x, h0, c0, lengths, grads))
    assert_same(got, want, atol=1e-12, rtol=1e-10)


@pytest.mark.parametrize("mode", ["lstm", "gru"])
@pytest.mark.parametrize("batch", [1, 3])
def test_compiled_loops_pass_gradcheck(mode, batch):
    assert native.available()
    options = dict(proj_size=3) if mode == "lstm" else dict(reset_after=False)
    layer = make_layer(mode, input_size=3, hidden_size=4, engine="scan", layer_norm=True,
                       zoneout=0.3, recurrent_dropout=0.3, **options)
    x, h0, c0, lengths, _ = make_inputs(layer, T=4, B=batch, with_lengths=batch > 1)
    state = (h0, c0) if mode == "lstm" else (h0,)
    args = [t.detach().requires_grad_() for t in (x, *state, *layer.parameters())]
    assert torch.autograd.gradcheck(functional(layer, lengths=lengths), tuple(args))


@pytest.mark.parametrize("hidden", [32, 40, 130], ids=["tiles", "tile-tail", "library"])
@pytest.mark.parametrize("mode", ["lstm", "gru"])
def test_compiled_loops_in_float32_match_the_python_loops(mode, hidden):
    # float32 gates go through torch's exp_u20 (within 20 ulp) in the compiled loops; the
    # products of 5 rows through small_gemm (whole tiles, or a scalar tail) or, past 64k
    # weights, the library's GEMM.
    assert native.available()
    layer = make_layer(mode, input_size=8, hidden_size=hidden, engine="scan", layer_norm=True,
                       recurrent_dropout=0.3).float()
    x, h0, c0, lengths, grads = make_inputs(layer, T=7, B=5, with_lengths=True)
    args = (x.float(), h0.float(), c0.float(), lengths, tuple(g.float() for g in grads))
    got, want = _both_loops(layer, args)
    assert_same(got, want, atol=1e-4, rtol=1e-4)


@pytest.fixture
def fresh_native(monkeypatch):
    """native's load state forgotten, as in a new process."""
    monkeypatch.setitem(native._state, "loaded", None)
    return native


def test_lstmkit_native_0_turns_the_compiled_loops_off_without_a_warning(fresh_native,
                                                                          monkeypatch, recwarn):
    monkeypatch.setenv("LSTMKIT_NATIVE", "0")
    assert not fresh_native.available()
    assert not [w for w in recwarn if "compiled loops" in str(w.message)]


def test_a_failed_build_warns_once_and_the_python_loops_give_the_same_numbers(fresh_native,
                                                                               monkeypatch):
    layer = make_layer("lstm", input_size=3, hidden_size=5, engine="scan", layer_norm=True)
    args = make_inputs(layer, T=4, B=2, with_lengths=True)
    want = run_with_grads(layer, *args)  # through the compiled loops
    monkeypatch.setitem(native._state, "loaded", None)  # a new process, where the build fails

    def no_compiler(verbose=False):
        raise OSError("no C++ compiler found (c++)")

    monkeypatch.setattr(native, "build", no_compiler)
    with pytest.warns(RuntimeWarning, match="no C\\+\\+ compiler.*Python loops"):
        got = run_with_grads(layer, *args)
    assert_same(got, want, atol=1e-12, rtol=1e-10)
    assert native._state["loaded"] is False  # decided once: no second attempt, no warning


def test_loading_the_compiled_loops_leaves_the_global_random_stream_alone(fresh_native):
    # The load (and its probe) happens inside a user's first forward pass, between the seed
    # and the masks it draws: a draw there gave the first call other masks than the next.
    torch.manual_seed(5)
    want = torch.rand(4)
    torch.manual_seed(5)
    assert fresh_native.available()
    torch.testing.assert_close(torch.rand(4), want, atol=0, rtol=0)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("batch", [1, 2, 5], ids=["gemv-1", "gemv-2", "library-product"])
@pytest.mark.parametrize("options", [dict(), dict(bias=False), dict(zoneout=0.2)],
                         ids=["plain", "no-bias", "zoneout"])
def test_the_compiled_streaming_step_matches_the_cells(options, batch, dtype):
    # LSTM.step() in inference runs one compiled call a layer (engines/stream.py); with the
    # compiled loops off it runs lstmkit.nn.cells. Hidden 37 and input 11 leave vector tails.
    layer = make_layer("lstm", input_size=11, hidden_size=37, num_layers=2, **options).eval()
    layer = layer.to(dtype)
    xs = torch.randn(6, batch, 11, dtype=dtype)

    def stream():
        state, ys = None, []
        with torch.no_grad():
            for x in xs:
                y, state = layer.step(x, state)
                ys.append(y)
        return torch.stack(ys), state

    got = stream()
    before = native.set_enabled(False)
    try:
        want = stream()
    finally:
        native.set_enabled(before)
    tol = dict(atol=1e-12, rtol=1e-10) if dtype == torch.float64 else dict(atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got, want, **tol)
    assert got[0].abs().sum() > 0


def test_the_streaming_step_builds_a_graph_when_one_is_wanted():
    # Outside no_grad the compiled step (which has no backward) stands aside: for the
    # weights, and for a state that wants a gradient while the weights are frozen.
    layer = make_layer("lstm", input_size=3, hidden_size=4).eval()
    y, _ = layer.step(torch.randn(1, 3, dtype=torch.float64))
    y.sum().backward()
    assert layer.weight_ih_l0.grad is not None and layer.weight_ih_l0.grad.abs().sum() > 0
    layer.requires_grad_(False)
    h0, c0 = (torch.randn(1, 1, 4, dtype=torch.float64, requires_grad=True) for _ in range(2))
    y, _ = layer.step(torch.randn(1, 3, dtype=torch.float64), (h0, c0))
    y.sum().backward()
    assert h0.grad is not None and c0.grad is not None and h0.grad.abs().sum() > 0


def test_weight_gradients_reach_onednn_matmul_and_agree_with_torch_mm():
    # at::native::mkldnn_matmul is private to ATen, looked up by name (native_scan.cpp, mm_tn).
    # If a torch release drops or changes it, mm_tn falls back to torch.mm silently, and the
    # scan engine's weight gradients run at half speed on AMD CPUs: this test says so loudly.
    from lstmkit.nn.engines import gemm

    assert native.available()
    if torch.backends.mkldnn.is_available():
        assert torch.ops.lstmkit_native.onednn_matmul_found(), (
            "at::native::mkldnn_matmul was not found or disagrees with at::mm in this torch; "
            "see mm_tn in native_scan.cpp")
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(300, 96, generator=g), torch.randn(300, 64, generator=g)
    want = a.double().t() @ b.double()
    torch.testing.assert_close(gemm.mm_tn(a, b).double(), want, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(torch.ops.lstmkit_native.mm_tn(a[::2], b[::2]).double(),
                               a[::2].double().t() @ b[::2].double(), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(gemm.mm_tn(a.double(), b.double()), want, atol=1e-12, rtol=0)


@pytest.mark.parametrize("engine", ["auto", "scan"])
@pytest.mark.parametrize("mode", ["lstm", "gru"])
def test_lengths_under_cpu_autocast_keep_each_rows_final_state(mode, engine):
    # Under autocast the input projection comes out in bfloat16; the recurrence must still run
    # (in float32) and skip each row's padded steps: shorter rows once got the state of their
    # padded steps (the Python loops ran, without keep fractions), and before that it raised.
    layer = make_layer(mode, input_size=3, hidden_size=8, engine=engine).float()
    x = torch.randn(5, 2, 3)
    lengths = torch.tensor([2, 5])
    with torch.no_grad():
        want = layer(x, lengths=lengths)[1]
        with torch.autocast("cpu", dtype=torch.bfloat16):
            got = layer(x, lengths=lengths)[1]
    want, got = (t[0] if mode == "lstm" else t for t in (want, got))
    torch.testing.assert_close(got.float(), want, atol=0.05, rtol=0.05)
