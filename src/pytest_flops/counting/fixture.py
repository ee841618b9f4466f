"""The object behind the ``flops`` fixture; import it to annotate ``flops: Flops``."""

from __future__ import annotations

import itertools
import linecache
import sys
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import replace
from functools import reduce
from pathlib import Path
from types import FrameType, TracebackType
from typing import NoReturn

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
    they can reach no snapshot. A block made by ``flops(model)`` but never
    entered with ``with`` fails the test, naming its line.
    """

    def __init__(self) -> None:
        self._measurements: dict[str, Measurement] = {}
        self._devices: set[str] = set()
        # Held while a block counts: acquiring it checks and claims in one step,
        # also against a block opened in another thread.
        self._counting = threading.Lock()
        self._closed: str | None = None  # why blocks are refused from now on
        self._unentered: dict[_Block, str] = {}  # blocks made but not entered yet: where

    def __call__(
        self, *models: Models, name: str = DEFAULT_NAME, tokens: int | None = None
    ) -> AbstractContextManager[Flops]:
        """A block that counts into measurement ``name``.

        With a model, the rows of that instance's calls and its submodules' are
        kept, named from its class (``ResNet``, ``ResNet.layer1``, ...); the
        FLOPs of any other module (another instance of the same class, an EMA
        copy) count in ``"Global"`` only. A compiled model counts as the module
        it compiled. Several models keep rows for each when their class names
        differ; name them otherwise: ``flops({"student": s, "teacher": t})``.
        Without a model only the ``"Global"`` row is kept.

        ``tokens`` is how many tokens the step processes: the measurement's
        ``flops_per_token`` divides its model FLOPs (recompute left out) by it.
        """
        if not isinstance(name, str) or not name:
            raise TypeError(f"flops(name=...): expected a non-empty string, got {name!r}")
        if tokens is not None and (type(tokens) is not int or tokens <= 0):
            raise TypeError(f"flops(tokens=...): expected a positive int, got {tokens!r}")
        chosen: Models = models[0] if len(models) == 1 else list(models)  # type: ignore[arg-type]
        roots = root_names(chosen)  # checks them here, where the mistake is
        if self._closed is not None:
            raise RuntimeError(
                f"flops: a block opened after the test's call phase (in a fixture's teardown) "
                f"is not measured: {self._closed}. Measure in the test, or in a fixture "
                f"before the test runs."
            )
        block = _Block(self, self._block(chosen, roots, name, tokens))
        self._unentered[block] = _call_site(sys._getframe(1))
        return block

    def __enter__(self) -> NoReturn:
        raise TypeError(
            "`with flops:` is missing its call: write `with flops(model):` to count a "
            "model with a row per submodule, or `with flops():` to count the Global row only"
        )

    def __exit__(self, *exc_info: object) -> None:
        """Never reached: :meth:`__enter__` raises; defined so that `with` calls it."""

    def _entered(self, block: _Block) -> None:
        self._unentered.pop(block, None)

    def _close(self, reason: str) -> None:
        """Refuse blocks from now on; the plugin calls it when the test's call phase ends.

        A block made during the test but never entered fails it, naming its line,
        and so does a block still open (entered in a fixture, left in its
        teardown): what it counts after this could never be compared. Neither
        fails a test that is failing already (its own error is the one to read).
        """
        self._closed = reason
        unentered, self._unentered = list(self._unentered.values()), {}
        if sys.exc_info()[1] is not None:
            return
        if self._counting.locked():
            raise RuntimeError(
                "flops: a `with flops(...)` block was still open when the test's call ended "
                "(entered in a fixture and left in its teardown?), so what it counts could "
                "not be compared with the snapshot. Leave the block before the fixture "
                "yields, or measure in the test."
            )
        if unentered:
            sites = "\n".join(f"  {site}" for site in unentered)
            raise RuntimeError(
                f"flops: {len(unentered)} block(s) made but never entered with `with`, so "
                f"nothing in them was measured:\n{sites}\n"
                "Write `with flops(model):` and put the code to count inside the block."
            )

    @contextmanager
    def _block(
        self,
        models: Models,
        roots: dict[torch.nn.Module, str] | None,
        name: str,
        tokens: int | None,
    ) -> Iterator[Flops]:
        if not self._counting.acquire(blocking=False):
            raise RuntimeError(
                "flops: a `with flops(...)` block of this test is already open: blocks "
                "cannot be nested (the inner block's FLOPs would be counted twice) nor open "
                "in two threads at once; close the open block first"
            )
        try:
            # a test measures what it runs: its triton kernels are launched too
            with FlopCounterMode(display=False, models=models, skip_unsupported=True) as mode:
                yield self
            counted = replace(
                mode.to_measurement(),
                tokens=tokens,
                parameters=None if roots is None else _parameter_count(roots),
            )
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
    def recompute(self) -> int:
        """Forward work that activation checkpointing re-ran during backward."""
        return self.measurement.recompute

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
        """Bytes the measured ops read and wrote in memory, every phase."""
        return self.measurement.bytes_accessed

    @property
    def bytes_by_op(self) -> dict[str, int]:
        """``{"aten.mm": bytes, "aten.add": bytes, ...}``: every op that moved memory."""
        return self.measurement.bytes_by_op

    @property
    def unsupported(self) -> dict[str, int]:
        """Operators that ran with no FLOP formula, and how many times."""
        return dict(self.measurement.unsupported)


def _parameter_count(models: Iterable[torch.nn.Module]) -> int:
    """The elements of the models' parameters, each shared one once (FSDP2's: unsharded)."""
    unique = {id(p): p for model in models for p in model.parameters()}
    return sum(p.numel() for p in unique.values())


class _Block(AbstractContextManager[Flops]):
    """One ``flops(...)`` block: tells its :class:`Flops` when it is entered."""

    def __init__(self, flops: Flops, counting: AbstractContextManager[Flops]) -> None:
        self._flops = flops
        self._counting = counting

    def __enter__(self) -> Flops:
        self._flops._entered(self)
        return self._counting.__enter__()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool | None:
        return self._counting.__exit__(exc_type, exc, traceback)


def _call_site(frame: FrameType) -> str:
    """``tests/test_model.py:12: flops(model)``: the caller's line, relative to the
    current directory where it is under it."""
    code, line = frame.f_code, frame.f_lineno
    path = Path(code.co_filename)
    try:
        shown = str(path.relative_to(Path.cwd()))
    except ValueError:
        shown = str(path)
    source = linecache.getline(code.co_filename, line).strip()
    return f"{shown}:{line}: {source}" if source else f"{shown}:{line}"
