"""SequenceClassifier on small synthetic data: it learns, saves, reloads, and refuses bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lstmkit.errors import CheckpointError, DataError
from lstmkit.tasks.classify import ClassifierNet, ClassifyConfig, SequenceClassifier

FILLER = "the a flight seat crew bag time day my our was is and on".split()
MOOD = {"positive": "good great love excellent lovely".split(),
        "negative": "bad awful hate terrible worst".split(), "neutral": []}


def make_texts(n: int, seed: int):
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for i in range(n):
        label = ["positive", "negative", "neutral"][i % 3]
        words = list(rng.choice(FILLER, size=rng.integers(3, 12)))
        if MOOD[label]:
            words.insert(rng.integers(0, len(words)), rng.choice(MOOD[label]))
        texts.append(" ".join(words))
        labels.append(label)
    return texts, labels


def make_sequences(n: int, seed: int, channels: int = 2):
    """Class 'wave' oscillates, class 'flat' drifts; lengths 15-30."""
    rng = np.random.default_rng(seed)
    X, y = [], []
    for i in range(n):
        T = int(rng.integers(15, 31))
        t = np.arange(T)[:, None]
        if i % 2:
            x = np.sin(t * 0.9 + rng.uniform(0, 6)) + 0.3 * rng.normal(size=(T, channels))
            y.append("wave")
        else:
            x = 0.05 * t * rng.uniform(-1, 1) + 0.3 * rng.normal(size=(T, channels))
            y.append("flat")
        X.append(x.astype(np.float32))
    return X, y


TEXT = dict(hidden_size=16, embedding_dim=16, max_epochs=12, patience=12, batch_size=16,
            min_freq=1, learning_rate=5e-3)
SENSORS = dict(hidden_size=16, bidirectional=False, pooling="mean", conv_channels=8,
               max_epochs=25, patience=25, batch_size=8, learning_rate=5e-3)


@pytest.fixture(scope="module")
def text_run(tmp_path_factory):
    texts, labels = make_texts(300, 0)
    clf = SequenceClassifier(**TEXT).fit(texts, labels, quiet=True)
    folder = tmp_path_factory.mktemp("text") / "run"
    clf.save(folder)
    return clf, folder


@pytest.fixture(scope="module")
def sensor_run(tmp_path_factory):
    X, y = make_sequences(60, 0)
    clf = SequenceClassifier(**SENSORS).fit(X, y, channels=("x", "y"), quiet=True)
    folder = tmp_path_factory.mktemp("sensors") / "run"
    clf.save(folder)
    return clf, folder


def test_the_same_seed_trains_the_same_model():
    texts, labels = make_texts(60, 0)
    runs = [SequenceClassifier(**{**TEXT, "max_epochs": 2}).fit(texts, labels, quiet=True)
            for _ in range(2)]
    np.testing.assert_array_equal(runs[0].predict_proba(texts), runs[1].predict_proba(texts))


def test_text_model_beats_the_majority_class_and_reports_the_baselines(text_run):
    clf, _ = text_run
    metrics = clf.evaluate(*make_texts(150, 1))
    test = metrics["test"]
    assert set(test) == {"model", "recurrent", "tfidf_logreg", "majority"}
    assert test["majority"]["accuracy"] == pytest.approx(1 / 3, abs=0.01)
    assert test["recurrent"]["accuracy"] > 0.6
    assert test["model"]["macro_f1"] > test["majority"]["macro_f1"] + 0.3
    assert set(test["model"]["per_class"]) == {"negative", "neutral", "positive"}
    assert np.asarray(test["model"]["confusion_matrix"]).sum() == 150
    assert 0 <= metrics["unknown_token_rate"] < 0.05


def test_a_saved_text_run_reevaluates_to_the_same_figures(text_run):
    clf, folder = text_run
    texts, labels = make_texts(90, 2)
    again = SequenceClassifier.load(folder)
    assert again.evaluate(texts, labels) == clf.evaluate(texts, labels)
    p = again.predict_proba(texts[:5])
    np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-9)
    assert list(again.predict(texts[:5])) == list(clf.predict(texts[:5]))


def test_sensor_model_beats_majority_and_the_run_reloads(sensor_run):
    clf, folder = sensor_run
    X, y = make_sequences(40, 1)
    metrics = clf.evaluate(X, y)["test"]
    assert set(metrics) == {"model", "majority", "1nn_euclidean", "1nn_dtw"}
    assert metrics["model"]["accuracy"] >= 0.8 > metrics["majority"]["accuracy"]
    again = SequenceClassifier.load(folder)
    assert again.channels == ("x", "y")
    assert again.evaluate(X, y)["test"] == metrics


def test_sentencepiece_runs_keep_their_model_file(tmp_path):
    texts, labels = make_texts(150, 0)
    clf = SequenceClassifier(**{**TEXT, "max_epochs": 1}, tokenizer="sentencepiece",
                             vocab_size=60).fit(texts, labels, quiet=True)
    clf.save(tmp_path / "run")
    assert (tmp_path / "run" / "sentencepiece.model").is_file()
    again = SequenceClassifier.load(tmp_path / "run")
    np.testing.assert_allclose(again.predict_proba(texts[:4]), clf.predict_proba(texts[:4]))
    (tmp_path / "run" / "sentencepiece.model").unlink()
    with pytest.raises(CheckpointError, match="sentencepiece.model: missing"):
        SequenceClassifier.load(tmp_path / "run")


@pytest.mark.parametrize("pooling", ["last", "mean", "max", "attention"])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_padding_never_changes_a_sequences_logits(pooling, cell):
    torch.manual_seed(0)
    config = ClassifyConfig(cell=cell, pooling=pooling, hidden_size=8, bidirectional=True,
                            conv_channels=4, conv_kernel=3)
    net = ClassifierNet(config, 3, num_channels=2).eval()
    short, long = torch.randn(1, 5, 2), torch.randn(1, 9, 2)
    padded = torch.zeros(2, 9, 2)
    padded[0, :5], padded[1] = short[0], long[0]
    with torch.no_grad():
        alone = net(short, torch.tensor([5]))
        together = net(padded, torch.tensor([5, 9]))
    # The Conv1d sees zeros past the end either way ('same' padding), so the answer is equal.
    torch.testing.assert_close(together[0:1], alone, atol=1e-5, rtol=1e-5)


def test_bad_training_data_is_refused_with_the_reason():
    with pytest.raises(DataError, match="one class only"):
        SequenceClassifier(**TEXT).fit(["good", "fine", "ok"], ["pos"] * 3)
    with pytest.raises(DataError, match="3 sequences but 2 labels"):
        SequenceClassifier(**TEXT).fit(["good", "fine", "ok"], ["pos", "neg"])
    texts, labels = make_texts(30, 0)
    texts[4] = "   "
    with pytest.raises(DataError, match="row 5 is empty"):
        SequenceClassifier(**TEXT).fit(texts, labels, X_val=texts[:3], y_val=labels[:3])
    X, y = make_sequences(10, 0)
    X[3][2, 1] = np.nan
    with pytest.raises(DataError, match="NaN or inf"):
        SequenceClassifier(**SENSORS).fit(X, y)
    X, y = make_sequences(10, 0)
    X[2] = X[2][:, :1]
    with pytest.raises(DataError, match="same C"):
        SequenceClassifier(**SENSORS).fit(X, y)


def test_bad_test_data_is_refused_with_the_reason(text_run, sensor_run):
    clf, _ = text_run
    with pytest.raises(DataError, match=r"label\(s\) 'angry' never seen in training \(rows 2\)"):
        clf.evaluate(["good day", "bad day"], ["positive", "angry"])
    with pytest.raises(DataError, match="reads text, not sensors"):
        clf.predict(np.zeros((2, 5, 2), dtype=np.float32))
    sensors, _ = sensor_run
    with pytest.raises(DataError, match=r"sequence 1 has shape \(20, 3\).*x, y"):
        sensors.predict([np.zeros((20, 3), dtype=np.float32)])
    with pytest.raises(DataError, match="has 2 steps; the model needs at least 5"):
        sensors.predict([np.zeros((2, 2), dtype=np.float32)])
    with pytest.raises(TypeError, match="not one string"):
        clf.predict("good day")


def test_class_weights_balanced_weighs_the_rare_class_up():
    clf = SequenceClassifier(**TEXT, class_weights="balanced")
    clf.classes = ["a", "b"]
    weights = clf._class_weights(np.array([0, 0, 0, 1]))
    assert weights[1] / weights[0] == pytest.approx(3.0)


def test_config_errors_name_the_setting():
    with pytest.raises(ValueError, match="pooling='sum'"):
        ClassifyConfig(pooling="sum")
    with pytest.raises(ValueError, match="conv_kernel odd"):
        ClassifyConfig(conv_kernel=4)


def test_a_corrupt_sentencepiece_model_is_a_checkpoint_error(tmp_path):
    texts, labels = make_texts(90, 0)
    clf = SequenceClassifier(**{**TEXT, "max_epochs": 1}, tokenizer="sentencepiece",
                             vocab_size=40).fit(texts, labels, quiet=True)
    clf.save(tmp_path / "run")
    (tmp_path / "run" / "sentencepiece.model").write_bytes(b"not a model")
    with pytest.raises(CheckpointError, match="preprocessing.json"):
        SequenceClassifier.load(tmp_path / "run")


def test_a_class_with_one_row_stays_in_training():
    texts, labels = make_texts(60, 0)
    texts.append("a rare complaint")
    labels.append("rare")
    clf = SequenceClassifier(**{**TEXT, "max_epochs": 1}).fit(texts, labels, quiet=True)
    assert "rare" in clf.classes


def test_long_sequences_are_cut_with_a_warning():
    X, y = make_sequences(20, 0)
    from lstmkit.errors import DataWarning

    with pytest.warns(DataWarning, match="longer than max_length=10"):
        SequenceClassifier(**{**SENSORS, "max_epochs": 1}, max_length=10).fit(X, y, quiet=True)


def test_refit_trains_on_validation_too_and_calibrates_on_the_early_stopped_net(monkeypatch):
    X, y = make_sequences(30, 0)
    seen = []
    original = SequenceClassifier._calibrate

    def spy(self, val_enc, val_items, y_val):
        seen.append(self.model.net)
        return original(self, val_enc, val_items, y_val)

    monkeypatch.setattr(SequenceClassifier, "_calibrate", spy)
    clf = SequenceClassifier(**{**SENSORS, "max_epochs": 3}, refit=True).fit(X, y, quiet=True)
    assert seen and seen[0] is not clf.model.net  # calibrated on the early-stopped net
    assert [r["phase"] for r in clf.history].count("refit") == clf.fit_info["best_epoch"] + 1
