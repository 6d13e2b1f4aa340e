"""``lstmkit demo``: a small LSTM trained on a noisy sine wave, beside a persistence baseline.

A stand-in until the forecasting application lands: it shows the core working end to end on
this machine (which engine ran, how the fit went) in a few seconds.
"""

from __future__ import annotations

import argparse
import math
import time

import torch
from torch import nn

from ..nn import LSTM


class _NextValue(nn.Module):
    """LSTM encoder + linear head: (B, T, 1) windows -> (B,) next values."""

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.lstm = LSTM(1, hidden_size, batch_first=True)
        self.head = nn.Linear(hidden_size, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, (h_n, _) = self.lstm(x)  # h_n: (1, B, H)
        return self.head(h_n[-1]).squeeze(1)  # (B,)


def _windows(series: torch.Tensor, lookback: int) -> tuple[torch.Tensor, torch.Tensor]:
    windows = series.unfold(0, lookback + 1, 1)  # (N, lookback + 1)
    return windows[:, :lookback].unsqueeze(2), windows[:, lookback]  # (N, T, 1), (N,)


def run(args: argparse.Namespace) -> int:
    torch.manual_seed(args.seed)
    steps = torch.arange(1200, dtype=torch.float32)
    series = torch.sin(2 * math.pi * steps / 50) + 0.1 * torch.randn(1200)
    x, y = _windows(series, args.lookback)
    split = int(0.8 * len(y))
    model = _NextValue(args.hidden_size)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    start = time.perf_counter()
    for epoch in range(args.epochs):
        model.train()
        for batch in torch.randperm(split).split(64):
            loss = nn.functional.mse_loss(model(x[batch]), y[batch])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        if not args.quiet:
            print(f"epoch {epoch + 1}/{args.epochs}  train MSE {loss.item():.4f}")
    model.eval()
    with torch.no_grad():
        test_mse = nn.functional.mse_loss(model(x[split:]), y[split:]).item()
    persistence = nn.functional.mse_loss(x[split:, -1, 0], y[split:]).item()
    print(f"test MSE: lstmkit LSTM {test_mse:.4f}  vs persistence {persistence:.4f} "
          f"(noise floor 0.0100); engine {model.lstm.last_engine!r}, "
          f"{time.perf_counter() - start:.1f} s")
    return 0


def add_parser(commands) -> None:
    parser = commands.add_parser("demo", help="train a small LSTM on a noisy sine wave",
                                 description=__doc__)
    parser.add_argument("--hidden-size", type=int, default=32, help="LSTM units (default 32)")
    parser.add_argument("--lookback", type=int, default=20, help="steps per window (default 20)")
    parser.add_argument("--epochs", type=int, default=8, help="passes over the data (default 8)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--quiet", action="store_true", help="print only the result")
    parser.set_defaults(run=run)
