"""The counted data of one measurement, and its diff (its dict form: :mod:`pytest_flops.codec`).

A :class:`Measurement` is what a ``with flops(...)`` block (or a whole
:class:`~pytest_flops.FlopCounterMode` session) produced: FLOPs and bytes accessed
per module path and operator, split into forward, backward and recompute (forward
work an activation checkpoint re-ran during backward), and the operators that ran
with no formula. Immutable plain data: compared, stored, shipped between workers.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from pytest_flops.roofline import Gpu, Roofline, row_roofline
from pytest_flops.validation import SnapshotFormatError

if TYPE_CHECKING:
    from pytest_flops.codec import Tolerance

GLOBAL = "Global"
"""The row that holds everything a measurement counted, whatever module ran it."""

DEFAULT_NAME = "default"
"""The name of a measurement whose ``with flops(...)`` block gave none."""

# The units of a measurement's numbers (:func:`pytest_flops.codec.numbers`), as a
# :class:`DiffRow` names them; an op's FLOPs at one precision are "<precision> FLOP"
FLOP = "FLOP"  # an op's FLOPs in a module row
BYTES_ACCESSED = "bytes accessed"  # the bytes an op read and wrote in memory
COMMUNICATED = "bytes"  # the bytes a collective moved between ranks
CALLS = "calls"  # how many times a collective ran
FLOP_PER_PHASE = "FLOP per phase"  # a module row's forward, backward and recompute
BYTES_PER_PHASE = "bytes accessed per phase"
UNSUPPORTED_CALLS = "calls with no formula"
WORLD = "world"  # its rank, size and mesh dimensions
OPERATOR_UNITS = frozenset({FLOP, BYTES_ACCESSED, COMMUNICATED, CALLS})
"""What :attr:`MeasurementDiff.rows` shows per operator (FLOPs by precision split FLOPs)."""


def precision_unit(precision: str) -> str:
    """The unit of an op's FLOPs at ``precision``: ``"tf32 FLOP"``."""
    return f"{precision} {FLOP}"


def is_precision(unit: str) -> bool:
    """Whether ``unit`` is an op's FLOPs at one precision (which split its FLOPs)."""
    return unit.endswith(f" {FLOP}")


__all__ = [
    "BYTES_ACCESSED", "BYTES_PER_PHASE", "CALLS", "COMMUNICATED", "DEFAULT_NAME", "FLOP",
    "FLOP_PER_PHASE", "GLOBAL", "OPERATOR_UNITS", "UNSUPPORTED_CALLS", "WORLD",
    "DiffRow", "Measurement", "MeasurementDiff", "ModuleFlops", "SnapshotFormatError",
    "Traffic", "World", "is_precision", "module_order", "precision_unit", "relative_change",
    "relative_text",
]  # fmt: skip


@dataclass(frozen=True, kw_only=True)
class Traffic:
    """What one communication op moved: how many times it ran, and its bytes in all."""

    calls: int = 0
    bytes: int = 0

    def __add__(self, other: Traffic) -> Traffic:
        return Traffic(calls=self.calls + other.calls, bytes=self.bytes + other.bytes)


@dataclass(frozen=True, kw_only=True)
class World:
    """The process group a measurement ran in: this rank of ``size``, on ``mesh``."""

    rank: int
    size: int
    mesh: Mapping[str, int] = field(default_factory=dict)  # dimension name -> size

    def __str__(self) -> str:
        mesh = " x ".join(f"{name} {size}" for name, size in self.mesh.items())
        return f"rank {self.rank} of {self.size}" + (f" (mesh {mesh})" if mesh else "")

    def to_dict(self) -> dict[str, Any]:
        return {"rank": self.rank, "size": self.size, "mesh": dict(self.mesh)}

    @classmethod
    def from_dict(cls, data: object, *, where: str) -> World:
        from pytest_flops.codec import world_from_dict

        return world_from_dict(data, where=where)


@dataclass(frozen=True, kw_only=True)
class ModuleFlops:
    """FLOPs counted inside one module path (or ``"Global"`` for everything), the
    communication ops that ran there, and the bytes its ops accessed in memory.

    ``backward`` is gradient work only; ``recompute`` is the forward work an
    activation checkpoint re-ran during backward. The bytes split the same way.
    """

    forward: int = 0
    backward: int = 0
    by_op: Mapping[str, int] = field(default_factory=dict)
    communication: Mapping[str, Traffic] = field(default_factory=dict)
    recompute: int = 0
    bytes_forward: int = 0
    bytes_backward: int = 0
    bytes_recompute: int = 0
    bytes_by_op: Mapping[str, int] = field(default_factory=dict)
    # {op: {precision: flops}}: the peak each op's FLOPs run at (the roofline's input)
    flops_by_precision: Mapping[str, Mapping[str, int]] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return self.forward + self.backward + self.recompute

    @property
    def bytes_accessed(self) -> int:
        return self.bytes_forward + self.bytes_backward + self.bytes_recompute

    def __add__(self, other: ModuleFlops) -> ModuleFlops:
        return ModuleFlops(
            forward=self.forward + other.forward,
            backward=self.backward + other.backward,
            recompute=self.recompute + other.recompute,
            by_op=_summed(self.by_op, other.by_op, 0),
            communication=_summed(self.communication, other.communication, Traffic()),
            bytes_forward=self.bytes_forward + other.bytes_forward,
            bytes_backward=self.bytes_backward + other.bytes_backward,
            bytes_recompute=self.bytes_recompute + other.bytes_recompute,
            bytes_by_op=_summed(self.bytes_by_op, other.bytes_by_op, 0),
            flops_by_precision={
                op: _summed(
                    self.flops_by_precision.get(op, {}), other.flops_by_precision.get(op, {}), 0
                )
                for op in _ordered_union(self.flops_by_precision, other.flops_by_precision)
            },
        )


@dataclass(frozen=True, kw_only=True)
class Measurement:
    """FLOPs per module and operator, forward/backward/recompute split, and blind spots.

    ``modules`` always holds ``"Global"``; the other keys are module paths such
    as ``"ResNet.layer1"``. ``unsupported`` maps an operator that ran with no
    formula to how many times it ran. ``world`` is the process group it ran in,
    if any: its FLOPs and communication are one rank's.

    ``bytes_recorded`` is False for a measurement read from a snapshot written
    before bytes accessed were stored (format 3 and older): its bytes are not
    known, which is not zero, and it compares on FLOPs alone.

    ``tokens`` (from ``flops(model, tokens=N)``) and ``parameters`` (of the
    models passed) are what the step processed and with how many weights: the
    report reads FLOPs per token from them. ``notes`` name the conventions a
    count on stand-ins used (``pytest_flops.count``). None of the three is a
    count: snapshots do not store them and ``==`` ignores them.
    """

    modules: Mapping[str, ModuleFlops] = field(default_factory=lambda: {GLOBAL: ModuleFlops()})
    unsupported: Mapping[str, int] = field(default_factory=dict)
    world: World | None = None
    bytes_recorded: bool = True
    tokens: int | None = field(default=None, compare=False)
    parameters: int | None = field(default=None, compare=False)
    notes: tuple[str, ...] = field(default=(), compare=False)

    @property
    def total(self) -> int:
        return self.modules[GLOBAL].total

    @property
    def forward(self) -> int:
        return self.modules[GLOBAL].forward

    @property
    def backward(self) -> int:
        """Gradient work only: recomputed forward work is :attr:`recompute`."""
        return self.modules[GLOBAL].backward

    @property
    def recompute(self) -> int:
        """Forward work that activation checkpointing re-ran during backward."""
        return self.modules[GLOBAL].recompute

    @property
    def model_flops(self) -> int:
        """Forward plus backward: the FLOPs of the step itself, recompute left out (MFU's)."""
        return self.forward + self.backward

    @property
    def flops_per_token(self) -> float | None:
        """Model FLOPs (recompute left out) per token; None without ``tokens``."""
        return self.model_flops / self.tokens if self.tokens else None

    @property
    def by_op(self) -> dict[str, int]:
        return dict(self.modules[GLOBAL].by_op)

    @property
    def by_module(self) -> dict[str, dict[str, int]]:
        """FLOPs by op of each module row that counted some (a row may hold bytes only)."""
        return {
            path: dict(m.by_op) for path, m in self.modules.items() if path != GLOBAL and m.by_op
        }

    @property
    def bytes_accessed(self) -> int:
        """Bytes the ops read and wrote in memory, every phase (communication apart)."""
        return self.modules[GLOBAL].bytes_accessed

    @property
    def bytes_by_op(self) -> dict[str, int]:
        """``{"aten.mm": bytes, "aten.add": bytes, ...}``: every op that moved memory."""
        return dict(self.modules[GLOBAL].bytes_by_op)

    @property
    def communication(self) -> dict[str, Traffic]:
        """``{"_c10d_functional.all_reduce": Traffic(calls=2, bytes=4096), ...}``"""
        return dict(self.modules[GLOBAL].communication)

    @property
    def communication_bytes(self) -> int:
        return sum(traffic.bytes for traffic in self.modules[GLOBAL].communication.values())

    def truncated(self, depth: int) -> Measurement:
        """Keep module paths at most ``depth`` levels deep (``"A.b"`` is depth 2)."""
        modules = {
            path: counts
            for path, counts in self.modules.items()
            if path == GLOBAL or path.count(".") + 1 <= depth
        }
        return replace(self, modules=modules)

    def without_communication(self) -> Measurement:
        """The same FLOPs, as a snapshot from before communication was recorded holds them."""
        modules = {path: replace(m, communication={}) for path, m in self.modules.items()}
        return replace(self, modules=modules, world=None)

    def without_bytes(self) -> Measurement:
        """The same FLOPs with bytes not recorded, as a snapshot from before bytes were
        stored holds them (so without the rows of modules that only moved bytes)."""
        modules = {
            path: ModuleFlops(
                forward=m.forward,
                backward=m.backward,
                recompute=m.recompute,
                by_op=m.by_op,
                communication=m.communication,
            )
            for path, m in self.modules.items()
            if path == GLOBAL or m.by_op or m.communication
        }
        return replace(self, modules=modules, bytes_recorded=False)

    def roofline(self, gpu: str | Gpu, *, module: str = GLOBAL) -> Roofline:
        """The roofline time of this measurement (or of one ``module`` row) on ``gpu``, a
        name of :data:`pytest_flops.roofline.GPUS` (another is a ValueError listing them):
        for comparing two versions of a step, not for predicting wall time."""
        return row_roofline(self.modules[module], gpu)

    def with_recompute_in_backward(self) -> Measurement:
        """The same FLOPs, as a snapshot from before recompute was its own phase holds them."""
        modules = {
            path: replace(
                m,
                backward=m.backward + m.recompute,
                recompute=0,
                bytes_backward=m.bytes_backward + m.bytes_recompute,
                bytes_recompute=0,
            )
            for path, m in self.modules.items()
        }
        return replace(self, modules=modules)

    def __add__(self, other: Measurement) -> Measurement:
        """Both counts, row by row; both must come from the same world (or none)."""
        if self.world is not None and other.world is not None and self.world != other.world:
            raise ValueError(
                f"cannot add measurements of two worlds ({self.world} and {other.world}): "
                "measure each under a name of its own"
            )
        modules: dict[str, ModuleFlops] = dict(self.modules)
        for path, theirs in other.modules.items():
            modules[path] = modules.get(path, ModuleFlops()) + theirs
        return Measurement(
            modules=modules,
            unsupported=_summed(self.unsupported, other.unsupported, 0),
            world=self.world or other.world,
            bytes_recorded=self.bytes_recorded and other.bytes_recorded,
            tokens=_summed_tokens(self.tokens, other.tokens),
            parameters=_same_parameters(self.parameters, other.parameters),
        )

    def diff(self, after: Measurement, *, tolerance: Tolerance | None = None) -> MeasurementDiff:
        """What changed going from ``self`` (the stored baseline) to ``after``: each number
        of :func:`~pytest_flops.codec.numbers` that moved (beyond its ``tolerance``), bytes
        and precisions only where both sides recorded them."""
        from pytest_flops.codec import Tolerance, moved_numbers, numbers

        with_bytes = self.bytes_recorded and after.bytes_recorded
        return moved_numbers(
            numbers(self, with_bytes=with_bytes),
            numbers(after, with_bytes=with_bytes),
            tolerance=tolerance or Tolerance(),
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict with deterministic key order and exact integers
        (:func:`pytest_flops.codec.measurement_dict`)."""
        from pytest_flops.codec import measurement_dict

        return measurement_dict(self)

    @classmethod
    def from_dict(cls, data: object, *, where: str) -> Measurement:
        """Parse :meth:`to_dict` output; ``where`` names the source in errors."""
        from pytest_flops.codec import measurement_from_dict

        return measurement_from_dict(data, where=where)


@dataclass(frozen=True, kw_only=True)
class DiffRow:
    module: str  # a module row; "" for the unsupported calls and the world
    op: str  # an operator; a phase for the units "per phase"; rank, size or a mesh dimension
    before: int
    after: int
    unit: str = FLOP  # one of the units above, or an op's FLOPs at a precision ("tf32 FLOP")

    @property
    def delta(self) -> int:
        return self.after - self.before


@dataclass(frozen=True, kw_only=True)
class MeasurementDiff:
    """Every number that moved: FLOPs per op, bytes accessed per op, then the others, each
    largest change first."""

    moved: tuple[DiffRow, ...]

    @property
    def rows(self) -> tuple[DiffRow, ...]:
        """Each (module, operator) count that moved: FLOPs, bytes accessed, and a
        collective's bytes and calls (:data:`OPERATOR_UNITS`)."""
        return tuple(row for row in self.moved if row.unit in OPERATOR_UNITS)


def relative_change(before: int, after: int) -> float:
    """``(after - before) / before``; infinite when growing from zero."""
    if before == 0:
        return 0.0 if after == 0 else float("inf")
    return (after - before) / before


def relative_text(before: int, after: int) -> str:
    """The relative change as people read it: ``+10.00%``, ``<+0.01%``, ``0%``, ``from 0``."""
    ratio = relative_change(before, after)
    text = "0%" if before == after else "from 0" if ratio == float("inf") else f"{ratio:+.2%}"
    if text in ("+0.00%", "-0.00%"):  # too small for two decimals, and not no change
        return "<+0.01%" if after > before else ">-0.01%"
    return text


def _summed_tokens(a: int | None, b: int | None) -> int | None:
    """The tokens of the blocks that gave them; None if none did."""
    return None if a is None and b is None else (a or 0) + (b or 0)


def _same_parameters(a: int | None, b: int | None) -> int | None:
    """The parameter count both agree on (or the one given); None if they differ."""
    if a is None or b is None:
        return a if b is None else b
    return a if a == b else None


def _summed(a: Mapping[str, Any], b: Mapping[str, Any], zero: Any) -> dict[str, Any]:
    summed = dict(a)
    for key, value in b.items():
        summed[key] = summed.get(key, zero) + value
    return summed


def module_order(path: str) -> tuple[bool, list[str | int]]:
    """``"Global"`` first, then paths with their numbers compared as numbers.

    A change repeated in every block of a 12-layer model then lists
    ``blocks.2`` before ``blocks.10``.
    """
    parts = re.split(r"(\d+)", path)  # text, number, text, ...: alike types line up
    return path != GLOBAL, [int(part) if i % 2 else part for i, part in enumerate(parts)]


def _ordered_union(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    return list(dict.fromkeys([*a, *b]))
