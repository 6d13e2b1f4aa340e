"""Named batch types that cross module boundaries (STYLE.md R11): never positional tuples."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor
from torch.utils.data import Dataset

__all__ = ["SequenceBatch", "WindowDataset"]


class SequenceBatch(NamedTuple):
    """A batch of windows."""

    inputs: Tensor  # (B, T, F) float32
    lengths: Tensor | None  # (B,) valid steps per row; None when every row has T
    targets: Tensor  # task-defined; for forecasting (B, horizon), scaled


class WindowDataset(Dataset):
    """In-memory windows that hand the fit loop whole batches (``__getitems__``)."""

    def __init__(self, inputs: Tensor, targets: Tensor) -> None:
        self.inputs, self.targets = inputs, targets

    def __len__(self) -> int:
        return len(self.inputs)

    def __getitem__(self, index: int) -> SequenceBatch:
        """One window as a batch of one."""
        return self.__getitems__([index])

    def __getitems__(self, indices: list[int]) -> SequenceBatch:
        index = torch.as_tensor(indices)
        return SequenceBatch(self.inputs[index], None, self.targets[index])
