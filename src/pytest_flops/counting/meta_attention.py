"""Scaled dot-product attention on meta tensors, as the CPU runs it.

On meta, ``F.scaled_dot_product_attention`` has no fused kernel to choose and runs the
math decomposition (bmm, softmax, bmm), whose backward recomputes nothing: 2x the
forward where the CPU's flash kernel counts 2.5x. While counting, the call takes the
CPU's flash kernel (its meta implementation) wherever the CPU would take it;
:mod:`pytest_flops.counting.meta_as_cpu` sends the calls here.
"""

from __future__ import annotations

import torch
from torch.nn.attention import SDPBackend

from pytest_flops.counting.meta_rnn import plain_meta

aten = torch.ops.aten

__all__ = ["cpu_flash_attention_route"]

_CPU_KERNELS = torch._C.DispatchKeySet(torch._C.DispatchKey.CPU)


def cpu_flash_attention_route(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attn_mask: torch.Tensor | None = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    scale: float | None = None,
    enable_gqa: bool = False,
) -> torch.Tensor | None:
    """The output of the CPU flash kernel, or None where a CPU would not take it."""
    if not plain_meta(query, key, value):
        return None
    # The CPU chooser reads only sizes, strides, dtypes and the global backend
    # switches, so it answers for meta tensors as it would for CPU ones.
    choice = aten._fused_sdp_choice.default.redispatch(
        _CPU_KERNELS,
        query,
        key,
        value,
        attn_mask,
        dropout_p,
        is_causal,
        scale=scale,
        enable_gqa=enable_gqa,
    )
    if choice != SDPBackend.FLASH_ATTENTION.value:
        return None
    # The CPU kernel takes (B, H, S, D): ATen gives 3-D (N, L, E) inputs a leading
    # dimension of one, the mask leading ones up to four, and drops it from the output.
    unbatched = query.dim() == key.dim() == value.dim() == 3
    if unbatched:
        query, key, value = (t.unsqueeze(0) for t in (query, key, value))
        while attn_mask is not None and attn_mask.dim() < 4:
            attn_mask = attn_mask.unsqueeze(0)
    if attn_mask is not None and attn_mask.dtype == torch.bool:
        # as SDPA does before calling a fused kernel, with the same ops (so the same
        # bytes accessed): True keeps, False masks out
        keep, drop = (
            torch.scalar_tensor(value, dtype=query.dtype, device=query.device)
            for value in (0.0, float("-inf"))
        )
        attn_mask = torch.where(attn_mask, keep, drop)
    out, _logsumexp = aten._scaled_dot_product_flash_attention_for_cpu(
        query, key, value, dropout_p, is_causal, attn_mask=attn_mask, scale=scale
    )
    return out.squeeze(0) if unbatched else out
