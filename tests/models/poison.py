"""A model that kills the process running it, for the attempt-cap fault test: its forward
segfaults the process, as a broken native extension would, every time it runs."""

from __future__ import annotations

import os
import signal

from torch import Tensor, nn


class Poison(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: Tensor) -> Tensor:
        os.kill(os.getpid(), signal.SIGSEGV)
        return self.fc(x)


def poison() -> nn.Module:
    return Poison().eval()
