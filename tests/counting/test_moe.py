"""Mixture-of-experts grouped matmuls: torch._grouped_mm and the expert layers built on it.

torch's own counter has no formula for ``aten._grouped_mm`` and counts 0 for
every expert of a model that routes through it; ours counts each group over
the rows its cumulative offsets give it.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from pytest_flops import FlopCounterMode, Measurement

pytestmark = pytest.mark.skipif(
    not hasattr(torch, "_grouped_mm"), reason="this torch has no torch._grouped_mm"
)

BF16 = torch.bfloat16


def count(call: Callable[[], object]) -> Measurement:
    with FlopCounterMode(display=False) as mode:
        call()
    return mode.to_measurement()


def grouped_mm_flops(a: torch.Tensor, b: torch.Tensor, offs: torch.Tensor | None = None) -> int:
    return count(lambda: torch._grouped_mm(a, b, offs=offs)).by_op["aten._grouped_mm"]


def offsets(*cumulative: int, device: str = "cpu") -> torch.Tensor:
    return torch.tensor(cumulative, dtype=torch.int32, device=device)


def test_batched_groups() -> None:
    # 3 groups of (4, 8) @ (8, 16): 2 * 3 * 4 * 8 * 16
    a, b = torch.randn(3, 4, 8, dtype=BF16), torch.randn(3, 8, 16, dtype=BF16)
    assert grouped_mm_flops(a, b) == 3_072


def test_tokens_per_expert() -> None:
    # 2-D @ 3-D: rows 0-3, 3-7 and 7-10 go to experts 0, 1 and 2; rows 10-11 are
    # padding the kernel leaves alone: 2 * 10 rows * 8 * 16
    a, b = torch.randn(12, 8, dtype=BF16), torch.randn(3, 8, 16, dtype=BF16)
    assert grouped_mm_flops(a, b, offsets(3, 7, 10)) == 2_560


def test_jagged_output_columns() -> None:
    # 3-D @ 2-D: group g multiplies (4, 8) by columns offs[g-1]:offs[g] of an (8, 16)
    # matrix, 8 + 0 + 8 columns in all: 2 * 4 * 8 * 16
    a, b = torch.randn(3, 4, 8, dtype=BF16), torch.randn(8, 16, dtype=BF16)
    assert grouped_mm_flops(a, b, offsets(8, 8, 16)) == 1_024


def test_jagged_contraction_of_the_weight_gradient() -> None:
    # 2-D @ 2-D: (4, 16) @ (16, 8) cut into K = 8 + 8, one (4, 8) output per group:
    # 2 * 4 * 16 * 8
    a, b = torch.randn(4, 16, dtype=BF16), torch.randn(16, 8, dtype=BF16)
    assert grouped_mm_flops(a, b, offsets(8, 16)) == 1_024


def test_meta_offsets_count_every_row() -> None:
    # the offsets hold no values on meta: all 12 rows count, 2 * 12 * 8 * 16 (an upper bound)
    a = torch.empty(12, 8, dtype=BF16, device="meta")
    b = torch.empty(3, 8, 16, dtype=BF16, device="meta")
    assert grouped_mm_flops(a, b, offsets(3, 7, 10, device="meta")) == 3_072


def scaled_grouped_mm(a: torch.Tensor, b: torch.Tensor, offs: torch.Tensor) -> object:
    scale_a = torch.empty(a.shape[0], device="meta")
    scale_b = torch.empty(b.shape[0], b.shape[-1], device="meta")
    return torch._scaled_grouped_mm(a, b, scale_a, scale_b, offs, out_dtype=BF16)


def scaled_grouped_mm_v2(a: torch.Tensor, b: torch.Tensor, offs: torch.Tensor) -> object:
    functional = torch.nn.functional
    row_wise = [functional.ScalingType.RowWise.value]
    no_swizzle = [functional.SwizzleType.NO_SWIZZLE.value]
    scale_a = [torch.empty(a.shape[0], device="meta")]
    scale_b = [torch.empty(b.shape[0], b.shape[-1], device="meta")]
    return torch.ops.aten._scaled_grouped_mm_v2(
        a, b, scale_a, row_wise, no_swizzle, scale_b, row_wise, no_swizzle, offs, None, BF16
    )


@pytest.mark.parametrize("call", [scaled_grouped_mm, scaled_grouped_mm_v2])
def test_fp8_grouped_mm_on_meta(call: Callable[..., object]) -> None:
    if call is scaled_grouped_mm_v2 and not hasattr(torch.ops.aten, "_scaled_grouped_mm_v2"):
        pytest.skip("this torch has no _scaled_grouped_mm_v2")
    # 32 tokens over 4 experts, (16 -> 32) each, read past the scales (and, in v2,
    # the scaling recipes); meta offsets are unreadable, all rows count: 2 * 32 * 16 * 32
    a = torch.empty(32, 16, dtype=torch.float8_e4m3fn, device="meta")
    b = torch.empty(4, 32, 16, dtype=torch.float8_e4m3fn, device="meta").transpose(-2, -1)
    offs = offsets(8, 16, 24, 32, device="meta")
    try:
        call(a, b, offs)
    except NotImplementedError:
        pytest.skip(f"{call.__name__} has no meta kernel in this torch")
    measured = count(lambda: call(a, b, offs))
    assert measured.total == 32_768
    assert measured.unsupported == {}


def test_backward_counts_both_gradients() -> None:
    # forward 2 * 10 * 8 * 16 = 2_560; grad input (10 rows of (16 @ 16x8)) and grad
    # weight (K = 10 rows cut per expert) cost one forward each
    a = torch.randn(10, 8, dtype=BF16, requires_grad=True)
    b = torch.randn(3, 8, 16, dtype=BF16, requires_grad=True)
    grad = torch.randn(10, 16, dtype=BF16)  # dense: the kernel rejects sum()'s stride-0 gradient
    measured = count(lambda: torch._grouped_mm(a, b, offs=offsets(3, 7, 10)).backward(grad))
    assert (measured.forward, measured.backward) == (2_560, 5_120)
    assert measured.unsupported == {}


EXPERTS_IMPLEMENTATIONS = ("eager", "batched_mm", "grouped_mm")


def mixtral_train_step(implementation: str) -> Measurement:
    transformers = pytest.importorskip("transformers")
    config = transformers.MixtralConfig(
        vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
        num_attention_heads=4, num_key_value_heads=2, num_local_experts=4,
        num_experts_per_tok=2, max_position_embeddings=64,
        experts_implementation=implementation,
    )  # fmt: skip
    torch.manual_seed(0)
    model = transformers.MixtralForCausalLM(config)
    tokens = torch.randint(0, 64, (2, 8))
    return count(lambda: model(tokens).logits.sum().backward())


@pytest.fixture(scope="module")
def mixtral_counts() -> dict[str, Measurement]:
    pytest.importorskip("transformers.integrations.moe", reason="no experts_implementation")
    return {
        implementation: mixtral_train_step(implementation)
        for implementation in EXPERTS_IMPLEMENTATIONS
    }


EXPERTS = "MixtralForCausalLM.model.layers.0.mlp.experts"


@pytest.mark.parametrize("implementation", EXPERTS_IMPLEMENTATIONS)
def test_mixtral_experts_count_the_routed_tokens(
    mixtral_counts: dict[str, Measurement], implementation: str
) -> None:
    measured = mixtral_counts[implementation]
    # 16 tokens x top-2 = 32 (token, expert) pairs, each through gate_up (32 -> 2*64)
    # and down (64 -> 32): 2*32*128 + 2*64*32 = 12_288 per pair, 393_216 forward,
    # and twice that in backward (input and weight gradients)
    assert measured.modules[EXPERTS].forward == 393_216
    assert measured.modules[EXPERTS].backward == 786_432
    assert measured.unsupported == {}


def test_mixtral_counts_alike_under_every_experts_implementation(
    mixtral_counts: dict[str, Measurement],
) -> None:
    eager = mixtral_counts["eager"]
    for measured in mixtral_counts.values():
        assert (measured.forward, measured.backward) == (eager.forward, eager.backward)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_meta_grouped_mm_takes_what_the_cpu_kernel_takes(dtype: torch.dtype) -> None:
    # torch's meta kernel checks the CUDA kernel's dtypes and refuses float32; while
    # counting it gives the CPU kernel's contiguous output. 12 rows over 3 experts,
    # (8 -> 16): forward 2*12*8*16 = 3_072; grad input and grad weight one forward each
    a = torch.empty(12, 8, dtype=dtype, device="meta", requires_grad=True)
    b = torch.empty(3, 8, 16, dtype=dtype, device="meta", requires_grad=True)
    offs = offsets(3, 7, 12, device="meta")
    grad = torch.empty(12, 16, dtype=dtype, device="meta")  # dense, as the kernels want
    measured = count(lambda: torch._grouped_mm(a, b, offs=offs).backward(grad))
    assert (measured.forward, measured.backward) == (3_072, 6_144)
    if dtype == torch.float32:  # outside a count, torch's own meta kernel as before
        # torch 2.13 and 2.14 word it differently
        with pytest.raises(RuntimeError, match=r"BFloat16|BF16"):
            torch._grouped_mm(a, b, offs=offs)
