"""The counting dispatch mode: runs each op, counts it with the formula table.

:class:`FlopCounterMode` is a drop-in for ``torch.utils.flop_counter.FlopCounterMode``
that reads :mod:`pytest_flops.counting.formulas` (never torch's registry for aten ops),
splits every count into forward, backward and recompute, lists the ops it cannot count,
and counts the bodies of higher-order operators (``torch.cond``, ``while_loop``,
``scan``, ``map``...). Which module rows an op's FLOPs go to is
:mod:`pytest_flops.counting.module_tracker`'s answer.

* **Phase**: an op runs in backward when an autograd node is executing. An
  activation checkpoint's recomputation runs there too, but it is forward
  work run again: it is the third phase, recompute, of the recomputed module.
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
from torch.utils._python_dispatch import (
    TorchDispatchMode,
    _disable_current_modes,
    _get_current_dispatch_mode_stack,
)
from torch.utils._pytree import tree_leaves

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
    is_triton_kernel,
    is_uncounted,
    table_formula,
    user_formula,
)
from pytest_flops.counting.meta_as_cpu import cpu_kernels_on_meta
from pytest_flops.counting.module_tracker import Models, ModuleTracker, root_names
from pytest_flops.measurement import GLOBAL, Measurement, ModuleFlops, Traffic, World
from pytest_flops.portable import portable_ops
from pytest_flops.tables import aligned

_current_autograd_node: Callable[[], Any] = torch._C._current_autograd_node
_saved_tensors_hooks: Callable[[bool], Any] = torch._C._autograd._top_saved_tensors_default_hooks

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


_Counts = tuple[defaultdict[FlopTarget, int], list[int], defaultdict[str, list[int]]]
"""Counts by op, forward/backward/recompute sums and traffic (calls, bytes) by collective."""

_FORWARD, _BACKWARD, _RECOMPUTE = range(3)  # indices of the phase sums

_Chains = dict[tuple[str, ...], _Counts]
"""The counts of the ops run under each chain of module rows (``Global`` implied)."""


class _OpKind(Enum):
    SUBCLASS_METADATA = "subclass metadata"
    HIGHER_ORDER = "higher order"
    COMMUNICATION = "communication"
    COUNTED = "counted"
    UNCOUNTED = "uncounted"
    DECOMPOSED = "decomposed"
    UNSUPPORTED = "unsupported"


class FlopCounterMode(TorchDispatchMode):
    """Counts FLOPs of everything run inside ``with FlopCounterMode() as mode:``.

    A drop-in for ``torch.utils.flop_counter.FlopCounterMode``: ``flop_counts``
    maps ``"Global"`` and module paths (``"ResNet.layer1"``) to
    ``{torch.ops.aten.X: flops}``. On top of it, :attr:`phase_counts` splits
    each row into forward, backward and recompute, :attr:`unsupported_ops` lists the ops
    that ran with no formula, :attr:`traffic_counts` the calls and bytes of
    every collective per row, and :meth:`to_measurement` freezes it all. Under
    a process group the counts are one rank's (see :mod:`pytest_flops.counting.distributed`).

    ``models`` (keyword only) keeps module rows of those instances only, named
    from their class (or ``{row name: model}``): another instance of the same
    class, an EMA copy say, counts in ``Global`` alone.

    Entering a mode again after it exited starts a fresh count, as torch's
    does; entering it again while it is active (nesting the same instance)
    keeps counting into the same totals, once, also from a
    ``torch.library.register_torch_dispatch`` rule for this class, which runs
    with the mode popped. ``skip_unsupported=True`` launches triton kernels,
    which are otherwise counted without being launched, as in torch's counter.
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
        skip_unsupported: bool = False,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
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
        self._active = 0
        self._pushed: list[bool] = []  # per entry: did it push the mode (see __enter__)
        self._modules = ModuleTracker(root_names(models))
        self._while_counting = ExitStack()

    # -- results ------------------------------------------------------------------

    @property
    def flop_counts(self) -> defaultdict[str, defaultdict[FlopTarget, int]]:
        """``{row: {op: flops}}``, summed from the counts when read."""
        return _rows(self._chains)[0]

    @property
    def phase_counts(self) -> defaultdict[str, list[int]]:
        """``{row: [forward, backward, recompute flops]}``, summed from the counts when read."""
        return _rows(self._chains)[1]

    @property
    def traffic_counts(self) -> defaultdict[str, defaultdict[str, list[int]]]:
        """``{row: {collective: [calls, bytes]}}``, summed from the counts when read."""
        return _rows(self._chains)[2]

    def get_total_flops(self) -> int:
        return _total(self._chains)

    def get_flop_counts(self) -> dict[str, dict[Any, int]]:
        return {module: dict(counts) for module, counts in self.flop_counts.items()}

    def get_unsupported_ops(self) -> Counter[str]:
        """A copy of :attr:`unsupported_ops`: ``{op name: calls}`` of what ran uncounted."""
        return Counter(self.unsupported_ops)

    def to_measurement(self) -> Measurement:
        """Freeze the counts into a :class:`~pytest_flops.Measurement`."""
        flop_counts, phase_counts, traffic_counts = _rows(self._chains)
        modules = {
            path: ModuleFlops(
                forward=phase_counts[path][_FORWARD],
                backward=phase_counts[path][_BACKWARD],
                recompute=phase_counts[path][_RECOMPUTE],
                by_op=portable_ops({op_name(op): n for op, n in flop_counts[path].items()}),
                communication={
                    op: Traffic(calls=calls, bytes=size)
                    for op, (calls, size) in traffic_counts[path].items()
                },
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
            self._modules.start()
            self._while_counting = ExitStack()
            try:
                self._while_counting.enter_context(compiled_code_runs_eagerly())
                self._while_counting.enter_context(propagation_runs_uncounted())
                self._while_counting.enter_context(cpu_kernels_on_meta())
                super().__enter__()  # type: ignore[no-untyped-call]
            except BaseException:
                self._while_counting.close()
                self._modules.stop()
                raise
            self._pushed.append(False)  # the last exit pops it, below
        else:
            # Inside this mode's own dispatch (a torch_dispatch rule registered for
            # it runs ``with mode:``) dispatch has popped it: push it back so the
            # rule's ops count. Nested in user code it is on the stack: count once.
            popped = self not in _get_current_dispatch_mode_stack()
            if popped:
                TorchDispatchMode.__enter__(self)
            self._pushed.append(popped)
        self._active += 1
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._active -= 1
        if self._pushed.pop():
            TorchDispatchMode.__exit__(self, *exc_info)
        if self._active:
            return
        try:
            super().__exit__(*exc_info)  # type: ignore[no-untyped-call]
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
        if kind is _OpKind.UNCOUNTED:  # most ops: the fast path
            return func(*args, **kwargs)
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
            flops = self._op_formulas[id(func)](args, kwargs, out)
            self._record(func._overloadpacket, flops)
        else:
            self.unsupported_ops[str(func._overloadpacket)] += 1
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
        if hop.name() in _TRITON_KERNEL_WRAPPERS:
            return self._dispatch_triton_kernel(hop, kwargs)
        formula = self.formulas.get(hop)
        if formula is not None:
            out = hop(*args, **kwargs)
            self._record(hop, formula(args, kwargs, out))
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

    def _dispatch_triton_kernel(self, hop: HigherOrderOperator, kwargs: dict[str, Any]) -> Any:
        """A user's triton kernel counts with its formula and, as in torch's counter, is
        not launched unless ``skip_unsupported``: counting then runs where triton cannot
        launch (CPU, meta, fake). One with no formula is listed as unsupported."""
        kernel = _jit_function(kwargs["kernel_idx"])
        formula = self.formulas.get(kernel)
        if formula is None:
            self.unsupported_ops[op_name(kernel)] += 1
        else:
            self._record(kernel, formula((), kwargs, None))
        if self.skip_unsupported:
            return hop(**kwargs)
        if "tensors_to_clone" in kwargs:  # the functional form returns its outputs' copies
            return {name: kwargs["kwargs"][name].clone() for name in kwargs["tensors_to_clone"]}
        return None

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
            return _OpKind.UNCOUNTED
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

    def _record(self, op: FlopTarget, flops: int) -> None:
        node = _current_autograd_node()
        op_counts, phases, _ = self._counts(self._modules.paths(node))
        op_counts[op] += flops
        phases[_phase(node)] += flops

    def _record_traffic(self, op: str, size: int) -> None:
        _, _, traffic = self._counts(self._modules.paths(_current_autograd_node()))
        traffic[op][0] += 1
        traffic[op][1] += size

    def _counts(self, chain: tuple[str, ...]) -> _Counts:
        counts = self._chains.get(chain)
        if counts is None:
            counts = self._chains[chain] = (
                defaultdict(int),
                [0, 0, 0],
                defaultdict(lambda: [0, 0]),
            )
        return counts


def _rows(
    chains: _Chains,
) -> tuple[
    defaultdict[str, defaultdict[FlopTarget, int]],
    defaultdict[str, list[int]],
    defaultdict[str, defaultdict[str, list[int]]],
]:
    """Each row's counts: the sum over the chains it is in (``Global`` is in every one)."""
    flop_counts: defaultdict[str, defaultdict[FlopTarget, int]] = defaultdict(
        lambda: defaultdict(int)
    )
    phase_counts: defaultdict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    traffic_counts: defaultdict[str, defaultdict[str, list[int]]] = defaultdict(
        lambda: defaultdict(lambda: [0, 0])
    )
    for chain, counts in chains.items():
        for path in (GLOBAL, *chain):
            _add((flop_counts[path], phase_counts[path], traffic_counts[path]), counts)
    return flop_counts, phase_counts, traffic_counts


def _add(into: _Counts, counts: _Counts) -> None:
    ops, phases, moved = counts
    into_ops, into_phases, into_traffic = into
    for op, flops in ops.items():
        into_ops[op] += flops
    for phase, flops in enumerate(phases):
        into_phases[phase] += flops
    for name, (calls, size) in moved.items():
        into_traffic[name][0] += calls
        into_traffic[name][1] += size


def _phase(node: Any) -> int:
    """Forward outside backward; in backward, recompute while a checkpoint re-runs forward
    work (grad enabled, as only checkpoints and ``create_graph=True`` enable it there)."""
    if node is None:
        return _FORWARD
    return _RECOMPUTE if torch.is_grad_enabled() and _recomputing(node) else _BACKWARD


def _recomputing(node: Any) -> bool:
    """Whether an activation checkpoint is re-running forward work inside ``node``.

    A reentrant checkpoint re-runs its function in its own backward node
    (torch's ``CheckpointFunction``, and Megatron's of the same name); a
    non-reentrant one (selective AC, ``checkpoint_wrapper``'s default) from
    the node that unpacks a saved tensor, under torch's recomputation
    saved-tensor hooks, or under a checkpoint's own hooks for a checkpoint
    nested in the function re-run.
    """
    if node.name() == "CheckpointFunctionBackward":
        return True
    hooks = _saved_tensors_hooks(False)
    return hooks is not None and hooks[0].__qualname__.split(".", 1)[0] in _CHECKPOINT_HOOKS


_CHECKPOINT_HOOKS = frozenset({"_recomputation_hook", "_checkpoint_hook"})
"""torch.utils.checkpoint's saved-tensor hook classes (their pack hooks' qualified names)."""


def _total(chains: _Chains) -> int:
    return sum(sum(ops.values()) for ops, _, _ in chains.values())


def warm_up() -> None:
    """Count one tiny step, so the first real block pays for no lazy import or set-up.

    The plugin calls it at the end of collection, outside every test's time.
    """
    with FlopCounterMode(display=False):
        x = torch.ones(2, 2, requires_grad=True)
        torch.nn.functional.linear(x, torch.ones(2, 2)).sum().backward()


def op_name(op: FlopTarget) -> str:
    """``aten.mm`` for an op packet, ``higher_order.flex_attention`` for a HOP,
    ``triton.my_kernel`` for a triton kernel."""
    if isinstance(op, HigherOrderOperator):
        return f"{op.namespace}.{op.name()}"
    if is_triton_kernel(op):
        return f"triton.{op.fn.__name__}"
    return str(op)


_TRITON_KERNEL_WRAPPERS = frozenset(
    {"triton_kernel_wrapper_mutation", "triton_kernel_wrapper_functional"}
)


def _jit_function(kernel_idx: int) -> Any:
    """The ``@triton.jit`` kernel a wrapper HOP launches, out of any autotune or
    heuristics wrapper (a formula is registered on the kernel itself)."""
    from torch._higher_order_ops.triton_kernel_wrap import kernel_side_table

    kernel: Any = kernel_side_table.get_kernel(kernel_idx)
    while not is_triton_kernel(kernel) and hasattr(kernel, "fn"):
        kernel = kernel.fn
    return kernel


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
