"""Data preparation: tables, series, windows, scalers and the shipped data sets."""
