"""Count a call without running it, on meta or fake stand-ins for its tensors.

:func:`count` is for the case where you hold a real module and real inputs
(possibly a model too big or too slow to run in CI) and want the FLOPs of a
call on them. It never touches the real objects: it deep-copies the call with
every tensor replaced by a storage-less stand-in of the same shape, dtype and
strides, and counts the copy.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from typing import Any, Literal

import torch
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils._pytree import tree_leaves

from pytest_flops.counting.counter import FlopCounterMode
from pytest_flops.measurement import Measurement

StandIn = Literal["meta", "fake"]


def count(
    fn: Callable[..., Any], /, *args: Any, device: StandIn = "meta", **kwargs: Any
) -> Measurement:
    """The FLOPs of ``fn(*args, **kwargs)``, counted on stand-ins instead of real tensors.

    Every tensor in ``args`` and ``kwargs``, and every parameter, buffer and
    tensor attribute of the modules among ``fn``, ``args`` and ``kwargs``, is
    replaced by a stand-in that has no storage, so nothing is computed and no
    memory is allocated for data. The originals are not modified: gradients of
    a ``.backward()`` inside ``fn`` land on the stand-ins. Pass a module as
    ``fn`` to count its forward, or a function taking the module to count a
    training step::

        measurement = pytest_flops.count(model, tokens)

        def train_step(model, tokens):
            model(tokens).logsumexp(-1).sum().backward()

        measurement = pytest_flops.count(train_step, model, tokens)

    ``device`` picks the stand-in:

    * ``"meta"``: tensors on the meta device, the fastest. While counting,
      attention and LSTM calls on them take the kernels a CPU would, so they
      count as a CPU run does.
    * ``"fake"``: ``FakeTensorMode`` tensors that keep each original's
      device, so ``x.is_cuda`` and kernel choice behave as on that device.

    The call must not depend on tensor *values* (``.item()``, data-dependent
    shapes, Python branches on contents): stand-ins have none. Tensors that
    ``fn`` reaches only through a closure or a global are not replaced; pass
    them (or the module holding them) as arguments. To pass ``fn`` a keyword
    argument named ``device``, wrap it in a ``functools.partial``.
    """
    if device not in ("meta", "fake"):
        raise ValueError(f'pytest_flops.count: device must be "meta" or "fake", got {device!r}')
    fake_mode = FakeTensorMode() if device == "fake" else None
    make_stand_in = _meta_stand_in if fake_mode is None else fake_mode.from_tensor
    memo: dict[int, Any] = {}
    for tensor in _reachable_tensors((fn, args, kwargs)):
        if id(tensor) not in memo:
            memo[id(tensor)] = _keep_parameter(tensor, make_stand_in(tensor))
    # Deep-copying with every tensor pre-seeded in the memo copies the module
    # structure (cheap) and shares the stand-ins, so tied weights stay tied.
    fn_copy, args_copy, kwargs_copy = copy.deepcopy((fn, args, kwargs), memo)
    context: AbstractContextManager[Any] = nullcontext() if fake_mode is None else fake_mode
    with context, FlopCounterMode(display=False) as counter:
        fn_copy(*args_copy, **kwargs_copy)
    return counter.to_measurement()


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
        yield from (t for t in vars(submodule).values() if isinstance(t, torch.Tensor))


def _meta_stand_in(tensor: torch.Tensor) -> torch.Tensor:
    return torch.empty_strided(
        tensor.shape, tensor.stride(), dtype=tensor.dtype, device="meta"
    ).requires_grad_(tensor.requires_grad)


def _keep_parameter(original: torch.Tensor, stand_in: torch.Tensor) -> torch.Tensor:
    if isinstance(original, torch.nn.Parameter) and not isinstance(stand_in, torch.nn.Parameter):
        return torch.nn.Parameter(stand_in, requires_grad=original.requires_grad)
    return stand_in
