"""Run folders: safetensors + JSON, atomic, strict on reading."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from lstmkit.config import FORMAT_VERSION, config_from_dict, config_to_dict
from lstmkit.errors import CheckpointError
from lstmkit.tasks.forecast import ForecastConfig
from lstmkit.train.checkpoint import load_run, save_run


def test_round_trip(tmp_path):
    weights = {"a": torch.randn(3, 4), "b": torch.arange(5)}
    save_run(tmp_path, {"x": 1}, weights, {"y": [1, 2]})
    config, loaded, pre = load_run(tmp_path)
    assert config == {"x": 1} and pre == {"y": [1, 2]}
    assert torch.equal(loaded["a"], weights["a"]) and torch.equal(loaded["b"], weights["b"])
    assert not list(tmp_path.glob(".*.tmp"))  # temporary files renamed into place


def test_missing_and_corrupt_files(tmp_path):
    save_run(tmp_path, {}, {"a": torch.zeros(2)}, {})
    (tmp_path / "model.safetensors").write_bytes(b"\x00garbage")
    with pytest.raises(CheckpointError, match="model.safetensors: cannot read the weights"):
        load_run(tmp_path)
    (tmp_path / "preprocessing.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="preprocessing.json: not valid JSON"):
        load_run(tmp_path)
    (tmp_path / "config.json").unlink()
    with pytest.raises(CheckpointError, match="the run folder is missing config.json"):
        load_run(tmp_path)


def test_config_json_is_strict():
    config = ForecastConfig(hidden_size=8, calendar=("month",))
    data = config_to_dict(config)
    assert data["format_version"] == FORMAT_VERSION
    assert config_from_dict(ForecastConfig, data) == config
    with pytest.raises(CheckpointError, match=r"run.json: unknown key\(s\) hiden_size"):
        config_from_dict(ForecastConfig, {"hiden_size": 8}, "run.json")
    with pytest.raises(CheckpointError, match="key 'hidden_size' must be int, got '8'"):
        config_from_dict(ForecastConfig, {"hidden_size": "8"})
    with pytest.raises(CheckpointError, match="written by a newer lstmkit"):
        config_from_dict(ForecastConfig, {"format_version": FORMAT_VERSION + 1})
    with pytest.raises(CheckpointError, match="cell='rnn': choose one of lstm, gru"):
        config_from_dict(ForecastConfig, {"cell": "rnn"})
    assert dataclasses.is_dataclass(config)
