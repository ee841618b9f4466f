"""One measured test's plan and attempts, and the outcomes its last attempt can come to.

:class:`ItemPlan` is what collection learned of a test (``item.stash[PLAN_KEY]``),
:class:`Attempt` one run of it through setup, call and teardown
(``item.stash[ATTEMPT_KEY]``; a rerun or a repeat starts a new one), and
:class:`Outcome` what its FLOP check came to. What the attempt measured, with its
records, is :mod:`pytest_flops.plugin.result`'s.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from pytest_flops.plugin import marks

if TYPE_CHECKING:
    from pytest_flops.counting.fixture import Flops
    from pytest_flops.plugin.baseline import Baseline
    from pytest_flops.plugin.verdict import Verdict

__all__ = ["ATTEMPT_KEY", "PLAN_KEY", "Attempt", "ItemPlan", "Outcome"]


@dataclass(frozen=True, kw_only=True)
class ItemPlan:
    """What collection learned of a test; kept in ``item.stash[PLAN_KEY]``."""

    name: str  # the test's name in its file, repeats folded: "TestLM::test_generate[cpu]"
    test_file: Path
    uses_fixture: bool
    marks: marks.ItemMarks
    marks_error: str | None = None  # the usage error of a bad marker argument
    hypothesis: bool = False  # a hypothesis @given test: runs its body once per example

    @property
    def measures(self) -> bool:
        """Whether the test uses a FLOP feature (then torch is imported before it runs)."""
        return self.uses_fixture or self.marks.budget is not None


@dataclass(kw_only=True)
class Attempt:
    """One run of a test through setup, call and teardown; ``item.stash[ATTEMPT_KEY]``."""

    fixture: Flops | None = None  # the test's ``flops`` fixture
    whole_call: Flops | None = None  # limit_flops without the fixture: the call phase
    in_call: bool = False  # reports made now are a subtest's, not the test's
    called: bool = False  # its call phase ran (not under --setup-only)
    passed: bool = True  # every phase (and subtest) so far passed
    partial: bool = False  # a subtest was skipped: a measurement not taken may be its
    verdict: Verdict | None = None
    baseline: Baseline | None = None  # its snapshot, read at most once
    kept: frozenset[str] = frozenset()  # stored measurements not taken, baselines kept

    @contextmanager
    def calling(self, plan: ItemPlan) -> Iterator[None]:
        """The call phase: a ``limit_flops`` test without the fixture is counted whole."""
        self.in_call = self.called = True
        try:
            if plan.uses_fixture or plan.marks.budget is None:
                yield
            else:
                from pytest_flops.counting.fixture import Flops

                self.whole_call = Flops()
                with self.whole_call():
                    yield
        finally:
            self.in_call = False
            if self.fixture is not None:
                self.fixture._close("the test was compared with its snapshot when its call ended")

    @property
    def counted(self) -> Flops | None:
        return self.fixture or self.whole_call

    @property
    def legacy(self) -> bool:
        """Its snapshot was read from the layout before 0.2."""
        return self.baseline is not None and self.baseline.found.legacy


PLAN_KEY = pytest.StashKey[ItemPlan]()
ATTEMPT_KEY = pytest.StashKey[Attempt]()


class Outcome(StrEnum):
    """What a test's FLOP check came to; the numbers of the ``flops:`` summary line."""

    PASSED = "passed"
    FAILED = "failed"
    WRITTEN = "written"
    REMOVED = "removed"  # only --flops-prune removes, at the end: counted there
    NOT_COMPARED = "not compared (test failed)"
