"""Named batch types that cross module boundaries (STYLE.md R11): never positional tuples."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

__all__ = ["BucketBatchSampler", "SequenceBatch", "WindowDataset"]


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


class BucketBatchSampler:
    """Batches of similar length, so that padding stays small: each epoch shuffles the rows,
    sorts each pool of ``pool`` batches' worth by length, cuts it into batches and shuffles
    the batches. Seeded; a new order every epoch."""

    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int, pool: int = 50):
        self.lengths = np.asarray(lengths)
        self.batch_size, self.pool = batch_size, pool
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return -(-len(self.lengths) // self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        order = self.rng.permutation(len(self.lengths))
        size = self.batch_size * self.pool
        batches = []
        for start in range(0, len(order), size):
            chunk = order[start:start + size]
            chunk = chunk[np.argsort(self.lengths[chunk], kind="stable")]
            batches += [chunk[i:i + self.batch_size].tolist()
                        for i in range(0, len(chunk), self.batch_size)]
        for k in self.rng.permutation(len(batches)):
            yield batches[k]
