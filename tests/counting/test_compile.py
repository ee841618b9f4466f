"""torch.compile'd modules count as in eager, and compile as usual outside the counted block."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import pytest
import torch
from torch import nn
from torch._dynamo.testing import CompileCounter

from pytest_flops import FlopCounterMode

# torch warns that global module hooks (the counter's) fire for the wrapper too
pytestmark = pytest.mark.filterwarnings("ignore:Using `torch.compile\\(module\\)` when there are")


def mlp() -> nn.Sequential:
    return nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 8))


X = torch.randn(4, 16)


def counted(step: Callable[[], Any]) -> dict[str, Any]:
    with FlopCounterMode(display=False) as mode:
        step()
    return mode.to_measurement().to_dict()


def test_compiled_module_counts_like_eager() -> None:
    model = mlp()
    eager = counted(lambda: model(X).sum().backward())
    model.zero_grad(set_to_none=True)  # else the second backward accumulates: add_ bytes

    compiled = torch.compile(model, fullgraph=True, backend=CompileCounter())
    measured = counted(lambda: compiled(X).sum().backward())

    # forward 2*4*16*32 + 2*4*32*8 = 6,144; backward grad weights 6,144 plus the
    # grad input of the second Linear 2*4*8*32 = 2,048
    assert measured == eager
    assert (measured["forward"], measured["backward"]) == (6_144, 8_192)
    # the ReLU's row holds bytes accessed only
    assert set(measured["modules"]) == {
        "Global",
        "Sequential",
        "Sequential.0",
        "Sequential.1",
        "Sequential.2",
    }


def test_compiled_submodule_keeps_its_path() -> None:
    model = mlp()
    eager = counted(lambda: model(X))

    model[0] = cast(nn.Module, torch.compile(model[0], backend=CompileCounter()))
    assert counted(lambda: model(X)) == eager


def test_compilation_outside_the_counted_block_is_untouched() -> None:
    backend = CompileCounter()
    compiled = torch.compile(mlp(), fullgraph=True, backend=backend)

    counted(lambda: compiled(X))
    assert backend.frame_count == 0  # ran eagerly while counting

    compiled(X)
    assert backend.frame_count == 1  # compiles after the block as without it

    # the compiled code stays cached: counting again, then calling, recompiles nothing
    assert counted(lambda: compiled(X))["forward"] == 6_144
    compiled(X)
    assert backend.frame_count == 1
