"""Attention: CPU flash SDPA, the CUDA kernels' formulas, jagged tensors and FlexAttention.

Every count below is ``2·B·H_q·S_q·S_k·(D + D_v)`` forward (QKᵀ and PV) and
``2·B·H_q·S_q·S_k·(3·D + 2·D_v)`` for a fused backward (QKᵀ recomputed, dP, dV,
dQ, dK). Causal and attention masks do not lower either.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch._subclasses.fake_tensor import FakeTensorMode

from pytest_flops import FlopCounterMode, Measurement
from pytest_flops.counting.counter import op_name
from pytest_flops.counting.formulas import FLOP_FORMULAS
from pytest_flops.counting.formulas.attention import flex_attention_backward_flop

aten = torch.ops.aten


def kernel(name: str) -> Callable[..., int]:
    """The table's formula of an attention kernel, called with the kernel's own arguments."""
    formula = FLOP_FORMULAS[getattr(aten, name)]
    return lambda *args: formula(args, {}, None)


# a Measurement names every backend's fused kernel the same (pytest_flops.portable)
CPU_FLASH = "fused.scaled_dot_product_attention"
CPU_FLASH_BACKWARD = "fused.scaled_dot_product_attention_backward"


def measure(step: Callable[[], Any]) -> Measurement:
    with FlopCounterMode(display=False) as mode:
        step()
    return mode.to_measurement()


def sdpa_step(
    q_shape: tuple[int, ...],
    kv_shape: tuple[int, ...],
    v_dim: int,
    *,
    mask_dtype: torch.dtype | None = None,
    **sdpa_kwargs: Any,
) -> Callable[[], None]:
    """SDPA and its backward, on inputs built on the current default device."""

    def step() -> None:
        q = torch.randn(q_shape, requires_grad=True)
        k = torch.randn(kv_shape, requires_grad=True)
        v = torch.randn((*kv_shape[:-1], v_dim), requires_grad=True)
        if mask_dtype is not None:  # (S_q, S_k), keeping everything
            sdpa_kwargs["attn_mask"] = torch.ones(q_shape[-2], kv_shape[-2], dtype=mask_dtype)
        F.scaled_dot_product_attention(q, k, v, **sdpa_kwargs).sum().backward()

    return step


def test_cpu_sdpa_counts_what_the_fused_cuda_kernels_count() -> None:
    step = sdpa_step((2, 8, 256, 64), (2, 8, 256, 64), 64)

    measured = measure(step)

    # forward 2*2*8*256*256*(64+64) = 268,435,456
    # backward 2*2*8*256*256*(3*64+2*64) = 671,088,640 (2.5x: QKᵀ is recomputed)
    assert measured.by_op == {CPU_FLASH: 268_435_456, CPU_FLASH_BACKWARD: 671_088_640}
    assert measured.forward == 268_435_456
    assert measured.total == 939_524_096
    assert measured.unsupported == {}


# (q shape, k/v shape, D_v, SDPA kwargs, forward, backward); B=2, D=8 throughout
FUSED_CASES: dict[str, tuple[tuple[int, ...], tuple[int, ...], int, dict[str, Any], int, int]] = {
    # 8 query heads share 2 kv heads: 2*2*8*16*12*(8+8) and 2*2*8*16*12*(24+16)
    "gqa": ((2, 8, 16, 8), (2, 2, 12, 8), 8, {"enable_gqa": True}, 98_304, 245_760),
    # 4 query heads share 1 kv head: 2*2*4*16*12*16 and 2*2*4*16*12*40
    "mqa": ((2, 4, 16, 8), (2, 1, 12, 8), 8, {"enable_gqa": True}, 49_152, 122_880),
    # S_q=16, S_k=24: 2*2*4*16*24*16 and 2*2*4*16*24*40
    "sq_ne_sk": ((2, 4, 16, 8), (2, 4, 24, 8), 8, {}, 98_304, 245_760),
    # a mask, boolean or additive, leaves the count as it is
    "bool_mask": ((2, 4, 16, 8), (2, 4, 24, 8), 8, {"mask_dtype": torch.bool}, 98_304, 245_760),
    "float_mask": ((2, 4, 16, 8), (2, 4, 24, 8), 8, {"mask_dtype": torch.float}, 98_304, 245_760),
    # causal counts as full: 2*2*4*16*16*16 and 2*2*4*16*16*40
    "causal": ((2, 4, 16, 8), (2, 4, 16, 8), 8, {"is_causal": True}, 65_536, 163_840),
}


@pytest.mark.parametrize("case", FUSED_CASES)
def test_cpu_flash_attention_cases(case: str) -> None:
    q_shape, kv_shape, v_dim, kwargs, forward, backward = FUSED_CASES[case]

    measured = measure(sdpa_step(q_shape, kv_shape, v_dim, **kwargs))

    assert measured.by_op == {CPU_FLASH: forward, CPU_FLASH_BACKWARD: backward}
    assert (measured.forward, measured.backward) == (forward, backward)


def test_cpu_sdpa_with_dv_ne_dq_runs_the_math_path_without_recompute() -> None:
    # The CPU has no fused kernel for D_v != D: the bmm decomposition runs.
    measured = measure(sdpa_step((2, 4, 16, 8), (2, 4, 24, 8), 4))

    # forward QKᵀ 2*(2*4)*16*8*24 + PV 2*(2*4)*16*24*4 = 49,152 + 24,576 = 73,728,
    # what a fused kernel counts too; backward is 4 bmms, no recompute: 2x forward
    assert measured.by_op == {"aten.bmm": 73_728 * 3}
    assert (measured.forward, measured.backward) == (73_728, 147_456)


def measurement_on(device: str, step: Callable[[], None]) -> dict[str, Any]:
    if device == "fake":
        with FakeTensorMode():
            return measure(step).to_dict()
    with torch.device(device):
        return measure(step).to_dict()


@pytest.mark.parametrize("case", [*FUSED_CASES, "dv_ne_dq"])
@pytest.mark.parametrize("device", ["meta", "fake"])
def test_meta_and_fake_tensors_count_like_cpu(case: str, device: str) -> None:
    if case == "dv_ne_dq":
        args: tuple[Any, ...] = ((2, 4, 16, 8), (2, 4, 24, 8), 4, {})
    else:
        args = FUSED_CASES[case][:4]
    q_shape, kv_shape, v_dim, kwargs = args
    step = sdpa_step(q_shape, kv_shape, v_dim, **kwargs)

    on_cpu = measurement_on("cpu", step)

    assert on_cpu["total"] > 0
    assert measurement_on(device, step) == on_cpu


# 3-D (N, L, E) q, k and v, N=4, L=16, E=8: (S_q, S_k) masks as in sdpa_step
UNBATCHED_CASES: dict[str, dict[str, Any]] = {
    "plain": {},
    "bool_mask": {"mask_dtype": torch.bool},
    "float_mask": {"mask_dtype": torch.float},
    "causal": {"is_causal": True},
}


@pytest.mark.parametrize("case", UNBATCHED_CASES)
@pytest.mark.parametrize("device", ["meta", "fake"])
def test_meta_and_fake_3d_attention_counts_like_cpu(case: str, device: str) -> None:
    # The CPU's flash kernel takes them as (1, N, L, E), the meta routing so too;
    # torch 2.13 runs them on the math path instead, on every device alike.
    step = sdpa_step((4, 16, 8), (4, 16, 8), 8, **UNBATCHED_CASES[case])

    on_cpu = measurement_on("cpu", step)

    # forward QKᵀ and PV: 2*4*16*16*(8+8) = 32,768 on either path
    assert on_cpu["forward"] == 32_768
    assert measurement_on(device, step) == on_cpu


def test_meta_sdpa_under_the_math_backend_switch_stays_math() -> None:
    # The CPU chooser honours sdpa_kernel; so does the meta routing that asks it.
    step = sdpa_step((2, 4, 16, 8), (2, 4, 24, 8), 8)
    with torch.nn.attention.sdpa_kernel(torch.nn.attention.SDPBackend.MATH):
        measured = measurement_on("meta", step)

    # forward 2*2*4*16*24*(8+8) = 98,304; math backward 2x forward
    assert measured["modules"]["Global"]["by_op"] == {"aten.bmm": 98_304 * 3}


# -- the CUDA kernels, run through their meta implementations ---------------------

# B=2, H=3, S_q=5, S_k=7, D=16; with D_v=16: forward 2*2*3*5*7*32 = 13,440 and
# backward 2*2*3*5*7*(48+32) = 33,600. Reading a (B, S, H, D) tensor as (B, H, S, D),
# as torch's formula does for the memory-efficient kernel, would count otherwise.
B, H, SQ, SK, D = 2, 3, 5, 7, 16


def meta(*shape: int) -> torch.Tensor:
    return torch.empty(shape, device="meta")


def test_dense_bhsd_cuda_sdpa_kernels() -> None:
    q, k = meta(B, H, SQ, D), meta(B, H, SK, D)

    def step() -> None:
        flash = aten._scaled_dot_product_flash_attention(q, k, k)
        efficient = aten._scaled_dot_product_efficient_attention(q, k, k, None, True)
        cudnn = aten._scaled_dot_product_cudnn_attention(q, k, k, None, True)
        aten._scaled_dot_product_flash_attention_backward(
            q, q, k, k, flash[0], flash[1], None, None, SQ, SK, 0.0, False, flash[6], flash[7]
        )
        aten._scaled_dot_product_efficient_attention_backward(
            q, q, k, k, None, efficient[0], efficient[1], efficient[2], efficient[3], 0.0,
            [True, True, True, False],
        )  # fmt: skip
        aten._scaled_dot_product_cudnn_attention_backward(
            q, q, k, k, cudnn[0], cudnn[1], cudnn[6], cudnn[7], None, None, None, SQ, SK, 0.0,
            False,
        )  # fmt: skip

    with FlopCounterMode(display=False) as mode:
        step()
    # the mode's own table keeps torch's names: each kernel counts on its own
    assert {op_name(op): n for op, n in mode.get_flop_counts()["Global"].items()} == {
        "aten._scaled_dot_product_flash_attention": 13_440,
        "aten._scaled_dot_product_efficient_attention": 13_440,
        "aten._scaled_dot_product_cudnn_attention": 13_440,
        "aten._scaled_dot_product_flash_attention_backward": 33_600,
        "aten._scaled_dot_product_efficient_attention_backward": 33_600,
        "aten._scaled_dot_product_cudnn_attention_backward": 33_600,
    }
    assert mode.to_measurement().by_op == {CPU_FLASH: 3 * 13_440, CPU_FLASH_BACKWARD: 3 * 33_600}


def test_dense_bshd_flash_and_efficient_kernels() -> None:
    # (B, S, H, D) layout; the memory-efficient kernel with D_v=8:
    # forward 2*2*3*5*7*(16+8) = 10,080, backward 2*2*3*5*7*(48+16) = 26,880
    q, k, v = meta(B, SQ, H, D), meta(B, SK, H, D), meta(B, SK, H, 8)

    def step() -> None:
        out, lse, *_ = aten._flash_attention_forward(q, k, k, None, None, SQ, SK, 0.0, False, False)
        aten._flash_attention_backward(
            q, q, k, k, out, lse, None, None, SQ, SK, 0.0, False, meta(2), meta(0)
        )
        out, lse, seed, offset, *_ = aten._efficient_attention_forward(
            q, k, v, None, None, None, None, None, 0.0, 0, True
        )
        aten._efficient_attention_backward(
            meta(B, SQ, H, 8), q, k, v, None, out, None, None, SQ, SK, lse, 0.0, seed, offset,
            0, False,
        )  # fmt: skip

    assert measure(step).by_op == {
        "aten._flash_attention_forward": 13_440,
        "aten._flash_attention_backward": 33_600,
        "aten._efficient_attention_forward": 10_080,
        "aten._efficient_attention_backward": 26_880,
    }


def test_dense_cudnn_attention_forward_reads_bhsd() -> None:
    # no meta kernel: the formula itself, on (B, H, S, D) tensors
    q, k = meta(B, H, SQ, D), meta(B, H, SK, D)
    assert kernel("_cudnn_attention_forward")(q, k, k, None, None, None, SQ, SK, True) == 13_440


# Two sequences of 3 and 5 tokens, 2 heads of 16 dims, packed as 8 tokens:
# 2*1*2*3*3*32 + 2*1*2*5*5*32 = 1,152 + 3,200 = 4,352 forward;
# backward 2*1*2*(9+25)*(48+32) = 10,880.
CUMULATIVE = torch.tensor([0, 3, 8], dtype=torch.int32)


def test_jagged_kernels_count_each_sequence() -> None:
    q = meta(8, 2, 16)  # (total tokens, H, D)

    assert kernel("_flash_attention_forward")(q, q, q, CUMULATIVE, CUMULATIVE, 5, 5) == 4_352
    assert kernel("_cudnn_attention_forward")(q, q, q, None, CUMULATIVE, CUMULATIVE, 5, 5) == 4_352
    assert (
        kernel("_flash_attention_backward")(q, q, q, q, q, None, CUMULATIVE, CUMULATIVE, 5, 5)
        == 10_880
    )
    packed = meta(1, 8, 2, 16)  # the memory-efficient kernel's (1, total, H, D)
    assert (
        kernel("_efficient_attention_forward")(
            packed, packed, packed, None, CUMULATIVE, CUMULATIVE, 5, 5
        )
        == 4_352
    )


def test_jagged_kernels_on_meta_offsets_assume_the_longest_sequence() -> None:
    q = meta(8, 2, 16)
    offsets = CUMULATIVE.to("meta")

    with FlopCounterMode(display=False) as mode:
        aten._flash_attention_forward(q, q, q, offsets, offsets, 5, 5, 0.0, False, False)

    # no offsets to read: both sequences counted at 5 tokens, 2 * 2*1*2*5*5*32 = 6,400
    assert mode.get_total_flops() == 6_400


def test_nested_jagged_sdpa_on_cpu_sums_per_sequence() -> None:
    # The CPU runs jagged SDPA through the math path, matmul by matmul per sequence.
    tokens = torch.nested.nested_tensor(
        [torch.randn(3, 32), torch.randn(5, 32)], layout=torch.jagged, requires_grad=True
    )

    def step() -> None:
        q = tokens.unflatten(-1, (2, 16)).transpose(1, 2)  # (B, H, j, D)
        F.scaled_dot_product_attention(q, q, q).values().sum().backward()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "nested tensors are a prototype"
        measured = measure(step)

    # forward 4,352 (see CUMULATIVE); the math backward is 2x forward
    assert measured.by_op == {"aten.matmul": 4_352, "aten.matmul_backward": 8_704}
    assert measured.unsupported == {}


# -- FlexAttention ------------------------------------------------------------------


def flex_attention(*args: Any, **kwargs: Any) -> torch.Tensor:
    from torch.nn.attention.flex_attention import flex_attention

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "called without torch.compile()"
        return flex_attention(*args, **kwargs)


def test_flex_attention_without_a_mask_counts_like_sdpa() -> None:
    q = torch.randn(1, 2, 128, 16)

    flex = measure(lambda: flex_attention(q, q, q))
    sdpa = measure(lambda: F.scaled_dot_product_attention(q, q, q))

    # 2*1*2*128*128*(16+16) = 2,097,152
    assert flex.by_op == {"higher_order.flex_attention": 2_097_152}
    assert sdpa.total == flex.total == 2_097_152
    assert flex.unsupported == {}


def test_flex_attention_with_a_block_mask_counts_the_dense_upper_bound() -> None:
    from torch.nn.attention.flex_attention import create_block_mask

    def causal(batch: Any, head: Any, q_idx: Any, kv_idx: Any) -> Any:
        return q_idx >= kv_idx

    q, kv = torch.randn(1, 4, 128, 16), torch.randn(1, 2, 128, 16)
    block_mask = create_block_mask(causal, 1, 1, 128, 128, device="cpu")

    measured = measure(lambda: flex_attention(q, kv, kv, block_mask=block_mask, enable_gqa=True))

    # half the blocks are empty, still 2*1*4*128*128*(16+16) = 4,194,304
    assert measured.by_op == {"higher_order.flex_attention": 4_194_304}


def test_compiled_flex_attention_counts_like_eager() -> None:
    from torch.nn.attention.flex_attention import flex_attention as eager_flex_attention

    q = torch.randn(1, 2, 128, 16)

    measured = measure(lambda: torch.compile(eager_flex_attention)(q, q, q))

    assert measured.by_op == {"higher_order.flex_attention": 2_097_152}


def test_flex_attention_backward_formula() -> None:
    # FlexAttention's backward runs only on CUDA (tests/counting/cuda_checks.py runs it);
    # the formula on the HOP's (q, k, v, out, lse, grad_out, ...) shapes:
    # 2*1*2*128*128*(3*16+2*16) = 5,242,880, 2.5x the forward
    shape = (1, 2, 128, 16)
    assert flex_attention_backward_flop(shape, shape, shape, shape, (1, 2, 128), shape) == (
        5_242_880
    )


@pytest.mark.skipif(not torch.cuda.is_available(), reason="FlexAttention backward needs CUDA")
def test_flex_attention_backward_on_cuda() -> None:
    q = torch.randn(1, 2, 128, 16, device="cuda", requires_grad=True)

    measured = measure(lambda: flex_attention(q, q, q).sum().backward())

    assert measured.by_op == {
        "higher_order.flex_attention": 2_097_152,
        "higher_order.flex_attention_backward": 5_242_880,
    }
