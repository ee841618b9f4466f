"""The counting dispatch mode: runs each op, counts it with the formula table.

:class:`FlopCounterMode` is a drop-in for ``torch.utils.flop_counter.FlopCounterMode``
that reads :mod:`pytest_flops.counting.formulas` (never torch's registry for aten ops),
splits every count into forward, backward and recompute, lists the ops it cannot count,
and counts the bodies of higher-order operators
(:mod:`pytest_flops.counting.higher_order`). Which module rows an op's FLOPs go to is
:mod:`pytest_flops.counting.module_tracker`'s answer.

Each op also counts the bytes it accesses in memory
(:mod:`pytest_flops.counting.bytes_accessed`), and its FLOPs by precision
(:mod:`pytest_flops.counting.precision`); what the counts are is
:mod:`pytest_flops.counting.tally`, and the phase of an op
:mod:`pytest_flops.counting.phase`.
"""

from __future__ import annotations

import warnings
from collections import ChainMap, Counter, defaultdict
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from typing import Any, Generic, TypeVar

import torch
from torch._ops import OpOverload, OpOverloadPacket
from torch._subclasses.fake_tensor import FakeTensor

from pytest_flops.counting.bytes_accessed import GENERIC, ByteRule, bytes_accessed
from pytest_flops.counting.distributed import (
    current_world,
    in_sharding_propagation,
    is_dtensor_call,
    propagation_runs_uncounted,
    traffic_bytes,
)
from pytest_flops.counting.eager import compiled_code_runs_eagerly
from pytest_flops.counting.formulas import (
    FLOP_FORMULAS,
    FlopFormula,
    FlopTarget,
    as_table_formula,
    table_formula,
    user_formula,
)
from pytest_flops.counting.higher_order import dispatch_higher_order
from pytest_flops.counting.meta_as_cpu import cpu_kernels_on_meta
from pytest_flops.counting.module_tracker import Models, ModuleTracker, root_names
from pytest_flops.counting.op_kinds import OpKind, OpPlan, plan
from pytest_flops.counting.phase import phase
from pytest_flops.counting.precision import flop_precision
from pytest_flops.counting.reentrant import ReentrantMode
from pytest_flops.counting.tally import FORWARD, Counts, Tally, op_name
from pytest_flops.measurement import Measurement, World
from pytest_flops.tables import flop_table

T = TypeVar("T")

__all__ = ["FlopCounterMode", "op_name", "warm_up"]

_current_autograd_node: Callable[[], Any] = torch._C._current_autograd_node

_is_grad_enabled: Callable[[], bool] = torch.is_grad_enabled
_SUBCLASS_METADATA, _MOVES_NOTHING = OpKind.SUBCLASS_METADATA, OpKind.MOVES_NOTHING
_COUNTED, _UNCOUNTED = OpKind.COUNTED, OpKind.UNCOUNTED

_WHILE_COUNTING = (compiled_code_runs_eagerly, propagation_runs_uncounted, cpu_kernels_on_meta)
"""What holds while a mode counts (see each one's module)."""


class _RowView(Generic[T]):
    """One of the counts of every row (``{row: ...}``, as torch's counter's tables hold
    them), summed from a mode's counts when read."""

    def __init__(self, column: Callable[[Counts], T], doc: str) -> None:
        self.column = column
        self.__doc__ = doc

    def __get__(self, mode: FlopCounterMode, owner: type | None = None) -> defaultdict[str, T]:
        column = self.column
        table: defaultdict[str, T] = defaultdict(lambda: column(Counts()))
        table.update((path, column(counts)) for path, counts in mode._tally.rows().items())
        return table


class FlopCounterMode(ReentrantMode):
    """Counts FLOPs of everything run inside ``with FlopCounterMode() as mode:``.

    A drop-in for ``torch.utils.flop_counter.FlopCounterMode``: ``flop_counts``
    maps ``"Global"`` and module paths (``"ResNet.layer1"``) to
    ``{torch.ops.aten.X: flops}``. On top of it, :attr:`phase_counts` splits
    each row into forward, backward and recompute, :attr:`bytes_counts` holds
    the bytes each op accessed, :attr:`unsupported_ops` lists the ops that ran
    with no formula, :attr:`traffic_counts` the calls and bytes of every
    collective, and :meth:`to_measurement` freezes it all. Under a process
    group the counts are one rank's (:mod:`pytest_flops.counting.distributed`).

    ``models`` (keyword only) keeps module rows of those instances only, named
    from their class (or ``{row name: model}``): another instance of the same
    class, an EMA copy say, counts in ``Global`` alone. Entering a mode again
    after it exited starts a fresh count, as torch's does; nesting it counts
    once. ``skip_unsupported=True`` launches triton kernels, which are
    otherwise counted without being launched, as in torch's counter.
    """

    # higher-order operators (FlexAttention, cond, scan...) reach it: see higher_order.py
    supports_higher_order_operators = True

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        # torch (2.14) wraps a mode's __torch_dispatch__ in torch._dynamo.disable,
        # which imports torch._dynamo (seconds) on the first op. Nothing compiles
        # inside a counting block anyway: compiled code runs eagerly there (eager.py).
        return False

    def __init__(
        self,
        mods: torch.nn.Module | list[torch.nn.Module] | None = None,
        depth: int = 2,
        display: bool = True,
        custom_mapping: Mapping[OpOverloadPacket, FlopFormula] | None = None,
        *,
        models: Models | None = None,
        skip_unsupported: bool = False,
    ) -> None:
        super().__init__()
        if mods is not None:
            warnings.warn(
                "mods argument is not needed anymore, you can stop passing it",
                UserWarning,
                stacklevel=2,
            )
        self.depth = depth
        self.display = display
        self.skip_unsupported = skip_unsupported
        # The table is read live, so formulas registered after this mode was
        # created count from its next ``with`` block on.
        self.formulas: ChainMap[FlopTarget | str, FlopFormula] = ChainMap(
            _as_table(custom_mapping or {}), FLOP_FORMULAS
        )
        self._tally = Tally()  # the counts of the last (or current) block
        self.world: World | None = None  # where the block ran, if in a process group
        # by id(op): ops live as long as torch, and their own __hash__ is Python code
        self._ops: dict[int, OpPlan] = {}
        self._modules = ModuleTracker(root_names(models))
        self._while_counting = ExitStack()

    # -- results ------------------------------------------------------------------

    # read-only views, summed from the counts when read
    flop_counts = _RowView(lambda counts: counts.flops, "``{row: {op: flops}}``")
    phase_counts = _RowView(
        lambda counts: counts.phases, "``{row: [forward, backward, recompute flops]}``"
    )
    traffic_counts = _RowView(
        lambda counts: counts.traffic, "``{row: {collective: [calls, bytes]}}``"
    )
    bytes_counts = _RowView(lambda counts: counts.bytes, "``{row: {op: bytes accessed}}``")

    @property
    def unsupported_ops(self) -> Counter[str]:
        """``{op name: calls}`` of the ops that ran with no formula."""
        return self._tally.unsupported

    def get_total_flops(self) -> int:
        return self._tally.total_flops()

    def get_flop_counts(self) -> dict[str, dict[Any, int]]:
        return {module: dict(counts) for module, counts in self.flop_counts.items()}

    def get_unsupported_ops(self) -> Counter[str]:
        """A copy of :attr:`unsupported_ops`: ``{op name: calls}`` of what ran uncounted."""
        return Counter(self.unsupported_ops)

    def to_measurement(self) -> Measurement:
        """Freeze the counts into a :class:`~pytest_flops.Measurement`."""
        return self._tally.to_measurement(self.world)

    def get_table(self, depth: int | None = None) -> str:
        """torch's table of FLOPs by module row and op, rows ``depth`` deep at most."""
        rows = {
            path: {op_name(op): n for op, n in ops.items()}
            for path, ops in self.flop_counts.items()
        }
        return flop_table(rows, self.depth if depth is None else depth)

    # -- entering and leaving -------------------------------------------------------

    def _start(self) -> None:
        self._tally = Tally()
        self.world = current_world()
        self._ops.clear()
        self._modules.start()
        self._while_counting = ExitStack()
        try:
            for context in _WHILE_COUNTING:
                self._while_counting.enter_context(context())
        except BaseException:
            self._stop()
            raise

    def _stop(self) -> None:
        self._while_counting.close()
        self._modules.stop()

    def __exit__(self, *exc_info: object) -> None:
        super().__exit__(*exc_info)
        if not self._active and self.display:
            print(self.get_table(self.depth))

    # -- dispatch -------------------------------------------------------------------------

    def __torch_dispatch__(
        self,
        func: OpOverload,
        types: tuple[type, ...],
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        # Every op the step runs comes through here: the common kinds are tested first,
        # against module-level names (an enum member's lookup is Python code in 3.11).
        op_plan = self._ops.get(id(func))
        if op_plan is None:
            op_plan = self._ops[id(func)] = plan(func, self._formula)
        kind, formula, bytes_of, listed = op_plan
        if kind is _SUBCLASS_METADATA:  # the subclass answers; a plain tensor (its data) runs
            return NotImplemented if types else func(*args, **(kwargs or {}))
        kwargs = kwargs or {}
        if types:  # a tensor subclass is in the call
            if is_dtensor_call(types):
                return NotImplemented  # DTensor runs it on each rank's shards, counted here
            if in_sharding_propagation():
                return func(*args, **kwargs)  # DTensor working out shapes: no work
        # forward ops (no node executing) answer with one call
        node = _current_autograd_node()
        if node is not None and _is_grad_enabled():
            self._modules.note_node_made_in_backward()
        if kind is _MOVES_NOTHING:  # views: the fast path
            return func(*args, **kwargs)
        if kind is not _COUNTED and kind is not _UNCOUNTED:
            return _dispatch_other(self, func, op_plan, types, args, kwargs)
        out = func(*args, **kwargs)
        flops = None if formula is None else formula(args, kwargs, out)  # None: bytes only
        self._count(listed, node, flops, bytes_of(args, kwargs, out), args)
        return out

    def _formula(self, packet: OpOverloadPacket) -> FlopFormula | None:
        """Ours (or a custom_mapping's); for the user's own ops, one registered with torch."""
        formula = table_formula(self.formulas, packet)
        return formula if formula is not None else user_formula(packet)

    def _record(
        self,
        op: FlopTarget,
        flops: int | None,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        out: Any,
        rule: ByteRule = GENERIC,
    ) -> None:
        """One call's FLOPs (None: no formula) and bytes accessed, into its chain and phase."""
        size = bytes_accessed(rule, args, kwargs, out)
        self._count(op, _current_autograd_node(), flops, size, args)

    def _count(
        self, op: FlopTarget, node: Any, flops: int | None, size: int, args: tuple[Any, ...]
    ) -> None:
        """Add one call of ``op`` (run in autograd ``node``, None in forward) to its chain
        and phase, unless it counted nothing."""
        if flops is None and not size:
            return
        self._tally.add_call(
            self._modules.paths(node),
            op,
            FORWARD if node is None else phase(node),
            flops,
            size,
            flop_precision(op, args) if flops else None,
        )

    def _record_traffic(self, op: str, size: int) -> None:
        self._tally.add_traffic(self._modules.paths(_current_autograd_node()), op, size)


def _dispatch_other(
    mode: FlopCounterMode,
    func: OpOverload,
    plan: OpPlan,
    types: tuple[type, ...],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> Any:
    """The kinds of op other than views and counted ones: rarer, and slower."""
    kind, formula, bytes_of, listed = plan
    if (kind is OpKind.DECOMPOSED or kind is OpKind.UNSUPPORTED) and _runs_its_own_ops(types):
        # Without the mode, the subclass gets the op whole (a jagged tensor's linear and
        # linear_backward), and may run it otherwise than the decomposition: its ops on
        # plain tensors come back here to be counted.
        return NotImplemented
    if kind is OpKind.HIGHER_ORDER:
        return dispatch_higher_order(mode, func, args, kwargs)  # type: ignore[arg-type]
    if kind is OpKind.COMMUNICATION:
        out = func(*args, **kwargs)
        mode._record_traffic(op_name(func._overloadpacket), traffic_bytes(args, out))
        return out
    # a nested matmul has a formula and no decomposition: it counts whole
    if kind is OpKind.DECOMPOSED and (formula is None or not any(map(_is_nested, args))):
        with mode._counting_again():
            out = func.decompose(*args, **kwargs)
        if out is not NotImplemented:
            return out
        kind = OpKind.UNSUPPORTED if formula is None else OpKind.COUNTED
        mode._ops[id(func)] = (kind, formula, bytes_of, listed)
    out = func(*args, **kwargs)
    if formula is None:
        mode._tally.unsupported[str(listed)] += 1
    flops = None if formula is None else formula(args, kwargs, out)
    mode._count(listed, _current_autograd_node(), flops, bytes_of(args, kwargs, out), args)
    return out


def _as_table(mapping: Mapping[OpOverloadPacket, FlopFormula]) -> dict[FlopTarget, FlopFormula]:
    """A ``custom_mapping`` (torch's formulas: shapes, or raw arguments where they ask)
    as the table's formulas."""
    return {
        op: as_table_formula(formula, get_raw=getattr(formula, "_get_raw", False))
        for op, formula in mapping.items()
    }


def warm_up() -> None:
    """Count one tiny step, so the first real block pays for no lazy import or set-up.

    The plugin calls it at the end of collection, outside every test's time.
    """
    with FlopCounterMode(display=False):
        x = torch.ones(2, 2, requires_grad=True)
        torch.nn.functional.linear(x, torch.ones(2, 2)).sum().backward()


def _runs_its_own_ops(types: tuple[type, ...]) -> bool:
    """Whether a tensor subclass in the call runs ops itself: a fake tensor hands them
    back to its mode."""
    return any(not issubclass(cls, FakeTensor) for cls in types)


def _is_nested(value: object) -> bool:
    return isinstance(value, torch.Tensor) and value.is_nested
