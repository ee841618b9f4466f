"""Higher-order operators count their bodies, as many times as they run, in the caller's module."""

from __future__ import annotations

import subprocess
import sys
import warnings
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn
from torch._higher_order_ops.associative_scan import associative_scan
from torch._higher_order_ops.invoke_subgraph import invoke_subgraph
from torch._higher_order_ops.map import map as hop_map
from torch._higher_order_ops.scan import scan
from torch._higher_order_ops.while_loop import while_loop
from torch._higher_order_ops.wrap import wrap

from pytest_flops import FlopCounterMode, Measurement

X = torch.randn(4, 8)
A = torch.randn(8, 8)
ONE_MM = 2 * 4 * 8 * 8  # (4, 8) @ (8, 8): 512


def times_a(x: torch.Tensor, *operands: Any) -> torch.Tensor:
    return x @ A


TRUE_BRANCH = 2 * 4 * 8 * 16  # (4, 8) @ (8, 16): 1,024


def measure(step: Callable[[], Any]) -> Measurement:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's "prototype feature" warnings
        with FlopCounterMode(display=False) as mode:
            step()
    return mode.to_measurement()


def branches(device: str = "cpu") -> tuple[Callable[..., Any], Callable[..., Any]]:
    wide, square = torch.randn(8, 16, device=device), torch.randn(8, 8, device=device)
    return (lambda x: x @ wide), (lambda x: (x @ square).repeat(1, 2))


@pytest.mark.parametrize(("predicate", "flops"), [(True, TRUE_BRANCH), (False, ONE_MM)])
def test_cond_counts_the_branch_that_runs(predicate: bool, flops: int) -> None:
    true_fn, false_fn = branches()
    measured = measure(lambda: torch.cond(torch.tensor(predicate), true_fn, false_fn, (X,)))
    assert (measured.total, measured.by_op, measured.unsupported) == (flops, {"aten.mm": flops}, {})


def test_cond_on_meta_counts_its_larger_branch() -> None:
    # the predicate has no value: an upper bound, the 1,024-FLOP branch
    true_fn, false_fn = branches("meta")
    predicate = torch.ones((), dtype=torch.bool, device="meta")
    measured = measure(
        lambda: torch.cond(predicate, true_fn, false_fn, (torch.randn(4, 8, device="meta"),))
    )
    assert measured.total == TRUE_BRANCH


def test_cond_backward_counts_the_branch_backward() -> None:
    x = torch.randn(4, 8, requires_grad=True)
    wide = torch.randn(8, 16, requires_grad=True)
    other = torch.randn(8, 16, requires_grad=True)

    def step() -> None:
        # autograd through cond needs its tensors as operands (torch's own rule without
        # torch.compile, which lifts closures)
        (out,) = torch.cond(
            torch.tensor(True), lambda x, a, b: (x @ a,), lambda x, a, b: (x @ b,), (x, wide, other)
        )
        out.sum().backward()

    measured = measure(step)
    # cond's backward graph runs the branch again (1,024), then x's and a's gradients
    # (1,024 each): three products of the forward's size
    assert (measured.forward, measured.backward) == (TRUE_BRANCH, 3 * TRUE_BRANCH)


class Gated(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(8, 8, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cond(x.sum() > 0, self.layer, lambda y: self.layer(self.layer(y)), (x,))


def test_cond_bodies_count_in_the_modules_they_call() -> None:
    model = Gated()
    once = measure(lambda: model(X.abs()))
    twice = measure(lambda: model(-X.abs()))
    assert once.by_module == {"Gated": {"aten.mm": ONE_MM}, "Gated.layer": {"aten.mm": ONE_MM}}
    assert twice.by_module["Gated.layer"] == {"aten.mm": 2 * ONE_MM}


def test_while_loop_counts_its_body_as_often_as_it_runs() -> None:
    measured = measure(
        lambda: while_loop(lambda i, x: i < 3, lambda i, x: (i + 1, x @ A), (torch.tensor(0), X))
    )
    assert measured.total == 3 * ONE_MM


def test_while_loop_on_meta_is_a_blind_spot() -> None:
    # How often the body runs depends on values meta tensors do not have.
    meta_a = A.to("meta")
    with pytest.raises(RuntimeError):
        measure(
            lambda: while_loop(
                lambda i, x: i < 3,
                lambda i, x: (i + 1, x @ meta_a),
                (torch.zeros((), dtype=torch.long, device="meta"), X.to("meta")),
            )
        )


def test_scan_and_map_count_every_step() -> None:
    xs = torch.randn(5, 4, 8)  # five steps

    def combine(carry: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        following = carry @ A + x
        return following, following.clone()

    # torch before 2.13 runs a scan's body once more, for its output shapes: counted too
    runs = 5 if torch.__version__ >= "2.13" else 6
    assert measure(lambda: scan(combine, torch.randn(4, 8), xs)).total == runs * ONE_MM
    assert measure(lambda: hop_map(times_a, xs)).total == 5 * ONE_MM


def test_associative_scan_counts_every_combine() -> None:
    matrices = torch.randn(6, 3, 3)
    measured = measure(
        lambda: associative_scan(lambda a, b: a @ b, matrices, 0, combine_mode="generic")
    )
    # the odd-even scan of 6 elements: 3 + 1 products on the way up, 1 + 2 on the
    # way down, each a (3, 3) @ (3, 3) product of 2*3*3*3 = 54 FLOP
    assert measured.total == 7 * 54


def test_wrapped_and_invoked_subgraphs_count_their_bodies() -> None:
    assert measure(lambda: wrap(lambda x: x @ A, X)).total == ONE_MM
    # eager invoke_subgraph runs any callable; its annotation names the traced kinds only
    body = lambda x: (x @ A,)  # noqa: E731
    assert measure(lambda: invoke_subgraph(body, "body", X)).total == ONE_MM  # type: ignore[arg-type]


@pytest.mark.slow
def test_counting_starts_without_torch_dynamo_and_still_runs_compiled_code() -> None:
    # Importing torch._dynamo takes seconds: a counter does not, until something
    # compiled runs inside its block (flex_attention compiles even in eager).
    script = """
import sys, warnings
import torch
from pytest_flops import FlopCounterMode

warnings.simplefilter("ignore")
with FlopCounterMode(display=False) as mode:
    torch.randn(4, 8) @ torch.randn(8, 8)
assert "torch._dynamo" not in sys.modules, "counting imported torch._dynamo"
assert mode.get_total_flops() == 512

from torch.nn.attention.flex_attention import flex_attention

q = torch.randn(1, 2, 16, 8)
with FlopCounterMode(display=False) as mode:
    flex_attention(q, q, q)
    torch.compile(lambda x: x @ x.T, fullgraph=True)(torch.randn(4, 8))
# flex: 2*1*2*16*16*(8+8) = 16,384; compiled (4, 8) @ (8, 4): 2*4*8*4 = 256
assert mode.get_total_flops() == 16_384 + 256, mode.get_total_flops()
assert mode.unsupported_ops == {}
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
