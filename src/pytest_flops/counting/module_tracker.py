"""Which module calls an op belongs to, in forward and in backward.

Kept apart from counting, as torch keeps its ``ModuleTracker`` apart from its
counter. :class:`ModuleTracker` installs one global forward pre-hook and one
forward hook while it is started, and answers one question for the op being
dispatched: :meth:`~ModuleTracker.paths`, the module rows its FLOPs go to.

* **Forward.** A stack of module calls per thread; a module's path is its
  name under the module that called it, so a submodule shared by two parents
  is counted under each parent where it ran.
* **Backward.** Every autograd node created inside a module's forward has a
  sequence number within that call's interval; during backward, the node
  being executed (``torch._C._current_autograd_node()``) names the call it
  came from. A module whose inputs need no grad therefore never stays
  "active" and swallows unrelated backward FLOPs, nor does one whose forward
  runs a backward (a gradient penalty, a train step wrapped in a module).
* **Double backward.** Nodes made while a module's backward node runs with
  grad enabled (``create_graph=True``) belong to that module.
* **Roots.** Without roots every module call that runs outside another one
  starts a row named after its class. With roots (the models passed to
  ``flops(model)``), only those instances and what they call get rows, named
  from the root's row name; every other module's FLOPs count in ``Global``
  only.
"""

from __future__ import annotations

import sys
import threading
import weakref
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch

from pytest_flops.counting.node_index import Frame, NodeIndex, frame_of
from pytest_flops.counting.phase import python_backward_nodes, recomputing
from pytest_flops.measurement import GLOBAL

_current_autograd_node: Callable[[], Any] = torch._C._current_autograd_node
_next_sequence_nr: Callable[[], int] = torch._C._autograd._get_sequence_nr
_GraphModule = torch.fx.GraphModule

Models = torch.nn.Module | Iterable[torch.nn.Module] | Mapping[str, torch.nn.Module]
"""What ``flops(...)`` and ``FlopCounterMode(models=...)`` accept as the models to keep rows of."""


def root_names(models: Models | None) -> dict[torch.nn.Module, str] | None:
    """The models to keep rows of, each with its row name; None keeps every module's rows.

    A compiled module stands for the module it compiled. Models are named
    after their class unless given as ``{name: model}``; two models that would
    share a row name, the same model twice, or a model inside another is a
    ``ValueError``.
    """
    if models is None:
        return None
    if isinstance(models, torch.nn.Module):
        named = [(class_name(_compiled(models)), models)]
    elif isinstance(models, Mapping):
        named = list(models.items())
    else:
        named = [(class_name(_compiled(model)), model) for model in models]
    roots: dict[torch.nn.Module, str] = {}
    for name, model in named:
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"flops(model): expected a torch.nn.Module, got {type(model).__name__}")
        if not isinstance(name, str) or not name or "." in name:
            raise ValueError(
                f"flops: a row name must be a non-empty string without dots, got {name!r}"
            )
        module = _compiled(model)
        if module in roots:
            raise ValueError(f"flops: {type(module).__name__} {name!r} is passed twice")
        if name in roots.values():
            raise ValueError(
                f"flops: two models would share the row {name!r}; name them, e.g. "
                f"flops({{'student': model, 'teacher': ema}}), or measure them in separate blocks"
            )
        roots[module] = GLOBAL_ALIAS if name == GLOBAL else name
    for module, name in roots.items():
        for other, other_name in roots.items():
            if other is not module and any(sub is module for sub in other.modules()):
                raise ValueError(
                    f"flops: {name!r} is a submodule of {other_name!r}, whose rows already hold it"
                )
    return roots


_NO_ANSWER: tuple[Any, tuple[str, ...]] = (None, ())
"""What :meth:`ModuleTracker.paths` answered last, as (node, paths): outside every module
in forward (no node), no rows."""

GLOBAL_ALIAS = f"{GLOBAL} (module)"
"""The row of a module whose class is named ``Global``: never the ``Global`` row itself."""


class ModuleTracker:
    """Tracks module calls between :meth:`start` and :meth:`stop`; see the module docs."""

    def __init__(self, roots: Mapping[torch.nn.Module, str] | None = None) -> None:
        # Weakly: a mode kept after its block must not keep the models alive.
        self._roots = None if roots is None else weakref.WeakKeyDictionary(roots)
        self._local = threading.local()
        self._thread = threading.get_ident()  # the thread that started tracking
        self._nodes: dict[int, NodeIndex] = {}  # by the thread that numbered them
        self._hook_handles: list[torch.utils.hooks.RemovableHandle] = []
        # a module's descendants by name, for calls that skip a level (ModuleList items)
        self._descendants: dict[torch.nn.Module, dict[torch.nn.Module, str | None]] = {}
        self._last_answer = _NO_ANSWER

    def start(self) -> None:
        self._local = threading.local()
        self._thread = threading.get_ident()
        self._nodes = {}
        self._descendants = {}
        self._last_answer = _NO_ANSWER
        self._hook_handles = [
            torch.nn.modules.module.register_module_forward_pre_hook(self._enter_module),
            torch.nn.modules.module.register_module_forward_hook(
                self._leave_module, always_call=True
            ),
        ]

    def stop(self) -> None:
        for handle in self._hook_handles:
            handle.remove()
        self._hook_handles = []
        # Nothing is counted after the block: drop every reference to its modules.
        self._descendants = {}
        self._nodes = {}
        self._last_answer = _NO_ANSWER
        self._local = threading.local()

    def paths(self, node: Any) -> tuple[str, ...]:
        """The module rows (``Global`` not included) of the op running now, in the
        autograd ``node`` executing now (None in forward)."""
        stack = getattr(self._local, "stack", None)  # asked for every counted op
        if stack:
            call = stack[-1]
            if call.entered_in is node:  # its own ops: forward, or a checkpoint re-running it
                return call.paths
        recompute_rows = getattr(self._local, "recompute_rows", None)
        if recompute_rows is not None and recompute_rows[0] is node and recomputing(node):
            return recompute_rows[1]  # a checkpoint's function, between the calls it re-runs
        # a backward node's ops come one after another (one tuple: threads read it whole)
        last_node, last_paths = self._last_answer
        if node is last_node:
            return last_paths
        frame = frame_of(self._nodes, node)
        paths = () if frame is None else frame.paths
        self._last_answer = (node, paths)
        return paths

    def note_node_made_in_backward(self) -> None:
        """Under ``create_graph=True``, the node autograd just made for the op being
        dispatched belongs to the module whose backward node is running.

        Called for ops that run, grad enabled, while a backward node executes. Not
        while a module's forward runs in that node (checkpoint recomputation): that
        call's own interval places its nodes more precisely.
        """
        node = _current_autograd_node()
        stack = getattr(self._local, "stack", None)
        if node is None or (stack and stack[-1].entered_in is node):
            return
        end = _next_sequence_nr()  # the op's own node, if it made one, is end - 1
        start = max(end - 1, getattr(self._local, "noted_until", 0))
        if start >= end:
            return  # no node made since the last op
        self._local.noted_until = end
        frame = frame_of(self._nodes, node)
        if frame is not None:
            self._thread_nodes().add_made_in_backward(start, end, frame)
            self._last_answer = _NO_ANSWER

    # -- the hooks ---------------------------------------------------------------------

    def _enter_module(self, module: torch.nn.Module, args: object) -> None:
        if _is_compile_wrapper(module):
            return  # the module it wraps runs next and takes its place in paths
        if isinstance(module, _GraphModule):
            return  # a traced body (a higher-order operator's backward): no module of the user
        node = _current_autograd_node()
        if threading.get_ident() != self._thread and node is None:
            # Another thread's forward: the mode does not count it, and its frames
            # (numbered in that thread's own autograd sequence) would blur where
            # this thread's backward nodes came from. Backward threads (checkpoint
            # recomputation on an autograd device thread) do count and keep theirs.
            return
        stack = self._stack()
        recomputed = False
        if stack and stack[-1].entered_in is node:
            parent: Frame | None = stack[-1]  # called by the running call
        elif node is not None and recomputing(node):
            parent, recomputed = self._caller_in_first_forward(node, module), True
        else:
            parent = frame_of(self._nodes, node)  # backward work, inside a forward or not
        # without roots, a call outside every module starts a row; with roots, a root
        # starts rows of its own whoever calls it
        root = self._root_name(module) if parent is None or self._roots is not None else None
        rerun = None if root is None else _call_on_chain(parent, module)
        if rerun is not None:  # a checkpoint re-running a root from its own backward
            path, parent = rerun.path, rerun.parent
            inherited = () if parent is None else parent.paths
        elif root is not None:
            path, inherited = root, () if parent is None else parent.paths
        elif parent is None:
            return  # not a root, called outside every root: Global only
        else:
            path, parent = self._path_under(parent, module)
            inherited = () if parent is None else parent.paths
        paths = inherited if path in inherited else (*inherited, path)
        if recomputed:
            self._local.recompute_rows = (node, inherited)
        stack.append(Frame(module, path, parent, paths, _next_sequence_nr(), entered_in=node))

    def _leave_module(self, module: torch.nn.Module, args: object, output: object) -> None:
        stack = getattr(self._local, "stack", None)
        if not stack or stack[-1].module is not module:
            return  # entered before tracking started, or not tracked
        frame = stack.pop()
        frame.end_node = _next_sequence_nr()
        frame.entered_in = None  # an ended call keeps no backward graph alive
        if frame.end_node > frame.first_node:
            self._thread_nodes().add(frame)
            self._last_answer = _NO_ANSWER  # a node may belong to this call

    # -- helpers -----------------------------------------------------------------------

    def _path_under(self, parent: Frame, module: torch.nn.Module) -> tuple[str, Frame | None]:
        """The path of ``module`` called inside ``parent``, and its real parent frame.

        A module already on the call chain (recursion, or checkpoint recomputation
        started from one of its own backward nodes) keeps that call's path.
        """
        children = parent.module._modules
        for name, child in children.items():
            if child is module:
                return f"{parent.path}.{name}", parent
        if _dynamo_imported():  # a compiled child runs the module it compiled
            for name, child in children.items():
                if child is not None and _compiled(child) is module:
                    return f"{parent.path}.{name}", parent
        call = _call_on_chain(parent, module)
        if call is not None:
            return call.path, call.parent
        descendant = _descendant_name(self._descendants, parent.module, module)
        if descendant is not None:
            return f"{parent.path}.{descendant}", parent
        return f"{parent.path}.{class_name(module)}", parent

    def _caller_in_first_forward(self, node: Any, module: torch.nn.Module) -> Frame | None:
        """The call that called ``module`` when the checkpoint re-running it first ran.

        A reentrant checkpoint re-runs its function from its own node, made by
        its caller; a non-reentrant one from the node of the function that
        unpacks a saved tensor, made in a call the function ran: the caller is
        the nearest call out from there that holds ``module``. A reentrant
        checkpoint nested in a re-run function made its node outside every call:
        it runs inside the backward of the checkpoint re-running it.
        """
        made_in = frame_of(self._nodes, node)
        if made_in is None:
            enclosing = (frame_of(self._nodes, outer) for outer in python_backward_nodes())
            made_in = next((frame for frame in enclosing if frame is not None), None)
        if _call_on_chain(made_in, module) is not None:
            return made_in  # the checkpoint re-runs a call of that chain: its own path
        caller = made_in
        while (
            caller is not None
            and _descendant_name(self._descendants, caller.module, module) is None
        ):
            caller = caller.parent
        return made_in if caller is None else caller

    def _root_name(self, module: torch.nn.Module) -> str | None:
        if self._roots is None:
            name = class_name(module)
            return GLOBAL_ALIAS if name == GLOBAL else name
        return self._roots.get(module)

    def _stack(self) -> list[Frame]:
        stack: list[Frame] | None = getattr(self._local, "stack", None)
        if stack is None:
            stack = self._local.stack = self._thread_nodes().running
        return stack

    def _thread_nodes(self) -> NodeIndex:
        thread = threading.get_ident()
        nodes = self._nodes.get(thread)
        if nodes is None:
            nodes = self._nodes[thread] = NodeIndex()
        return nodes


def _call_on_chain(frame: Frame | None, module: torch.nn.Module) -> Frame | None:
    """The call of ``module`` on the chain of calls ending at ``frame``, if any."""
    while frame is not None and frame.module is not module:
        frame = frame.parent
    return frame


def _descendant_name(
    cache: dict[torch.nn.Module, dict[torch.nn.Module, str | None]],
    ancestor: torch.nn.Module,
    module: torch.nn.Module,
) -> str | None:
    names = cache.get(ancestor)
    if names is None or module not in names:  # a submodule added since: look again
        names = cache[ancestor] = {}
        for name, descendant in ancestor.named_modules():
            names.setdefault(descendant, name)  # the first name, as named_modules dedupes
        names.setdefault(module, None)  # not below it: asked once
    return names[module]


def class_name(module: torch.nn.Module) -> str:
    """A module's class name; for a module FSDP2 sharded, that of its own class.

    ``fully_shard`` swaps a module's class for ``FSDP<Class>``: its rows keep the
    names they had unsharded.
    """
    cls = type(module)
    fsdp = sys.modules.get("torch.distributed.fsdp")
    sharded = getattr(fsdp, "FSDPModule", None)
    if sharded is not None and issubclass(cls, sharded):
        cls = next(c for c in cls.__mro__ if not issubclass(c, sharded))
    return cls.__name__


def _dynamo_imported() -> bool:
    """Whether ``torch.compile`` wrappers can exist yet: only once dynamo is imported."""
    return "torch._dynamo.eval_frame" in sys.modules


def _is_compile_wrapper(module: torch.nn.Module) -> bool:
    """``torch.compile(module)``'s OptimizedModule (only there once dynamo is imported)."""
    eval_frame = sys.modules.get("torch._dynamo.eval_frame")
    return eval_frame is not None and isinstance(module, eval_frame.OptimizedModule)


def _compiled(module: torch.nn.Module) -> torch.nn.Module:
    """The module a ``torch.compile`` wrapper compiled; any other module as it is."""
    return module._orig_mod if _is_compile_wrapper(module) else module  # type: ignore[return-value]
