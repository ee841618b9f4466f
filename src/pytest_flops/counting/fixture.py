"""The object behind the ``flops`` fixture; import it to annotate ``flops: Flops``."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from functools import reduce

import torch

from pytest_flops.counting.counter import FlopCounterMode
from pytest_flops.counting.module_tracker import Models, root_names
from pytest_flops.measurement import DEFAULT_NAME, Measurement


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
        self._closed: str | None = None  # why blocks are refused from now on

    def __call__(self, *models: Models, name: str = DEFAULT_NAME) -> AbstractContextManager[Flops]:
        """A block that counts into measurement ``name``.

        With a model, the rows of that instance's calls and its submodules' are
        kept, named from its class (``ResNet``, ``ResNet.layer1``, ...); the
        FLOPs of any other module (another instance of the same class, an EMA
        copy) count in ``"Global"`` only. A compiled model counts as the module
        it compiled. Several models keep rows for each when their class names
        differ; name them otherwise: ``flops({"student": s, "teacher": t})``.
        Without a model only the ``"Global"`` row is kept.
        """
        if not isinstance(name, str) or not name:
            raise TypeError(f"flops(name=...): expected a non-empty string, got {name!r}")
        chosen: Models = models[0] if len(models) == 1 else list(models)  # type: ignore[arg-type]
        roots = root_names(chosen)  # checks them here, where the mistake is
        if self._closed is not None:
            raise RuntimeError(
                f"flops: a block opened after the test's call phase (in a fixture's teardown) "
                f"is not measured: {self._closed}. Measure in the test, or in a fixture "
                f"before the test runs."
            )
        return self._block(chosen, roots, name)

    def _close(self, reason: str) -> None:
        """Refuse blocks from now on; the plugin calls it when the test's call phase ends."""
        self._closed = reason

    @contextmanager
    def _block(
        self, models: Models, roots: dict[torch.nn.Module, str] | None, name: str
    ) -> Iterator[Flops]:
        if not self._counting.acquire(blocking=False):
            raise RuntimeError(
                "flops: a `with flops(...)` block of this test is already open: blocks "
                "cannot be nested (the inner block's FLOPs would be counted twice) nor open "
                "in two threads at once; close the open block first"
            )
        try:
            with FlopCounterMode(display=False, models=models) as mode:
                yield self
            counted = mode.to_measurement()
            previous = self._measurements.get(name)
            self._measurements[name] = counted if previous is None else previous + counted
            for model in roots or ():
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
    def bytes_accessed(self) -> int:
        """Bytes the measured ops read and wrote in memory, forward and backward."""
        return self.measurement.bytes_accessed

    @property
    def bytes_by_op(self) -> dict[str, int]:
        """``{"aten.mm": bytes, "aten.add": bytes, ...}``: every op that moved memory."""
        return self.measurement.bytes_by_op

    @property
    def unsupported(self) -> dict[str, int]:
        """Operators that ran with no FLOP formula, and how many times."""
        return dict(self.measurement.unsupported)
