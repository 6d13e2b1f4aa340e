"""The forecasting issue's quality bar on the real split (slow: `make test-slow`).

Default config, Seattle weather, train 2012-2014, test 2015: single models over 3 seeds
average MAE <= 2.08 and each beats the linear baseline; at --horizon 3 the third day beats
persistence by at least 10% and is no worse than the linear baseline.
"""

from __future__ import annotations

import statistics

import pytest

from lstmkit.data.datasets import seattle_weather
from lstmkit.tasks.forecast import Forecaster

COLUMNS = dict(time="date", target="temp_max",
               covariates=("temp_min", "precipitation", "wind", "weather"))


@pytest.mark.slow
def test_single_models_over_three_seeds():
    table = seattle_weather()
    maes = []
    for seed in range(3):
        model = Forecaster(ensemble_size=1, seed=seed).fit(table, **COLUMNS,
                                                          test_start="2015-01-01")
        test = model.evaluate(table, test_start="2015-01-01")["test"]
        assert test["model"]["mae"] < test["linear"]["mae"], seed
        maes.append(test["model"]["mae"])
    assert statistics.mean(maes) <= 2.08


@pytest.mark.slow
def test_three_days_ahead():
    table = seattle_weather()
    model = Forecaster(horizon=3).fit(table, **COLUMNS, test_start="2015-01-01")
    by_step = model.evaluate(table, test_start="2015-01-01")["test_mae_by_step"]
    assert by_step["model"][2] <= 0.9 * by_step["persistence"][2]
    assert by_step["model"][2] <= by_step["linear"][2]
