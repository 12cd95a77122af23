"""A model that takes its time, for the tests that stop a running job (cancel, timeout).

Its forward sleeps, so the export stage (the eager reference) lasts as long as asked; a stop
signal interrupts the sleep at once.
"""

from __future__ import annotations

import time

import torch
from torch import Tensor, nn


class Sleepy(nn.Module):
    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds
        self.fc = nn.Linear(4, 4)

    def forward(self, x: Tensor) -> Tensor:
        time.sleep(self.seconds)
        return self.fc(x)


def sleepy(seconds: float = 30.0, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return Sleepy(seconds).eval()
