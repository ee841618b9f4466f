"""Bytes accessed by optimizer steps: a gradient is an input, read once, unless unscaled."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch

from pytest_flops import FlopCounterMode

N = 1_000  # one fp32 parameter of 1,000 values: 4,000 B for it and each of its states


def step_bytes(optimizer: Callable[..., torch.optim.Optimizer], **options: Any) -> dict[str, int]:
    parameter = torch.nn.Parameter(torch.randn(N))
    parameter.grad = torch.randn(N)
    step = optimizer([parameter], lr=0.1, **options)
    with FlopCounterMode(display=False) as mode:
        step.step()
    return mode.to_measurement().bytes_by_op


@pytest.mark.parametrize("implementation", ["foreach", "fused"])
def test_an_sgd_step_reads_the_gradient_once(implementation: str) -> None:
    # the parameter read and written (8,000), the gradient read (4,000)
    fused_op = "aten._foreach_add_" if implementation == "foreach" else "aten._fused_sgd_"
    assert step_bytes(torch.optim.SGD, **{implementation: True}) == {fused_op: 12_000}


@pytest.mark.parametrize("optimizer", [torch.optim.Adam, torch.optim.AdamW])
def test_a_fused_adam_step_reads_the_gradient_once(optimizer: type[torch.optim.Optimizer]) -> None:
    measured = step_bytes(optimizer, fused=True)
    # the parameter, exp_avg and exp_avg_sq read and written (3 * 8,000), the gradient
    # read (4,000), the fp32 step count read (4)
    assert measured[f"aten._fused_{optimizer.__name__.lower()}_"] == 28_004


def test_a_fused_adagrad_step_reads_the_gradient_and_its_step_count() -> None:
    # the parameter and the state sum read and written (2 * 8,000), the gradient read
    # (4,000), the step count read (4): the optimizer incremented it before the step
    assert step_bytes(torch.optim.Adagrad, fused=True)["aten._fused_adagrad_"] == 20_004


def test_a_fused_step_that_unscales_the_gradient_writes_it_back() -> None:
    parameter, grad = torch.randn(N), torch.randn(N)
    states = [torch.zeros(N)], [torch.zeros(N)]
    scale, found_inf, step = torch.ones(()), torch.zeros(()), torch.ones(())
    with FlopCounterMode(display=False) as mode:
        torch._fused_adamw_(
            [parameter], [grad], *states, [], [step], lr=0.1, beta1=0.9, beta2=0.999,
            weight_decay=0.0, eps=1e-8, amsgrad=False, maximize=False,
            grad_scale=scale, found_inf=found_inf,
        )  # fmt: skip
    # the parameter, gradient, exp_avg and exp_avg_sq read and written (4 * 8,000);
    # the step, grad_scale and found_inf read (3 * 4)
    assert mode.to_measurement().bytes_by_op == {"aten._fused_adamw_": 32_012}
