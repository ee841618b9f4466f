"""The counting dispatch mode, with module and forward/backward attribution.

:class:`FlopCounterMode` is a drop-in for ``torch.utils.flop_counter.FlopCounterMode``
that reads :mod:`pytest_flops.formulas` (never torch's registry) and attributes
FLOPs differently:

* **Modules** are tracked with one global forward pre-hook and one forward hook.
  A module's path is built from the live call stack, so a submodule shared by
  two parents is counted under each parent where it ran.
* **Backward** FLOPs are attributed through the autograd graph rather than
  through hooks on module inputs: every autograd node created inside a module's
  forward has a sequence number within that call's interval, and during
  backward the node being executed (``torch._C._current_autograd_node()``)
  names the module it came from. A module whose inputs need no grad therefore
  never stays "active" and swallows unrelated backward FLOPs.
* **Phase**: an op runs in backward when an autograd node is executing.
  Activation-checkpoint recomputation happens there, so it is counted as
  backward work of the recomputed module.
"""

from __future__ import annotations

import sys
import threading
import warnings
from bisect import bisect_left, bisect_right
from collections import ChainMap, Counter, defaultdict
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import torch
from torch._ops import HigherOrderOperator, OpOverload, OpOverloadPacket
from torch.utils._python_dispatch import TorchDispatchMode

from pytest_flops.formulas import (
    FLOP_FORMULAS,
    FlopFormula,
    FlopTarget,
    as_table_formula,
    is_uncounted,
)
from pytest_flops.measurement import GLOBAL, Measurement, ModuleFlops
from pytest_flops.meta_as_cpu import cpu_kernels_on_meta

_current_autograd_node: Callable[[], Any] = torch._C._current_autograd_node
_next_sequence_nr: Callable[[], int] = torch._C._autograd._get_sequence_nr

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


class _OpKind(Enum):
    COUNTED = "counted"
    UNCOUNTED = "uncounted"
    DECOMPOSED = "decomposed"
    UNSUPPORTED = "unsupported"


@dataclass(eq=False)
class _Frame:
    """One call of a module's forward."""

    module: torch.nn.Module
    path: str
    parent: _Frame | None
    # Distinct paths from the root call down to this one: the rows this call's
    # FLOPs are added to. A recursive call adds nothing new.
    paths: tuple[str, ...]
    first_node: int
    end_node: int = 2**64

    def owns_node(self, sequence_nr: int) -> bool:
        return self.first_node <= sequence_nr < self.end_node


@dataclass
class _NodeIndex:
    """Finds the module call that created an autograd node.

    A node made by a module's forward falls in that call's interval. A node
    made while backward runs with grad enabled (``create_graph=True``: gradient
    penalties, Hessian-vector products) belongs to the module whose backward
    node made it; those are kept apart, as ranges in creation order.
    """

    keys: list[tuple[int, int]] = field(default_factory=list)
    frames: list[_Frame] = field(default_factory=list)
    made_in_backward_starts: list[int] = field(default_factory=list)
    made_in_backward_ends: list[int] = field(default_factory=list)
    made_in_backward_frames: list[_Frame] = field(default_factory=list)

    def add(self, frame: _Frame) -> None:
        # Sort by start, then innermost (smallest end) last among equal starts.
        # Frames are added as they end, inner ones first: an outer frame with the
        # same key (it created no node after its child) goes before its child.
        key = (frame.first_node, -frame.end_node)
        at = bisect_left(self.keys, key)
        self.keys.insert(at, key)
        self.frames.insert(at, frame)

    def add_made_in_backward(self, start: int, end: int, frame: _Frame) -> None:
        """Nodes ``start`` to ``end - 1`` were made while a backward node of ``frame`` ran."""
        if self.made_in_backward_frames and (
            self.made_in_backward_frames[-1] is frame and self.made_in_backward_ends[-1] == start
        ):
            self.made_in_backward_ends[-1] = end
            return
        self.made_in_backward_starts.append(start)
        self.made_in_backward_ends.append(end)
        self.made_in_backward_frames.append(frame)

    def frame_of(self, sequence_nr: int) -> _Frame | None:
        at = bisect_right(self.made_in_backward_starts, sequence_nr) - 1
        if at >= 0 and sequence_nr < self.made_in_backward_ends[at]:
            return self.made_in_backward_frames[at]
        at = bisect_right(self.keys, (sequence_nr, 1)) - 1
        frame = self.frames[at] if at >= 0 else None
        while frame is not None and not frame.owns_node(sequence_nr):
            frame = frame.parent
        return frame


class FlopCounterMode(TorchDispatchMode):
    """Counts FLOPs of everything run inside ``with FlopCounterMode() as mode:``.

    A drop-in for ``torch.utils.flop_counter.FlopCounterMode``: ``flop_counts``
    maps ``"Global"`` and module paths (``"ResNet.layer1"``) to
    ``{torch.ops.aten.X: flops}``. On top of it, :attr:`phase_counts` splits
    each row into forward and backward, :attr:`unsupported_ops` lists the ops
    that ran with no formula, and :meth:`to_measurement` freezes it all.

    Entering a mode again after it exited starts a fresh count, as torch's
    does; entering it again while it is active (nesting the same instance)
    keeps counting into the same totals, once.
    """

    # Higher-order operators (FlexAttention) reach __torch_dispatch__ instead
    # of raising; see _dispatch_higher_order.
    supports_higher_order_operators = True

    def __init__(
        self,
        mods: torch.nn.Module | list[torch.nn.Module] | None = None,
        depth: int = 2,
        display: bool = True,
        custom_mapping: Mapping[OpOverloadPacket, FlopFormula] | None = None,
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
        self.formulas: ChainMap[FlopTarget, FlopFormula] = ChainMap(
            {
                op: as_table_formula(formula, get_raw=getattr(formula, "_get_raw", False))
                for op, formula in (custom_mapping or {}).items()
            },
            FLOP_FORMULAS,
        )
        self.flop_counts: defaultdict[str, defaultdict[FlopTarget, int]] = defaultdict(
            lambda: defaultdict(int)
        )
        self.phase_counts: defaultdict[str, list[int]] = defaultdict(lambda: [0, 0])
        self.unsupported_ops: Counter[str] = Counter()
        self._op_kinds: dict[OpOverload, _OpKind] = {}
        self._active = 0
        self._local = threading.local()
        self._thread = threading.get_ident()  # the thread that entered the mode
        self._nodes: dict[int, _NodeIndex] = {}  # by the thread that numbered them
        self._hook_handles: list[torch.utils.hooks.RemovableHandle] = []
        self._while_counting = ExitStack()

    # -- results ------------------------------------------------------------------

    def get_total_flops(self) -> int:
        return sum(self.flop_counts[GLOBAL].values())

    def get_flop_counts(self) -> dict[str, dict[Any, int]]:
        return {module: dict(counts) for module, counts in self.flop_counts.items()}

    def to_measurement(self) -> Measurement:
        """Freeze the counts into a :class:`~pytest_flops.Measurement`."""
        modules = {
            path: ModuleFlops(
                forward=self.phase_counts[path][0],
                backward=self.phase_counts[path][1],
                by_op={_op_name(op): flops for op, flops in counts.items()},
            )
            for path, counts in self.flop_counts.items()
        }
        modules.setdefault(GLOBAL, ModuleFlops())
        return Measurement(modules=modules, unsupported=dict(self.unsupported_ops))

    def get_table(self, depth: int | None = None) -> str:
        depth = self.depth if depth is None else depth
        total = self.get_total_flops()
        rows: list[tuple[str, str, str]] = []
        for path, counts in self.flop_counts.items():
            level = 0 if path == GLOBAL else path.count(".") + 1
            if level > depth:
                continue
            flops = sum(counts.values())
            rows.append((" " * level + path, f"{flops:,}", _percent(flops, total)))
            for op, op_flops in sorted(counts.items(), key=lambda kv: -kv[1]):
                rows.append(
                    (" " * (level + 2) + _op_name(op), f"{op_flops:,}", _percent(op_flops, total))
                )
        header = ("Module", "FLOP", "% Total")
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(3)]
        lines = [
            f"{name:<{widths[0]}}  {flops:>{widths[1]}}  {pct:>{widths[2]}}"
            for name, flops, pct in [header, *rows]
        ]
        return "\n".join(lines)

    # -- entering and leaving -------------------------------------------------------

    def __enter__(self) -> FlopCounterMode:
        if self._active == 0:
            self.flop_counts.clear()
            self.phase_counts.clear()
            self.unsupported_ops.clear()
            self._op_kinds.clear()
            self._nodes = {}
            self._local = threading.local()
            self._thread = threading.get_ident()
            self._hook_handles = [
                torch.nn.modules.module.register_module_forward_pre_hook(self._enter_module),
                torch.nn.modules.module.register_module_forward_hook(
                    self._leave_module, always_call=True
                ),
            ]
            self._while_counting = ExitStack()
            try:
                # torch.compile cannot trace under a dispatch mode; rather than
                # skip frames (and fail fullgraph=True compiles, FlexAttention's
                # eager path among them) it runs compiled code eagerly, op by op.
                self._while_counting.enter_context(torch.compiler.set_stance("force_eager"))
                self._while_counting.enter_context(cpu_kernels_on_meta())
                super().__enter__()
            except BaseException:
                self._while_counting.close()
                self._remove_hooks()
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
            self._remove_hooks()
        if self.display:
            print(self.get_table(self.depth))

    def _remove_hooks(self) -> None:
        for handle in self._hook_handles:
            handle.remove()
        self._hook_handles = []

    @contextmanager
    def _counting_again(self) -> Iterator[None]:
        """Re-push this mode (which dispatch popped) so a decomposition's ops count."""
        TorchDispatchMode.__enter__(self)
        try:
            yield
        finally:
            TorchDispatchMode.__exit__(self, None, None, None)

    # -- module attribution -----------------------------------------------------------

    def _stack(self) -> list[_Frame]:
        stack: list[_Frame] | None = getattr(self._local, "stack", None)
        if stack is None:
            stack = self._local.stack = []
        return stack

    def _enter_module(self, module: torch.nn.Module, args: object) -> None:
        if _is_compile_wrapper(module):
            return  # the module it wraps runs next and takes its place in paths
        if threading.get_ident() != self._thread and _current_autograd_node() is None:
            # Another thread's forward: the mode does not count it, and its frames
            # (numbered in that thread's own autograd sequence) would blur where
            # this thread's backward nodes came from. Backward threads (checkpoint
            # recomputation on an autograd device thread) do count and keep theirs.
            return
        stack = self._stack()
        parent = stack[-1] if stack else self._frame_of_current_node()
        path, parent = _path_under(parent, module)
        paths = parent.paths if parent is not None else ()
        if path not in paths:
            paths = (*paths, path)
        stack.append(_Frame(module, path, parent, paths, _next_sequence_nr()))

    def _leave_module(self, module: torch.nn.Module, args: object, output: object) -> None:
        stack = self._stack()
        if not stack or stack[-1].module is not module:
            return  # entered before this mode started
        frame = stack.pop()
        frame.end_node = _next_sequence_nr()
        if frame.end_node > frame.first_node:
            self._thread_nodes().add(frame)

    def _thread_nodes(self) -> _NodeIndex:
        return self._nodes.setdefault(threading.get_ident(), _NodeIndex())

    def _frame_of(self, node: Any) -> _Frame | None:
        """The module call that made autograd ``node``; None if unknown or ambiguous.

        Each thread numbers the nodes it makes. A node that CUDA's backward thread
        runs was made by the forward (the entering thread's numbers) or on that
        thread (a checkpoint's recomputation, a double backward): where both
        numberings place it, in different calls, it is left to ``"Global"``
        rather than guessed.
        """
        if node is None:
            return None
        sequence_nr = node._sequence_nr()
        found = {index.frame_of(sequence_nr) for index in self._nodes.values()} - {None}
        return found.pop() if len(found) == 1 else None

    def _frame_of_current_node(self) -> _Frame | None:
        return self._frame_of(_current_autograd_node())

    def _note_node_made_in_backward(self) -> None:
        """Under ``create_graph=True``, the node autograd just made for the op being
        dispatched belongs to the module whose backward node is running.

        Not while a module's forward runs in backward (checkpoint recomputation):
        that call's own interval places its nodes more precisely.
        """
        node = _current_autograd_node()
        if node is None or self._stack():
            return
        end = _next_sequence_nr()  # the op's own node, if it made one, is end - 1
        start = max(end - 1, getattr(self._local, "noted_until", 0))
        if start >= end:
            return  # no node made since the last op
        self._local.noted_until = end
        frame = self._frame_of(node)
        if frame is not None:
            self._thread_nodes().add_made_in_backward(start, end, frame)

    # -- dispatch -------------------------------------------------------------------------

    def __torch_dispatch__(
        self,
        func: OpOverload,
        types: tuple[type, ...],
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        kwargs = kwargs or {}
        if func in _SUBCLASS_METADATA_OPS:
            return NotImplemented
        if torch.is_grad_enabled():
            self._note_node_made_in_backward()
        if isinstance(func, HigherOrderOperator):
            return self._dispatch_higher_order(func, args, kwargs)
        kind = self._op_kinds.get(func)
        if kind is None:
            kind = self._op_kinds[func] = self._classify(func)
        if kind is _OpKind.DECOMPOSED:
            with self._counting_again():
                out = func.decompose(*args, **kwargs)
            if out is not NotImplemented:
                return out
            kind = self._op_kinds[func] = _OpKind.UNSUPPORTED
        out = func(*args, **kwargs)
        if kind is _OpKind.COUNTED:
            packet = func._overloadpacket
            self._record(packet, self.formulas[packet](args, kwargs, out))
        elif kind is _OpKind.UNSUPPORTED:
            self.unsupported_ops[str(func._overloadpacket)] += 1
        return out

    def _dispatch_higher_order(
        self, hop: HigherOrderOperator, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        """Run a higher-order operator (FlexAttention, cond...) beneath this mode.

        One with a formula counts as a whole; one without runs uncounted and is
        listed as unsupported: control-flow operators refuse to run their
        bodies under a mode, so their inner ops cannot be counted one by one.
        """
        out = hop(*args, **kwargs)
        formula = self.formulas.get(hop)
        if formula is None:
            self.unsupported_ops[_op_name(hop)] += 1
        else:
            self._record(hop, formula(args, kwargs, out))
        return out

    def _classify(self, func: OpOverload) -> _OpKind:
        if func._overloadpacket in self.formulas:
            return _OpKind.COUNTED
        if is_uncounted(func):
            return _OpKind.UNCOUNTED
        if (
            torch._C._dispatch_has_kernel_for_dispatch_key(
                func.name(), torch._C.DispatchKey.CompositeImplicitAutograd
            )
            or torch._C.DispatchKey.CompositeImplicitAutograd in func.py_kernels
        ):
            return _OpKind.DECOMPOSED
        return _OpKind.UNSUPPORTED

    def _record(self, op: FlopTarget, flops: int) -> None:
        node = _current_autograd_node()
        phase = 0 if node is None else 1
        stack = self._stack()
        if stack:
            paths = stack[-1].paths
        else:
            frame = self._frame_of(node)
            paths = () if frame is None else frame.paths
        for path in (GLOBAL, *paths):
            self.flop_counts[path][op] += flops
            self.phase_counts[path][phase] += flops


def _path_under(parent: _Frame | None, module: torch.nn.Module) -> tuple[str, _Frame | None]:
    """The path of ``module`` called inside ``parent``, and its real parent frame.

    A module already on the call chain (recursion, or checkpoint recomputation
    started from one of its own backward nodes) keeps that call's path.
    """
    if parent is None:
        return type(module).__name__, None
    for name, child in parent.module._modules.items():
        if child is module or (_is_compile_wrapper(child) and child._orig_mod is module):
            return f"{parent.path}.{name}", parent
    frame: _Frame | None = parent
    while frame is not None:
        if frame.module is module:
            return frame.path, frame.parent
        frame = frame.parent
    for name, child in parent.module.named_modules():
        if child is module:
            return f"{parent.path}.{name}", parent
    return f"{parent.path}.{type(module).__name__}", parent


def _is_compile_wrapper(module: torch.nn.Module) -> bool:
    """``torch.compile(module)``'s OptimizedModule (only there once dynamo is imported)."""
    eval_frame = sys.modules.get("torch._dynamo.eval_frame")
    return eval_frame is not None and isinstance(module, eval_frame.OptimizedModule)


def _op_name(op: FlopTarget) -> str:
    """``aten.mm`` for an op packet, ``higher_order.flex_attention`` for a HOP."""
    if isinstance(op, HigherOrderOperator):
        return f"{op.namespace}.{op.name()}"
    return str(op)


def _percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.2f}%" if whole else "0.00%"
