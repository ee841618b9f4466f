"""The op-formula table: which aten ops cost FLOPs, and how many.

Each formula is a small pure function of shapes, registered on one or more
``torch.ops.aten.X`` packets with :func:`register_flop_formula`. Tensors in the
op's arguments and output arrive as shape tuples (lists of tensors as lists of
shapes) and the output as ``out_shape=``; a formula registered with
``get_raw=True`` gets the real arguments and ``out_val=`` instead.

Conventions, as in ``torch.utils.flop_counter``:

* a multiply-add is 2 FLOPs, so ``mm`` of (m, k) @ (k, n) is ``2*m*k*n``;
* only matrix multiplies, convolutions and attention are counted; bias adds,
  elementwise ops, normalizations, softmax and pooling are bandwidth-bound and
  count 0. They are listed in :data:`UNCOUNTED_OPS` so they never show up as
  unsupported.

This table is ours on purpose: a snapshot must not change because torch's own
registry changed between releases.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from math import prod
from typing import Any, TypeAlias

import torch
from torch._ops import OpOverload, OpOverloadPacket

aten = torch.ops.aten

Shape: TypeAlias = Sequence[int]
FlopFormula: TypeAlias = Callable[..., int]

FLOP_FORMULAS: dict[OpOverloadPacket, FlopFormula] = {}
"""Registered formulas by op packet. Formulas here take ``(args, kwargs, out)``."""


def register_flop_formula(
    targets: OpOverloadPacket | Iterable[OpOverloadPacket], *, get_raw: bool = False
) -> Callable[[FlopFormula], FlopFormula]:
    """Register ``formula`` for ``targets``; later registrations win.

    Use it for your own custom ops too::

        @register_flop_formula(torch.ops.mylib.fused_mlp)
        def fused_mlp_flop(x_shape, w1_shape, w2_shape, *, out_shape):
            ...
    """
    packets = [targets] if isinstance(targets, OpOverloadPacket) else list(targets)

    def register(formula: FlopFormula) -> FlopFormula:
        wrapped = as_table_formula(formula, get_raw=get_raw)
        for packet in packets:
            if not isinstance(packet, OpOverloadPacket):
                raise TypeError(f"register_flop_formula takes op packets, got {packet!r}")
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


@register_flop_formula(aten.mm)
def mm_flop(a_shape: Shape, b_shape: Shape, *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
    m, k = a_shape
    k2, n = b_shape
    assert k == k2, f"mm inner dims differ: {a_shape} @ {b_shape}"
    return 2 * m * k * n


@register_flop_formula(aten.addmm)
def addmm_flop(_bias: Shape, a_shape: Shape, b_shape: Shape, *args: Any, **kwargs: Any) -> int:
    return mm_flop(a_shape, b_shape)


@register_flop_formula(aten.bmm)
def bmm_flop(a_shape: Shape, b_shape: Shape, *args: Any, **kwargs: Any) -> int:
    b, m, k = a_shape
    b2, k2, n = b_shape
    assert b == b2 and k == k2, f"bmm shapes differ: {a_shape} @ {b_shape}"
    return 2 * b * m * k * n


@register_flop_formula([aten.baddbmm, aten.addbmm])
def baddbmm_flop(_bias: Shape, a_shape: Shape, b_shape: Shape, *args: Any, **kwargs: Any) -> int:
    return bmm_flop(a_shape, b_shape)


@register_flop_formula(aten.mv)
def mv_flop(a_shape: Shape, v_shape: Shape, *args: Any, **kwargs: Any) -> int:
    m, n = a_shape
    return 2 * m * n


@register_flop_formula(aten.addmv)
def addmv_flop(_bias: Shape, a_shape: Shape, v_shape: Shape, *args: Any, **kwargs: Any) -> int:
    return mv_flop(a_shape, v_shape)


@register_flop_formula([aten.dot, aten.vdot])
def dot_flop(a_shape: Shape, b_shape: Shape, *args: Any, **kwargs: Any) -> int:
    return 2 * a_shape[0]


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


@register_flop_formula(
    [aten.convolution, aten._convolution, aten.cudnn_convolution, aten._slow_conv2d_forward]
)
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


# -- ops that cost nothing by convention ------------------------------------------

UNCOUNTED_TAGS = frozenset(
    getattr(torch.Tag, name)
    for name in ("pointwise", "reduction", "view_copy", "inplace_view", "nondeterministic_seeded")
    if hasattr(torch.Tag, name)  # older torch releases know fewer tags
)
"""Ops with any of these tags are elementwise, reductions or data movement."""

UNCOUNTED_OPS: frozenset[str] = frozenset(
    {
        # copies, fills, factories and layout changes
        "_to_copy", "_unsafe_view", "alias", "clone", "contiguous", "copy", "copy_",
        "empty", "empty_like", "empty_strided", "fill", "fill_", "full", "full_like",
        "lift_fresh", "lift_fresh_copy", "new_empty", "new_empty_strided", "new_full",
        "new_ones", "new_zeros", "ones", "ones_like", "resize_", "set_", "zero_",
        "zeros", "zeros_like", "arange", "linspace", "scalar_tensor", "_local_scalar_dense",
        "_pin_memory", "detach_", "clamp_min_", "_assert_async", "_assert_tensor_metadata",
        "_functional_assert_async", "record_stream", "_nested_tensor_from_mask",
        "_nested_tensor_from_mask_left_aligned", "_nested_from_padded", "to_padded_tensor",
        "_nested_view_from_buffer", "_nested_tensor_size", "_nested_tensor_strides",
        "_nested_tensor_storage_offsets", "_nested_get_values", "_nested_view_from_jagged",
        "_nested_get_offsets", "_nested_get_lengths", "_nested_get_jagged_dummy",
        "_nested_get_max_seqlen", "_nested_get_min_seqlen", "_nested_get_ragged_idx",
        "_nested_compute_contiguous_strides_offsets",
        # indexing, gathering, joining and padding
        "cat", "stack", "index", "index_put", "index_put_", "_index_put_impl_",
        "index_select", "index_add", "index_add_", "index_copy", "index_copy_",
        "index_fill", "index_fill_", "gather", "scatter", "scatter_", "scatter_add",
        "scatter_add_", "scatter_reduce", "scatter_reduce_", "masked_scatter",
        "masked_scatter_", "masked_select", "nonzero", "take", "put_", "split_with_sizes_copy",
        "constant_pad_nd", "reflection_pad1d", "reflection_pad2d", "reflection_pad3d",
        "replication_pad1d", "replication_pad2d", "replication_pad3d",
        "reflection_pad1d_backward", "reflection_pad2d_backward", "replication_pad2d_backward",
        "repeat", "repeat_interleave", "roll", "flip", "tril", "tril_", "triu", "triu_",
        "im2col", "col2im", "unfold_backward", "select_backward", "slice_backward",
        "index_select_backward", "diagonal_backward", "as_strided_scatter", "slice_scatter",
        "select_scatter", "diagonal_scatter", "embedding", "embedding_dense_backward",
        "_embedding_bag", "_embedding_bag_forward_only", "_embedding_bag_backward",
        "_embedding_bag_dense_backward", "_embedding_bag_per_sample_weights_backward",
        "sort", "topk", "unique_dim", "_unique2", "unique_consecutive", "searchsorted",
        "bucketize", "one_hot", "cumsum", "cumsum_", "cumprod", "cummax", "cummin",
        "upsample_nearest1d", "upsample_nearest2d", "upsample_nearest3d",
        "upsample_nearest2d_backward", "upsample_bilinear2d", "upsample_bilinear2d_backward",
        "upsample_bicubic2d", "upsample_linear1d", "upsample_trilinear3d",
        "_upsample_nearest_exact2d", "_upsample_bilinear2d_aa", "grid_sampler_2d",
        "grid_sampler_2d_backward", "affine_grid_generator", "pixel_shuffle", "pixel_unshuffle",
        "channel_shuffle", "native_channel_shuffle", "equal", "is_nonzero", "is_same_size",
        "_has_compatible_shallow_copy_type", "count_nonzero",
        # normalizations, softmax, dropout and losses
        "native_batch_norm", "native_batch_norm_backward", "_native_batch_norm_legit",
        "_native_batch_norm_legit_no_training", "_native_batch_norm_legit_functional",
        "batch_norm_backward", "cudnn_batch_norm", "cudnn_batch_norm_backward",
        "miopen_batch_norm", "miopen_batch_norm_backward", "_batch_norm_with_update",
        "_batch_norm_no_update", "_batch_norm_with_update_functional",
        "native_layer_norm", "native_layer_norm_backward", "native_group_norm",
        "native_group_norm_backward", "_fused_rms_norm", "_fused_rms_norm_backward",
        "_softmax", "_softmax_backward_data", "_log_softmax", "_log_softmax_backward_data",
        "_safe_softmax", "_masked_softmax", "_masked_softmax_backward", "native_dropout",
        "native_dropout_backward", "_fused_dropout", "_masked_scale",
        "nll_loss_forward", "nll_loss_backward", "nll_loss2d_forward", "nll_loss2d_backward",
        "mse_loss", "mse_loss_backward", "l1_loss", "smooth_l1_loss", "smooth_l1_loss_backward",
        "huber_loss", "huber_loss_backward", "binary_cross_entropy",
        "binary_cross_entropy_backward", "binary_cross_entropy_with_logits", "kl_div",
        "_ctc_loss", "_ctc_loss_backward",
        # pooling
        "max_pool2d_with_indices", "max_pool2d_with_indices_backward",
        "max_pool3d_with_indices", "max_pool3d_with_indices_backward", "avg_pool2d",
        "avg_pool2d_backward", "avg_pool3d", "avg_pool3d_backward", "_adaptive_avg_pool2d",
        "_adaptive_avg_pool2d_backward", "_adaptive_avg_pool3d", "_adaptive_avg_pool3d_backward",
        "adaptive_max_pool2d", "adaptive_max_pool2d_backward", "adaptive_max_pool3d",
        "adaptive_max_pool3d_backward", "_pdist_forward", "max_unpool2d",
        # elementwise ops that carry no pointwise tag
        "_fused_moving_avg_obs_fq_helper", "_amp_foreach_non_finite_check_and_unscale_",
        "_amp_update_scale_", "_thnn_fused_lstm_cell", "_thnn_fused_lstm_cell_backward_impl",
        "_thnn_fused_gru_cell", "_thnn_fused_gru_cell_backward", "linalg_vector_norm",
        "_weight_norm_interface", "_weight_norm_interface_backward",
    }
)
"""Packet names (``aten.<name>``) that count 0 by convention (see module docs)."""

UNCOUNTED_PREFIXES = ("_foreach_", "_fused_adam", "_fused_sgd", "_fused_adagrad")
"""Optimizer kernels: elementwise updates, uncounted by convention."""


def is_uncounted(op: OpOverload) -> bool:
    """True for ops that by convention cost no FLOPs (views, copies, elementwise...)."""
    if op.namespace == "prim" or op.is_view:
        return True
    if not UNCOUNTED_TAGS.isdisjoint(op.tags):
        return True
    if op.namespace != "aten":
        return False
    name = op._overloadpacket.__name__
    return name in UNCOUNTED_OPS or name.startswith(UNCOUNTED_PREFIXES)
