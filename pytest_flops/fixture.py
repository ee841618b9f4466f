"""The object behind the ``flops`` fixture; import it to annotate ``flops: Flops``."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from functools import reduce

import torch

from pytest_flops.counter import FlopCounterMode
from pytest_flops.measurement import GLOBAL, Measurement
from pytest_flops.records import DEFAULT_NAME


class Flops:
    """Counts FLOPs inside ``with flops(model):`` blocks of one test.

    Each block counts with :class:`~pytest_flops.FlopCounterMode`. Blocks with
    the same ``name`` add up; blocks with different names are kept apart and
    stored as separate entries of the test's snapshot. The attributes
    (``total``, ``by_op``, ...) sum up every name; ``flops["prefill"]`` is one
    name's :class:`~pytest_flops.Measurement`.

    A block that raises is discarded: its partial counts are never added, so
    they can reach no snapshot.
    """

    def __init__(self) -> None:
        self._measurements: dict[str, Measurement] = {}
        self._devices: set[str] = set()
        # Held while a block counts: acquiring it checks and claims in one step,
        # also against a block opened in another thread.
        self._counting = threading.Lock()

    def __call__(
        self, model: torch.nn.Module | None = None, *, name: str = DEFAULT_NAME
    ) -> AbstractContextManager[Flops]:
        """A block that counts into measurement ``name``.

        With ``model``, the per-module rows of the model (named from its class,
        e.g. ``ResNet.layer1``) are kept; without it, only the ``"Global"`` row.
        """
        if model is not None and not isinstance(model, torch.nn.Module):
            raise TypeError(f"flops(model): expected a torch.nn.Module, got {type(model).__name__}")
        if not isinstance(name, str) or not name:
            raise TypeError(f"flops(name=...): expected a non-empty string, got {name!r}")
        return self._block(model, name)

    @contextmanager
    def _block(self, model: torch.nn.Module | None, name: str) -> Iterator[Flops]:
        if not self._counting.acquire(blocking=False):
            raise RuntimeError(
                "flops: a `with flops(...)` block of this test is already open: blocks "
                "cannot be nested (the inner block's FLOPs would be counted twice) nor open "
                "in two threads at once; close the open block first"
            )
        try:
            with FlopCounterMode(display=False) as mode:
                yield self
            counted = _rows_of(mode.to_measurement(), model)
            previous = self._measurements.get(name)
            self._measurements[name] = counted if previous is None else previous + counted
            if model is not None:
                tensors = itertools.chain(model.parameters(), model.buffers())
                self._devices.update(str(tensor.device) for tensor in tensors)
        finally:
            self._counting.release()

    # -- results ------------------------------------------------------------------

    @property
    def measured(self) -> bool:
        """Whether a block has finished without raising."""
        return bool(self._measurements)

    @property
    def devices(self) -> frozenset[str]:
        """Devices of the measured models' parameters and buffers (for report metadata)."""
        return frozenset(self._devices)

    @property
    def measurements(self) -> Mapping[str, Measurement]:
        """Each measurement name and what its blocks counted."""
        return dict(self._measurements)

    def __getitem__(self, name: str) -> Measurement:
        try:
            return self._measurements[name]
        except KeyError:
            known = ", ".join(repr(n) for n in self._measurements) or "none yet"
            raise KeyError(f"no measurement named {name!r} (measured: {known})") from None

    @property
    def measurement(self) -> Measurement:
        """All measurement names added up."""
        return reduce(Measurement.__add__, self._measurements.values(), Measurement())

    @property
    def total(self) -> int:
        return self.measurement.total

    @property
    def forward(self) -> int:
        return self.measurement.forward

    @property
    def backward(self) -> int:
        return self.measurement.backward

    @property
    def by_op(self) -> dict[str, int]:
        """``{"aten.convolution": flops, ...}``"""
        return self.measurement.by_op

    @property
    def by_module(self) -> dict[str, dict[str, int]]:
        """``{"ResNet.layer1": {"aten.convolution": flops, ...}, ...}``"""
        return self.measurement.by_module

    @property
    def unsupported(self) -> dict[str, int]:
        """Operators that ran with no FLOP formula, and how many times."""
        return dict(self.measurement.unsupported)


def _rows_of(measurement: Measurement, model: torch.nn.Module | None) -> Measurement:
    """``measurement`` with only the ``"Global"`` row and the rows of ``model``."""
    root = None if model is None else type(model).__name__
    modules = {
        path: counts
        for path, counts in measurement.modules.items()
        if path == GLOBAL or (root is not None and (path == root or path.startswith(f"{root}.")))
    }
    return Measurement(modules=modules, unsupported=measurement.unsupported)
