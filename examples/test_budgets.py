"""FLOP budgets: ``limit_flops`` fails a test whose count goes over its limit."""

import pytest
import torch

from examples.models import TinyGPT
from pytest_flops import Flops


@pytest.mark.limit_flops("1 MFLOP")
def test_tiny_gpt_forward_fits_the_budget() -> None:
    # No fixture: the plugin counts the whole test, and stores no snapshot.
    model = TinyGPT()
    with torch.no_grad():
        model(torch.randint(0, 64, (1, 16)))


@pytest.mark.limit_flops("3 MFLOP", forward="1 MFLOP")
def test_tiny_gpt_train_step_fits_the_budget(flops: Flops) -> None:
    # With the fixture, the budget applies to what the blocks counted, and the
    # snapshot is compared too.
    model = TinyGPT()
    with flops(model):
        model(torch.randint(0, 64, (1, 16))).sum().backward()
