"""Per-step model inputs from checked series: scaled readings, one-hot labels, calendar terms.

Fitted on the training part only and saved as JSON with the model: the per-series scaler of
the target and numeric covariates, the categories of each label column, the scaler of the
static features. At predict time a label never seen in training, or a series the model never
saw, is a DataError naming the column, value and rows, not a silent zero.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import DataError
from .series import Series, SeriesColumns
from .tables import describe_rows
from .windows import StandardScaler

__all__ = ["CALENDAR_FEATURES", "SeriesFeatures"]

# name -> (function of a DatetimeIndex, period): each becomes a sin/cos pair.
CALENDAR_FEATURES = {
    "day_of_year": (lambda t: t.day_of_year - 1, 365.25),
    "day_of_week": (lambda t: t.day_of_week, 7.0),
    "month": (lambda t: t.month - 1, 12.0),
    "hour": (lambda t: t.hour, 24.0),
}


class SeriesFeatures:
    """Turns :class:`Series` into (N, F) feature rows and (N,) scaled targets."""

    def __init__(self, columns: SeriesColumns, calendar: tuple[str, ...]) -> None:
        unknown = [c for c in calendar if c not in CALENDAR_FEATURES]
        if unknown:
            raise ValueError(f"calendar feature(s) {', '.join(map(repr, unknown))} unknown; "
                             f"choose from {', '.join(CALENDAR_FEATURES)}.")
        self.columns, self.calendar = columns, tuple(calendar)
        self.scalers: dict[str, StandardScaler] = {}
        self.categories: dict[str, list[str]] = {}
        self.static_scaler: StandardScaler | None = None

    def fit(self, series: list[Series], fit_end: pd.Timestamp, label: str) -> SeriesFeatures:
        """Fit scalers and categories on each series' rows before ``fit_end``."""
        labels: dict[str, set[str]] = {}
        for one in series:
            rows = one.times < fit_end
            if rows.sum() < 2:
                raise DataError(f"{label}: series {one.key!r} has {int(rows.sum())} row(s) "
                                f"before {fit_end}; too few to fit its scaling.")
            values = np.column_stack([one.target, one.numeric])[rows]  # (n, 1 + C_num)
            self.scalers[one.key] = StandardScaler.fit(values)
            for column, values in one.categorical.items():
                labels.setdefault(column, set()).update(values[rows].tolist())
        self.categories = {c: sorted(v) for c, v in labels.items()}
        if self.columns.static:
            self.static_scaler = StandardScaler.fit(np.stack([s.static for s in series]))
        return self

    @property
    def names(self) -> list[str]:
        """The feature names, in column order."""
        names = [self.columns.target] + [c for c in self.columns.covariates
                                         if c not in self.categories]
        for column, values in self.categories.items():
            names += [f"{column}={v}" for v in values]
        for name in self.calendar:
            names += [f"{name}_sin", f"{name}_cos"]
        return names + list(self.columns.static)

    def transform(self, one: Series, label: str) -> tuple[np.ndarray, np.ndarray]:
        """Features (N, F) float32 and the scaled target (N,) of one series."""
        scaler = self.scalers.get(one.key)
        if scaler is None:
            raise DataError(f"{label}: series {one.key!r} was not in the training data; the "
                            f"model knows {', '.join(map(repr, sorted(self.scalers)))}.")
        scaled = scaler.transform(np.column_stack([one.target, one.numeric]))  # (N, 1 + C)
        parts = [scaled]
        for column, known in self.categories.items():
            values = one.categorical[column]
            index = {v: i for i, v in enumerate(known)}
            unseen = np.flatnonzero([v not in index for v in values])
            if len(unseen):
                raise DataError(f"{label}: column {column!r} holds {values[unseen[0]]!r} at "
                                f"{describe_rows(one.rows[unseen])}, a label not seen in training "
                                f"(known: {', '.join(map(repr, known))}).")
            one_hot = np.zeros((len(values), len(known)))
            one_hot[np.arange(len(values)), [index[v] for v in values]] = 1.0
            parts.append(one_hot)
        for name in self.calendar:
            position, period = CALENDAR_FEATURES[name]
            angle = 2 * np.pi * np.asarray(position(one.times), dtype=float) / period
            parts.append(np.column_stack([np.sin(angle), np.cos(angle)]))
        if self.static_scaler is not None:
            static = self.static_scaler.transform(one.static[None, :])
            parts.append(np.repeat(static, len(one.times), axis=0))
        return np.column_stack(parts).astype(np.float32), scaled[:, 0]

    def inverse_target(self, values: np.ndarray, key: str) -> np.ndarray:
        """Scaled target values back to the data's units."""
        return self.scalers[key].inverse(values, column=0)

    def to_dict(self) -> dict:
        return {"calendar": list(self.calendar),
                "scalers": {k: s.to_dict() for k, s in self.scalers.items()},
                "categories": self.categories,
                "static_scaler": None if self.static_scaler is None else
                self.static_scaler.to_dict()}

    @classmethod
    def from_dict(cls, columns: SeriesColumns, data: dict) -> SeriesFeatures:
        features = cls(columns, tuple(data["calendar"]))
        features.scalers = {k: StandardScaler.from_dict(v) for k, v in data["scalers"].items()}
        features.categories = {k: list(v) for k, v in data["categories"].items()}
        if data["static_scaler"] is not None:
            features.static_scaler = StandardScaler.from_dict(data["static_scaler"])
        return features
