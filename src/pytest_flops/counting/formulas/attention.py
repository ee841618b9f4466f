"""Attention: scaled-dot-product kernels of every backend, dense and jagged, varlen, FlexAttention.

Every attention kernel is counted from q, k and v in (B, H, S, D) form: the
fused kernels' other layouts are transposed to it first. Key/value heads may be
fewer than query heads (GQA/MQA); every query head still multiplies a full key
and value, so the count scales with the query heads.

Attention counts its two products, QKᵀ and PV, over every (query, key) pair: a
causal mask, an attention mask, a sliding window or a FlexAttention block mask
does not lower the count. A fused backward counts the QKᵀ it recomputes; the
math backend's backward, counted op by op, recomputes nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any, NamedTuple

import torch
from torch._ops import OpOverloadPacket
from torch._subclasses.fake_tensor import is_fake

from pytest_flops.counting.formulas.registry import FlopFormula, Shape, register_flop_formula

aten = torch.ops.aten


class AttentionShapeError(ValueError, AssertionError):
    """q, k and v that no attention takes. An ``AssertionError`` too, as torch's
    ``sdpa_flop_count`` raises, so code written against either catches it."""


def sdpa_flop_count(query_shape: Shape, key_shape: Shape, value_shape: Shape) -> int:
    """Forward: QKᵀ, (S_q, D) @ (D, S_k), then PV, (S_q, S_k) @ (S_k, D_v), per batch and head."""
    batch, q_heads, q_len, qk_dim = _checked_attention_shapes(query_shape, key_shape, value_shape)
    kv_len, v_dim = key_shape[2], value_shape[3]
    return 2 * batch * q_heads * q_len * kv_len * (qk_dim + v_dim)


def sdpa_backward_flop_count(
    grad_out_shape: Shape, query_shape: Shape, key_shape: Shape, value_shape: Shape
) -> int:
    """Fused backward: five products of the forward's size.

    The kernel kept only the log-sum-exp, so it recomputes S = QKᵀ (over D),
    then dP = dO Vᵀ and dV = Pᵀ dO (over D_v), dQ = dS K and dK = dSᵀ Q (over D).
    With D == D_v that is 2.5 times the forward.
    """
    batch, q_heads, q_len, qk_dim = _checked_attention_shapes(query_shape, key_shape, value_shape)
    kv_len, v_dim = key_shape[2], value_shape[3]
    if tuple(grad_out_shape) != (batch, q_heads, q_len, v_dim):
        raise AttentionShapeError(
            f"the attention output's gradient has shape {tuple(grad_out_shape)}, "
            f"expected (B, H_q, S_q, D_v) = {(batch, q_heads, q_len, v_dim)}"
        )
    return 2 * batch * q_heads * q_len * kv_len * (3 * qk_dim + 2 * v_dim)


def _backward_of(q_shape: Shape, k_shape: Shape, v_shape: Shape) -> int:
    """The fused backward of attention over these q, k, v: its gradient has the output's shape."""
    return sdpa_backward_flop_count((*q_shape[:3], v_shape[3]), q_shape, k_shape, v_shape)


def _checked_attention_shapes(q_shape: Shape, k_shape: Shape, v_shape: Shape) -> Shape:
    batch, q_heads, _, qk_dim = q_shape
    k_batch, kv_heads, kv_len, k_dim = k_shape
    v_batch, v_heads, v_len, _ = v_shape
    if not (
        batch == k_batch == v_batch
        and kv_heads == v_heads
        and kv_len == v_len
        and qk_dim == k_dim
        and q_heads % kv_heads == 0
    ):
        raise AttentionShapeError(
            f"incompatible (B, H, S, D) attention shapes q={tuple(q_shape)}, "
            f"k={tuple(k_shape)}, v={tuple(v_shape)}"
        )
    return q_shape


@register_flop_formula(
    [
        aten._scaled_dot_product_flash_attention_for_cpu,
        aten._scaled_dot_product_flash_attention,
        aten._scaled_dot_product_efficient_attention,
        aten._scaled_dot_product_cudnn_attention,
        aten._scaled_dot_product_fused_attention_overrideable,
    ]
)
def sdpa_flop(q_shape: Shape, k_shape: Shape, v_shape: Shape, *args: Any, **kwargs: Any) -> int:
    return sdpa_flop_count(q_shape, k_shape, v_shape)


@register_flop_formula(
    [
        aten._scaled_dot_product_flash_attention_for_cpu_backward,
        aten._scaled_dot_product_flash_attention_backward,
        aten._scaled_dot_product_efficient_attention_backward,
        aten._scaled_dot_product_cudnn_attention_backward,
        aten._scaled_dot_product_fused_attention_overrideable_backward,
    ]
)
def sdpa_backward_flop(
    grad_out_shape: Shape,
    q_shape: Shape,
    k_shape: Shape,
    v_shape: Shape,
    *args: Any,
    **kwargs: Any,
) -> int:
    return sdpa_backward_flop_count(grad_out_shape, q_shape, k_shape, v_shape)


def _attention_calls(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    cumulative_q: torch.Tensor | None,
    cumulative_k: torch.Tensor | None,
    max_q: int,
    max_k: int,
    *,
    dense_layout: str,
) -> Iterator[tuple[Shape, Shape, Shape]]:
    """The (B, H, S, D) shapes of the attention(s) one kernel call computes.

    Dense calls take ``dense_layout`` tensors: "BSHD" (flash, memory-efficient)
    or "BHSD" (cuDNN). Jagged calls (nested tensors, varlen) pack every
    sequence along one dim as (..., total, H, D) and pass cumulative sequence
    lengths; each sequence is its own attention, so they are counted one by one.
    """
    # Dense calls pass no offsets: None, or an empty tensor where the schema
    # wants one (offsets of even zero sequences hold one element).
    if cumulative_q is None or cumulative_q.numel() == 0:
        shapes = [tuple(t.shape) for t in (q, k, v)]
        if dense_layout == "BSHD":
            shapes = [(b, h, s, d) for b, s, h, d in shapes]
        yield shapes[0], shapes[1], shapes[2]
        return
    q_heads, qk_dim = q.shape[-2:]
    kv_heads, v_dim = v.shape[-2:]
    q_lengths = _sequence_lengths(cumulative_q, max_q)
    # varlen attention passes no key offsets when keys are cut like queries
    k_lengths = q_lengths if cumulative_k is None else _sequence_lengths(cumulative_k, max_k)
    for q_len, kv_len in zip(q_lengths, k_lengths, strict=True):
        yield (
            (1, q_heads, q_len, qk_dim),
            (1, kv_heads, kv_len, qk_dim),
            (1, kv_heads, kv_len, v_dim),
        )


def _sequence_lengths(cumulative: torch.Tensor, max_len: int) -> list[int]:
    """Lengths from cumulative offsets ``[0, l0, l0 + l1, ...]``.

    Meta and fake tensors hold no offsets to read: every sequence is then
    assumed to have the longest length, an upper bound.
    """
    if cumulative.device.type == "meta" or is_fake(cumulative):
        return [int(max_len)] * (cumulative.shape[0] - 1)
    return cumulative.diff().tolist()


def attention_kernel_flop(
    *, q_at: int, offsets_at: int, dense_layout: str, count: Callable[..., int]
) -> FlopFormula:
    """A raw formula for a kernel taking q, k, v from argument ``q_at`` on, and the
    cumulative lengths of q and k, then their longest lengths, from ``offsets_at`` on."""

    def formula(*args: Any, **kwargs: Any) -> int:
        q, k, v = args[q_at : q_at + 3]
        calls = _attention_calls(
            q, k, v, *args[offsets_at : offsets_at + 4], dense_layout=dense_layout
        )
        return sum(count(*shapes) for shapes in calls)

    return formula


class _Kernel(NamedTuple):
    namespace: str
    name: str
    q_at: int  # where q, k, v start in the arguments
    offsets_at: int  # where cum_seq_q, cum_seq_k, max_q, max_k start
    dense_layout: str  # of q, k, v in a dense call: "BSHD" or "BHSD"
    count: Callable[..., int]


_FORWARD, _BACKWARD = sdpa_flop_count, _backward_of

# Argument positions from each kernel's schema (``torch.ops.aten.X.default._schema``).
_KERNELS = [
    # (q, k, v, cum_seq_q, cum_seq_k, max_q, max_k, ...)
    _Kernel("aten", "_flash_attention_forward", 0, 3, "BSHD", _FORWARD),
    # (out, q, k, v, cum_seq_q, ...)
    _Kernel("aten", "_flash_attention_forward_no_dropout_inplace", 1, 4, "BSHD", _FORWARD),
    # (grad_out, q, k, v, out, logsumexp, cum_seq_q, ...)
    _Kernel("aten", "_flash_attention_backward", 1, 6, "BSHD", _BACKWARD),
    # (q, k, v, bias, cu_seqlens_q, ...): dense (B, M, H, K)
    _Kernel("aten", "_efficient_attention_forward", 0, 4, "BSHD", _FORWARD),
    # (grad_out, q, k, v, bias, out, cu_seqlens_q, ...)
    _Kernel("aten", "_efficient_attention_backward", 1, 6, "BSHD", _BACKWARD),
    # (q, k, v, attn_bias, cum_seq_q, ...): dense (B, H, S, D)
    _Kernel("aten", "_cudnn_attention_forward", 0, 4, "BHSD", _FORWARD),
    # (grad_out, q, k, v, out, logsumexp, philox_seed, philox_offset, attn_bias, cum_seq_q, ...)
    _Kernel("aten", "_cudnn_attention_backward", 1, 9, "BHSD", _BACKWARD),
    # varlen_attn: (q, k, v, cu_seq_q, cu_seq_k, max_q, max_k, ...), always packed
    _Kernel("torch_attn", "_varlen_attn", 0, 3, "BSHD", _FORWARD),
    # (out, q, k, v, cu_seq_q, ...)
    _Kernel("torch_attn", "_varlen_attn_out", 1, 4, "BSHD", _FORWARD),
    # (grad_out, q, k, v, out, lse, cu_seq_q, ...)
    _Kernel("torch_attn", "_varlen_attn_backward", 1, 6, "BSHD", _BACKWARD),
]


def _target(namespace: str, name: str) -> OpOverloadPacket | str | None:
    """The kernel's packet, if this torch release has it. varlen attention's ops exist
    once ``torch.nn.attention.varlen`` is imported (which imports torch._dynamo, seconds):
    those are registered by name."""
    if namespace != "aten":
        return f"{namespace}::{name}"
    return getattr(aten, name) if hasattr(aten, name) else None


for _kernel in _KERNELS:
    _op = _target(_kernel.namespace, _kernel.name)
    if _op is not None:
        register_flop_formula(_op, get_raw=True)(
            attention_kernel_flop(
                q_at=_kernel.q_at,
                offsets_at=_kernel.offsets_at,
                dense_layout=_kernel.dense_layout,
                count=_kernel.count,
            )
        )


@register_flop_formula(torch.ops.higher_order.flex_attention)
def flex_attention_flop(
    q_shape: Shape, k_shape: Shape, v_shape: Shape, *args: Any, **kwargs: Any
) -> int:
    """FlexAttention counts as dense attention: its block mask does not lower the count.

    That is what the eager kernel computes, on every device, and what a
    compiled kernel computes for a mask with no empty blocks. A graph node's
    ``sparsity_hint`` (``torch.fx.traceback.annotate``), passed as
    ``_node_meta=node.meta``, scales it as torch's formula does.
    """
    return _sparse(sdpa_flop_count(q_shape, k_shape, v_shape), kwargs.get("_node_meta"))


@register_flop_formula(torch.ops.higher_order.flex_attention_backward)
def flex_attention_backward_flop(
    q_shape: Shape,
    k_shape: Shape,
    v_shape: Shape,
    attention_out_shape: Shape,
    _logsumexp: Shape,
    grad_out_shape: Shape | None = None,
    *args: Any,
    **kwargs: Any,
) -> int:
    grad_out = attention_out_shape if grad_out_shape is None else grad_out_shape
    flops = sdpa_backward_flop_count(grad_out, q_shape, k_shape, v_shape)
    return _sparse(flops, kwargs.get("_node_meta"))


def _sparse(dense: int, node_meta: Mapping[str, Any] | None) -> int:
    """``dense`` scaled by the node's ``sparsity_hint`` (the share of attention skipped,
    clamped to [0, 1]), rounded down; a node with no hint counts ``dense``."""
    custom = (node_meta or {}).get("custom") or {}
    sparsity = min(1.0, max(0.0, float(custom.get("sparsity_hint", 0.0))))
    return int(dense * (1.0 - sparsity)) if sparsity > 0 else dense
