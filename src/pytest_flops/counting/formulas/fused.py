"""The fused transformer inference paths (eval + no_grad fast paths).

They count what the same module counts with grad enabled: in-projections,
attention (QKᵀ and PV), out-projection and, for a layer, its two MLP linears.
A nested-tensor input (TransformerEncoder turns a padded batch with a key
padding mask into one) counts as the batch padded to its longest sequence.
"""

from __future__ import annotations

from typing import Any

import torch

from pytest_flops.counting.formulas.attention import sdpa_flop_count
from pytest_flops.counting.formulas.registry import register_flop_formula

aten = torch.ops.aten


@register_flop_formula(aten._native_multi_head_attention, get_raw=True)
def native_multi_head_attention_flop(
    query: torch.Tensor,
    key: torch.Tensor,
    _value: torch.Tensor,
    embed_dim: int,
    num_heads: int,
    *args: Any,
    **kwargs: Any,
) -> int:
    batch, q_len, _ = _padded_shape(query)
    _, kv_len, _ = _padded_shape(key)
    head_dim = embed_dim // num_heads
    # q projected over q_len tokens, k and v over kv_len; the out-projection over q_len
    projections = 2 * batch * (2 * q_len + 2 * kv_len) * embed_dim * embed_dim
    attention = sdpa_flop_count(
        (batch, num_heads, q_len, head_dim),
        (batch, num_heads, kv_len, head_dim),
        (batch, num_heads, kv_len, head_dim),
    )
    return projections + attention


@register_flop_formula(aten._transformer_encoder_layer_fwd, get_raw=True)
def transformer_encoder_layer_flop(
    src: torch.Tensor,
    embed_dim: int,
    num_heads: int,
    qkv_weight: torch.Tensor,
    _qkv_bias: torch.Tensor,
    proj_weight: torch.Tensor,
    _proj_bias: torch.Tensor,
    _use_gelu: bool,
    _norm_first: bool,
    _eps: float,
    _norm_weight_1: torch.Tensor,
    _norm_bias_1: torch.Tensor,
    _norm_weight_2: torch.Tensor,
    _norm_bias_2: torch.Tensor,
    ffn_weight_1: torch.Tensor,
    _ffn_bias_1: torch.Tensor,
    ffn_weight_2: torch.Tensor,
    *args: Any,
    **kwargs: Any,
) -> int:
    batch, seq_len, _ = _padded_shape(src)
    head_dim = embed_dim // num_heads
    # every token goes through the qkv, out, and both MLP projections once
    linear_weights = sum(w.numel() for w in (qkv_weight, proj_weight, ffn_weight_1, ffn_weight_2))
    attention_shape = (batch, num_heads, seq_len, head_dim)
    return 2 * batch * seq_len * linear_weights + sdpa_flop_count(
        attention_shape, attention_shape, attention_shape
    )


def _padded_shape(t: torch.Tensor) -> tuple[int, ...]:
    """A tensor's shape; for a nested tensor, its components padded to the largest."""
    if not t.is_nested:
        return tuple(t.shape)
    sizes = t._nested_tensor_size()  # (batch, component dims)
    return (sizes.shape[0], *sizes.amax(dim=0).tolist())
