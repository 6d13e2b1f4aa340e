"""Metric definitions on hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from lstmkit.train.metrics import forecast_metrics, mase_scale


def test_metrics_by_hand():
    actual, forecast = np.array([1.0, 2.0, 4.0]), np.array([2.0, 2.0, 1.0])
    m = forecast_metrics(actual, forecast, scale=2.0)
    assert m["mae"] == pytest.approx(4 / 3)
    assert m["rmse"] == pytest.approx(np.sqrt(10 / 3))
    assert m["mape"] == pytest.approx(100 * (1 + 0 + 0.75) / 3)
    assert m["smape"] == pytest.approx(100 * (2 / 3 + 0 + 6 / 5) / 3)
    assert m["mase"] == pytest.approx(2 / 3)


def test_mape_skips_zero_targets_and_mase_scale_pools_series():
    m = forecast_metrics(np.array([0.0, 2.0]), np.array([1.0, 1.0]), scale=1.0)
    assert m["mape"] == pytest.approx(50.0)
    assert mase_scale([np.array([1.0, 3.0]), np.array([0.0, 1.0, 1.0])]) == pytest.approx(1.0)
