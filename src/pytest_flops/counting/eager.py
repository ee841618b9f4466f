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
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from types import ModuleType
from typing import Any

from pytest_flops.counting.patching import WhileCounting

_DYNAMO = "torch._dynamo"


@contextmanager
def compiled_code_runs_eagerly() -> Iterator[None]:
    """While any such block is open, the compiler's stance is ``force_eager``."""
    with _FORCE_EAGER.held():
        yield


def _force_eager(undo: ExitStack) -> None:
    if _DYNAMO in sys.modules:
        _set_stance(undo)
    else:
        sys.meta_path.insert(0, _HOOK)
        undo.callback(_unhook)


def _set_stance(undo: ExitStack) -> None:
    import torch.compiler

    undo.enter_context(torch.compiler.set_stance("force_eager"))


def _unhook() -> None:
    if _HOOK in sys.meta_path:
        sys.meta_path.remove(_HOOK)


def _stance_once_imported(undo: ExitStack) -> None:
    _unhook()
    _set_stance(undo)


def _dynamo_imported() -> None:
    _FORCE_EAGER.extend(_stance_once_imported)


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
_FORCE_EAGER = WhileCounting(_force_eager)
