"""The counting dispatch mode: runs each op, counts it with the formula table.

:class:`FlopCounterMode` is a drop-in for ``torch.utils.flop_counter.FlopCounterMode``
that reads :mod:`pytest_flops.counting.formulas` (never torch's registry for aten ops),
splits every count into forward and backward, lists the ops it cannot count,
and counts the bodies of higher-order operators (``torch.cond``, ``while_loop``,
``scan``, ``map``...). Which module rows an op's FLOPs go to is
:mod:`pytest_flops.counting.module_tracker`'s answer.

* **Phase**: an op runs in backward when an autograd node is executing.
  Activation-checkpoint recomputation happens there, so it is counted as
  backward work of the recomputed module.
"""

from __future__ import annotations

import warnings
from collections import ChainMap, Counter, defaultdict
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from enum import Enum
from functools import update_wrapper
from typing import Any

import torch
from torch._ops import HigherOrderOperator, OpOverload, OpOverloadPacket
from torch._subclasses.fake_tensor import is_fake
from torch.utils._python_dispatch import TorchDispatchMode, _disable_current_modes
from torch.utils._pytree import tree_leaves

from pytest_flops.counting.bytes_accessed import (
    GENERIC,
    ByteRule,
    byte_rule,
    bytes_accessed,
)
from pytest_flops.counting.distributed import (
    current_world,
    in_sharding_propagation,
    is_collective,
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
    is_uncounted,
    table_formula,
    user_formula,
)
from pytest_flops.counting.meta_as_cpu import cpu_kernels_on_meta
from pytest_flops.counting.module_tracker import Models, ModuleTracker, root_names
from pytest_flops.counting.precision import flop_precision
from pytest_flops.measurement import GLOBAL, Measurement, ModuleFlops, Traffic, World
from pytest_flops.tables import aligned

_current_autograd_node: Callable[[], Any] = torch._C._current_autograd_node

# Metadata queries that tensor subclasses (nested jagged tensors) must answer
# themselves; a mode that handles them breaks the subclass.
_SUBCLASS_METADATA_OPS = frozenset(
    getattr(packet, overload)
    for packet in (
        torch.ops.aten.is_contiguous,
        torch.ops.aten.is_strides_like_format,
        torch.ops.aten.is_non_overlapping_and_dense,
        torch.ops.aten.size,
        torch.ops.aten.sym_size,
        torch.ops.aten.stride,
        torch.ops.aten.sym_stride,
        torch.ops.aten.storage_offset,
        torch.ops.aten.sym_storage_offset,
        torch.ops.aten.numel,
        torch.ops.aten.sym_numel,
        torch.ops.aten.dim,
        torch.ops.prim.layout,
        # absent before torch 2.12
        *(
            [torch.ops.aten.sym_is_contiguous]
            if hasattr(torch.ops.aten, "sym_is_contiguous")
            else []
        ),
    )
    for overload in packet.overloads()
)

_EAGER_KERNEL = torch._C.DispatchKey.CompositeExplicitAutograd


_Counts = tuple[
    defaultdict[FlopTarget, int],
    list[int],
    defaultdict[str, list[int]],
    defaultdict[FlopTarget, int],
    list[int],
    defaultdict[tuple[FlopTarget, str], int],
]
"""Counts by op, forward/backward sums, traffic (calls, bytes) by collective, bytes
accessed by op, their forward/backward sums, and FLOPs by (op, precision)."""

_Chains = dict[tuple[str, ...], _Counts]
"""The counts of the ops run under each chain of module rows (``Global`` implied)."""


class _OpKind(Enum):
    SUBCLASS_METADATA = "subclass metadata"
    HIGHER_ORDER = "higher order"
    COMMUNICATION = "communication"
    COUNTED = "counted"
    UNCOUNTED = "uncounted"
    MOVES_NOTHING = "moves nothing"  # uncounted and a view or allocation: no bytes either
    DECOMPOSED = "decomposed"
    UNSUPPORTED = "unsupported"


class FlopCounterMode(TorchDispatchMode):
    """Counts FLOPs of everything run inside ``with FlopCounterMode() as mode:``.

    A drop-in for ``torch.utils.flop_counter.FlopCounterMode``: ``flop_counts``
    maps ``"Global"`` and module paths (``"ResNet.layer1"``) to
    ``{torch.ops.aten.X: flops}``. On top of it, :attr:`phase_counts` splits
    each row into forward and backward, :attr:`unsupported_ops` lists the ops
    that ran with no formula, :attr:`traffic_counts` the calls and bytes of
    every collective per row, and :meth:`to_measurement` freezes it all. Under
    a process group the counts are one rank's (see :mod:`pytest_flops.counting.distributed`).

    ``models`` (keyword only) keeps module rows of those instances only, named
    from their class (or ``{row name: model}``): another instance of the same
    class, an EMA copy say, counts in ``Global`` alone.

    Entering a mode again after it exited starts a fresh count, as torch's
    does; entering it again while it is active (nesting the same instance)
    keeps counting into the same totals, once.
    """

    # Higher-order operators (FlexAttention, cond, scan...) reach
    # __torch_dispatch__ instead of raising; see _dispatch_higher_order.
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
        # The table is read live, so formulas registered after this mode was
        # created count from its next ``with`` block on.
        self.formulas: ChainMap[FlopTarget | str, FlopFormula] = ChainMap(
            {
                op: as_table_formula(formula, get_raw=getattr(formula, "_get_raw", False))
                for op, formula in (custom_mapping or {}).items()
            },
            FLOP_FORMULAS,
        )
        # An op adds to one entry, its chain's; the rows are summed when read.
        self._chains: _Chains = {}
        self.unsupported_ops: Counter[str] = Counter()
        self.world: World | None = None  # where the block ran, if in a process group
        # by id(op): ops live as long as torch, and their own __hash__ is Python code
        self._op_kinds: dict[int, _OpKind] = {}
        self._op_formulas: dict[int, FlopFormula] = {}  # of the counted ones
        self._byte_rules: dict[int, ByteRule] = {}  # by id(op), as _op_kinds
        self._active = 0
        self._modules = ModuleTracker(root_names(models))
        self._while_counting = ExitStack()

    # -- results ------------------------------------------------------------------

    @property
    def flop_counts(self) -> defaultdict[str, defaultdict[FlopTarget, int]]:
        """``{row: {op: flops}}``, summed from the counts when read."""
        return _rows(self._chains)[0]

    @property
    def phase_counts(self) -> defaultdict[str, list[int]]:
        """``{row: [forward flops, backward flops]}``, summed from the counts when read."""
        return _rows(self._chains)[1]

    @property
    def traffic_counts(self) -> defaultdict[str, defaultdict[str, list[int]]]:
        """``{row: {collective: [calls, bytes]}}``, summed from the counts when read."""
        return _rows(self._chains)[2]

    @property
    def bytes_counts(self) -> defaultdict[str, defaultdict[FlopTarget, int]]:
        """``{row: {op: bytes accessed}}``, summed from the counts when read."""
        return _rows(self._chains)[3]

    def get_total_flops(self) -> int:
        return _total(self._chains)

    def get_flop_counts(self) -> dict[str, dict[Any, int]]:
        return {module: dict(counts) for module, counts in self.flop_counts.items()}

    def to_measurement(self) -> Measurement:
        """Freeze the counts into a :class:`~pytest_flops.Measurement`."""
        flop_counts, phase_counts, traffic_counts, byte_counts, byte_phases, precisions = _rows(
            self._chains
        )
        modules = {
            path: ModuleFlops(
                forward=phase_counts[path][0],
                backward=phase_counts[path][1],
                by_op={op_name(op): flops for op, flops in flop_counts[path].items()},
                communication={
                    op: Traffic(calls=calls, bytes=size)
                    for op, (calls, size) in traffic_counts[path].items()
                },
                bytes_forward=byte_phases[path][0],
                bytes_backward=byte_phases[path][1],
                bytes_by_op={op_name(op): size for op, size in byte_counts[path].items()},
                flops_by_precision=_by_precision(precisions[path]),
            )
            for path in flop_counts
        }
        modules.setdefault(GLOBAL, ModuleFlops())
        return Measurement(
            modules=modules, unsupported=dict(self.unsupported_ops), world=self.world
        )

    def get_table(self, depth: int | None = None) -> str:
        depth = self.depth if depth is None else depth
        total = self.get_total_flops()
        rows: list[tuple[str, str, str]] = [("Module", "FLOP", "% Total")]
        for path, counts in self.flop_counts.items():
            level = 0 if path == GLOBAL else path.count(".") + 1
            if level > depth:
                continue
            flops = sum(counts.values())
            rows.append((" " * level + path, f"{flops:,}", _percent(flops, total)))
            for op, op_flops in sorted(counts.items(), key=lambda kv: -kv[1]):
                rows.append(
                    (" " * (level + 2) + op_name(op), f"{op_flops:,}", _percent(op_flops, total))
                )
        return "\n".join(aligned(rows, right=(False, True, True)))

    # -- entering and leaving -------------------------------------------------------

    def __enter__(self) -> FlopCounterMode:
        if self._active == 0:
            self._chains = {}
            self.unsupported_ops.clear()
            self.world = current_world()
            self._op_kinds.clear()
            self._op_formulas.clear()
            self._byte_rules.clear()
            self._modules.start()
            self._while_counting = ExitStack()
            try:
                self._while_counting.enter_context(compiled_code_runs_eagerly())
                self._while_counting.enter_context(propagation_runs_uncounted())
                self._while_counting.enter_context(cpu_kernels_on_meta())
                super().__enter__()
            except BaseException:
                self._while_counting.close()
                self._modules.stop()
                raise
        self._active += 1
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._active -= 1
        if self._active:
            return
        try:
            super().__exit__(*exc_info)
        finally:
            self._while_counting.close()
            self._modules.stop()
        if self.display:
            print(self.get_table(self.depth))

    @contextmanager
    def _counting_again(self) -> Iterator[None]:
        """Re-push this mode (which dispatch popped) so a decomposition's or a body's ops count."""
        TorchDispatchMode.__enter__(self)
        try:
            yield
        finally:
            TorchDispatchMode.__exit__(self, None, None, None)

    # -- dispatch -------------------------------------------------------------------------

    def __torch_dispatch__(
        self,
        func: OpOverload,
        types: tuple[type, ...],
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        kind = self._op_kinds.get(id(func))
        if kind is None:
            kind = self._op_kinds[id(func)] = self._classify(func)
        if kind is _OpKind.SUBCLASS_METADATA:
            return NotImplemented
        kwargs = kwargs or {}
        if types:  # a tensor subclass is in the call
            if is_dtensor_call(types):
                return NotImplemented  # DTensor runs it on each rank's shards, counted here
            if in_sharding_propagation():
                return func(*args, **kwargs)  # DTensor working out shapes: no work
        # forward ops (no node executing) answer with one call
        if _current_autograd_node() is not None and torch.is_grad_enabled():
            self._modules.note_node_made_in_backward()
        if kind is _OpKind.MOVES_NOTHING:  # views: the fast path
            return func(*args, **kwargs)
        if kind is _OpKind.UNCOUNTED:  # elementwise ops and the like: bytes only
            out = func(*args, **kwargs)
            self._record(func, None, args, kwargs, out)
            return out
        if kind is _OpKind.HIGHER_ORDER:
            return self._dispatch_higher_order(func, args, kwargs)  # type: ignore[arg-type]
        if kind is _OpKind.COMMUNICATION:
            out = func(*args, **kwargs)
            self._record_traffic(op_name(func._overloadpacket), traffic_bytes(args, out))
            return out
        if kind is _OpKind.DECOMPOSED:
            formula = self._formula(func._overloadpacket)
            if formula is not None and any(_is_nested(arg) for arg in args):
                self._op_formulas[id(func)] = formula
                kind = _OpKind.COUNTED  # a nested matmul has a formula, no decomposition
            else:
                with self._counting_again():
                    out = func.decompose(*args, **kwargs)
                if out is not NotImplemented:
                    return out
                kind = self._op_kinds[id(func)] = (
                    _OpKind.UNSUPPORTED if formula is None else _OpKind.COUNTED
                )
                if formula is not None:
                    self._op_formulas[id(func)] = formula
        out = func(*args, **kwargs)
        if kind is _OpKind.COUNTED:
            self._record(func, self._op_formulas[id(func)](args, kwargs, out), args, kwargs, out)
        else:
            self.unsupported_ops[str(func._overloadpacket)] += 1
            self._record(func, None, args, kwargs, out)
        return out

    def _dispatch_higher_order(
        self, hop: HigherOrderOperator, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        """Run a higher-order operator beneath this mode, counting what it runs.

        One with a formula (FlexAttention) counts as a whole. One that runs
        user code (``cond``, ``while_loop``, ``scan``, ``map``,
        ``invoke_subgraph``, checkpoint wrappers...) runs its eager kernel with
        this mode around each body call, so the body's ops count as many times
        as they run, in the module that called it. A ``cond`` whose predicate
        has no value (meta, fake) counts its larger branch: an upper bound.
        Only a HOP whose body cannot be seen is listed as unsupported.
        """
        formula = self.formulas.get(hop)
        if formula is not None:
            out = hop(*args, **kwargs)
            self._record(hop, formula(args, kwargs, out), args, kwargs, out)
            return out
        eager = hop.py_kernels.get(_EAGER_KERNEL)
        bodies = [i for i, arg in enumerate(args) if _is_body(arg)]
        if eager is None or not bodies or _unknown_iterations(hop, args):
            self.unsupported_ops[op_name(hop)] += 1
            return hop(*args, **kwargs)
        if hop is torch.ops.higher_order.cond and _has_no_value(args[0]):
            return self._larger_branch(*args)
        counted = [self._counting_body(arg) if i in bodies else arg for i, arg in enumerate(args)]
        # Below this mode nothing else may run (the eager kernels check): a fake
        # tensor mode's own handler would run a body once, for its shapes only.
        with _disable_current_modes():
            return eager(*counted, **kwargs)

    def _counting_body(self, body: Callable[..., Any]) -> Callable[..., Any]:
        def counted(*args: Any, **kwargs: Any) -> Any:
            with self._counting_again():
                return body(*args, **kwargs)

        return update_wrapper(counted, body, updated=())

    def _larger_branch(
        self, pred: Any, true_fn: Callable[..., Any], false_fn: Callable[..., Any], operands: Any
    ) -> Any:
        """``cond`` with a predicate that has no value: the branch that counts more."""
        branches = []
        for branch in (true_fn, false_fn):
            with self._isolated() as tables, _disable_current_modes(), self._counting_again():
                out = branch(*operands)
            branches.append((_total(tables[0]), out, tables))
        _, out, (chains, unsupported) = max(branches, key=lambda b: b[0])
        for chain, counts in chains.items():
            _add(self._counts(chain), counts)
        self.unsupported_ops.update(unsupported)
        return out

    @contextmanager
    def _isolated(self) -> Iterator[tuple[_Chains, Counter[str]]]:
        """Count into fresh tables, handed out, and restore this mode's afterwards."""
        kept = self._chains, self.unsupported_ops
        fresh: tuple[_Chains, Counter[str]] = ({}, Counter())
        self._chains, self.unsupported_ops = fresh
        try:
            yield fresh
        finally:
            self._chains, self.unsupported_ops = kept

    def _formula(self, packet: OpOverloadPacket) -> FlopFormula | None:
        """Ours (or a custom_mapping's); for the user's own ops, one registered with torch."""
        formula = table_formula(self.formulas, packet)
        return formula if formula is not None else user_formula(packet)

    def _classify(self, func: OpOverload) -> _OpKind:
        """How to count ``func``. A formula counts even an op that is free by convention
        (a ``custom_mapping`` may price ``add``). An op that decomposes counts as what it
        decomposes into, even where it has a formula: ``matmul`` reaches the mode whole
        (below autograd) inside a higher-order operator's body, ``mm`` everywhere else."""
        if func in _SUBCLASS_METADATA_OPS:
            return _OpKind.SUBCLASS_METADATA
        if isinstance(func, HigherOrderOperator):
            return _OpKind.HIGHER_ORDER
        if is_collective(func):
            return _OpKind.COMMUNICATION
        has_formula = self._formula(func._overloadpacket) is not None
        if is_uncounted(func) and not has_formula:
            return _OpKind.MOVES_NOTHING if self._byte_rule(func).free else _OpKind.UNCOUNTED
        if (
            torch._C._dispatch_has_kernel_for_dispatch_key(
                func.name(), torch._C.DispatchKey.CompositeImplicitAutograd
            )
            or torch._C.DispatchKey.CompositeImplicitAutograd in func.py_kernels
        ):
            return _OpKind.DECOMPOSED
        if not has_formula:
            return _OpKind.UNSUPPORTED
        self._op_formulas[id(func)] = self._formula(func._overloadpacket)  # type: ignore[assignment]
        return _OpKind.COUNTED

    def _byte_rule(self, op: OpOverload | HigherOrderOperator) -> ByteRule:
        rule = self._byte_rules.get(id(op))
        if rule is None:
            rule = self._byte_rules[id(op)] = (
                GENERIC if isinstance(op, HigherOrderOperator) else byte_rule(op)
            )
        return rule

    def _record(
        self,
        op: OpOverload | HigherOrderOperator,
        flops: int | None,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        out: Any,
    ) -> None:
        """One op's FLOPs (None: it has no formula) and bytes accessed, into its chain
        of rows and its phase."""
        size = bytes_accessed(self._byte_rule(op), args, kwargs, out)
        if flops is None and not size:
            return
        target: FlopTarget = op if isinstance(op, HigherOrderOperator) else op._overloadpacket
        node = _current_autograd_node()
        phase = 0 if node is None else 1
        op_counts, phases, _, byte_counts, byte_phases, precisions = self._counts(
            self._modules.paths(node)
        )
        if flops is not None:
            op_counts[target] += flops
            phases[phase] += flops
            if flops:
                precisions[target, flop_precision(args)] += flops
        if size:
            byte_counts[target] += size
            byte_phases[phase] += size

    def _record_traffic(self, op: str, size: int) -> None:
        _, _, traffic, _, _, _ = self._counts(self._modules.paths(_current_autograd_node()))
        traffic[op][0] += 1
        traffic[op][1] += size

    def _counts(self, chain: tuple[str, ...]) -> _Counts:
        counts = self._chains.get(chain)
        if counts is None:
            counts = self._chains[chain] = (
                defaultdict(int),
                [0, 0],
                defaultdict(lambda: [0, 0]),
                defaultdict(int),
                [0, 0],
                defaultdict(int),
            )
        return counts


def _rows(
    chains: _Chains,
) -> tuple[
    defaultdict[str, defaultdict[FlopTarget, int]],
    defaultdict[str, list[int]],
    defaultdict[str, defaultdict[str, list[int]]],
    defaultdict[str, defaultdict[FlopTarget, int]],
    defaultdict[str, list[int]],
    defaultdict[str, defaultdict[tuple[FlopTarget, str], int]],
]:
    """Each row's counts: the sum over the chains it is in (``Global`` is in every one)."""
    flop_counts: defaultdict[str, defaultdict[FlopTarget, int]] = defaultdict(
        lambda: defaultdict(int)
    )
    phase_counts: defaultdict[str, list[int]] = defaultdict(lambda: [0, 0])
    traffic_counts: defaultdict[str, defaultdict[str, list[int]]] = defaultdict(
        lambda: defaultdict(lambda: [0, 0])
    )
    byte_counts: defaultdict[str, defaultdict[FlopTarget, int]] = defaultdict(
        lambda: defaultdict(int)
    )
    byte_phases: defaultdict[str, list[int]] = defaultdict(lambda: [0, 0])
    precisions: defaultdict[str, defaultdict[tuple[FlopTarget, str], int]] = defaultdict(
        lambda: defaultdict(int)
    )
    for chain, counts in chains.items():
        for path in (GLOBAL, *chain):
            _add(
                (
                    flop_counts[path],
                    phase_counts[path],
                    traffic_counts[path],
                    byte_counts[path],
                    byte_phases[path],
                    precisions[path],
                ),
                counts,
            )
    return flop_counts, phase_counts, traffic_counts, byte_counts, byte_phases, precisions


def _add(into: _Counts, counts: _Counts) -> None:
    ops, (forward, backward), moved, sizes, (bytes_forward, bytes_backward), precisions = counts
    into_ops, into_phases, into_traffic, into_sizes, into_byte_phases, into_precisions = into
    for op, flops in ops.items():
        into_ops[op] += flops
    into_phases[0] += forward
    into_phases[1] += backward
    for name, (calls, size) in moved.items():
        into_traffic[name][0] += calls
        into_traffic[name][1] += size
    for op, size in sizes.items():
        into_sizes[op] += size
    into_byte_phases[0] += bytes_forward
    into_byte_phases[1] += bytes_backward
    for key, flops in precisions.items():
        into_precisions[key] += flops


def _by_precision(
    precisions: Mapping[tuple[FlopTarget, str], int],
) -> dict[str, dict[str, int]]:
    """``{op: {precision: flops}}`` from FLOPs keyed by (op, precision)."""
    by_op: dict[str, dict[str, int]] = {}
    for (op, precision), flops in precisions.items():
        by_op.setdefault(op_name(op), {})[precision] = flops
    return by_op


def _total(chains: _Chains) -> int:
    return sum(sum(counts[0].values()) for counts in chains.values())


def warm_up() -> None:
    """Count one tiny step, so the first real block pays for no lazy import or set-up.

    The plugin calls it at the end of collection, outside every test's time.
    """
    with FlopCounterMode(display=False):
        x = torch.ones(2, 2, requires_grad=True)
        torch.nn.functional.linear(x, torch.ones(2, 2)).sum().backward()


def op_name(op: FlopTarget) -> str:
    """``aten.mm`` for an op packet, ``higher_order.flex_attention`` for a HOP."""
    if isinstance(op, HigherOrderOperator):
        return f"{op.namespace}.{op.name()}"
    return str(op)


def _is_body(arg: object) -> bool:
    """User code a higher-order operator runs: a function or a (graph) module."""
    return callable(arg) and not isinstance(
        arg, (torch.Tensor, OpOverload, OpOverloadPacket, HigherOrderOperator, type)
    )


def _is_nested(value: object) -> bool:
    return isinstance(value, torch.Tensor) and value.is_nested


def _has_no_value(value: object) -> bool:
    """A meta or fake tensor, or a symbolic bool: control flow cannot read it."""
    if isinstance(value, torch.Tensor):
        return value.device.type == "meta" or is_fake(value)
    return isinstance(value, torch.SymBool)


def _unknown_iterations(hop: HigherOrderOperator, args: tuple[Any, ...]) -> bool:
    """A ``while_loop`` on tensors with no values: how often its body runs is unknowable."""
    return hop.name().startswith("while_loop") and any(map(_has_no_value, tree_leaves(args)))


def _percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.2f}%" if whole else "0.00%"
