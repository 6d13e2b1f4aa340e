"""Forecaster on small, fast configurations: quality against baselines, save/load, no leakage."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from lstmkit.data.datasets import seattle_weather
from lstmkit.errors import CheckpointError, DataError
from lstmkit.tasks.forecast import Forecaster

COLUMNS = dict(time="date", target="temp_max",
               covariates=("temp_min", "precipitation", "wind", "weather"))
SMALL = dict(hidden_size=32, max_epochs=40, patience=8, ensemble_size=1, refit=False,
             learning_rate=3e-3)
TEST_START = "2015-01-01"


@pytest.fixture(scope="module")
def weather() -> pd.DataFrame:
    return seattle_weather()


@pytest.fixture(scope="module")
def fitted(weather) -> Forecaster:
    return Forecaster(**SMALL).fit(weather, **COLUMNS, test_start=TEST_START)


def test_small_model_beats_persistence_and_reloads_to_the_same_figures(fitted, weather,
                                                                       tmp_path):
    metrics = fitted.evaluate(weather, test_start=TEST_START)
    test = metrics["test"]
    assert set(test) == {"model", "persistence", "seasonal_naive", "moving_average", "linear"}
    assert test["model"]["count"] == test["persistence"]["count"] == 365
    assert test["persistence"]["mae"] == pytest.approx(2.240, abs=5e-4)  # DATA.md's figure
    assert test["model"]["mae"] < test["persistence"]["mae"]
    assert set(test["model"]) == {"mae", "rmse", "mape", "smape", "mase", "count"}
    fitted.save(tmp_path / "run")
    again = Forecaster.load(tmp_path / "run")
    assert again.evaluate(weather, test_start=TEST_START) == metrics
    pd.testing.assert_frame_equal(again.predict(weather), fitted.predict(weather))


def test_predict_gives_the_step_after_the_last_time(fitted, weather):
    forecast = fitted.predict(weather)
    assert forecast["date"].tolist() == [pd.Timestamp("2016-01-01")]
    assert -5 < forecast["forecast"].iloc[0] < 20  # a winter day in Seattle, in °C


def test_no_leakage_from_the_future(weather):
    """Training on data whose test part is replaced by nonsense changes nothing fitted."""
    config = dict(SMALL, max_epochs=3)
    a = Forecaster(**config).fit(weather, **COLUMNS, test_start=TEST_START)
    poisoned = weather.copy()
    future = poisoned["date"] >= TEST_START
    poisoned.loc[future, ["temp_max", "temp_min"]] *= 100
    poisoned.loc[future, "weather"] = "sun"
    b = Forecaster(**config).fit(poisoned, **COLUMNS, test_start=TEST_START)
    assert a.features.to_dict() == b.features.to_dict()  # scalers fitted on the past only
    for (name, x), y in zip(a.model.state_dict().items(), b.model.state_dict().values(),
                            strict=True):
        assert torch.equal(x, y), name


def test_quantile_loss_gives_intervals_and_multi_step(weather):
    model = Forecaster(**SMALL, loss="quantile", quantiles=(0.1, 0.5, 0.9), horizon=2).fit(
        weather, **COLUMNS, test_start=TEST_START)
    forecast = model.predict(weather)
    assert forecast.columns.tolist() == ["date", "forecast", "q0.1", "q0.9"]
    assert len(forecast) == 2 and (forecast["q0.1"] <= forecast["q0.9"]).all()
    metrics = model.evaluate(weather, test_start=TEST_START)
    assert 0.5 < metrics["test"]["model"]["interval_coverage"] <= 1.0
    assert len(metrics["test_mae_by_step"]["persistence"]) == 2
    by_step = metrics["test_mae_by_step"]["persistence"]
    assert by_step[0] < by_step[1]  # two days ahead is harder than one


def _two_series(n: int = 300) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    t = np.arange(n)
    frames = []
    for key, scale in (("a", 1.0), ("b", 50.0)):
        y = scale * (np.sin(2 * np.pi * t / 12) + 0.1 * rng.standard_normal(n)) + 3 * scale
        frames.append(pd.DataFrame({"id": key, "when": pd.date_range("2020-01-01", periods=n,
                                                                     freq="h"),
                                    "y": y, "size": scale}))
    return pd.concat(frames, ignore_index=True)


def test_many_series_one_global_model(tmp_path):
    table = _two_series()
    start = Forecaster.default_test_start(table, "when")  # the last 20% of the span
    model = Forecaster(**SMALL, lookback=12, calendar=("hour",)).fit(
        table, time="when", target="y", series_id="id", static=("size",), test_start=start)
    metrics = model.evaluate(table, test_start=start)
    assert metrics["test"]["model"]["mase"] < metrics["test"]["persistence"]["mase"]
    forecast = model.predict(table)
    assert forecast["id"].tolist() == ["a", "b"]
    assert forecast["forecast"].iloc[1] > 10 * abs(forecast["forecast"].iloc[0])  # own scale
    model.save(tmp_path / "run")
    assert Forecaster.load(tmp_path / "run").evaluate(table, test_start=start) == metrics
    with pytest.warns(UserWarning, match="its figures include training data"):
        model.evaluate(table, test_start="2020-01-05")
    unknown = table.assign(id=table["id"].replace("b", "c"))
    with pytest.raises(DataError, match="series 'c' was not in the training data"):
        model.predict(unknown)


def test_unseen_label_and_too_short_series(fitted, weather):
    odd = weather.copy()
    odd.loc[10, "weather"] = "hail"
    with pytest.raises(DataError, match=r"column 'weather' holds 'hail' at row 11, a label not "
                                        "seen in training"):
        fitted.evaluate(odd, test_start=TEST_START)
    with pytest.raises(DataError, match="too short|too few"):
        Forecaster(**SMALL).fit(weather.iloc[:12], **COLUMNS)


def test_backtest_reports_each_fold_and_the_mean(weather):
    result = Forecaster(**dict(SMALL, max_epochs=3)).backtest(
        weather, ["2014-01-01", "2015-01-01"], **COLUMNS)
    assert [f["cutoff"] for f in result["folds"]] == ["2014-01-01", "2015-01-01"]
    assert result["folds"][0]["test_end"] == "2015-01-01"
    assert result["folds"][0]["test"]["persistence"]["count"] == 365  # 2014 only
    assert set(result["mean"]) == set(result["folds"][0]["test"])


def test_load_refuses_a_tampered_run(fitted, tmp_path):
    fitted.save(tmp_path / "run")
    config = (tmp_path / "run" / "config.json").read_text()
    (tmp_path / "run" / "config.json").write_text(config.replace('"hidden_size": 32',
                                                                 '"hidden_size": 16'))
    with pytest.raises(CheckpointError, match="model.safetensors: does not match config.json"):
        Forecaster.load(tmp_path / "run")


def test_reviewed_edge_cases(fitted, weather):
    """Inputs that once gave a traceback or a silent wrong answer."""
    typo = weather.astype({"temp_min": object})
    typo.loc[5, "temp_min"] = "n/a?"  # a numeric covariate with a text cell
    with pytest.raises(DataError, match=r"column 'temp_min' is not numeric: row 6"):
        fitted.predict(typo)
    with pytest.raises(ValueError, match="season=-3 must be >= 0"):
        Forecaster(season=-3)
    blank = weather.copy()
    blank.loc[[3, 8], "weather"] = None
    with pytest.raises(DataError, match=r"column 'weather' is empty at rows 4, 9"):
        Forecaster(**SMALL).fit(blank, **COLUMNS)
    years = pd.DataFrame({"year": range(1900, 2000), "y": np.arange(100.0)})
    with pytest.raises(DataError, match="time column 'year' holds numbers"):
        Forecaster(**SMALL).fit(years, time="year", target="y")
    with pytest.raises(DataError, match="no series has 1 time step.* from 2017-01-01"):
        Forecaster(**SMALL).fit(weather, **COLUMNS, test_start="2017-01-01")
    short = pd.concat([weather.assign(site="A"), weather.iloc[:5].assign(site="B")])
    with pytest.raises(DataError, match="series 'B' has 5 time steps; lookback 7"):
        Forecaster(**SMALL).fit(short, **COLUMNS, series_id="site", test_start=TEST_START)
    no_id = weather.assign(site="A")
    no_id.loc[100, "site"] = None
    with pytest.raises(DataError, match="column 'site' is empty at row 101"):
        Forecaster(**SMALL).fit(no_id, **COLUMNS, series_id="site")


def test_time_zones_and_seasons():
    from lstmkit.tasks.forecast import _default_season

    assert [_default_season(f) for f in ("D", "h", "MS", "QS-JAN", "QE-DEC", "W-SUN", "2D")] \
        == [7, 24, 12, 4, 4, 52, 1]
    n = 200
    table = pd.DataFrame({"t": pd.date_range("2021-01-01", periods=n, freq="h",
                                             tz="Europe/Berlin").astype(str),
                          "y": np.sin(np.arange(n) / 4.0)})
    model = Forecaster(**dict(SMALL, max_epochs=2)).fit(table, time="t", target="y")
    assert model.freq == "h"


def test_quantiles_never_cross(weather):
    model = Forecaster(**dict(SMALL, max_epochs=1), loss="quantile",
                       quantiles=(0.9, 0.5, 0.1)).fit(weather, **COLUMNS, test_start=TEST_START)
    _, frame = model._evaluation(weather, TEST_START, None)
    assert (frame["q0.1"] <= frame["model"]).all() and (frame["model"] <= frame["q0.9"]).all()


def test_an_interrupted_refit_keeps_the_early_stopped_model(weather, monkeypatch):
    from lstmkit.train import trainer as trainer_module

    original = trainer_module.Trainer.fit

    def fit(self, model, data, loss_fn, score_fn=None, epochs=None):
        result = original(self, model, data, loss_fn, score_fn, epochs)
        if epochs is not None:  # the refit: pretend Ctrl-C came at once
            result.interrupted = True
            with torch.no_grad():
                for p in model.parameters():
                    p.fill_(float("nan"))
        return result

    monkeypatch.setattr(trainer_module.Trainer, "fit", fit)
    model = Forecaster(**dict(SMALL, max_epochs=3, refit=True)).fit(
        weather, **COLUMNS, test_start=TEST_START)
    assert model.interrupted
    assert np.isfinite(model.predict(weather)["forecast"]).all()


def test_a_corrupt_preprocessing_file_is_named(fitted, tmp_path):
    import json

    fitted.save(tmp_path / "run")
    path = tmp_path / "run" / "preprocessing.json"
    good = json.loads(path.read_text())
    for bad in ([1, 2], {**good, "format_version": 99}, {**good, "bogus": 1},
                {**good, "features": {**good["features"], "scalers": []}}):
        path.write_text(json.dumps(bad))
        with pytest.raises(CheckpointError, match="preprocessing.json"):
            Forecaster.load(tmp_path / "run")
