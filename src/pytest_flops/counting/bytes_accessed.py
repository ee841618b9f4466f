"""Bytes accessed: what one op reads from and writes to memory, from shapes and dtypes.

The rules, for every op the counter runs (communication is counted apart):

* An op reads each distinct input tensor once, and writes each output.
* A tensor's bytes are its elements times its element size, where a
  dimension of stride 0 (a broadcast, an ``expand``) counts once.
* Views and metadata ops move nothing: an op whose every output aliases an
  input (``t``, ``view``, ``expand``, ``detach``...) and the allocations
  (``empty*``) whose memory nothing has touched yet.
* An in-place op reads its inputs and writes ``self``; an ``out=`` tensor is
  written, not read.
* A factory shaped like a tensor (``ones_like``, ``new_zeros``...) writes its
  output and reads nothing: it takes only the tensor's shape, dtype and device.

Sizes come from shapes and dtypes only, so meta and fake tensors count what
the device would move. It is eager, unfused traffic: each op goes to memory
and back, as an uncompiled step does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import torch
from torch import Tensor
from torch._ops import OpOverload

__all__ = ["GENERIC", "ByteRule", "byte_rule", "bytes_accessed", "plain_bytes", "tensor_bytes"]

_aten = torch.ops.aten
_STRIDED = torch.strided

# Ops that move nothing though their schema does not say they alias: the
# allocations (a zero tensor of forward-mode AD has no memory at all), the reshape
# of a contiguous tensor that autograd hides, the splits into views that RNN kernels
# use, and the comparisons of metadata.
_FREE_PACKETS = frozenset(
    {
        _aten.empty,
        _aten.empty_like,
        _aten.empty_strided,
        _aten.empty_permuted,
        _aten.new_empty,
        _aten.new_empty_strided,
        _aten._efficientzerotensor,
        _aten._unsafe_view,
        _aten.unsafe_split,
        _aten.unsafe_split_with_sizes,
        _aten.is_same_size,
        _aten._has_same_storage_numel,
        _aten._has_compatible_shallow_copy_type,
        _aten.detach,
        # a jagged tensor's parts, handed back as they are stored
        _aten._nested_get_offsets,
        _aten._nested_get_lengths,
        _aten._nested_get_ragged_idx,
        _aten._nested_get_min_seqlen,
        _aten._nested_get_max_seqlen,
        _aten._nested_get_jagged_dummy,
        # in-place metadata: they change a tensor's shape or storage, not its data
        _aten.detach_,
        _aten.resize_,
        _aten.resize_as_,
        _aten.as_strided_,
        _aten.t_,
        _aten.transpose_,
        _aten.squeeze_,
        _aten.unsqueeze_,
    }
)

# Metadata (prim.device...) and the wrappers around collectives, whose traffic is
# communication, counted apart.
_FREE_NAMESPACES = frozenset({"prim", "_c10d_functional", "_c10d_functional_autograd", "c10d"})

# In-place ops that overwrite ``self`` without reading it: copies, fills, and the
# random fills (dropout's mask is ``bernoulli_``), whose other arguments are read.
_OVERWRITE_PACKETS = frozenset(
    {
        _aten.copy_,
        _aten.fill_,
        _aten.zero_,
        _aten.bernoulli_,
        _aten.uniform_,
        _aten.normal_,
        _aten.random_,
        _aten.exponential_,
        _aten.geometric_,
        _aten.cauchy_,
        _aten.log_normal_,
    }
)

# Factories that take their shape, dtype and device from ``self`` (argument 0) and
# never read its data: they write their output only.
_SHAPED_LIKE_SELF = frozenset(
    {
        _aten.zeros_like,
        _aten.ones_like,
        _aten.full_like,
        _aten.rand_like,
        _aten.randn_like,
        _aten.randint_like,
        _aten.new_zeros,
        _aten.new_ones,
        _aten.new_full,
    }
)

# Outputs whose size is the backend's choice, left out so that an op moves the same
# bytes on every device (and on meta): a fused RNN kernel's training workspace (read
# back by its backward, left empty by the meta kernel), batch norm's saved
# statistics (empty on CPU in eval, not on meta; cuDNN's come with a reserve), and
# an embedding bag's bookkeeping (offset2bag, bag_size, max_indices: each kernel
# sizes them for its own backward).
_BACKEND_RETURNS = {
    _aten._embedding_bag: frozenset({1, 2, 3}),
    _aten._embedding_bag_forward_only: frozenset({1, 2, 3}),
    _aten.mkldnn_rnn_layer: frozenset({3}),
    _aten._cudnn_rnn: frozenset({3}),
    _aten.native_batch_norm: frozenset({1, 2}),
    _aten._native_batch_norm_legit: frozenset({1, 2}),
    _aten._native_batch_norm_legit_no_training: frozenset({1, 2}),
    _aten.cudnn_batch_norm: frozenset({1, 2, 3}),
    _aten.miopen_batch_norm: frozenset({1, 2}),
}
_WORKSPACE_ARGS = frozenset({"workspace", "reserve"})
# Arguments left out for the same reason, by position in an overload's schema: batch
# norm's saved statistics (and cuDNN's reserve), an embedding bag's bookkeeping, read
# back by their backward.
_BACKEND_ARGS = {
    _aten._embedding_bag_backward.default: frozenset({3, 4, 5}),
    _aten._embedding_bag_dense_backward.default: frozenset({2, 3, 4}),
    _aten._embedding_bag_sparse_backward.default: frozenset({3, 4}),
    _aten._embedding_bag_per_sample_weights_backward.default: frozenset({4}),
    _aten.native_batch_norm_backward.default: frozenset({5, 6}),
    _aten.cudnn_batch_norm_backward.default: frozenset({5, 6, 8}),
    _aten.miopen_batch_norm_backward.default: frozenset({5, 6}),
}

# Arguments that an op writes only when another argument is set, and only reads
# otherwise, whatever its schema says. Overload -> (positions of the arguments, the
# position of a bool or the name of an optional tensor that sets them).
# Batch norm writes its running statistics in training.
_BATCH_NORM_RUNNING_STATS = (frozenset({3, 4}), 5)
_WRITTEN_WHEN: dict[OpOverload, tuple[frozenset[int], int | str]] = {
    _aten.native_batch_norm.default: _BATCH_NORM_RUNNING_STATS,
    _aten._native_batch_norm_legit.default: _BATCH_NORM_RUNNING_STATS,
    _aten.cudnn_batch_norm.default: _BATCH_NORM_RUNNING_STATS,
    _aten.miopen_batch_norm.default: _BATCH_NORM_RUNNING_STATS,
}
# A fused optimizer step stores its gradients back only when it unscales them by
# grad_scale (mixed precision's scaler); otherwise it reads them.
_WRITTEN_WHEN.update(
    (overload, (frozenset({1}), "grad_scale"))
    for packet in (
        _aten._fused_sgd_,
        _aten._fused_adam_,
        _aten._fused_adamw_,
        _aten._fused_adagrad_,
    )
    for overload in map(packet.__getattr__, packet.overloads())
)
# Arguments that a schema marks written and the kernel only reads: fused Adagrad's
# step counts, which the optimizer increments before the step.
_ONLY_READ = {_aten._fused_adagrad_.default: frozenset({3})}


@dataclass(frozen=True, kw_only=True)
class ByteRule:
    """What an op's schema says about its memory traffic, worked out once per op."""

    free: bool = False  # a view, metadata or an allocation: no traffic
    written_args: frozenset[int] = frozenset()  # positions of mutated arguments (read, written)
    out_names: frozenset[str] = frozenset()  # out= arguments (written, not read)
    reads_written: bool = True  # False: the mutated arguments are overwritten, not read
    fresh_returns: tuple[bool, ...] | None = None  # per return: new memory (None: all are)
    skipped_args: frozenset[int] = frozenset()  # positions of workspaces: not counted
    # positions of arguments written only when the argument at a position (a bool) or of
    # a name (an optional tensor) is set, and otherwise only read
    written_when: tuple[frozenset[int], int | str] | None = None
    # position of a gradient op's output_mask: a return it leaves False is not computed
    # (None on a CPU, a tensor on meta), so it is not written on any device
    output_mask: int | None = None

    @property
    def plain(self) -> bool:
        """Whether the op reads every input and writes every output, as most ops do."""
        return not (
            self.free
            or self.written_args
            or self.out_names
            or self.skipped_args
            or self.output_mask is not None
            or (self.fresh_returns is not None and not all(self.fresh_returns))
        )


GENERIC = ByteRule()
"""Reads the inputs, writes the outputs: the rule of an op with no schema (a higher-order
operator), and the general path of every :attr:`~ByteRule.plain` one."""


@cache  # an op's schema never changes, and ops live as long as torch
def byte_rule(op: OpOverload) -> ByteRule:
    """The traffic rule of ``op``, read from its schema."""
    if op._overloadpacket in _FREE_PACKETS or op.namespace in _FREE_NAMESPACES:
        return ByteRule(free=True)
    schema = op._schema
    written = frozenset(
        i
        for i, arg in enumerate(schema.arguments)
        if arg.alias_info is not None and arg.alias_info.is_write and not arg.kwarg_only
    )
    out_names = frozenset(
        arg.name
        for arg in schema.arguments
        if arg.alias_info is not None and arg.alias_info.is_write and arg.kwarg_only
    )
    written_when = _WRITTEN_WHEN.get(op)
    if written_when is not None:
        written |= written_when[0]
    written -= _ONLY_READ.get(op, frozenset())
    backend = _BACKEND_RETURNS.get(op._overloadpacket, frozenset())
    fresh = tuple(
        ret.alias_info is None and i not in backend for i, ret in enumerate(schema.returns)
    )
    if schema.returns and not any(fresh) and not written and not out_names:
        return ByteRule(free=True)  # every output is a view of an input
    return ByteRule(
        written_args=written,
        out_names=out_names,
        reads_written=op._overloadpacket not in _OVERWRITE_PACKETS,
        fresh_returns=fresh,
        skipped_args=frozenset(
            i for i, arg in enumerate(schema.arguments) if arg.name in _WORKSPACE_ARGS
        )
        | _BACKEND_ARGS.get(op, frozenset())
        | (frozenset({0}) if op._overloadpacket in _SHAPED_LIKE_SELF else frozenset()),
        written_when=written_when,
        output_mask=next(
            (i for i, arg in enumerate(schema.arguments) if arg.name == "output_mask"), None
        ),
    )


def plain_bytes(args: Sequence[Any], kwargs: dict[str, Any], out: Any) -> int:
    """The bytes one call of an op with a :attr:`ByteRule.plain` rule reads and writes:
    each distinct tensor among its arguments and outputs once."""
    # Most calls a counter sees come here with a few tensor arguments and one output:
    # their ids are kept in a list (a set costs more for so few). Lists of tensors,
    # keyword arguments and other outputs take the general path.
    if kwargs or not isinstance(out, Tensor):
        return bytes_accessed(GENERIC, args, kwargs, out)
    seen: list[int] = []
    total = 0
    for arg in args:
        if isinstance(arg, Tensor):
            if id(arg) not in seen:
                seen.append(id(arg))
                total += tensor_bytes(arg)
        elif isinstance(arg, (list, tuple)):  # dimensions, sizes; or tensors
            for item in arg:
                if isinstance(item, Tensor):
                    return bytes_accessed(GENERIC, args, kwargs, out)
    return total if id(out) in seen else total + tensor_bytes(out)


def bytes_accessed(rule: ByteRule, args: Sequence[Any], kwargs: dict[str, Any], out: Any) -> int:
    """The bytes one call of an op with this ``rule`` reads and writes."""
    if rule.free:
        return 0
    seen: set[int] = set()
    total = 0
    written = rule.written_args
    if rule.written_when is not None:
        conditional, condition = rule.written_when
        if not (
            args[condition] if isinstance(condition, int) else kwargs.get(condition) is not None
        ):
            written -= conditional
    for i in written:  # first, so that a tensor also passed as input counts once
        for tensor in _tensors(args[i]) if i < len(args) else ():
            seen.add(id(tensor))
            total += (2 if rule.reads_written else 1) * tensor_bytes(tensor)
    skipped = rule.skipped_args
    for i, arg in enumerate(args):
        if isinstance(arg, Tensor):
            if id(arg) not in seen and i not in written and i not in skipped:
                seen.add(id(arg))
                total += tensor_bytes(arg)
        elif isinstance(arg, (list, tuple)) and i not in written and i not in skipped:
            total += _unseen_bytes(arg, seen)
    for name, arg in kwargs.items():
        if name in rule.out_names:
            for tensor in _tensors(arg):
                total += tensor_bytes(tensor)  # written, even where it is also read
        else:
            total += _unseen_bytes(_tensors(arg), seen)
    fresh = rule.fresh_returns
    if isinstance(out, Tensor):  # the common case: one output
        if (fresh is None or (fresh and fresh[0])) and id(out) not in seen:
            total += tensor_bytes(out)
        return total
    mask = None if rule.output_mask is None else _output_mask(rule.output_mask, args, kwargs)
    for j, output in enumerate(out if isinstance(out, tuple) else (out,)):
        if fresh is not None and (j >= len(fresh) or not fresh[j]):
            continue  # aliases a written argument or is a view: counted there or free
        if mask is not None and j < len(mask) and not mask[j]:
            continue  # not computed
        # an op that hands an input back moves it once
        total += _unseen_bytes(_tensors(output), seen)
    return total


def _output_mask(position: int, args: Sequence[Any], kwargs: dict[str, Any]) -> Sequence[bool]:
    return args[position] if position < len(args) else kwargs.get("output_mask", ())


def _unseen_bytes(values: Sequence[Any], seen: set[int]) -> int:
    """The bytes of the tensors among ``values`` not in ``seen`` (by id), added to it."""
    total = 0
    for value in values:
        if isinstance(value, Tensor) and id(value) not in seen:
            seen.add(id(value))
            total += tensor_bytes(value)
    return total


def tensor_bytes(tensor: torch.Tensor) -> int:
    """Elements times element size, a dimension of stride 0 counted once; a nested
    tensor's packed values; 0 for a sparse tensor (no rule yet, so no guess)."""
    layout = tensor.layout
    if layout is not _STRIDED:
        return tensor.nbytes if layout is torch.jagged else 0
    # nested (strided layout): its packed values, also when not contiguous
    if tensor.is_contiguous() or tensor.is_nested or 0 not in tensor.stride():
        return tensor.nbytes
    elements = 1
    for size, stride in zip(tensor.shape, tensor.stride(), strict=True):
        if stride != 0:
            elements *= size
    return int(elements) * tensor.element_size()


def _tensors(value: Any) -> Sequence[torch.Tensor]:
    if isinstance(value, Tensor):
        return (value,)
    if isinstance(value, (list, tuple)):
        return [item for item in value if isinstance(item, Tensor)]
    return ()
