"""Labelled sequences for classification: texts (a table or a folder per class) and numeric
sensor sequences (a long-format table or an .npz), each checked with errors that name the file,
column and rows; and a de-duplicated, stratified split.
"""

from __future__ import annotations

import math
import warnings
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import DataError, DataWarning
from .tables import describe_rows, numeric_column, read_table, require_columns, require_file

__all__ = ["LabelledSequences", "LabelledTexts", "dedup_keys", "dedup_split", "read_sequences",
           "read_texts", "stratified_split"]


@dataclass
class LabelledTexts:
    """Texts and their labels (None where the data has no label column); ``source`` names the
    file for messages."""

    texts: list[str]
    labels: list[str] | None
    source: str


@dataclass
class LabelledSequences:
    """Sequences (T_i, C) float32 with ids, channel names (empty when the file names none),
    labels (or None) and the source."""

    sequences: list[np.ndarray]
    labels: list[str] | None
    ids: list[str]
    channels: tuple[str, ...]
    source: str


def _labels(table: pd.DataFrame, column: str, label: str) -> list[str]:
    values = table[column]
    blank = values.isna().to_numpy() | (values.astype(str).str.strip() == "").to_numpy()
    if blank.any():
        raise DataError(f"{label}: column {column!r} has no label in "
                        f"{describe_rows(np.flatnonzero(blank))}.")
    return [str(v).strip() for v in values]


def read_texts(source, text_col: str = "text", label_col: str | None = "label",
               fallback_encoding: str | None = "latin-1") -> LabelledTexts:
    """Texts from a CSV/Parquet file or DataFrame (``text_col``, ``label_col``), or from a
    folder holding one sub-folder of .txt files per class (the sub-folder names the label).

    Empty or whitespace-only texts are an error naming the rows (or files). Files that are
    not valid UTF-8 are read as ``fallback_encoding`` with a DataWarning (None: an error).
    """
    if not isinstance(source, pd.DataFrame) and Path(source).is_dir():
        return _read_text_folder(Path(source), fallback_encoding)
    table, label = read_table(source, fallback_encoding, text=True)
    require_columns(table, [text_col] + ([label_col] if label_col else []), label,
                    "text" if label_col is None else "text or label")
    raw = table[text_col]
    texts = ["" if isinstance(v, float) and np.isnan(v) else str(v) for v in raw]
    empty = np.flatnonzero([not t.strip() for t in texts])
    if len(empty):
        raise DataError(f"{label}: column {text_col!r} is empty or only whitespace in "
                        f"{describe_rows(empty)}; remove those rows.")
    labels = _labels(table, label_col, label) if label_col else None
    return LabelledTexts(texts, labels, label)


def _read_text_folder(folder: Path, fallback_encoding: str | None) -> LabelledTexts:
    classes = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DataError(f"{folder}: expected one sub-folder of .txt files per class; found "
                        "none.")
    texts, labels, fallback, empty = [], [], [], []
    for cls in classes:
        files = sorted(cls.glob("*.txt"))
        if not files:
            raise DataError(f"{cls}: no .txt files in this class folder.")
        for path in files:
            data = path.read_bytes()
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError as error:
                if fallback_encoding is None:
                    raise DataError(f"{path}: not valid UTF-8 (byte {error.start}).") from error
                text = data.decode(fallback_encoding)
                fallback.append(path.name)
            if not text.strip():
                empty.append(str(path))
            texts.append(text)
            labels.append(cls.name)
    if empty:
        raise DataError(f"{folder}: empty or whitespace-only text in {len(empty)} file(s): "
                        f"{', '.join(empty[:5])}.")
    if fallback:
        warnings.warn(f"{folder}: {len(fallback)} file(s) are not valid UTF-8 (e.g. "
                      f"{fallback[0]}); read as {fallback_encoding}.", DataWarning,
                      stacklevel=3)
    return LabelledTexts(texts, labels, str(folder))


def read_sequences(source, id_col: str | None = None, time_col: str | None = None,
                   channels: tuple[str, ...] = (), label_col: str | None = "label",
                   need_labels: bool = True) -> LabelledSequences:
    """Numeric sequences from a long-format table (one row per sequence id and time step,
    one column per channel, the label repeated on every row) or an .npz file with ``X``
    (N, T, C), ``y`` and optionally ``lengths`` (N,) and ``channels``.

    Channels default to every column but the id, time and label. NaN/inf, text in a
    channel, duplicate (id, time) rows or a label that changes within a sequence is an error
    naming the column and rows.
    """
    if not isinstance(source, pd.DataFrame) and str(source).lower().endswith(".npz"):
        return _read_npz(Path(source), need_labels)
    if id_col is None or time_col is None:
        raise DataError(f"{source}: a long-format table needs --id-col and --time-col.")
    table, label = read_table(source)
    ignored = None  # a label column present but not needed (predict): neither read nor a channel
    if not need_labels:
        ignored = label_col if label_col in table.columns else None
        label_col = None
    needed = [id_col, time_col] + ([label_col] if label_col else []) + list(channels)
    require_columns(table, needed, label, "id, time, label or channel")
    channels, values = _channel_values(table, label, channels,
                                       skip=(id_col, time_col, label_col, ignored))
    if table[id_col].isna().any():
        raise DataError(f"{label}: column {id_col!r} is blank in "
                        f"{describe_rows(np.flatnonzero(table[id_col].isna().to_numpy()))}.")
    duplicated = table.duplicated([id_col, time_col], keep=False).to_numpy()
    if duplicated.any():
        raise DataError(f"{label}: the same ({id_col}, {time_col}) appears twice in "
                        f"{describe_rows(np.flatnonzero(duplicated))}.")
    labels_all = _labels(table, label_col, label) if label_col else None
    order = table.assign(_row=np.arange(len(table))).sort_values([id_col, time_col],
                                                                  kind="stable")
    sequences, labels, ids = [], [] if label_col else None, []
    for key, group in order.groupby(id_col, sort=False):
        rows = group["_row"].to_numpy()
        sequences.append(values[rows].astype(np.float32))
        ids.append(str(key))
        if labels is not None:
            seen = {labels_all[r] for r in rows}
            if len(seen) > 1:
                raise DataError(f"{label}: sequence {key!r} has more than one label "
                                f"({', '.join(sorted(seen))}) in column {label_col!r}.")
            labels.append(labels_all[rows[0]])
    return LabelledSequences(sequences, labels, ids, tuple(channels), label)


def _channel_values(table: pd.DataFrame, label: str, channels: tuple[str, ...],
                    skip: tuple) -> tuple[tuple[str, ...], np.ndarray]:
    """(the channel names, their values (rows, C) float64), checked numeric and finite.

    No ``channels``: every column not in ``skip`` (a stray text column is an error, never
    silently dropped)."""
    named = bool(channels)
    if not channels:
        channels = tuple(str(c) for c in table.columns if c not in skip)
        if not channels:
            raise DataError(f"{label}: no channel columns besides "
                            f"{', '.join(repr(c) for c in skip if c is not None)}.")
    try:
        values = np.stack([numeric_column(table, c, label) for c in channels], axis=1)
    except DataError as error:
        hint = "" if named else " (every column but id, time and label is read as a " \
            "channel; name the channels with --channels)"
        raise DataError(f"{error}{hint}") from error
    bad = ~np.isfinite(values)
    if bad.any():
        rows, cols = np.nonzero(bad)
        raise DataError(f"{label}: column {channels[cols[0]]!r} holds NaN or inf in "
                        f"{describe_rows(np.unique(rows))}; fill or drop them first.")
    return tuple(channels), values


def _read_npz(path: Path, need_labels: bool) -> LabelledSequences:
    label = require_file(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as error:
        raise DataError(f"{label}: cannot read it as an .npz of arrays ({error}).") from error
    if "X" not in arrays:
        raise DataError(f"{label}: no array 'X' (N, T, C); it holds {sorted(arrays)}.")
    X = arrays["X"]
    if X.ndim != 3 or X.shape[0] == 0 or X.shape[1] == 0:
        raise DataError(f"{label}: 'X' must be (N, T, C) with N, T > 0; it is {X.shape}.")
    if not np.issubdtype(X.dtype, np.number):
        raise DataError(f"{label}: 'X' holds {X.dtype}, not numbers.")
    N, T, C = X.shape
    lengths = arrays.get("lengths", np.full(N, T))
    if lengths.shape != (N,) or not np.issubdtype(lengths.dtype, np.integer) or \
            (lengths < 1).any() or (lengths > T).any():
        raise DataError(f"{label}: 'lengths' must be (N,) = ({N},) integers in 1..{T}.")
    sequences = [X[i, :int(n)].astype(np.float32) for i, n in enumerate(lengths)]
    for i, s in enumerate(sequences):
        if not np.isfinite(s).all():
            raise DataError(f"{label}: 'X' holds NaN or inf in sequence {i} (0-based) within "
                            "its length.")
    labels = None
    if "y" in arrays:
        y = arrays["y"]
        if y.shape != (N,):
            raise DataError(f"{label}: 'y' must be (N,) = ({N},); it is {y.shape}.")
        labels = [str(v) for v in y]
    elif need_labels:
        raise DataError(f"{label}: no array 'y' of labels.")
    names = arrays.get("channels")
    if names is not None and names.shape != (C,):
        raise DataError(f"{label}: 'channels' must name the {C} channels of 'X'; it is "
                        f"{names.shape}.")
    channels = () if names is None else tuple(str(c) for c in names)  # () unnamed
    ids = arrays.get("ids")
    ids = [str(v) for v in ids] if ids is not None and ids.shape == (N,) else \
        [str(i) for i in range(N)]
    return LabelledSequences(sequences, labels, ids, channels, label)


def dedup_keys(texts: list[str]) -> list[str]:
    """What makes two texts the same input: the normalised text (case, URLs, @mentions and
    whitespace do not count), as every tokenizer and the n-gram baseline read it."""
    from .text import normalize

    return [normalize(t) for t in texts]


def dedup_split(texts: list[str], labels: list[str], fractions=(0.8, 0.1, 0.1),
                seed: int = 0, source: str = "data") -> tuple[list[int], list[int], list[int]]:
    """Row indices of train / validation / test: one row per distinct text (the first, so a
    text with conflicting labels keeps its first; texts are compared normalised, see
    :func:`dedup_keys`), then a stratified, seeded split (:func:`stratified_split`), so that
    no text sits on two sides."""
    keys = pd.Series(dedup_keys(texts))
    keep = np.flatnonzero(~keys.duplicated().to_numpy())
    y = np.asarray(labels)
    hint = "; give more data, or a test file of its own (--test-data)"
    train_val, test = stratified_split(keep, y[keep], fractions[2], seed, source, "test", hint)
    train, val = stratified_split(train_val, y[train_val], fractions[1] / (1 - fractions[2]),
                                  seed, source, "validation", hint)
    return sorted(train.tolist()), sorted(val.tolist()), sorted(test.tolist())


def stratified_split(rows, labels, size: float, seed: int, source: str, part: str,
                     hint: str = "; give more data") -> tuple[np.ndarray, np.ndarray]:
    """(kept, held out) row numbers: a ``size`` share of ``rows`` held out, stratified over
    the classes with two rows or more, at least one row of each of them on both sides; a
    class with a single row stays on the kept side. ``labels`` is aligned with ``rows``."""
    from sklearn.model_selection import train_test_split

    rows, y = np.asarray(rows), np.asarray(labels)
    values, counts = np.unique(y, return_counts=True)
    single = np.isin(y, values[counts == 1])
    k = int((counts >= 2).sum())
    n_held = max(math.ceil(size * len(rows) - 1e-9), k)  # as sklearn counts a test_size
    if k == 0 or int((~single).sum()) - n_held < k:
        raise DataError(f"{source}: {len(rows)} rows in {len(values)} classes are too few to "
                        f"hold out a {part} part of {n_held} with every class on both "
                        f"sides{hint}.")
    kept, held = train_test_split(rows[~single], test_size=n_held, random_state=seed,
                                  stratify=y[~single])
    return np.concatenate([kept, rows[single]]), held  # in the order sklearn drew them
