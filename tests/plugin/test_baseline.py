"""A test's baseline carries every knob of its comparison, resolved once from marker and session."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_flops.plugin.attempt import Attempt, ItemPlan
from pytest_flops.plugin.baseline import baseline_of
from pytest_flops.plugin.budget import Comparison
from pytest_flops.plugin.marks import ItemMarks
from pytest_flops.plugin.settings import Settings
from pytest_flops.snapshots.store import SnapshotStore


def resolved(chosen: Comparison, settings: Settings, tmp_path: Path) -> tuple[float, float, bool]:
    plan = ItemPlan(
        name="test_a",
        test_file=tmp_path / "test_m.py",
        uses_fixture=True,
        marks=ItemMarks(comparison=chosen),
    )
    attempt = Attempt()
    found = baseline_of(plan, attempt, settings=settings, store=SnapshotStore(), shown=str)
    # read once: a second ask gives the same object, whatever the settings say now
    again = baseline_of(plan, attempt, settings=Settings(), store=SnapshotStore(), shown=str)
    assert again is found
    return found.rtol, found.bytes_rtol, found.compare_bytes


@pytest.mark.parametrize(
    ("chosen", "settings", "expected"),
    [
        (Comparison(), Settings(), (0.0, 0.0, True)),
        # bytes follow the FLOPs' tolerance, the marker's before the session's
        (Comparison(), Settings(rtol=0.2), (0.2, 0.2, True)),
        (Comparison(rtol=0.1), Settings(rtol=0.2), (0.1, 0.1, True)),
        # a bytes tolerance of its own wins over any rtol, the marker's over the session's
        (Comparison(rtol=0.1), Settings(bytes_rtol=0.5), (0.1, 0.5, True)),
        (Comparison(bytes_rtol=0.3), Settings(rtol=0.2, bytes_rtol=0.5), (0.2, 0.3, True)),
        # the switch: the marker's before the session's
        (Comparison(), Settings(bytes_gate=False), (0.0, 0.0, False)),
        (Comparison(bytes=True), Settings(bytes_gate=False), (0.0, 0.0, True)),
        (Comparison(bytes=False), Settings(), (0.0, 0.0, False)),
    ],
)
def test_the_tolerances_and_the_bytes_switch_are_resolved_in_the_baseline(
    tmp_path: Path,
    chosen: Comparison,
    settings: Settings,
    expected: tuple[float, float, bool],
) -> None:
    assert resolved(chosen, settings, tmp_path) == expected
