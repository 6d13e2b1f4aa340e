"""Command-line flags generated from a config dataclass: ``hidden_size`` -> ``--hidden-size``.

Flags default to None so that only what the user typed overrides ``--config run.json`` (the
``config.json`` that ``save`` writes), which in turn overrides the dataclass defaults.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from pathlib import Path

from ..config import config_from_dict, read_json

__all__ = ["add_config_flags", "config_from_args", "split_list"]


def split_list(text: str | None) -> tuple[str, ...]:
    """'a, b,,c' -> ('a', 'b', 'c'); None or '' -> ()."""
    return tuple(part.strip() for part in text.split(",") if part.strip()) if text else ()


def _parse_tuple(item_type):
    def parse(text: str):
        try:
            return tuple(item_type(part) for part in text.split(",") if part.strip())
        except ValueError as error:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list of "
                                              f"{item_type.__name__}: {error}") from error
    return parse


def add_config_flags(parser: argparse.ArgumentParser, config_class: type,
                     defaults: dict | None = None) -> None:
    """One flag per field, with its help text and default shown (``defaults`` overrides the
    dataclass's, as :func:`config_from_args` does with the same dict)."""
    defaults = defaults or {}
    group = parser.add_argument_group(f"model settings ({config_class.__name__}; override "
                                      "--config)")
    group.add_argument("--config", type=Path, help="read settings from this JSON file "
                                                   "(a run's config.json); flags override it")
    hints = typing.get_type_hints(config_class)
    for f in dataclasses.fields(config_class):
        flag = "--" + f.name.replace("_", "-")
        hint = hints[f.name]
        text = f"{f.metadata.get('help', '')} (default: {_show(defaults.get(f.name, f.default))})"
        if hint is bool:
            group.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction,
                               default=None, help=text)
        elif typing.get_origin(hint) is tuple:
            (item,) = set(typing.get_args(hint)) - {Ellipsis}
            group.add_argument(flag, dest=f.name, type=_parse_tuple(item), default=None,
                               metavar="A,B", help=text)
        else:
            group.add_argument(flag, dest=f.name, type=hint, default=None, help=text)


def _show(value) -> str:
    return ",".join(map(str, value)) if isinstance(value, tuple) else str(value)


def config_from_args(config_class: type, args: argparse.Namespace,
                     defaults: dict | None = None):
    """Defaults (the dataclass's, then ``defaults``) <- --config file <- flags given on the
    command line."""
    data = dict(defaults or {})
    if getattr(args, "config", None) is not None:
        settings = read_json(args.config)
        if not isinstance(settings, dict):
            raise ValueError(f"{args.config}: expected a JSON object of settings.")
        data.update(settings)
    for f in dataclasses.fields(config_class):
        value = getattr(args, f.name, None)
        if value is not None:
            data[f.name] = list(value) if isinstance(value, tuple) else value
    source = str(args.config) if getattr(args, "config", None) else "command line"
    return config_from_dict(config_class, data, source)
