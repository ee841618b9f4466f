"""Which module call made an autograd node: each call's interval of node numbers,
and the nodes made while a backward node ran with grad enabled."""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

__all__ = ["RUNNING", "Frame", "NodeIndex", "frame_of"]

RUNNING = 2**64
"""The end of a call's interval while it runs: every node made from its start on."""


@dataclass(eq=False, slots=True)
class Frame:
    """One call of a module's forward."""

    module: torch.nn.Module
    path: str
    parent: Frame | None
    # Distinct paths from the root call down to this one: the rows this call's
    # FLOPs are added to. A recursive call adds nothing new.
    paths: tuple[str, ...]
    first_node: int
    end_node: int = RUNNING
    # the autograd node running as the call began (None in forward), until it ends
    entered_in: Any = None


@dataclass
class NodeIndex:
    """Finds the module call that created an autograd node.

    A node made by a module's forward falls in that call's interval: of an ended
    call, or of one still running (a backward run inside a forward). A node
    made while backward runs with grad enabled (``create_graph=True``: gradient
    penalties, Hessian-vector products) belongs to the module whose backward
    node made it; those are kept apart, as ranges in creation order.
    """

    # this thread's calls still running, outermost first: its module stack
    running: list[Frame] = field(default_factory=list)
    keys: list[tuple[int, int]] = field(default_factory=list)
    frames: list[Frame] = field(default_factory=list)
    made_in_backward_starts: list[int] = field(default_factory=list)
    made_in_backward_ends: list[int] = field(default_factory=list)
    made_in_backward_frames: list[Frame] = field(default_factory=list)

    def add(self, frame: Frame) -> None:
        # Sort by start, then innermost (smallest end) last among equal starts.
        # Frames are added as they end, inner ones first: an outer frame with the
        # same key (it created no node after its child) goes before its child.
        key = (frame.first_node, -frame.end_node)
        at = bisect_left(self.keys, key)
        self.keys.insert(at, key)
        self.frames.insert(at, frame)

    def add_made_in_backward(self, start: int, end: int, frame: Frame) -> None:
        """Nodes ``start`` to ``end - 1`` were made while a backward node of ``frame`` ran."""
        if self.made_in_backward_frames and (
            self.made_in_backward_frames[-1] is frame and self.made_in_backward_ends[-1] == start
        ):
            self.made_in_backward_ends[-1] = end
            return
        self.made_in_backward_starts.append(start)
        self.made_in_backward_ends.append(end)
        self.made_in_backward_frames.append(frame)

    def frame_of(self, sequence_nr: int) -> Frame | None:
        if self.made_in_backward_starts:
            at = bisect_right(self.made_in_backward_starts, sequence_nr) - 1
            if at >= 0 and sequence_nr < self.made_in_backward_ends[at]:
                return self.made_in_backward_frames[at]
        at = bisect_right(self.keys, (sequence_nr, 1)) - 1
        frame = self.frames[at] if at >= 0 else None
        while frame is not None and not frame.first_node <= sequence_nr < frame.end_node:
            frame = frame.parent
        if frame is not None and frame.end_node != RUNNING:
            return frame  # an ended call runs inside every running call that holds the node
        for running in reversed(self.running):  # innermost first
            if running.first_node <= sequence_nr:
                return running  # made in this call, outside every call of it that ended
        return frame


def frame_of(indexes: Mapping[int, NodeIndex], node: Any) -> Frame | None:
    """The module call that made autograd ``node``, from the index of each thread that
    numbers nodes; None if unknown or ambiguous.

    Each thread numbers the nodes it makes. A node that CUDA's backward thread
    runs was made by the forward (the entering thread's numbers) or on that
    thread (a checkpoint's recomputation, a double backward): where both
    numberings place it, in different calls, it is left to ``"Global"``
    rather than guessed.
    """
    if node is None:
        return None
    sequence_nr = node._sequence_nr()
    if len(indexes) == 1:  # one thread numbered every node: the usual case
        for index in indexes.values():
            return index.frame_of(sequence_nr)
    found = {index.frame_of(sequence_nr) for index in indexes.values()} - {None}
    return found.pop() if len(found) == 1 else None
