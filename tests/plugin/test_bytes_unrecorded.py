"""A snapshot that records no bytes accessed compares on FLOPs alone, and every run says so.

Its bytes are "not recorded", which is not 0: a measurement kept from a format 3 file
in a rewritten format 4 file, a format 3 file, or a file whose bytes keys were deleted
by hand (to silence a bytes failure) all read that way, and cannot be told apart.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_flops.plugin.verdict import Verdict, judge
from pytest_flops.snapshots.format import FlopsSnapshot
from tests.forked_pytest import runpytest_forked
from tests.plugin.test_bytes_gate import BF16, FP32, matmul

TEST_FILE = """
import os
import torch


def test_a(flops):
    dtype = torch.float32 if os.environ.get("UPCAST") else torch.bfloat16
    x, w = torch.ones(8, 16, dtype=dtype), torch.ones(16, 4, dtype=dtype)
    with flops(name="prefill"):
        x @ w
    if not os.environ.get("PREFILL_ONLY"):
        with flops(name="decode"):
            x @ w
"""
# each block: (8, 16) @ (16, 4), 2*8*16*4 = 1,024 FLOP, whatever the dtype; bf16 reads and
# writes (8*16 + 16*4 + 8*4) * 2 = 448 bytes, fp32 twice that (BF16, FP32)

NOTE = (
    "flops: 1 measurement(s) compared on FLOPs alone: their snapshots record no bytes "
    "accessed; `pytest --flops-update` records them:"
)
ARGS = ("-p", "no:hypothesispytest", "-p", "no:randomly")


def snapshot_file(pytester: pytest.Pytester) -> Path:
    (path,) = pytester.path.glob("__flops__/test_m.py/*.json")
    return path


def strip_bytes(path: Path, names: set[str], *, version: int = 4) -> None:
    """Delete the bytes keys of ``names``, as a user silencing a bytes failure would."""
    data = json.loads(path.read_text())
    data["version"] = version
    for name in names:
        measurement = data["measurements"][name]
        del measurement["bytes_accessed"]
        for row in measurement["modules"].values():
            row.pop("bytes")
            row.pop("flops_by_precision", None)
    path.write_text(json.dumps(data, indent=2) + "\n")


def bytes_recorded(path: Path) -> dict[str, bool]:
    data = json.loads(path.read_text())
    return {name: "bytes_accessed" in m for name, m in data["measurements"].items()}


def summary(result: pytest.RunResult) -> list[str]:
    """The ``flops:`` lines at the end of the run, and the lists under them."""
    lines = result.outlines
    start = lines.index(next(line for line in lines if line.startswith("flops: ")))
    end = next(i for i in range(start, len(lines)) if lines[i].startswith("="))
    return lines[start:end]


def decide(*, update: bool = False, compare_bytes: bool = True) -> Verdict:
    """A test whose decode's bytes doubled, against a file that kept no bytes for it."""
    verdict = judge(
        nodeid="test_m.py::test_a",
        location="loc",
        current=FlopsSnapshot(
            test="test_a", depth=3, measurements={"prefill": matmul(BF16), "decode": matmul(FP32)}
        ),
        stored=FlopsSnapshot(
            test="test_a",
            depth=3,
            measurements={"prefill": matmul(BF16), "decode": matmul(BF16).without_bytes()},
        ),
        rtol=0.0,
        compare_bytes=compare_bytes,
        update=update,
        budget=None,
    )
    assert verdict is not None
    return verdict


def test_the_verdict_names_the_measurements_compared_on_flops_alone() -> None:
    verdict = decide()
    assert verdict.failure is None  # the decode's bytes are not known: not compared
    assert verdict.flops_only == {"decode"}
    # FLOPs alone asked for: nothing to say; --flops-update records the bytes
    assert decide(compare_bytes=False).flops_only == set()
    updated = decide(update=True)
    assert updated.flops_only == set()
    assert updated.write is not None and updated.write.measurements["decode"].bytes_recorded


@pytest.mark.slow
def test_a_measurement_kept_from_format_3_compares_on_flops_and_says_so(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(test_m=TEST_FILE)
    pytester.runpytest(*ARGS, "--flops-update").assert_outcomes(passed=1)
    path = snapshot_file(pytester)
    strip_bytes(path, {"prefill", "decode"}, version=3)  # as pytest-flops 0.1 wrote it
    monkeypatch.setenv("PREFILL_ONLY", "1")
    pytester.runpytest(*ARGS, "--flops-update").assert_outcomes(passed=1)
    # rewritten in format 4: the prefill with its bytes, the decode kept without
    assert json.loads(path.read_text())["version"] == 4
    assert bytes_recorded(path) == {"decode": False, "prefill": True}
    monkeypatch.delenv("PREFILL_ONLY")

    result = pytester.runpytest(*ARGS)
    result.assert_outcomes(passed=1)
    assert summary(result) == [
        "flops: 1 test passed, 0 failed, 0 written, 0 removed",
        NOTE,
        "  test_m.py::test_a [decode]",
    ]
    # an upcast: the prefill's doubled bytes fail, the decode's are not compared
    monkeypatch.setenv("UPCAST", "1")
    upcast = pytester.runpytest(*ARGS)
    upcast.assert_outcomes(failed=1)
    assert "Bytes accessed changed for test_m.py::test_a [prefill]" in upcast.stdout.str()
    assert "changed for test_m.py::test_a [decode]" not in upcast.stdout.str()
    monkeypatch.delenv("UPCAST")
    # --flops-bytes=off asked for FLOPs alone: nothing to say
    off = pytester.runpytest(*ARGS, "--flops-bytes=off")
    assert summary(off) == ["flops: 1 test passed, 0 failed, 0 written, 0 removed"]

    updated = pytester.runpytest(*ARGS, "--flops-update")
    assert summary(updated) == ["flops: 0 tests passed, 0 failed, 1 written, 0 removed"]
    assert bytes_recorded(path) == {"decode": True, "prefill": True}
    assert summary(pytester.runpytest(*ARGS)) == [
        "flops: 1 test passed, 0 failed, 0 written, 0 removed"
    ]


@pytest.mark.slow
@pytest.mark.parametrize("version", [4, 3])
def test_bytes_deleted_by_hand_never_pass_a_bytes_change_silently(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, version: int
) -> None:
    pytester.makepyfile(test_m=TEST_FILE)
    pytester.runpytest(*ARGS, "--flops-update").assert_outcomes(passed=1)
    path = snapshot_file(pytester)
    monkeypatch.setenv("UPCAST", "1")
    pytester.runpytest(*ARGS).assert_outcomes(failed=1)  # both blocks' bytes doubled
    # the attacker deletes the bytes of both (and may say the file is format 3)
    strip_bytes(path, {"prefill", "decode"}, version=version)
    result = runpytest_forked(pytester, *ARGS)
    result.assert_outcomes(passed=1)  # equal FLOPs; the bytes are not known
    assert summary(result) == [
        "flops: 1 test passed, 0 failed, 0 written, 0 removed",
        NOTE.replace("1 measurement(s)", "2 measurement(s)"),
        "  test_m.py::test_a [decode]",
        "  test_m.py::test_a [prefill]",
    ]
    # the same from xdist workers, whose results travel to the controller
    sharded = runpytest_forked(pytester, *ARGS, "-n", "2")
    sharded.assert_outcomes(passed=1)
    assert summary(sharded)[1:] == summary(result)[1:]
    # a marker asking for FLOPs alone: nothing to say
    marked = "import pytest\npytestmark = pytest.mark.flops(bytes=False)\n"
    pytester.makepyfile(test_m=marked + TEST_FILE)
    assert summary(pytester.runpytest(*ARGS)) == [
        "flops: 1 test passed, 0 failed, 0 written, 0 removed"
    ]
