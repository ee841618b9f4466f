"""Shared set-up of the example suite: fixed seeds, so inputs are the same every run.

FLOP counts depend on shapes only, so the seed is not what keeps the snapshots
stable; it keeps token ids (and so greedy decoding) reproducible.
"""

import pytest
import torch


@pytest.fixture(autouse=True)
def _seeded() -> None:
    torch.manual_seed(0)
