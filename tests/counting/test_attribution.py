"""Module and forward/backward attribution, where torch's module tracker goes wrong."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from pytest_flops import FlopCounterMode, Measurement

aten = torch.ops.aten


def measure(fn: object) -> Measurement:
    with FlopCounterMode(display=False) as mode:
        fn()  # type: ignore[operator]
    return mode.to_measurement()


def assert_rows_nest(measurement: Measurement) -> None:
    """No row exceeds its parent, and no parent's children sum to more than it."""
    totals = {path: m.total for path, m in measurement.modules.items()}
    children: dict[str, int] = {}
    for path, total in totals.items():
        if path == "Global":
            continue
        parent = path.rpartition(".")[0] or "Global"
        assert total <= totals[parent], f"{path} exceeds {parent}"
        children[parent] = children.get(parent, 0) + total
    for parent, summed in children.items():
        assert summed <= totals[parent], f"children of {parent} sum past it"


class Shared(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(4, 4, bias=False)
        self.left = nn.Sequential(self.proj)
        self.right = nn.Sequential(self.proj)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.right(self.left(x))


def test_shared_submodule_counts_under_each_parent() -> None:
    model = Shared()
    x = torch.randn(3, 4)
    measurement = measure(lambda: model(x))
    one_call = 2 * 3 * 4 * 4  # mm of (3, 4) @ (4, 4)
    assert measurement.by_module == {
        "Shared": {"aten.mm": 2 * one_call},
        "Shared.left": {"aten.mm": one_call},
        "Shared.left.0": {"aten.mm": one_call},
        "Shared.right": {"aten.mm": one_call},
        "Shared.right.0": {"aten.mm": one_call},
    }
    assert_rows_nest(measurement)


class FrozenInput(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(8, 16, bias=False)
        self.head = nn.Linear(16, 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x))


def test_backward_never_leaks_into_module_with_frozen_inputs() -> None:
    model = FrozenInput()
    x = torch.randn(5, 8)  # needs no grad: embed's backward computes grad_weight only
    outside = torch.randn(6, 7, requires_grad=True)

    def step() -> None:
        loss = model(x).sum() + (outside @ torch.randn(7, 9)).sum()
        loss.backward()

    measurement = measure(step)
    embed, head, outside_mm = 2 * 5 * 8 * 16, 2 * 5 * 16 * 2, 2 * 6 * 7 * 9
    assert measurement.modules["FrozenInput.embed"].forward == embed
    assert measurement.modules["FrozenInput.embed"].backward == embed  # grad_weight only
    assert measurement.modules["FrozenInput.head"].backward == 2 * head  # grad_input + grad_weight
    # the product outside any module (forward, and its grad_input) lands in Global alone
    assert measurement.modules["FrozenInput"].total == 2 * embed + 3 * head
    assert measurement.total == 2 * embed + 3 * head + 2 * outside_mm
    assert_rows_nest(measurement)


class Twice(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(4, 4, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(self.layer(x).relu())


def test_module_called_several_times_accumulates() -> None:
    model = Twice()
    measurement = measure(lambda: model(torch.randn(2, 4, requires_grad=True)).sum().backward())
    one = 2 * 2 * 4 * 4
    # each call: forward mm, backward grad_input mm and grad_weight mm
    assert measurement.modules["Twice.layer"].forward == 2 * one
    assert measurement.modules["Twice.layer"].backward == 4 * one
    assert measurement.total == 6 * one


def test_module_registered_twice_in_one_parent_takes_its_first_name() -> None:
    layer = nn.Linear(4, 4, bias=False)
    model = nn.Sequential(layer, nn.ReLU(), layer)  # like named_modules(), which dedupes
    measurement = measure(lambda: model(torch.randn(2, 4)))
    assert measurement.by_module == {
        "Sequential": {"aten.mm": 2 * 2 * 2 * 4 * 4},
        "Sequential.0": {"aten.mm": 2 * 2 * 2 * 4 * 4},
    }


class Recursive(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(4, 4))

    def forward(self, x: torch.Tensor, depth: int) -> torch.Tensor:
        x = x @ self.weight
        return self(x, depth - 1) if depth > 1 else x


def test_recursive_module_counts_each_flop_once() -> None:
    model = Recursive()
    measurement = measure(lambda: model(torch.randn(3, 4), 3).sum().backward())
    one = 2 * 3 * 4 * 4
    # 3 forward mm; backward: grad_weight at every level, grad_input for the upper two
    assert measurement.by_module == {"Recursive": {"aten.mm": 3 * one + 3 * one + 2 * one}}
    assert measurement.modules["Recursive"].total == measurement.total


class PytreeBlock(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(4, 4, bias=False)

    def forward(self, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, object]]:
        return self.proj(inputs["x"]), {"aux": [inputs["y"] @ inputs["y"]]}


def test_pytree_inputs_and_outputs() -> None:
    block = PytreeBlock()
    x = torch.randn(2, 4, requires_grad=True)
    y = torch.randn(3, 3, requires_grad=True)

    def step() -> None:
        out, extra = block({"x": x, "y": y})
        (out.sum() + extra["aux"][0].sum()).backward()

    measurement = measure(step)
    proj, square = 2 * 2 * 4 * 4, 2 * 3 * 3 * 3
    # y @ y: forward once, backward grad through both operands
    assert measurement.by_module["PytreeBlock"] == {"aten.mm": 3 * proj + 3 * square}
    assert measurement.by_module["PytreeBlock.proj"] == {"aten.mm": 3 * proj}


class Checkpointed(nn.Module):
    def __init__(self, *, use_reentrant: bool) -> None:
        super().__init__()
        self.block = nn.Sequential(
            nn.Linear(8, 8, bias=False), nn.ReLU(), nn.Linear(8, 8, bias=False)
        )
        self.head = nn.Linear(8, 1, bias=False)
        self.use_reentrant = use_reentrant

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = checkpoint(self.block, x, use_reentrant=self.use_reentrant)
        return self.head(hidden)


@pytest.mark.parametrize(
    ("use_reentrant", "recomputed_linears"),
    # Non-reentrant checkpointing stops recomputing once it has every tensor backward
    # needs: block.2's input (the ReLU output) is needed, block.2's output is not.
    [(False, 1), (True, 2)],
    ids=["non-reentrant", "reentrant"],
)
def test_checkpoint_recompute_is_recompute_work_of_its_module(
    use_reentrant: bool, recomputed_linears: int
) -> None:
    model = Checkpointed(use_reentrant=use_reentrant)
    x = torch.randn(4, 8, requires_grad=True)
    measurement = measure(lambda: model(x).sum().backward())
    linear = 2 * 4 * 8 * 8
    head = 2 * 4 * 8 * 1
    recompute = recomputed_linears * linear
    # forward: the block's two linears once; recompute: the linears re-run;
    # backward: grad_input and grad_weight for each linear (4 * linear)
    block = measurement.modules["Checkpointed.block"]
    assert (block.forward, block.backward, block.recompute) == (2 * linear, 4 * linear, recompute)
    assert measurement.modules["Checkpointed.block.0"].recompute == linear
    assert measurement.modules["Checkpointed.block.2"].recompute == recompute - linear
    assert measurement.modules["Checkpointed.block.0"].backward == 2 * linear
    assert measurement.modules["Checkpointed.block.2"].backward == 2 * linear
    assert measurement.modules["Checkpointed.head"].backward == 2 * head
    assert measurement.modules["Checkpointed.head"].recompute == 0
    assert measurement.forward == 2 * linear + head
    assert measurement.backward == 4 * linear + 2 * head
    assert measurement.recompute == recompute
    assert_rows_nest(measurement)


def test_double_backward_belongs_to_the_modules_it_differentiates() -> None:
    # A gradient penalty: the first backward builds a graph (create_graph=True) whose
    # nodes are made by the backward of Sequential.0 and Sequential.2; the second
    # backward runs them, and their FLOPs stay with those modules.
    model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 1))
    x = torch.randn(4, 8, requires_grad=True)

    def gradient_penalty() -> None:
        (grad_x,) = torch.autograd.grad(model(x).sum(), x, create_graph=True)
        grad_x.pow(2).sum().backward()

    measurement = measure(gradient_penalty)
    linear0, linear2 = 2 * 4 * 8 * 16, 2 * 4 * 16 * 1  # 1024, 128: one product each
    # Sequential.0: in the first backward, the grad of x (1 product); in the second,
    # that mm differentiated for both its inputs (2), and the forward addmm again, now
    # for x and the weight (2)
    expected_0 = linear0 + 2 * linear0 + 2 * linear0
    # Sequential.2: the grad of its input (1); then that mm differentiated for the
    # weight only, the incoming gradient (ones, from sum()) needing none (1)
    expected_2 = linear2 + linear2
    assert measurement.modules["Sequential.0"].backward == expected_0 == 5_120
    assert measurement.modules["Sequential.2"].backward == expected_2 == 256
    assert measurement.modules["Sequential"].backward == measurement.backward == 5_376
    assert_rows_nest(measurement)


def test_a_node_two_threads_number_alike_is_left_to_global() -> None:
    # CUDA runs backward on a thread of its own, which numbers the nodes it makes (a
    # checkpoint's recomputation) apart from the forward's thread. No CPU run makes
    # such a thread, so the two numberings are set up by hand: a node that only one
    # of them places is attributed; one that both place, in different module calls,
    # is left to "Global" rather than guessed.
    from pytest_flops.counting.node_index import Frame, NodeIndex, frame_of

    class Node:
        def __init__(self, sequence_nr: int) -> None:
            self.sequence_nr = sequence_nr

        def _sequence_nr(self) -> int:
            return self.sequence_nr

    def frame(path: str, first: int, end: int) -> Frame:
        return Frame(nn.Identity(), path, None, (path,), first_node=first, end_node=end)

    forward, recomputed = frame("Net.a", 10, 20), frame("Net.b", 15, 18)
    indexes = {1: NodeIndex(), 2: NodeIndex()}
    indexes[1].add(forward)
    indexes[2].add(recomputed)

    assert frame_of(indexes, Node(12)) is forward
    assert frame_of(indexes, Node(16)) is None
    assert frame_of(indexes, Node(25)) is None


def test_resnet18_forward_backward_split() -> None:
    models = pytest.importorskip("torchvision.models")
    model = models.resnet18()
    x = torch.randn(1, 3, 224, 224, requires_grad=True)
    measurement = measure(lambda: model(x).sum().backward())
    # every conv and the fc get grad_input and grad_weight: backward is twice forward
    assert measurement.forward == 3628146688
    assert measurement.backward == 2 * 3628146688
    assert measurement.total == 10884440064
    assert measurement.unsupported == {}
    assert_rows_nest(measurement)


def test_no_grad_inference_counts_forward_only() -> None:
    model = nn.Sequential(nn.Linear(4, 6, bias=False), nn.Linear(6, 2, bias=False))
    with torch.no_grad():
        measurement = measure(lambda: model(torch.randn(3, 4)))
    assert measurement.forward == 2 * 3 * 4 * 6 + 2 * 3 * 6 * 2
    assert measurement.backward == 0
    assert measurement.by_module["Sequential.1"] == {"aten.mm": 2 * 3 * 6 * 2}
