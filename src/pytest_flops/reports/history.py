"""``python -m pytest_flops history``: each test's FLOPs over the commits that changed them.

Walks HEAD's first-parent line (the history as it landed, a merged branch as
its merge commit) with git, reads each snapshot file a commit touched, and
keeps one series per test and named measurement: a point where its counts
changed, where it was added, renamed or removed. A test is followed through
git renames of its file and through the move from the pre-0.2 layout, and the
point where that happened says so. Shown as terminal tables with a sparkline,
and as one offline HTML page with a line chart per series.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib.resources import files
from itertools import pairwise
from typing import Any

from pytest_flops.measurement import DEFAULT_NAME, relative_text
from pytest_flops.reports.diff import (
    file_and_test,
    measurement_change,
    one_precision,
    quantities,
    unit_of,
)
from pytest_flops.reports.diff_render import first_few, operators_moved, signed, title
from pytest_flops.reports.git import Commit, GitError, Repository, StoredSnapshot, parse
from pytest_flops.reports.html import filled, script_json
from pytest_flops.snapshots.format import FlopsSnapshot, comparable
from pytest_flops.tables import aligned
from pytest_flops.units import SIGNIFICANT, format_flops, telling_digits

__all__ = ["Point", "Series", "history", "history_html", "history_lines", "sparkline"]

SPARKS = "▁▂▃▄▅▆▇█"
SUBJECT_WIDTH = 50
SHALLOW_START = "history starts here: a shallow clone (git fetch --unshallow for earlier commits)"


@dataclass(frozen=True, kw_only=True)
class Point:
    commit: Commit
    counts: Mapping[str, int] | None  # total, forward, backward, ...; None once removed
    note: str = ""  # "added", "renamed from ...", "removed", "as at REF", "moved between ..."


@dataclass(frozen=True, kw_only=True)
class Series:
    test: str  # its label at the last point
    name: str  # the measurement's name
    points: tuple[Point, ...]

    @property
    def totals(self) -> list[int]:
        return [p.counts["total"] for p in self.points if p.counts is not None]


@dataclass(kw_only=True)
class _Lineage:
    """One test's snapshot file through its renames: what each commit made of it."""

    label: str
    paths: list[str]  # of its snapshot file, and of its test file, through the renames
    events: list[tuple[Commit, FlopsSnapshot | None, str]] = field(default_factory=list)

    def add(self, commit: Commit, stored: StoredSnapshot | None, note: str) -> None:
        if stored is not None:
            self.label = stored.label
            test_file = stored.label.partition("::")[0]
            self.paths += [path for path in (stored.path, test_file) if path not in self.paths]
        self.events.append((commit, None if stored is None else stored.snapshot, note))


def history(repository: Repository, *, paths: Sequence[str], since: str | None) -> list[Series]:
    """The series of every test whose snapshot or test file lies (or lay) under one of
    ``paths`` (relative to the repository's root; none: everywhere), ordered by test."""
    repository.commit("HEAD")  # a repository with no commit yet says so
    current = _as_at(repository, since)  # path -> lineage of the file there now
    lineages = list(current.values())
    ended: dict[str, _Lineage] = {}  # label -> lineage of a test whose file was removed
    log = list(repository.log(since=since))
    boundary = _shallow_boundary(repository)
    texts = repository.blobs(c.blob for _, changes in log for c in changes if c.blob)
    for commit, changes in log:
        where = f"commit {commit.short}"
        removed: dict[str, _Lineage] = {}
        for change in changes:
            if change.status == "D" and (gone := current.pop(change.path, None)):
                removed[gone.label] = gone
        for change in changes:
            if change.status == "D" or change.blob is None:
                continue
            stored = StoredSnapshot(
                path=change.path, snapshot=parse(texts[change.blob], path=change.path, where=where)
            )
            label = stored.label
            if change.status == "R" and change.old_path in current:
                lineage = current.pop(change.old_path)
                note = f"renamed from {lineage.label}" if label != lineage.label else ""
            elif change.path in current:
                lineage, note = current[change.path], ""
            elif moved := _moved(label, removed):  # a delete and an add git did not pair
                lineage = removed.pop(moved)
                note = f"renamed from {moved}" if moved != label else ""
            elif same := next((x for x in current.values() if x.label == label), None):
                lineage, note = same, ""  # a pre-0.2 file and its current one, side by side
            elif label in ended:  # removed by an earlier commit, now back
                lineage, note = ended.pop(label), "added again"
            else:
                lineage = _Lineage(label=label, paths=[])
                lineages.append(lineage)
                # a shallow clone's first commit adds every file it holds: say so
                note = SHALLOW_START if commit.sha in boundary else "added"
            current[change.path] = lineage
            lineage.add(commit, stored, note)
        for lineage in removed.values():
            if lineage not in current.values():
                lineage.add(commit, None, "removed")
                ended[lineage.label] = lineage
    chosen = [lineage for lineage in lineages if _under(lineage.paths, paths)]
    series = [s for lineage in chosen for s in _series(lineage)]
    if not series:
        where = ", ".join(paths) if paths else repository.root.as_posix()
        raise GitError(
            f"no snapshots under {where}: no commit of HEAD holds a __flops__ snapshot there"
        )
    return sorted(series, key=lambda s: (s.test, s.name != DEFAULT_NAME, s.name))


def _as_at(repository: Repository, since: str | None) -> dict[str, _Lineage]:
    """Each snapshot file at ``since`` (none without it), with its first point."""
    if since is None:
        return {}
    start = repository.commit(since)
    commit = repository.describe(start)
    found = {}
    for stored in repository.snapshots(start):
        lineage = _Lineage(label=stored.label, paths=[])
        lineage.add(commit, stored, f"as at {since}")
        found[stored.path] = lineage
    return found


def _moved(label: str, removed: Mapping[str, _Lineage]) -> str | None:
    """The test removed in the same commit that ``label`` is: the same name, or the only one
    of the same test file name and test name."""
    if label in removed:
        return label
    alike = [old for old in removed if file_and_test(old) == file_and_test(label)]
    return alike[0] if len(alike) == 1 else None


def _under(lineage_paths: Sequence[str], prefixes: Sequence[str]) -> bool:
    """Whether a path is a prefix, or lies in a folder that is."""
    if not prefixes:
        return True
    return any(
        prefix in ("", ".") or path == prefix or path.startswith(prefix.rstrip("/") + "/")
        for path in lineage_paths
        for prefix in prefixes
    )


def _shallow_boundary(repository: Repository) -> frozenset[str]:
    """The commits a shallow clone was cut at (none in a full clone)."""
    if repository.git("rev-parse", "--is-shallow-repository").strip() != "true":
        return frozenset()
    shallow = repository.root / repository.git("rev-parse", "--git-path", "shallow").strip()
    return frozenset(shallow.read_text().split()) if shallow.is_file() else frozenset()


def _series(lineage: _Lineage) -> list[Series]:
    points: dict[str, list[Point]] = {}
    previous: FlopsSnapshot | None = None
    for commit, snapshot, note in lineage.events:
        measurements = snapshot.measurements if snapshot is not None else {}
        for name, measurement in measurements.items():
            counts = quantities(measurement)
            line = points.setdefault(name, [])
            last = line[-1].counts if line else None
            if not line or last is None:
                line.append(Point(commit=commit, counts=counts, note=note or "added"))
            elif counts != last or note:
                line.append(Point(commit=commit, counts=counts, note=note))
            elif previous and snapshot and (moved := _moved_inside(previous, snapshot, name)):
                line.append(Point(commit=commit, counts=counts, note=moved))
        for name, line in points.items():
            if name not in measurements and line[-1].counts is not None:
                line.append(Point(commit=commit, counts=None, note="removed"))
        previous = snapshot
    return [
        Series(test=lineage.label, name=name, points=tuple(line)) for name, line in points.items()
    ]


def _moved_inside(before: FlopsSnapshot, after: FlopsSnapshot, name: str) -> str:
    """Where measurement ``name``, whose numbers all held, moved as ``diff`` compares the
    two (at the depth both hold, and so on): the modules its FLOPs moved between, else what
    moved inside them; empty where nothing moved."""
    before, after = comparable(before, after)
    was, now = before.measurements[name], after.measurements[name]
    moved = was.diff(now).moved
    if not moved:
        return ""
    origins = measurement_change("", name, was, now).origins
    modules = [
        f"{o.module} {signed(o.after - o.before, 'FLOP')}" for o in origins if o.after != o.before
    ]
    if modules:
        return f"moved between modules: {first_few(modules)}"
    inside = [f"{o.module}: {first_few(operators_moved(o))}" for o in origins]
    if inside:
        return f"moved between operators: {'; '.join(inside)}"
    return "changed: " + first_few(
        [f"{row.op} {row.unit} {row.before} -> {row.after}" for row in moved]
    )


# -- the terminal -----------------------------------------------------------------------


def sparkline(values: Sequence[int]) -> str:
    """``[1, 5, 9]`` as ``▁▄█``: each value's height between the smallest and the largest."""
    low, high = min(values), max(values)
    if low == high:
        return SPARKS[0] * len(values)
    return "".join(SPARKS[(v - low) * (len(SPARKS) - 1) // (high - low)] for v in values)


def history_lines(series: Sequence[Series]) -> list[str]:
    """Per series a heading with its sparkline and last total, then a row per point."""
    lines: list[str] = []
    for one in series:
        totals = one.totals
        last = one.points[-1]
        now = "removed" if last.counts is None else format_flops(last.counts["total"])
        if lines:
            lines.append("")
        lines.append(f"{title(one.test, one.name)}  {sparkline(totals)}  {now}")
        rows = [["date", "commit", "total", "change", "subject"]]
        previous: Mapping[str, int] | None = None
        for point, total in zip(one.points, _totals_text(one.points), strict=True):
            subject = point.commit.subject
            if len(subject) > SUBJECT_WIDTH:
                subject = subject[: SUBJECT_WIDTH - 3] + "..."
            rows.append(
                [
                    point.commit.date[:10],
                    point.commit.short,
                    total,
                    _change_text(previous, point),
                    subject + (f" ({point.note})" if point.note else ""),
                ]
            )
            previous = point.counts or previous
        lines += ["  " + line for line in aligned(rows, right=[False, False, True, True, False])]
    return lines


def _totals_text(points: Sequence[Point]) -> list[str]:
    """Each point's total with the digits that tell it from the totals before and after
    it, every digit past three kept (``1.0000 MFLOP``, ``1.0004 MFLOP``); ``-`` once
    removed."""
    counted = [(index, p.counts["total"]) for index, p in enumerate(points) if p.counts]
    digits = dict.fromkeys((index for index, _ in counted), SIGNIFICANT)
    for (before, first), (after, second) in pairwise(counted):
        telling = telling_digits(first, second)
        digits[before], digits[after] = max(digits[before], telling), max(digits[after], telling)
    texts = ["-"] * len(points)
    for index, total in counted:
        more = digits[index] > SIGNIFICANT
        texts[index] = format_flops(total, significant=digits[index], trailing_zeros=more)
    return texts


def _change_text(
    previous: Mapping[str, int] | None, point: Point, *, written: Callable[[int, str], str] = signed
) -> str:
    """The change from the point before, its amounts ``written`` short (``+1.6 KFLOP``) or
    :func:`_every_digit` (``+1,600 FLOP``)."""
    if point.counts is None or previous is None:
        return ""
    before, after = previous["total"], point.counts["total"]
    if before != after:
        return f"{written(after - before, 'FLOP')} ({relative_text(before, after)})"
    # the total held: say what moved (bytes accessed, FLOPs at one precision)
    for name in dict.fromkeys([*point.counts, *previous]):
        delta = point.counts.get(name, 0) - previous.get(name, 0)
        if delta:
            return f"{name} {written(delta, unit_of(name))}"
    return "0"


def _every_digit(delta: int, unit: str) -> str:
    """A nonzero change with every digit: ``+1,600 FLOP``."""
    return f"{delta:+,} {unit}"


# -- the page ---------------------------------------------------------------------------


def history_html(series: Sequence[Series], *, where: str) -> str:
    """One page that loads nothing: a line chart per series, drawn by ``assets/history.js``."""
    assets = files("pytest_flops.reports") / "assets"
    data = [_series_data(one) for one in series]
    parts = {
        "@TITLE@": html.escape(f"FLOPs history: {len(series)} measurement(s) of {where}"),
        "@STYLE@": (assets / "history.css").read_text(encoding="utf-8"),
        "@DATA@": script_json(data),
        "@SCRIPT@": "\n".join(
            (assets / script).read_text(encoding="utf-8") for script in ("common.js", "history.js")
        ),
    }
    return filled((assets / "history.html").read_text(encoding="utf-8"), parts)


def _series_data(series: Series) -> dict[str, Any]:
    """One series as the page reads it, each point's change from the one before as the
    terminal writes it (and with every digit, for its hover). FLOPs at a precision that
    hold all of them at every point are left out (the total says it); where the precision
    changed, every point lists its own."""
    held = {one_precision(point.counts) for point in series.points if point.counts is not None}
    same = held.pop() if len(held) == 1 else None
    points = []
    previous: Mapping[str, int] | None = None
    for point, total in zip(series.points, _totals_text(series.points), strict=True):
        points.append(
            {
                "total": total,
                "commit": point.commit.sha,
                "short": point.commit.short,
                "date": point.commit.date,
                "subject": point.commit.subject,
                "note": point.note,
                "counts": None
                if point.counts is None
                else {name: n for name, n in point.counts.items() if name != same},
                "change": _change_text(previous, point),
                "exact_change": _change_text(previous, point, written=_every_digit),
            }
        )
        previous = point.counts or previous
    return {"test": series.test, "name": series.name, "points": points}
