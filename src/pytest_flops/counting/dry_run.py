"""Count a call without running it, on meta or fake stand-ins for its tensors.

:func:`count` is for the case where you hold a real module and real inputs
(possibly a model too big or too slow to run in CI) and want the FLOPs of a
call on them. It never touches the real objects: it deep-copies the call with
every floating-point tensor replaced by a storage-less stand-in of the same
shape, dtype and strides, and counts the copy.

Values a stand-in lacks. Models read values while they prepare their inputs:
``.item()`` on a mask, ``nonzero`` of the padding, positions from a cumulative
sum of ids, the routing of a mixture of experts. So small integer and bool
tensors (ids, masks, positions, offsets) are *kept*: copied as real tensors,
and every op whose tensors are all kept runs for real, on the CPU, giving real
values (a float mask built from ids too). An op that mixes kept tensors with
stand-ins gives a stand-in. Where a stand-in decides which work runs (a
router's ``topk``), its index outputs take balanced values by convention, and
the measurement says so in its ``notes``.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import math
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager, nullcontext
from typing import Any, Literal

import torch
from torch._subclasses.fake_tensor import FakeTensor, FakeTensorMode, unset_fake_temporarily
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves, tree_map_only

from pytest_flops.counting.counter import FlopCounterMode
from pytest_flops.measurement import Measurement

StandIn = Literal["meta", "fake"]

KEPT_NUMEL = 1 << 22
"""The most elements a kept (real) tensor may have: 32 MiB of int64 ids."""

aten = torch.ops.aten

BALANCED_ROUTING = (
    "balanced routing: indices computed from stand-ins (topk, sort, argmax, max, min) took "
    "balanced values (token t's k experts are t*k .. t*k+k-1 modulo the number of "
    "experts): totals are exact where a token's work does not depend on which experts it "
    "meets (no capacity limit), and every expert gets the same rows"
)
STALE_KEPT = (
    "kept values: an in-place write of stand-in data into a kept tensor left that tensor's "
    "values as they were"
)


class ValuesNeededError(RuntimeError):
    """A call counted on stand-ins needed values that its stand-ins do not have."""


class StandInLeakError(RuntimeError):
    """A fake stand-in outlived its count, kept by state outside the counted call."""


def count(
    fn: Callable[..., Any], /, *args: Any, device: StandIn = "meta", **kwargs: Any
) -> Measurement:
    """The FLOPs of ``fn(*args, **kwargs)``, counted on stand-ins instead of real tensors.

    Every floating-point tensor in ``args`` and ``kwargs``, and every
    parameter, buffer and tensor attribute of the modules among ``fn``,
    ``args`` and ``kwargs`` (also inside dicts, lists and tuples), is replaced
    by a stand-in that has no storage, so nothing is computed and no memory is
    allocated for data. Small integer and bool tensors are copied and stay
    real (see the module docs). The originals are not modified: gradients of a
    ``.backward()`` inside ``fn`` land on the stand-ins. Pass a module as
    ``fn`` to count its forward, or a function taking the module to count a
    training step::

        measurement = pytest_flops.count(model, tokens)

        def train_step(model, tokens):
            model(tokens).logsumexp(-1).sum().backward()

        measurement = pytest_flops.count(train_step, model, tokens)

    ``device`` picks the stand-in:

    * ``"meta"``: tensors on the meta device, the fastest. While counting,
      attention, LSTM, grouped GEMM and convolution calls on them take the
      kernels (and output strides) a CPU would, so they count as a CPU run does.
    * ``"fake"``: ``FakeTensorMode`` tensors that keep each original's
      device, so ``x.is_cuda`` and kernel choice behave as on that device.

    A call that needs the values of a stand-in (``.item()`` of a float, a
    ``nonzero`` of activations) raises :class:`ValuesNeededError` naming the op
    and the module. Tensors that ``fn`` reaches only through a closure or a
    global are not replaced; pass them (or the module holding them) as
    arguments. To pass ``fn`` a keyword argument named ``device``, wrap it in a
    ``functools.partial``.
    """
    if device not in ("meta", "fake"):
        raise ValueError(f'pytest_flops.count: device must be "meta" or "fake", got {device!r}')
    stand_ins = _StandIns(device)
    memo: dict[int, Any] = {}
    for tensor in _reachable_tensors((fn, args, kwargs)):
        if id(tensor) not in memo:
            memo[id(tensor)] = _keep_parameter(tensor, stand_ins.replacement(tensor))
    # Deep-copying with every tensor pre-seeded in the memo copies the module
    # structure (cheap) and shares the stand-ins, so tied weights stay tied.
    fn_copy, args_copy, kwargs_copy = copy.deepcopy((fn, args, kwargs), memo)
    modules = _ModuleStack(_root_modules((fn_copy, args_copy, kwargs_copy)))
    fake_mode = stand_ins.fake_mode
    context: AbstractContextManager[Any] = nullcontext() if fake_mode is None else fake_mode
    try:
        with (
            torch.random.fork_rng(devices=[]),  # kept tensors may draw random numbers
            context,
            modules,
            _KeepValues(stand_ins, modules),
            FlopCounterMode(display=False) as counter,
        ):
            fn_copy(*args_copy, **kwargs_copy)
    finally:
        if fake_mode is not None:
            fake_mode.counting = False
    return dataclasses.replace(counter.to_measurement(), notes=tuple(sorted(stand_ins.notes)))


class _CountFakeMode(FakeTensorMode):
    """A fake mode that refuses work once its count is over, with an error that says why."""

    counting = True

    def __torch_dispatch__(
        self,
        func: torch._ops.OpOverload,
        types: Any,
        args: Any = (),
        kwargs: Any = None,
    ) -> Any:
        if not self.counting:
            raise StandInLeakError(_leak_message(func))
        return super().__torch_dispatch__(func, types, args, kwargs or {})


def _leak_message(func: object) -> str:
    return (
        f"{func} got a fake tensor made by an earlier pytest_flops.count(device='fake'): "
        "state outside the counted call (a cache, a global, an lru_cache keyed on the "
        "device) kept a stand-in, and real code now reads it. Clear that state, or count "
        "with device='meta' (whose stand-ins live on their own device)"
    )


@dataclasses.dataclass
class _StandIns:
    """What replaces each tensor in one count, and how to tell stand-ins from kept tensors."""

    device: StandIn
    fake_mode: _CountFakeMode | None = None
    notes: set[str] = dataclasses.field(default_factory=set)

    def __post_init__(self) -> None:
        if self.device == "fake":
            self.fake_mode = _CountFakeMode()

    def is_stand_in(self, tensor: torch.Tensor) -> bool:
        return isinstance(tensor, FakeTensor) if self.fake_mode else tensor.is_meta

    def replacement(self, tensor: torch.Tensor) -> torch.Tensor:
        """A copy that stays real for a small integer or bool tensor, else a stand-in."""
        if _keepable(tensor):
            return tensor.detach().clone()
        return self.stand_in(tensor)

    def stand_in(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.fake_mode is not None:
            # a leaf, as on meta: a cached non-leaf's graph ends at its stand-in
            with unset_fake_temporarily():
                detached = tensor.detach()
            return self.fake_mode.from_tensor(detached).requires_grad_(tensor.requires_grad)
        return torch.empty_strided(
            tensor.shape, tensor.stride(), dtype=tensor.dtype, device="meta"
        ).requires_grad_(tensor.requires_grad)

    def kept_device(self, tensor: torch.Tensor) -> bool:
        """Whether real values for (an output like) ``tensor`` may live on the CPU."""
        return not self.fake_mode or tensor.device.type == "cpu"


def _keepable(tensor: torch.Tensor) -> bool:
    return (
        type(tensor) in (torch.Tensor, torch.nn.Parameter)
        and not tensor.is_floating_point()
        and not tensor.is_complex()
        and not tensor.is_quantized
        and tensor.device.type == "cpu"
        and tensor.layout == torch.strided
        and tensor.numel() <= KEPT_NUMEL
    )


class _KeepValues(TorchDispatchMode):
    """Runs ops on kept tensors for real, and mixes kept tensors into stand-in ops.

    It sits below the counter, which sees every op first, as the user wrote it.
    """

    def __init__(self, stand_ins: _StandIns, modules: _ModuleStack) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.stand_ins = stand_ins
        self.modules = modules

    def __torch_dispatch__(
        self,
        func: torch._ops.OpOverload,
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        kwargs = kwargs or {}
        tensors = [leaf for leaf in tree_leaves((args, kwargs)) if isinstance(leaf, torch.Tensor)]
        for tensor in tensors:
            fake_mode = getattr(tensor, "fake_mode", None)
            if isinstance(fake_mode, _CountFakeMode) and fake_mode is not self.stand_ins.fake_mode:
                raise StandInLeakError(_leak_message(func))
        is_stand_in = self.stand_ins.is_stand_in
        stand_ins = [tensor for tensor in tensors if is_stand_in(tensor)]
        if not stand_ins:
            if not tensors:
                return self._factory(func, args, kwargs)
            return self._kept(func, args, kwargs)
        if len(stand_ins) < len(tensors):
            return self._mixed(func, args, kwargs)
        if func is aten._to_copy.default and not self.stand_ins.fake_mode:
            kwargs = {**kwargs, "device": torch.device("meta")}  # .to(cpu) keeps a stand-in
        out = self._run(func, args, kwargs)
        if func in _INDEX_OUTPUTS:
            out = self._balanced(func, args, kwargs, out)
        return out

    def _run(self, func: torch._ops.OpOverload, args: Any, kwargs: dict[str, Any]) -> Any:
        try:
            return func(*args, **kwargs)
        except Exception as error:
            if func is aten._local_scalar_dense.default or _data_dependent(func):
                raise ValuesNeededError(self._values_message(func)) from error
            raise

    def _values_message(self, func: torch._ops.OpOverload) -> str:
        device = self.stand_ins.device
        where = self.modules.current() or "the counted call, outside every module"
        advice = (
            'count with device="fake", or run it for real under the flops fixture'
            if device == "meta"
            else "run it for real under the flops fixture"
        )
        return (
            f"pytest_flops.count(device={device!r}): {func} in {where} needs the values of a "
            "tensor that has none here (a floating-point stand-in, or a tensor computed from "
            f"one). Only small integer and bool tensors keep their values; {advice}"
        )

    def _mixed(self, func: torch._ops.OpOverload, args: Any, kwargs: dict[str, Any]) -> Any:
        """An op on stand-ins and kept tensors: the kept ones join as stand-ins."""
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
            with self._real():
                args = (args[0], _integer_indices(args[1], self.stand_ins.is_stand_in), *args[2:])
        out = self._run(func, *tree_map_only(torch.Tensor, stand_in, (args, kwargs)))
        kept_written = [t for t in written if id(t) in replaced]
        if not kept_written:
            return out
        # A kept tensor written in place cannot become a stand-in: it keeps its values,
        # and the call gets it back where the op returns what it wrote.
        self.stand_ins.notes.add(STALE_KEPT)
        originals = {id(replaced[id(t)]): t for t in kept_written}
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
            with self._real():
                return self._bounded(func(*args, **kwargs))
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
        if all(t.numel() <= KEPT_NUMEL for t in made) and (
            target == "cpu" or not any(t.is_floating_point() or t.is_complex() for t in made)
        ):
            with self._real():
                return func(*args, **{**kwargs, "device": torch.device("cpu")})
        return probe if meta_stand_ins else func(*args, **kwargs)

    @contextmanager
    def _real(self) -> Iterator[None]:
        if self.stand_ins.fake_mode is None:
            yield
        else:
            with unset_fake_temporarily():
                yield

    def _bounded(self, out: Any) -> Any:
        """Real outputs over ``KEPT_NUMEL`` elements go on as stand-ins."""

        def bound(tensor: torch.Tensor) -> torch.Tensor:
            if tensor.numel() <= KEPT_NUMEL or tensor.layout != torch.strided:
                return tensor
            return self.stand_ins.stand_in(tensor)

        return tree_map_only(torch.Tensor, bound, out)

    def _balanced(
        self, func: torch._ops.OpOverload, args: Any, kwargs: dict[str, Any], out: Any
    ) -> Any:
        """The index outputs of ``func``, given balanced values (the routing convention)."""
        source: torch.Tensor = args[0]
        indices = out[1] if isinstance(out, tuple) else out
        if not self.stand_ins.kept_device(indices) or indices.numel() > KEPT_NUMEL:
            return out
        position, default = _DIM_ARGUMENT[func]
        dim = kwargs.get("dim", args[position] if len(args) > position else default)
        size = source.shape[dim] if dim is not None and source.dim() else max(source.numel(), 1)
        with self._real():
            values = balanced_indices(tuple(indices.shape), dim, size, spread=func in _SPREAD)
            values = values.to(indices.dtype)
        self.stand_ins.notes.add(BALANCED_ROUTING)
        return (out[0], values) if isinstance(out, tuple) else values


def balanced_indices(
    shape: tuple[int, ...], dim: int | None, size: int, *, spread: bool
) -> torch.Tensor:
    """Indices into ``size`` entries along ``dim``: with ``spread``, row r's j-th pick is
    ``(r * k + j) % size`` (k picks per row: distinct when k <= size, even over rows);
    else every row holds ``0, 1, ..., k-1`` (a sort's identity permutation)."""
    if dim is None or not shape:
        return torch.zeros(shape, dtype=torch.long)
    dim = dim % len(shape)
    picks = shape[dim]
    rows = math.prod(shape) // max(picks, 1)
    row = torch.arange(rows).unsqueeze(1) * (picks if spread else 0)
    grid = (row + torch.arange(picks)) % size
    moved = [n for i, n in enumerate(shape) if i != dim] + [picks]
    return grid.reshape(moved).movedim(-1, dim).contiguous()


# ops whose index outputs may decide what work runs: their dim argument's position, default
_DIM_ARGUMENT: dict[Any, tuple[int, int | None]] = {
    aten.topk.default: (2, -1),
    aten.sort.default: (1, -1),
    aten.sort.stable: (2, -1),
    aten.argmax.default: (1, None),
    aten.argmin.default: (1, None),
    aten.max.dim: (1, None),
    aten.min.dim: (1, None),
}
_INDEX_OUTPUTS = frozenset(_DIM_ARGUMENT)
_SPREAD = _INDEX_OUTPUTS - {aten.sort.default, aten.sort.stable}  # a sort permutes its row


_INDEXING = frozenset({aten.index.Tensor, aten.index_put.default, aten.index_put_.default})


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


class _ModuleStack(ExitStack):
    """The path of the module running now, for errors: global forward hooks while counting."""

    def __init__(self, roots: list[torch.nn.Module]) -> None:
        super().__init__()
        self.names: dict[int, str] = {}
        for root in roots:
            for name, module in root.named_modules():
                full = f"{type(root).__name__}.{name}" if name else type(root).__name__
                self.names.setdefault(id(module), full)
        self.stack: list[str] = []

    def __enter__(self) -> _ModuleStack:
        super().__enter__()
        hooks = torch.nn.modules.module
        self.enter_context(hooks.register_module_forward_pre_hook(self._enter))
        self.enter_context(hooks.register_module_forward_hook(self._leave, always_call=True))
        return self

    def _enter(self, module: torch.nn.Module, _args: object) -> None:
        self.stack.append(self.names.get(id(module), type(module).__name__))

    def _leave(self, _module: torch.nn.Module, _args: object, _out: object) -> None:
        if self.stack:
            self.stack.pop()

    def current(self) -> str | None:
        return self.stack[-1] if self.stack else None


def _root_modules(root: Any) -> list[torch.nn.Module]:
    modules = []
    for leaf in tree_leaves(root):
        if isinstance(leaf, functools.partial):
            modules += _root_modules((leaf.func, leaf.args, leaf.keywords))
        elif isinstance(leaf, torch.nn.Module):
            modules.append(leaf)
        elif isinstance(getattr(leaf, "__self__", None), torch.nn.Module):
            modules.append(leaf.__self__)
    return modules


def _reachable_tensors(root: Any) -> Iterator[torch.Tensor]:
    for leaf in tree_leaves(root):
        if isinstance(leaf, torch.Tensor):
            yield leaf
        elif isinstance(leaf, torch.nn.Module):
            yield from _module_tensors(leaf)
        elif isinstance(leaf, functools.partial):
            yield from _reachable_tensors((leaf.func, leaf.args, leaf.keywords))
        elif isinstance(getattr(leaf, "__self__", None), torch.nn.Module):
            yield from _module_tensors(leaf.__self__)  # a bound method such as model.generate


def _module_tensors(module: torch.nn.Module) -> Iterator[torch.Tensor]:
    for submodule in module.modules():
        yield from (t for t in submodule._parameters.values() if t is not None)
        yield from (t for t in submodule._buffers.values() if t is not None)
        for value in vars(submodule).values():
            # tensors held directly or in (nested) dicts, lists and tuples: caches
            if isinstance(value, (torch.Tensor, dict, list, tuple)):
                yield from (t for t in tree_leaves(value) if isinstance(t, torch.Tensor))


def _keep_parameter(original: torch.Tensor, replacement: torch.Tensor) -> torch.Tensor:
    if isinstance(original, torch.nn.Parameter) and not isinstance(replacement, torch.nn.Parameter):
        return torch.nn.Parameter(replacement, requires_grad=original.requires_grad)
    return replacement
