"""``pytest_flops.flop_counter``: torch.utils.flop_counter's names, each with its number,
and what code written against torch's counter does with them (a re-entered mode, triton
kernels, ``skip_unsupported``)."""

from __future__ import annotations

from typing import Any, Literal

import pytest
import torch
import torch.utils.flop_counter as torch_counter

import pytest_flops
import pytest_flops.flop_counter as ours
from pytest_flops import FlopCounterMode
from pytest_flops.counting.formulas import FLOP_FORMULAS

aten = torch.ops.aten


def test_the_module_has_torchs_names() -> None:
    missing = [name for name in ours.__all__ if not hasattr(torch_counter, name)]
    assert missing == ["scoped_flop_formula"]  # ours alone
    assert ours.FlopCounterMode is FlopCounterMode


def test_get_shape_and_shape_wrapper() -> None:
    assert ours.get_shape(torch.empty(2, 3)) == (2, 3)
    assert ours.get_shape(7) == 7

    def rows_times_columns(a_shape: Any, b_shape: Any, *, out_shape: Any, extra: Any) -> int:
        return int(a_shape[0] * b_shape[1] * out_shape[0] * extra[1]["k"][0])

    wrapped = ours.shape_wrapper(rows_times_columns)
    # tensors become shapes: in arguments, in keyword lists and dicts, and out_val
    a, b, out = torch.empty(4, 5), torch.empty(5, 6), torch.empty(4, 6)
    extra = [torch.empty(3), {"k": torch.empty(2)}]
    assert wrapped(a, b, out_val=out, extra=extra) == 4 * 6 * 4 * 2
    assert wrapped.__name__ == "rows_times_columns"


CONV = (None, [1, 1], [1, 1], [1, 1], False, [0, 0], 1)  # bias, stride, padding, ...
# (name, arguments, their count, derivation); torch's formula counts the same shapes alike
FORMULAS = [
    ("mm_flop", ((4, 5), (5, 6)), 240),  # 2*4*5*6
    ("addmm_flop", ((6,), (4, 5), (5, 6)), 240),  # the bias add is free
    ("bmm_flop", ((3, 4, 5), (3, 5, 6)), 720),  # 3 * 240
    ("baddbmm_flop", ((3, 4, 6), (3, 4, 5), (3, 5, 6)), 720),
    # conv2d 2x3x6x6 * 6x3x4x4, padding 1, out 5x5: 2 * 2 * 25 * 6 * 3 * 16
    ("conv_flop", ((2, 3, 6, 6), (6, 3, 4, 4), *CONV), 28_800),
    # its backward, both gradients: one forward each
    (
        "conv_backward_flop",
        ((2, 6, 5, 5), (2, 3, 6, 6), (6, 3, 4, 4), *CONV, [True, True, False]),
        57_600,
    ),
    # (B, H, S, D) = (2, 8, 128, 64): 2*2*8*128*128*(64 + 64)
    ("sdpa_flop", ((2, 8, 128, 64), (2, 8, 128, 64), (2, 8, 128, 64)), 67_108_864),
    # the fused backward: five products of 2*2*8*128*128*64
    ("sdpa_backward_flop", ((2, 8, 128, 64),) * 4, 167_772_160),
]  # fmt: skip


@pytest.mark.parametrize(("name", "args", "flops"), FORMULAS, ids=[f[0] for f in FORMULAS])
def test_formula_functions_count_as_torchs(name: str, args: tuple[Any, ...], flops: int) -> None:
    # the convolutions read their output shapes: forward's, and backward's gradients
    conv_out = {"conv_flop": (2, 6, 5, 5), "conv_backward_flop": ((2, 3, 6, 6), (6, 3, 4, 4), None)}
    out = conv_out.get(name)
    assert getattr(ours, name)(*args, out_val=out) == flops
    assert getattr(torch_counter, name)(*args, out_val=out) == flops
    # tensors work where shapes do
    if name == "mm_flop":
        assert ours.mm_flop(torch.empty(4, 5), torch.empty(5, 6)) == flops


def test_count_functions() -> None:
    # 2 * N=2 * 25 positions * C_out=6 * C_in=3 * 16 taps; transposed: per input position
    assert ours.conv_flop_count((2, 3, 6, 6), (6, 3, 4, 4), (2, 6, 5, 5)) == 28_800
    assert (
        ours.conv_flop_count((2, 3, 5, 5), (6, 3, 4, 4), (2, 6, 8, 8), transposed=True)
        == 2 * 2 * 25 * 6 * 3 * 16
    )
    q, kv = (2, 8, 128, 64), (2, 2, 256, 32)
    # GQA with D=64 for QKᵀ and D_v=32: 2*2*8*128*256*(64 + 32)
    assert ours.sdpa_flop_count(q, (2, 2, 256, 64), kv) == 100_663_296
    # backward: 2*2*8*128*256*(3*64 + 2*32); its gradient has the output's (B, H_q, S_q, D_v)
    assert ours.sdpa_backward_flop_count((2, 8, 128, 32), q, (2, 2, 256, 64), kv) == 268_435_456
    with pytest.raises(AssertionError, match=r"expected \(B, H_q, S_q, D_v\)"):
        ours.sdpa_backward_flop_count((2, 8, 128, 64), q, (2, 2, 256, 64), kv)
    for name in ("conv_flop_count", "sdpa_flop_count", "sdpa_backward_flop_count"):
        assert hasattr(torch_counter, name)


def test_flop_registry_is_a_read_only_view_of_the_table() -> None:
    assert aten.mm in ours.flop_registry
    assert aten.cos not in ours.flop_registry  # free by convention: no formula
    with pytest.raises(KeyError):
        ours.flop_registry[aten.cos]
    assert len(ours.flop_registry) == len(FLOP_FORMULAS)
    assert set(ours.flop_registry) == set(FLOP_FORMULAS)
    # an op registered by name ("torch_attn::_varlen_attn") is found by its packet
    import torch.nn.attention.varlen

    assert torch.ops.torch_attn._varlen_attn in ours.flop_registry
    assert not hasattr(ours.flop_registry, "__setitem__")


@torch.library.custom_op("pytest_flops_names::reentered", mutates_args=())
def reentered(x: torch.Tensor) -> torch.Tensor:
    return x.clone()


def reenter_mode(
    mode: FlopCounterMode, func: Any, types: Any, args: Any, kwargs: Any
) -> torch.Tensor:
    # a torch_dispatch rule runs with the mode popped from the stack: entering it
    # again must push it back, or the rule's ops count nothing
    with mode:
        return torch.mm(args[0], args[0])


torch.library.register_torch_dispatch(
    "pytest_flops_names::reentered", FlopCounterMode, reenter_mode
)


def test_a_mode_entered_again_inside_its_own_dispatch_counts() -> None:
    with FlopCounterMode(display=False) as mode:
        reentered(torch.randn(4, 4))
        with mode:  # nested in user code: on the stack already, counted once
            torch.mm(torch.randn(4, 4), torch.randn(4, 4))
    assert mode.to_measurement().by_op == {"aten.mm": 128 + 128}  # 2*4*4*4 each
    assert mode.get_unsupported_ops() == {}
    # leaving left the stack as it was: a later op is not counted
    torch.mm(torch.randn(4, 4), torch.randn(4, 4))
    assert mode.get_total_flops() == 256


triton = pytest.importorskip("triton")
tl = pytest.importorskip("triton.language")


@triton.jit
def add_kernel(x_ptr, y_ptr, out_ptr, n_elements, BLOCK_SIZE: tl.constexpr):  # type: ignore[no-untyped-def,name-defined]
    offsets = tl.program_id(axis=0) * BLOCK_SIZE + tl.arange(0, BLOCK_SIZE)
    mask = offsets < n_elements
    x, y = tl.load(x_ptr + offsets, mask=mask), tl.load(y_ptr + offsets, mask=mask)
    tl.store(out_ptr + offsets, x + y, mask=mask)


def add_kernel_flop(*args: Any, kwargs: dict[str, Any], **hop_kwargs: Any) -> int:
    """One add per element: the formula sees the kernel's arguments, tensors as shapes."""
    return int(kwargs["n_elements"]) if kwargs["x_ptr"] == (10,) else -1


def launch(x: torch.Tensor, y: torch.Tensor, out: torch.Tensor) -> None:
    torch.library.wrap_triton(add_kernel)[(1,)](x, y, out, 10, BLOCK_SIZE=16)


def test_a_triton_kernel_counts_its_formula_without_being_launched() -> None:
    x, y, out = torch.ones(10), torch.ones(10), torch.zeros(10)
    with (
        ours.scoped_flop_formula(add_kernel, add_kernel_flop),
        FlopCounterMode(display=False) as mode,
    ):
        launch(x, y, out)
    assert mode.to_measurement().by_op == {"triton.add_kernel": 10}
    assert mode.flop_counts["Global"] == {add_kernel: 10}  # keyed by the kernel, as torch's
    assert torch.equal(out, torch.zeros(10))  # not launched (it could not be, on a CPU)


@pytest.mark.parametrize("device", ["meta", "fake"])
def test_a_triton_kernel_counts_on_stand_ins(device: Literal["meta", "fake"]) -> None:
    def step(x: torch.Tensor, y: torch.Tensor, out: torch.Tensor) -> None:
        launch(x, y, out)

    x, y, out = torch.ones(10), torch.ones(10), torch.zeros(10)
    with ours.scoped_flop_formula(add_kernel, add_kernel_flop):
        measured = pytest_flops.count(step, x, y, out, device=device)
    assert measured.by_op == {"triton.add_kernel": 10}  # n_elements adds


def test_a_triton_kernel_without_a_formula_is_unsupported() -> None:
    x, y, out = torch.ones(10), torch.ones(10), torch.zeros(10)
    with FlopCounterMode(display=False) as mode:
        launch(x, y, out)
    assert (mode.get_total_flops(), mode.get_unsupported_ops()) == (0, {"triton.add_kernel": 1})


def test_skip_unsupported_launches_triton_kernels() -> None:
    # CPU tensors: triton cannot run them, so the launch raises; with a GPU's tensors
    # it would run. torch's counter gates launching on the same flag.
    x, y, out = torch.ones(10), torch.ones(10), torch.zeros(10)
    with ours.scoped_flop_formula(add_kernel, add_kernel_flop):
        launching = FlopCounterMode(display=False, skip_unsupported=True)
        with pytest.raises((RuntimeError, ValueError)), launching:
            launch(x, y, out)
        with FlopCounterMode(display=False, skip_unsupported=False) as mode:
            launch(x, y, out)
    assert mode.get_total_flops() == 10


def test_the_functional_triton_wrapper_returns_copies_of_its_outputs() -> None:
    # what compiled graphs call: counted, not launched, and the outputs it would clone
    from torch._higher_order_ops.triton_kernel_wrap import (
        kernel_side_table,
        triton_kernel_wrapper_functional,
    )

    x, y, out = torch.ones(10), torch.ones(10), torch.zeros(10)
    arguments = {"x_ptr": x, "y_ptr": y, "out_ptr": out, "n_elements": 10, "BLOCK_SIZE": 16}
    with (
        ours.scoped_flop_formula(add_kernel, add_kernel_flop),
        FlopCounterMode(display=False) as mode,
    ):
        outputs = triton_kernel_wrapper_functional(
            kernel_idx=kernel_side_table.add_kernel(add_kernel),
            constant_args_idx=kernel_side_table.add_constant_args({}),
            grid=[(1, 1, 1)],
            tma_descriptor_metadata={},
            kwargs=arguments,
            tensors_to_clone=["out_ptr"],
        )
    assert mode.get_total_flops() == 10
    assert list(outputs) == ["out_ptr"]
    assert torch.equal(outputs["out_ptr"], out) and outputs["out_ptr"] is not out


def test_registering_a_triton_kernel_takes_the_kernel_itself() -> None:
    # it was iterated as a collection of targets, and the error named a lambda
    with ours.scoped_flop_formula([add_kernel], add_kernel_flop):
        assert add_kernel in ours.flop_registry
    assert add_kernel not in ours.flop_registry


def test_a_flex_attention_sparsity_hint_scales_both_formulas() -> None:
    forward = ours.flop_registry[torch.ops.higher_order.flex_attention]
    backward = ours.flop_registry[torch.ops.higher_order.flex_attention_backward]
    q, lse = (1, 2, 128, 16), (1, 2, 128)

    def hint(sparsity: float) -> dict[str, Any]:
        return {"custom": {"sparsity_hint": sparsity}}

    # dense: 2*1*2*128*128*(16+16) forward; backward 2*1*2*128*128*(3*16+2*16), 2.5x
    assert forward(q, q, q, out_val=None) == 2_097_152
    assert forward(q, q, q, out_val=None, _node_meta=hint(0.25)) == 1_572_864  # 3/4 of it
    assert forward(q, q, q, out_val=None, _node_meta={"custom": {}}) == 2_097_152
    # the hint is a share: clamped to [0, 1]
    assert forward(q, q, q, out_val=None, _node_meta=hint(1.5)) == 0
    assert forward(q, q, q, out_val=None, _node_meta=hint(-1.0)) == 2_097_152
    # no grad_out (the output's gradient is None): the output's shape stands for it
    assert backward(q, q, q, q, lse, None, out_val=None) == 5_242_880
    assert backward(q, q, q, q, lse, q, out_val=None, _node_meta=hint(0.25)) == 3_932_160


def test_an_eager_flex_attention_call_counts_dense_whatever_its_annotation() -> None:
    # a counting block sees no graph node: an annotated eager call counts dense, so a
    # snapshot does not depend on a hint meant for the compiler's estimates
    from torch.fx.traceback import annotate
    from torch.nn.attention.flex_attention import flex_attention

    q = torch.randn(1, 2, 128, 16)
    with annotate({"sparsity_hint": 0.5}), FlopCounterMode(display=False) as mode:
        flex_attention(q, q, q)
    assert mode.to_measurement().by_op == {"higher_order.flex_attention": 2_097_152}
