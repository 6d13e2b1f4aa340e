"""LSTM and GRU layers: torch.nn's interface, lstmkit's engines and regularisers.

Stacking, bidirection, initial states and ``state_dict`` keys follow ``torch.nn.LSTM`` /
``torch.nn.GRU`` (torch/nn/modules/rnn.py) so that either loads the other's weights. What a
sequence costs is decided by :func:`lstmkit.nn.engines.select_engine`; the maths lives in
:mod:`lstmkit.nn.cells`; the masks come from :mod:`lstmkit.nn.regularizers`.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from . import regularizers
from .cells import LayerNormParams, gru_cell, lstm_cell
from .engines import (
    ENGINE_NAMES,
    DirectionMasks,
    DirectionParams,
    RecurrentSpec,
    get_engine,
    select_engine,
    stream,
)

__all__ = ["GRU", "LSTM"]

log = logging.getLogger(__name__)

_NO_MASKS = DirectionMasks(None, None, None)

_SHARED_ARGS_DOC = """
    Args:
        input_size: F, the number of features of each time step of the input.
        hidden_size: H, the number of units in each direction of each layer.
        num_layers: L, stacked layers; layer l > 0 reads layer l-1's output. Default 1.
        bias: use the biases ``bias_ih`` and ``bias_hh``. Default True.
        batch_first: input and output are (B, T, F) rather than (T, B, F). The states h_n, c_n
            stay (D*L, B, H) either way, as in torch.nn. Default False.
        dropout: dropout on each layer's output except the last's, in training. Default 0.
        bidirectional: D = 2; each layer also reads every sequence backwards (within its own
            length) and the two outputs are concatenated. Default False.
        recurrent_dropout: variational dropout of h_{t-1}, one mask per sequence for all its
            steps (Gal & Ghahramani 2016); off in eval mode. Keyword-only. Default 0.
        recurrent_dropout_mode: ``"per_sequence"`` (the paper's, Keras') or ``"per_batch"``:
            one mask for the whole batch, which is DropConnect on the columns of W_hh and runs
            in torch's fused kernel. Default "per_sequence".
        weight_drop: DropConnect on W_hh, one draw per forward pass (AWD-LSTM); off in eval.
            Default 0.
        zoneout: probability that each unit of the state keeps its previous value at a step
            (Krueger et al. 2016); eval mode uses the expectation. Default 0.
        layer_norm: layer-normalise the input and recurrent pre-activations (and the LSTM's
            cell), as Haste's LayerNormLSTM; adds ``layer_norm_*`` parameters. Default False.
        forget_bias: the initial bias of the forget gate (the update gate z of the GRU): the
            gate's ``bias_ih`` slice is set to it and its ``bias_hh`` slice to 0 (Jozefowicz
            et al. 2015 recommend 1.0). Other weights start as torch.nn's, U(-1/√H, 1/√H).
        engine: ``"auto"``, ``"fused"``, ``"scan"`` or ``"reference"`` (see Engines).
        device, dtype: where and in what precision the parameters are created, as torch.nn.

    Engines (all give the same numbers; ``layer.last_engine`` tells which one ran):
        ============================================  =========  =========  ==========
        option                                        reference  scan       fused
        ============================================  =========  =========  ==========
        plain layers, stacks, bidirection, lengths    yes        yes        yes
        dropout between layers, weight_drop           yes        yes        yes
        recurrent_dropout, mode "per_batch"           yes        yes        yes
        recurrent_dropout, mode "per_sequence"        yes        yes        no
        zoneout, layer_norm                           yes        yes        no
        LSTM proj_size                                yes        yes        yes
        GRU reset_after=False                         yes        yes        no
        second derivatives (create_graph=True)        yes        no         yes
        ============================================  =========  =========  ==========

        ``"auto"`` takes ``fused`` (oneDNN on the CPU, cuDNN on CUDA) wherever it can run the
        options, and ``scan`` otherwise, with one exception measured on the CPU: the GRU, which
        has no oneDNN kernel, runs on ``scan`` where its oneDNN products and hand-written
        backward are faster (engines._gru_scan_is_faster); and with ``lengths`` on the CPU,
        ``fused`` chosen by ``"auto"`` may run the steps that only some rows have on ``scan``'s
        compiled loops (engines.fused._lengths_path), so second derivatives with lengths need
        ``engine="fused"`` (named: torch's kernel only) or ``"reference"``. ``step()`` runs the
        cells directly (``last_engine == "step"``). An explicit engine that cannot run an
        option raises.
"""


class _RecurrentLayer(nn.Module):
    """The shared machinery of LSTM and GRU (abstract: build one of those)."""

    def __init__(self, mode: str, input_size: int, hidden_size: int, num_layers: int,
                 bias: bool, batch_first: bool, dropout: float, bidirectional: bool,
                 proj_size: int, *, recurrent_dropout: float, recurrent_dropout_mode: str,
                 weight_drop: float, zoneout: float, layer_norm: bool, forget_bias: float,
                 reset_after: bool, engine: str, device=None, dtype=None) -> None:
        super().__init__()
        name = type(self).__name__
        _check_arguments(name, input_size, hidden_size, num_layers, proj_size, engine,
                         recurrent_dropout_mode, forget_bias,
                         dict(dropout=dropout, recurrent_dropout=recurrent_dropout,
                              weight_drop=weight_drop, zoneout=zoneout))
        if dropout > 0 and num_layers == 1:
            warnings.warn(f"{name}: dropout={dropout} acts between layers and does nothing with "
                          "num_layers=1; use recurrent_dropout or zoneout to regularise one "
                          "layer.", UserWarning, stacklevel=3)
        self.mode, self.input_size, self.hidden_size = mode, input_size, hidden_size
        self.num_layers, self.bias, self.batch_first = num_layers, bias, batch_first
        self.dropout, self.bidirectional, self.proj_size = float(dropout), bidirectional, proj_size
        self.recurrent_dropout, self.weight_drop = float(recurrent_dropout), float(weight_drop)
        self.recurrent_dropout_mode, self.zoneout = recurrent_dropout_mode, float(zoneout)
        self.layer_norm, self.forget_bias, self.reset_after = layer_norm, forget_bias, reset_after
        self.engine = engine
        self.last_engine: str | None = None  # the engine that ran the last forward pass
        self._create_parameters(device, dtype)
        self.reset_parameters()

    @property
    def spec(self) -> RecurrentSpec:
        """The configuration as the engines read it."""
        return RecurrentSpec(
            self.mode, self.input_size, self.hidden_size, self.num_layers, self.bias,
            self.bidirectional, self.proj_size, self.dropout, self.recurrent_dropout,
            self.recurrent_dropout_mode, self.weight_drop, self.zoneout, self.layer_norm,
            self.reset_after)

    def _create_parameters(self, device, dtype) -> None:
        kw = dict(device=device, dtype=dtype)
        spec = self.spec
        G, H, R = spec.num_gates * self.hidden_size, self.hidden_size, spec.state_size
        names = []
        self._direction_names: list[tuple[str | None, ...]] = []
        for layer in range(self.num_layers):
            layer_input = self.input_size if layer == 0 else spec.num_directions * R
            for suffix in ("", "_reverse")[: spec.num_directions]:
                shapes = {f"weight_ih_l{layer}{suffix}": (G, layer_input),
                          f"weight_hh_l{layer}{suffix}": (G, R)}
                if self.bias:
                    shapes |= {f"bias_ih_l{layer}{suffix}": (G,), f"bias_hh_l{layer}{suffix}": (G,)}
                if self.proj_size > 0:
                    shapes[f"weight_hr_l{layer}{suffix}"] = (self.proj_size, H)
                if self.layer_norm:
                    shapes |= {f"layer_norm_ih_l{layer}{suffix}": (G,),
                               f"layer_norm_hh_l{layer}{suffix}": (G,)}
                    if self.mode == "lstm":
                        shapes |= {f"layer_norm_cell_weight_l{layer}{suffix}": (H,),
                                   f"layer_norm_cell_bias_l{layer}{suffix}": (H,)}
                for name, shape in shapes.items():
                    self.register_parameter(name, nn.Parameter(torch.empty(shape, **kw)))
                names += list(shapes)
                # DirectionParams' fields by name, looked up per call in self._parameters
                # (Module.__getattr__ costs about half a microsecond a name).
                fields = ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr",
                          "layer_norm_ih", "layer_norm_hh", "layer_norm_cell_weight",
                          "layer_norm_cell_bias")
                self._direction_names.append(tuple(
                    f"{f}_l{layer}{suffix}" if f"{f}_l{layer}{suffix}" in shapes else None
                    for f in fields))
        self._param_names = names

    def reset_parameters(self) -> None:
        """torch.nn's U(-1/√H, 1/√H); layer-norm gains 1 and biases 0; the forget bias."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        H = self.hidden_size
        with torch.no_grad():
            for name in self._param_names:
                weight = getattr(self, name)
                if name.startswith("layer_norm"):
                    weight.fill_(0.0 if name.startswith("layer_norm_cell_bias") else 1.0)
                else:
                    nn.init.uniform_(weight, -bound, bound)
                # Gate slice 1 is the LSTM's forget gate and the GRU's update gate z.
                if name.startswith("bias_ih"):
                    weight[H:2 * H] = self.forget_bias
                elif name.startswith("bias_hh"):
                    weight[H:2 * H] = 0.0

    def flatten_parameters(self) -> None:
        """Nothing to do: lstmkit hands its tensors to the kernel as they are (torch.nn API)."""

    @property
    def all_weights(self) -> list[list[Tensor]]:
        """The parameters of each layer-direction, in torch.nn's order (torch.nn API)."""
        per_direction = len(self._param_names) // (self.num_layers * self.spec.num_directions)
        tensors = [getattr(self, n) for n in self._param_names]
        return [tensors[k:k + per_direction] for k in range(0, len(tensors), per_direction)]

    def _direction_params(self) -> list[DirectionParams]:
        weights = self._parameters
        params = []
        for names in self._direction_names:
            # getattr for a name torch.nn.utils.parametrize (weight norm, ...) has taken over
            p = DirectionParams(*(None if n is None else weights[n] if n in weights
                                  else getattr(self, n) for n in names))
            if self.weight_drop > 0:
                p = p._replace(w_hh=regularizers.drop_weights(p.w_hh, self.weight_drop,
                                                              self.training))
            params.append(p)
        return params

    def _draw_masks(self, spec: RecurrentSpec, steps: int, batch_size: int, like: Tensor
                    ) -> list[DirectionMasks]:
        count = self.num_layers * spec.num_directions
        if self.zoneout == 0 and not (self.training and self.recurrent_dropout > 0):
            return [_NO_MASKS] * count
        masks = []
        for _ in range(count):
            recurrent = zone_h = zone_c = None
            if self.training and self.recurrent_dropout > 0:
                recurrent = regularizers.recurrent_dropout_mask(
                    self.recurrent_dropout, batch_size, spec.state_size,
                    self.recurrent_dropout_mode == "per_batch", like)
            if self.zoneout > 0:
                zone_h = regularizers.zoneout_mask(self.zoneout, steps, batch_size,
                                                   spec.state_size, self.training, like)
                if self.mode == "lstm":
                    zone_c = regularizers.zoneout_mask(self.zoneout, steps, batch_size,
                                                       self.hidden_size, self.training, like)
            masks.append(DirectionMasks(recurrent, zone_h, zone_c))
        return masks

    def _run(self, input, hx, lengths):
        """Validate, run the chosen engine, and shape the answer as torch.nn does."""
        name = type(self).__name__
        packed = isinstance(input, PackedSequence)
        if packed:
            if lengths is not None:
                raise ValueError(f"{name}: pass either a PackedSequence or lengths=, not both.")
            x, lengths = pad_packed_sequence(input)  # (T, B, F), lengths (B,) in input order
            x = self._check_features(x, "PackedSequence data")
            unbatched, packed_lengths = False, lengths
        else:
            x, unbatched = self._time_major(input)
        T, B, _ = x.shape
        lengths = _check_lengths(name, lengths, T, B)
        if lengths is not None:  # padding may hold NaN: zero it so no engine multiplies it
            valid = torch.arange(T).unsqueeze(1) < lengths.unsqueeze(0)  # (T, B)
            x = x.masked_fill(~valid.to(x.device).unsqueeze(2), 0.0)
        spec = self.spec
        hx = self._check_state(spec, hx, B, x, unbatched)
        params = self._direction_params()
        needs_grad = torch.is_grad_enabled() and (x.requires_grad or any(
            w is not None and w.requires_grad for p in params for w in p))
        engine = select_engine(spec, x.device, self.engine, needs_grad, self.training, B,
                               x.dtype)
        if engine != self.last_engine:
            log.debug("%s runs on engine %r", name, engine)
            self.__dict__["last_engine"] = engine  # plain attribute: skip Module.__setattr__
        masks = self._draw_masks(spec, T, B, x)
        run = get_engine(engine, requested=self.engine != "auto")
        result = run(x, lengths, hx, params, masks, spec, self.training)
        out, h_n, c_n = result
        if packed:
            order = input.sorted_indices
            sorted_out = out if order is None else out.index_select(1, order)
            sorted_lengths = packed_lengths if order is None else packed_lengths[order.cpu()]
            data = pack_padded_sequence(sorted_out, sorted_lengths).data  # (N, D*R)
            out = input._replace(data=data)
        elif unbatched:
            out, h_n = out.squeeze(1), h_n.squeeze(1)
            c_n = None if c_n is None else c_n.squeeze(1)
        elif self.batch_first:
            out = out.transpose(0, 1)  # (B, T, D*R)
        return out, h_n, c_n

    def _time_major(self, input: Tensor) -> tuple[Tensor, bool]:
        name = type(self).__name__
        if not isinstance(input, Tensor):
            raise TypeError(f"{name} expects a Tensor or a PackedSequence, got "
                            f"{type(input).__name__}.")
        layout = "(batch, time, features)" if self.batch_first else "(time, batch, features)"
        if input.dim() not in (2, 3):
            raise ValueError(
                f"{name} got input of rank {input.dim()} (shape {tuple(input.shape)}); expected "
                f"rank 3 {layout} with batch_first={self.batch_first}, or rank 2 "
                "(time, features) for one unbatched sequence.")
        input = self._check_features(input, layout)
        if input.dim() == 2:
            x, unbatched = input.unsqueeze(1), True  # (T, 1, F)
        else:
            x, unbatched = (input.transpose(0, 1) if self.batch_first else input), False
        if x.shape[0] == 0 or x.shape[1] == 0:
            raise ValueError(f"{name} got an empty input of shape {tuple(input.shape)}; every "
                             "batch needs at least one sequence and one time step.")
        return x, unbatched  # x: (T, B, F)

    def _check_features(self, input: Tensor, layout: str) -> Tensor:
        name = type(self).__name__
        if input.shape[-1] != self.input_size:
            raise ValueError(
                f"{name}(input_size={self.input_size}) got input with {input.shape[-1]} features "
                f"(shape {tuple(input.shape)}). Pass tensors shaped {layout} with "
                f"{self.input_size} features, or rebuild the layer with "
                f"input_size={input.shape[-1]}.")
        weight = self.weight_ih_l0
        if input.dtype != weight.dtype:
            raise TypeError(f"{name} has {weight.dtype} parameters but got a {input.dtype} input; "
                            f"cast one to the other (layer.to({input.dtype}) or input.to("
                            f"{weight.dtype})).")
        return input

    def _check_state(self, spec: RecurrentSpec, hx, batch_size: int, x: Tensor,
                     unbatched: bool):
        DL, R, H = spec.num_directions * self.num_layers, spec.state_size, self.hidden_size
        if hx is None:
            h0 = x.new_zeros(DL, batch_size, R)
            return h0, (x.new_zeros(DL, batch_size, H) if self.mode == "lstm" else None)
        name = type(self).__name__
        if self.mode == "lstm":
            if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                raise TypeError(f"{name} expects hx=(h_0, c_0), a tuple of two tensors; got "
                                f"{type(hx).__name__}.")
            states = [("h_0", hx[0], R), ("c_0", hx[1], H)]
        else:
            if not isinstance(hx, Tensor):
                raise TypeError(f"{name} expects hx=h_0, a tensor; got {type(hx).__name__}.")
            states = [("h_0", hx, R)]
        checked = []
        for label, state, size in states:
            expected = (DL, size) if unbatched else (DL, batch_size, size)
            if tuple(state.shape) != expected:
                raise ValueError(f"{name} expected {label} of shape {expected} "
                                 "(num_directions * num_layers, batch, size), got "
                                 f"{tuple(state.shape)}.")
            checked.append(state.unsqueeze(1) if unbatched else state)
        return checked[0], (checked[1] if self.mode == "lstm" else None)

    def _step(self, x_t: Tensor, state):
        name = type(self).__name__
        if self.bidirectional:
            raise ValueError(f"{name}.step() runs one time step forwards, but this layer is "
                             "bidirectional: its reverse direction needs the whole sequence. "
                             "Call the layer on the whole sequence instead.")
        if self.training and (self.recurrent_dropout > 0 or self.weight_drop > 0):
            raise ValueError(f"{name}.step() in training mode would draw a new "
                             "recurrent_dropout / weight_drop mask at every step; train with "
                             "forward() on whole sequences, or call .eval() to stream.")
        if not isinstance(x_t, Tensor) or x_t.dim() not in (1, 2):
            shape = tuple(x_t.shape) if isinstance(x_t, Tensor) else type(x_t).__name__
            raise ValueError(f"{name}.step() expects one time step shaped (batch, "
                             f"{self.input_size}) or ({self.input_size},); got {shape}.")
        unbatched = x_t.dim() == 1
        x = self._check_features(x_t.unsqueeze(0) if unbatched else x_t, "(batch, features)")
        spec = self.spec
        h0, c0 = self._check_state(spec, state, x.shape[0], x, unbatched)
        return self._step_cells(spec, x, h0, c0, unbatched)

    def _step_cells(self, spec: RecurrentSpec, x: Tensor, h0: Tensor, c0: Tensor | None,
                    unbatched: bool):
        """The streaming path: the cells of lstmkit.nn.cells called directly, layer by layer,
        without the sequence machinery (about 3x less overhead than a T = 1 forward pass).

        x (B, F); h0 (L, B, R); c0 (L, B, H) or None -> y (B, R), h_n, c_n.
        """
        self.__dict__["last_engine"] = "step"
        inp, hs, cs = x, [], []
        params = self._direction_params()
        masks = self._draw_masks(spec, 1, x.shape[0], x)  # in forward()'s order, T = 1
        compiled = stream.runs(x, (h0, c0), params, self.mode, self.proj_size, self.layer_norm)
        for layer, (p, m) in enumerate(zip(params, masks, strict=True)):
            norm = (None if not self.layer_norm else
                    LayerNormParams(p.ln_ih, p.ln_hh, p.ln_cell_weight, p.ln_cell_bias))
            h_prev = h0[layer]
            if self.mode == "lstm":
                if compiled:  # the same maths in one compiled call (engines/stream.py)
                    h, c = stream.lstm_step(inp, h_prev, c0[layer], p)
                else:
                    h, c = lstm_cell(inp, h_prev, c0[layer], p.w_ih, p.w_hh, p.b_ih, p.b_hh,
                                     p.w_hr, norm)
                if m.zoneout_c is not None:  # zoneout: keep the old value (draw or expectation)
                    c = c + m.zoneout_c[0] * (c0[layer] - c)
                cs.append(c)
            else:
                h = gru_cell(inp, h_prev, p.w_ih, p.w_hh, p.b_ih, p.b_hh, norm,
                             reset_after=self.reset_after)
            if m.zoneout_h is not None:
                h = h + m.zoneout_h[0] * (h_prev - h)
            hs.append(h)
            inp = h
            if self.training and self.dropout > 0 and layer < self.num_layers - 1:
                inp = torch.nn.functional.dropout(inp, self.dropout, training=True)
        h_n = torch.stack(hs)  # (L, B, R), its own memory: y_t may be changed in place
        c_n = torch.stack(cs) if cs else None
        if unbatched:
            return hs[-1].squeeze(0), h_n.squeeze(1), None if c_n is None else c_n.squeeze(1)
        return hs[-1], h_n, c_n

    def extra_repr(self) -> str:
        text = f"{self.input_size}, {self.hidden_size}"
        defaults = dict(num_layers=1, bias=True, batch_first=False, dropout=0.0,
                        bidirectional=False, proj_size=0, recurrent_dropout=0.0,
                        recurrent_dropout_mode="per_sequence", weight_drop=0.0, zoneout=0.0,
                        layer_norm=False, forget_bias=1.0, reset_after=True, engine="auto")
        for key, default in defaults.items():
            value = getattr(self, key)
            if value != default and not (key == "proj_size" and self.mode == "gru"):
                text += f", {key}={value!r}"
        return text


class LSTM(_RecurrentLayer):
    """A multi-layer LSTM, a drop-in for ``torch.nn.LSTM`` with regularisers and engines.

    For each element of the input sequence, each layer computes (gate order i, f, g, o)::

        i_t = σ(W_ii x_t + b_ii + W_hi h_{t-1} + b_hi)
        f_t = σ(W_if x_t + b_if + W_hf h_{t-1} + b_hf)
        g_t = tanh(W_ig x_t + b_ig + W_hg h_{t-1} + b_hg)
        o_t = σ(W_io x_t + b_io + W_ho h_{t-1} + b_ho)
        c_t = f_t ⊙ c_{t-1} + i_t ⊙ g_t
        h_t = o_t ⊙ tanh(c_t)            (h_t = W_hr h_t when proj_size > 0)
    {args}
        proj_size: P > 0 projects h_t to P units (Sak et al. 2014), as torch.nn. Default 0.

    Inputs: ``input, hx=None, *, lengths=None``
        input: (T, B, F), or (B, T, F) with batch_first, or (T, F) unbatched, or a
            PackedSequence.
        hx: ``(h_0, c_0)``, h_0 (D*L, B, R) and c_0 (D*L, B, H), R = P or H; zeros if None.
        lengths: (B,) valid steps per row of a padded input, 1 <= length <= T.

    Returns: ``output, (h_n, c_n)``: output (T, B, D*R) (batch_first: (B, T, D*R); a
        PackedSequence for a packed input), zero at padded steps; h_n (D*L, B, R) and
        c_n (D*L, B, H), each row's state at its last valid step (for the reverse
        direction, after reading back to the first step).

    Parameters (the names and shapes of torch.nn.LSTM): ``weight_ih_l{k}`` (4H, F or D*R),
    ``weight_hh_l{k}`` (4H, R), ``bias_ih_l{k}``, ``bias_hh_l{k}`` (4H,),
    ``weight_hr_l{k}`` (P, H); ``_reverse`` for the second direction; with layer_norm also
    ``layer_norm_ih_l{k}``, ``layer_norm_hh_l{k}`` (4H,), ``layer_norm_cell_weight_l{k}``,
    ``layer_norm_cell_bias_l{k}`` (H,).

    Example:
        >>> lstm = LSTM(10, 20, num_layers=2, batch_first=True)
        >>> output, (h_n, c_n) = lstm(torch.randn(3, 5, 10))
        >>> tuple(output.shape), tuple(h_n.shape), lstm.last_engine
        ((3, 5, 20), (2, 3, 20), 'fused')
        >>> y_t, state = lstm.step(torch.randn(3, 10))      # one step of a stream
        >>> tuple(y_t.shape)
        (3, 20)
    """

    __doc__ = __doc__.replace("    {args}\n", _SHARED_ARGS_DOC)

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, proj_size: int = 0, *,
                 recurrent_dropout: float = 0.0, recurrent_dropout_mode: str = "per_sequence",
                 weight_drop: float = 0.0, zoneout: float = 0.0, layer_norm: bool = False,
                 forget_bias: float = 1.0, engine: str = "auto", device=None,
                 dtype=None) -> None:
        super().__init__("lstm", input_size, hidden_size, num_layers, bias, batch_first,
                         dropout, bidirectional, proj_size, recurrent_dropout=recurrent_dropout,
                         recurrent_dropout_mode=recurrent_dropout_mode, weight_drop=weight_drop,
                         zoneout=zoneout, layer_norm=layer_norm, forget_bias=forget_bias,
                         reset_after=True, engine=engine, device=device, dtype=dtype)

    def forward(self, input, hx: tuple[Tensor, Tensor] | None = None, *,
                lengths: Tensor | Sequence[int] | None = None):
        out, h_n, c_n = self._run(input, hx, lengths)
        return out, (h_n, c_n)

    def step(self, x_t: Tensor, state: tuple[Tensor, Tensor] | None = None):
        """One time step: x_t (B, F) or (F,) -> (y_t (B, R) or (R,), (h, c)) as ``hx``."""
        y, h, c = self._step(x_t, state)
        return y, (h, c)


class GRU(_RecurrentLayer):
    """A multi-layer GRU, a drop-in for ``torch.nn.GRU`` with regularisers and engines.

    For each element of the input sequence, each layer computes (gate order r, z, n)::

        r_t = σ(W_ir x_t + b_ir + W_hr h_{t-1} + b_hr)
        z_t = σ(W_iz x_t + b_iz + W_hz h_{t-1} + b_hz)
        n_t = tanh(W_in x_t + b_in + r_t ⊙ (W_hn h_{t-1} + b_hn))
        h_t = (1 - z_t) ⊙ n_t + z_t ⊙ h_{t-1}

    With ``reset_after=False`` (Keras' option, the form of Cho et al. 2014):
    n_t = tanh(W_in x_t + b_in + W_hn (r_t ⊙ h_{t-1}) + b_hn).
    {args}
        reset_after: apply the reset gate after the recurrent matmul (torch, cuDNN). Keyword-
            only. Default True.

    Inputs: ``input, hx=None, *, lengths=None`` as :class:`LSTM`, with hx = h_0 (D*L, B, H).
    Returns: ``output, h_n``: output (T, B, D*H) as :class:`LSTM`'s; h_n (D*L, B, H).

    Parameters: as torch.nn.GRU, with 3H rows in r, z, n order; with layer_norm also
    ``layer_norm_ih_l{k}`` and ``layer_norm_hh_l{k}`` (3H,).

    Example:
        >>> gru = GRU(4, 8, bidirectional=True)
        >>> output, h_n = gru(torch.randn(6, 2, 4), lengths=torch.tensor([6, 3]))
        >>> tuple(output.shape), tuple(h_n.shape)
        ((6, 2, 16), (2, 2, 8))
    """

    __doc__ = __doc__.replace("    {args}\n", _SHARED_ARGS_DOC)

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, *, recurrent_dropout: float = 0.0,
                 recurrent_dropout_mode: str = "per_sequence", weight_drop: float = 0.0,
                 zoneout: float = 0.0, layer_norm: bool = False, forget_bias: float = 1.0,
                 reset_after: bool = True, engine: str = "auto", device=None,
                 dtype=None) -> None:
        super().__init__("gru", input_size, hidden_size, num_layers, bias, batch_first,
                         dropout, bidirectional, 0, recurrent_dropout=recurrent_dropout,
                         recurrent_dropout_mode=recurrent_dropout_mode, weight_drop=weight_drop,
                         zoneout=zoneout, layer_norm=layer_norm, forget_bias=forget_bias,
                         reset_after=reset_after, engine=engine, device=device, dtype=dtype)

    def forward(self, input, hx: Tensor | None = None, *,
                lengths: Tensor | Sequence[int] | None = None):
        out, h_n, _ = self._run(input, hx, lengths)
        return out, h_n

    def step(self, x_t: Tensor, state: Tensor | None = None):
        """One time step: x_t (B, F) or (F,) -> (y_t (B, H) or (H,), h) as ``hx``."""
        y, h, _ = self._step(x_t, state)
        return y, h


def _check_arguments(name, input_size, hidden_size, num_layers, proj_size, engine,
                     recurrent_dropout_mode, forget_bias, probabilities) -> None:
    for arg, value in (("input_size", input_size), ("hidden_size", hidden_size),
                       ("num_layers", num_layers)):
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ValueError(f"{name}({arg}={value!r}): {arg} must be a positive integer.")
    if not isinstance(proj_size, int) or not 0 <= proj_size < hidden_size:
        raise ValueError(f"{name}(proj_size={proj_size!r}): proj_size must be an integer in "
                         f"[0, hidden_size={hidden_size}).")
    for arg, value in probabilities.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not 0 <= value < 1:
            raise ValueError(f"{name}({arg}={value!r}): {arg} must be a probability in [0, 1).")
    if engine not in ENGINE_NAMES:
        raise ValueError(f"{name}(engine={engine!r}): unknown engine; choose one of "
                         f"{', '.join(map(repr, ENGINE_NAMES))}.")
    if recurrent_dropout_mode not in ("per_sequence", "per_batch"):
        raise ValueError(f"{name}(recurrent_dropout_mode={recurrent_dropout_mode!r}): choose "
                         "'per_sequence' or 'per_batch'.")
    if not math.isfinite(forget_bias):
        raise ValueError(f"{name}(forget_bias={forget_bias!r}): must be a finite number.")


def _check_lengths(name: str, lengths, steps: int, batch_size: int) -> Tensor | None:
    """lengths as an int64 CPU tensor (B,), or None when every row has all T steps."""
    if lengths is None:
        return None
    if not isinstance(lengths, Tensor):
        lengths = torch.as_tensor(lengths)
    if lengths.dtype.is_floating_point or lengths.dtype == torch.bool or lengths.dim() != 1:
        raise ValueError(f"{name}: lengths must be a 1-D integer tensor (batch,); got "
                         f"{lengths.dtype} of shape {tuple(lengths.shape)}.")
    if lengths.shape[0] != batch_size:
        raise ValueError(f"{name}: lengths has {lengths.shape[0]} entries but the batch has "
                         f"{batch_size} rows; give one length per row.")
    lengths = lengths.to("cpu", torch.int64)
    bad = ((lengths < 1) | (lengths > steps)).nonzero().flatten()
    if len(bad):
        row = int(bad[0])
        raise ValueError(f"{name}: lengths must lie in [1, T={steps}]; row {row} has length "
                         f"{int(lengths[row])} ({len(bad)} bad row(s)).")
    return None if bool((lengths == steps).all()) else lengths
