"""The ops that cost 0 by convention: elementwise, reductions, data movement, randomness.

Only matrix multiplies, convolutions, attention and the other products in
this package are counted; bias adds, elementwise ops, normalizations, softmax
and pooling are bandwidth-bound and count 0, as in ``torch.utils.flop_counter``.
They are listed here so that they never show up as unsupported: an op that
is neither counted nor listed is a blind spot, and is reported as one.
"""

from __future__ import annotations

import torch
from torch._ops import OpOverload

aten = torch.ops.aten
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
    _assert_tensor_metadata _functional_assert_async record_stream _is_all_true _is_any_true
    zero resize resize_as lift empty_permuted _reshape_copy _resize_output shallow_copy_data_
    eye hann_window logspace tril_indices triu_indices unsafe_split unsafe_split_with_sizes
    _convert_weight_to_int4pack _convert_weight_to_int4pack_for_cpu
    _efficientzerotensor
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
    is_same_size _has_same_storage_numel _has_compatible_shallow_copy_type count_nonzero histc
    bincount
    _unsafe_index _unsafe_index_put _unsafe_masked_index _unsafe_masked_index_put_accumulate
    index_reduce embedding_renorm embedding_renorm_ _chunk_cat rot90 diag_embed block_diag
    masked_scatter_backward nonzero_static
    _unique kthvalue median nanmedian mode logcumsumexp segment_reduce _segment_reduce_backward
    _pack_padded_sequence _jagged_to_padded_dense_forward _padded_dense_to_jagged_forward
    reflection_pad3d_backward replication_pad1d_backward replication_pad3d_backward
    _upsample_nearest_exact1d _upsample_nearest_exact3d _upsample_nearest_exact2d_backward
    _upsample_bicubic2d_aa _upsample_bilinear2d_aa_backward _upsample_lanczos2d_aa
    _upsample_lanczos2d_aa_backward grid_sampler_3d grid_sampler_3d_backward
    _grid_sampler_2d_cpu_fallback _grid_sampler_2d_cpu_fallback_backward
    upsample_nearest1d_backward upsample_nearest3d_backward upsample_linear1d_backward
    upsample_bicubic2d_backward upsample_trilinear3d_backward _upsample_nearest_exact1d_backward
    _upsample_nearest_exact3d_backward _upsample_bicubic2d_aa_backward
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
    max_unpool2d
    fractional_max_pool2d max_unpool3d
    """,
    "elementwise ops and reductions that carry no tag for it": """
    _fused_moving_avg_obs_fq_helper _amp_foreach_non_finite_check_and_unscale_
    _amp_update_scale_ _thnn_fused_lstm_cell _thnn_fused_lstm_cell_backward_impl
    _thnn_fused_gru_cell _thnn_fused_gru_cell_backward linalg_vector_norm
    _weight_norm_interface _weight_norm_interface_backward _transform_bias_rescale_qkv
    floor_divide
    _add_relu leaky_relu hardswish hardswish_backward hardsigmoid_backward hardtanh_backward
    elu_backward
    leaky_relu_backward softplus_backward mish_backward softshrink_backward hardshrink_backward
    glu glu_backward log_sigmoid_forward log_sigmoid_backward _prelu_kernel
    _prelu_kernel_backward rrelu_with_noise_backward complex polar renorm trace dist
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
    "kernel selection and checks": """
    _fused_sdp_choice _linalg_check_errors
    """,
    "unpacking a factorization": """
    lu_unpack
    """,
}

UNCOUNTED_OPS: frozenset[str] = frozenset(
    name for names in _UNCOUNTED_OPS_BY_KIND.values() for name in names.split()
)
"""Packet names (``aten.<name>``) that count 0 by convention (see module docs)."""

UNCOUNTED_ELSEWHERE: frozenset[str] = frozenset(
    {
        # torchvision: interpolation and pooling of regions, box suppression
        "torchvision::roi_align",
        "torchvision::_roi_align_backward",
        "torchvision::roi_pool",
        "torchvision::_roi_pool_backward",
        "torchvision::ps_roi_align",
        "torchvision::_ps_roi_align_backward",
        "torchvision::ps_roi_pool",
        "torchvision::_ps_roi_pool_backward",
        "torchvision::nms",
        # FSDP2's copies into and out of its communication buffers
        "fsdp::all_gather_copy_in",
        "fsdp::split_with_sizes_copy",
        "fsdp::chunk_cat",
        # profiler ranges (record_function), and a collective's bookkeeping
        "profiler::_record_function_enter",
        "profiler::_record_function_enter_new",
        "profiler::_record_function_exit",
        "_c10d_functional::wait_tensor",
        "_c10d_functional::_wrap_tensor_autograd",
        "c10d::check_for_nan",
    }
)
"""Ops of other namespaces that count 0, by qualified name: no other namespace is assumed free."""

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
        return op._overloadpacket._qualified_op_name in UNCOUNTED_ELSEWHERE
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
