"""Series checks: each bad input is a DataError naming the file, column and rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lstmkit.data.series import SeriesColumns, load_series
from lstmkit.data.tables import read_table
from lstmkit.errors import DataError

COLUMNS = SeriesColumns("date", "y", ("x", "kind"))


def frame(n: int = 10) -> pd.DataFrame:
    return pd.DataFrame({"date": pd.date_range("2020-01-01", periods=n, freq="D").astype(str),
                         "y": np.arange(n, dtype=float), "x": np.ones(n),
                         "kind": ["a", "b"] * (n // 2)})


def test_a_clean_table_loads():
    (one,), freq = load_series(frame(), "t.csv", COLUMNS)
    assert freq == "D" and one.target.shape == (10,) and one.numeric.shape == (10, 1)
    assert one.categorical["kind"][:2].tolist() == ["a", "b"]


@pytest.mark.parametrize("edit,message", [
    (lambda f: f.drop(columns="y"), r"t.csv: no such column 'y'; the columns are"),
    (lambda f: f.assign(y=["1", "2", "x"] + ["4"] * 7),
     r"t.csv: column 'y' is not numeric: row 3 hold text such as 'x'"),
    (lambda f: f.assign(y=[1.0, np.nan, 3, np.nan] + [1.0] * 6),
     r"t.csv: column 'y' has 2 NaN value\(s\) at rows 2, 4; fill them or pass --fill-na"),
    (lambda f: f.assign(x=[1.0, np.inf] + [1.0] * 8),
     r"column 'x' has 1 NaN/inf value\(s\) at row 2"),
    (lambda f: f.iloc[[0, 1, 1, 2, 3, 4]].reset_index(drop=True),
     r"duplicate timestamp 2020-01-02 00:00:00 at rows 2 and 3"),
    (lambda f: f.iloc[[0, 2, 1, 3, 4, 5]].reset_index(drop=True),
     r"timestamps are not in order: row 3 \(2020-01-02 00:00:00\) comes after row 2"),
    (lambda f: f.drop(index=[4, 5]).reset_index(drop=True),
     r"2 time step\(s\) missing from the D grid, the first 2020-01-05"),
    (lambda f: f.assign(date=["2020-01-01", "soon"] + list(f.date[2:])),
     r"time column 'date' does not parse as dates at row 2 \(e.g. 'soon'\)"),
])
def test_bad_input_names_the_problem(edit, message):
    with pytest.raises(DataError, match=message):
        load_series(edit(frame()), "t.csv", COLUMNS)


def test_fill_policy_fills_gaps_and_nan():
    table = frame().drop(index=[4]).reset_index(drop=True)
    table.loc[1, "y"] = np.nan
    (one,), _ = load_series(table, "t.csv", COLUMNS, fill_na="interpolate")
    assert len(one.times) == 10 and np.isfinite(one.target).all()
    assert one.target[1] == 1.0 and one.target[4] == 4.0  # interpolated between neighbours


def test_static_must_be_constant_per_series():
    table = pd.concat([frame().assign(id="s1", size=1.0), frame().assign(id="s2", size=2.0)])
    table.loc[table.index[3], "size"] = 9.0
    columns = SeriesColumns("date", "y", (), "id", ("size",))
    with pytest.raises(DataError, match="series 's1': static column 'size' takes 2 values"):
        load_series(table, "t.csv", columns)


def test_files(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        read_table(tmp_path / "missing.csv")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(DataError, match="empty.csv: the file is empty"):
        read_table(tmp_path / "empty.csv")
    (tmp_path / "header.csv").write_text("date,y\n")
    with pytest.raises(DataError, match="a header but no data rows"):
        read_table(tmp_path / "header.csv")
    frame().to_parquet(tmp_path / "t.parquet")
    table, label = read_table(tmp_path / "t.parquet")
    assert len(table) == 10 and label.endswith("t.parquet")
