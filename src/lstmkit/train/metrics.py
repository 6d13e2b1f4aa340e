"""Forecast error metrics on numpy arrays: MAE, RMSE, MAPE, sMAPE, MASE.

Definitions follow Hyndman & Koehler 2006 ("Another look at measures of forecast accuracy");
MASE scales the MAE by the in-sample MAE of the one-step naive forecast on the training part.
"""

from __future__ import annotations

import numpy as np

__all__ = ["forecast_metrics", "mae", "mape", "mase_scale", "rmse", "smape"]


def mae(actual: np.ndarray, forecast: np.ndarray) -> float:
    return float(np.mean(np.abs(forecast - actual)))


def rmse(actual: np.ndarray, forecast: np.ndarray) -> float:
    return float(np.sqrt(np.mean((forecast - actual) ** 2)))


def mape(actual: np.ndarray, forecast: np.ndarray) -> float:
    """Mean absolute percentage error, in %, over the targets that are not zero."""
    nonzero = actual != 0
    if not nonzero.any():
        return float("nan")
    return float(100 * np.mean(np.abs((forecast - actual)[nonzero] / actual[nonzero])))


def smape(actual: np.ndarray, forecast: np.ndarray) -> float:
    """Symmetric MAPE in % (0-200), with 0/0 counted as 0."""
    denominator = np.abs(actual) + np.abs(forecast)
    ratio = np.divide(2 * np.abs(forecast - actual), denominator,
                      out=np.zeros_like(denominator, dtype=float), where=denominator > 0)
    return float(100 * np.mean(ratio))


def mase_scale(train_series: list[np.ndarray]) -> float:
    """The in-sample MAE of the one-step naive forecast, pooled over the training series."""
    diffs = [np.abs(np.diff(s)) for s in train_series if len(s) > 1]
    if not diffs:
        return float("nan")
    return float(np.mean(np.concatenate(diffs)))


def forecast_metrics(actual: np.ndarray, forecast: np.ndarray, scale: float) -> dict[str, float]:
    """All five metrics; ``scale`` is :func:`mase_scale` of the training part."""
    error = mae(actual, forecast)
    return {"mae": error, "rmse": rmse(actual, forecast), "mape": mape(actual, forecast),
            "smape": smape(actual, forecast),
            "mase": error / scale if scale and np.isfinite(scale) else float("nan")}
