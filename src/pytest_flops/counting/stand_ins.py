"""What replaces each tensor of a call counted by :func:`~pytest_flops.count`.

A floating-point tensor becomes a stand-in without storage: a meta tensor, or
a fake one (``FakeTensorMode``) that keeps the original's device. A small
integer or bool tensor is *kept*: copied, and real.
"""

from __future__ import annotations

import dataclasses
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Literal

import torch
from torch._subclasses.fake_tensor import FakeTensor, FakeTensorMode, unset_fake_temporarily

StandIn = Literal["meta", "fake"]

KEPT_NUMEL = 1 << 22
"""The most elements a kept (real) tensor may have: 32 MiB of int64 ids."""


class StandInLeakError(RuntimeError):
    """A fake stand-in outlived its count, kept by state outside the counted call."""


class CountFakeMode(FakeTensorMode):
    """The fake mode of one count: it refuses work once its count is over, with an error
    that says why."""

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
        return super().__torch_dispatch__(func, types, args, kwargs or {})


@contextmanager
def convertible_fake_parameters() -> Iterator[None]:
    """While active, ``module.to()`` converts the fake parameters of a count.

    ``nn.Module._apply`` swaps a fake parameter for its converted copy with
    ``torch.utils.swap_tensors``, which refuses a tensor that a weakref points
    at, and a fake mode's memo of the fakes it made points one at each: so
    ``.to()`` of a module with fake parameters failed (Switch Transformers'
    router calls it in every forward). The swap first drops the memo's entries
    for the two tensors: the memo only spares converting one tensor twice (a
    view's base), and without them a later conversion makes a new fake.
    """
    original: Callable[[torch.Tensor, torch.Tensor], None] = torch.utils.swap_tensors

    def swap_tensors(t1: torch.Tensor, t2: torch.Tensor) -> None:
        _forget(t1)
        _forget(t2)
        original(t1, t2)

    torch.utils.swap_tensors = swap_tensors
    try:
        yield
    finally:
        torch.utils.swap_tensors = original


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

    ``notes`` collects the conventions the count used, for its measurement.
    """

    device: StandIn
    fake_mode: CountFakeMode | None = None
    notes: set[str] = dataclasses.field(default_factory=set)

    def __post_init__(self) -> None:
        if self.device == "fake":
            self.fake_mode = CountFakeMode()

    @contextmanager
    def active(self) -> Iterator[None]:
        """While counting: fake stand-ins' mode, with ``module.to()`` converting them."""
        if self.fake_mode is None:
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
        replaced = tensor.detach().clone() if _keepable(tensor) else self.stand_in(tensor)
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
