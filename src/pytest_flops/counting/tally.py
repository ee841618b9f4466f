"""What a counter counted: per chain of module rows as the ops ran, per row when read.

An op adds to one :class:`Counts`, its chain's (the module rows it ran under,
``Global`` implied); a row's counts are the sum over the chains it is in,
worked out when read. :meth:`Tally.to_measurement` freezes them into a
:class:`~pytest_flops.Measurement` under portable op names.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field

from torch._ops import HigherOrderOperator

from pytest_flops.counting.formulas import FlopTarget, is_triton_kernel
from pytest_flops.measurement import GLOBAL, Measurement, ModuleFlops, Traffic, World
from pytest_flops.portable import PORTABLE_NAMES, portable_ops

__all__ = ["BACKWARD", "FORWARD", "RECOMPUTE", "Chain", "Counts", "Tally", "op_name"]

FORWARD, BACKWARD, RECOMPUTE = range(3)
"""The phases, as indices of :attr:`Counts.phases` and :attr:`Counts.byte_phases`."""

Chain = tuple[str, ...]
"""The module rows an op ran under, outermost first (``Global`` implied)."""


def _by_op() -> defaultdict[FlopTarget, int]:
    return defaultdict(int)


def _phases() -> list[int]:
    return [0, 0, 0]


def _traffic() -> list[int]:
    return [0, 0]  # calls, bytes


@dataclass(slots=True)
class Counts:
    """What the ops of one chain (or, summed, of one row) counted."""

    flops: defaultdict[FlopTarget, int] = field(default_factory=_by_op)
    phases: list[int] = field(default_factory=_phases)  # FLOPs forward, backward, recompute
    # [calls, bytes] of each collective
    traffic: defaultdict[str, list[int]] = field(
        default_factory=lambda: defaultdict(lambda: [0, 0])
    )
    bytes: defaultdict[FlopTarget, int] = field(default_factory=_by_op)  # accessed in memory
    byte_phases: list[int] = field(default_factory=_phases)
    precisions: defaultdict[tuple[FlopTarget, str], int] = field(
        default_factory=lambda: defaultdict(int)
    )  # FLOPs by (op, precision)

    def add_call(
        self, op: FlopTarget, phase: int, *, flops: int | None, size: int, precision: str | None
    ) -> None:
        """One call of ``op`` in ``phase``: its FLOPs (None: no formula, so not listed
        among the ops that count FLOPs), bytes accessed and precision."""
        if flops is not None:
            self.flops[op] += flops
            self.phases[phase] += flops
            if precision is not None:
                self.precisions[op, precision] += flops
        if size:
            self.bytes[op] += size
            self.byte_phases[phase] += size

    def add(self, other: Counts) -> None:
        for op, flops in other.flops.items():
            self.flops[op] += flops
        for op, size in other.bytes.items():
            self.bytes[op] += size
        for key, flops in other.precisions.items():
            self.precisions[key] += flops
        for phase in (FORWARD, BACKWARD, RECOMPUTE):
            self.phases[phase] += other.phases[phase]
            self.byte_phases[phase] += other.byte_phases[phase]
        for name, (calls, size) in other.traffic.items():
            self.traffic[name][0] += calls
            self.traffic[name][1] += size

    def to_module_flops(self) -> ModuleFlops:
        by_precision: dict[str, dict[str, int]] = {}
        for (op, precision), flops in self.precisions.items():
            counts = by_precision.setdefault(portable_op(op), {})
            counts[precision] = counts.get(precision, 0) + flops
        return ModuleFlops(
            forward=self.phases[FORWARD],
            backward=self.phases[BACKWARD],
            recompute=self.phases[RECOMPUTE],
            by_op=portable_ops({op_name(op): n for op, n in self.flops.items()}),
            communication={
                op: Traffic(calls=calls, bytes=size) for op, (calls, size) in self.traffic.items()
            },
            bytes_forward=self.byte_phases[FORWARD],
            bytes_backward=self.byte_phases[BACKWARD],
            bytes_recompute=self.byte_phases[RECOMPUTE],
            bytes_by_op=portable_ops({op_name(op): n for op, n in self.bytes.items()}),
            flops_by_precision=by_precision,
        )


@dataclass(slots=True)
class Tally:
    """The counts of one counting block: by chain, and the ops that ran uncounted."""

    chains: dict[Chain, Counts] = field(default_factory=dict)
    unsupported: Counter[str] = field(default_factory=Counter)

    def counts(self, chain: Chain) -> Counts:
        counts = self.chains.get(chain)
        if counts is None:
            counts = self.chains[chain] = Counts()
        return counts

    def add(self, other: Tally) -> None:
        for chain, counts in other.chains.items():
            self.counts(chain).add(counts)
        self.unsupported.update(other.unsupported)

    def rows(self) -> defaultdict[str, Counts]:
        """Each row's counts: the sum over the chains it is in (``Global`` is in every one)."""
        rows: defaultdict[str, Counts] = defaultdict(Counts)
        for chain, counts in self.chains.items():
            for path in (GLOBAL, *chain):
                rows[path].add(counts)
        return rows

    def total_flops(self) -> int:
        return sum(sum(counts.flops.values()) for counts in self.chains.values())

    def to_measurement(self, world: World | None) -> Measurement:
        modules = {path: counts.to_module_flops() for path, counts in self.rows().items()}
        modules.setdefault(GLOBAL, ModuleFlops())
        return Measurement(modules=modules, unsupported=dict(self.unsupported), world=world)


def op_name(op: FlopTarget) -> str:
    """``aten.mm`` for an op packet, ``higher_order.flex_attention`` for a HOP,
    ``triton.my_kernel`` for a triton kernel."""
    if isinstance(op, HigherOrderOperator):
        return f"{op.namespace}.{op.name()}"
    if is_triton_kernel(op):
        return f"triton.{op.fn.__name__}"
    return str(op)


def portable_op(op: FlopTarget) -> str:
    name = op_name(op)
    return PORTABLE_NAMES.get(name, name)
