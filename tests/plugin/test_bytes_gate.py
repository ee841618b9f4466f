"""Bytes accessed are gated like FLOPs: an upcast at equal FLOPs fails, one switch turns it off."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from pytest_flops import Measurement, ModuleFlops, Status
from pytest_flops.plugin.marks import limit_flops
from pytest_flops.plugin.verdict import Verdict, judge
from pytest_flops.snapshots.format import FlopsSnapshot
from pytest_flops.validation import SnapshotFormatError

LOCATION = "tests/__flops__/test_m.py/test_a.flops.json"


def matmul(bytes_moved: int) -> Measurement:
    # (8, 16) @ (16, 4): 2*8*16*4 = 1,024 FLOP whatever the dtype
    row = ModuleFlops(
        forward=1_024,
        by_op={"aten.mm": 1_024},
        bytes_forward=bytes_moved,
        bytes_by_op={"aten.mm": bytes_moved},
    )
    return Measurement(modules={"Global": row})


def decide(
    current: Measurement,
    stored: Measurement,
    *,
    version: int = 4,
    rtol: float = 0.0,
    bytes_rtol: float = 0.0,
    compare_bytes: bool = True,
) -> Verdict:
    verdict = judge(
        nodeid="test_m.py::test_a",
        location=LOCATION,
        current=FlopsSnapshot(test="test_a", depth=3, measurements={"default": current}),
        stored=FlopsSnapshot(
            test="test_a", depth=3, measurements={"default": stored}, version=version
        ),
        rtol=rtol,
        bytes_rtol=bytes_rtol,
        compare_bytes=compare_bytes,
        update=False,
        budget=None,
    )
    assert verdict is not None
    return verdict


# bf16 (8*16 + 16*4 + 8*4) * 2 = 448 bytes; in fp32 twice that
BF16, FP32 = 448, 896


def test_an_upcast_at_equal_flops_fails_and_the_diagnosis_says_bytes() -> None:
    verdict = decide(matmul(FP32), matmul(BF16))
    assert verdict.statuses == {"default": Status.CHANGED}
    assert verdict.failure is not None
    assert verdict.failure.startswith(
        "Bytes accessed changed for test_m.py::test_a: 448 → 896 bytes (+100.00%)\n"
        "  FLOP      1,024 (unchanged)\n"
    )
    assert "aten.mm (bytes accessed)" in verdict.failure


def at_precision(precision: str) -> Measurement:
    row = replace(
        matmul(FP32).modules["Global"], flops_by_precision={"aten.mm": {precision: 1_024}}
    )
    return Measurement(modules={"Global": row})


def test_tf32_where_fp32_was_fails_at_equal_flops_and_bytes() -> None:
    # torch.set_float32_matmul_precision("high"): the same 1,024 FLOP and 896 bytes,
    # at TF32 peak (a roofline time 7x shorter on an H100): it passed and --flops-update
    # rewrote it
    verdict = decide(at_precision("tf32"), at_precision("fp32"), rtol=0.5)
    assert verdict.statuses == {"default": Status.CHANGED}
    assert verdict.failure is not None
    assert verdict.failure.startswith(
        "FLOP precision changed for test_m.py::test_a: the same FLOPs, at another precision\n"
        "  FLOP      1,024 (unchanged)\n"
        "  bytes     896 (unchanged)\n"
    )
    assert "aten.mm (tf32 FLOP)" in verdict.failure
    assert "aten.mm (fp32 FLOP)" in verdict.failure


def test_the_bytes_gate_off_compares_flops_only() -> None:
    assert decide(matmul(FP32), matmul(BF16), compare_bytes=False).failure is None
    # and the FLOPs still are
    doubled = replace(
        matmul(FP32),
        modules={
            "Global": replace(
                matmul(FP32).modules["Global"], forward=2_048, by_op={"aten.mm": 2_048}
            )
        },
    )
    assert decide(doubled, matmul(BF16), compare_bytes=False).failure is not None


def test_each_axis_has_its_own_tolerance() -> None:
    assert decide(matmul(FP32), matmul(BF16), rtol=0.0, bytes_rtol=1.0).failure is None
    assert decide(matmul(FP32), matmul(BF16), rtol=1.0, bytes_rtol=0.0).failure is not None


@pytest.mark.parametrize("version", [1, 2, 3])
def test_an_older_snapshot_compares_flops_only_and_never_passes_a_changed_count(
    version: int,
) -> None:
    # a file of format 3 or older records no bytes: "not recorded", not 0
    old = matmul(0).without_bytes()
    assert decide(matmul(FP32), old, version=version).failure is None
    doubled = replace(
        matmul(FP32),
        modules={"Global": ModuleFlops(forward=2_048, by_op={"aten.mm": 2_048})},
    )
    verdict = decide(doubled, old, version=version)
    assert verdict.statuses == {"default": Status.CHANGED}
    assert verdict.failure is not None and "1,024 → 2,048 FLOP" in verdict.failure


def test_a_measurement_without_bytes_stays_without_bytes_in_a_rewritten_file() -> None:
    # what --flops-update writes for a measurement kept from a format 3 file (a skipped
    # subtest's): its bytes stay "not recorded", so they are never compared as 0
    kept = matmul(0).without_bytes()
    snapshot = FlopsSnapshot(test="t", depth=3, measurements={"kept": kept, "taken": matmul(BF16)})
    read = FlopsSnapshot.from_text(snapshot.to_text(), where="f")
    assert read == snapshot
    assert not read.measurements["kept"].bytes_recorded
    assert "bytes_accessed" not in json.loads(snapshot.to_text())["measurements"]["kept"]
    # the kept one compares on FLOPs, the taken one on bytes too
    current = {"kept": matmul(FP32), "taken": matmul(FP32)}
    verdict = judge(
        nodeid="test_m.py::test_a",
        location=LOCATION,
        current=FlopsSnapshot(test="t", depth=3, measurements=current),
        stored=read,
        rtol=0.0,
        update=False,
        budget=None,
    )
    assert verdict is not None
    assert verdict.statuses == {"kept": Status.PASSED, "taken": Status.CHANGED}


def test_bytes_in_some_rows_only_is_an_error_naming_the_row() -> None:
    data = json.loads(
        FlopsSnapshot(test="t", depth=3, measurements={"default": matmul(BF16)}).to_text()
    )
    data["measurements"]["default"]["modules"]["M"] = {"forward": 0, "backward": 0, "by_op": {}}
    with pytest.raises(SnapshotFormatError, match=r"modules\['M'\]: bytes must be in every"):
        FlopsSnapshot.from_text(json.dumps(data), where="f.json")


def test_bytes_round_trip_through_the_snapshot_text() -> None:
    snapshot = FlopsSnapshot(test="t", depth=3, measurements={"default": matmul(BF16)})
    text = snapshot.to_text()
    data = json.loads(text)["measurements"]["default"]
    assert data["bytes_accessed"] == BF16
    assert data["modules"]["Global"]["bytes"] == {
        "forward": BF16,
        "backward": 0,
        "by_op": {"aten.mm": BF16},
    }  # recompute only where there is some, as for FLOPs
    assert FlopsSnapshot.from_text(text, where="f") == snapshot


# -- in a pytest session -----------------------------------------------------------------

TEST_FILE = """
import os
import pytest
import torch


{marker}
def test_a(flops):
    x = torch.ones(8, 16, dtype=torch.bfloat16)
    w = torch.ones(16, 4, dtype=torch.bfloat16)
    if os.environ.get("UPCAST"):
        x, w = x.float(), w.float()  # before the block: only the matmul's bytes move
    with flops():
        x @ w
"""


@pytest.mark.slow
def test_an_upcast_fails_the_gate_unless_the_switch_turns_it_off(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(test_m=TEST_FILE.format(marker=""))
    pytester.runpytest("-p", "no:hypothesispytest", "--flops-update").assert_outcomes(passed=1)
    monkeypatch.setenv("UPCAST", "1")

    result = pytester.runpytest("-p", "no:hypothesispytest")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*Bytes accessed changed for test_m.py::test_a: 448 → 896 bytes*"])

    pytester.runpytest("-p", "no:hypothesispytest", "--flops-bytes=off").assert_outcomes(passed=1)
    # a bytes tolerance lets the bytes double, not the matmul run in fp32 where it ran bf16
    loose = pytester.runpytest("-p", "no:hypothesispytest", "--flops-bytes-rtol=1")
    loose.assert_outcomes(failed=1)
    loose.stdout.fnmatch_lines(["*aten.mm (bf16 FLOP)*1,024*", "*aten.mm (fp32 FLOP)*1,024*"])
    pytester.makeini("[pytest]\nflops_bytes = false\n")
    pytester.runpytest("-p", "no:hypothesispytest").assert_outcomes(passed=1)
    # the command line wins over the ini file
    pytester.runpytest("-p", "no:hypothesispytest", "--flops-bytes=on").assert_outcomes(failed=1)
    pytester.makeini("[pytest]\n")
    pytester.makepyfile(test_m=TEST_FILE.format(marker="@pytest.mark.flops(bytes=False)"))
    pytester.runpytest("-p", "no:hypothesispytest").assert_outcomes(passed=1)


@pytest.mark.slow
def test_a_version_3_snapshot_compares_flops_until_updated(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(test_m=TEST_FILE.format(marker=""))
    pytester.runpytest("-p", "no:hypothesispytest", "--flops-update").assert_outcomes(passed=1)
    (path,) = pytester.path.glob("__flops__/test_m.py/*.json")
    data = json.loads(path.read_text())
    data["version"] = 3  # as pytest-flops wrote it before bytes were recorded
    for measurement in data["measurements"].values():
        del measurement["bytes_accessed"]
        for row in measurement["modules"].values():
            row.pop("bytes")
            row.pop("flops_by_precision", None)
    path.write_text(json.dumps(data, indent=2) + "\n")

    monkeypatch.setenv("UPCAST", "1")
    pytester.runpytest("-p", "no:hypothesispytest").assert_outcomes(passed=1)  # equal FLOPs
    pytester.runpytest("-p", "no:hypothesispytest", "--flops-update").assert_outcomes(passed=1)
    assert json.loads(path.read_text())["version"] == 4  # now with bytes: the gate is on
    monkeypatch.delenv("UPCAST")
    pytester.runpytest("-p", "no:hypothesispytest").assert_outcomes(failed=1)


# -- budgets ------------------------------------------------------------------------------


def test_a_bytes_budget_fails_an_upcast_at_equal_flops() -> None:
    budget = limit_flops(bytes_accessed="500 B")
    assert budget.text == "bytes accessed 500 B"
    assert budget.check(matmul(BF16)) is None
    exceeded = budget.check(matmul(FP32))
    assert exceeded is not None
    assert exceeded.long_repr == "bytes accessed: used 896 B, limit 500 B"


def test_a_roofline_budget_on_a_named_gpu() -> None:
    # the matmul is memory-bound on an H100 SXM: 896 bytes at 3.35 TB/s = 267 ps
    budget = limit_flops(roofline="0.2 ns", gpu="h100-sxm")
    assert budget.text == "roofline 0.2 ns on h100-sxm"  # as the marker wrote it
    # a number of seconds, written exactly in the unit the reports use
    assert limit_flops(roofline=2e-10, gpu="h100-sxm").text == "roofline 200 ps on h100-sxm"
    assert budget.roofline is not None and budget.roofline.value == pytest.approx(2e-10)
    exceeded = budget.check(matmul(FP32))
    assert exceeded is not None
    assert exceeded.long_repr == "roofline on h100-sxm: used 267 ps, limit 0.2 ns"
    assert limit_flops(roofline=1e-9, gpu="h100-sxm").check(matmul(FP32)) is None


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"roofline": "2 ms"}, "roofline and gpu go together"),
        ({"gpu": "h100-sxm", "limit": 5}, "roofline and gpu go together"),
        ({"roofline": "2 ms", "gpu": "h100"}, "unknown GPU 'h100': expected one of h100-sxm"),
        ({"roofline": "2 hours", "gpu": "l4"}, "roofline: expected a time such as '2 ms'"),
        ({"roofline": -1, "gpu": "l4"}, "roofline: expected a time"),
        ({"bytes_accessed": "lots"}, "bytes_accessed: "),
    ],
)
def test_bad_budgets_say_what_is_wrong(arguments: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        limit_flops(**arguments)  # type: ignore[arg-type]
