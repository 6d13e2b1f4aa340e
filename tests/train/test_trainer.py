"""The fit loop: early stopping, best-weights restore, seeds, interruption, bad losses."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lstmkit.data.batch import WindowDataset
from lstmkit.train import Trainer, TrainSettings


def _data(n: int = 64):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 3, 2, generator=g)
    return WindowDataset(x, x.sum(dim=(1, 2)).unsqueeze(1))


def _loss(model, batch):
    return (model(batch.inputs.flatten(1)) - batch.targets).square().mean()


def test_early_stopping_restores_the_best_weights():
    model = nn.Linear(6, 1)
    scores = iter([3.0, 1.0, 2.0, 2.5, 2.7, 2.9])
    seen = []

    def score(m):
        seen.append(m.weight.detach().clone())
        return next(scores)

    result = Trainer(TrainSettings(max_epochs=6, patience=3, quiet=True)).fit(
        model, _data(), _loss, score)
    assert result.best_epoch == 1 and result.best_score == 1.0
    assert result.epochs_run == 5  # stopped 3 epochs after the best
    torch.testing.assert_close(model.weight.detach(), seen[1])


def test_same_seed_repeats_the_run():
    weights = []
    for _ in range(2):
        torch.manual_seed(123)  # a different global state must not matter: fit seeds itself
        model = nn.Linear(6, 1)
        with torch.no_grad():
            model.weight.fill_(0.1)
        Trainer(TrainSettings(max_epochs=3, seed=7, quiet=True)).fit(model, _data(), _loss)
        weights.append(model.weight.detach().clone())
    torch.testing.assert_close(weights[0], weights[1], atol=0, rtol=0)


@pytest.mark.parametrize("optimizer", ["adam", "adamw", "sgd"])
@pytest.mark.parametrize("schedule", ["none", "plateau", "cosine"])
def test_training_reduces_the_loss(optimizer, schedule):
    model = nn.Linear(6, 1)
    result = Trainer(TrainSettings(optimizer=optimizer, lr_schedule=schedule, max_epochs=30,
                                   learning_rate=0.05, quiet=True)).fit(
        model, _data(), _loss, lambda m: float(_loss(m, _data().__getitems__(list(range(64))))))
    assert result.history[-1].train_loss < result.history[0].train_loss / 5


def test_interruption_keeps_the_best_so_far():
    model = nn.Linear(6, 1)
    calls = {"n": 0}

    def loss(m, batch):
        calls["n"] += 1
        if calls["n"] == 12:  # during epoch 3 (4 batches per epoch)
            raise KeyboardInterrupt
        return _loss(m, batch)

    result = Trainer(TrainSettings(max_epochs=50, batch_size=16, quiet=True)).fit(
        model, _data(), loss, lambda m: float(_loss(m, _data().__getitems__(list(range(64))))))
    assert result.interrupted and result.epochs_run == 2 and result.best_epoch in (0, 1)


def test_a_non_finite_loss_stops_with_a_clear_error():
    with pytest.raises(FloatingPointError, match="the training loss became nan at epoch 1"):
        Trainer(TrainSettings(max_epochs=2, quiet=True)).fit(
            nn.Linear(6, 1), _data(), lambda m, b: _loss(m, b) * float("nan"))
