"""lstmkit.nn against torch.nn with copied weights, and state_dicts both ways (R9)."""

from __future__ import annotations

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import lstmkit.nn as lnn

CASES = [
    dict(num_layers=1),
    dict(num_layers=2, bidirectional=True),
    dict(num_layers=2, batch_first=True, bias=False),
    dict(num_layers=2, bidirectional=True, proj_size=3),
]


def _pair(mode, dtype, **kwargs):
    kwargs = dict(kwargs)
    if mode == "gru":
        kwargs.pop("proj_size", None)
    torch_cls = torch.nn.LSTM if mode == "lstm" else torch.nn.GRU
    theirs = torch_cls(4, 6, **kwargs).to(dtype)
    ours = lnn.from_torch(theirs)
    return theirs, ours


@pytest.mark.parametrize("engine", ["reference", "fused", "scan"])
@pytest.mark.parametrize("dtype,atol", [(torch.float32, 1e-5), (torch.float64, 1e-8)])
@pytest.mark.parametrize("kwargs", CASES)
@pytest.mark.parametrize("mode", ["lstm", "gru"])
def test_matches_torch_nn(mode, kwargs, dtype, atol, engine):
    theirs, ours = _pair(mode, dtype, **kwargs)
    ours.engine = engine
    x = torch.randn(7, 5, 4, dtype=dtype)
    want_out, want_state = theirs(x)
    got_out, got_state = ours(x)
    torch.testing.assert_close(got_out, want_out, atol=atol, rtol=0)
    torch.testing.assert_close(got_state, want_state, atol=atol, rtol=0)
    (want_out.sum() + want_out.square().sum()).backward()
    (got_out.sum() + got_out.square().sum()).backward()
    for (name, p), q in zip(theirs.named_parameters(), ours.parameters(), strict=True):
        torch.testing.assert_close(q.grad, p.grad, atol=atol * 10, rtol=0, msg=name)


@pytest.mark.parametrize("engine", ["reference", "fused", "scan"])
@pytest.mark.parametrize("mode", ["lstm", "gru"])
def test_lengths_match_unsorted_packed_sequence(mode, engine):
    theirs, ours = _pair(mode, torch.float64, num_layers=2, bidirectional=True,
                         batch_first=True)
    ours.engine = engine
    lengths = torch.tensor([3, 7, 1, 5])  # unsorted
    x = torch.randn(4, 7, 4, dtype=torch.float64)
    packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    want_packed, want_state = theirs(packed)
    want_out, _ = pad_packed_sequence(want_packed, batch_first=True, total_length=7)
    garbage = x.clone()
    for row, n in enumerate(lengths):
        garbage[row, n:] = 1e3  # padding holds garbage, which must not leak
    got_out, got_state = ours(garbage, lengths=lengths)
    torch.testing.assert_close(got_out, want_out, atol=1e-8, rtol=0)
    torch.testing.assert_close(got_state, want_state, atol=1e-8, rtol=0)
    # A PackedSequence in gives one out, with the same structure as torch.nn's.
    got_packed, got_state = ours(packed)
    assert torch.equal(got_packed.batch_sizes, want_packed.batch_sizes)
    assert torch.equal(got_packed.sorted_indices, want_packed.sorted_indices)
    torch.testing.assert_close(got_packed.data, want_packed.data, atol=1e-8, rtol=0)
    torch.testing.assert_close(got_state, want_state, atol=1e-8, rtol=0)


@pytest.mark.parametrize("mode", ["lstm", "gru"])
def test_state_dict_round_trip_strict(mode):
    theirs, ours = _pair(mode, torch.float32, num_layers=2, bidirectional=True, proj_size=2)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    back = lnn.to_torch(ours)
    for key, value in theirs.state_dict().items():
        assert torch.equal(back.state_dict()[key], value), key
    fresh = (lnn.LSTM(4, 6, 2, bidirectional=True, proj_size=2) if mode == "lstm"
             else lnn.GRU(4, 6, 2, bidirectional=True))
    fresh.load_state_dict(theirs.state_dict(), strict=True)
    theirs.load_state_dict(fresh.state_dict(), strict=True)


def test_unbatched_input_matches_torch():
    theirs, ours = _pair("lstm", torch.float64, num_layers=2)
    x = torch.randn(6, 4, dtype=torch.float64)
    want_out, (h, c) = theirs(x)
    got_out, (gh, gc) = ours(x)
    assert got_out.shape == want_out.shape == (6, 6) and gh.shape == h.shape == (2, 6)
    torch.testing.assert_close((got_out, gh, gc), (want_out, h, c), atol=1e-10, rtol=0)


def test_cells_match_torch():
    x, h, c = torch.randn(3, 4), torch.randn(3, 5), torch.randn(3, 5)
    ours, theirs = lnn.LSTMCell(4, 5), torch.nn.LSTMCell(4, 5)
    ours.load_state_dict(theirs.state_dict(), strict=True)
    torch.testing.assert_close(ours(x, (h, c)), theirs(x, (h, c)), atol=1e-6, rtol=0)
    ours, theirs = lnn.GRUCell(4, 5), torch.nn.GRUCell(4, 5)
    ours.load_state_dict(theirs.state_dict(), strict=True)
    torch.testing.assert_close(ours(x, h), theirs(x, h), atol=1e-6, rtol=0)
    torch.testing.assert_close(ours(x[0], h[0]), theirs(x[0], h[0]), atol=1e-6, rtol=0)


def test_forget_bias_initialisation():
    lstm = lnn.LSTM(3, 4, forget_bias=2.0)
    assert torch.equal(lstm.bias_ih_l0[4:8], torch.full((4,), 2.0))
    assert torch.equal(lstm.bias_hh_l0[4:8], torch.zeros(4))
    gru = lnn.GRU(3, 4, bidirectional=True)  # slice 1 is the update gate z
    assert torch.equal(gru.bias_ih_l0_reverse[4:8], torch.ones(4))


def test_to_torch_refuses_what_torch_cannot_compute():
    with pytest.raises(ValueError, match="torch.nn has no zoneout=0.1"):
        lnn.to_torch(lnn.LSTM(3, 4, zoneout=0.1))
    with pytest.warns(UserWarning, match="recurrent_dropout / weight_drop"):
        lnn.to_torch(lnn.GRU(3, 4, recurrent_dropout=0.2))


@pytest.mark.cuda
@pytest.mark.parametrize("mode", ["lstm", "gru"])
def test_cuda_fused_matches_cpu(mode):
    theirs, ours = _pair(mode, torch.float32, num_layers=2, bidirectional=True)
    x = torch.randn(7, 5, 4)
    lengths = torch.tensor([7, 2, 5, 1, 6])
    want, _ = ours(x, lengths=lengths)
    ours.cuda()
    got, _ = ours(x.cuda(), lengths=lengths)
    assert ours.last_engine == "fused"
    torch.testing.assert_close(got.cpu(), want, atol=1e-4, rtol=1e-4)
    got.sum().backward()  # cuDNN's backward needs its train flag
    assert all(torch.isfinite(p.grad).all() for p in ours.parameters())
    ours.engine = "scan"
    got, _ = ours(x.cuda(), lengths=lengths)
    torch.testing.assert_close(got.cpu(), want, atol=1e-4, rtol=1e-4)
