"""Weights to and from torch.nn and Keras 3, so that a user can swap lstmkit in and out.

torch.nn: lstmkit's parameter names and shapes are torch.nn's (torch/nn/modules/rnn.py), so a
state_dict moves either way with ``strict=True``; these helpers also carry the constructor
arguments. Keras 3 (keras/src/layers/rnn/lstm.py, gru.py): kernels are stored transposed,
(F, G*H); the LSTM's gate order (i, f, c, o) is torch's, its single bias is b_ih + b_hh; the
GRU's order is (z, r, h) against torch's (r, z, n), and its bias is (2, 3H) = [input,
recurrent] when ``reset_after=True``, or one (3H,) input bias in the paper's form, where the
recurrent bias b_hn adds outside r and so folds into it exactly. Keras is imported lazily and
runs on its torch backend (``KERAS_BACKEND=torch``); no TensorFlow is needed.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from torch import nn

from .layers import GRU, LSTM

__all__ = ["from_keras", "from_torch", "to_keras", "to_torch"]

_TORCH_ARGS = ("input_size", "hidden_size", "num_layers", "bias", "batch_first", "dropout",
               "bidirectional")


def from_torch(module: nn.LSTM | nn.GRU, **options) -> LSTM | GRU:
    """An lstmkit layer with the arguments and weights of a ``torch.nn.LSTM``/``GRU``.

    ``options`` adds lstmkit's keyword-only arguments (``recurrent_dropout=0.2``, ...).

    Example:
        >>> ours = from_torch(torch.nn.LSTM(3, 4), zoneout=0.1)
        >>> ours.zoneout
        0.1
    """
    args = {name: getattr(module, name) for name in _TORCH_ARGS}
    p = next(module.parameters())
    if isinstance(module, nn.LSTM):
        layer = LSTM(**args, proj_size=module.proj_size, **options, device=p.device,
                     dtype=p.dtype)
    elif isinstance(module, nn.GRU):
        layer = GRU(**args, **options, device=p.device, dtype=p.dtype)
    else:
        raise TypeError(f"from_torch expects torch.nn.LSTM or torch.nn.GRU, got "
                        f"{type(module).__name__}.")
    if layer.layer_norm:
        raise ValueError("from_torch: layer_norm=True adds parameters that torch.nn has no "
                         "values for; build lstmkit.nn.LSTM(..., layer_norm=True) and load the "
                         "torch weights with load_state_dict(strict=False).")
    layer.load_state_dict(module.state_dict(), strict=True)
    return layer


def to_torch(module: LSTM | GRU) -> nn.LSTM | nn.GRU:
    """A ``torch.nn.LSTM``/``GRU`` with this layer's arguments and weights.

    Raises ValueError for what torch.nn cannot compute (layer_norm, zoneout, GRU
    reset_after=False); recurrent_dropout and weight_drop, which only act in training, are
    dropped with a warning.
    """
    if module.layer_norm or module.zoneout > 0 or not module.reset_after:
        option = ("layer_norm=True" if module.layer_norm else f"zoneout={module.zoneout}"
                  if module.zoneout > 0 else "reset_after=False")
        raise ValueError(f"to_torch: torch.nn has no {option}; its outputs would differ.")
    if module.recurrent_dropout > 0 or module.weight_drop > 0:
        warnings.warn("to_torch: torch.nn has no recurrent_dropout / weight_drop; they are "
                      "dropped (eval-mode outputs are unchanged).", UserWarning, stacklevel=2)
    args = {name: getattr(module, name) for name in _TORCH_ARGS}
    p = module.weight_ih_l0
    if module.mode == "lstm":
        target = nn.LSTM(**args, proj_size=module.proj_size, device=p.device, dtype=p.dtype)
    else:
        target = nn.GRU(**args, device=p.device, dtype=p.dtype)
    target.load_state_dict(module.state_dict(), strict=True)
    return target


def _keras():
    try:
        import keras
    except ImportError as error:
        raise ImportError("Keras conversion needs Keras 3: pip install 'lstmkit[keras]' and set "
                          "KERAS_BACKEND=torch (no TensorFlow needed).") from error
    return keras


def _gru_keras_order(w: np.ndarray, axis: int) -> np.ndarray:
    """Swap the first two gate blocks: Keras (z, r, h) <-> torch (r, z, n); an involution."""
    z, r, h = np.split(w, 3, axis=axis)
    return np.concatenate([r, z, h], axis=axis)


def _check_keras_cell(layer) -> None:
    name = type(layer).__name__
    if layer.go_backwards:
        raise ValueError(f"from_keras: {name}(go_backwards=True) alone has no lstmkit "
                         "equivalent; wrap it in keras.layers.Bidirectional or flip the input.")
    cell = layer.cell
    for attr, expected in (("activation", "tanh"), ("recurrent_activation", "sigmoid")):
        got = getattr(getattr(cell, attr), "__name__", str(getattr(cell, attr)))
        if got != expected:
            raise ValueError(f"from_keras: {name}({attr}={got!r}) differs from the LSTM/GRU "
                             f"equations, which use {expected}.")
    if cell.dropout > 0:
        warnings.warn(f"from_keras: {name}(dropout={cell.dropout}) drops the layer's inputs; "
                      "lstmkit leaves input dropout to the model, so it is not carried over.",
                      UserWarning, stacklevel=3)


def _load_keras_direction(ours: LSTM | GRU, layer, suffix: str) -> None:
    weights = [np.asarray(w) for w in layer.get_weights()]
    kernel, recurrent = weights[0], weights[1]  # (F, G*H), (H, G*H)
    bias = weights[2] if layer.cell.use_bias else None
    G = kernel.shape[1]
    b_ih = b_hh = None
    if ours.mode == "gru":
        kernel, recurrent = _gru_keras_order(kernel, 1), _gru_keras_order(recurrent, 1)
        if bias is not None and bias.ndim == 2:  # reset_after: [input bias, recurrent bias]
            b_ih, b_hh = _gru_keras_order(bias[0], 0), _gru_keras_order(bias[1], 0)
        elif bias is not None:
            b_ih, b_hh = _gru_keras_order(bias, 0), np.zeros(G, bias.dtype)
    elif bias is not None:
        b_ih, b_hh = bias, np.zeros(G, bias.dtype)
    values = {"weight_ih": kernel.T, "weight_hh": recurrent.T, "bias_ih": b_ih, "bias_hh": b_hh}
    with torch.no_grad():
        for prefix, value in values.items():
            if value is not None:
                target = getattr(ours, f"{prefix}_l0{suffix}")
                target.copy_(torch.as_tensor(np.ascontiguousarray(value)))


def from_keras(layer) -> LSTM | GRU:
    """An lstmkit layer (batch_first=True, as Keras) equal to a Keras 3 LSTM/GRU layer.

    Accepts ``keras.layers.LSTM``, ``keras.layers.GRU`` (both reset_after forms) and
    ``keras.layers.Bidirectional`` around either with ``merge_mode="concat"``. The layer must
    be built (called once, or ``layer.build((None, None, F))``). ``recurrent_dropout`` carries
    over (Keras draws one mask per sequence, as lstmkit's default).
    """
    keras = _keras()
    bidirectional = isinstance(layer, keras.layers.Bidirectional)
    if bidirectional:
        if layer.merge_mode != "concat":
            raise ValueError(f"from_keras: Bidirectional(merge_mode={layer.merge_mode!r}) is "
                             "not supported; lstmkit concatenates the directions ('concat').")
        directions = [layer.forward_layer, layer.backward_layer]
    else:
        directions = [layer]
    first = directions[0]
    if not isinstance(first, (keras.layers.LSTM, keras.layers.GRU)):
        raise TypeError(f"from_keras expects keras.layers.LSTM, GRU or Bidirectional, got "
                        f"{type(first).__name__}.")
    if not first.built:
        raise ValueError("from_keras: the Keras layer is not built yet; call it once or "
                         "layer.build((None, None, input_size)).")
    for direction in directions:
        if direction is not first:
            direction = _unreversed(direction)
        _check_keras_cell(direction)
    kernel = np.asarray(first.get_weights()[0])
    args = dict(input_size=kernel.shape[0], hidden_size=first.units, bias=first.cell.use_bias,
                batch_first=True, bidirectional=bidirectional,
                recurrent_dropout=float(first.cell.recurrent_dropout))
    if isinstance(first, keras.layers.LSTM):
        ours = LSTM(**args)
    else:
        ours = GRU(**args, reset_after=bool(first.cell.reset_after))
    for direction, suffix in zip(directions, ("", "_reverse"), strict=False):
        _load_keras_direction(ours, direction, suffix)
    return ours


class _unreversed:
    """A view of Bidirectional's backward layer with go_backwards hidden (it is its design)."""

    def __init__(self, layer) -> None:
        self._layer = layer

    def __getattr__(self, name):
        return False if name == "go_backwards" else getattr(self._layer, name)


def _keras_weights(module: LSTM | GRU, suffix: str) -> list[np.ndarray]:
    def get(prefix: str) -> np.ndarray | None:
        weight = getattr(module, f"{prefix}_l0{suffix}", None)
        return None if weight is None else weight.detach().cpu().numpy()

    kernel, recurrent = get("weight_ih").T, get("weight_hh").T  # (F, G*H), (H, G*H)
    b_ih, b_hh = get("bias_ih"), get("bias_hh")
    if module.mode == "lstm":
        return [kernel, recurrent] + ([] if b_ih is None else [b_ih + b_hh])
    kernel, recurrent = _gru_keras_order(kernel, 1), _gru_keras_order(recurrent, 1)
    if b_ih is None:
        return [kernel, recurrent]
    if module.reset_after:
        return [kernel, recurrent, np.stack([_gru_keras_order(b_ih, 0),
                                             _gru_keras_order(b_hh, 0)])]
    return [kernel, recurrent, _gru_keras_order(b_ih + b_hh, 0)]  # b_hn adds outside r here


def to_keras(module: LSTM | GRU):
    """A built Keras 3 layer (``return_sequences=True``) equal to a one-layer lstmkit layer.

    A bidirectional layer becomes ``keras.layers.Bidirectional(..., merge_mode="concat")``.
    Raises ValueError for what one Keras layer cannot hold: num_layers > 1, proj_size,
    layer_norm, zoneout, weight_drop.
    """
    keras = _keras()
    for option, unsupported in (("num_layers", module.num_layers > 1),
                                ("proj_size", module.proj_size > 0),
                                ("layer_norm", module.layer_norm), ("zoneout", module.zoneout > 0),
                                ("weight_drop", module.weight_drop > 0)):
        if unsupported:
            raise ValueError(f"to_keras: a Keras {module.mode.upper()} layer has no "
                             f"{option}={getattr(module, option)!r}; convert a one-layer layer "
                             "without it (stack Keras layers for several).")
    kind = keras.layers.LSTM if module.mode == "lstm" else keras.layers.GRU
    kwargs = dict(units=module.hidden_size, use_bias=module.bias, return_sequences=True,
                  recurrent_dropout=module.recurrent_dropout)
    if module.mode == "gru":
        kwargs["reset_after"] = module.reset_after
    layer = kind(**kwargs)
    if module.bidirectional:
        layer = keras.layers.Bidirectional(layer, merge_mode="concat")
    layer.build((None, None, module.input_size))
    if module.bidirectional:
        layer.forward_layer.set_weights(_keras_weights(module, ""))
        layer.backward_layer.set_weights(_keras_weights(module, "_reverse"))
    else:
        layer.set_weights(_keras_weights(module, ""))
    return layer


