"""Changes to torch held while a counter counts, and undone when counting ends.

Compiled code runs eagerly (``eager``), DTensor's shape propagation runs
uncounted (``distributed``), and meta tensors take the CPU's kernels
(``meta_as_cpu``) only while a count runs. Each is one :class:`WhileCounting`:
the first counting block to open makes the change, the last to close undoes
it, also when a block raises. Counters may nest, and close in any order, in one
thread or several: a block that closes early never undoes a change that a
block still open relies on.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field


@contextmanager
def swapped(owner: object, name: str, value: object) -> Iterator[None]:
    """``owner.<name>`` is ``value`` inside the block, and what it was after it (absent
    again if ``owner`` did not hold it itself), also when the block raises."""
    own = vars(owner)
    held, before = name in own, own.get(name)
    setattr(owner, name, value)
    try:
        yield
    finally:
        if held:
            setattr(owner, name, before)
        else:
            delattr(owner, name)


@dataclass
class _Holders:
    count: int = 0  # blocks open
    undo: ExitStack = field(default_factory=ExitStack)


class _PerThread(threading.local):
    def __init__(self) -> None:
        self.holders = _Holders()


class _Shared:
    def __init__(self) -> None:
        self.holders = _Holders()


class WhileCounting:
    """One change to torch, held while any counting block is open.

    ``change`` makes it and enters what undoes it (a :func:`swapped`, a context
    manager, a callback) into the ``ExitStack`` it gets. With ``per_thread``,
    each thread's blocks hold their own change: for a change to thread-local state.
    """

    def __init__(self, change: Callable[[ExitStack], None], *, per_thread: bool = False) -> None:
        self._change = change
        self._lock = threading.RLock()  # re-entrant: a change may import what extends it
        self._scope: _PerThread | _Shared = _PerThread() if per_thread else _Shared()

    @contextmanager
    def held(self) -> Iterator[None]:
        holders = self._scope.holders
        with self._lock:
            if holders.count == 0:
                with ExitStack() as undo:  # a change that raises half way is undone
                    self._change(undo)
                    holders.undo = undo.pop_all()
            holders.count += 1
        try:
            yield
        finally:
            with self._lock:
                holders.count -= 1
                if holders.count == 0:
                    holders.undo.close()

    def extend(self, change: Callable[[ExitStack], None]) -> None:
        """Make ``change`` too if the change is held now (in this thread, if per thread),
        to be undone with it: for what can be done only once something else happened."""
        holders = self._scope.holders
        with self._lock:
            if holders.count:
                change(holders.undo)
