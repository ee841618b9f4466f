"""What one run collected and ran: the evidence that stale snapshots are judged on.

A :class:`RunRecord` is plain data, learned by the session as pytest reports
collection and each test's phases: which files were collected whole, which
tests ran, measured, or passed without measuring, and what narrowed the run.
xdist workers send theirs to the controller, which merges them;
:mod:`pytest_flops.snapshots.stale` judges from the result. Its
:class:`CollectionRules` say which tests of a file this run could have
collected at all.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True, kw_only=True)
class CollectionRules:
    """Which tests of a Python file this run could have collected at all.

    A snapshot of a test it could not have collected (its doctest without
    ``--doctest-modules``, a function or class that ``python_functions`` or
    ``python_classes`` no longer match, a ``TestCase`` under ``-p no:unittest``)
    is never called gone.
    """

    python_functions: tuple[str, ...] = ("test",)
    python_classes: tuple[str, ...] = ("Test",)
    doctest_modules: bool = False

    def could_collect(self, test_file: Path, test: str, *, unittest_classes: set[str]) -> bool:
        """``unittest_classes`` are the file's ``TestCase`` classes this run collected,
        whose ``test*`` methods are tests whatever ``python_functions`` says."""
        if test_file.suffix != ".py":
            return True
        head = test.partition("[")[0]
        if "::" not in head and "." in head:
            # "pkg.module.function": a doctest (Python names hold no dots)
            return self.doctest_modules
        *classes, function = head.split("::")
        if classes[:1] and classes[0] in unittest_classes:
            return function.startswith("test")
        return _matches(function, self.python_functions) and all(
            _matches(name, self.python_classes) for name in classes
        )


def _matches(name: str, patterns: Iterable[str]) -> bool:
    """pytest's rule for ``python_functions`` and ``python_classes``: a prefix or a glob."""
    return any(
        name.startswith(pattern)
        or (any(c in pattern for c in "*?[") and fnmatch.fnmatch(name, pattern))
        for pattern in patterns
    )


@dataclass(kw_only=True)
class CollectedFile:
    """What happened to the tests of one test file."""

    walked: bool = False  # its collector really collected it (not a stand-in report)
    complete: bool = True  # no collector in it failed, was skipped or gave up on a class
    tests: set[str] = field(default_factory=set)  # snapshot names collected, deselected too
    measuring: set[str] = field(default_factory=set)  # of those, the ones using a FLOP feature
    unittest_classes: set[str] = field(default_factory=set)  # TestCase classes collected
    hidden_classes: set[str] = field(default_factory=set)  # test classes pytest skipped whole
    ran: set[str] = field(default_factory=set)  # tests that ran through their teardown
    measured: set[str] = field(default_factory=set)  # tests that measured in some attempt
    unmeasured: set[str] = field(default_factory=set)  # tests whose call passed, measuring nothing
    taken: dict[str, set[str]] = field(default_factory=dict)  # measurement names, any attempt
    dropped: dict[str, set[str]] = field(default_factory=dict)  # stored names a whole pass lacked

    @property
    def whole(self) -> bool:
        """Every test of the file was collected (deselected ones too)."""
        return self.walked and self.complete

    @property
    def ran_whole(self) -> bool:
        return self.whole and self.tests <= self.ran

    def hidden(self, test: str) -> bool:
        """Whether ``test`` is a method of a class pytest skipped whole (``__test__ = False``,
        abstract): in its file still, and not gone. A subclass that pytest collects names
        its tests after itself, so its snapshots are judged as any other's."""
        return any(test.startswith(f"{cls}::") for cls in self.hidden_classes)

    @property
    def wanted(self) -> set[str]:
        """The tests whose snapshots this file still uses."""
        return self.tests - (self.unmeasured - self.measured)

    def stale_measurements(self, test: str) -> set[str]:
        """Named measurements in the snapshot of ``test`` that no attempt of it took."""
        return self.dropped.get(test, set()) - self.taken.get(test, set())

    def merge(self, other: CollectedFile) -> None:
        self.walked |= other.walked
        self.complete &= other.complete
        self.tests |= other.tests
        self.measuring |= other.measuring
        self.unittest_classes |= other.unittest_classes
        self.hidden_classes |= other.hidden_classes
        self.ran |= other.ran
        self.measured |= other.measured
        self.unmeasured |= other.unmeasured
        for mine, theirs in ((self.taken, other.taken), (self.dropped, other.dropped)):
            for test, names in theirs.items():
                mine.setdefault(test, set()).update(names)

    def to_dict(self) -> dict[str, Any]:
        return {
            "walked": self.walked,
            "complete": self.complete,
            "tests": sorted(self.tests),
            "measuring": sorted(self.measuring),
            "unittest_classes": sorted(self.unittest_classes),
            "hidden_classes": sorted(self.hidden_classes),
            "ran": sorted(self.ran),
            "measured": sorted(self.measured),
            "unmeasured": sorted(self.unmeasured),
            "taken": {test: sorted(names) for test, names in self.taken.items()},
            "dropped": {test: sorted(names) for test, names in self.dropped.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CollectedFile:
        return cls(
            walked=bool(data["walked"]),
            complete=bool(data["complete"]),
            tests=set(data["tests"]),
            measuring=set(data["measuring"]),
            unittest_classes=set(data["unittest_classes"]),
            hidden_classes=set(data["hidden_classes"]),
            ran=set(data["ran"]),
            measured=set(data["measured"]),
            unmeasured=set(data["unmeasured"]),
            taken={test: set(names) for test, names in data["taken"].items()},
            dropped={test: set(names) for test, names in data["dropped"].items()},
        )


@dataclass(kw_only=True)
class RunRecord:
    """The evidence of one run (or, merged, of every xdist worker's share of it)."""

    files: dict[Path, CollectedFile] = field(default_factory=dict)
    directories: set[Path] = field(default_factory=set)  # whose collector passed
    roots: tuple[Path, ...] = ()  # directories named whole on the command line
    narrowed: list[str] = field(default_factory=list)  # why nothing may be judged stale
    rules: CollectionRules = field(default_factory=CollectionRules)

    def file(self, path: Path) -> CollectedFile:
        return self.files.setdefault(path, CollectedFile())

    def narrow(self, reason: str) -> None:
        if reason not in self.narrowed:
            self.narrowed.append(reason)

    def merge(self, other: RunRecord) -> None:
        for path, collected in other.files.items():
            self.file(path).merge(collected)
        self.directories |= other.directories
        for reason in other.narrowed:
            self.narrow(reason)

    def to_dict(self) -> dict[str, Any]:
        """What an xdist worker sends (the controller has its own roots and rules)."""
        return {
            "files": {str(path): collected.to_dict() for path, collected in self.files.items()},
            "directories": sorted(map(str, self.directories)),
            "narrowed": list(self.narrowed),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunRecord:
        return cls(
            files={Path(path): CollectedFile.from_dict(raw) for path, raw in data["files"].items()},
            directories={Path(path) for path in data["directories"]},
            narrowed=list(data["narrowed"]),
        )
