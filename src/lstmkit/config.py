"""Frozen dataclass configs to and from JSON: the single source of truth of a model's settings.

Each task's config is a ``@dataclass(frozen=True)`` whose fields carry a one-line help text in
``field(metadata={"help": ...})``; the same class builds the model, is written as
``config.json`` beside the weights, and generates the command line's flags
(``lstmkit.cli._flags``). Reading is strict: unknown keys, wrong types and a newer
``format_version`` raise :class:`~lstmkit.errors.CheckpointError` naming the file and key.
"""

from __future__ import annotations

import dataclasses
import json
import math
import typing
from pathlib import Path
from typing import Any, TypeVar

from .errors import CheckpointError

__all__ = ["FORMAT_VERSION", "check_settings", "config_from_dict", "config_to_dict", "json_safe",
           "read_json", "write_json"]

FORMAT_VERSION = 1  # bump when a saved file's meaning changes; readers decide how to upgrade

C = TypeVar("C")


def config_to_dict(config: Any) -> dict[str, Any]:
    """The config as JSON-ready values (tuples become lists), with ``format_version``."""
    values = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
    values = {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}
    return {"format_version": FORMAT_VERSION, **values}


def config_from_dict(cls: type[C], data: dict[str, Any], source: str = "config") -> C:
    """Build ``cls`` from a dict written by :func:`config_to_dict` (or a user's JSON file).

    Missing keys take their defaults; unknown keys and values of the wrong type raise
    CheckpointError naming ``source`` and the key. Field validation is the class's own
    ``__post_init__``; its ValueError is re-raised with ``source`` in front.
    """
    if not isinstance(data, dict):
        raise CheckpointError(f"{source}: expected a JSON object of settings, got "
                              f"{type(data).__name__}.")
    data = dict(data)
    version = data.pop("format_version", FORMAT_VERSION)
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(f"{source}: format_version {version!r} was written by a newer "
                              f"lstmkit (this one reads up to {FORMAT_VERSION}); upgrade lstmkit.")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise CheckpointError(f"{source}: unknown key(s) {', '.join(unknown)} for "
                              f"{cls.__name__}; known keys: {', '.join(sorted(known))}.")
    values = {}
    for key, value in data.items():
        values[key] = _coerce(hints[key], value, f"{source}: key {key!r}")
    try:
        return cls(**values)
    except ValueError as error:
        raise CheckpointError(f"{source}: {error}") from error


def _coerce(hint: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise CheckpointError(f"{where} must be a list, got {value!r}.")
        (item,) = set(typing.get_args(hint)) - {Ellipsis}
        return tuple(_coerce(item, v, where) for v in value)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in (int, float, str, bool) and not (isinstance(value, hint) and
                                                 (hint is bool or not isinstance(value, bool))):
        raise CheckpointError(f"{where} must be {hint.__name__}, got {value!r}.")
    return value


def json_safe(value: Any) -> Any:
    """JSON has no NaN or infinity: such figures become null (nested dicts and lists too)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically: to a temporary file beside ``path``, then rename over it."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(json_safe(data), indent=2, allow_nan=False) + "\n",
                   encoding="utf-8")
    tmp.replace(path)


def read_json(path: Path) -> Any:
    """Read a JSON file, or raise CheckpointError naming the file and what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: file is missing.")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{path}: not valid JSON ({error}); the file is corrupt.") from error


def check_settings(config: Any, at_least_one: tuple[str, ...] = (),
                   choices: dict[str, tuple[str, ...]] | None = None,
                   probabilities: tuple[str, ...] = ()) -> None:
    """The checks every task config shares, as ValueErrors naming the setting: counts >= 1,
    names among their choices, probabilities in [0, 1)."""
    for name in at_least_one:
        if getattr(config, name) < 1:
            raise ValueError(f"{name}={getattr(config, name)} must be at least 1.")
    for name, allowed in (choices or {}).items():
        if getattr(config, name) not in allowed:
            raise ValueError(f"{name}={getattr(config, name)!r}: choose one of "
                             f"{', '.join(allowed)}.")
    for name in probabilities:
        if not 0 <= getattr(config, name) < 1:
            raise ValueError(f"{name}={getattr(config, name)} must be in [0, 1).")
