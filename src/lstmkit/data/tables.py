"""Reading a user's table (CSV, Parquet or a DataFrame) with errors that name the file, the
column and the rows, never a pandas traceback."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import DataError

__all__ = ["describe_rows", "numeric_column", "read_table", "require_columns"]


def describe_rows(rows: np.ndarray, limit: int = 5) -> str:
    """'rows 3, 17, 240 (and 12 more)' for 0-based positions, shown 1-based as data rows."""
    shown = ", ".join(str(int(r) + 1) for r in rows[:limit])
    more = f" (and {len(rows) - limit} more)" if len(rows) > limit else ""
    return f"row{'s' if len(rows) > 1 else ''} {shown}{more}"


SOURCE = "lstmkit_source"  # DataFrame.attrs key: the file a table was read from


def read_table(source: str | Path | pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """The table and a label for messages (the file's path, or 'DataFrame').

    A table read from a file carries its path in ``table.attrs``, so that passing the
    DataFrame on (rather than reading the file again) keeps the file's name in messages.
    Rows are numbered from 1 in messages (the first row under the header).
    """
    if isinstance(source, pd.DataFrame):
        label = source.attrs.get(SOURCE, "DataFrame")
        if source.empty:
            raise DataError(f"{label}: it has no rows.")
        return source.reset_index(drop=True), label
    path = Path(source)
    label = str(path)
    if not path.is_file():
        raise DataError(f"{label}: no such file.")
    if path.stat().st_size == 0:
        raise DataError(f"{label}: the file is empty.")
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            table = pd.read_parquet(path)
        else:
            table = pd.read_csv(path, sep=None if path.suffix.lower() == ".tsv" else ",",
                                engine="python" if path.suffix.lower() == ".tsv" else "c")
    except ImportError as error:
        raise DataError(f"{label}: reading Parquet needs pyarrow: pip install "
                        "'lstmkit[parquet]'.") from error
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError,
            ValueError, OSError) as error:
        raise DataError(f"{label}: cannot read it as a table ({error}).") from error
    if table.empty:
        raise DataError(f"{label}: the file has a header but no data rows.")
    table.attrs[SOURCE] = label
    return table, label


def require_columns(table: pd.DataFrame, columns: list[str], label: str, role: str) -> None:
    """Raise DataError naming the missing columns and those that exist."""
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise DataError(f"{label}: no {role} column {', '.join(map(repr, missing))}; the "
                        f"columns are {', '.join(map(repr, map(str, table.columns)))}.")


def numeric_column(table: pd.DataFrame, column: str, label: str) -> np.ndarray:
    """The column as float64; DataError naming the rows that hold text."""
    values = pd.to_numeric(table[column], errors="coerce")
    bad = np.flatnonzero(values.isna().to_numpy() & table[column].notna().to_numpy())
    if len(bad):
        sample = table[column].iloc[bad[0]]
        raise DataError(f"{label}: column {column!r} is not numeric: {describe_rows(bad)} hold "
                        f"text such as {sample!r}.")
    return values.to_numpy(dtype=np.float64)
