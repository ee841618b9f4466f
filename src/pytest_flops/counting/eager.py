"""Compiled code runs eagerly, op by op, while a counter counts.

``torch.compile`` cannot trace under a dispatch mode; rather than skip frames
(and fail ``fullgraph=True`` compiles, FlexAttention's and ``torch.cond``'s
eager paths among them), the compiler's stance is ``"force_eager"`` while
counting. Setting a stance imports ``torch._dynamo``, which takes seconds: when
nothing has imported it yet, nothing compiled can run either, until something
imports it (a first ``torch.compile`` or ``flex_attention`` call inside the
block). So the stance is then set at that moment, from an import hook, and a
plain-torch session never pays for the import.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from types import ModuleType
from typing import Any

_DYNAMO = "torch._dynamo"

_lock = threading.RLock()
_depth = 0  # counting blocks open, in any thread
_stance: ExitStack | None = None  # the stance, once set


@contextmanager
def compiled_code_runs_eagerly() -> Iterator[None]:
    """While any such block is open, the compiler's stance is ``force_eager``."""
    _open()
    try:
        yield
    finally:
        _close()


def _open() -> None:
    global _depth
    with _lock:
        _depth += 1
        if _depth > 1:
            return
        if _DYNAMO in sys.modules:
            _set_stance()
        else:
            sys.meta_path.insert(0, _HOOK)


def _close() -> None:
    global _depth, _stance
    with _lock:
        _depth -= 1
        if _depth:
            return
        if _HOOK in sys.meta_path:
            sys.meta_path.remove(_HOOK)
        if _stance is not None:
            stance, _stance = _stance, None
            stance.close()


def _set_stance() -> None:
    global _stance
    import torch.compiler

    stance = ExitStack()
    stance.enter_context(torch.compiler.set_stance("force_eager"))
    _stance = stance


def _dynamo_imported() -> None:
    with _lock:
        if _HOOK in sys.meta_path:
            sys.meta_path.remove(_HOOK)
        if _depth and _stance is None:
            _set_stance()


class _SetStanceAfterImport(importlib.abc.MetaPathFinder):
    """Finds ``torch._dynamo`` as the other finders do, and sets the stance once it ran."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != _DYNAMO:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None and spec.loader is not None:
                spec.loader = _ThenSetStance(spec.loader)
                return spec
        return None


class _ThenSetStance(importlib.abc.Loader):
    def __init__(self, loader: importlib.abc.Loader) -> None:
        self._loader = loader

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)
        _dynamo_imported()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loader, name)


_HOOK = _SetStanceAfterImport()
