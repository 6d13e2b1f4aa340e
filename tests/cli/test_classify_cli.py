"""``lstmkit sentiment|activity ...`` end to end on small files: files, JSON keys, exit codes."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from lstmkit.cli import main

from ..tasks.test_classify import make_sequences, make_texts

FAST_TEXT = ["--hidden-size", "16", "--embedding-dim", "16", "--max-epochs", "6",
             "--min-freq", "1", "--learning-rate", "0.005", "--quiet"]
FAST_SENSORS = ["--hidden-size", "16", "--conv-channels", "8", "--max-epochs", "20", "--quiet"]


@pytest.fixture(scope="module")
def texts_csv(tmp_path_factory):
    folder = tmp_path_factory.mktemp("texts")
    texts, labels = make_texts(240, 0)
    pd.DataFrame({"tweet": texts, "mood": labels}).to_csv(folder / "train.csv", index=False)
    texts, labels = make_texts(60, 1)
    pd.DataFrame({"tweet": texts, "mood": labels}).to_csv(folder / "test.csv", index=False)
    return folder


@pytest.fixture(scope="module")
def sentiment_run(texts_csv, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "sentiment"
    code = main(["sentiment", "train", "--data", str(texts_csv / "train.csv"), "--text-col",
                 "tweet", "--label-col", "mood", "--out", str(out), "--seed", "1", *FAST_TEXT])
    assert code == 0
    return out


def test_sentiment_train_writes_the_run_folder(sentiment_run):
    names = {p.name for p in sentiment_run.iterdir()}
    assert {"config.json", "model.safetensors", "preprocessing.json", "metrics.json",
            "metrics.csv", "confusion_matrix.png", "misclassified.csv", "training_log.csv",
            "training_curves.png", "test.csv"} <= names
    metrics = json.loads((sentiment_run / "metrics.json").read_text())
    assert {"model", "recurrent", "tfidf_logreg", "majority"} <= set(metrics["test"])
    for method in metrics["test"].values():
        assert {"accuracy", "macro_f1", "per_class"} <= set(method)
    assert json.loads((sentiment_run / "config.json").read_text())["seed"] == 1
    assert metrics["test"]["model"]["accuracy"] > metrics["test"]["majority"]["accuracy"]


def test_sentiment_evaluate_reproduces_the_saved_figures(sentiment_run, capsys):
    capsys.readouterr()
    assert main(["sentiment", "evaluate", str(sentiment_run), "--data",
                 str(sentiment_run / "test.csv"), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    saved = json.loads((sentiment_run / "metrics.json").read_text())
    assert printed == saved


def test_sentiment_predict_one_text_and_a_file(sentiment_run, texts_csv, capsys):
    capsys.readouterr()
    assert main(["sentiment", "predict", str(sentiment_run), "what a great flight"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == "text,label,p_negative,p_neutral,p_positive" and len(lines) == 2
    assert main(["sentiment", "predict", str(sentiment_run), "--data",
                 str(texts_csv / "test.csv"), "--text-col", "tweet"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 61 and out[1].startswith("1,")


def test_sentiment_with_test_data_drops_repeated_texts(texts_csv, tmp_path, capsys):
    out = tmp_path / "run"
    train, test = (pd.read_csv(texts_csv / f"{n}.csv") for n in ("train", "test"))
    leaked = pd.concat([train, test.iloc[:10]]).drop_duplicates("tweet")
    leaked.to_csv(tmp_path / "train.csv", index=False)
    assert main(["sentiment", "train", "--data", str(tmp_path / "train.csv"), "--test-data",
                 str(texts_csv / "test.csv"), "--text-col", "tweet", "--label-col", "mood",
                 "--out", str(out), *FAST_TEXT, "--max-epochs", "1",
                 "--no-ngram-ensemble"]) == 0
    assert "dropped 10 training rows" in capsys.readouterr().out
    assert json.loads((out / "metrics.json").read_text())["test"]["model"]["count"] == 60


@pytest.mark.parametrize("args,message", [
    (["--text-col", "text", "--label-col", "mood"], "no text or label column 'text'"),
    (["--text-col", "tweet", "--label-col", "label"], "no text or label column 'label'"),
])
def test_sentiment_bad_columns_exit_2_with_a_message(texts_csv, tmp_path, capsys, args,
                                                     message):
    code = main(["sentiment", "train", "--data", str(texts_csv / "train.csv"), *args,
                 "--out", str(tmp_path / "run"), *FAST_TEXT])
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "run").exists() and not list(tmp_path.glob(".*partial"))


def test_sentiment_unseen_label_and_empty_text(sentiment_run, tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"text": ["good", "bad"], "label": ["positive", "furious"]}).to_csv(bad,
                                                                                     index=False)
    assert main(["sentiment", "evaluate", str(sentiment_run), "--data", str(bad)]) == 2
    assert "'furious' never seen in training" in capsys.readouterr().err
    assert main(["sentiment", "predict", str(sentiment_run), "  "]) == 2
    assert "empty" in capsys.readouterr().err


def _long_csv(path, X, y, prefix="s"):
    rows = []
    for i, (seq, label) in enumerate(zip(X, y, strict=True)):
        for t, (a, b) in enumerate(seq):
            rows.append({"seq": f"{prefix}{i}", "step": t, "ax": a, "ay": b, "activity": label})
    pd.DataFrame(rows).sample(frac=1, random_state=0).to_csv(path, index=False)  # unordered
    return path


@pytest.fixture(scope="module")
def activity_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("activity")
    data = _long_csv(folder / "train.csv", *make_sequences(50, 0))
    out = folder / "run"
    assert main(["activity", "train", "--data", str(data), "--id-col", "seq", "--time-col",
                 "step", "--label-col", "activity", "--out", str(out), *FAST_SENSORS]) == 0
    return out


def test_activity_train_evaluate_predict(activity_run, tmp_path, capsys):
    names = {p.name for p in activity_run.iterdir()}
    assert {"config.json", "model.safetensors", "preprocessing.json", "metrics.json",
            "confusion_matrix.png", "misclassified.csv", "test.npz"} <= names
    saved = json.loads((activity_run / "metrics.json").read_text())
    assert {"model", "majority", "1nn_euclidean", "1nn_dtw"} <= set(saved["test"])
    config = json.loads((activity_run / "config.json").read_text())
    assert config["pooling"] == "mean" and config["bidirectional"] is False  # activity defaults
    capsys.readouterr()
    assert main(["activity", "evaluate", str(activity_run), "--data",
                 str(activity_run / "test.npz"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == saved
    new = _long_csv(tmp_path / "new.csv", *make_sequences(6, 5), prefix="n")
    assert main(["activity", "predict", str(activity_run), "--data", str(new), "--id-col", "seq",
                 "--time-col", "step"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == "id,label,p_flat,p_wave" and len(lines) == 7


def test_activity_channel_mismatch_and_nan_are_named(activity_run, tmp_path, capsys):
    X, y = make_sequences(4, 5)
    frame = pd.read_csv(_long_csv(tmp_path / "x.csv", X, y))
    frame.rename(columns={"ay": "gyro"}).to_csv(tmp_path / "renamed.csv", index=False)
    assert main(["activity", "predict", str(activity_run), "--data",
                 str(tmp_path / "renamed.csv"), "--id-col", "seq", "--time-col", "step"]) == 2
    assert "no id, time, label or channel column 'ay'" in capsys.readouterr().err
    assert main(["activity", "predict", str(activity_run), "--data", str(tmp_path / "x.csv"),
                 "--id-col", "seq", "--time-col", "step", "--channels", "ay,ax"]) == 2
    assert "differ from the model's ax, ay" in capsys.readouterr().err
    frame.loc[3, "ax"] = np.nan
    frame.to_csv(tmp_path / "nan.csv", index=False)
    assert main(["activity", "evaluate", str(activity_run), "--data", str(tmp_path / "nan.csv"),
                 "--id-col", "seq", "--time-col", "step", "--label-col", "activity"]) == 2
    assert "column 'ax' holds NaN or inf in row 4" in capsys.readouterr().err


def test_activity_demo_runs_on_basic_motions(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["activity", "demo", "--out", str(out), "--max-epochs", "3", "--quiet"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test"]["model"]["count"] == 40
    assert metrics["test"]["1nn_dtw"]["accuracy"] == pytest.approx(0.975)


def test_out_that_is_not_a_run_folder_is_never_replaced(texts_csv, tmp_path, capsys):
    keep = tmp_path / "mine"
    keep.mkdir()
    (keep / "notes.txt").write_text("precious")
    for extra in ([], ["--overwrite"]):
        assert main(["sentiment", "train", "--data", str(texts_csv / "train.csv"),
                     "--text-col", "tweet", "--label-col", "mood", "--out", str(keep),
                     *FAST_TEXT, *extra]) == 2
        assert "exists and is not a run folder" in capsys.readouterr().err
    assert (keep / "notes.txt").read_text() == "precious"


def _unnamed_npz(path, X, y) -> None:
    """X padded to (N, T, C) with lengths and labels, and no channel names."""
    padded = np.zeros((len(X), max(len(x) for x in X), X[0].shape[1]), dtype=np.float32)
    for i, x in enumerate(X):
        padded[i, :len(x)] = x
    np.savez(path, X=padded, y=np.array(y), lengths=np.array([len(x) for x in X]))


def test_activity_on_an_unnamed_npz_round_trips(tmp_path, capsys):
    _unnamed_npz(tmp_path / "d.npz", *make_sequences(40, 0))
    out = tmp_path / "run"
    assert main(["activity", "train", "--data", str(tmp_path / "d.npz"), "--out", str(out),
                 *FAST_SENSORS, "--max-epochs", "2"]) == 0
    assert main(["activity", "evaluate", str(out), "--data", str(out / "test.npz")]) == 0
    assert "1nn_dtw" in capsys.readouterr().out


def test_unseen_test_labels_stop_before_training(texts_csv, tmp_path, capsys):
    test = pd.read_csv(texts_csv / "test.csv")
    test.loc[0, "mood"] = "furious"
    test.to_csv(tmp_path / "test.csv", index=False)
    out = tmp_path / "run"
    assert main(["sentiment", "train", "--data", str(texts_csv / "train.csv"), "--test-data",
                 str(tmp_path / "test.csv"), "--text-col", "tweet", "--label-col", "mood",
                 "--out", str(out), *FAST_TEXT]) == 2
    assert "'furious' never occur in the training data" in capsys.readouterr().err
    assert not out.exists()


def test_a_failed_evaluation_keeps_the_trained_run(texts_csv, tmp_path, capsys, monkeypatch):
    from lstmkit.tasks.classify import SequenceClassifier

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(SequenceClassifier, "report", broken)
    out = tmp_path / "run"
    assert main(["sentiment", "train", "--data", str(texts_csv / "train.csv"), "--text-col",
                 "tweet", "--label-col", "mood", "--out", str(out), *FAST_TEXT,
                 "--max-epochs", "1"]) == 2
    assert "trained and saved in" in capsys.readouterr().err
    assert (out / "model.safetensors").is_file() and (out / "config.json").is_file()


def test_unnamed_channels_are_matched_by_count(tmp_path, capsys):
    _unnamed_npz(tmp_path / "d.npz", *make_sequences(40, 0))
    test = _long_csv(tmp_path / "test.csv", *make_sequences(8, 3))
    out = tmp_path / "run"
    assert main(["activity", "train", "--data", str(tmp_path / "d.npz"), "--test-data",
                 str(test), "--id-col", "seq", "--time-col", "step", "--label-col", "activity",
                 "--out", str(out), *FAST_SENSORS, "--max-epochs", "2"]) == 0
    capsys.readouterr()
    assert main(["activity", "predict", str(out), "--data", str(test), "--id-col", "seq",
                 "--time-col", "step", "--label-col", "activity"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 9


def test_the_current_folder_is_never_a_run(texts_csv, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ("config.json", "model.safetensors", "preprocessing.json"):
        (tmp_path / name).write_text("{}")
    assert main(["sentiment", "train", "--data", str(texts_csv / "train.csv"), "--text-col",
                 "tweet", "--label-col", "mood", "--out", ".", "--overwrite", *FAST_TEXT]) == 2
    assert "cannot be a run folder" in capsys.readouterr().err
    assert (tmp_path / "config.json").is_file()


def test_too_small_a_sentencepiece_vocabulary_is_named(texts_csv, tmp_path, capsys):
    assert main(["sentiment", "train", "--data", str(texts_csv / "train.csv"), "--text-col",
                 "tweet", "--label-col", "mood", "--out", str(tmp_path / "r"), *FAST_TEXT,
                 "--tokenizer", "sentencepiece", "--vocab-size", "8"]) == 2
    assert "raise vocab_size (--vocab-size)" in capsys.readouterr().err
