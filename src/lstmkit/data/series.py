"""A long-format table to regular, checked series: one per series id, in time order.

Checks, each a DataError naming the file, column and rows: times that do not parse,
duplicate or unsorted timestamps, gaps in a regular frequency, non-numeric or NaN/inf values,
static features that vary within a series. Gaps and missing values may instead be filled by
an explicit policy (``fill_na``): ffill, bfill, interpolate or zero.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pandas.api.types import is_bool_dtype, is_numeric_dtype

from ..errors import DataError
from .tables import describe_rows, numeric_column, require_columns

__all__ = ["FILL_POLICIES", "Series", "SeriesColumns", "load_series"]

FILL_POLICIES = ("ffill", "bfill", "interpolate", "zero")


@dataclass(frozen=True)
class SeriesColumns:
    """Which columns of the table play which role."""

    time: str
    target: str
    covariates: tuple[str, ...] = ()  # past covariates, numeric or categorical
    series_id: str | None = None
    static: tuple[str, ...] = ()  # numeric, constant within each series
    numeric: tuple[str, ...] | None = None  # which covariates are numeric; None: infer

    def numeric_covariates(self, table: pd.DataFrame) -> list[str]:
        """The numeric covariates: as fixed at training, or those whose values are mostly
        numbers (a stray text cell then fails loudly instead of turning a column into labels).
        """
        if self.numeric is not None:
            return list(self.numeric)
        return [c for c in self.covariates if _mostly_numeric(table[c])]


@dataclass
class Series:
    """One regular series. N time steps."""

    key: str  # the series id as text; "" for a single series
    times: pd.DatetimeIndex  # (N,)
    rows: np.ndarray  # (N,) 0-based row of the table for each step; -1 where a gap was filled
    target: np.ndarray  # (N,) float64
    numeric: np.ndarray  # (N, C_num) float64, the numeric covariates
    categorical: dict[str, np.ndarray]  # column -> (N,) labels as str
    static: np.ndarray  # (C_static,) float64


def load_series(table: pd.DataFrame, label: str, columns: SeriesColumns,
                fill_na: str | None = None) -> tuple[list[Series], str]:
    """Split, check and (with ``fill_na``) fill the table; returns the series and frequency."""
    if fill_na is not None and fill_na not in FILL_POLICIES:
        raise DataError(f"fill_na={fill_na!r}: choose one of {', '.join(FILL_POLICIES)}.")
    wanted = [columns.time, columns.target, *columns.covariates, *columns.static]
    if columns.series_id:
        wanted.append(columns.series_id)
    require_columns(table, wanted, label, "such")
    table = table.copy()
    table["__row"] = np.arange(len(table))
    table[columns.time] = _parse_times(table, columns.time, label)
    numeric = [columns.target] + columns.numeric_covariates(table)
    for column in numeric + list(columns.static):
        table[column] = numeric_column(table, column, label)
        if fill_na is None:
            _check_finite(table, column, label)
    for column in columns.covariates:
        if column not in numeric and fill_na is None:
            _check_present(table, column, label)
    if columns.series_id:
        _check_present(table, columns.series_id, label)
    groups = ([("", table)] if not columns.series_id else
              [(str(k), g) for k, g in table.groupby(columns.series_id, sort=True)])
    series, freq = [], None
    for key, group in groups:
        one, one_freq = _one_series(key, group, label, columns, numeric, fill_na)
        if freq is not None and one_freq != freq:
            raise DataError(f"{label}: series {key!r} has frequency {one_freq} but the others "
                            f"have {freq}; give series of one frequency.")
        series.append(one)
        freq = one_freq
    return series, freq


def _mostly_numeric(column: pd.Series) -> bool:
    if is_bool_dtype(column):
        return False
    if is_numeric_dtype(column):
        return True
    present = column.dropna()
    return len(present) > 0 and pd.to_numeric(present, errors="coerce").notna().mean() > 0.5


def _check_present(table: pd.DataFrame, column: str, label: str) -> None:
    empty = np.flatnonzero(table[column].isna().to_numpy())
    if len(empty):
        raise DataError(f"{label}: column {column!r} is empty at {describe_rows(empty)}; fill "
                        "it or pass --fill-na ffill.")


def _parse_times(table: pd.DataFrame, column: str, label: str) -> pd.Series:
    raw = table[column]
    missing = np.flatnonzero(raw.isna().to_numpy())
    if len(missing):
        raise DataError(f"{label}: time column {column!r} is empty at {describe_rows(missing)}.")
    if is_numeric_dtype(raw) and not pd.api.types.is_datetime64_any_dtype(raw):
        raise DataError(f"{label}: time column {column!r} holds numbers (e.g. {raw.iloc[0]!r}), "
                        "not dates; write dates such as 2015-01-31, or years as 2015-01-01.")
    if pd.api.types.is_datetime64_any_dtype(raw):
        parsed = raw
    else:
        parsed = pd.to_datetime(raw, errors="coerce", format="mixed", utc=True)
    if getattr(parsed.dt, "tz", None) is not None:
        parsed = parsed.dt.tz_convert(None)  # time zones: compare everything in UTC
    bad = np.flatnonzero(parsed.isna().to_numpy())
    if len(bad):
        raise DataError(f"{label}: time column {column!r} does not parse as dates at "
                        f"{describe_rows(bad)} (e.g. {raw.iloc[bad[0]]!r}).")
    return parsed


def _check_finite(table: pd.DataFrame, column: str, label: str) -> None:
    values = table[column].to_numpy(dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(values))
    if len(bad):
        kinds = "NaN" if np.isnan(values[bad]).all() else "NaN/inf"
        raise DataError(f"{label}: column {column!r} has {len(bad)} {kinds} value(s) at "
                        f"{describe_rows(table['__row'].to_numpy()[bad])}; fill them or pass "
                        "--fill-na ffill (or bfill, interpolate, zero).")


def _one_series(key, group, label, columns, numeric, fill_na) -> tuple[Series, str]:
    where = f"{label}: series {key!r}" if key else label
    times = pd.DatetimeIndex(group[columns.time])
    rows = group["__row"].to_numpy()
    order = np.diff(times.asi8)
    if (order == 0).any():
        i = int(np.flatnonzero(order == 0)[0])
        raise DataError(f"{where}: duplicate timestamp {times[i]} at rows {rows[i] + 1} and "
                        f"{rows[i + 1] + 1}; keep one row per time step.")
    if (order < 0).any():
        i = int(np.flatnonzero(order < 0)[0])
        raise DataError(f"{where}: timestamps are not in order: row {rows[i + 1] + 1} "
                        f"({times[i + 1]}) comes after row {rows[i] + 1} ({times[i]}); sort "
                        "the table by time.")
    if len(times) < 2:
        raise DataError(f"{where}: only {len(times)} time step(s); a series needs many more.")
    freq = None
    if len(times) >= 3:
        with warnings.catch_warnings():  # pandas 3 warns that it will return an offset
            warnings.simplefilter("ignore")
            freq = pd.infer_freq(times)
    if freq is None:  # the most common step; the grid check below reports what breaks it
        step = pd.Series(times[1:] - times[:-1]).mode().iloc[0]
        whole_days = step % pd.Timedelta(days=1) == pd.Timedelta(0)
        freq = f"{step.days}D" if whole_days else pd.tseries.frequencies.to_offset(step).freqstr
    freq = pd.tseries.frequencies.to_offset(freq).freqstr
    expected = pd.date_range(times[0], times[-1], freq=freq)
    if len(times.difference(expected)):
        odd = times.difference(expected)[0]
        raise DataError(f"{where}: times are not on a regular {freq} grid (e.g. {odd}); "
                        "resample the table to one frequency first.")
    frame = group.set_index(columns.time)
    gaps = expected.difference(times)
    if len(gaps):
        if fill_na is None:
            raise DataError(f"{where}: {len(gaps)} time step(s) missing from the {freq} grid, "
                            f"the first {gaps[0]}; add the rows or pass --fill-na ffill (or "
                            "bfill, interpolate, zero).")
        frame = frame.reindex(expected)
    frame = _fill(frame, numeric, columns, fill_na) if fill_na else frame
    static = _static_values(frame, columns.static, where)
    categorical = {c: frame[c].astype(str).to_numpy() for c in columns.covariates
                   if c not in numeric}
    file_rows = frame["__row"].fillna(-1).to_numpy(dtype=np.int64)
    return Series(key, pd.DatetimeIndex(frame.index), file_rows,
                  frame[columns.target].to_numpy(float),
                  frame[numeric[1:]].to_numpy(float).reshape(len(frame), -1), categorical,
                  static), freq


def _fill(frame, numeric, columns, policy) -> pd.DataFrame:
    frame = frame.copy()
    for column in numeric + list(columns.static):
        values = frame[column].replace([np.inf, -np.inf], np.nan)
        if policy == "interpolate":
            values = values.interpolate(limit_direction="both")
        elif policy == "zero":
            values = values.fillna(0.0)
        else:
            values = getattr(values, policy)().ffill().bfill()
        frame[column] = values
    for column in columns.covariates:
        if column not in numeric:
            frame[column] = frame[column].ffill().bfill()
    return frame


def _static_values(frame: pd.DataFrame, static, where: str) -> np.ndarray:
    values = []
    for column in static:
        distinct = frame[column].dropna().unique()
        if len(distinct) != 1:
            raise DataError(f"{where}: static column {column!r} takes {len(distinct)} values "
                            "within the series; a static feature must be constant per series.")
        values.append(float(distinct[0]))
    return np.asarray(values, dtype=np.float64)
