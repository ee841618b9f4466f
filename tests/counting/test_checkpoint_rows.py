"""Recompute under nested and function checkpoints: its phase, and the rows it lands in."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.checkpoint import (
    CheckpointPolicy,
    checkpoint,
    create_selective_checkpoint_contexts,
)

import pytest_flops
from pytest_flops import FlopCounterMode, Measurement

# An (4, 8) input through bias-free Linear(8, 8): one mm of 2*4*8*8 FLOPs; its
# backward takes the grads of its input and of its weight, two mms of that size.
PRODUCT = 2 * 4 * 8 * 8  # 512
# A (4, 8) fp32 activation is 128 bytes; relu reads and writes it.
RELU_BYTES = 2 * 4 * 8 * 4  # 256


def rows(measured: Measurement) -> dict[str, tuple[int, int, int]]:
    return {path: (m.forward, m.backward, m.recompute) for path, m in measured.modules.items()}


def on_every_device(make: Callable[[], nn.Module], step: Callable[[Any, Any], None]) -> list[Any]:
    """The step counted on the CPU, then on meta and fake stand-ins."""
    torch.manual_seed(0)
    model, x = make(), torch.randn(4, 8, requires_grad=True)
    with FlopCounterMode(display=False) as mode:
        step(model, x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # checkpoint: no RNG state to keep on meta
        stand_ins = [pytest_flops.count(step, model, x, device=d) for d in ("meta", "fake")]
    return [mode.to_measurement(), *stand_ins]


def train_step(model: nn.Module, x: torch.Tensor) -> None:
    model(x).sum().backward()


class NestedReentrant(nn.Module):
    """A reentrant checkpoint inside a function another checkpoint re-runs."""

    def __init__(self, *, outer_reentrant: bool) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 8, bias=False)
        self.outer_reentrant = outer_reentrant

    def inner(self, x: torch.Tensor) -> torch.Tensor:
        return checkpoint(self.fc, x, use_reentrant=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return checkpoint(self.inner, x, use_reentrant=self.outer_reentrant)


@pytest.mark.parametrize("outer_reentrant", [True, False], ids=["reentrant", "non-reentrant"])
def test_a_reentrant_checkpoint_nested_in_a_recompute_is_recompute_in_its_rows(
    outer_reentrant: bool,
) -> None:
    # forward: fc once (the inner checkpoint's first run, under no_grad).
    # recompute: the outer checkpoint re-runs the inner one's first run (no_grad too:
    # it is still work done again), and the inner one's backward re-runs fc: 2 mms.
    # backward: fc's grads of its input and of its weight, 2 mms. All in Net.fc.
    every_row = (PRODUCT, 2 * PRODUCT, 2 * PRODUCT)
    for measured in on_every_device(
        lambda: NestedReentrant(outer_reentrant=outer_reentrant), train_step
    ):
        assert rows(measured) == {
            "Global": every_row,
            "NestedReentrant": every_row,
            "NestedReentrant.fc": every_row,
        }
        assert every_row == (512, 1024, 1024)


class CheckpointedBody(nn.Module):
    """A non-reentrant checkpoint of a method, not of a module."""

    def __init__(self, context_fn: Callable[[], Any] | None = None) -> None:
        super().__init__()
        self.fc1 = nn.Linear(8, 8, bias=False)
        self.fc2 = nn.Linear(8, 8, bias=False)
        self.options: dict[str, Any] = {} if context_fn is None else {"context_fn": context_fn}

    def body(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.fc1(x).relu())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return checkpoint(self.body, x, use_reentrant=False, **self.options)


def recompute_everything(ctx: Any, op: Any, *args: Any, **kwargs: Any) -> CheckpointPolicy:
    return CheckpointPolicy.PREFER_RECOMPUTE


@pytest.mark.parametrize(
    "context_fn",
    [None, lambda: create_selective_checkpoint_contexts(recompute_everything)],
    ids=["checkpoint", "selective"],
)
def test_a_checkpointed_function_recomputes_in_the_rows_of_its_first_run(
    context_fn: Callable[[], Any] | None,
) -> None:
    # Backward starts at fc2's mm, whose saved input (the relu's output) and weight
    # unpack first: the re-run goes fc1, relu, then into fc2, whose mm input and weight
    # are saved before it runs (early stop: fc2's mm is not re-run).
    for measured in on_every_device(lambda: CheckpointedBody(context_fn), train_step):
        assert rows(measured) == {
            "Global": (2 * PRODUCT, 4 * PRODUCT, PRODUCT),
            "CheckpointedBody": (2 * PRODUCT, 4 * PRODUCT, PRODUCT),
            "CheckpointedBody.fc1": (PRODUCT, 2 * PRODUCT, PRODUCT),
            "CheckpointedBody.fc2": (PRODUCT, 2 * PRODUCT, 0),
        }
        # The relu, between the two calls, is re-run in the function's caller only.
        fc2, body = measured.modules["CheckpointedBody.fc2"], measured.modules["CheckpointedBody"]
        assert fc2.bytes_recompute == 0
        assert (
            body.bytes_recompute
            == measured.modules["CheckpointedBody.fc1"].bytes_recompute + RELU_BYTES
        )


class Attention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.q = nn.Linear(8, 8, bias=False)
        self.o = nn.Linear(8, 8, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.o(self.q(x).relu())


class Layers(nn.Module):
    """A checkpointed method that runs list items by index, then a module of two."""

    def __init__(self) -> None:
        super().__init__()
        self.attn = Attention()
        self.layers = nn.ModuleList(nn.Linear(8, 8, bias=False) for _ in range(2))

    def layer(self, x: torch.Tensor) -> torch.Tensor:
        for i in range(len(self.layers)):
            x = self.layers[i](x).relu()
        return self.attn(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return checkpoint(self.layer, x, use_reentrant=False, early_stop=False)


def test_a_checkpointed_function_re_runs_submodules_and_list_items_under_their_names() -> None:
    # Without early stop every mm is re-run once, from the node of attn.o's mm, the
    # last made: each of the four linears counts a product forward, two backward, one
    # recompute.
    one = (PRODUCT, 2 * PRODUCT, PRODUCT)
    for measured in on_every_device(Layers, train_step):
        assert rows(measured) == {
            "Global": (4 * PRODUCT, 8 * PRODUCT, 4 * PRODUCT),
            "Layers": (4 * PRODUCT, 8 * PRODUCT, 4 * PRODUCT),
            "Layers.attn": (2 * PRODUCT, 4 * PRODUCT, 2 * PRODUCT),
            "Layers.attn.q": one,
            "Layers.attn.o": one,
            "Layers.layers.0": one,
            "Layers.layers.1": one,
        }
