"""Recompute in snapshots: stored, compared and named; older snapshots compare as they were."""

from __future__ import annotations

import json

import pytest

from pytest_flops import Measurement, ModuleFlops, SnapshotFormatError, Status
from pytest_flops.plugin.verdict import Verdict, judge
from pytest_flops.snapshots.format import FORMAT_VERSION, FlopsSnapshot
from tests.helpers import stored

LOCATION = "tests/__flops__/test_models.py/test_a.flops.json"

# The MLP: Linear(64, 256) -> ReLU -> Linear(256, 64) on (32, 64), which
# requires grad. Each linear is 1,048,576 FLOPs forward; backward takes two products
# per linear; a reentrant checkpoint re-runs both linears, torch's default
# non-reentrant one only the first.
LINEAR = 2 * 32 * 64 * 256


def mlp(recomputed_linears: int) -> Measurement:
    recompute = recomputed_linears * LINEAR
    row = ModuleFlops(
        forward=2 * LINEAR,
        backward=4 * LINEAR,
        recompute=recompute,
        by_op={"aten.addmm": 2 * LINEAR + recompute, "aten.mm": 4 * LINEAR},
    )
    return Measurement(modules={"Global": row, "Sequential": row})


def snapshot(measurement: Measurement, *, version: int = FORMAT_VERSION) -> FlopsSnapshot:
    return FlopsSnapshot(
        test="test_a", depth=3, measurements={"default": measurement}, version=version
    )


def as_version_2(measurement: Measurement) -> FlopsSnapshot:
    """What pytest-flops wrote before recompute was a phase: recompute in backward (and
    no bytes, which came later)."""
    text = snapshot(measurement.with_recompute_in_backward().without_bytes()).to_text()
    text = text.replace(f'"version": {FORMAT_VERSION}', '"version": 2', 1)
    return FlopsSnapshot.from_text(text, where="v2")


def decide(current: Measurement, stored: FlopsSnapshot, *, update: bool = False) -> Verdict:
    verdict = judge(
        nodeid="tests/test_models.py::test_a",
        location=LOCATION,
        current=snapshot(current),
        stored=stored,
        rtol=0.0,
        update=update,
        budget=None,
    )
    assert verdict is not None
    return verdict


def test_recompute_is_stored_per_row_and_read_back() -> None:
    measured = snapshot(mlp(recomputed_linears=1))
    data = json.loads(measured.to_text())["measurements"]["default"]
    assert (data["total"], data["recompute"]) == (7 * LINEAR, LINEAR)
    assert data["modules"]["Sequential"]["recompute"] == LINEAR
    assert FlopsSnapshot.from_text(measured.to_text(), where="f") == measured


def test_a_measurement_without_recompute_reads_back_from_a_version_2_file() -> None:
    # recompute is written only where there is some, as communication is: apart from
    # the version line and the bytes, a file without checkpoints is what version 2 wrote
    text = snapshot(mlp(recomputed_linears=0)).to_text()
    assert '"recompute"' not in text
    stored = as_version_2(mlp(recomputed_linears=0)).measurements["default"]
    assert stored == mlp(0).without_bytes()


def test_a_file_whose_version_was_lowered_by_hand_is_unreadable() -> None:
    # read as version 2, its recompute would be compared as backward: a hand edit (or a
    # bad conflict resolution) must not weaken the comparison unnoticed
    text = snapshot(mlp(recomputed_linears=1).without_bytes()).to_text()
    lowered = text.replace(f'"version": {FORMAT_VERSION}', '"version": 2', 1)
    with pytest.raises(
        SnapshotFormatError,
        match=r"^v2: measurements\['default'\]: holds recompute, which format version 3 "
        r"introduced, but the file says version 2: was its version edited\?$",
    ):
        FlopsSnapshot.from_text(lowered, where="v2")


def test_a_recompute_that_grows_fails_and_the_diagnosis_names_the_phase() -> None:
    # reentrant (both linears re-run) against the default early stop (one): +100%
    verdict = decide(mlp(recomputed_linears=2), snapshot(mlp(recomputed_linears=1)))
    assert verdict.statuses == {"default": Status.CHANGED}
    assert verdict.failure is not None
    lines = verdict.failure.splitlines()
    assert lines[1:4] == [
        "  forward   2,097,152 (unchanged)",
        "  backward  4,194,304 (unchanged)",
        "  recompute 1,048,576 → 2,097,152 FLOP (+100.00%)",
    ]


def test_backward_moving_to_recompute_is_a_change_in_a_current_snapshot() -> None:
    # the same total, the phase moved: a version-3 snapshot tells them apart
    moved = mlp(recomputed_linears=1)
    in_backward = snapshot(moved.with_recompute_in_backward())
    verdict = decide(moved, in_backward)
    assert verdict.statuses == {"default": Status.CHANGED}
    assert verdict.failure is not None
    assert "  recompute 0 → 1,048,576 FLOP (from 0)" in verdict.failure.splitlines()


@pytest.mark.parametrize("recomputed_linears", [0, 1, 2])
def test_a_version_2_snapshot_compares_with_recompute_taken_as_backward(
    recomputed_linears: int,
) -> None:
    current = mlp(recomputed_linears)
    old = as_version_2(current)
    assert old.measurements["default"].backward == (4 + recomputed_linears) * LINEAR
    verdict = decide(current, old)
    assert verdict.failure is None
    assert verdict.statuses == {"default": Status.PASSED}
    # and a real change still fails against it
    assert decide(mlp(recomputed_linears + 1), old).statuses == {"default": Status.CHANGED}


def test_update_rewrites_a_version_2_snapshot_of_a_checkpointed_step() -> None:
    current = mlp(recomputed_linears=2)
    verdict = decide(current, as_version_2(current), update=True)
    assert verdict.statuses == {"default": Status.UPDATED}
    assert verdict.write is not None
    assert json.loads(verdict.write.to_text())["version"] == FORMAT_VERSION
    assert verdict.write.measurements["default"].recompute == 2 * LINEAR


CHECKPOINTED = """
import torch
from torch.utils.checkpoint import checkpoint


def test_step(flops):
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(64, 256), torch.nn.ReLU(), torch.nn.Linear(256, 64)
    )
    x = torch.randn(32, 64, requires_grad=True)
    with flops(model):
        checkpoint(model, x, use_reentrant=REENTRANT).sum().backward()
"""


@pytest.mark.slow
def test_a_version_2_file_passes_until_the_recompute_changes(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_m=CHECKPOINTED.replace("REENTRANT", "False"))
    pytester.runpytest("--flops-update").assert_outcomes(passed=1)
    (path,) = (pytester.path / "__flops__").rglob("*.flops.json")
    written = stored(pytester)["test_step"]
    assert written["version"] == FORMAT_VERSION
    assert written["measurements"]["default"]["recompute"] == LINEAR

    # the file as pytest-flops wrote it before: recompute inside backward, no bytes
    current = FlopsSnapshot.from_text(path.read_text(), where=str(path))
    legacy = current.with_recompute_in_backward().without_bytes(current.measurements).to_text()
    path.write_text(legacy.replace(f'"version": {FORMAT_VERSION}', '"version": 2', 1))
    pytester.runpytest().assert_outcomes(passed=1)

    pytester.makepyfile(test_m=CHECKPOINTED.replace("REENTRANT", "True"))
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    # against a version-2 file the phase cannot be told apart: the recompute's growth
    # shows as backward's (5 -> 6 products of 1,048,576)
    result.stdout.fnmatch_lines(["*backward  5,242,880 → 6,291,456 FLOP (+20.00%)"])

    pytester.runpytest("--flops-update").assert_outcomes(passed=1)
    rewritten = stored(pytester)["test_step"]
    assert rewritten["version"] == FORMAT_VERSION
    assert rewritten["measurements"]["default"]["backward"] == 4 * LINEAR
    assert rewritten["measurements"]["default"]["recompute"] == 2 * LINEAR


def test_a_recompute_the_rows_do_not_add_up_to_is_an_error_naming_it() -> None:
    text = snapshot(mlp(recomputed_linears=1)).to_text()
    # the measurement's own "recompute", just before its bytes and "modules"
    top = f'"recompute": {LINEAR},\n      "bytes_accessed"'
    assert text.count(top) == 1
    edited = text.replace(top, top.replace(str(LINEAR), "1"))
    with pytest.raises(
        SnapshotFormatError, match=rf"f: .*recompute is 1 but the Global module row says {LINEAR}"
    ):
        FlopsSnapshot.from_text(edited, where="f")


@pytest.mark.slow
def test_the_report_shows_flops_per_token_of_a_session(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_m=CHECKPOINTED.replace("REENTRANT", "True").replace(
            "flops(model)", "flops(model, tokens=32)"
        )
    )
    result = pytester.runpytest("--flops-update", "--flops-report")
    result.assert_outcomes(passed=1)
    # (2 + 4) * 1,048,576 / 32 = 196,608 per token; 6 * 33,088 parameters = 198,528
    result.stdout.fnmatch_lines(
        [
            "test_m.py::test_step  8.39 MFLOP  2.1 MFLOP  4.19 MFLOP  2.1 MFLOP  *new",
            "FLOPs per token (model FLOPs: forward + backward, recompute left out), *",
            "  test_m.py::test_step      32   197 KFLOP  199 KFLOP   0.99",
        ]
    )
