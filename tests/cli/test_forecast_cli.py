"""``lstmkit forecast ...`` end to end on a small CSV: files, JSON keys, exit codes, messages."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest

from lstmkit.cli import main
from lstmkit.data.datasets import seattle_weather

FAST = ["--hidden-size", "16", "--max-epochs", "4", "--ensemble-size", "1", "--no-refit",
        "--quiet"]
DATA = ["--time", "date", "--target", "temp_max", "--covariates", "temp_min,weather"]


@pytest.fixture(scope="module")
def csv(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "weather.csv"
    seattle_weather().iloc[-500:].to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def run_dir(csv, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "run"
    assert main(["forecast", "train", "--data", str(csv), *DATA, "--out", str(out), *FAST]) == 0
    return out


def test_train_writes_the_run_folder(run_dir, capsys):
    names = {p.name for p in run_dir.iterdir()}
    assert {"config.json", "model.safetensors", "preprocessing.json", "metrics.json",
            "metrics.csv", "training_log.csv", "test_predictions.csv", "forecast_test.png",
            "training_curves.png"} <= names
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert set(metrics["test"]) == {"model", "persistence", "seasonal_naive", "moving_average",
                                    "linear"}
    assert {"mae", "rmse", "mape", "smape", "mase"} <= set(metrics["test"]["model"])
    assert json.loads((run_dir / "config.json").read_text())["hidden_size"] == 16


def test_evaluate_json_reproduces_the_saved_metrics(run_dir, csv, capsys):
    saved = json.loads((run_dir / "metrics.json").read_text())
    test_start = pd.read_csv(run_dir / "test_predictions.csv")["time"].iloc[0]
    assert main(["forecast", "evaluate", str(run_dir), "--data", str(csv), "--test-start",
                 test_start, "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["test"]["model"]["mae"] == pytest.approx(saved["test"]["model"]["mae"],
                                                            rel=1e-12)


def test_predict_prints_csv(run_dir, csv, capsys):
    assert main(["forecast", "predict", str(run_dir), "--data", str(csv)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == "date,forecast" and lines[1].startswith("2016-01-01")


def test_config_file_and_flags(run_dir, csv, tmp_path, capsys):
    out = tmp_path / "again"
    assert main(["forecast", "train", "--data", str(csv), *DATA, "--out", str(out), "--config",
                 str(run_dir / "config.json"), "--lookback", "5", "--quiet"]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["hidden_size"] == 16 and config["lookback"] == 5 and not config["refit"]


def test_an_existing_run_is_not_overwritten(run_dir, csv, capsys):
    before = (run_dir / "model.safetensors").read_bytes()
    assert main(["forecast", "train", "--data", str(csv), *DATA, "--out", str(run_dir),
                 *FAST]) == 2
    assert "already holds a trained model" in capsys.readouterr().err
    assert (run_dir / "model.safetensors").read_bytes() == before


@pytest.mark.parametrize("args,message", [
    (["--data", "missing.csv", *DATA], "missing.csv: no such file"),
    (["--time", "date", "--target", "temp_mean"], "no such column 'temp_mean'"),
    (["--time", "date", "--target", "weather"], "column 'weather' is not numeric"),
])
def test_bad_input_exits_with_one_clear_line(csv, tmp_path, capsys, args, message):
    if "--data" not in args:
        args = ["--data", str(csv), *args]
    assert main(["forecast", "train", *args, "--out", str(tmp_path / "r"), *FAST]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r" / "config.json").exists()


def test_a_broken_run_folder_is_named(run_dir, csv, tmp_path, capsys):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text((run_dir / "config.json").read_text())
    assert main(["forecast", "evaluate", str(broken), "--data", str(csv)]) == 2
    assert "missing model.safetensors, preprocessing.json" in capsys.readouterr().err


def test_console_script_runs_without_traceback(tmp_path):
    done = subprocess.run([sys.executable, "-m", "lstmkit.cli", "forecast", "evaluate",
                           str(tmp_path / "nope"), "--data", "x.csv"], capture_output=True,
                          text=True)
    assert done.returncode == 2 and "no such run folder" in done.stderr
    assert "Traceback" not in done.stderr


def test_errors_name_the_file_and_nothing_is_saved_before_the_test_part_is_checked(
        csv, tmp_path, capsys):
    out = tmp_path / "late"
    assert main(["forecast", "train", "--data", str(csv), *DATA, "--test-start", "2017-01-01",
                 "--out", str(out), *FAST]) == 2
    err = capsys.readouterr().err
    assert str(csv) in err and "no series has 1 time step" in err
    assert not out.exists() and not list(tmp_path.glob(".*partial"))


def test_overwrite_replaces_the_whole_run(run_dir, csv, tmp_path, capsys):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    (copy / "stale.txt").write_text("from the old run")
    assert main(["forecast", "train", "--data", str(csv), *DATA, "--out", str(copy),
                 "--overwrite", *FAST, "--hidden-size", "8"]) == 0
    assert not (copy / "stale.txt").exists()
    assert json.loads((copy / "config.json").read_text())["hidden_size"] == 8


def test_evaluate_json_is_strict_json(run_dir, csv, capsys):
    assert main(["forecast", "evaluate", str(run_dir), "--data", str(csv), "--json"]) == 0
    text = capsys.readouterr().out
    metrics = json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in JSON"))
    assert "linear" in metrics["test"]
