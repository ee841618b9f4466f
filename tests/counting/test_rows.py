"""The model you pass is the rows you get: instances, not class names."""

from __future__ import annotations

import copy
import gc
import weakref
from collections.abc import Callable
from typing import cast

import pytest
import torch
from torch import nn

from pytest_flops import FlopCounterMode
from pytest_flops.counting.fixture import Flops

X = torch.randn(3, 4)
LINEAR_4_6 = 2 * 3 * 4 * 6  # addmm of (3, 4) @ (4, 6): 144
LINEAR_6_2 = 2 * 3 * 6 * 2  # addmm of (3, 6) @ (6, 2): 72


def two_layers() -> nn.Sequential:
    return nn.Sequential(nn.Linear(4, 6), nn.Linear(6, 2))


def test_a_copy_of_the_model_counts_in_global_only() -> None:
    model = two_layers()
    ema = copy.deepcopy(model)  # an EMA copy, a teacher, a target network
    flops = Flops()
    with flops(model):
        model(X)
        ema(X)
    assert flops.total == 2 * (LINEAR_4_6 + LINEAR_6_2)  # Global: both ran
    assert flops.by_module == {
        "Sequential": {"aten.addmm": LINEAR_4_6 + LINEAR_6_2},  # the model's own call
        "Sequential.0": {"aten.addmm": LINEAR_4_6},
        "Sequential.1": {"aten.addmm": LINEAR_6_2},
    }


def test_a_submodule_passed_alone_gets_its_own_rows_whoever_calls_it() -> None:
    model = two_layers()
    flops = Flops()
    with flops(model[0]):
        model(X)
    assert flops.by_module == {"Linear": {"aten.addmm": LINEAR_4_6}}
    assert flops.total == LINEAR_4_6 + LINEAR_6_2


# torch warns that global module hooks (the counter's) also see the OptimizedModule
# wrapper; the counter skips it, so its module takes its place in the rows.
@pytest.mark.filterwarnings("ignore:Using `torch.compile.module.` when there are global hooks")
def test_a_compiled_model_is_the_module_it_compiled() -> None:
    model = two_layers()
    compiled = cast(nn.Module, torch.compile(model))  # an OptimizedModule; typed as a callable
    flops = Flops()
    with flops(compiled):
        compiled(X)
    assert flops.by_module["Sequential"] == {"aten.addmm": LINEAR_4_6 + LINEAR_6_2}
    assert flops.by_module["Sequential.1"] == {"aten.addmm": LINEAR_6_2}


class Global(nn.Module):  # a user class that happens to share the row's name
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)


def test_a_module_named_global_never_counts_twice() -> None:
    model = Global()
    flops = Flops()
    with flops(model):
        model(X)
    with FlopCounterMode(display=False) as mode:
        model(X)
    for measurement in (flops.measurement, mode.to_measurement()):
        assert measurement.total == LINEAR_4_6  # 144, not 288
        assert measurement.by_module == {
            "Global (module)": {"aten.addmm": LINEAR_4_6},
            "Global (module).linear": {"aten.addmm": LINEAR_4_6},
        }


class Student(nn.Sequential):
    pass


def test_several_models_keep_rows_for_each() -> None:
    teacher, student = two_layers(), Student(nn.Linear(4, 2))
    flops = Flops()
    with flops(teacher, student):
        teacher(X)
        student(X)
    assert set(flops.by_module) == {
        "Sequential",
        "Sequential.0",
        "Sequential.1",
        "Student",
        "Student.0",
    }
    # two of one class would share a row: named, they do not
    ema, model = two_layers(), two_layers()
    named = Flops()
    with named({"model": model, "ema": ema}):
        model(X)
        ema(X)
        ema(X)
    assert named.by_module["model"] == {"aten.addmm": LINEAR_4_6 + LINEAR_6_2}
    assert named.by_module["ema.1"] == {"aten.addmm": 2 * LINEAR_6_2}


@pytest.mark.parametrize(
    ("models", "problem"),
    [
        (lambda m: (m, copy.deepcopy(m)), "two models would share the row 'Sequential'"),
        (lambda m: (m, m), "Sequential 'Sequential' is passed twice"),
        (lambda m: (m, m[0]), "'Linear' is a submodule of 'Sequential'"),
        (lambda m: ({"a.b": m},), "a row name must be a non-empty string without dots"),
        (lambda m: (m, "m"), "expected a torch.nn.Module, got str"),
    ],
)
def test_models_that_cannot_be_named_apart_are_refused(
    models: Callable[[nn.Sequential], tuple[object, ...]], problem: str
) -> None:
    with pytest.raises((ValueError, TypeError), match=problem):
        Flops()(*models(two_layers()))  # type: ignore[arg-type]


def test_every_row_is_the_sum_of_the_calls_under_it_and_a_read_only_view() -> None:
    model = two_layers()
    with FlopCounterMode(display=False) as mode:
        model(X).sum().backward()
        model[1](torch.randn(3, 6))  # the second layer alone, outside the model's call
    addmm, mm = torch.ops.aten.addmm, torch.ops.aten.mm
    # backward: the grads of layer 1's input (3, 2) @ (2, 6) and weight (2, 3) @ (3, 6),
    # 72 each; layer 0 needs only its weight's, (6, 3) @ (3, 4): 144
    assert mode.flop_counts == {
        "Global": {addmm: LINEAR_4_6 + 2 * LINEAR_6_2, mm: 2 * LINEAR_6_2 + LINEAR_4_6},
        "Sequential": {addmm: LINEAR_4_6 + LINEAR_6_2, mm: 2 * LINEAR_6_2 + LINEAR_4_6},
        "Sequential.0": {addmm: LINEAR_4_6, mm: LINEAR_4_6},
        "Sequential.1": {addmm: LINEAR_6_2, mm: 2 * LINEAR_6_2},
        "Linear": {addmm: LINEAR_6_2},  # the lone call starts a row of its own
    }
    # [forward, backward, recompute]: no checkpoint, nothing recomputed
    assert mode.phase_counts["Sequential"] == [
        LINEAR_4_6 + LINEAR_6_2,
        2 * LINEAR_6_2 + LINEAR_4_6,
        0,
    ]
    mode.flop_counts["Global"][addmm] = 0
    mode.phase_counts["Global"][0] = 0
    assert mode.get_total_flops() == 2 * LINEAR_4_6 + 4 * LINEAR_6_2
    assert mode.phase_counts["Global"] == [
        LINEAR_4_6 + 2 * LINEAR_6_2,
        2 * LINEAR_6_2 + LINEAR_4_6,
        0,
    ]


@pytest.mark.parametrize("rows_of", ["every module", "the model passed"])
def test_a_mode_kept_after_its_block_does_not_keep_the_model_alive(rows_of: str) -> None:
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 2))
    mode = FlopCounterMode(display=False, models=model if rows_of == "the model passed" else None)
    with mode:
        model(torch.randn(3, 4, requires_grad=True)).sum().backward()
    freed = weakref.ref(model)
    del model
    gc.collect()
    assert freed() is None
    # the counts stay: forward 2*3*4*6 + 2*3*6*2 = 216, backward twice that (input grads too)
    assert mode.to_measurement().forward == 216
    assert mode.to_measurement().backward == 432
