"""The training foundation every task reuses: the fit loop, callbacks, checkpoints, metrics."""

from .trainer import FitResult, LocalRuntime, Trainer, TrainSettings, seed_everything

__all__ = ["FitResult", "LocalRuntime", "TrainSettings", "Trainer", "seed_everything"]
