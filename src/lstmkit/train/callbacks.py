"""What the fit loop consults each epoch: early stopping with the best weights kept, and the
learning-rate schedules. Plain objects with no knowledge of any task."""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

__all__ = ["EarlyStopping", "make_scheduler"]


class EarlyStopping:
    """Stop when the validation score (lower is better) has not improved for ``patience``
    epochs; keeps a copy of the best weights in memory for :meth:`restore`."""

    def __init__(self, patience: int, min_delta: float = 0.0) -> None:
        self.patience, self.min_delta = patience, min_delta
        self.best_score, self.best_epoch, self._best_state = math.inf, -1, None

    def update(self, epoch: int, score: float, model: nn.Module) -> bool:
        """Record this epoch's score; returns True when training should stop."""
        if score < self.best_score - self.min_delta:
            self.best_score, self.best_epoch = score, epoch
            self._best_state = copy.deepcopy(model.state_dict())
        return epoch - self.best_epoch >= self.patience

    def restore(self, model: nn.Module) -> None:
        """Load the best weights seen back into ``model`` (no-op if none was recorded)."""
        if self._best_state is not None:
            model.load_state_dict(self._best_state)


def make_scheduler(name: str, optimizer: torch.optim.Optimizer, max_epochs: int):
    """"none", "plateau" (halve the rate after 5 flat epochs) or "cosine" over max_epochs."""
    if name == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5, patience=5)
    if name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max_epochs)
    if name == "none":
        return None
    raise ValueError(f"lr_schedule={name!r}: choose 'none', 'plateau' or 'cosine'.")
