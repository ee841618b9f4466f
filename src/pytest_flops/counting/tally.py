"""What a counter counted: per chain of module rows as the ops ran, per row when read.

An op adds to its chain's entries (the module rows it ran under, ``Global``
implied); a row's :class:`Counts` are the sum over the chains it is in,
worked out when read. :meth:`Tally.to_measurement` freezes them into a
:class:`~pytest_flops.Measurement` under portable op names.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

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
    """What the ops of one row counted, summed from a tally's calls when read."""

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

    def to_module_flops(self, names: dict[int, str]) -> ModuleFlops:
        """This row as a measurement's, ops named from ``names`` (by ``id``: see
        :meth:`Tally.op_names`)."""
        by_precision: dict[str, dict[str, int]] = {}
        for (op, precision), flops in self.precisions.items():
            name = names[id(op)]
            counts = by_precision.setdefault(PORTABLE_NAMES.get(name, name), {})
            counts[precision] = counts.get(precision, 0) + flops
        return ModuleFlops(
            forward=self.phases[FORWARD],
            backward=self.phases[BACKWARD],
            recompute=self.phases[RECOMPUTE],
            by_op=portable_ops({names[id(op)]: n for op, n in self.flops.items()}),
            communication={
                op: Traffic(calls=calls, bytes=size) for op, (calls, size) in self.traffic.items()
            },
            bytes_forward=self.byte_phases[FORWARD],
            bytes_backward=self.byte_phases[BACKWARD],
            bytes_recompute=self.byte_phases[RECOMPUTE],
            bytes_by_op=portable_ops({names[id(op)]: n for op, n in self.bytes.items()}),
            flops_by_precision=by_precision,
        )


@dataclass(slots=True)
class Tally:
    """The counts of one counting block, as the ops ran, and the ops that ran uncounted.

    A call adds to one entry, that of its chain, op, phase and precision: a
    dictionary update keyed by the op's ``id`` (an op's own ``__hash__`` is
    Python code, and ops live as long as torch). The rows' :class:`Counts` are
    summed when read.
    """

    # (chain, id(op), phase, precision) -> [FLOPs (None: no formula), bytes]; the
    # precision is None where no FLOPs were counted. Updated in place: a call hashes
    # its key once.
    calls: dict[tuple[Chain, int, int, str | None], list[Any]] = field(default_factory=dict)
    traffic: dict[tuple[Chain, str], list[int]] = field(default_factory=dict)  # calls, bytes
    ops: dict[int, FlopTarget] = field(default_factory=dict)  # by id
    chains: dict[Chain, None] = field(default_factory=dict)  # in the order they first counted
    unsupported: Counter[str] = field(default_factory=Counter)

    def add_call(
        self,
        chain: Chain,
        op: FlopTarget,
        phase: int,
        flops: int | None,
        size: int,
        precision: str | None,
    ) -> None:
        """One call of ``op`` in ``phase`` under ``chain``: its FLOPs (None: no formula, so
        not listed among the ops that count FLOPs), bytes accessed and precision."""
        key = (chain, id(op), phase, precision)
        entry = self.calls.get(key)
        if entry is None:
            self.ops[id(op)] = op
            self.chains[chain] = None
            self.calls[key] = [flops, size]
            return
        if flops is not None:
            counted = entry[0]
            entry[0] = flops if counted is None else counted + flops
        entry[1] += size

    def add_traffic(self, chain: Chain, op: str, size: int) -> None:
        """One call of the collective ``op`` that moved ``size`` bytes."""
        self.chains[chain] = None
        traffic = self.traffic.setdefault((chain, op), [0, 0])
        traffic[0] += 1
        traffic[1] += size

    def add(self, other: Tally) -> None:
        for (chain, op_id, phase, precision), (flops, size) in other.calls.items():
            self.add_call(chain, other.ops[op_id], phase, flops, size, precision)
        for (chain, op), (calls, size) in other.traffic.items():
            self.chains[chain] = None
            traffic = self.traffic.setdefault((chain, op), [0, 0])
            traffic[0] += calls
            traffic[1] += size
        self.unsupported.update(other.unsupported)

    def rows(self) -> defaultdict[str, Counts]:
        """Each row's counts: the sum over the chains it is in (``Global`` is in every one)."""
        calls: dict[Chain, list[tuple[FlopTarget, int, str | None, int | None, int]]] = {
            chain: [] for chain in self.chains
        }
        for (chain, op_id, phase, precision), (flops, size) in self.calls.items():
            calls[chain].append((self.ops[op_id], phase, precision, flops, size))
        traffic: dict[Chain, list[tuple[str, int, int]]] = {chain: [] for chain in self.chains}
        for (chain, name), (count, size) in self.traffic.items():
            traffic[chain].append((name, count, size))
        rows: defaultdict[str, Counts] = defaultdict(Counts)
        for chain in self.chains:
            for path in (GLOBAL, *chain):
                counts = rows[path]
                for op, phase, precision, flops, size in calls[chain]:
                    if flops is not None:
                        counts.flops[op] += flops
                        counts.phases[phase] += flops
                        if precision is not None:
                            counts.precisions[op, precision] += flops
                    if size:
                        counts.bytes[op] += size
                        counts.byte_phases[phase] += size
                for name, count, size in traffic[chain]:
                    counts.traffic[name][0] += count
                    counts.traffic[name][1] += size
        return rows

    def op_names(self) -> dict[int, str]:
        """Each op's name, by ``id``: worked out once, not once per row."""
        return {op_id: op_name(op) for op_id, op in self.ops.items()}

    def total_flops(self) -> int:
        return sum(flops for flops, _ in self.calls.values() if flops is not None)

    def to_measurement(self, world: World | None) -> Measurement:
        names = self.op_names()
        modules = {path: counts.to_module_flops(names) for path, counts in self.rows().items()}
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
