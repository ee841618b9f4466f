"""The dispatch mode of a stand-in count that gives kept tensors their real values.

Every op whose tensors are all kept (small integer and bool tensors) runs for
real, on the CPU; an op that mixes kept tensors with stand-ins gives a
stand-in; indices picked from stand-ins follow the balanced routing
convention; an op that needs a stand-in's values raises
:class:`ValuesNeededError` naming the op and the module.

A small floating-point tensor made on the meta device of meta stand-ins (a
mask of ones, an LSTM's zero state) is a stand-in, as its device says, that
*shadows* its real values: an op whose stand-ins all shadow values also runs
for real on them, and its outputs shadow (or, integer and bool ones, keep)
the results. So a mask of ones made on meta answers ``.all()`` and
``.item()``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch._subclasses.fake_tensor import unset_fake_temporarily
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten, tree_leaves, tree_map_only, tree_unflatten
from torch.utils.weak import WeakTensorKeyDictionary

from pytest_flops.counting.balanced_routing import BALANCED_ROUTING, INDEX_OUTPUTS, balanced_output
from pytest_flops.counting.stand_ins import (
    KEPT_NUMEL,
    CountFakeMode,
    StandInLeakError,
    StandIns,
    leak_message,
)

aten = torch.ops.aten

STALE_KEPT = (
    "kept values: an in-place write of stand-in data into a kept tensor left that tensor's "
    "values as they were"
)

_NONE = object()  # no values

_INDEXING = frozenset({aten.index.Tensor, aten.index_put.default, aten.index_put_.default})


class ValuesNeededError(RuntimeError):
    """A call counted on stand-ins needed values that its stand-ins do not have."""


class KeepValues(TorchDispatchMode):
    """Runs ops on kept tensors for real, and mixes kept tensors into stand-in ops.

    It sits below the counter, which sees every op first, as the user wrote it.
    ``where`` names the module running now, for errors.
    """

    def __init__(self, stand_ins: StandIns, where: Callable[[], str | None]) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.stand_ins = stand_ins
        self.where = where
        self.shadows = WeakTensorKeyDictionary()  # stand-in -> its real values

    def __torch_dispatch__(
        self,
        func: torch._ops.OpOverload,
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        kwargs = kwargs or {}
        tensors = _tensors_in((*args, *kwargs.values()))
        for tensor in tensors:
            fake_mode = getattr(tensor, "fake_mode", None)
            if isinstance(fake_mode, CountFakeMode) and fake_mode is not self.stand_ins.fake_mode:
                raise StandInLeakError(leak_message(func))
        is_stand_in = self.stand_ins.is_stand_in
        stand_ins = [tensor for tensor in tensors if is_stand_in(tensor)]
        if not stand_ins:
            if not tensors:
                return self._factory(func, args, kwargs)
            return self._kept(func, args, kwargs)
        if func is aten._to_copy.default and not self.stand_ins.fake_mode:
            kwargs = {**kwargs, "device": torch.device("meta")}  # .to(cpu) keeps a stand-in
        if all(tensor in self.shadows for tensor in stand_ins):
            values = self._values(func, args, kwargs)
            if values is not _NONE:
                return self._shadowing(
                    func, args, kwargs, values, mixed=len(stand_ins) < len(tensors)
                )
        if self.shadows:
            self._forget(_written_tensors(func, args, kwargs))
        if len(stand_ins) < len(tensors):
            return self._mixed(func, args, kwargs)
        out = self._run(func, args, kwargs)
        if func in INDEX_OUTPUTS:
            out = self._balanced(func, args, kwargs, out)
        return out

    def _run(self, func: torch._ops.OpOverload, args: Any, kwargs: dict[str, Any]) -> Any:
        try:
            return func(*args, **kwargs)
        except Exception as error:
            if func is aten._local_scalar_dense.default or _data_dependent(func):
                raise ValuesNeededError(
                    _values_message(func, self.stand_ins.device, self.where())
                ) from error
            raise

    def _values(self, func: torch._ops.OpOverload, args: Any, kwargs: dict[str, Any]) -> Any:
        """``func`` run for real on the values its stand-ins shadow; ``_NONE`` where it
        cannot run so."""
        real_args, real_kwargs = tree_map_only(
            torch.Tensor, lambda t: self.shadows.get(t, t), (args, kwargs)
        )
        if real_kwargs.get("device") is not None:
            real_kwargs = {**real_kwargs, "device": torch.device("cpu")}
        try:
            with _real(self.stand_ins):
                return func(*real_args, **real_kwargs)
        except Exception:  # the op goes on as on any stand-in: values unknown
            return _NONE

    def _forget(self, written: list[torch.Tensor]) -> None:
        """Drops the values that tensors sharing memory with ``written`` shadowed: it is
        written with values no one knows."""
        storages = {tensor.untyped_storage()._cdata for tensor in written}
        for stand_in in [t for t in self.shadows if t.untyped_storage()._cdata in storages]:
            del self.shadows[stand_in]

    def _shadowing(
        self,
        func: torch._ops.OpOverload,
        args: Any,
        kwargs: dict[str, Any],
        values: Any,
        *,
        mixed: bool,
    ) -> Any:
        """The outputs of ``func`` on stand-ins whose values are known: floating-point
        stand-ins that shadow ``values``, and kept integer and bool ones."""
        try:
            out = (
                self._mixed(func, args, kwargs, kept_written=True)
                if mixed
                else func(*args, **kwargs)
            )
        except Exception:
            if not (func is aten._local_scalar_dense.default or _data_dependent(func)):
                raise
            out = tree_map_only(torch.Tensor, self.stand_ins.stand_in, values)  # shapes, strides
        leaves, spec = tree_flatten(out)
        for position, (leaf, value) in enumerate(zip(leaves, tree_leaves(values), strict=True)):
            if not isinstance(value, torch.Tensor) or value.numel() > KEPT_NUMEL:
                leaves[position] = leaf if isinstance(leaf, torch.Tensor) else value
            elif value.is_floating_point() or value.is_complex():
                self.shadows[leaf] = value
            else:
                leaves[position] = value
        return tree_unflatten(leaves, spec)

    def _mixed(
        self,
        func: torch._ops.OpOverload,
        args: Any,
        kwargs: dict[str, Any],
        *,
        kept_written: bool = False,
    ) -> Any:
        """An op on stand-ins and kept tensors: the kept ones join as stand-ins. With
        ``kept_written``, kept tensors it writes were written for real already."""
        replaced: dict[int, torch.Tensor] = {}

        def stand_in(tensor: torch.Tensor) -> torch.Tensor:
            if self.stand_ins.is_stand_in(tensor):
                return tensor
            if id(tensor) not in replaced:
                replaced[id(tensor)] = self.stand_ins.stand_in(tensor)
            return replaced[id(tensor)]

        written = _written_tensors(func, args, kwargs)
        if func in _INDEXING and len(args) > 1:
            # a kept bool mask selects a known number of rows: its nonzero indices
            with _real(self.stand_ins):
                args = (args[0], _integer_indices(args[1], self.stand_ins.is_stand_in), *args[2:])
        out = self._run(func, *tree_map_only(torch.Tensor, stand_in, (args, kwargs)))
        written = [t for t in written if id(t) in replaced]
        if not written:
            return out
        # A kept tensor written in place cannot become a stand-in: it keeps its values,
        # and the call gets it back where the op returns what it wrote.
        if not kept_written:
            self.stand_ins.notes.add(STALE_KEPT)
        originals = {id(replaced[id(t)]): t for t in written}
        return tree_map_only(torch.Tensor, lambda t: originals.get(id(t), t), out)

    def _kept(self, func: torch._ops.OpOverload, args: Any, kwargs: dict[str, Any]) -> Any:
        """An op on kept tensors only runs for real, on the CPU. Moving kept values to the
        meta device keeps them (meta is where the call thinks its tensors are); moving
        them to another device of fake stand-ins gives stand-ins on it."""
        device = kwargs.get("device")
        if device is not None and torch.device(device).type != "cpu":
            if self.stand_ins.fake_mode is not None:
                return self._mixed(func, args, kwargs)  # the kept tensors join as stand-ins
            kwargs = {**kwargs, "device": torch.device("cpu")}
        try:
            with _real(self.stand_ins):
                return _bounded(func(*args, **kwargs), self.stand_ins)
        except NotImplementedError:
            # a dtype the CPU kernel lacks (histc of ints, which a GPU takes): no values
            return self._mixed(
                func, tree_map_only(torch.Tensor, self.stand_ins.stand_in, args), kwargs
            )

    def _factory(self, func: torch._ops.OpOverload, args: Any, kwargs: dict[str, Any]) -> Any:
        """An op with no tensor inputs: real where it makes a small tensor on the CPU (or
        on the meta device of meta stand-ins: positions from ``arange``, a mask of ones),
        else a stand-in (a large buffer, or a tensor on another device)."""
        device = kwargs.get("device")
        target = "cpu" if device is None else torch.device(device).type
        takes_device = any(argument.name == "device" for argument in func._schema.arguments)
        meta_stand_ins = self.stand_ins.fake_mode is None
        if not takes_device or target not in ("cpu", "meta" if meta_stand_ins else "cpu"):
            return func(*args, **kwargs)
        probe = func(*args, **{**kwargs, "device": torch.device("meta")})
        # A float tensor made on the stand-ins' own device (an LSTM's zero state) goes
        # into the stand-ins' math: it stays one of them, as its device says.
        made = [t for t in tree_leaves(probe) if isinstance(t, torch.Tensor)]
        if not all(t.numel() <= KEPT_NUMEL for t in made):
            return probe if meta_stand_ins else func(*args, **kwargs)
        with _real(self.stand_ins):
            real = func(*args, **{**kwargs, "device": torch.device("cpu")})
        if target == "cpu" or not any(t.is_floating_point() or t.is_complex() for t in made):
            return real
        return self._shadowing(func, args, kwargs, real, mixed=False)

    def _balanced(
        self, func: torch._ops.OpOverload, args: Any, kwargs: dict[str, Any], out: Any
    ) -> Any:
        """The index outputs of ``func``, given balanced values (the routing convention)."""
        indices = out[1] if isinstance(out, tuple) else out
        if not self.stand_ins.kept_device(indices) or indices.numel() > KEPT_NUMEL:
            return out
        with _real(self.stand_ins):
            balanced = balanced_output(func, args, kwargs, out)
        self.stand_ins.notes.add(BALANCED_ROUTING)
        return balanced


def _values_message(func: torch._ops.OpOverload, device: str, where: str | None) -> str:
    advice = (
        'count with device="fake", or run it for real under the flops fixture'
        if device == "meta"
        else "run it for real under the flops fixture"
    )
    return (
        f"pytest_flops.count(device={device!r}): {func} in "
        f"{where or 'the counted call, outside every module'} needs the values of a "
        "tensor that has none here (a floating-point stand-in, or a tensor computed from "
        f"one). Only small integer and bool tensors keep their values; {advice}"
    )


@contextmanager
def _real(stand_ins: StandIns) -> Iterator[None]:
    """Kept tensors' ops run outside the fake mode, on real tensors."""
    if stand_ins.fake_mode is None:
        yield
    else:
        with unset_fake_temporarily():
            yield


def _bounded(out: Any, stand_ins: StandIns) -> Any:
    """Real outputs over ``KEPT_NUMEL`` elements go on as stand-ins."""

    def bound(tensor: torch.Tensor) -> torch.Tensor:
        if tensor.numel() <= KEPT_NUMEL or tensor.layout != torch.strided:
            return tensor
        return stand_ins.stand_in(tensor)

    return tree_map_only(torch.Tensor, bound, out)


def _integer_indices(
    indices: list[torch.Tensor | None], is_stand_in: Callable[[torch.Tensor], bool]
) -> list[torch.Tensor | None]:
    """Advanced indices with each kept bool mask replaced by its nonzero positions, one
    index per dimension it spans, as indexing does with a mask."""
    replaced: list[torch.Tensor | None] = []
    for index in indices:
        if index is not None and index.dtype == torch.bool and not is_stand_in(index):
            replaced += index.nonzero().unbind(1)
        else:
            replaced.append(index)
    return replaced


def _data_dependent(func: torch._ops.OpOverload) -> bool:
    tags = func.tags
    return torch.Tag.data_dependent_output in tags or torch.Tag.dynamic_output_shape in tags


def _written_tensors(
    func: torch._ops.OpOverload, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> list[torch.Tensor]:
    """The tensor arguments ``func`` writes in place (``self`` of ``add_``, ``out=``)."""
    written = []
    for position, argument in enumerate(func._schema.arguments):
        if argument.alias_info is None or not argument.alias_info.is_write:
            continue
        value = args[position] if position < len(args) else kwargs.get(argument.name)
        written += [leaf for leaf in tree_leaves(value) if isinstance(leaf, torch.Tensor)]
    return written


def _tensors_in(values: Iterable[Any]) -> list[torch.Tensor]:
    """The tensors in an op's arguments, in lists, tuples and dicts at any depth: what
    ``tree_leaves`` finds there, without its cost on every op a count runs."""
    tensors: list[torch.Tensor] = []
    for value in values:
        if isinstance(value, torch.Tensor):
            tensors.append(value)
        elif isinstance(value, (list, tuple)):
            tensors += _tensors_in(value)
        elif isinstance(value, dict):
            tensors += _tensors_in(value.values())
    return tensors
