"""torch's newest upstream test/test_flop_counter.py, ported to our names: the tests the
older port (test_seed_parity.py) does not hold.

The newest copy of the file this project could read (pytorch main, 2026), with
``test_registered_hop`` (pytorch/pytorch#187592): the tests of ``TestFlopCounter`` (the
CUDA-only ones, ``test_sdpa_gqa``, ``test_scaled_mm`` and the triton ones, sit in a
per-device class in some revisions) and the 4 of ``TestFlexAttentionEstimation``. Where
each lives:

* in test_seed_parity.py (the older file's): ``test_flop_counter_variety``, ``test_op``,
  ``test_backward``, ``test_backward_reset``, ``test_torchscript``, ``test_autograd_op``,
  ``test_conv_backwards_as_decomposition``, ``test_convs``, ``test_module``,
  ``test_conv_transpose_loop``, ``test_custom``, ``test_noop``, ``test_addmm_out``,
  ``test_hook_registration``, ``test_pytrees``, ``test_warning``;
* here, the rest, under upstream's names. Upstream's CUDA tests run their CPU or meta
  form (meta counts as the CPU, docs/conventions.md), with upstream's numbers: the SDPA
  backends are the CPU's (math, and its flash kernel for flash and memory-efficient),
  triton kernels are counted without being launched, as torch's counter does, which is
  what lets them count on a CPU;
* not ported, because they test torch's compiler rather than a counter:
  ``test_flop_counter_custom_triton_op_two_kernels_auto_ac`` (torch's activation-memory
  partitioner calls torch's registry) and ``test_flex_attention_roofline_estimate``
  (inductor's runtime estimate, CUDA). docs/counter.md says what that means for a
  formula registered with ours.

Formulas registered here use ``scoped_flop_formula``: the table is the process's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch._ops import HigherOrderOperator
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.nn.attention import SDPBackend, sdpa_kernel

from pytest_flops.flop_counter import (
    FlopCounterMode,
    flop_registry,
    register_flop_formula,
    scoped_flop_formula,
    sdpa_backward_flop_count,
    sdpa_flop_count,
)

aten = torch.ops.aten


def counter(**kwargs: Any) -> FlopCounterMode:
    return FlopCounterMode(display=False, **kwargs)


def T(*shape: int, requires_grad: bool = False) -> torch.Tensor:
    return torch.randn(*shape, requires_grad=requires_grad)


# -- TestFlopCounter -------------------------------------------------------------------------


def test_sdpa_flop_count_gqa() -> None:
    q_shape = (2, 32, 128, 64)
    mha_flops = sdpa_flop_count(q_shape, (2, 32, 128, 64), (2, 32, 128, 64))
    assert mha_flops == 2 * 2 * 32 * 128 * 128 * (64 + 64) == 268_435_456
    # 8 KV heads for 32 query heads: every query head still multiplies a full K and V
    assert sdpa_flop_count(q_shape, (2, 8, 128, 64), (2, 8, 128, 64)) == mha_flops
    # 32 query heads cannot share 5 KV heads: upstream expects an AssertionError
    with pytest.raises(AssertionError, match="incompatible"):
        sdpa_flop_count(q_shape, (2, 5, 128, 64), (2, 5, 128, 64))
    with pytest.raises(ValueError, match="incompatible"):  # and ours is a ValueError too
        sdpa_flop_count(q_shape, (2, 5, 128, 64), (2, 5, 128, 64))


def sdpa_flops(seq_len_q: int, seq_len_k: int, backend: SDPBackend, *, with_backward: bool) -> int:
    """Upstream's ``_get_sdpa_flops`` with batch 4, 8 heads, head dim 64, causal."""
    with torch.device("meta"):
        query = torch.randn(4, 8, seq_len_q, 64, requires_grad=True)
        key = torch.randn(4, 8, seq_len_k, 64, requires_grad=True)
        value = torch.randn(4, 8, seq_len_k, 64, requires_grad=True)
    with sdpa_kernel([backend]), counter() as mode:
        out = F.scaled_dot_product_attention(query, key, value, dropout_p=0, is_causal=True)
        if with_backward:
            out.sum().backward()
    assert mode.unsupported_ops == {}
    return mode.get_total_flops()


def test_sdpa() -> None:
    # CPU form: the math backend and the CPU's fused (flash) kernel, which stands in
    # for upstream's flash and memory-efficient CUDA kernels
    math_fw = sdpa_flops(128, 128, SDPBackend.MATH, with_backward=False)
    assert math_fw == sdpa_flops(128, 128, SDPBackend.FLASH_ATTENTION, with_backward=False)
    assert math_fw == 2 * 4 * 8 * 128 * 128 * (64 + 64) == 134_217_728
    # math backward: four bmms, twice the forward; fused backward recomputes QKᵀ: 2.5x
    assert sdpa_flops(128, 128, SDPBackend.MATH, with_backward=True) == math_fw * 3
    fused = sdpa_flops(128, 128, SDPBackend.FLASH_ATTENTION, with_backward=True)
    assert fused == math_fw * 7 // 2

    nonuniform_fw = sdpa_flops(128, 256, SDPBackend.MATH, with_backward=False)
    assert nonuniform_fw == sdpa_flops(128, 256, SDPBackend.FLASH_ATTENTION, with_backward=False)
    assert nonuniform_fw == 2 * 4 * 8 * 128 * 256 * (64 + 64) == 268_435_456
    assert sdpa_flops(128, 256, SDPBackend.MATH, with_backward=True) == 805_306_368  # 3x
    assert sdpa_flops(128, 256, SDPBackend.FLASH_ATTENTION, with_backward=True) == 939_524_096


def test_sdpa_gqa() -> None:
    # CPU form of the device test: 32 query heads share 8 key/value heads
    with torch.device("meta"):
        query = torch.randn(2, 32, 128, 64, dtype=torch.float16)
        key, value = (torch.randn(2, 8, 128, 64, dtype=torch.float16) for _ in range(2))
    with counter() as gqa:
        F.scaled_dot_product_attention(query, key, value, is_causal=True, enable_gqa=True)
    with counter() as mha:  # the same heads expanded, as multi-head attention
        F.scaled_dot_product_attention(
            query,
            key.repeat_interleave(4, dim=1),
            value.repeat_interleave(4, dim=1),
            is_causal=True,
        )
    # every query head multiplies a full K and V: 2*2*32*128*128*(64 + 64)
    assert gqa.get_total_flops() == mha.get_total_flops() == 268_435_456


def nested_inputs(
    max_seq_len_q: int, max_seq_len_k: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Upstream's jagged q, k, v: 4 sequences of 1/4 .. 4/4 of the longest, 8 heads of 64."""
    batch_size, n_heads, head_dim = 4, 8, 64

    def jagged(max_len: int) -> tuple[torch.Tensor, torch.Tensor]:
        lengths = torch.tensor([max_len // 4 * i for i in range(1, 5)])
        offsets = torch.cat((torch.tensor([0]), torch.cumsum(lengths, dim=0)))
        values = torch.randn(int(offsets[-1]), head_dim * n_heads, requires_grad=True)
        return values, offsets

    q_values, q_offsets = jagged(max_seq_len_q)
    k_values, k_offsets = jagged(max_seq_len_k)
    v_values = torch.randn(k_values.shape, requires_grad=True)
    return tuple(  # type: ignore[return-value]
        torch.nested.nested_tensor_from_jagged(values, offsets)
        .view(batch_size, -1, n_heads, head_dim)
        .transpose(1, 2)
        for values, offsets in ((q_values, q_offsets), (k_values, k_offsets), (v_values, k_offsets))
    )


def nested_sdpa_flops(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, with_backward: bool
) -> int:
    with sdpa_kernel([SDPBackend.MATH]), counter() as mode:
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=0)
        if with_backward:
            (out.values() if out.is_nested else out).sum().backward()
    assert mode.unsupported_ops == {}
    return mode.get_total_flops()


def dense_sdpa_flops(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, with_backward: bool
) -> int:
    """The same sequences one by one, as dense tensors (upstream's ``get_dense_flops``)."""

    def split(x: torch.Tensor) -> Iterator[torch.Tensor]:
        return (
            y.unsqueeze(0).transpose(1, 2).detach().requires_grad_(True)
            for y in x.transpose(1, 2).unbind(0)
        )

    return sum(
        nested_sdpa_flops(*qkv, with_backward=with_backward)
        for qkv in zip(split(q), split(k), split(v), strict=True)
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    ("max_seq_len_k", "forward", "total"),
    [
        # 2 * 8 heads * (64 + 64) * Σ L_q·L_k, L = 32, 64, 96, 128: 2048 * 30720
        (128, 62_914_560, 3 * 62_914_560),
        # L_k = 64, 128, 192, 256: 2048 * (32*64 + 64*128 + 96*192 + 128*256)
        (256, 125_829_120, 3 * 125_829_120),
    ],
    ids=["uniform", "differing"],
)
def test_sdpa_nested_tensor(max_seq_len_k: int, forward: int, total: int) -> None:
    # CPU form: CPU attention on jagged tensors is the math backend (no causal mask
    # there, and the mask does not change a count); its backward is 2x the forward
    inputs = nested_inputs(128, max_seq_len_k)
    assert nested_sdpa_flops(*inputs, with_backward=False) == forward
    assert dense_sdpa_flops(*inputs, with_backward=False) == forward
    inputs = nested_inputs(128, max_seq_len_k)
    assert nested_sdpa_flops(*inputs, with_backward=True) == total
    assert dense_sdpa_flops(*inputs, with_backward=True) == total


def test_nested_attention_fake_tensors() -> None:
    # CPU form: fake CPU tensors, then meta ones. Offsets without values count every
    # sequence at max_seqlen: 4 sequences of 40, as the dense (4, 40, 4, 16) call
    x = torch.randn(123, 4, 16, dtype=torch.bfloat16)
    offsets = torch.tensor([0, 30, 60, 90, 123])
    with FakeTensorMode() as fake_mode:
        fake_x, fake_offsets = fake_mode.from_tensor(x), fake_mode.from_tensor(offsets)
        with counter() as fake_counter:
            aten._flash_attention_forward(
                fake_x, fake_x, fake_x, fake_offsets, fake_offsets, 40, 40, 0.0, False, False
            )
    with torch.device("meta"):
        meta_x, meta_offsets = x.to("meta"), offsets.to("meta")
        dense_x = torch.randn(4, 40, 4, 16, dtype=torch.bfloat16)
    with counter() as meta_counter:
        aten._flash_attention_forward(
            meta_x, meta_x, meta_x, meta_offsets, meta_offsets, 40, 40, 0.0, False, False
        )
    with counter() as dense_counter:
        aten._flash_attention_forward(
            dense_x, dense_x, dense_x, None, None, 40, 40, 0.0, False, False
        )
    dense = dense_counter.get_total_flops()
    assert dense == 2 * 4 * 4 * 40 * 40 * (16 + 16) == 1_638_400
    assert fake_counter.get_total_flops() == meta_counter.get_total_flops() == dense


def test_flash_attention_forward_flop_layout() -> None:
    B, S, H, D = 2, 128, 8, 64
    q, k, v = (torch.randn(B, S, H, D, device="meta", dtype=torch.float16) for _ in range(3))
    with counter() as mode:
        aten._flash_attention_forward(q, k, v, None, None, S, S, 0.0, False, False)
    # the kernel takes (B, S, H, D): counted as (B, H, S, D) attention
    expected = sdpa_flop_count((B, H, S, D), (B, H, S, D), (B, H, S, D))
    assert mode.get_total_flops() == expected == 2 * 2 * 8 * 128 * 128 * (64 + 64)


def test_flash_attention_backward_flop_layout() -> None:
    B, S, H, D = 2, 128, 8, 64
    with torch.device("meta"):
        q, k, v, out, grad_out = (torch.randn(B, S, H, D, dtype=torch.float16) for _ in range(5))
        logsumexp = torch.randn(B, H, S)
        rng_state = torch.zeros(2, dtype=torch.int64)
    with counter() as mode:
        aten._flash_attention_backward(
            grad_out, q, k, v, out, logsumexp, None, None, S, S, 0.0, False, rng_state, None
        )
    expected = sdpa_backward_flop_count((B, H, S, D), (B, H, S, D), (B, H, S, D), (B, H, S, D))
    # five products of 2*B*H*S*S*D: 2.5x the forward
    assert mode.get_total_flops() == expected == 5 * 2 * 2 * 8 * 128 * 128 * 64


def test_matmul_flop_formula_extra_positional_out() -> None:
    # torch's calling form: f(*args, out_val=out), with the output also passed last
    a, b = (8, 128, 64), (8, 64, 32)
    out = (8, 128, 32)
    expected_bmm = 8 * 128 * 32 * 2 * 64
    assert flop_registry[aten.bmm](a, b, out, out_val=out) == expected_bmm
    assert flop_registry[aten.baddbmm](out, a, b, out, out_val=out) == expected_bmm
    a2, b2 = (128, 64), (64, 32)
    out2 = (128, 32)
    assert flop_registry[aten.addmm](out2, a2, b2, out2, out_val=out2) == 128 * 32 * 2 * 64


@torch.library.custom_op("pytest_flops_upstream::foo", mutates_args=())
def foo(x: torch.Tensor) -> torch.Tensor:
    return x.sin()


def test_custom_op() -> None:
    called = 0

    def formula(*args: Any, **kwargs: Any) -> int:
        nonlocal called
        called += 1
        return 9001

    # upstream refuses an overload with ValueError; ours takes it for its packet
    # (docs/counter.md), and refuses what is no op with torch's error type
    with pytest.raises(ValueError, match="expected each target to be an op"):
        register_flop_formula(foo)(formula)

    with scoped_flop_formula(torch.ops.pytest_flops_upstream.foo, formula), counter() as mode:
        foo(torch.randn(3))

    assert called == 1
    assert mode.get_total_flops() == 9001


class TestFlopCounterHOP(HigherOrderOperator):
    __test__ = False  # a higher-order operator, not a pytest class

    def __init__(self) -> None:
        super().__init__("pytest_flops_upstream_hop")

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return super().__call__(x)


hop = TestFlopCounterHOP()


@hop.py_impl(torch._C.DispatchKey.CompositeExplicitAutograd)
def hop_impl(x: torch.Tensor) -> torch.Tensor:
    return x.sin()


@hop.py_impl(torch._C.DispatchKey.Autograd)
def hop_autograd_impl(x: torch.Tensor) -> torch.Tensor:
    with torch._C._AutoDispatchBelowAutograd():
        return hop(x)


def test_registered_hop() -> None:
    def hop_flop(x: torch.Tensor, *, out_val: Any = None) -> int:
        return x.numel()

    x = torch.randn(4, 5)
    with scoped_flop_formula(hop, hop_flop, get_raw=True), counter() as mode:
        out = hop(x)

    torch.testing.assert_close(out, x.sin())
    assert mode.get_total_flops() == 20  # numel of the 4x5 input
    assert mode.to_measurement().by_op == {"higher_order.pytest_flops_upstream_hop": 20}


triton = pytest.importorskip("triton")
tl = pytest.importorskip("triton.language")


@triton.jit
def sin_kernel(x_ptr, out_ptr, n_elements, BLOCK_SIZE: tl.constexpr):  # type: ignore[no-untyped-def,name-defined]
    pid = tl.program_id(axis=0)
    offsets = pid * BLOCK_SIZE + tl.arange(0, BLOCK_SIZE)
    mask = offsets < n_elements
    tl.store(out_ptr + offsets, tl.sin(tl.load(x_ptr + offsets, mask=mask)), mask=mask)


@triton.jit
def cos_kernel(x_ptr, out_ptr, n_elements, BLOCK_SIZE: tl.constexpr):  # type: ignore[no-untyped-def,name-defined]
    pid = tl.program_id(axis=0)
    offsets = pid * BLOCK_SIZE + tl.arange(0, BLOCK_SIZE)
    mask = offsets < n_elements
    tl.store(out_ptr + offsets, tl.cos(tl.load(x_ptr + offsets, mask=mask)), mask=mask)


def grid(meta: dict[str, int]) -> tuple[int]:
    return (triton.cdiv(3, meta["BLOCK_SIZE"]),)


def constant(flops: int) -> Callable[..., int]:
    return lambda *args, **kwargs: flops


@pytest.fixture
def x_and_out() -> tuple[torch.Tensor, torch.Tensor]:
    # CPU tensors: a triton kernel cannot launch here, and under the counter it is not
    # launched (launching one would raise "0 active drivers")
    return torch.randn(3), torch.empty(3)


def test_flop_counter_custom_triton_manual_decomp(
    x_and_out: tuple[torch.Tensor, torch.Tensor],
) -> None:
    x, out = x_and_out
    with scoped_flop_formula(sin_kernel, constant(2)):
        with counter() as m:
            torch.library.wrap_triton(sin_kernel)[grid](x, out, 3, 256)
        assert m.get_total_flops() == 2

        @torch.library.custom_op("pytest_flops_upstream::sin_op", mutates_args=())
        def sin_op(x: torch.Tensor) -> torch.Tensor:
            return x.clone()

        def op_decompose(mode: FlopCounterMode, *args: Any, **kwargs: Any) -> torch.Tensor:
            # the mode is active (dispatch popped it): entering it again counts
            with mode:
                torch.library.wrap_triton(sin_kernel)[grid](x, out, 3, 256)
            return x

        torch.library.register_torch_dispatch(
            "pytest_flops_upstream::sin_op", FlopCounterMode, op_decompose
        )
        with counter() as m2:
            sin_op(x)
        assert m2.get_total_flops() == 2
        assert m2.get_unsupported_ops() == {}


def test_flop_counter_custom_triton_op_two_kernels_manual_decomp(
    x_and_out: tuple[torch.Tensor, torch.Tensor],
) -> None:
    x, out = x_and_out
    with scoped_flop_formula(sin_kernel, constant(1)), scoped_flop_formula(cos_kernel, constant(1)):
        with counter() as m:
            torch.library.wrap_triton(sin_kernel)[grid](x, out, 3, 256)
            torch.library.wrap_triton(cos_kernel)[grid](x, out, 3, 256)
        assert m.get_total_flops() == 2
        assert m.to_measurement().by_op == {"triton.sin_kernel": 1, "triton.cos_kernel": 1}

        @torch.library.custom_op("pytest_flops_upstream::trig_op", mutates_args=())
        def trig_op(x: torch.Tensor) -> torch.Tensor:
            return x.clone()

        def op_decompose(mode: FlopCounterMode, *args: Any, **kwargs: Any) -> torch.Tensor:
            with mode:
                torch.library.wrap_triton(sin_kernel)[grid](x, out, 3, 256)
                torch.library.wrap_triton(cos_kernel)[grid](x, out, 3, 256)
            return x

        torch.library.register_torch_dispatch(
            "pytest_flops_upstream::trig_op", FlopCounterMode, op_decompose
        )
        with counter() as m2:
            trig_op(x)
        assert m2.get_total_flops() == 2


@pytest.mark.slow
def test_inference_mode() -> None:
    models = pytest.importorskip("torchvision.models")
    resnet18 = models.resnet18()

    def forward_flops() -> FlopCounterMode:
        with counter() as mode:
            resnet18(T(1, 3, 224, 224)).sum()
        return mode

    standard = forward_flops()
    with torch.inference_mode():
        inference = forward_flops()

    # the forward of test_module's 10884440064: a third of it (backward is twice)
    assert standard.get_total_flops() == inference.get_total_flops() == 3_628_146_688
    layer1 = standard.flop_counts["ResNet.layer1"][aten.convolution]
    assert layer1 == inference.flop_counts["ResNet.layer1"][aten.convolution] == 924_844_032


def test_scaled_mm() -> None:
    # CPU form: the CPU's fp8 _scaled_mm
    dtype = torch.float8_e4m3fn
    with counter() as mode:
        torch._scaled_mm(
            torch.randn(3 * 16, 5 * 16).to(dtype),
            torch.randn(7 * 16, 5 * 16).to(dtype).t(),
            scale_a=torch.ones(()),
            scale_b=torch.ones(()),
            out_dtype=torch.bfloat16,
        )
    assert mode.get_total_flops() == 2 * 48 * 80 * 112 == 860_160


def test_varlen_attn() -> None:
    # CPU form: the kernel is CUDA-only; its formulas, with real sequence offsets and
    # meta q, k, v, count what the CUDA call counts
    import torch.nn.attention.varlen

    n_heads, head_dim, seq_lens = 8, 64, [128, 64]
    cu_seqs = torch.tensor([0, 128, 192], dtype=torch.int32)
    query = torch.randn(sum(seq_lens), n_heads, head_dim, device="meta", dtype=torch.float16)
    logsumexp = torch.randn(n_heads, sum(seq_lens), device="meta")
    varlen = torch.ops.torch_attn

    forward = flop_registry[varlen._varlen_attn](
        query, query, query, cu_seqs, cu_seqs, 128, 128, is_causal=True, out_val=None
    )
    expected = sum(
        sdpa_flop_count(
            (1, n_heads, s, head_dim), (1, n_heads, s, head_dim), (1, n_heads, s, head_dim)
        )
        for s in seq_lens
    )
    # 2 bmms per sequence, each 2*h*s*d*s: 2048 * (128^2 + 64^2)
    assert forward == expected == 41_943_040

    backward = flop_registry[varlen._varlen_attn_backward](
        query, query, query, query, query, logsumexp, cu_seqs, cu_seqs, 128, 128, True,
        out_val=None,
    )  # fmt: skip
    # the backward recomputes scores: five bmms, so forward + backward = 7/2 forward
    assert forward + backward == forward * 7 // 2 == 146_800_640


# -- TestFlexAttentionEstimation -----------------------------------------------------------


def test_flex_attention_flop_registration() -> None:
    # upstream also checks inductor's is_compute_node, which reads torch's registry
    assert torch.ops.higher_order.flex_attention in flop_registry
    assert torch.ops.higher_order.flex_attention_backward in flop_registry

    q_shape, k_shape, v_shape = (2, 16, 1024, 64), (2, 4, 1024, 64), (2, 4, 1024, 64)  # GQA
    with torch.device("meta"):
        q, k, v = (torch.randn(*s, dtype=torch.bfloat16) for s in (q_shape, k_shape, v_shape))
        out = (
            torch.randn(*q_shape, dtype=torch.bfloat16),
            torch.randn(*q_shape[:3]),
            torch.randn(*q_shape[:3]),
        )

    flops = flop_registry[torch.ops.higher_order.flex_attention](q, k, v, out_val=out)
    assert flops == sdpa_flop_count(q_shape, k_shape, v_shape)
    assert flops == 2 * 2 * 16 * 1024 * 1024 * (64 + 64) == 8_589_934_592


@pytest.fixture(scope="module")
def flex_nodes() -> dict[str, torch.fx.Node]:
    """The flex_attention node of an exported call, without and with a sparsity hint."""
    from torch.fx.traceback import annotate, preserve_node_meta
    from torch.nn.attention.flex_attention import flex_attention

    class Dense(torch.nn.Module):
        def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> Any:
            return flex_attention(q, k, v)

    class Sparse(torch.nn.Module):
        def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> Any:
            with annotate({"sparsity_hint": 0.5}):
                return flex_attention(q, k, v)

    with FakeTensorMode():
        q = torch.randn(1, 8, 64, 64, dtype=torch.bfloat16)
        with preserve_node_meta():
            programs = {
                name: torch.export.export(module(), (q, q, q), strict=False)
                for name, module in (("dense", Dense), ("sparse", Sparse))
            }
    return {
        name: next(
            n
            for n in program.graph.nodes
            if n.op == "call_function" and "flex_attention" in str(n.target)
        )
        for name, program in programs.items()
    }


@pytest.mark.slow
def test_sparsity_hint_annotate_propagates(flex_nodes: dict[str, torch.fx.Node]) -> None:
    assert flex_nodes["sparse"].meta["custom"]["sparsity_hint"] == pytest.approx(0.5)
    assert "sparsity_hint" not in flex_nodes["dense"].meta.get("custom", {})


@pytest.mark.slow
def test_sparsity_hint_affects_flex_attention_flops(flex_nodes: dict[str, torch.fx.Node]) -> None:
    from torch._inductor.fx_passes.overlap_scheduling import _get_flop_registry_key
    from torch.utils._pytree import tree_map

    def flops(node: torch.fx.Node) -> int:
        def value(n: Any) -> Any:
            return n.meta.get("val") if isinstance(n, torch.fx.Node) else n

        formula = flop_registry[_get_flop_registry_key(node.target)]
        return formula(
            *tree_map(value, node.args),
            **tree_map(value, node.kwargs),
            out_val=value(node),
            _node_meta=node.meta,
        )

    dense = flops(flex_nodes["dense"])
    assert dense == 2 * 1 * 8 * 64 * 64 * (64 + 64) == 8_388_608
    assert flops(flex_nodes["sparse"]) == dense // 2  # half the attention skipped
