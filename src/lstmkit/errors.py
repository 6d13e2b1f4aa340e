"""The errors a user catches: each names the file, column, row, shape or value at fault."""

from __future__ import annotations

__all__ = ["CheckpointError", "DataError", "DataWarning", "LstmkitError"]


class LstmkitError(Exception):
    """Base of lstmkit's own errors; the command line prints these without a traceback."""


class DataError(LstmkitError, ValueError):
    """Input data that cannot be used as given (missing column, NaN, too short, ...)."""


class CheckpointError(LstmkitError, ValueError):
    """A saved model that is missing a file, corrupt, or written by an incompatible version."""


class DataWarning(UserWarning):
    """Data that was usable only after a stated change (e.g. read as latin-1, not UTF-8)."""
