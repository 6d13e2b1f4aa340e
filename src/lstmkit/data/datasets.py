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
