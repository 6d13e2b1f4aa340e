"""Run folders: safetensors weights plus JSON config and preprocessing, written atomically.

Never pickles: ``model.safetensors`` holds tensors only and JSON holds everything else, so
loading a run executes no code from it. Every file is written to a temporary name and renamed
into place, so an interrupted save leaves the previous files whole.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..config import read_json, write_json
from ..errors import CheckpointError

__all__ = ["CONFIG_FILE", "PREPROCESSING_FILE", "WEIGHTS_FILE", "load_run", "save_run"]

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
PREPROCESSING_FILE = "preprocessing.json"


def save_run(directory: Path, config: dict, weights: dict[str, torch.Tensor],
             preprocessing: dict, extra_files: dict[str, bytes] | None = None) -> None:
    """Write config.json, model.safetensors and preprocessing.json into ``directory``, and
    the data files a fitted preprocessing needs beside them (e.g. a sentencepiece model)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for name, data in (extra_files or {}).items():
        tmp = directory / f".{name}.tmp"
        tmp.write_bytes(data)
        tmp.replace(directory / name)
    tensors = {k: v.detach().cpu().contiguous() for k, v in weights.items()}
    tmp = directory / f".{WEIGHTS_FILE}.tmp"
    save_file(tensors, str(tmp), metadata={"format": "pt"})
    tmp.replace(directory / WEIGHTS_FILE)
    write_json(directory / PREPROCESSING_FILE, preprocessing)
    write_json(directory / CONFIG_FILE, config)  # last: its presence marks a complete run


def load_run(directory: Path) -> tuple[dict, dict[str, torch.Tensor], dict]:
    """Read a run folder: (config dict, weights, preprocessing dict), or CheckpointError."""
    directory = Path(directory)
    if not directory.is_dir():
        raise CheckpointError(f"{directory}: no such run folder.")
    missing = [name for name in (CONFIG_FILE, WEIGHTS_FILE, PREPROCESSING_FILE)
               if not (directory / name).is_file()]
    if missing:
        raise CheckpointError(f"{directory}: the run folder is missing {', '.join(missing)}; "
                              "it was not written completely or was written by something else.")
    config = read_json(directory / CONFIG_FILE)
    preprocessing = read_json(directory / PREPROCESSING_FILE)
    try:
        weights = load_file(str(directory / WEIGHTS_FILE))
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"{directory / WEIGHTS_FILE}: cannot read the weights ({error}); "
                              "the file is corrupt.") from error
    return config, weights, preprocessing
