"""From a series to (samples, time steps, features) windows, and the scalers fitted on the
training part only.

A window's *origin* is the index of its last input step: inputs are rows origin-lookback+1 ..
origin, targets rows origin+1 .. origin+horizon. A window never reads a row after its origin,
so splitting windows by the time of their first target keeps the future out of training.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

__all__ = ["StandardScaler", "Windows", "make_windows"]


@dataclass
class StandardScaler:
    """Per-column (x - mean) / std; a zero std (a constant column) is treated as 1."""

    mean: np.ndarray  # (C,)
    std: np.ndarray  # (C,)

    @classmethod
    def fit(cls, values: np.ndarray) -> StandardScaler:
        """Fit on (N, C) values, ignoring NaN."""
        mean = np.nanmean(values, axis=0)
        std = np.nanstd(values, axis=0)
        std = np.where(np.isfinite(std) & (std > 1e-12), std, 1.0)
        return cls(np.nan_to_num(mean), std)

    def transform(self, values: np.ndarray) -> np.ndarray:
        return (values - self.mean) / self.std

    def inverse(self, values: np.ndarray, column: int | None = None) -> np.ndarray:
        if column is None:
            return values * self.std + self.mean
        return values * self.std[column] + self.mean[column]

    def to_dict(self) -> dict:
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_dict(cls, data: dict) -> StandardScaler:
        return cls(np.asarray(data["mean"], dtype=np.float64),
                   np.asarray(data["std"], dtype=np.float64))


@dataclass
class Windows:
    """Windows of one or more series, stacked. S samples, L lookback, F features, h horizon."""

    inputs: np.ndarray  # (S, L, F)
    targets: np.ndarray  # (S, h); NaN where the future is not in the data
    origins: np.ndarray  # (S,) row index of the last input step within its series
    series: np.ndarray  # (S,) index of the series each window comes from


def make_windows(features: np.ndarray, target: np.ndarray, lookback: int, horizon: int,
                 series_index: int = 0, include_open: bool = False) -> Windows:
    """Every window of one series: features (N, F), target (N,).

    With ``include_open`` the windows whose targets run past the end are kept too (their
    missing targets are NaN): the last of them is the one to forecast from.
    """
    N, F = features.shape
    last_origin = N - 1 if include_open else N - 1 - horizon
    origins = np.arange(lookback - 1, last_origin + 1)  # (S,)
    if len(origins) == 0:
        return Windows(np.empty((0, lookback, F), features.dtype),
                       np.empty((0, horizon), target.dtype),
                       np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64))
    view = sliding_window_view(features, lookback, axis=0)  # (N-L+1, F, L)
    inputs = view[origins - lookback + 1].transpose(0, 2, 1)  # (S, L, F)
    padded = np.concatenate([target, np.full(horizon, np.nan)])  # (N + h,)
    targets = sliding_window_view(padded, horizon)[origins + 1]  # (S, h)
    return Windows(np.ascontiguousarray(inputs), np.ascontiguousarray(targets), origins,
                   np.full(len(origins), series_index))
