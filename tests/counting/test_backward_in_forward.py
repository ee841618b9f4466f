"""A backward run inside a module's forward: its FLOPs follow the graph, not the module stack.

Gradient penalties, physics-informed nets (the grad of the output with respect to
the input) and train steps wrapped in a module all run autograd while a module's
forward is still running; each backward op belongs to the call that made its node.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from pytest_flops import FlopCounterMode, Measurement

# x is (8, 16); every product below is (8, 16) by (16, 32) or its transposes:
# 2 * 8 * 16 * 32 = 8,192 FLOPs each.
PRODUCT = 2 * 8 * 16 * 32


def measure(step: object, models: nn.Module | None = None) -> Measurement:
    with FlopCounterMode(display=False, models=models) as mode:
        step()  # type: ignore[operator]
    return mode.to_measurement()


def rows(measured: Measurement) -> dict[str, tuple[int, int, int]]:
    return {path: (m.forward, m.backward, m.recompute) for path, m in measured.modules.items()}


def x_requiring_grad() -> torch.Tensor:
    torch.manual_seed(0)
    return torch.randn(8, 16, requires_grad=True)


class InputGradient(nn.Module):
    """The grad of a scalar of its output with respect to its input, in its own forward."""

    def __init__(self, *, functional: bool) -> None:
        super().__init__()
        self.body = nn.Linear(16, 32, bias=False)
        self.functional = functional

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.functional:
            return torch.func.grad(lambda x: self.body(x).pow(2).sum())(x)
        y = self.body(x).pow(2).sum()
        (grad_x,) = torch.autograd.grad(y, x)
        return grad_x


@pytest.mark.parametrize("functional", [False, True], ids=["autograd.grad", "torch.func.grad"])
@pytest.mark.parametrize("roots", [False, True], ids=["every module", "flops(model)"])
def test_a_backward_inside_forward_lands_in_the_module_that_built_the_graph(
    roots: bool, functional: bool
) -> None:
    model, x = InputGradient(functional=functional), x_requiring_grad()
    measured = measure(lambda: model(x), model if roots else None)
    # forward: body's mm, (8, 16) @ (16, 32); backward: only x's grad is asked for, the
    # mm of the gradient (8, 32) by the weight (32, 16), made by body's forward
    assert rows(measured) == {
        "Global": (PRODUCT, PRODUCT, 0),
        "InputGradient": (PRODUCT, PRODUCT, 0),
        "InputGradient.body": (PRODUCT, PRODUCT, 0),
    }
    # as the same graph differentiated outside every module
    body = nn.Linear(16, 32, bias=False)
    outside = measure(lambda: torch.autograd.grad(body(x).pow(2).sum(), x))
    assert rows(outside)["Linear"] == (PRODUCT, PRODUCT, 0)


class Penalty(nn.Module):
    """Differentiates what its caller made: none of the graph is its own."""

    def forward(self, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        (grad_x,) = torch.autograd.grad(h.sum(), x)
        return grad_x


class Scorer(nn.Module):
    """Makes a node in its own forward, outside every submodule, and has it differentiated."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(16, 32))
        self.penalty = Penalty()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.penalty(x @ self.weight, x)


class Outer(nn.Module):
    def __init__(self, *, probe: bool) -> None:
        super().__init__()
        # a call that has ended before the node is made, under the same parent
        self.probe = nn.Linear(16, 32, bias=False) if probe else None
        self.scorer = Scorer()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.probe is not None:
            self.probe(x)
        return self.scorer(x)


@pytest.mark.parametrize("probe", [False, True], ids=["first call", "after an ended call"])
def test_a_node_made_by_a_running_call_itself_stays_with_that_call(probe: bool) -> None:
    model, x = Outer(probe=probe), x_requiring_grad()
    measured = measure(lambda: model(x))
    # Scorer's mm x @ weight is its own node: its backward, the gradient (8, 32) by the
    # weight's transpose (32, 16), is Scorer's, though Penalty runs it; the probe's
    # mm is forward work only (its output is dropped)
    expected = {
        "Global": ((1 + probe) * PRODUCT, PRODUCT, 0),
        "Outer": ((1 + probe) * PRODUCT, PRODUCT, 0),
        "Outer.scorer": (PRODUCT, PRODUCT, 0),
        "Outer.scorer.penalty": (0, 0, 0),
    }
    if probe:
        expected["Outer.probe"] = (PRODUCT, 0, 0)
    assert rows(measured) == expected


class GradientPenalty(nn.Module):
    """Adds the squared norm of the input gradient to the loss: create_graph=True in forward."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Linear(16, 32, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x).pow(2).sum()
        (grad_x,) = torch.autograd.grad(y, x, create_graph=True)
        return y + grad_x.pow(2).sum()


def test_a_gradient_penalty_inside_forward_stays_with_the_module_it_differentiates() -> None:
    model, x = GradientPenalty(), x_requiring_grad()
    measured = measure(lambda: model(x).backward())
    # With h = x @ W.T (W the (32, 16) weight), y = sum(h^2), g = dy/dh = 2h:
    # forward: h, 1 product.
    # grad in forward: grad_x = g @ W, 1 product, made (create_graph) by body's backward.
    # outer backward: that mm differentiated for g (d_g = d_grad_x @ W.T) and for W
    # (g.T @ d_grad_x), 2 products, body's; d_g flows back through 2h (no products)
    # and joins y's own gradient into h, so body's first mm runs its backward once,
    # for x and for W, 2 products. Backward: 1 + 2 + 2 = 5 products, all body's.
    assert rows(measured) == {
        "Global": (PRODUCT, 5 * PRODUCT, 0),
        "GradientPenalty": (PRODUCT, 5 * PRODUCT, 0),
        "GradientPenalty.body": (PRODUCT, 5 * PRODUCT, 0),
    }
    assert 5 * PRODUCT == 40_960


class Checkpointed(nn.Module):
    def __init__(self, *, use_reentrant: bool) -> None:
        super().__init__()
        # the ReLU saves its output, so even an early-stopping checkpoint re-runs the mm
        self.body = nn.Sequential(nn.Linear(16, 32, bias=False), nn.ReLU())
        self.use_reentrant = use_reentrant

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return checkpoint(self.body, x, use_reentrant=self.use_reentrant)


class TrainStep(nn.Module):
    """A whole train step in one forward, through a block that checkpoints its body."""

    def __init__(self, *, use_reentrant: bool) -> None:
        super().__init__()
        self.block = Checkpointed(use_reentrant=use_reentrant)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        loss = self.block(x).pow(2).sum()
        loss.backward()
        return loss.detach()


@pytest.mark.parametrize("use_reentrant", [False, True], ids=["non-reentrant", "reentrant"])
def test_a_checkpoint_recomputed_by_a_backward_inside_forward(use_reentrant: bool) -> None:
    model, x = TrainStep(use_reentrant=use_reentrant), x_requiring_grad()
    measured = measure(lambda: model(x))
    # forward: the mm once; recompute: the mm again, in the backward the step runs, under
    # the block that checkpointed it; backward: the mm's grads of x and of the weight,
    # 2 products, all body.0's
    every_row = (PRODUCT, 2 * PRODUCT, PRODUCT)
    assert rows(measured) == {
        "Global": every_row,
        "TrainStep": every_row,
        "TrainStep.block": every_row,
        "TrainStep.block.body": every_row,
        "TrainStep.block.body.0": every_row,
        "TrainStep.block.body.1": (0, 0, 0),
    }
