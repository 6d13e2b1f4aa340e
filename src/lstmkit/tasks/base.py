"""The contract every application keeps: fit / predict / evaluate / save / load.

A task is a final class (no task subclasses another) holding a frozen config dataclass, the
fitted preprocessing state and its trained torch modules. ``save`` writes a run folder of
``config.json`` + ``model.safetensors`` + ``preprocessing.json`` and ``load`` reads exactly
that, strictly: a missing file, unknown key, newer format or mismatched weights is a
CheckpointError naming the file. Training runs through :class:`lstmkit.train.Trainer`, which
knows nothing of any task.
"""

from __future__ import annotations

import abc
import dataclasses
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from ..config import FORMAT_VERSION, config_from_dict, config_to_dict
from ..errors import CheckpointError
from ..train.checkpoint import CONFIG_FILE, PREPROCESSING_FILE, WEIGHTS_FILE, load_run, save_run

__all__ = ["Task"]


class _FileReader:
    """``files[name]``: the bytes of a file in a run folder, or CheckpointError naming it."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def __getitem__(self, name: str) -> bytes:
        path = self.directory / Path(name).name  # a bare name: never outside the run folder
        if not path.is_file():
            raise CheckpointError(f"{path}: missing; the run folder is incomplete.")
        return path.read_bytes()


class Task(abc.ABC):
    """Base of every application; subclasses set ``config_class`` and ``task_name``."""

    config_class: ClassVar[type]
    task_name: ClassVar[str]

    def __init__(self, config: Any = None, **overrides: Any) -> None:
        if config is None:
            config = self.config_class(**overrides)
        elif overrides:
            config = dataclasses.replace(config, **overrides)
        if not isinstance(config, self.config_class):
            raise TypeError(f"{type(self).__name__} expects a {self.config_class.__name__}, "
                            f"got {type(config).__name__}.")
        self.config = config
        self.model: nn.Module | None = None

    @property
    def is_fitted(self) -> bool:
        return self.model is not None

    def _require_fitted(self) -> None:
        if self.model is None:
            raise RuntimeError(f"{type(self).__name__} is not fitted yet: call fit() or load().")

    @abc.abstractmethod
    def fit(self, data: Any, **kwargs: Any) -> Task:
        """Train on ``data``; returns self."""

    @abc.abstractmethod
    def predict(self, data: Any, **kwargs: Any) -> Any:
        """Predictions for ``data``."""

    @abc.abstractmethod
    def evaluate(self, data: Any, **kwargs: Any) -> dict:
        """``{"test": {"model": {...}, "<baseline>": {...}}}`` on ``data``."""

    @abc.abstractmethod
    def _preprocessing_state(self) -> dict:
        """The fitted preprocessing as JSON-ready data."""

    @abc.abstractmethod
    def _build(self, preprocessing: dict) -> nn.Module:
        """A fresh model for this config and fitted preprocessing (weights to be loaded)."""

    def save(self, directory: str | Path) -> Path:
        """Write config.json, model.safetensors and preprocessing.json; returns the folder."""
        self._require_fitted()
        preprocessing = {"format_version": FORMAT_VERSION, "task": self.task_name,
                         **self._preprocessing_state()}
        save_run(Path(directory), config_to_dict(self.config), self.model.state_dict(),
                 preprocessing, self._extra_files())
        return Path(directory)

    @classmethod
    def load(cls, directory: str | Path) -> Task:
        """Read a folder written by :meth:`save`."""
        directory = Path(directory)
        config_data, weights, preprocessing = load_run(directory)
        where = directory / PREPROCESSING_FILE
        if not isinstance(preprocessing, dict):
            raise CheckpointError(f"{where}: expected a JSON object; the file is corrupt.")
        preprocessing = dict(preprocessing)
        version = preprocessing.pop("format_version", None)
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise CheckpointError(f"{where}: format_version {version!r} is not one this lstmkit "
                                  f"reads (up to {FORMAT_VERSION}); it was written by another "
                                  "version.")
        if preprocessing.pop("task", None) != cls.task_name:
            raise CheckpointError(f"{where}: this run is not a {cls.task_name!r} model.")
        config = config_from_dict(cls.config_class, config_data, str(directory / CONFIG_FILE))
        task = cls(config)
        try:
            task._restore(preprocessing, _FileReader(directory))
        except CheckpointError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError, RuntimeError) as error:
            raise CheckpointError(f"{where}: unreadable preprocessing ({error!r}); the file is "
                                  "corrupt or from another version.") from error
        try:
            model = task._build(preprocessing)
            model.load_state_dict(weights, strict=True)
        except (KeyError, TypeError, RuntimeError, ValueError) as error:
            raise CheckpointError(f"{directory / WEIGHTS_FILE}: does not match "
                                  f"{CONFIG_FILE} and the preprocessing ({error}).") from error
        task.model = model.eval()
        return task

    @abc.abstractmethod
    def _restore(self, preprocessing: dict, files: _FileReader) -> None:
        """Set the fitted preprocessing from its saved form (and the files written by
        :meth:`_extra_files`, read through ``files[name]``)."""

    def _extra_files(self) -> dict[str, bytes]:
        """Data files the fitted preprocessing needs beside preprocessing.json (none here)."""
        return {}

    @staticmethod
    def _device() -> torch.device:
        return torch.device("cpu")
