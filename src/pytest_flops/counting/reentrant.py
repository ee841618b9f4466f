"""A dispatch mode that may be entered again while it is active, and counts once."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Self

from torch.utils._python_dispatch import TorchDispatchMode, _get_current_dispatch_mode_stack

__all__ = ["ReentrantMode"]


class ReentrantMode(TorchDispatchMode):
    """A dispatch mode that may be entered again while it is active, and counts once.

    Entering it after it exited starts afresh (:meth:`_start`); entering it
    while active (nesting the same instance) pushes nothing, except from inside
    its own dispatch: a ``torch.library.register_torch_dispatch`` rule for the
    class runs with the mode popped, and is pushed back so the rule's ops count.
    """

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self._active = 0
        self._pushed: list[bool] = []  # per entry: did it push the mode

    def _start(self) -> None:
        """Set up the outermost entry (undoing what it did, if it raises)."""

    def _stop(self) -> None:
        """Undo :meth:`_start` at the outermost exit."""

    def __enter__(self) -> Self:
        if self._active == 0:
            self._start()
            try:
                super().__enter__()  # type: ignore[no-untyped-call]
            except BaseException:
                self._stop()
                raise
            self._pushed.append(False)  # the last exit pops it, below
        else:
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
            self._stop()

    @contextmanager
    def _counting_again(self) -> Iterator[None]:
        """Re-push this mode (which dispatch popped) so a decomposition's or a body's ops count."""
        TorchDispatchMode.__enter__(self)
        try:
            yield
        finally:
            TorchDispatchMode.__exit__(self, None, None, None)
