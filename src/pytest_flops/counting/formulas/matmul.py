"""Matrix multiplies: ``mm`` of (m, k) @ (k, n) is ``2*m*k*n`` (a multiply-add is 2 FLOPs).

Dense, batched, matrix-vector, int8/fp8 scaled, weight-only quantized,
grouped (mixture-of-experts) and nested-tensor products; and the products of
that shape: ``addr`` (an outer product plus a matrix, ``mm`` with an inner
dimension of 1), ``F.bilinear`` (``_trilinear``) and pairwise distances.
"""

from __future__ import annotations

from collections.abc import Sequence
from math import prod
from typing import Any

import torch
from torch._subclasses.fake_tensor import is_fake

from pytest_flops.counting.formulas.registry import (
    FlopFormula,
    Shape,
    existing_packets,
    register_flop_formula,
)

aten = torch.ops.aten


@register_flop_formula([aten.mm, aten._int_mm, *existing_packets("_scaled_mm", "_scaled_mm_v2")])
def mm_flop(
    a_shape: Shape, b_shape: Shape, *args: Any, out_shape: Any = None, **kwargs: Any
) -> int:
    m, k = a_shape
    k2, n = b_shape
    assert k == k2, f"mm inner dims differ: {a_shape} @ {b_shape}"
    return 2 * m * k * n


@register_flop_formula([aten.addmm, aten.addmm_, aten._addmm_activation])
def addmm_flop(_bias: Shape, a_shape: Shape, b_shape: Shape, *args: Any, **kwargs: Any) -> int:
    return mm_flop(a_shape, b_shape)


@register_flop_formula(aten.bmm)
def bmm_flop(a_shape: Shape, b_shape: Shape, *args: Any, **kwargs: Any) -> int:
    b, m, k = a_shape
    b2, k2, n = b_shape
    assert b == b2 and k == k2, f"bmm shapes differ: {a_shape} @ {b_shape}"
    return 2 * b * m * k * n


@register_flop_formula([aten.baddbmm, aten.baddbmm_, aten.addbmm, aten.addbmm_])
def baddbmm_flop(_bias: Shape, a_shape: Shape, b_shape: Shape, *args: Any, **kwargs: Any) -> int:
    return bmm_flop(a_shape, b_shape)


@register_flop_formula(aten.mv)
def mv_flop(a_shape: Shape, v_shape: Shape, *args: Any, **kwargs: Any) -> int:
    m, n = a_shape
    return 2 * m * n


@register_flop_formula([aten.addmv, aten.addmv_])
def addmv_flop(_bias: Shape, a_shape: Shape, v_shape: Shape, *args: Any, **kwargs: Any) -> int:
    return mv_flop(a_shape, v_shape)


@register_flop_formula([aten.dot, aten.vdot])
def dot_flop(a_shape: Shape, b_shape: Shape, *args: Any, **kwargs: Any) -> int:
    return 2 * a_shape[0]


@register_flop_formula(
    existing_packets(
        "_weight_int8pack_mm",
        "_weight_int4pack_mm",
        "_weight_int4pack_mm_for_cpu",
        "_weight_int4pack_mm_with_scales_and_zeros",
    )
)
def weight_only_quantized_mm_flop(
    x_shape: Shape, *args: Any, out_shape: Shape, **kwargs: Any
) -> int:
    """``x @ dequantize(w).T``: the weight is packed, so (M, K) @ (K, N) reads K from x."""
    *rows, k = x_shape
    return 2 * prod(rows) * k * out_shape[-1]


def _grouped_mm_formula(*, offs_at: int) -> FlopFormula:
    """Mixture-of-experts grouped matmul, ``offs`` at position ``offs_at``.

    Groups run over a batch dimension (3-D @ 3-D) or over a jagged one cut by
    the cumulative ``offs``: M for 2-D @ 3-D (tokens per expert), N for 3-D @
    2-D, K for 2-D @ 2-D (the weight gradient). Rows past ``offs[-1]`` are
    left uncomputed, so the jagged dimension counts up to ``offs[-1]``; meta
    and fake offsets cannot be read, and it then counts whole (an upper bound).
    """

    def grouped_mm_flop(*args: Any, **kwargs: Any) -> int:
        a, b = args[:2]
        offs = args[offs_at] if len(args) > offs_at else kwargs.get("offs")
        if a.dim() == 3 and b.dim() == 3:
            groups, m, k = a.shape
            return 2 * groups * m * k * b.shape[-1]
        m, k, n = a.shape[-2], a.shape[-1], b.shape[-1]
        used = None if offs is None else _last_offset(offs)
        if used is not None:
            if a.dim() == 2 and b.dim() == 3:
                m = used
            elif a.dim() == 3:
                n = used
            else:
                k = used
        return 2 * m * k * n

    return grouped_mm_flop


def _last_offset(offs: torch.Tensor) -> int | None:
    if offs.device.type == "meta" or is_fake(offs) or offs.numel() == 0:
        return None
    return int(offs[-1])


register_flop_formula(existing_packets("_grouped_mm"), get_raw=True)(_grouped_mm_formula(offs_at=2))
# (a, b, scale_a, scale_b, offs, ...)
register_flop_formula(existing_packets("_scaled_grouped_mm"), get_raw=True)(
    _grouped_mm_formula(offs_at=4)
)
# (a, b, scale_a, recipe_a, swizzle_a, scale_b, recipe_b, swizzle_b, offs, ...)
register_flop_formula(existing_packets("_scaled_grouped_mm_v2"), get_raw=True)(
    _grouped_mm_formula(offs_at=8)
)


# A dense matmul decomposes into mm/bmm before the counter sees it; a nested
# (strided layout) one reaches it whole, e.g. in SDPA's math path for jagged tensors.


@register_flop_formula(aten.matmul, get_raw=True)
def matmul_flop(a: torch.Tensor, b: torch.Tensor, *args: Any, **kwargs: Any) -> int:
    """Summed over the components of nested operands."""
    a_shapes, b_shapes = _component_shapes(a), _component_shapes(b)
    if a.is_nested and b.is_nested:
        pairs = list(zip(a_shapes, b_shapes, strict=True))
    else:  # a dense operand meets every component of the nested one
        pairs = [(a_shape, b_shape) for a_shape in a_shapes for b_shape in b_shapes]
    return sum(_dense_matmul_flop(a_shape, b_shape) for a_shape, b_shape in pairs)


@register_flop_formula(aten.matmul_backward, get_raw=True)
def matmul_backward_flop(
    _grad: torch.Tensor,
    a: torch.Tensor,
    b: torch.Tensor,
    output_mask: Sequence[bool],
    *args: Any,
    **kwargs: Any,
) -> int:
    """grad_a = grad @ bᵀ and grad_b = aᵀ @ grad each cost what the forward did."""
    return matmul_flop(a, b) * sum(bool(wanted) for wanted in output_mask)


def _component_shapes(t: torch.Tensor) -> list[tuple[int, ...]]:
    if t.is_nested:
        return [tuple(shape) for shape in t._nested_tensor_size().tolist()]
    return [tuple(t.shape)]


def _dense_matmul_flop(a_shape: Shape, b_shape: Shape) -> int:
    """``torch.matmul`` semantics: 1-D operands gain a unit dim, leading dims broadcast."""
    m, k = (1, a_shape[0]) if len(a_shape) == 1 else a_shape[-2:]
    n = 1 if len(b_shape) == 1 else b_shape[-1]
    batch = torch.broadcast_shapes(tuple(a_shape[:-2]), tuple(b_shape[:-2]))
    return 2 * prod(batch) * m * k * n


@register_flop_formula(aten.addr)
def addr_flop(_bias: Shape, a_shape: Shape, b_shape: Shape, *args: Any, **kwargs: Any) -> int:
    """``bias + a ⊗ b``: a multiply-add per output element, as ``mm`` of (n, 1) @ (1, m).

    ``torch.outer`` alone is a broadcast multiply, elementwise, and counts 0.
    """
    return 2 * a_shape[0] * b_shape[0]


@register_flop_formula(aten._trilinear)
def trilinear_flop(
    i1_shape: Shape,
    i2_shape: Shape,
    i3_shape: Shape,
    expand1: Sequence[int],
    expand2: Sequence[int],
    expand3: Sequence[int],
    *args: Any,
    **kwargs: Any,
) -> int:
    """One multiply-add per term of the triple product, before summing.

    ``F.bilinear`` of x (B, I), W (O, I, J) and y (B, J) gives every output
    (b, o) as xᵀ W_o y: 2·B·O·I·J.
    """
    rank = len(i1_shape) + len(expand1)
    sizes = [1] * rank
    for shape, expand in ((i1_shape, expand1), (i2_shape, expand2), (i3_shape, expand3)):
        kept = [d for d in range(rank) if d not in expand]
        for d, size in zip(kept, shape, strict=True):
            sizes[d] = max(sizes[d], size)
    return 2 * prod(sizes)


def cdist_flop_count(x1_shape: Shape, x2_shape: Shape) -> int:
    """Distances between (B, P, M) and (B, R, M) points: a multiply-add per coordinate of
    each pair, 2·B·P·R·M, for every p. (For p = 2 on larger inputs, torch.cdist runs a
    matmul over M + 2 coordinates instead, and counts as that matmul.)"""
    *batch, points, coordinates = x1_shape
    return 2 * prod(batch) * points * x2_shape[-2] * coordinates


@register_flop_formula(aten._cdist_forward)
def cdist_flop(x1_shape: Shape, x2_shape: Shape, *args: Any, **kwargs: Any) -> int:
    return cdist_flop_count(x1_shape, x2_shape)


@register_flop_formula(aten._cdist_backward)
def cdist_backward_flop(
    _grad_shape: Shape, x1_shape: Shape, x2_shape: Shape, *args: Any, **kwargs: Any
) -> int:
    """The gradient of x1 (autograd calls it again, swapped, for x2's)."""
    return cdist_flop_count(x1_shape, x2_shape)


def pdist_flop_count(x_shape: Shape) -> int:
    """Distances between the N(N - 1)/2 pairs of (N, M) points: 2·M per pair."""
    points, coordinates = x_shape
    return points * (points - 1) * coordinates


@register_flop_formula(aten._pdist_forward)
def pdist_flop(x_shape: Shape, *args: Any, **kwargs: Any) -> int:
    return pdist_flop_count(x_shape)


@register_flop_formula(aten._pdist_backward)
def pdist_backward_flop(_grad_shape: Shape, x_shape: Shape, *args: Any, **kwargs: Any) -> int:
    return pdist_flop_count(x_shape)
