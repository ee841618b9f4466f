"""The op-formula table: which aten ops cost FLOPs, and how many.

Each formula is a small pure function of shapes, registered on one or more
``torch.ops.aten.X`` packets (or higher-order operators such as
``torch.ops.higher_order.flex_attention``) with :func:`register_flop_formula`. Tensors in the
op's arguments and output arrive as shape tuples (lists of tensors as lists of
shapes) and the output as ``out_shape=``; a formula registered with
``get_raw=True`` gets the real arguments and ``out_val=`` instead.

Conventions, as in ``torch.utils.flop_counter``:

* a multiply-add is 2 FLOPs, so ``mm`` of (m, k) @ (k, n) is ``2*m*k*n``;
* only matrix multiplies, convolutions and attention are counted; bias adds,
  elementwise ops, normalizations, softmax and pooling are bandwidth-bound and
  count 0. They are listed in :data:`UNCOUNTED_OPS` so they never show up as
  unsupported;
* attention counts its two products, QKᵀ and PV, over every (query, key)
  pair: a causal mask, an attention mask, a sliding window or a FlexAttention
  block mask does not lower the count. A fused backward counts the QKᵀ it
  recomputes; the math backend's backward, counted op by op, recomputes
  nothing.

This table is ours on purpose: a snapshot must not change because torch's own
registry changed between releases.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from math import prod
from typing import Any, TypeAlias

import torch
from torch._ops import HigherOrderOperator, OpOverload, OpOverloadPacket
from torch._subclasses.fake_tensor import is_fake

aten = torch.ops.aten

Shape: TypeAlias = Sequence[int]
FlopFormula: TypeAlias = Callable[..., int]
FlopTarget: TypeAlias = OpOverloadPacket | HigherOrderOperator
"""An aten (or custom) op packet, or a higher-order operator such as FlexAttention."""

FLOP_FORMULAS: dict[FlopTarget, FlopFormula] = {}
"""Registered formulas by op packet. Formulas here take ``(args, kwargs, out)``."""


def register_flop_formula(
    targets: FlopTarget | Iterable[FlopTarget], *, get_raw: bool = False
) -> Callable[[FlopFormula], FlopFormula]:
    """Register ``formula`` for ``targets``; later registrations win.

    Use it for your own custom ops too::

        @register_flop_formula(torch.ops.mylib.fused_mlp)
        def fused_mlp_flop(x_shape, w1_shape, w2_shape, *, out_shape):
            ...

    Counters read the table when a ``with`` block starts, so a registration
    counts from every counter's next block on, counters created before it too.
    """
    packets = [targets] if isinstance(targets, FlopTarget) else list(targets)

    def register(formula: FlopFormula) -> FlopFormula:
        wrapped = as_table_formula(formula, get_raw=get_raw)
        for packet in packets:
            if not isinstance(packet, FlopTarget):
                raise TypeError(
                    "register_flop_formula takes op packets (torch.ops.ns.op) or "
                    f"higher-order operators, got {packet!r}"
                )
            FLOP_FORMULAS[packet] = wrapped
        return formula

    return register


def as_table_formula(formula: FlopFormula, *, get_raw: bool) -> FlopFormula:
    """Adapt a user-facing formula to the ``(args, kwargs, out)`` table calling form."""
    if get_raw:

        def raw(args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> int:
            return formula(*args, out_val=out, **kwargs)

        return raw

    def shaped(args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> int:
        return formula(
            *[_shape_of(a) for a in args],
            out_shape=_shape_of(out),
            **{k: _shape_of(v) for k, v in kwargs.items()},
        )

    return shaped


def _shape_of(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return tuple(value.shape)
    if isinstance(value, (list, tuple)):
        return type(value)(_shape_of(v) for v in value)
    return value


# -- matrix multiplies ------------------------------------------------------------


def _existing_packets(*names: str) -> list[OpOverloadPacket]:
    """The aten packets among ``names`` that this torch release has (newer kernels)."""
    return [getattr(aten, name) for name in names if hasattr(aten, name)]


@register_flop_formula([aten.mm, aten._int_mm, *_existing_packets("_scaled_mm", "_scaled_mm_v2")])
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
    _existing_packets(
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


register_flop_formula(_existing_packets("_grouped_mm"), get_raw=True)(
    _grouped_mm_formula(offs_at=2)
)
# (a, b, scale_a, scale_b, offs, ...)
register_flop_formula(_existing_packets("_scaled_grouped_mm"), get_raw=True)(
    _grouped_mm_formula(offs_at=4)
)
# (a, b, scale_a, recipe_a, swizzle_a, scale_b, recipe_b, swizzle_b, offs, ...)
register_flop_formula(_existing_packets("_scaled_grouped_mm_v2"), get_raw=True)(
    _grouped_mm_formula(offs_at=8)
)


# -- convolutions -----------------------------------------------------------------


def conv_flop_count(
    x_shape: Shape, w_shape: Shape, out_shape: Shape, transposed: bool = False
) -> int:
    """FLOPs of a (possibly grouped) convolution.

    ``w_shape`` is ``(C_out, C_in / groups, *kernel)``, so groups are already
    accounted for: every output element takes ``C_in / groups * prod(kernel)``
    multiply-adds. A transposed conv does the same work per *input* position.
    """
    batch = x_shape[0]
    positions = prod((x_shape if transposed else out_shape)[2:])
    c_out, c_in_per_group, *kernel = w_shape
    return 2 * batch * positions * c_out * c_in_per_group * prod(kernel)


@register_flop_formula([aten.convolution, aten._convolution, aten.convolution_overrideable])
def conv_flop(
    x_shape: Shape,
    w_shape: Shape,
    _bias: Any,
    _stride: Any,
    _padding: Any,
    _dilation: Any,
    transposed: bool,
    *args: Any,
    out_shape: Shape,
    **kwargs: Any,
) -> int:
    return conv_flop_count(x_shape, w_shape, out_shape, transposed=transposed)


# A backend's own kernel, reached when called directly or through a composite
# op such as ``thnn_conv2d``. Their signatures differ after (input, weight) and
# carry no ``transposed`` flag: each kernel is one or the other.
@register_flop_formula(
    _existing_packets(
        "cudnn_convolution",
        "_slow_conv2d_forward",
        "slow_conv3d_forward",
        "slow_conv_dilated2d",
        "slow_conv_dilated3d",
        "mkldnn_convolution",
        "_conv_depthwise2d",
        "miopen_convolution",
        "miopen_depthwise_convolution",
        "_nnpack_spatial_convolution",
        "_mps_convolution",
    )
)
def backend_conv_flop(
    x_shape: Shape, w_shape: Shape, *args: Any, out_shape: Shape, **kwargs: Any
) -> int:
    return conv_flop_count(x_shape, w_shape, out_shape)


@register_flop_formula(
    _existing_packets(
        "slow_conv_transpose2d",
        "slow_conv_transpose3d",
        "cudnn_convolution_transpose",
        "miopen_convolution_transpose",
        "_mps_convolution_transpose",
    )
)
def backend_conv_transpose_flop(
    x_shape: Shape, w_shape: Shape, *args: Any, out_shape: Shape, **kwargs: Any
) -> int:
    return conv_flop_count(x_shape, w_shape, out_shape, transposed=True)


def conv_backward_flop_count(
    grad_out_shape: Shape,
    x_shape: Shape,
    w_shape: Shape,
    *,
    transposed: bool,
    groups: int,
    output_mask: Sequence[bool],
    out_shape: Sequence[Shape | None],
) -> int:
    """grad_input costs what the forward costs; so does grad_weight.

    torch's formula treats grad_weight as one big ungrouped conv over
    ``(C_in, N, ...)`` and so counts every group against every other: ``groups``
    times too much. Each group only correlates its own channels, hence the
    division.
    """

    def swap_batch_and_channels(shape: Shape) -> list[int]:
        return [shape[1], shape[0], *shape[2:]]

    flops = 0
    if output_mask[0]:
        grad_input_shape = out_shape[0]
        assert grad_input_shape is not None
        flops += conv_flop_count(grad_out_shape, w_shape, grad_input_shape, not transposed)
    if output_mask[1]:
        grad_weight_shape = out_shape[1]
        assert grad_weight_shape is not None
        src, dst = (grad_out_shape, x_shape) if transposed else (x_shape, grad_out_shape)
        flops += (
            conv_flop_count(
                swap_batch_and_channels(src),
                swap_batch_and_channels(dst),
                swap_batch_and_channels(grad_weight_shape),
            )
            // groups
        )
    return flops


@register_flop_formula(aten.convolution_backward)
def conv_backward_flop(
    grad_out_shape: Shape,
    x_shape: Shape,
    w_shape: Shape,
    _bias: Any,
    _stride: Any,
    _padding: Any,
    _dilation: Any,
    transposed: bool,
    _output_padding: Any,
    groups: int,
    output_mask: Sequence[bool],
    out_shape: Sequence[Shape | None],
) -> int:
    return conv_backward_flop_count(
        grad_out_shape,
        x_shape,
        w_shape,
        transposed=transposed,
        groups=groups,
        output_mask=output_mask,
        out_shape=out_shape,
    )


@register_flop_formula(aten._slow_conv2d_backward)
def slow_conv2d_backward_flop(
    grad_out_shape: Shape,
    x_shape: Shape,
    w_shape: Shape,
    _kernel_size: Any,
    _stride: Any,
    _padding: Any,
    output_mask: Sequence[bool] = (True, True, True),
    *,
    out_shape: Sequence[Shape | None],
    **kwargs: Any,
) -> int:
    """The backward of ``thnn_conv2d``'s kernel: ungrouped and untransposed."""
    return conv_backward_flop_count(
        grad_out_shape,
        x_shape,
        w_shape,
        transposed=False,
        groups=1,
        output_mask=output_mask,
        out_shape=out_shape,
    )


# -- attention --------------------------------------------------------------------
#
# Every attention kernel is counted from q, k and v in (B, H, S, D) form: the
# fused kernels' other layouts are transposed to it first. Key/value heads may
# be fewer than query heads (GQA/MQA); every query head still multiplies a full
# key and value, so the count scales with the query heads.


def sdpa_flop_count(q_shape: Shape, k_shape: Shape, v_shape: Shape) -> int:
    """Forward: QKᵀ, (S_q, D) @ (D, S_k), then PV, (S_q, S_k) @ (S_k, D_v), per batch and head."""
    batch, q_heads, q_len, qk_dim = _checked_attention_shapes(q_shape, k_shape, v_shape)
    kv_len, v_dim = k_shape[2], v_shape[3]
    return 2 * batch * q_heads * q_len * kv_len * (qk_dim + v_dim)


def sdpa_backward_flop_count(q_shape: Shape, k_shape: Shape, v_shape: Shape) -> int:
    """Fused backward: five products of the forward's size.

    The kernel kept only the log-sum-exp, so it recomputes S = QKᵀ (over D),
    then dP = dO Vᵀ and dV = Pᵀ dO (over D_v), dQ = dS K and dK = dSᵀ Q (over D).
    With D == D_v that is 2.5 times the forward.
    """
    batch, q_heads, q_len, qk_dim = _checked_attention_shapes(q_shape, k_shape, v_shape)
    kv_len, v_dim = k_shape[2], v_shape[3]
    return 2 * batch * q_heads * q_len * kv_len * (3 * qk_dim + 2 * v_dim)


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
        raise ValueError(
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
    _grad_out_shape: Shape,
    q_shape: Shape,
    k_shape: Shape,
    v_shape: Shape,
    *args: Any,
    **kwargs: Any,
) -> int:
    return sdpa_backward_flop_count(q_shape, k_shape, v_shape)


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
    if cumulative_q is None or cumulative_k is None or cumulative_q.numel() == 0:
        shapes = [tuple(t.shape) for t in (q, k, v)]
        if dense_layout == "BSHD":
            shapes = [(b, h, s, d) for b, s, h, d in shapes]
        yield shapes[0], shapes[1], shapes[2]
        return
    q_heads, qk_dim = q.shape[-2:]
    kv_heads, v_dim = v.shape[-2:]
    q_lengths = _sequence_lengths(cumulative_q, max_q)
    k_lengths = _sequence_lengths(cumulative_k, max_k)
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


def _attention_kernel_flop(
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


# (q, k, v, cum_seq_q, cum_seq_k, max_q, max_k, ...)
flash_attention_forward_flop = register_flop_formula(aten._flash_attention_forward, get_raw=True)(
    _attention_kernel_flop(q_at=0, offsets_at=3, dense_layout="BSHD", count=sdpa_flop_count)
)
# (out, q, k, v, cum_seq_q, ...): the same, writing into ``out``
register_flop_formula(
    _existing_packets("_flash_attention_forward_no_dropout_inplace"), get_raw=True
)(_attention_kernel_flop(q_at=1, offsets_at=4, dense_layout="BSHD", count=sdpa_flop_count))
# (grad_out, q, k, v, out, logsumexp, cum_seq_q, ...)
flash_attention_backward_flop = register_flop_formula(aten._flash_attention_backward, get_raw=True)(
    _attention_kernel_flop(
        q_at=1, offsets_at=6, dense_layout="BSHD", count=sdpa_backward_flop_count
    )
)
# (q, k, v, bias, cu_seqlens_q, ...); dense (B, M, H, K), which torch's formula reads as
# (B, H, M, K)
efficient_attention_forward_flop = register_flop_formula(
    aten._efficient_attention_forward, get_raw=True
)(_attention_kernel_flop(q_at=0, offsets_at=4, dense_layout="BSHD", count=sdpa_flop_count))
# (grad_out, q, k, v, bias, out, cu_seqlens_q, ...)
register_flop_formula(aten._efficient_attention_backward, get_raw=True)(
    _attention_kernel_flop(
        q_at=1, offsets_at=6, dense_layout="BSHD", count=sdpa_backward_flop_count
    )
)
# (q, k, v, attn_bias, cum_seq_q, ...); dense (B, H, S, D)
cudnn_attention_forward_flop = register_flop_formula(
    _existing_packets("_cudnn_attention_forward"), get_raw=True
)(_attention_kernel_flop(q_at=0, offsets_at=4, dense_layout="BHSD", count=sdpa_flop_count))
# (grad_out, q, k, v, out, logsumexp, philox_seed, philox_offset, attn_bias, cum_seq_q, ...)
register_flop_formula(_existing_packets("_cudnn_attention_backward"), get_raw=True)(
    _attention_kernel_flop(
        q_at=1, offsets_at=9, dense_layout="BHSD", count=sdpa_backward_flop_count
    )
)


@register_flop_formula(torch.ops.higher_order.flex_attention)
def flex_attention_flop(
    q_shape: Shape, k_shape: Shape, v_shape: Shape, *args: Any, **kwargs: Any
) -> int:
    """FlexAttention counts as dense attention: its block mask does not lower the count.

    That is what the eager kernel computes, and what every compiled kernel
    computes for a mask with no empty blocks.
    """
    return sdpa_flop_count(q_shape, k_shape, v_shape)


@register_flop_formula(torch.ops.higher_order.flex_attention_backward)
def flex_attention_backward_flop(
    q_shape: Shape, k_shape: Shape, v_shape: Shape, *args: Any, **kwargs: Any
) -> int:
    return sdpa_backward_flop_count(q_shape, k_shape, v_shape)


# -- nested (strided layout) matmul -------------------------------------------------
#
# A dense matmul decomposes into mm/bmm before the counter sees it; a nested one
# reaches it whole, e.g. in SDPA's math path for jagged tensors.


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


# -- fused transformer inference (eval + no_grad fast paths) --------------------------
#
# They count what the same module counts with grad enabled: in-projections,
# attention (QKᵀ and PV), out-projection and, for a layer, its two MLP linears.
# A nested-tensor input (TransformerEncoder turns a padded batch with a key
# padding mask into one) counts as the batch padded to its longest sequence.


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


# -- recurrent layers ---------------------------------------------------------------
#
# An RNN step multiplies the input by W_ih (G*H, I) and the hidden state by
# W_hh (G*H, H) (or (G*H, P) with proj_size P, plus W_hr (P, H)), with G gates:
# 4 for LSTM, 3 for GRU, 1 for RNN. Every 2-D weight of a layer therefore
# multiplies each (time step, batch element) once: 2 * tokens * weight.numel().
# The fused backward computes the gradients of the inputs and hidden states
# (the initial state included) and of the weights, needed or not: twice the
# forward.


def _rnn_flop(x_shape: Shape, weight_shapes: Iterable[Shape]) -> int:
    tokens = prod(x_shape[:-1])  # (T, B), (B, T), or packed (sum of lengths,)
    return 2 * tokens * sum(prod(shape) for shape in weight_shapes if len(shape) == 2)


@register_flop_formula(aten.mkldnn_rnn_layer)
def mkldnn_rnn_layer_flop(
    x_shape: Shape, w_ih_shape: Shape, w_hh_shape: Shape, *args: Any, **kwargs: Any
) -> int:
    """One layer in one direction (CPU LSTM)."""
    return _rnn_flop(x_shape, [w_ih_shape, w_hh_shape])


@register_flop_formula(aten.mkldnn_rnn_layer_backward)
def mkldnn_rnn_layer_backward_flop(
    x_shape: Shape, w_ih_shape: Shape, w_hh_shape: Shape, *args: Any, **kwargs: Any
) -> int:
    return 2 * _rnn_flop(x_shape, [w_ih_shape, w_hh_shape])


@register_flop_formula(aten._cudnn_rnn)
def cudnn_rnn_flop(
    x_shape: Shape, weight_shapes: Sequence[Shape], *args: Any, **kwargs: Any
) -> int:
    """All layers and directions at once; ``weight_shapes`` lists every layer's weights."""
    return _rnn_flop(x_shape, weight_shapes)


@register_flop_formula(aten._cudnn_rnn_backward)
def cudnn_rnn_backward_flop(
    x_shape: Shape, weight_shapes: Sequence[Shape], *args: Any, **kwargs: Any
) -> int:
    """Input and hidden-state gradients always; weight gradients when asked for."""
    output_mask = args[-1]  # the last argument: (input, hx, cx, weights) wanted
    return _rnn_flop(x_shape, weight_shapes) * (2 if output_mask[3] else 1)


# -- ops that cost nothing by convention ------------------------------------------

UNCOUNTED_TAGS = frozenset(
    getattr(torch.Tag, name)
    for name in ("pointwise", "reduction", "view_copy", "inplace_view")
    if hasattr(torch.Tag, name)  # older torch releases know fewer tags
)
"""Ops with any of these tags are elementwise, reductions or data movement.

``nondeterministic_seeded`` is not among them: fused attention and RNN kernels
carry it too, so random ops are listed by name instead.
"""

_UNCOUNTED_OPS_BY_KIND: dict[str, str] = {
    "copies, fills, factories and layout changes": """
    _to_copy _unsafe_view alias clone contiguous copy copy_ empty empty_like empty_strided
    fill fill_ full full_like lift_fresh lift_fresh_copy new_empty new_empty_strided
    new_full new_ones new_zeros ones ones_like resize_ set_ zero_ zeros zeros_like arange
    linspace scalar_tensor _local_scalar_dense _pin_memory detach_ clamp_min_ _assert_async
    _assert_tensor_metadata _functional_assert_async record_stream
    zero resize resize_as lift empty_permuted _reshape_copy _resize_output shallow_copy_data_
    eye hann_window logspace tril_indices triu_indices unsafe_split unsafe_split_with_sizes
    _convert_weight_to_int4pack _convert_weight_to_int4pack_for_cpu
    """,
    "nested-tensor plumbing": """
    _nested_tensor_from_mask _nested_tensor_from_mask_left_aligned _nested_from_padded
    to_padded_tensor _nested_view_from_buffer _nested_tensor_size _nested_tensor_strides
    _nested_tensor_storage_offsets _nested_get_values _nested_view_from_jagged
    _nested_get_offsets _nested_get_lengths _nested_get_jagged_dummy _nested_get_max_seqlen
    _nested_get_min_seqlen _nested_get_ragged_idx _nested_compute_contiguous_strides_offsets
    _nested_tensor_from_tensor_list _nested_tensor_softmax_with_shape
    """,
    "indexing, gathering, joining, padding, sorting, histograms and resampling": """
    cat stack index index_put index_put_ _index_put_impl_ index_select index_add index_add_
    index_copy index_copy_ index_fill index_fill_ gather scatter scatter_ scatter_add
    scatter_add_ scatter_reduce scatter_reduce_ masked_scatter masked_scatter_ masked_select
    nonzero take put_ split_with_sizes_copy constant_pad_nd reflection_pad1d reflection_pad2d
    reflection_pad3d replication_pad1d replication_pad2d replication_pad3d
    reflection_pad1d_backward reflection_pad2d_backward replication_pad2d_backward repeat
    repeat_interleave roll flip tril tril_ triu triu_ im2col col2im unfold_backward
    select_backward slice_backward index_select_backward diagonal_backward as_strided_scatter
    slice_scatter select_scatter diagonal_scatter embedding embedding_dense_backward
    _embedding_bag _embedding_bag_forward_only _embedding_bag_backward
    _embedding_bag_dense_backward _embedding_bag_per_sample_weights_backward sort topk
    unique_dim _unique2 unique_consecutive searchsorted bucketize one_hot isin cumsum cumsum_
    cumprod cummax cummin upsample_nearest1d upsample_nearest2d upsample_nearest3d
    upsample_nearest2d_backward upsample_bilinear2d upsample_bilinear2d_backward
    upsample_bicubic2d upsample_linear1d upsample_trilinear3d _upsample_nearest_exact2d
    _upsample_bilinear2d_aa grid_sampler_2d grid_sampler_2d_backward affine_grid_generator
    pixel_shuffle pixel_unshuffle channel_shuffle native_channel_shuffle equal is_nonzero
    is_same_size _has_compatible_shallow_copy_type count_nonzero histc bincount
    _unsafe_index _unsafe_index_put _unsafe_masked_index _unsafe_masked_index_put_accumulate
    index_reduce _chunk_cat rot90 diag_embed block_diag masked_scatter_backward nonzero_static
    _unique kthvalue median nanmedian mode logcumsumexp segment_reduce _segment_reduce_backward
    _pack_padded_sequence _jagged_to_padded_dense_forward _padded_dense_to_jagged_forward
    reflection_pad3d_backward replication_pad1d_backward replication_pad3d_backward
    _upsample_nearest_exact1d _upsample_nearest_exact3d _upsample_nearest_exact2d_backward
    _upsample_bicubic2d_aa _upsample_bilinear2d_aa_backward _upsample_lanczos2d_aa
    _upsample_lanczos2d_aa_backward grid_sampler_3d grid_sampler_3d_backward
    _grid_sampler_2d_cpu_fallback _grid_sampler_2d_cpu_fallback_backward
    """,
    "normalizations, softmax, dropout and losses": """
    native_batch_norm native_batch_norm_backward _native_batch_norm_legit
    _native_batch_norm_legit_no_training _native_batch_norm_legit_functional
    batch_norm_backward cudnn_batch_norm cudnn_batch_norm_backward miopen_batch_norm
    miopen_batch_norm_backward _batch_norm_with_update _batch_norm_no_update
    _batch_norm_with_update_functional native_layer_norm native_layer_norm_backward
    native_group_norm native_group_norm_backward _fused_rms_norm _fused_rms_norm_backward
    _softmax _softmax_backward_data _log_softmax _log_softmax_backward_data _safe_softmax
    _masked_softmax _masked_softmax_backward native_dropout native_dropout_backward
    _fused_dropout _masked_scale nll_loss_forward nll_loss_backward nll_loss2d_forward
    nll_loss2d_backward mse_loss mse_loss_backward l1_loss smooth_l1_loss
    smooth_l1_loss_backward huber_loss huber_loss_backward binary_cross_entropy
    binary_cross_entropy_backward binary_cross_entropy_with_logits kl_div _ctc_loss
    _ctc_loss_backward
    multi_margin_loss multilabel_margin_loss_forward soft_margin_loss soft_margin_loss_backward
    """,
    "pooling": """
    max_pool2d_with_indices max_pool2d_with_indices_backward max_pool3d_with_indices
    max_pool3d_with_indices_backward avg_pool2d avg_pool2d_backward avg_pool3d
    avg_pool3d_backward _adaptive_avg_pool2d _adaptive_avg_pool2d_backward
    _adaptive_avg_pool3d _adaptive_avg_pool3d_backward adaptive_max_pool2d
    adaptive_max_pool2d_backward adaptive_max_pool3d adaptive_max_pool3d_backward
    _pdist_forward max_unpool2d
    fractional_max_pool2d max_unpool3d
    """,
    "elementwise ops and reductions that carry no tag for it": """
    _fused_moving_avg_obs_fq_helper _amp_foreach_non_finite_check_and_unscale_
    _amp_update_scale_ _thnn_fused_lstm_cell _thnn_fused_lstm_cell_backward_impl
    _thnn_fused_gru_cell _thnn_fused_gru_cell_backward linalg_vector_norm
    _weight_norm_interface _weight_norm_interface_backward _transform_bias_rescale_qkv
    floor_divide
    _add_relu hardswish hardswish_backward hardsigmoid_backward hardtanh_backward elu_backward
    leaky_relu_backward softplus_backward mish_backward softshrink_backward hardshrink_backward
    glu glu_backward log_sigmoid_forward log_sigmoid_backward _prelu_kernel
    _prelu_kernel_backward rrelu_with_noise_backward addr complex polar renorm trace dist
    """,
    "random numbers and dropout masks": """
    bernoulli bernoulli_ binomial cauchy cauchy_ exponential exponential_ geometric geometric_
    log_normal log_normal_ multinomial normal normal_ normal_functional poisson rand rand_like
    randint randint_like randn randn_like random random_ randperm uniform uniform_
    _standard_gamma _sample_dirichlet rrelu_ rrelu_with_noise rrelu_with_noise_
    rrelu_with_noise_functional dropout dropout_ alpha_dropout alpha_dropout_ feature_dropout
    feature_dropout_ feature_alpha_dropout feature_alpha_dropout_ _cudnn_init_dropout_state
    _fill_mem_eff_dropout_mask_
    _philox_key_fold_in _philox_key_split _philox_normal_ _philox_uniform_
    """,
    "kernel selection": """
    _fused_sdp_choice
    """,
}

UNCOUNTED_OPS: frozenset[str] = frozenset(
    name for names in _UNCOUNTED_OPS_BY_KIND.values() for name in names.split()
)
"""Packet names (``aten.<name>``) that count 0 by convention (see module docs)."""

UNCOUNTED_PREFIXES = ("_foreach_", "_fused_adam", "_fused_sgd", "_fused_adagrad")
"""Optimizer kernels: elementwise updates, uncounted by convention."""


def is_uncounted(op: OpOverload) -> bool:
    """True for ops that by convention cost no FLOPs (views, copies, elementwise...).

    Tags are read from every overload of the op and of its out-of-place form:
    torch tags them unevenly (``masked_fill.Scalar`` is pointwise,
    ``masked_fill.Tensor`` and ``masked_fill_`` are not).
    """
    if op.namespace == "prim" or op.is_view:
        return True
    if not UNCOUNTED_TAGS.isdisjoint(op.tags):
        return True
    if op.namespace != "aten":
        return False
    names = _name_and_out_of_place_name(op._overloadpacket.__name__)
    if any(name in UNCOUNTED_OPS or name.startswith(UNCOUNTED_PREFIXES) for name in names):
        return True
    return any(not UNCOUNTED_TAGS.isdisjoint(_packet_tags(name)) for name in names)


def _name_and_out_of_place_name(name: str) -> tuple[str, ...]:
    return (name, name[:-1]) if name.endswith("_") else (name,)


def _packet_tags(name: str) -> set[torch.Tag]:
    packet = getattr(aten, name, None)
    if packet is None:
        return set()
    return {tag for overload in packet.overloads() for tag in getattr(packet, overload).tags}
