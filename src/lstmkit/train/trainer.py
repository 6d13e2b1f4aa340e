"""The fit loop every task shares: optimiser, clipping, schedule, early stopping, progress, log.

The loop knows nothing of any task. A task hands it a model, a dataset whose
``__getitems__(indices)`` returns a ready batch, a ``loss_fn(model, batch) -> Tensor`` and a
``score_fn(model) -> float`` for validation (lower is better). Where the loop runs is the
job of a *runtime*: :class:`LocalRuntime` (one process, the default and the fast path) sets
up the model, optimiser and data loader and does the backward pass; a distributed runtime
(Lightning Fabric's DDP, later) is a drop-in with the same four methods, so multi-process
training needs no change to this loop.
"""

from __future__ import annotations

import math
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from .callbacks import EarlyStopping, make_scheduler

__all__ = ["EpochRecord", "FitResult", "LocalRuntime", "TrainSettings", "Trainer",
           "seed_everything"]

OPTIMIZERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch, so that the same seed on the same machine repeats a run."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@dataclass(frozen=True)
class TrainSettings:
    """How to fit: the task config's training fields, passed on to the loop."""

    optimizer: str = "adam"  # adam, adamw or sgd (momentum 0.9)
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 32
    max_epochs: int = 100
    patience: int = 20  # epochs without validation improvement before stopping
    grad_clip: float = 1.0  # max global gradient norm; 0 turns clipping off
    lr_schedule: str = "none"  # none, plateau or cosine
    seed: int = 0
    quiet: bool = False  # no progress bar (it is also off when stderr is not a terminal)


@dataclass
class EpochRecord:
    """One row of the training log."""

    epoch: int
    train_loss: float
    val_score: float | None
    learning_rate: float
    seconds: float


@dataclass
class FitResult:
    """What a fit did: the best epoch (0-based) and score, the log, and whether it was cut."""

    best_epoch: int
    best_score: float | None
    epochs_run: int
    history: list[EpochRecord] = field(default_factory=list)
    interrupted: bool = False


def _identity(batch):
    return batch


class LocalRuntime:
    """One process on one device: everything as it is (the distributed runtime's interface)."""

    is_main = True

    def setup(self, model: nn.Module, optimizer: torch.optim.Optimizer):
        return model, optimizer

    def loader(self, dataset: Dataset, batch_size: int, shuffle: bool, seed: int) -> DataLoader:
        """Batches of ``dataset``; one that has ``batch_sampler(batch_size, seed)`` (e.g.
        length buckets) chooses its own batches."""
        make = getattr(dataset, "batch_sampler", None)
        if shuffle and make is not None:
            return DataLoader(dataset, batch_sampler=make(batch_size, seed), collate_fn=_identity)
        generator = torch.Generator().manual_seed(seed)
        return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=generator,
                          collate_fn=_identity)

    def backward(self, loss: Tensor) -> None:
        loss.backward()

    def mean(self, value: float) -> float:
        return value


class Trainer:
    """Fits a model; see the module docstring for the contract.

    Example:
        >>> model = nn.Linear(2, 1)
        >>> class Points(Dataset):
        ...     def __len__(self): return 8
        ...     def __getitems__(self, idx): return torch.randn(len(idx), 2)
        >>> result = Trainer(TrainSettings(max_epochs=3, quiet=True)).fit(
        ...     model, Points(), lambda m, x: m(x).square().mean())
        >>> result.epochs_run
        3
    """

    def __init__(self, settings: TrainSettings, runtime: LocalRuntime | None = None,
                 description: str = "training") -> None:
        self.settings, self.runtime, self.description = settings, runtime or LocalRuntime(), \
            description

    def fit(self, model: nn.Module, train_data: Dataset,
            loss_fn: Callable[[nn.Module, object], Tensor],
            score_fn: Callable[[nn.Module], float] | None = None,
            epochs: int | None = None) -> FitResult:
        """Train for ``epochs`` (fixed), or up to max_epochs with early stopping on score_fn.

        The best weights by validation score are restored at the end. Ctrl-C stops after the
        current batch, restores the best weights so far, and returns with interrupted=True.
        """
        s = self.settings
        seed_everything(s.seed)
        optimizer = self._optimizer(model)
        model, optimizer = self.runtime.setup(model, optimizer)
        scheduler = make_scheduler(s.lr_schedule, optimizer, epochs or s.max_epochs)
        stopper = EarlyStopping(s.patience) if score_fn is not None and epochs is None else None
        loader = self.runtime.loader(train_data, s.batch_size, shuffle=True, seed=s.seed)
        total = epochs or s.max_epochs
        result = FitResult(best_epoch=total - 1, best_score=None, epochs_run=0)
        bar = self._progress(total)
        try:
            for epoch in range(total):
                record = self._epoch(epoch, model, optimizer, loader, loss_fn, score_fn)
                result.history.append(record)
                result.epochs_run = epoch + 1
                if scheduler is not None:
                    is_plateau = isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
                    if is_plateau:
                        scheduler.step(record.val_score if record.val_score is not None
                                       else record.train_loss)
                    else:
                        scheduler.step()
                self._show(bar, record)
                if stopper is not None and stopper.update(epoch, record.val_score, model):
                    break
        except KeyboardInterrupt:
            result.interrupted = True
        finally:
            if bar is not None:
                bar.close()
        if stopper is not None:
            stopper.restore(model)
            result.best_epoch, result.best_score = stopper.best_epoch, stopper.best_score
        return result

    def _optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        s = self.settings
        if s.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer={s.optimizer!r}: choose one of {', '.join(OPTIMIZERS)}.")
        kwargs = dict(lr=s.learning_rate, weight_decay=s.weight_decay)
        if s.optimizer == "sgd":
            kwargs["momentum"] = 0.9
        return OPTIMIZERS[s.optimizer](model.parameters(), **kwargs)

    def _epoch(self, epoch, model, optimizer, loader, loss_fn, score_fn) -> EpochRecord:
        start = time.perf_counter()
        model.train()
        total, batches = 0.0, 0
        for batch in loader:
            loss = loss_fn(model, batch)
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"the training loss became {loss.item()} at epoch {epoch + 1}; lower "
                    "learning_rate, keep grad_clip on, or check the data for extreme values.")
            optimizer.zero_grad(set_to_none=True)
            self.runtime.backward(loss)
            if self.settings.grad_clip > 0:
                nn.utils.clip_grad_norm_(model.parameters(), self.settings.grad_clip)
            optimizer.step()
            total += loss.item()
            batches += 1
        val = None
        if score_fn is not None:
            model.eval()
            with torch.no_grad():
                val = self.runtime.mean(float(score_fn(model)))
        return EpochRecord(epoch, self.runtime.mean(total / max(batches, 1)), val,
                           optimizer.param_groups[0]["lr"], time.perf_counter() - start)

    def _progress(self, total: int):
        if self.settings.quiet or not sys.stderr.isatty() or not self.runtime.is_main:
            return None
        from tqdm.auto import tqdm

        return tqdm(total=total, desc=self.description, unit="epoch", leave=False)

    @staticmethod
    def _show(bar, record: EpochRecord) -> None:
        if bar is None:
            return
        postfix = {"loss": f"{record.train_loss:.4f}"}
        if record.val_score is not None and math.isfinite(record.val_score):
            postfix["val"] = f"{record.val_score:.4f}"
        bar.set_postfix(postfix)
        bar.update(1)
