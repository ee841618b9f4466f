"""What replaces each tensor of a call counted by :func:`~pytest_flops.count`.

A floating-point tensor becomes a stand-in without storage: a meta tensor, or
a fake one (``FakeTensorMode``) that keeps the original's device. A small
integer or bool tensor is *kept*: copied, and real.
"""

from __future__ import annotations

import dataclasses
import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager, nullcontext
from typing import Any, Literal

import torch
from torch._subclasses.fake_tensor import FakeTensor, FakeTensorMode, unset_fake_temporarily

from pytest_flops.counting.cpu_layouts import (
    CPU_LAYOUTS,
    as_cpu_layout,
    layer_norm_backward_as_cpu,
)
from pytest_flops.counting.elementwise_layout import ELEMENTWISE_LAYOUT_OPS, elementwise_as_cpu
from pytest_flops.counting.patching import WhileCounting, swapped

StandIn = Literal["meta", "fake"]

KEPT_NUMEL = 1 << 22
"""The most elements a kept (real) tensor may have: 32 MiB of int64 ids."""


class StandInLeakError(RuntimeError):
    """A fake stand-in outlived its count, kept by state outside the counted call."""


# Views whose fake kernel works out strides apart from ATen's
_VIEWS = frozenset({torch.ops.aten.view.default, torch.ops.aten._unsafe_view.default})


class CountFakeMode(FakeTensorMode):
    """The fake mode of one count: its layer norm gradients and some pointwise ops'
    outputs take the CPU's layout (as meta ones do, ``meta_as_cpu``), its views ATen's
    strides, and it refuses work once its count is over, with an error that says why."""

    counting = True

    def __torch_dispatch__(
        self,
        func: torch._ops.OpOverload,
        types: Any,
        args: Any = (),
        kwargs: Any = None,
    ) -> Any:
        if not self.counting:
            raise StandInLeakError(leak_message(func))
        out: Any = super().__torch_dispatch__(func, types, args, kwargs or {})
        if func is torch.ops.aten.native_layer_norm_backward.default:
            with self:
                return layer_norm_backward_as_cpu(out)
        if func in ELEMENTWISE_LAYOUT_OPS:
            with self:
                return elementwise_as_cpu(out, args)
        if func in CPU_LAYOUTS:  # fake tensors run these ops' decompositions, not meta's
            with self:
                return as_cpu_layout(func, out, args)
        if func in _VIEWS:
            return self._view_as_aten(func, types, args, out)
        return out

    def _view_as_aten(self, func: Any, types: Any, args: Any, out: torch.Tensor) -> Any:
        """A view with ATen's strides: the fake one's can differ for a dimension of
        size 1 (RADIO's resized position table: ``(12544, 1, 64)`` where ATen gives
        ``(64, 1, 64)``), which decides the layout a later kernel picks."""
        base = args[0]
        if base.layout is not torch.strided or base.is_nested:
            return out
        if min(out.shape, default=0) > 1:
            return out  # a dimension's stride is its elements' distance: only size 0 or 1 is free
        probe = torch.empty_strided(base.shape, base.stride(), dtype=base.dtype, device="meta")
        strides = func(probe, *args[1:]).stride()
        if out.stride() == strides:
            return out
        restrided = (base, out.shape, strides, out.storage_offset())
        return super().__torch_dispatch__(torch.ops.aten.as_strided.default, types, restrided)


def convertible_fake_parameters() -> AbstractContextManager[None]:
    """While active, ``module.to()`` converts the fake parameters of a count.

    ``nn.Module._apply`` swaps a fake parameter for its converted copy with
    ``torch.utils.swap_tensors``, which refuses a tensor that a weakref points
    at, and a fake mode's memo of the fakes it made points one at each: so
    ``.to()`` of a module with fake parameters failed (Switch Transformers'
    router calls it in every forward). The swap first drops the memo's entries
    for the two tensors: the memo only spares converting one tensor twice (a
    view's base), and without them a later conversion makes a new fake.
    """
    return _SWAP_FORGETS.held()


def _swap_forgets(undo: ExitStack) -> None:
    original: Callable[[torch.Tensor, torch.Tensor], None] = torch.utils.swap_tensors

    def swap_tensors(t1: torch.Tensor, t2: torch.Tensor) -> None:
        _forget(t1)
        _forget(t2)
        original(t1, t2)

    undo.enter_context(swapped(torch.utils, "swap_tensors", swap_tensors))


# torch.utils.swap_tensors is one for all threads: patched while any fake count runs
_SWAP_FORGETS = WhileCounting(_swap_forgets)


@contextmanager
def kept_tensors_stay_on_the_cpu() -> Iterator[None]:
    """While active on this thread, ``tensor.to(device)`` between the CPU and the meta
    device stays on the tensor's own device: for meta stand-ins of a call whose tensors
    were all on the CPU.

    There the meta device stands for the CPU, and kept tensors are real CPU tensors. A
    call that moves its mask to its parameters' device (``mask.to(weight.device)``), or
    a stand-in to a kept tensor's (``mask.to(result.device)`` in transformers' mask
    functions, GIT), moves nothing in the real run, where ``.to`` returns a tensor
    already there; on meta it copied, and counted that copy's bytes (Bloom, Gemma 3,
    Mamba, GIT). A cast still copies, on the tensor's device, as the real run does; so
    does a copy asked for (``copy=True``). ``.cpu()`` of a stand-in stays too, and a
    number set into a stand-in (``mask[:, :n] = 0``) comes from the CPU.
    """
    with _TO_REDIRECTABLE.held(), swapped(_kept_on_cpu, "on", True):
        yield


_kept_on_cpu = threading.local()  # .on: this thread's .to() between CPU and meta stays
_STANDS_FOR_EACH_OTHER = ("cpu", "meta")


def _redirectable_to(undo: ExitStack) -> None:
    original = torch.Tensor.to

    def to(tensor: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        here = tensor.device.type
        if getattr(_kept_on_cpu, "on", False) and here in _STANDS_FOR_EACH_OTHER:
            try:
                device, dtype, non_blocking, memory_format = torch._C._nn._parse_to(*args, **kwargs)
            except (RuntimeError, TypeError):  # copy= given (or bad arguments): as asked
                return original(tensor, *args, **kwargs)
            if device is not None and device.type in _STANDS_FOR_EACH_OTHER:
                return original(
                    tensor,
                    device=torch.device(here),
                    dtype=dtype,
                    non_blocking=non_blocking,
                    memory_format=memory_format or torch.preserve_format,
                )
        return original(tensor, *args, **kwargs)

    original_cpu = torch.Tensor.cpu

    def cpu(
        tensor: torch.Tensor, memory_format: torch.memory_format = torch.preserve_format
    ) -> Any:
        if getattr(_kept_on_cpu, "on", False) and tensor.device.type == "meta":
            return original(tensor, memory_format=memory_format)
        return original_cpu(tensor, memory_format=memory_format)

    original_setitem = torch.Tensor.__setitem__

    def setitem(tensor: torch.Tensor, key: Any, value: Any) -> None:
        if (
            getattr(_kept_on_cpu, "on", False)
            and tensor.device.type == "meta"
            and isinstance(value, (bool, int, float))
        ):
            # As the CPU's (and CUDA's) indexing does: a number becomes a CPU scalar,
            # which fills (aten.fill_), where one made on meta was copied (ViTMAE).
            value = torch.tensor(value, dtype=tensor.dtype)
        original_setitem(tensor, key, value)

    undo.enter_context(swapped(torch.Tensor, "to", to))
    undo.enter_context(swapped(torch.Tensor, "cpu", cpu))
    undo.enter_context(swapped(torch.Tensor, "__setitem__", setitem))


# Tensor.to and .cpu are one for all threads: patched while any thread's meta count needs it
_TO_REDIRECTABLE = WhileCounting(_redirectable_to)


def _forget(tensor: torch.Tensor) -> None:
    """Drops a count's fake mode's memo entry for ``tensor``, and so its weakref."""
    fake_mode = getattr(tensor, "fake_mode", None)
    if not isinstance(fake_mode, CountFakeMode):
        return
    memo = fake_mode.fake_tensor_converter.tensor_memo
    for ref in weakref.getweakrefs(tensor):
        if isinstance(ref, weakref.KeyedRef) and memo.get(ref.key) is tensor:
            del memo[ref.key]


def leak_message(func: object) -> str:
    return (
        f"{func} got a fake tensor made by an earlier pytest_flops.count(device='fake'): "
        "state outside the counted call (a cache, a global, an lru_cache keyed on the "
        "device) kept a stand-in, and real code now reads it. Clear that state, or count "
        "with device='meta' (whose stand-ins live on their own device)"
    )


@dataclasses.dataclass
class StandIns:
    """What replaces each tensor in one count, and how to tell stand-ins from kept tensors.

    ``notes`` collects the conventions the count used, for its measurement, and
    ``origins`` the device types of the tensors that stand-ins replace.
    """

    device: StandIn
    fake_mode: CountFakeMode | None = None
    notes: set[str] = dataclasses.field(default_factory=set)
    origins: set[str] = dataclasses.field(default_factory=set)

    def __post_init__(self) -> None:
        if self.device == "fake":
            self.fake_mode = CountFakeMode()

    @contextmanager
    def active(self) -> Iterator[None]:
        """While counting: fake stand-ins' mode, with ``module.to()`` converting them; on
        meta stand-ins of CPU tensors, kept tensors stay on the CPU."""
        if self.fake_mode is None:
            with kept_tensors_stay_on_the_cpu() if self.origins <= {"cpu"} else nullcontext():
                yield
            return
        with self.fake_mode, convertible_fake_parameters():
            yield

    def end(self) -> None:
        """After counting: fake stand-ins that outlive the count refuse work."""
        if self.fake_mode is not None:
            self.fake_mode.counting = False

    def is_stand_in(self, tensor: torch.Tensor) -> bool:
        return isinstance(tensor, FakeTensor) if self.fake_mode else tensor.is_meta

    def replacement(self, tensor: torch.Tensor) -> torch.Tensor:
        """A copy that stays real for a small integer or bool tensor, else a stand-in;
        a parameter's replacement is a parameter."""
        if _keepable(tensor):
            replaced = tensor.detach().clone()
        else:
            self.origins.add(tensor.device.type)
            replaced = self.stand_in(tensor)
        if isinstance(tensor, torch.nn.Parameter) and not isinstance(replaced, torch.nn.Parameter):
            return torch.nn.Parameter(replaced, requires_grad=tensor.requires_grad)
        return replaced

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
