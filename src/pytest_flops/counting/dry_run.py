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
stand-ins gives a stand-in. (A small float tensor the call makes on the meta
device is a stand-in that shadows its values: see ``keep_values``.) Where a
stand-in decides which work runs (a
router's ``topk``), its index outputs take balanced values by convention, and
the measurement says so in its ``notes``.

This module copies the call and counts it; ``stand_ins`` makes the stand-ins,
``keep_values`` runs the ops on kept tensors, ``balanced_routing`` holds the
convention.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import torch
from torch.utils._pytree import tree_leaves

from pytest_flops.counting.counter import FlopCounterMode
from pytest_flops.counting.keep_values import KeepValues, ValuesNeededError
from pytest_flops.counting.stand_ins import StandIn, StandInLeakError, StandIns
from pytest_flops.measurement import Measurement

__all__ = ["StandInLeakError", "ValuesNeededError", "count"]


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
      attention, LSTM, grouped GEMM and convolution calls and transformer
      inference fast paths on them take the kernels (and output strides) a CPU
      would, so they count as a CPU run does; under ``torch.autocast``, which
      casts no meta tensor, their matmuls and convolutions raise.
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
    stand_ins = StandIns(device)
    fn_copy, args_copy, kwargs_copy = _copied((fn, args, kwargs), stand_ins)
    modules = _ModuleStack(_root_modules((fn_copy, args_copy, kwargs_copy)))
    try:
        with (
            torch.random.fork_rng(devices=[]),  # kept tensors may draw random numbers
            stand_ins.active(),
            modules,
            KeepValues(stand_ins, modules.current),
            FlopCounterMode(display=False) as counter,
        ):
            fn_copy(*args_copy, **kwargs_copy)
    finally:
        stand_ins.end()
    return dataclasses.replace(counter.to_measurement(), notes=tuple(sorted(stand_ins.notes)))


def _copied(call: Any, stand_ins: StandIns) -> Any:
    """A deep copy of ``call`` with every tensor it reaches replaced."""
    memo: dict[int, Any] = {}
    for tensor in _reachable_tensors(call):
        if id(tensor) not in memo:
            memo[id(tensor)] = stand_ins.replacement(tensor)
    # Deep-copying with every tensor pre-seeded in the memo copies the module
    # structure (cheap) and shares the stand-ins, so tied weights stay tied.
    return copy.deepcopy(call, memo)


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
