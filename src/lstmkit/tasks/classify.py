"""Sequence classification: a recurrent encoder reads a whole sequence and names its class.

One task, two front ends, chosen by the data given to ``fit``:

- text (a list of strings): tokenizer (word, character or sentencepiece, fitted on the
  training split) -> Vocab -> embedding -> (bi)LSTM/GRU -> pooling -> linear. Beside it, the
  TF-IDF (word 1-2 grams + character 2-5 grams) logistic-regression baseline; with
  ``ngram_ensemble`` the model's answer averages the two models' probabilities, the recurrent
  one temperature-scaled and the weight between them chosen on the validation split.
- sensors (arrays (T, C) or one (N, T, C) array): per-channel scaling fitted on the training
  split -> optional Conv1d front end -> (bi)LSTM/GRU -> pooling -> linear; 1-nearest-
  neighbour baselines with Euclidean and DTW distances (aeon).

The file runs past STYLE.md's ~600 lines because the application reads top to bottom in one
place (R10), as tasks/forecast.py does: the baselines and the ensemble are fitted, saved and
reported with the model they are measured against.

Variable lengths run through the core's ``lengths`` (no sorting or packing here); batches
are drawn from length buckets so that padding stays small. The baselines are fitted on the
same training split and saved in the run (weights and training set as safetensors, the
n-gram vocabulary as JSON), so that ``evaluate`` on a loaded run reports them again.

Example (sensors; a tiny run):
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(40, 12, 2)).astype("float32")
    >>> y = ["up" if s[:, 0].mean() > 0 else "down" for s in X]
    >>> clf = SequenceClassifier(hidden_size=8, max_epochs=2).fit(X, y, quiet=True)
    >>> clf.classes, clf.predict(X[:3]).shape, clf.predict_proba(X[:3]).shape
    (['down', 'up'], (3,), (3, 2))
"""

from __future__ import annotations

import csv
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import check_settings
from ..data.batch import BucketBatchSampler
from ..data.labelled import LabelledSequences, LabelledTexts, stratified_split
from ..data.text import TOKENIZERS, Vocab, make_tokenizer, tokenizer_from_dict
from ..errors import DataError, DataWarning
from ..nn import GRU, LSTM
from ..train.trainer import Trainer, TrainSettings, seed_everything
from .base import Task

__all__ = ["ACTIVITY_DEFAULTS", "ClassifierNet", "ClassifyConfig", "SequenceClassifier",
           "classification_metrics"]

POOLINGS = ("last", "mean", "max", "attention")


def _help(text: str) -> dict:
    return {"help": text}


@dataclass(frozen=True)
class ClassifyConfig:
    """Hyperparameters of a sequence classifier; saved as config.json, mapped to CLI flags."""

    cell: str = field(default="lstm", metadata=_help("recurrent cell: lstm or gru"))
    hidden_size: int = field(default=128, metadata=_help("units per direction"))
    num_layers: int = field(default=1, metadata=_help("stacked recurrent layers"))
    bidirectional: bool = field(default=True, metadata=_help("read sequences both ways"))
    dropout: float = field(default=0.3, metadata=_help(
        "dropout on the encoder's input, between layers and on the pooled state"))
    recurrent_dropout: float = field(default=0.0, metadata=_help(
        "variational dropout of h_{t-1}"))
    pooling: str = field(default="max", metadata=_help(
        "sequence summary: last, mean, max or attention"))
    tokenizer: str = field(default="word", metadata=_help(
        "text: word, char or sentencepiece"))
    vocab_size: int = field(default=20000, metadata=_help(
        "text: most tokens kept (sentencepiece: its vocabulary size)"))
    min_freq: int = field(default=2, metadata=_help("text: least count of a kept token"))
    embedding_dim: int = field(default=100, metadata=_help("text: embedding size"))
    max_length: int = field(default=200, metadata=_help(
        "tokens or steps read per sequence (the first ones)"))
    ngram_ensemble: bool = field(default=True, metadata=_help(
        "text: average with the TF-IDF logistic regression (weight chosen on validation)"))
    conv_channels: int = field(default=0, metadata=_help(
        "sensors: width of a Conv1d front end; 0 for none"))
    conv_kernel: int = field(default=5, metadata=_help("sensors: Conv1d kernel size (odd)"))
    class_weights: str = field(default="none", metadata=_help(
        "none, or balanced (loss weights inverse to class frequency)"))
    optimizer: str = field(default="adam", metadata=_help("adam, adamw or sgd"))
    learning_rate: float = field(default=2e-3, metadata=_help("optimiser step size"))
    weight_decay: float = field(default=0.0, metadata=_help("L2 penalty"))
    batch_size: int = field(default=64, metadata=_help("sequences per batch"))
    max_epochs: int = field(default=20, metadata=_help("upper bound on epochs"))
    patience: int = field(default=3, metadata=_help("early-stopping patience in epochs"))
    grad_clip: float = field(default=1.0, metadata=_help("max gradient norm; 0 for none"))
    refit: bool = field(default=False, metadata=_help(
        "after early stopping, retrain on training + validation for the epochs found (the "
        "temperature and ensemble weight are then still chosen on the validation split)"))
    validation_fraction: float = field(default=0.1, metadata=_help(
        "share of the training data held out (stratified) for early stopping and the "
        "ensemble weight, when no validation data is given"))
    seed: int = field(default=0, metadata=_help("random seed"))

    def __post_init__(self) -> None:
        check_settings(self, ("hidden_size", "num_layers", "vocab_size", "min_freq",
                              "embedding_dim", "max_length", "batch_size", "max_epochs",
                              "patience", "conv_kernel"),
                       {"cell": ("lstm", "gru"), "pooling": POOLINGS, "tokenizer": TOKENIZERS,
                        "class_weights": ("none", "balanced"),
                        "optimizer": ("adam", "adamw", "sgd")},
                       ("dropout", "recurrent_dropout"))
        if not 0 < self.validation_fraction < 1:
            raise ValueError(f"validation_fraction={self.validation_fraction} must be in (0, 1).")
        if self.conv_channels < 0 or self.conv_kernel % 2 == 0:
            raise ValueError("conv_channels must be >= 0 and conv_kernel odd.")
        if self.learning_rate <= 0 or self.weight_decay < 0:
            raise ValueError("learning_rate must be > 0 and weight_decay >= 0.")

    @property
    def min_steps(self) -> int:
        """The fewest steps a numeric sequence may have: the Conv1d kernel, when there is one."""
        return self.conv_kernel if self.conv_channels else 1


# The defaults for numeric sensor data (`lstmkit activity`): a Conv1d front end and one
# GRU(64) read the whole sequence, mean-pooled; small batches for data sets of tens of
# sequences, and longer patience because such a validation split is small and noisy. Chosen
# by 4-fold cross-validation inside BasicMotions' training set, 3 seeds
# (benchmarks/classify_quality.py --choose): GRU 0.975 against 0.925 for the LSTM, 0.967
# without the Conv1d or with last-state pooling, 0.958 bidirectional. The refit on training +
# validation tied there (0.975); it is on because it trains on every labelled sequence.
ACTIVITY_DEFAULTS = dict(cell="gru", hidden_size=64, bidirectional=False, pooling="mean",
                         conv_channels=32, refit=True,
                         dropout=0.1, batch_size=8, learning_rate=3e-3, max_epochs=100,
                         patience=20, validation_fraction=0.2)


class ClassifierNet(nn.Module):
    """Front end -> recurrent encoder -> pooling -> linear; returns logits (B, K)."""

    def __init__(self, config: ClassifyConfig, num_classes: int, *, vocab_size: int = 0,
                 num_channels: int = 0) -> None:
        super().__init__()
        c = config
        self.pooling = c.pooling
        if vocab_size:
            self.embed = nn.Embedding(vocab_size, c.embedding_dim, padding_idx=0)
            width = c.embedding_dim
        else:
            self.embed = None
            width = num_channels
        self.conv = None
        if not vocab_size and c.conv_channels:
            self.conv = nn.Conv1d(num_channels, c.conv_channels, c.conv_kernel,
                                  padding=c.conv_kernel // 2)
            width = c.conv_channels
        rnn = LSTM if c.cell == "lstm" else GRU
        self.rnn = rnn(width, c.hidden_size, c.num_layers, batch_first=True,
                       bidirectional=c.bidirectional,
                       dropout=c.dropout if c.num_layers > 1 else 0.0,
                       recurrent_dropout=c.recurrent_dropout)
        out = c.hidden_size * (2 if c.bidirectional else 1)
        self.attention = nn.Linear(out, 1) if c.pooling == "attention" else None
        self.drop = nn.Dropout(c.dropout)
        self.head = nn.Linear(out, num_classes)

    def forward(self, inputs: Tensor, lengths: Tensor) -> Tensor:
        """inputs (B, T) token ids or (B, T, C) values; lengths (B,)."""
        x = self.embed(inputs) if self.embed is not None else inputs
        if self.conv is not None:
            x = torch.relu(self.conv(x.transpose(1, 2))).transpose(1, 2)
        x = self.drop(x)
        out, state = self.rnn(x, lengths=lengths)  # out (B, T, D*H), zero at padding
        T = out.shape[1]
        valid = torch.arange(T, device=out.device).unsqueeze(0) < lengths.unsqueeze(1)
        if self.pooling == "last":
            h_n = state[0] if isinstance(state, tuple) else state  # (L*D, B, H)
            D = 2 if self.rnn.bidirectional else 1
            pooled = torch.cat(list(h_n[-D:]), dim=1)
        elif self.pooling == "mean":
            pooled = out.sum(1) / lengths.unsqueeze(1).to(out.dtype)
        elif self.pooling == "max":
            pooled = out.masked_fill(~valid.unsqueeze(2), float("-inf")).amax(1)
        else:
            scores = self.attention(torch.tanh(out)).squeeze(2)  # (B, T)
            weights = scores.masked_fill(~valid, float("-inf")).softmax(1)
            pooled = (weights.unsqueeze(2) * out).sum(1)
        return self.head(self.drop(pooled))


class _Classifier(nn.Module):
    """The recurrent net and what the run keeps beside it (saved in model.safetensors): the
    temperature and ensemble weight, the n-gram logistic regression's weights (text), or the
    unscaled training set of the nearest-neighbour baselines (sensors)."""

    def __init__(self, net: ClassifierNet, num_classes: int, ngram_features: int = 0,
                 neighbours: tuple[int, int, int] | None = None) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("mix", torch.ones(()))  # weight of the recurrent model
        self.register_buffer("temperature", torch.ones(()))
        if ngram_features:
            self.register_buffer("ngram_weight", torch.zeros(num_classes, ngram_features))
            self.register_buffer("ngram_bias", torch.zeros(num_classes))
        if neighbours is not None:
            n, t, ch = neighbours
            self.register_buffer("train_x", torch.zeros(n, t, ch))
            self.register_buffer("train_lengths", torch.zeros(n, dtype=torch.long))
            self.register_buffer("train_y", torch.zeros(n, dtype=torch.long))


class _Batches(torch.utils.data.Dataset):
    """Encoded sequences; ``__getitems__`` pads a batch to its own longest row."""

    def __init__(self, items: list[np.ndarray], targets: np.ndarray, text: bool) -> None:
        self.items, self.targets, self.text = items, targets, text
        self.lengths = [len(i) for i in items]

    def __len__(self) -> int:
        return len(self.items)

    def batch_sampler(self, batch_size: int, seed: int) -> BucketBatchSampler:
        return BucketBatchSampler(self.lengths, batch_size, seed)

    def __getitems__(self, indices: list[int]):
        return _pad([self.items[i] for i in indices], self.text), \
            torch.as_tensor(self.targets[indices])


def _pad(items: list[np.ndarray], text: bool) -> tuple[Tensor, Tensor]:
    lengths = torch.tensor([len(i) for i in items])
    T = int(lengths.max())
    if text:
        out = torch.zeros(len(items), T, dtype=torch.long)
    else:
        out = torch.zeros(len(items), T, items[0].shape[1])
    for row, item in enumerate(items):
        out[row, :len(item)] = torch.as_tensor(item)
    return out, lengths


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def classification_metrics(true: list[str], predicted: list[str], classes: list[str]) -> dict:
    """accuracy, macro_f1, per-class precision / recall / f1 / support, the confusion matrix
    (rows true, columns predicted, in ``classes`` order) and the count."""
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    p, r, f, s = precision_recall_fscore_support(true, predicted, labels=classes,
                                                 zero_division=0)
    present = [i for i, n in enumerate(s) if n > 0]
    return {"accuracy": float(np.mean(np.asarray(true) == np.asarray(predicted))),
            "macro_f1": float(np.mean(f[present])) if present else float("nan"),
            "per_class": {c: {"precision": float(p[i]), "recall": float(r[i]),
                              "f1": float(f[i]), "support": int(s[i])}
                          for i, c in enumerate(classes)},
            "confusion_matrix": confusion_matrix(true, predicted, labels=classes).tolist(),
            "count": len(true)}


class SequenceClassifier(Task):
    """Names the class of a whole sequence (text or numeric channels); see the module doc."""

    config_class = ClassifyConfig
    task_name = "classify"

    def __init__(self, config: ClassifyConfig | None = None, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        self.kind: str | None = None  # "text" or "sensors"
        self.classes: list[str] = []
        self.majority: str | None = None
        self.tokenizer = None
        self.vocab: Vocab | None = None
        self.ngrams: dict | None = None  # n-gram vocabularies and idf (text)
        self.channels: tuple[str, ...] = ()
        self.channels_named = False  # False: the training data named none (ch0, ch1, ...)
        self.scale: tuple[list[float], list[float]] | None = None  # per-channel mean, std
        self.fit_info: dict = {}
        self.history: list[dict] = []
        self.interrupted = False

    # ---- inputs ------------------------------------------------------------------------------

    @staticmethod
    def _split_input(X: Any, y: Any = None) -> tuple[str, list, list[str] | None, str]:
        """(kind, items, labels, source) from texts, arrays, or the loaders' records."""
        if isinstance(X, LabelledTexts):
            return "text", X.texts, X.labels if y is None else y, X.source
        if isinstance(X, LabelledSequences):
            return "sensors", X.sequences, X.labels if y is None else y, X.source
        if isinstance(X, str):
            raise TypeError("pass a list of texts, not one string (wrap it: [text]).")
        if isinstance(X, np.ndarray) and X.ndim == 3:
            return "sensors", list(X), y, "array"
        items = list(X)
        if items and all(isinstance(i, str) for i in items):
            return "text", items, y, "texts"
        if items and all(isinstance(i, np.ndarray | Tensor) for i in items):
            return "sensors", [np.asarray(i) for i in items], y, "sequences"
        raise TypeError("X must be a list of texts, a list of (T, C) arrays or an (N, T, C) "
                        "array.")

    def _labels_check(self, labels, n: int, source: str, training: bool) -> list[str]:
        if labels is None:
            raise DataError(f"{source}: no labels given.")
        labels = [str(v) for v in labels]
        if len(labels) != n:
            raise DataError(f"{source}: {n} sequences but {len(labels)} labels.")
        if training:
            if len(set(labels)) < 2:
                raise DataError(f"{source}: the training data holds one class only "
                                f"({labels[0]!r}); a classifier needs two or more.")
            return labels
        unseen = sorted(set(labels) - set(self.classes))
        if unseen:
            rows = [i for i, v in enumerate(labels) if v in unseen]
            raise DataError(f"{source}: label(s) {', '.join(map(repr, unseen))} never seen in "
                            f"training (rows {', '.join(str(r + 1) for r in rows[:5])}); the "
                            f"model knows {', '.join(map(repr, self.classes))}.")
        return labels

    def _encode(self, kind: str, items: list, source: str, names: list[str] | None = None,
                warn: bool = False) -> list[np.ndarray]:
        """Token ids (text) or scaled float32 (T, C) arrays, cut to max_length (with a
        DataWarning when ``warn``). Messages name a sequence by ``names`` (ids) or position."""
        if kind != self.kind:
            raise DataError(f"{source}: this model reads {self.kind}, not {kind}.")

        def name(row: int) -> str:
            return f"sequence {names[row]!r}" if names else f"sequence {row + 1}"

        L = self.config.max_length
        out, cut = [], 0
        if kind == "text":
            for row, text in enumerate(items):
                if not str(text).strip():
                    raise DataError(f"{source}: text in row {row + 1} is empty or only "
                                    "whitespace.")
                tokens = self.tokenizer.tokenize(text)
                cut += len(tokens) > L
                ids = self.vocab.encode(tokens[:L])
                out.append(np.asarray(ids or [1], dtype=np.int64))  # no token: one <unk>
        else:
            mean, std = (np.asarray(v, dtype=np.float32) for v in self.scale)
            need = self.config.min_steps
            for row, seq in enumerate(items):
                seq = np.asarray(seq, dtype=np.float32)
                if seq.ndim != 2 or seq.shape[1] != len(self.channels):
                    raise DataError(f"{source}: {name(row)} has shape {seq.shape}; the model "
                                    f"reads (T, {len(self.channels)}) with channels "
                                    f"{', '.join(self.channels)}.")
                if len(seq) < need:
                    raise DataError(f"{source}: {name(row)} has {len(seq)} steps; the model "
                                    f"needs at least {need} (its conv_kernel).")
                if not np.isfinite(seq).all():
                    raise DataError(f"{source}: {name(row)} holds NaN or inf.")
                cut += len(seq) > L
                out.append((seq[:L] - mean) / std)
        if cut and warn:
            unit = "tokens" if kind == "text" else "steps"
            warnings.warn(f"{source}: {cut} sequence(s) longer than max_length={L} are read up "
                          f"to their first {L} {unit}; raise max_length to read them whole.",
                          DataWarning, stacklevel=3)
        return out

    # ---- fit ---------------------------------------------------------------------------------

    def fit(self, X: Any, y: Any = None, *, X_val: Any = None, y_val: Any = None,
            channels: tuple[str, ...] | None = None, quiet: bool = False
            ) -> SequenceClassifier:
        """Train on X, y (stratified validation split held out unless X_val, y_val given)."""
        c = self.config
        seed_everything(c.seed)  # the net's initial weights too: the same seed, the same run
        self.fit_info, self.history, self.interrupted = {}, [], False  # a new fit, a new log
        kind, items, labels, source = self._split_input(X, y)
        if not items:
            raise DataError(f"{source}: no training sequences.")
        labels = self._labels_check(labels, len(items), source, training=True)
        names = getattr(X, "ids", None)
        if X_val is None:
            train_idx, val_idx = _validation_split(labels, c.validation_fraction, c.seed,
                                                   source)
            val_items, val_labels = [items[i] for i in val_idx], [labels[i] for i in val_idx]
            val_names = None if names is None else [names[i] for i in val_idx]
            items, labels = [items[i] for i in train_idx], [labels[i] for i in train_idx]
            names = None if names is None else [names[i] for i in train_idx]
        else:
            vkind, val_items, val_labels, vsource = self._split_input(X_val, y_val)
            val_names = getattr(X_val, "ids", None)
            if vkind != kind:
                raise DataError(f"{vsource}: validation data is {vkind}, training data {kind}.")
        if kind == "sensors":
            _require_aeon()  # before training: its baselines are reported after it
        self.kind = kind
        self.classes = sorted(set(labels))
        val_labels = self._labels_check(val_labels, len(val_items), "validation data",
                                        training=False)
        y_train = np.array([self.classes.index(v) for v in labels])
        y_val_ids = np.array([self.classes.index(v) for v in val_labels])
        values, counts = np.unique(labels, return_counts=True)
        self.majority = str(values[np.argmax(counts)])
        if kind == "text":
            self.tokenizer = make_tokenizer(c.tokenizer, c.vocab_size).fit(items)
            self.vocab = Vocab.build((self.tokenizer.tokenize(t) for t in items),
                                     min_freq=c.min_freq, max_size=c.vocab_size)
        else:
            self._fit_channels(items, channels or getattr(X, "channels", None), source)
        train_enc = self._encode(kind, items, source, names, warn=True)
        val_enc = self._encode(kind, val_items, "validation data", val_names)
        model = self._build(None)
        self.model = model
        if kind == "text":  # the baseline first: it is quick, and a failure costs no training
            self._fit_ngrams(items, y_train, val_items, y_val_ids)
        else:  # 1-NN has nothing to tune: it keeps every labelled training sequence
            self._store_neighbours(items + val_items,
                                   np.concatenate([y_train, y_val_ids]))
        early, final = self._train(model.net, train_enc, y_train, val_enc, y_val_ids, quiet)
        model.net = early  # calibrated on the validation split, which it has not seen
        self._calibrate(val_enc, val_items, y_val_ids)
        model.net = final
        self.model = model.eval()
        return self

    def _fit_channels(self, items: list, channels, source: str) -> None:
        widths = {np.asarray(s).shape[1] if np.asarray(s).ndim == 2 else -1 for s in items}
        if len(widths) != 1 or -1 in widths:
            raise DataError(f"{source}: every sequence must be (T, C) with the same C; found "
                            f"widths {sorted(widths)}.")
        (C,) = widths
        if channels and len(channels) != C:
            raise DataError(f"{source}: {len(channels)} channel names for {C} channels.")
        self.channels_named = bool(channels)
        self.channels = tuple(channels) if channels else tuple(f"ch{i}" for i in range(C))
        stacked = np.concatenate([np.asarray(s, dtype=np.float64) for s in items])
        if not np.isfinite(stacked).all():
            raise DataError(f"{source}: the training sequences hold NaN or inf.")
        std = stacked.std(0)
        self.scale = (stacked.mean(0).tolist(), np.where(std > 0, std, 1.0).tolist())

    def _class_weights(self, y: np.ndarray) -> Tensor | None:
        if self.config.class_weights == "none":
            return None
        counts = np.bincount(y, minlength=len(self.classes)).astype(np.float64)
        weights = len(y) / (len(self.classes) * np.maximum(counts, 1))
        return torch.tensor(weights, dtype=torch.float32)

    def _train(self, net: ClassifierNet, train, y_train, val, y_val, quiet
               ) -> tuple[ClassifierNet, ClassifierNet]:
        """(the early-stopped net, the final one: the refit on training + validation, or the
        same net)."""
        c = self.config
        weights = self._class_weights(y_train)
        text = self.kind == "text"
        val_batches = [(_pad(val[i:i + 256], text), y_val[i:i + 256])
                       for i in range(0, len(val), 256)]

        def loss_fn(model, batch) -> Tensor:
            (inputs, lengths), targets = batch
            return F.cross_entropy(model(inputs, lengths), targets, weight=weights)

        def score_fn(model) -> float:  # validation cross-entropy (smoother than accuracy)
            total = sum(float(F.cross_entropy(model(*b), torch.as_tensor(t), weight=weights,
                                              reduction="sum")) for b, t in val_batches)
            return total / len(y_val)

        settings = TrainSettings(c.optimizer, c.learning_rate, c.weight_decay, c.batch_size,
                                 c.max_epochs, c.patience, c.grad_clip, "none", c.seed, quiet)
        trainer = Trainer(settings, description="classifier")
        seed_everything(c.seed)
        result = trainer.fit(net, _Batches(train, y_train, text), loss_fn, score_fn)
        self.interrupted = result.interrupted
        self.fit_info.update(best_epoch=result.best_epoch, epochs_run=result.epochs_run,
                             val_loss=result.best_score)
        self._log("fit", result)
        net.eval()
        if c.refit and not result.interrupted:
            seed_everything(c.seed)
            again = self._new_net()
            both = _Batches(train + val, np.concatenate([y_train, y_val]), text)
            refit = trainer.fit(again, both, loss_fn, epochs=result.best_epoch + 1)
            self._log("refit", refit)
            if refit.interrupted:  # a half-done refit is worse than the early-stopped model
                self.interrupted = True
            else:
                return net, again.eval()
        return net, net

    def _log(self, phase: str, result) -> None:
        for r in result.history:
            self.history.append({"member": 0, "phase": phase, "epoch": r.epoch,
                                 "train_loss": r.train_loss, "val_score": r.val_score,
                                 "learning_rate": r.learning_rate, "seconds": r.seconds})

    # ---- baselines and the ensemble ----------------------------------------------------------

    _NGRAM_SETTINGS = {"word": dict(analyzer="word", ngram_range=(1, 2), min_df=2,
                                    max_features=100_000, token_pattern=r"(?u)\b\w+\b|[^\w\s]"),
                       "char": dict(analyzer="char_wb", ngram_range=(2, 5), min_df=2,
                                    max_features=100_000)}

    def _ngram_features(self, texts: list[str], normalized: bool = False):
        """TF-IDF rows (l2-normalised) of word 1-2 grams and character 2-5 grams, of texts
        as the tokenizers read them (``normalized``: already passed through normalize)."""
        from scipy import sparse
        from sklearn.feature_extraction.text import CountVectorizer
        from sklearn.preprocessing import normalize as l2

        from ..data.text import normalize

        if not normalized:
            texts = [normalize(t) for t in texts]
        blocks = []
        for name, options in self._NGRAM_SETTINGS.items():
            part = self.ngrams[name]
            vectorizer = CountVectorizer(vocabulary=part["vocabulary"],
                                         **{k: v for k, v in options.items()
                                            if k not in ("min_df", "max_features")})
            counts = vectorizer.transform(texts).astype(np.float64)
            blocks.append(l2(counts.multiply(np.asarray(part["idf"])).tocsr()))
        return sparse.hstack(blocks).tocsr()

    def _fit_ngrams(self, texts, y, val_texts, y_val) -> None:
        """The TF-IDF + logistic regression baseline, C chosen on validation macro-F1."""
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.metrics import f1_score

        from ..data.text import normalize

        normalized = [normalize(t) for t in texts]
        self.ngrams = {}
        for name, options in self._NGRAM_SETTINGS.items():
            vectorizer = TfidfVectorizer(**options).fit(normalized)
            vocabulary = {k: int(v) for k, v in vectorizer.vocabulary_.items()}
            self.ngrams[name] = {"vocabulary": vocabulary, "idf": vectorizer.idf_.tolist()}
        train_x = self._ngram_features(normalized, normalized=True)
        val_x = self._ngram_features(val_texts)
        best = None
        for C in (1.0, 4.0, 16.0):
            lr = LogisticRegression(C=C, max_iter=2000).fit(train_x, y)
            score = f1_score(y_val, lr.predict(val_x), labels=np.unique(y_val), average="macro")
            if best is None or score > best[0]:
                best = (score, C, lr)
        _, C, lr = best
        self.fit_info["ngram_C"] = C
        coef, bias = lr.coef_, lr.intercept_
        if coef.shape[0] == 1:  # two classes: sklearn keeps one row, for class 1
            coef, bias = np.vstack([-coef / 2, coef / 2]), np.array([-bias[0] / 2, bias[0] / 2])
        model = self.model
        model.register_buffer("ngram_weight", torch.tensor(coef, dtype=torch.float32))
        model.register_buffer("ngram_bias", torch.tensor(bias, dtype=torch.float32))

    def _ngram_proba(self, texts: list[str]) -> np.ndarray:
        x = self._ngram_features(texts)
        w = self.model.ngram_weight.double().numpy()
        return _softmax(np.asarray(x @ w.T) + self.model.ngram_bias.double().numpy())

    def _store_neighbours(self, train: list, y: np.ndarray) -> None:
        """The raw (unscaled) training sequences, for the nearest-neighbour baselines."""
        L = self.config.max_length
        (x, lengths) = _pad([np.asarray(s, dtype=np.float32)[:L] for s in train], text=False)
        self.model.register_buffer("train_x", x)
        self.model.register_buffer("train_lengths", lengths)
        self.model.register_buffer("train_y", torch.as_tensor(y))

    def _neighbour_predictions(self, raw: list) -> dict[str, np.ndarray]:
        """1-NN class ids on the raw sequences by Euclidean distance (resampled to a common
        length when lengths differ) and by DTW (aeon)."""
        from aeon.classification.distance_based import KNeighborsTimeSeriesClassifier

        m = self.model
        train = [m.train_x[i, :int(n)].numpy().T for i, n in enumerate(m.train_lengths)]
        L = self.config.max_length
        test = [np.asarray(s, dtype=np.float32)[:L].T for s in raw]  # aeon reads (C, T)
        y = m.train_y.numpy()
        out = {}
        lengths = {s.shape[1] for s in train + test}
        common = max(lengths)
        same = [_resample(s, common) for s in train], [_resample(s, common) for s in test]
        euclid = KNeighborsTimeSeriesClassifier(n_neighbors=1, distance="euclidean")
        dtw = KNeighborsTimeSeriesClassifier(n_neighbors=1, distance="dtw")
        with warnings.catch_warnings():  # numba's notes on aeon's own integer casts
            warnings.simplefilter("ignore")
            out["1nn_euclidean"] = euclid.fit(np.stack(same[0]), y).predict(np.stack(same[1]))
            if len(lengths) == 1:
                out["1nn_dtw"] = dtw.fit(np.stack(train), y).predict(np.stack(test))
            else:
                out["1nn_dtw"] = dtw.fit(train, y).predict(test)
        return {k: np.asarray(v).astype(int) for k, v in out.items()}

    def _recurrent_logits(self, encoded: list[np.ndarray]) -> np.ndarray:
        self._require_fitted()
        net = self.model.net.eval()
        order = np.argsort([len(e) for e in encoded], kind="stable")  # less padding
        logits = np.zeros((len(encoded), len(self.classes)))
        with torch.no_grad():
            for start in range(0, len(order), 256):
                rows = order[start:start + 256]
                inputs, lengths = _pad([encoded[i] for i in rows], self.kind == "text")
                logits[rows] = net(inputs, lengths).double().numpy()
        return logits

    def _calibrate(self, val_enc, val_texts, y_val) -> None:
        """Temperature of the recurrent model (validation log-loss), then the ensemble weight
        (validation macro-F1); both kept in the model's buffers."""
        from sklearn.metrics import f1_score

        logits = self._recurrent_logits(val_enc)
        temps = np.exp(np.linspace(np.log(0.05), np.log(20.0), 121))
        nll = [-np.log(_softmax(logits / t)[np.arange(len(y_val)), y_val] + 1e-12).mean()
               for t in temps]
        best_t = int(np.argmin(nll))
        # At the grid's low edge the validation split is separated perfectly: no evidence for
        # any temperature, so the logits stay as trained.
        temperature = 1.0 if best_t == 0 else float(temps[best_t])
        self.model.temperature.fill_(temperature)
        mix = 1.0
        if self.kind == "text" and self.config.ngram_ensemble:
            deep = _softmax(logits / temperature)
            wide = self._ngram_proba(val_texts)
            present = np.unique(y_val)  # macro-F1 over the classes present, as reported
            scores = [(f1_score(y_val, (w * deep + (1 - w) * wide).argmax(1), labels=present,
                                average="macro"), w) for w in np.linspace(0, 1, 11)]
            best = max(s for s, _ in scores)
            tied = [w for s, w in scores if s >= best - 1e-9]
            mix = float(min(tied, key=lambda w: abs(w - np.mean(tied))))  # a weight scored
        self.model.mix.fill_(mix)
        self.fit_info.update(temperature=temperature, mix=mix)

    # ---- predict / evaluate ------------------------------------------------------------------

    def _probabilities(self, items: list, encoded: list[np.ndarray]) -> dict[str, np.ndarray]:
        """Class probabilities of the model and, for text, of its parts."""
        m = self.model
        deep = _softmax(self._recurrent_logits(encoded) / float(m.temperature))
        out = {"model": deep}
        if self.kind == "text":  # a fitted text model always holds the n-gram baseline
            wide = self._ngram_proba(items)
            if self.config.ngram_ensemble:
                w = float(m.mix)
                out = {"model": w * deep + (1 - w) * wide, "recurrent": deep}
            out["tfidf_logreg"] = wide
        return out

    def predict_proba(self, X: Any) -> np.ndarray:
        """(N, K) probabilities, columns in ``self.classes`` order."""
        self._require_fitted()
        kind, items, _, source = self._split_input(X)
        encoded = self._encode(kind, items, source, getattr(X, "ids", None), warn=True)
        return self._probabilities(items, encoded)["model"]

    def predict(self, X: Any) -> np.ndarray:
        """The predicted label of each sequence."""
        return np.asarray(self.classes, dtype=object)[self.predict_proba(X).argmax(1)]

    def evaluate(self, X: Any, y: Any = None) -> dict:
        """``{"test": {"model": {...}, "<baseline>": {...}, ...}}``; with the n-gram ensemble
        also ``"recurrent"``, the recurrent model alone."""
        return self._evaluation(X, y)[0]

    def _evaluation(self, X: Any, y: Any = None) -> tuple[dict, dict]:
        self._require_fitted()
        kind, items, labels, source = self._split_input(X, y)
        if not items:
            raise DataError(f"{source}: no sequences to evaluate.")
        labels = self._labels_check(labels, len(items), source, training=False)
        if kind == "sensors":
            _require_aeon()
        encoded = self._encode(kind, items, source, getattr(X, "ids", None), warn=True)
        probabilities = self._probabilities(items, encoded)
        predictions = {name: p.argmax(1) for name, p in probabilities.items()}
        predictions["majority"] = np.full(len(items), self.classes.index(self.majority))
        if kind == "sensors":
            predictions.update(self._neighbour_predictions(items))
        metrics = {"test": {name: classification_metrics(
            labels, [self.classes[i] for i in ids], self.classes)
            for name, ids in predictions.items()}}
        if kind == "text":
            unknown = sum(int((e == 1).sum()) for e in encoded)
            metrics["unknown_token_rate"] = unknown / max(sum(len(e) for e in encoded), 1)
        detail = {"labels": labels, "items": items, "probabilities": probabilities["model"]}
        return metrics, detail

    def report(self, directory: str | Path, X: Any, y: Any = None,
               ids: list[str] | None = None) -> dict:
        """Evaluate and write metrics.json/.csv, confusion_matrix.png, misclassified.csv and
        the training log and curves."""
        import pandas as pd

        from ..report import plot_confusion, plot_training, write_history, write_metrics

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        metrics, detail = self._evaluation(X, y)
        write_metrics(directory, metrics)
        model = metrics["test"]["model"]
        plot_confusion(directory / "confusion_matrix.png", np.asarray(model["confusion_matrix"]),
                       self.classes, f"test: accuracy {model['accuracy']:.3f}, macro-F1 "
                                     f"{model['macro_f1']:.3f}")
        p = detail["probabilities"]
        predicted = [self.classes[i] for i in p.argmax(1)]
        wrong = [i for i, (a, b) in enumerate(zip(detail["labels"], predicted, strict=True))
                 if a != b]
        if self.kind == "text":
            shown = [detail["items"][i] for i in wrong]
        else:
            shown = [ids[i] if ids else str(i) for i in wrong]
        frame = pd.DataFrame({"row": [i + 1 for i in wrong],
                              "text" if self.kind == "text" else "id": shown,
                              "true": [detail["labels"][i] for i in wrong],
                              "predicted": [predicted[i] for i in wrong],
                              "probability": [float(p[i].max()) for i in wrong]})
        # Every text quoted: pandas leaves a bare \r unquoted otherwise, which breaks the file.
        frame.to_csv(directory / "misclassified.csv", index=False,
                     quoting=csv.QUOTE_NONNUMERIC)
        if self.history:
            write_history(directory / "training_log.csv", self.history)
            plot_training(directory / "training_curves.png", self.history, "cross-entropy")
        return metrics

    # ---- save / load -------------------------------------------------------------------------

    def _preprocessing_state(self) -> dict:
        state = {"kind": self.kind, "classes": self.classes, "majority": self.majority,
                 "fit": self.fit_info}
        if self.kind == "text":
            state.update(tokenizer=self.tokenizer.to_dict(), vocab=self.vocab.to_dict(),
                         ngrams=self.ngrams)
        else:
            state.update(channels=list(self.channels), channels_named=self.channels_named,
                         scale=[list(v) for v in self.scale],
                         neighbours=list(self.model.train_x.shape))
        return state

    def _extra_files(self) -> dict[str, bytes]:
        model = getattr(self.tokenizer, "model", None)
        return {self.tokenizer.model_file: model} if model else {}

    _KEYS = frozenset({"kind", "classes", "majority", "fit", "tokenizer", "vocab", "ngrams",
                       "channels", "channels_named", "scale", "neighbours"})

    def _restore(self, preprocessing: dict, files=None) -> None:
        unknown = set(preprocessing) - self._KEYS
        if unknown:
            raise ValueError(f"unknown preprocessing key(s) {', '.join(sorted(unknown))}")
        self.kind = preprocessing["kind"]
        if self.kind not in ("text", "sensors"):
            raise ValueError(f"kind={self.kind!r}")
        self.classes = [str(c) for c in preprocessing["classes"]]
        self.majority = str(preprocessing["majority"])
        self.fit_info = dict(preprocessing["fit"])
        if self.kind == "text":
            self.tokenizer = tokenizer_from_dict(preprocessing["tokenizer"], files)
            self.vocab = Vocab.from_dict(preprocessing["vocab"])
            self.ngrams = preprocessing["ngrams"]
        else:
            self.channels = tuple(preprocessing["channels"])
            self.channels_named = bool(preprocessing.get("channels_named", True))
            mean, std = preprocessing["scale"]
            self.scale = (list(map(float, mean)), list(map(float, std)))
            self._neighbours_shape = tuple(int(v) for v in preprocessing["neighbours"])

    def _new_net(self) -> ClassifierNet:
        """A freshly initialised net for the fitted front end (vocabulary or channels)."""
        if self.kind == "text":
            return ClassifierNet(self.config, len(self.classes), vocab_size=len(self.vocab))
        return ClassifierNet(self.config, len(self.classes), num_channels=len(self.channels))

    def _build(self, preprocessing: dict | None) -> nn.Module:
        K = len(self.classes)
        if self.kind == "text":
            features = 0
            if self.ngrams is not None:
                features = sum(len(p["vocabulary"]) for p in self.ngrams.values())
            return _Classifier(self._new_net(), K, ngram_features=features)
        shape = getattr(self, "_neighbours_shape", None) if preprocessing is not None else None
        return _Classifier(self._new_net(), K, neighbours=shape)


def _validation_split(labels: list[str], fraction: float, seed: int, source: str
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Row indices (train, validation), see :func:`stratified_split`."""
    train, val = stratified_split(np.arange(len(labels)), labels, fraction, seed, source,
                                  "validation",
                                  "; give more data, or validation data (X_val, y_val)")
    return np.sort(train), np.sort(val)


def _require_aeon() -> None:
    import importlib.util

    if importlib.util.find_spec("aeon") is None:
        raise DataError("sensor classification reports 1-nearest-neighbour baselines (Euclidean "
                        "and DTW) computed with aeon: pip install 'lstmkit[activity]'.")


def _resample(seq: np.ndarray, length: int) -> np.ndarray:
    """(C, T) linearly interpolated to (C, length)."""
    C, T = seq.shape
    if T == length:
        return seq
    old = np.linspace(0.0, 1.0, T)
    new = np.linspace(0.0, 1.0, length)
    return np.stack([np.interp(new, old, seq[c]) for c in range(C)])
