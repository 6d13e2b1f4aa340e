"""Run folders on the command line: where a run goes, and writing it whole or not at all."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from ..errors import DataError
from ..train.checkpoint import CONFIG_FILE, PREPROCESSING_FILE, WEIGHTS_FILE

__all__ = ["add_run_dir_verb", "add_run_flags", "out_dir", "write_run"]

T = TypeVar("T")
RUN_FILES = (CONFIG_FILE, WEIGHTS_FILE, PREPROCESSING_FILE)  # what makes a folder a run


def add_run_flags(parser) -> None:
    parser.add_argument("--out", type=Path, help="run folder (default runs/<name>-<time>)")
    parser.add_argument("--overwrite", action="store_true", help="replace a run in --out")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def add_run_dir_verb(verbs, name: str, help: str, data_help: str, run, json: bool = False,
                     data_required: bool = True):
    """A verb that reads a saved run and a data file: ``<name> RUN_DIR --data FILE
    [--json]``; returns its parser for the task's own flags."""
    parser = verbs.add_parser(name, help=help)
    parser.add_argument("run_dir", type=Path, help="a run folder written by train")
    parser.add_argument("--data", required=data_required, help=data_help)
    if json:
        parser.add_argument("--json", action="store_true", help="print metrics as JSON")
    parser.set_defaults(run=run)
    return parser


def out_dir(args, prefix: str) -> Path:
    """--out, or runs/<prefix>-<time>. Refuses to replace a run (a folder holding config.json,
    model.safetensors and preprocessing.json) without --overwrite, and any other existing
    file or non-empty folder at all (it is not ours to delete)."""
    out = args.out or Path("runs") / f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}"
    here = Path.cwd().resolve()
    if out.resolve() == here or out.resolve() in here.parents:
        raise DataError(f"{out}: the current folder or one above it cannot be a run folder; "
                        "choose a new --out.")
    if all((out / name).is_file() for name in RUN_FILES):
        if not args.overwrite:
            raise DataError(f"{out}: already holds a trained model; choose another --out or "
                            "pass --overwrite to replace it.")
    elif out.is_file() or (out.is_dir() and any(out.iterdir())):
        raise DataError(f"{out}: exists and is not a run folder; choose a new --out (a run "
                        "is written to a folder of its own).")
    return out


def write_run(out: Path, build: Callable[[Path], T]) -> T:
    """Call ``build(folder)`` on a hidden folder beside ``out`` and move it into place only
    when it returns, so that a failure or Ctrl-C never leaves half a run or destroys an old
    one. Returns what ``build`` returned."""
    partial = out.parent / f".{out.name}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        result = build(partial)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    try:
        if out.exists():
            old = out.parent / f".{out.name}.old"
            shutil.rmtree(old, ignore_errors=True)
            out.rename(old)
            partial.rename(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            partial.rename(out)
    except OSError as error:
        raise DataError(f"{out}: cannot move the finished run into place ({error}); it is "
                        f"complete in {partial}.") from error
    print(f"\nrun folder: {out}")
    return result
