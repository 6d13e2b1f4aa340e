"""Bad input raises an error naming what it got and what it expected (STYLE.md R4)."""

from __future__ import annotations

import pytest
import torch

from lstmkit.nn import GRU, LSTM


def test_wrong_rank():
    with pytest.raises(ValueError, match=r"got input of rank 4 \(shape \(2, 3, 4, 5\)\); "
                                         r"expected rank 3 \(batch, time, features\)"):
        LSTM(5, 4, batch_first=True)(torch.randn(2, 3, 4, 5))
    with pytest.raises(ValueError, match="got input of rank 1"):
        GRU(5, 4)(torch.randn(5))


def test_wrong_feature_count():
    with pytest.raises(ValueError, match=r"LSTM\(input_size=3\) got input with 5 features "
                                         r"\(shape \(7, 2, 5\)\)"):
        LSTM(3, 4)(torch.randn(7, 2, 5))


def test_wrong_dtype():
    with pytest.raises(TypeError, match="torch.float32 parameters but got a torch.float64 input"):
        LSTM(3, 4)(torch.randn(7, 2, 3, dtype=torch.float64))


@pytest.mark.parametrize("lengths,message", [
    (torch.tensor([5, 8]), r"lengths must lie in \[1, T=5\]; row 1 has length 8"),
    (torch.tensor([0, 3]), r"lengths must lie in \[1, T=5\]; row 0 has length 0"),
    (torch.tensor([5, 3, 2]), "lengths has 3 entries but the batch has 2 rows"),
    (torch.tensor([5.0, 3.0]), "lengths must be a 1-D integer tensor"),
    (torch.tensor([[5, 3]]), "lengths must be a 1-D integer tensor"),
])
def test_bad_lengths(lengths, message):
    with pytest.raises(ValueError, match=message):
        GRU(3, 4)(torch.randn(5, 2, 3), lengths=lengths)


@pytest.mark.parametrize("option", ["dropout", "recurrent_dropout", "weight_drop", "zoneout"])
@pytest.mark.parametrize("value", [-0.1, 1.0, 1.5])
def test_probability_outside_unit_interval(option, value):
    with pytest.raises(ValueError, match=rf"LSTM\({option}={value}\): {option} must be a "
                                         r"probability in \[0, 1\)"):
        LSTM(3, 4, num_layers=2, **{option: value})


def test_bad_sizes():
    with pytest.raises(ValueError, match=r"LSTM\(hidden_size=0\): hidden_size must be a positive"):
        LSTM(3, 0)
    with pytest.raises(ValueError, match=r"proj_size=4\): proj_size must be an integer in "
                                         r"\[0, hidden_size=4\)"):
        LSTM(3, 4, proj_size=4)


def test_unknown_engine():
    with pytest.raises(ValueError, match=r"GRU\(engine='cudnn'\): unknown engine; choose one "
                                         r"of 'auto', 'reference', 'fused', 'scan'"):
        GRU(3, 4, engine="cudnn")


@pytest.mark.parametrize("options,option_text", [
    (dict(zoneout=0.1), r"zoneout=0.1 \(torch's kernel has no zoneout\)"),
    (dict(layer_norm=True), "layer_norm=True"),
    (dict(recurrent_dropout=0.2), "recurrent_dropout=0.2 with recurrent_dropout_mode="
                                  "'per_sequence'"),
])
def test_explicit_engine_that_cannot_run_the_options(options, option_text):
    layer = LSTM(3, 4, engine="fused", **options)
    with pytest.raises(ValueError, match=rf"engine='fused' cannot run {option_text}.*use "
                                         r"engine='auto' or engine='scan'"):
        layer(torch.randn(5, 2, 3))
    with pytest.raises(ValueError, match="engine='fused' cannot run reset_after=False"):
        GRU(3, 4, engine="fused", reset_after=False)(torch.randn(5, 2, 3))


def test_step_on_bidirectional_layer():
    with pytest.raises(ValueError, match=r"LSTM.step\(\) runs one time step forwards, but this "
                                         "layer is bidirectional"):
        LSTM(3, 4, bidirectional=True).step(torch.randn(2, 3))


def test_step_in_training_with_sequence_masks():
    with pytest.raises(ValueError, match="would draw a new recurrent_dropout / weight_drop mask"):
        GRU(3, 4, recurrent_dropout=0.2).train().step(torch.randn(2, 3))


def test_bad_initial_state():
    with pytest.raises(ValueError, match=r"expected c_0 of shape \(2, 2, 4\).*got \(1, 2, 4\)"):
        LSTM(3, 4, num_layers=2)(torch.randn(5, 2, 3),
                                 (torch.zeros(2, 2, 4), torch.zeros(1, 2, 4)))
    with pytest.raises(TypeError, match=r"expects hx=\(h_0, c_0\)"):
        LSTM(3, 4)(torch.randn(5, 2, 3), torch.zeros(1, 2, 4))


def test_dropout_with_one_layer_warns():
    with pytest.warns(UserWarning, match="dropout=0.5 acts between layers"):
        LSTM(3, 4, dropout=0.5)


def test_packed_and_lengths_together():
    packed = torch.nn.utils.rnn.pack_padded_sequence(torch.randn(5, 2, 3), [5, 3])
    with pytest.raises(ValueError, match="either a PackedSequence or lengths="):
        LSTM(3, 4)(packed, lengths=torch.tensor([5, 3]))
