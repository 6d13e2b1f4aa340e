"""Keras 3 layers to lstmkit and back, on Keras' torch backend (no TensorFlow)."""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import keras  # noqa: E402  (the [keras] extra; `make test` installs it)
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

import lstmkit.nn as lnn  # noqa: E402

KERAS_LAYERS = {
    "lstm": lambda: keras.layers.LSTM(6, return_sequences=True),
    "gru_reset_after": lambda: keras.layers.GRU(6, return_sequences=True, reset_after=True),
    "gru_reset_before": lambda: keras.layers.GRU(6, return_sequences=True, reset_after=False),
    "bidirectional_lstm": lambda: keras.layers.Bidirectional(
        keras.layers.LSTM(6, return_sequences=True)),
    "bidirectional_gru": lambda: keras.layers.Bidirectional(
        keras.layers.GRU(6, return_sequences=True)),
}


def _keras_output(layer, x: np.ndarray) -> np.ndarray:
    return keras.ops.convert_to_numpy(layer(x))


@pytest.mark.parametrize("kind", list(KERAS_LAYERS))
def test_keras_to_lstmkit_and_back(kind):
    assert keras.backend.backend() == "torch"
    layer = KERAS_LAYERS[kind]()
    x = np.random.default_rng(0).standard_normal((3, 7, 4)).astype("float32")
    layer.build((None, None, 4))
    rng = np.random.default_rng(1)  # random biases too: Keras starts them at zero
    layer.set_weights([rng.standard_normal(w.shape).astype("float32") * 0.4
                       for w in layer.get_weights()])
    want = _keras_output(layer, x)
    ours = lnn.from_keras(layer)
    assert ours.batch_first and ours.bidirectional == kind.startswith("bidirectional")
    with torch.no_grad():
        got, _ = ours(torch.from_numpy(x))
    np.testing.assert_allclose(got.numpy(), want, atol=1e-5, rtol=0)
    back = lnn.to_keras(ours)
    np.testing.assert_allclose(_keras_output(back, x), want, atol=1e-5, rtol=0)


def test_lstmkit_to_keras_carries_both_biases():
    ours = lnn.GRU(4, 5, batch_first=True, reset_after=False)
    with torch.no_grad():
        for p in ours.parameters():
            p.copy_(torch.randn_like(p) * 0.5)
    x = torch.randn(2, 6, 4)
    with torch.no_grad():
        want, _ = ours(x)
    got = _keras_output(lnn.to_keras(ours), x.numpy())
    np.testing.assert_allclose(got, want.numpy(), atol=1e-5, rtol=0)


def test_unsupported_conversions_say_why():
    with pytest.raises(ValueError, match="a Keras LSTM layer has no num_layers=2"):
        lnn.to_keras(lnn.LSTM(3, 4, num_layers=2))
    with pytest.raises(ValueError, match="activation='relu'"):
        layer = keras.layers.LSTM(4, activation="relu")
        layer.build((None, None, 3))
        lnn.from_keras(layer)
    with pytest.raises(ValueError, match="not built yet"):
        lnn.from_keras(keras.layers.GRU(4))
