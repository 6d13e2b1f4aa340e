"""Reading a user's table (CSV, Parquet or a DataFrame) with errors that name the file, the
column and the rows, never a pandas traceback."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import DataError, DataWarning

__all__ = ["describe_rows", "numeric_column", "read_table", "require_columns", "require_file"]


def describe_rows(rows: np.ndarray, limit: int = 5) -> str:
    """'rows 3, 17, 240 (and 12 more)' for 0-based positions, shown 1-based as data rows."""
    shown = ", ".join(str(int(r) + 1) for r in rows[:limit])
    more = f" (and {len(rows) - limit} more)" if len(rows) > limit else ""
    return f"row{'s' if len(rows) > 1 else ''} {shown}{more}"


SOURCE = "lstmkit_source"  # DataFrame.attrs key: the file a table was read from


def read_table(source: str | Path | pd.DataFrame, fallback_encoding: str | None = None,
               text: bool = False) -> tuple[pd.DataFrame, str]:
    """The table and a label for messages (the file's path, or 'DataFrame').

    A table read from a file carries its path in ``table.attrs``, so that passing the
    DataFrame on (rather than reading the file again) keeps the file's name in messages.
    Rows are numbered from 1 in messages (the first row under the header). A CSV that is not
    valid UTF-8 is an error, or, with ``fallback_encoding`` (e.g. "latin-1"), read in that
    encoding with a :class:`DataWarning` saying so. ``text=True`` reads every cell as the
    text it is ("NA", "null", "007" stay so); only empty cells are missing.
    """
    if isinstance(source, pd.DataFrame):
        label = source.attrs.get(SOURCE, "DataFrame")
        if source.empty:
            raise DataError(f"{label}: it has no rows.")
        return source.reset_index(drop=True), label
    path = Path(source)
    label = require_file(path)
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            table = pd.read_parquet(path)
        else:
            table = _read_csv(path, label, fallback_encoding,
                              na=dict(keep_default_na=False, na_values=[""], dtype=str)
                              if text else {})
    except DataError:
        raise
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


def require_file(path: Path) -> str:
    """The path as a label for messages; DataError if it is missing or empty."""
    label = str(path)
    if not path.is_file():
        raise DataError(f"{label}: no such file.")
    if path.stat().st_size == 0:
        raise DataError(f"{label}: the file is empty.")
    return label


def _read_csv(path: Path, label: str, fallback_encoding: str | None, encoding: str = "utf-8",
              na: dict | None = None) -> pd.DataFrame:
    tsv = path.suffix.lower() == ".tsv"
    options = dict(sep="\t" if tsv else ",", **(na or {}))
    try:
        try:
            return pd.read_csv(path, encoding=encoding, **options)
        except pd.errors.ParserError:
            # pandas' C parser fails on a carriage return inside a quoted field (valid CSV;
            # texts copied from the web hold them): read lines split at \n only, and drop
            # the \r that ends each line of a CRLF file.
            table = pd.read_csv(path, encoding=encoding, lineterminator="\n", **options)
            last = table.columns[-1]
            if isinstance(last, str) and last.endswith("\r"):
                table = table.rename(columns={last: last[:-1]})
                column = table[last[:-1]]
                if column.dtype == object or pd.api.types.is_string_dtype(column):
                    table[last[:-1]] = column.str.removesuffix("\r")
            return table
    except UnicodeDecodeError as error:
        if fallback_encoding is None:
            raise DataError(f"{label}: not valid UTF-8 (byte {error.start}: "
                            f"{error.object[error.start:error.start + 1]!r}); re-save it as "
                            "UTF-8.") from error
        warnings.warn(f"{label}: not valid UTF-8 (byte {error.start}); read as "
                      f"{fallback_encoding}.", DataWarning, stacklevel=3)
        return _read_csv(path, label, None, fallback_encoding, na)


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
