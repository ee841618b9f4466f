"""The plugin's own lines: the ``flops:`` summary, and the errors of a session (a
snapshot that cannot be written or removed, a hypothesis test). What a failed test
shows is :mod:`pytest_flops.plugin.diagnoses`."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from pytest_flops.snapshots.stale import STALE_SENTENCE


def measured_nothing_at_all(tests: Sequence[str]) -> list[str]:
    """The summary's list of tests that asked for ``flops`` but measured nothing."""
    if not tests:
        return []
    return [
        f"flops: {len(tests)} test(s) asked for the flops fixture but measured nothing "
        "(no `with flops(...)` block finished):",
        *(f"  {test}" for test in tests),
    ]


def saved(paths: Sequence[Path]) -> list[str]:
    """The summary's last lines: where each report file went."""
    return [f"flops: saved {path}" for path in paths]


def cannot_write(nodeid: str, location: str, error: OSError) -> str:
    return (
        f"Cannot write the FLOP snapshot of {nodeid}: {location}: {error}\n"
        f"The snapshot on disk, if any, is unchanged."
    )


def cannot_remove(location: str, error: Exception) -> str:
    return f"flops: cannot remove the stale snapshot {location}: {error}"


def hypothesis_test(nodeid: str) -> str:
    return (
        f"flops: {nodeid} is a hypothesis @given test: its body runs once per example, so "
        "its FLOPs would depend on the examples drawn. Measure a fixed input in a plain "
        "test (or a parametrized one), or use pytest_flops.count() inside the @given test."
    )


def summary_lines(
    *,
    counts: Iterable[tuple[str, int]],
    stale: Sequence[tuple[str, str]],
    held_back: Sequence[str],
    legacy: int,
    moved: bool,
    problems: Sequence[str],
    flops_only: Sequence[str] = (),
) -> list[str]:
    """``flops: 12 tests passed, 1 failed, 2 written, 1 removed`` and what goes with it.

    ``counts`` are (what, number of tests) pairs, the first four always shown;
    ``stale`` the stale snapshots kept, as (shown path, why) pairs; ``held_back``
    why no stale snapshot was judged under ``--flops-update`` or ``--flops-prune``;
    ``legacy`` how many snapshots were read from the layout before 0.2 (and
    ``moved``: copied to the current one, under ``--flops-update``); ``flops_only`` the
    measurements compared on FLOPs alone, as their snapshots record no bytes accessed.
    """
    counts = list(counts)
    if not any(number for _, number in counts) and not (stale or held_back or problems):
        return []
    (first_what, first_number), *others = counts
    noun = "test" if first_number == 1 else "tests"
    parts = [f"{first_number} {noun} {first_what}"]
    parts += [f"{number} {what}" for i, (what, number) in enumerate(others) if i < 3 or number]
    line = "flops: " + ", ".join(parts)
    if stale:
        line += f", {len(stale)} stale"
    lines = [line]
    if stale:
        lines.append(f"flops: {STALE_SENTENCE}:")
        lines += [f"  {path} ({why})" for path, why in stale]
    if held_back:
        lines.append(
            "flops: no stale snapshot was looked for or removed, as this run did not cover "
            f"the whole suite ({'; '.join(held_back)}); a whole run with --flops-prune "
            "removes them"
        )
    if legacy and moved:
        lines.append(
            f"flops: {legacy} snapshot(s) copied from the layout before pytest-flops 0.2 "
            "(__flops__/<file stem>/) to __flops__/<file name>/; `pytest --flops-prune` "
            "removes the old copies"
        )
    elif legacy:
        lines.append(
            f"flops: {legacy} snapshot(s) read from the layout before pytest-flops 0.2 "
            "(__flops__/<file stem>/); `pytest --flops-update` copies them to "
            "__flops__/<file name>/"
        )
    if flops_only:
        lines.append(
            f"flops: {len(flops_only)} measurement(s) compared on FLOPs alone: their "
            "snapshots record no bytes accessed; `pytest --flops-update` records them:"
        )
        lines += [f"  {label}" for label in flops_only]
    lines += problems
    return lines
