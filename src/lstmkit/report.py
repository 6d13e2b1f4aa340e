"""What a run leaves for a person to read: metrics as JSON and CSV, the training log as CSV,
and plots (matplotlib, written as PNG with no screen needed)."""

from __future__ import annotations

import csv
from pathlib import Path

from .config import write_json

__all__ = ["plot_confusion", "plot_lines", "plot_training", "write_history", "write_metrics"]


def write_metrics(directory: Path, metrics: dict, stem: str = "metrics") -> None:
    """metrics.json as given, and metrics.csv with one row per (part, method)."""
    directory = Path(directory)
    write_json(directory / f"{stem}.json", metrics)
    rows = []
    for part, methods in metrics.items():
        if not isinstance(methods, dict):
            continue
        for method, values in methods.items():
            if isinstance(values, dict):
                rows.append({"part": part, "method": method,
                             **{k: v for k, v in values.items() if not isinstance(v, list)}})
    if rows:
        fields = list(dict.fromkeys(k for row in rows for k in row))
        tmp = directory / f".{stem}.csv.tmp"
        with tmp.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows)
        tmp.replace(directory / f"{stem}.csv")


def write_history(path: Path, rows: list[dict]) -> None:
    """The training log: one row per epoch (and per ensemble member / phase)."""
    if not rows:
        return
    with Path(path).open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_lines(path: Path, x, lines: dict[str, list], title: str, ylabel: str,
               band: tuple[list, list] | None = None) -> None:
    """One line per entry of ``lines`` against ``x``; ``band`` shades an interval."""
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(11, 4.5))
    if band is not None:
        axes.fill_between(x, band[0], band[1], alpha=0.2, label="interval")
    for i, (name, values) in enumerate(lines.items()):
        axes.plot(x, values, label=name, linewidth=1.6 if i == 0 else 1.0,
                  color="black" if i == 0 else None)
    axes.set_title(title)
    axes.set_ylabel(ylabel)
    axes.grid(alpha=0.3)
    axes.legend()
    figure.autofmt_xdate()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def plot_training(path: Path, rows: list[dict], score: str = "MAE, scaled") -> None:
    """Training loss and validation score per epoch, one line per member and phase."""
    plt = _pyplot()
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    runs: dict[str, list[dict]] = {}
    for row in rows:
        runs.setdefault(f"member {row['member']} {row['phase']}", []).append(row)
    for name, run in runs.items():
        epochs = [r["epoch"] + 1 for r in run]
        left.plot(epochs, [r["train_loss"] for r in run], label=name)
        scores = [r["val_score"] for r in run if r["val_score"] is not None]
        if scores:
            right.plot(epochs[: len(scores)], scores, label=name)
    left.set_title("training loss")
    right.set_title(f"validation score ({score})")
    for axes in (left, right):
        axes.set_xlabel("epoch")
        axes.grid(alpha=0.3)
    left.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def plot_confusion(path: Path, matrix, labels: list[str], title: str) -> None:
    """A confusion matrix: rows are the true class, columns the predicted one; counts shown."""
    plt = _pyplot()
    size = max(4.0, 0.6 * len(labels) + 2.5)
    figure, axes = plt.subplots(figsize=(size, size))
    axes.imshow(matrix, cmap="Blues")
    axes.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    axes.set_yticks(range(len(labels)), labels)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    top = max(int(matrix.max()), 1)
    for i in range(len(labels)):
        for j in range(len(labels)):
            value = int(matrix[i][j])
            axes.text(j, i, str(value), ha="center", va="center",
                      color="white" if value > top / 2 else "black")
    axes.set_title(title)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
