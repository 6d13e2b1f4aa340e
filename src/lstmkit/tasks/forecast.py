"""Time-series forecasting: a recurrent encoder and a dense head, with honest baselines.

In order (STYLE.md R10): the config, the module, the baselines, and :class:`Forecaster`
(fit / predict / evaluate / backtest / save / load). Data becomes tensors through
:mod:`lstmkit.data`; the loop is :class:`lstmkit.train.Trainer`.

The default recipe was chosen on validation folds before 2015 (README, "Forecasting"): a
one-layer GRU of 64 units over the past 7 days of standardised readings, the one-hot weather
label and day-of-year sin/cos; Huber loss on the standardised target; Adam with L2 1e-3;
early stopping on the validation MAE, then a refit on training + validation for the epochs
found; 3 seeds averaged.

The file runs past STYLE.md's ~600 lines because the application reads top to bottom in one
place (R10): the baselines and the backtest belong beside the model they are measured with.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import check_settings
from ..data.batch import SequenceBatch, WindowDataset
from ..data.features import CALENDAR_FEATURES, SeriesFeatures
from ..data.series import FILL_POLICIES, Series, SeriesColumns, load_series
from ..data.tables import read_table
from ..data.windows import Windows, make_windows
from ..errors import DataError
from ..nn import GRU, LSTM
from ..train import Trainer, TrainSettings, seed_everything
from ..train.metrics import forecast_metrics, mase_scale
from .base import Task

__all__ = ["ForecastConfig", "ForecastNet", "Forecaster"]

LOSSES = ("huber", "mse", "mae", "quantile")
MIN_TRAIN_WINDOWS = 10  # fewer cannot fit even the linear baseline honestly


def _help(text: str) -> dict:
    return {"help": text}


@dataclass(frozen=True)
class ForecastConfig:
    """Hyperparameters of a forecaster; saved as config.json and mapped to CLI flags."""

    lookback: int = field(default=7, metadata=_help("time steps of history per window"))
    horizon: int = field(default=1, metadata=_help(
        "steps ahead to forecast (direct, multi-output)"))
    cell: str = field(default="gru", metadata=_help("recurrent cell: lstm or gru"))
    hidden_size: int = field(default=64, metadata=_help("units of the recurrent layer(s)"))
    num_layers: int = field(default=1, metadata=_help("stacked recurrent layers"))
    dropout: float = field(default=0.0, metadata=_help(
        "dropout between layers and before the head"))
    recurrent_dropout: float = field(default=0.0, metadata=_help("variational dropout of h_{t-1}"))
    bidirectional: bool = field(default=False, metadata=_help("read windows both ways"))
    loss: str = field(default="huber", metadata=_help("huber, mse, mae or quantile (pinball)"))
    quantiles: tuple[float, ...] = field(default=(0.1, 0.5, 0.9), metadata=_help(
        "quantiles for loss=quantile; must include 0.5, the point forecast"))
    optimizer: str = field(default="adam", metadata=_help("adam, adamw or sgd"))
    learning_rate: float = field(default=1e-3, metadata=_help("optimiser step size"))
    weight_decay: float = field(default=1e-3, metadata=_help("L2 penalty (decoupled for adamw)"))
    batch_size: int = field(default=32, metadata=_help("windows per batch"))
    max_epochs: int = field(default=300, metadata=_help("upper bound on epochs"))
    patience: int = field(default=20, metadata=_help("early-stopping patience in epochs"))
    grad_clip: float = field(default=1.0, metadata=_help("max gradient norm; 0 for none"))
    lr_schedule: str = field(default="none", metadata=_help("none, plateau or cosine"))
    validation_fraction: float = field(default=0.2, metadata=_help(
        "share of the training period, at its end, held out for early stopping"))
    refit: bool = field(default=True, metadata=_help(
        "after early stopping, retrain on training + validation for the epochs found"))
    ensemble_size: int = field(default=3, metadata=_help("models (seeds) averaged"))
    season: int = field(default=0, metadata=_help(
        "season length of the seasonal-naive baseline; 0 infers it from the frequency"))
    calendar: tuple[str, ...] = field(default=("day_of_year",), metadata=_help(
        f"calendar features as sin/cos: {', '.join(CALENDAR_FEATURES)}"))
    seed: int = field(default=0, metadata=_help("random seed (member k uses seed + k)"))

    def __post_init__(self) -> None:
        check_settings(self, ("lookback", "horizon", "hidden_size", "num_layers", "batch_size",
                              "max_epochs", "ensemble_size"),
                       {"cell": ("lstm", "gru"), "loss": LOSSES,
                        "optimizer": ("adam", "adamw", "sgd"),
                        "lr_schedule": ("none", "plateau", "cosine")},
                       ("dropout", "recurrent_dropout"))
        if not 0 < self.validation_fraction < 1:
            raise ValueError(f"validation_fraction={self.validation_fraction} must be in (0, 1).")
        if self.loss == "quantile" and (0.5 not in self.quantiles or
                                        any(not 0 < q < 1 for q in self.quantiles)):
            raise ValueError(f"quantiles={self.quantiles}: each must be in (0, 1) and 0.5 must "
                             "be one of them (the point forecast).")
        if self.season < 0:
            raise ValueError(f"season={self.season} must be >= 0 (0 infers it).")
        if self.learning_rate <= 0 or self.weight_decay < 0 or self.patience < 1:
            raise ValueError("learning_rate must be > 0, weight_decay >= 0 and patience >= 1.")

    @property
    def output_quantiles(self) -> tuple[float, ...]:
        return tuple(sorted(self.quantiles)) if self.loss == "quantile" else (0.5,)


class ForecastNet(nn.Module):
    """Recurrent encoder + dense head: windows (B, L, F) -> forecasts (B, horizon, Q)."""

    def __init__(self, config: ForecastConfig, num_features: int) -> None:
        super().__init__()
        cls = LSTM if config.cell == "lstm" else GRU
        self.encoder = cls(num_features, config.hidden_size, config.num_layers, batch_first=True,
                           dropout=config.dropout if config.num_layers > 1 else 0.0,
                           bidirectional=config.bidirectional,
                           recurrent_dropout=config.recurrent_dropout)
        self.dropout = nn.Dropout(config.dropout)
        D = 2 if config.bidirectional else 1
        self.num_quantiles = len(config.output_quantiles)
        self.horizon = config.horizon
        self.head = nn.Linear(D * config.hidden_size, config.horizon * self.num_quantiles)

    def forward(self, inputs: Tensor) -> Tensor:
        _, state = self.encoder(inputs)
        h_n = state[0] if isinstance(state, tuple) else state  # (D*L, B, H)
        D = 2 if self.encoder.bidirectional else 1
        last = torch.cat(list(h_n[-D:]), dim=1)  # (B, D*H): the top layer's final states
        out = self.head(self.dropout(last))  # (B, horizon * Q)
        return out.view(-1, self.horizon, self.num_quantiles)  # (B, horizon, Q)


class Ensemble(nn.Module):
    """Members averaged: (B, L, F) -> (B, horizon, Q)."""

    def __init__(self, members: list[nn.Module]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, inputs: Tensor) -> Tensor:
        return torch.stack([m(inputs) for m in self.members]).mean(dim=0)


def _loss(config: ForecastConfig, prediction: Tensor, target: Tensor) -> Tensor:
    """prediction (B, h, Q), target (B, h), both scaled."""
    if config.loss == "quantile":
        q = torch.tensor(config.output_quantiles, dtype=prediction.dtype)  # (Q,)
        error = target.unsqueeze(2) - prediction  # (B, h, Q)
        return torch.maximum(q * error, (q - 1) * error).mean()  # pinball loss
    point = prediction[..., 0]
    if config.loss == "huber":
        return F.huber_loss(point, target, delta=1.0)
    return F.mse_loss(point, target) if config.loss == "mse" else F.l1_loss(point, target)


# ---- baselines: forecasts in data units for windows, from the raw series -------------------


def _baselines(windows: Windows, raw: list[np.ndarray], season: int, lookback: int,
               linear: np.ndarray) -> dict[str, np.ndarray]:
    """Persistence, seasonal naive, moving average and the given linear forecasts: (S, h)."""
    S, h = windows.targets.shape
    steps = np.arange(1, h + 1)  # (h,)
    persistence = np.empty((S, h))
    seasonal = np.full((S, h), np.nan)
    moving = np.empty((S, h))
    for i, (origin, k) in enumerate(zip(windows.origins, windows.series, strict=True)):
        y = raw[k]
        persistence[i] = y[origin]
        moving[i] = y[origin - lookback + 1: origin + 1].mean()
        back = origin + steps - season * np.ceil(steps / season).astype(int)  # same phase
        ok = back >= 0
        seasonal[i, ok] = y[back[ok]]
    return {"persistence": persistence, "seasonal_naive": seasonal, "moving_average": moving,
            "linear": linear}


def _default_season(freq: str) -> int:
    """Steps per natural cycle: a week of days, a day of hours, a year of months..."""
    offset = pd.tseries.frequencies.to_offset(freq)
    if getattr(offset, "n", 1) != 1:
        return 1
    base = offset.rule_code.split("-")[0].upper()
    return {"D": 7, "B": 5, "H": 24, "h": 24, "W": 52, "M": 12, "MS": 12, "ME": 12, "Q": 4,
            "QS": 4, "QE": 4, "MIN": 60, "T": 60, "Y": 1, "YS": 1, "YE": 1}.get(base, 1)


@dataclass
class _Prepared:
    """Windows of every series with the raw targets and times they came from."""

    windows: Windows
    raw: list[np.ndarray]  # per series, (N,) target in data units
    times: list[pd.DatetimeIndex]
    keys: list[str]

    def first_target_time(self) -> np.ndarray:
        return np.array([self.times[k][o + 1] if o + 1 < len(self.times[k]) else pd.NaT
                         for o, k in zip(self.windows.origins, self.windows.series, strict=True)],
                        dtype="datetime64[ns]")

    def last_target_time(self, horizon: int) -> np.ndarray:
        return np.array([self.times[k][o + horizon] if o + horizon < len(self.times[k])
                         else pd.NaT for o, k in zip(self.windows.origins, self.windows.series,
                                                     strict=True)], dtype="datetime64[ns]")

    def subset(self, mask: np.ndarray) -> Windows:
        w = self.windows
        return Windows(w.inputs[mask], w.targets[mask], w.origins[mask], w.series[mask])


class Forecaster(Task):
    """Forecasts a target from its own past and past covariates, for one series or many.

    Args:
        config: a :class:`ForecastConfig`, or None for the defaults; keyword overrides
            (``Forecaster(horizon=3, cell="lstm")``) replace single fields.

    Example:
        >>> from lstmkit.data.datasets import seattle_weather
        >>> df = seattle_weather()
        >>> model = Forecaster(max_epochs=2, ensemble_size=1, refit=False)
        >>> _ = model.fit(df, target="temp_max", time="date", test_start="2015-01-01")
        >>> sorted(model.evaluate(df, test_start="2015-01-01")["test"])
        ['linear', 'model', 'moving_average', 'persistence', 'seasonal_naive']
        >>> model.predict(df).columns.tolist()
        ['date', 'forecast']
    """

    config_class = ForecastConfig
    task_name = "forecast"

    def __init__(self, config: ForecastConfig | None = None, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        self.columns: SeriesColumns | None = None
        self.features: SeriesFeatures | None = None
        self.freq: str | None = None
        self.fill_na: str | None = None
        self.history: list[dict] = []  # the training log, one row per epoch
        self.fit_info: dict = {}
        self.interrupted = False

    @staticmethod
    def default_test_start(data: Any, time: str) -> pd.Timestamp:
        """The time at 80% of the data's span: by default the last 20% is the test part."""
        table, label = read_table(data)
        if time not in table.columns:
            raise DataError(f"{label}: no time column {time!r}; the columns are "
                            f"{', '.join(map(repr, map(str, table.columns)))}.")
        times = pd.to_datetime(table[time], errors="coerce").dropna().values
        if len(np.unique(times)) < 5:
            raise DataError(f"{label}: column {time!r} has {len(np.unique(times))} distinct "
                            "times; too few for a training and a test part.")
        return _test_start_of(times)

    # ---- fit --------------------------------------------------------------------------------

    def fit(self, data: Any, *, target: str, time: str, covariates: tuple[str, ...] = (),
            series_id: str | None = None, static: tuple[str, ...] = (),
            fill_na: str | None = None, test_start: Any = None, quiet: bool = True
            ) -> Forecaster:
        """Train on ``data`` (a CSV/Parquet path or DataFrame), on targets before ``test_start``.

        The last ``validation_fraction`` of that period is held out for early stopping; the
        scaling is fitted on the rest only. Ctrl-C keeps the members trained so far (and the
        best weights of the one in training) and sets ``interrupted``.
        """
        table, label = read_table(data)
        columns = SeriesColumns(time, target, tuple(covariates), series_id, tuple(static))
        self.columns = dataclasses.replace(
            columns, numeric=tuple(columns.numeric_covariates(table)))
        series, self.freq = load_series(table, label, self.columns, fill_na)
        self.fill_na = fill_na
        cut = _timestamp(test_start, "test_start")
        if cut is not None:
            _check_test_part(series, cut, None, self.config.horizon, label)
        val_start = self._validation_start(series, cut, label)
        self.features = SeriesFeatures(self.columns, self.config.calendar).fit(
            series, val_start, label)
        prepared = self._prepare(series, label)
        first = prepared.first_target_time()
        last = prepared.last_target_time(self.config.horizon)
        usable = ~np.isnat(last)  # windows whose targets all lie inside the data
        if cut is not None:
            usable &= last < np.datetime64(cut)
        train = usable & (last < np.datetime64(val_start))
        val = usable & (first >= np.datetime64(val_start))
        if train.sum() < MIN_TRAIN_WINDOWS or val.sum() < 1:
            raise DataError(f"{label}: {int(train.sum())} training and {int(val.sum())} "
                            f"validation windows of lookback {self.config.lookback} + horizon "
                            f"{self.config.horizon}; the series is too short for them and a "
                            "test part. Give more data or a smaller lookback/horizon.")
        self.history, members, best = [], [], []
        for k in range(self.config.ensemble_size):
            member, best_epoch, interrupted = self._train_member(k, prepared, train, val, quiet)
            members.append(member)
            best.append(best_epoch)
            if interrupted:
                self.interrupted = True
                break
        self.model = Ensemble(members).eval()
        last_target = max(t for t, ok in zip(last, usable, strict=True) if ok)
        self.fit_info = {"validation_start": str(val_start), "training_end": str(cut),
                         "last_training_target": str(pd.Timestamp(last_target)),
                         "train_windows": int(train.sum()), "validation_windows": int(val.sum()),
                         "best_epochs": best, "interrupted": self.interrupted}
        return self

    def _validation_start(self, series: list[Series], cut, label: str) -> pd.Timestamp:
        times = np.unique(np.concatenate([s.times.values for s in series]))
        if cut is not None:
            times = times[times < np.datetime64(cut)]
        times = times[self.config.lookback:]  # the first window's target comes after lookback
        if len(times) < 4:
            raise DataError(f"{label}: only {len(times)} time steps with a full lookback before "
                            f"{cut or 'the end'}; too few to train and validate.")
        position = int(len(times) * (1 - self.config.validation_fraction))
        return pd.Timestamp(times[min(position, len(times) - 1)])

    def _train_member(self, k, prepared, train, val, quiet) -> tuple[nn.Module, int, bool]:
        c = self.config
        seed = c.seed + k
        settings = TrainSettings(c.optimizer, c.learning_rate, c.weight_decay, c.batch_size,
                                 c.max_epochs, c.patience, c.grad_clip, c.lr_schedule, seed,
                                 quiet)
        w = prepared.windows
        inputs, targets = torch.from_numpy(w.inputs), torch.from_numpy(w.targets.astype("f4"))
        val_x, val_y = inputs[val], targets[val]
        median = c.output_quantiles.index(0.5)

        def loss_fn(model: nn.Module, batch: SequenceBatch) -> Tensor:
            return _loss(c, model(batch.inputs), batch.targets)

        def score_fn(model: nn.Module) -> float:  # validation MAE, scaled units
            return float((model(val_x)[..., median] - val_y).abs().mean())

        trainer = Trainer(settings, description=f"model {k + 1}/{c.ensemble_size}")
        seed_everything(seed)
        net = ForecastNet(c, w.inputs.shape[2])
        result = trainer.fit(net, WindowDataset(inputs[train], targets[train]), loss_fn, score_fn)
        self._log(k, "fit", result)
        if c.refit and not result.interrupted:
            seed_everything(seed)
            refitted = ForecastNet(c, w.inputs.shape[2])
            both = train | val
            again = trainer.fit(refitted, WindowDataset(inputs[both], targets[both]), loss_fn,
                                epochs=result.best_epoch + 1)
            self._log(k, "refit", again)
            if again.interrupted:  # a half-done refit is worse than the early-stopped model
                return net.eval(), result.best_epoch, True
            return refitted.eval(), result.best_epoch, False
        return net.eval(), result.best_epoch, result.interrupted

    def _log(self, member: int, phase: str, result) -> None:
        for r in result.history:
            self.history.append({"member": member, "phase": phase, "epoch": r.epoch,
                                 "train_loss": r.train_loss, "val_score": r.val_score,
                                 "learning_rate": r.learning_rate, "seconds": r.seconds})

    # ---- windows and forecasts ---------------------------------------------------------------

    def _prepare(self, series: list[Series], label: str, include_open: bool = False
                 ) -> _Prepared:
        c = self.config
        parts, raw, times, keys = [], [], [], []
        for k, one in enumerate(series):
            need = c.lookback + (0 if include_open else c.horizon)
            if len(one.times) < need:
                name = f"series {one.key!r}" if one.key else "the series"
                raise DataError(f"{label}: {name} has {len(one.times)} time steps; lookback "
                                f"{c.lookback}{'' if include_open else f' + horizon {c.horizon}'}"
                                f" needs at least {need}.")
            features, scaled = self.features.transform(one, label)
            parts.append(make_windows(features, scaled, c.lookback, c.horizon, k, include_open))
            raw.append(one.target)
            times.append(one.times)
            keys.append(one.key)
        windows = Windows(*(np.concatenate([getattr(p, f.name) for p in parts])
                            for f in dataclasses.fields(Windows)))
        return _Prepared(windows, raw, times, keys)

    def _forecast(self, prepared: _Prepared, windows: Windows) -> np.ndarray:
        """Forecasts in data units: (S, horizon, Q)."""
        self._require_fitted()
        with torch.no_grad():
            scaled = self.model.eval()(torch.from_numpy(windows.inputs)).numpy()  # (S, h, Q)
        scaled = np.sort(scaled, axis=2)  # quantiles in order: q0.1 <= q0.5 <= q0.9
        out = np.empty_like(scaled, dtype=np.float64)
        for k, key in enumerate(prepared.keys):
            rows = windows.series == k
            out[rows] = self.features.inverse_target(scaled[rows], key)
        return out

    def _load(self, data: Any) -> tuple[list[Series], str]:
        self._require_fitted()
        table, label = read_table(data)
        series, freq = load_series(table, label, self.columns, self.fill_na)
        if freq != self.freq:
            raise DataError(f"{label}: the data's frequency is {freq}; the model was trained "
                            f"on {self.freq}.")
        return series, label

    # ---- predict ------------------------------------------------------------------------------

    def predict(self, data: Any) -> pd.DataFrame:
        """The forecast for the ``horizon`` steps after each series' last time.

        Returns a DataFrame: [series id,] time, forecast, and one column per other quantile
        (``q0.1``, ``q0.9``) when trained with loss="quantile".
        """
        series, label = self._load(data)
        prepared = self._prepare(series, label, include_open=True)
        w = prepared.windows
        last = np.flatnonzero(np.r_[w.series[1:] != w.series[:-1], True])  # each series' last
        windows = prepared.subset(np.isin(np.arange(len(w.origins)), last))
        forecast = self._forecast(prepared, windows)  # (n_series, h, Q)
        quantiles = self.config.output_quantiles
        rows = []
        for i, k in enumerate(windows.series):
            future = pd.date_range(prepared.times[k][-1], periods=self.config.horizon + 1,
                                   freq=self.freq)[1:]
            for step, when in enumerate(future):
                row = {} if not self.columns.series_id else {self.columns.series_id:
                                                             prepared.keys[k]}
                row[self.columns.time] = when
                row["forecast"] = forecast[i, step, quantiles.index(0.5)]
                row |= {f"q{q:g}": forecast[i, step, j] for j, q in enumerate(quantiles)
                        if q != 0.5}
                rows.append(row)
        return pd.DataFrame(rows)

    # ---- evaluate -----------------------------------------------------------------------------

    def evaluate(self, data: Any, test_start: Any = None, test_end: Any = None) -> dict:
        """Model and baselines on the windows whose targets lie in [test_start, test_end).

        ``test_start`` defaults to the time at 80% of the data's span. Returns
        ``{"test": {"model": {...}, "persistence": {...}, "seasonal_naive": {...},
        "moving_average": {...}, "linear": {...}}}`` with mae, rmse, mape, smape, mase and
        count per method; with horizon > 1 also ``"test_mae_by_step"``.
        """
        return self._evaluation(data, test_start, test_end)[0]

    def _evaluation(self, data: Any, test_start: Any, test_end: Any
                    ) -> tuple[dict, pd.DataFrame]:
        c = self.config
        series, label = self._load(data)
        prepared = self._prepare(series, label)
        start = _timestamp(test_start, "test_start") or _test_start_of(
            np.concatenate([s.times.values for s in series]))
        end = _timestamp(test_end, "test_end")
        trained_until = self.fit_info.get("last_training_target")
        if trained_until and start <= pd.Timestamp(trained_until):
            warnings.warn(f"{label}: the test part starts at {start}, but the model was trained "
                          f"on targets up to {trained_until}: its figures include training "
                          "data.", UserWarning, stacklevel=3)
        first = prepared.first_target_time()
        last = prepared.last_target_time(c.horizon)
        known = ~np.isnat(last)
        test = known & (first >= np.datetime64(start))
        if end is not None:
            test &= last < np.datetime64(end)
        if not test.any():
            raise DataError(f"{label}: no window has all {c.horizon} target(s) in the test part "
                            f"from {start}{f' to {end}' if end else ''}; move test_start earlier "
                            "or give more data.")
        windows = prepared.subset(test)
        actual = np.stack([prepared.raw[k][o + 1: o + 1 + c.horizon]
                           for o, k in zip(windows.origins, windows.series, strict=True)])
        forecast = self._forecast(prepared, windows)  # (S, h, Q)
        point = forecast[..., c.output_quantiles.index(0.5)]
        linear = _linear_baseline(prepared, known & (last < np.datetime64(start)), windows,
                                  self.features)
        season = c.season or _default_season(self.freq)
        methods = {"model": point, **_baselines(windows, prepared.raw, season, c.lookback,
                                                linear)}
        scale = mase_scale([r[t < start] for r, t in zip(prepared.raw, prepared.times,
                                                          strict=True)])
        metrics = {"test": {name: _score(actual, values, scale)
                            for name, values in methods.items()}}
        if len(c.output_quantiles) > 1:
            low, high = forecast[..., 0], forecast[..., -1]
            metrics["test"]["model"]["interval_coverage"] = float(
                np.mean((actual >= low) & (actual <= high)))
        if c.horizon > 1:
            metrics["test_mae_by_step"] = {
                name: [_score(actual[:, s], values[:, s], scale)["mae"] for s in range(c.horizon)]
                for name, values in methods.items()}
        return metrics, self._prediction_frame(prepared, windows, actual, forecast, methods)

    def _prediction_frame(self, prepared, windows, actual, forecast, methods) -> pd.DataFrame:
        """One row per test window and step: time, actual, model and baseline forecasts."""
        rows = []
        quantiles = self.config.output_quantiles
        for i, (origin, k) in enumerate(zip(windows.origins, windows.series, strict=True)):
            for step in range(self.config.horizon):
                row = {"series": prepared.keys[k], "step": step + 1,
                       "time": prepared.times[k][origin + 1 + step], "actual": actual[i, step]}
                row |= {name: values[i, step] for name, values in methods.items()}
                row |= {f"q{q:g}": forecast[i, step, j] for j, q in enumerate(quantiles)
                        if q != 0.5}
                rows.append(row)
        return pd.DataFrame(rows)

    # ---- backtest -----------------------------------------------------------------------------

    def backtest(self, data: Any, cutoffs: list[Any], *, target: str, time: str,
                 covariates: tuple[str, ...] = (), series_id: str | None = None,
                 static: tuple[str, ...] = (), fill_na: str | None = None,
                 quiet: bool = True) -> dict:
        """Rolling-origin evaluation: for each cut-off, a fresh model of this config is trained
        on the targets before it and tested up to the next cut-off (the last to the end).

        Returns ``{"folds": [{"cutoff", "test_end", "test": {...}}, ...], "mean": {...}}``.
        """
        stamps = [_timestamp(c, "cutoff") for c in cutoffs]
        if not stamps or stamps != sorted(stamps) or len(set(stamps)) != len(stamps):
            raise DataError(f"cutoffs {[str(s) for s in stamps]} must be distinct and in order.")
        table, label = read_table(data)
        columns = SeriesColumns(time, target, tuple(covariates), series_id, tuple(static))
        series, _ = load_series(table, label, columns, fill_na)
        for i, cutoff in enumerate(stamps):  # every fold must be testable before any trains
            _check_test_part(series, cutoff, stamps[i + 1] if i + 1 < len(stamps) else None,
                             self.config.horizon, label)
        data = table
        folds = []
        for i, cutoff in enumerate(stamps):
            end = stamps[i + 1] if i + 1 < len(stamps) else None
            fold = Forecaster(self.config).fit(
                data, target=target, time=time, covariates=covariates, series_id=series_id,
                static=static, fill_na=fill_na, test_start=cutoff, quiet=quiet)
            metrics = fold.evaluate(data, test_start=cutoff, test_end=end)
            folds.append({"cutoff": str(cutoff.date()), "test_end": str(end.date()) if end
                          else None, "test": metrics["test"]})
        mean = {method: {metric: float(np.nanmean([f["test"][method][metric] for f in folds]))
                         for metric in ("mae", "rmse", "mape", "smape", "mase")}
                for method in folds[0]["test"]}
        return {"folds": folds, "mean": mean}

    # ---- report, save, load -------------------------------------------------------------------

    def report(self, directory: str | Path, data: Any, test_start: Any = None,
               test_end: Any = None) -> dict:
        """Evaluate and write metrics.json, metrics.csv, test_predictions.csv,
        training_log.csv and the plots forecast_test.png and training_curves.png."""
        from ..report import plot_lines, plot_training, write_history, write_metrics

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        metrics, frame = self._evaluation(data, test_start, test_end)
        write_metrics(directory, metrics)
        frame.to_csv(directory / "test_predictions.csv", index=False)
        if self.history:
            write_history(directory / "training_log.csv", self.history)
            plot_training(directory / "training_curves.png", self.history)
        one = frame[(frame["series"] == frame["series"].iloc[0]) & (frame["step"] == 1)]
        quantiles = self.config.output_quantiles
        band = None
        if len(quantiles) > 1:
            band = (one[f"q{quantiles[0]:g}"].tolist(), one[f"q{quantiles[-1]:g}"].tolist())
        target = self.columns.target
        plot_lines(directory / "forecast_test.png", one["time"].tolist(),
                   {"actual": one["actual"].tolist(),
                    f"model (MAE {metrics['test']['model']['mae']:.3f})": one["model"].tolist(),
                    f"persistence (MAE {metrics['test']['persistence']['mae']:.3f})":
                        one["persistence"].tolist()},
                   f"{target}: one step ahead on the test part", target, band)
        return metrics

    def _preprocessing_state(self) -> dict:
        return {"columns": dataclasses.asdict(self.columns), "freq": self.freq,
                "fill_na": self.fill_na, "features": self.features.to_dict(),
                "feature_names": self.features.names, "members": len(self.model.members),
                "fit": self.fit_info}

    _PREPROCESSING_KEYS = frozenset({"columns", "freq", "fill_na", "features", "feature_names",
                                     "members", "fit"})

    def _restore(self, preprocessing: dict, files=None) -> None:
        unknown = set(preprocessing) - self._PREPROCESSING_KEYS
        if unknown:
            raise ValueError(f"unknown preprocessing key(s) {', '.join(sorted(unknown))}")
        columns = dict(preprocessing["columns"])
        for key in ("covariates", "static", "numeric"):
            columns[key] = tuple(columns[key])
        self.columns = SeriesColumns(**columns)
        self.freq, self.fill_na = preprocessing["freq"], preprocessing["fill_na"]
        if self.fill_na is not None and self.fill_na not in FILL_POLICIES:
            raise ValueError(f"fill_na={self.fill_na!r}")
        self.features = SeriesFeatures.from_dict(self.columns, preprocessing["features"])
        if self.features.names != list(preprocessing["feature_names"]):
            raise ValueError("the saved features do not match feature_names")
        width = 1 + len(self.columns.numeric)
        if any(len(s.mean) != width or len(s.std) != width
               for s in self.features.scalers.values()):
            raise ValueError(f"each series scaler must hold {width} columns")
        self.fit_info = dict(preprocessing["fit"])

    def _build(self, preprocessing: dict) -> nn.Module:
        num_features = len(preprocessing["feature_names"])
        return Ensemble([ForecastNet(self.config, num_features)
                         for _ in range(int(preprocessing["members"]))])


def _check_test_part(series: list[Series], start, end, horizon: int, label: str) -> None:
    """Before any training: some series must have a complete window in [start, end)."""
    for one in series:
        inside = (one.times >= start) if end is None else (one.times >= start) & (
            one.times < end)
        if inside.sum() >= horizon and (one.times < start).any():
            return
    span = f"from {start}" + (f" to {end}" if end is not None else "")
    raise DataError(f"{label}: no series has {horizon} time step(s) {span} after some history, "
                    "so there is no test part to evaluate; choose an earlier test start.")


def _timestamp(value: Any, name: str) -> pd.Timestamp | None:
    if value is None:
        return None
    try:
        return pd.Timestamp(value)
    except (ValueError, TypeError) as error:
        raise DataError(f"{name}={value!r} is not a date or time ({error}).") from error


def _test_start_of(times: np.ndarray) -> pd.Timestamp:
    """The time at 80% of the distinct times: by default the last 20% is the test part."""
    times = np.unique(times)
    return pd.Timestamp(times[int(len(times) * 0.8)])


def _score(actual: np.ndarray, forecast: np.ndarray, scale: float) -> dict:
    """forecast_metrics over the rows the method could forecast, with their count."""
    ok = np.isfinite(forecast).reshape(len(forecast), -1).all(axis=1)
    if not ok.any():
        return {"mae": float("nan"), "rmse": float("nan"), "mape": float("nan"),
                "smape": float("nan"), "mase": float("nan"), "count": 0}
    return {**forecast_metrics(actual[ok], forecast[ok], scale), "count": int(ok.sum())}


def _linear_baseline(prepared: _Prepared, fit_rows: np.ndarray, test: Windows,
                     features: SeriesFeatures) -> np.ndarray:
    """Ridge regression on the same windows and features (scaled), fitted on the windows
    before the test part; forecasts in data units (S, h), NaN with too few windows."""
    from sklearn.linear_model import Ridge

    w = prepared.windows
    if fit_rows.sum() < MIN_TRAIN_WINDOWS:  # too few to fit: reported with no figures
        return np.full(test.targets.shape, np.nan)
    flat = w.inputs[fit_rows].reshape(int(fit_rows.sum()), -1)  # (S_fit, L*F)
    ridge = Ridge(alpha=1.0).fit(flat, w.targets[fit_rows])
    scaled = ridge.predict(test.inputs.reshape(len(test.inputs), -1)).reshape(
        len(test.inputs), -1)  # (S, h)
    out = np.empty_like(scaled)
    for k, key in enumerate(prepared.keys):
        rows = test.series == k
        out[rows] = features.inverse_target(scaled[rows], key)
    return out
