"""The JSON export: its numbers, and reading it back exactly (as ``merge`` does)."""

from __future__ import annotations

import importlib.metadata
import json
from pathlib import Path
from typing import Any

import pytest
import torch

import pytest_flops
from pytest_flops.measurement import GLOBAL, Measurement, ModuleFlops, Traffic, World
from pytest_flops.reports import export
from pytest_flops.reports.records import MeasurementRecord, Status
from pytest_flops.snapshots.stale import SnapshotEvidence
from pytest_flops.validation import SnapshotFormatError
from tests.built_records import LINEAR_FWD, linear_measurement, make_record, suite


def test_json_report_numbers() -> None:
    metadata = export.RunMetadata(
        plugin_version="1.2.3",
        torch_version="2.99",
        python_version="3.99.0",
        platform="linux",
        devices=("cpu",),
    )
    document = json.loads(json.dumps(export.json_report(suite(), metadata.to_dict())))
    assert document["schema_version"] == export.SCHEMA_VERSION == 1
    assert document["metadata"] == {
        "plugin_version": "1.2.3",
        "torch_version": "2.99",
        "python_version": "3.99.0",
        "platform": "linux",
        "devices": ["cpu"],
        "gpu": None,  # no --flops-gpu
    }
    summary = document["summary"]
    # forward: 240 + 280 + 240 + 60 + 240 = 1060; backward: 480 + 560 = 1040
    assert (summary["total"], summary["forward"], summary["backward"]) == (2100, 1060, 1040)
    assert (summary["tests"], summary["measurements"]) == (4, 5)
    assert summary["statuses"] == {
        **{status.value: 0 for status in Status},
        "passed": 3,
        "changed": 1,
        "new": 1,
    }
    assert summary["unsupported"] == [
        {"op": "aten._local_scalar_dense", "calls": 5, "tests": ["t.py::test_lm"]},
        {"op": "aten.nonzero", "calls": 1, "tests": ["t.py::test_lm"]},
    ]

    by_key = {(m["nodeid"], m["name"]): m for m in document["measurements"]}
    assert list(by_key) == sorted(by_key)
    grew = by_key[("t.py::test_grew", "default")]
    assert grew["status"] == "changed"
    assert (grew["total"], grew["forward"], grew["backward"]) == (840, 280, 560)
    assert grew["by_op"] == {"aten.mm": 840}
    # a measurement built by hand moves no bytes: recorded as 0
    assert grew["by_module"] == {
        "Net.fc": {
            "forward": 280,
            "backward": 560,
            "by_op": {"aten.mm": 840},
            "bytes": {"forward": 0, "backward": 0, "by_op": {}},
        }
    }
    assert grew["bytes_accessed"] == 0
    assert grew["unsupported"] == {}
    assert grew["snapshot"]["total"] == 720
    assert grew["snapshot"]["by_module"]["Net.fc"]["by_op"] == {"aten.mm": 720}
    # 840 - 720 = 120, relative 120 / 720 = 1/6
    assert grew["delta"] == {
        "total": 120,
        "forward": 40,
        "backward": 80,
        "recompute": 0,
        "communication_bytes": 0,
        "bytes_accessed": 0,  # built without bytes: 0 on both sides
        "relative": 120 / 720,
        "changes": [
            {"module": "Global", "op": "aten.mm", "unit": "FLOP", "before": 720, "after": 840,
             "delta": 120},
            {"module": "Net.fc", "op": "aten.mm", "unit": "FLOP", "before": 720, "after": 840,
             "delta": 120},
        ],
    }  # fmt: skip
    new = by_key[("t.py::test_new", "default")]
    assert (new["status"], new["snapshot"], new["delta"]) == ("new", None, None)
    decode = by_key[("t.py::test_lm", "decode")]
    assert decode["unsupported"] == {"aten._local_scalar_dense": 3}
    assert decode["delta"]["total"] == 0
    assert decode["delta"]["relative"] == 0.0
    assert decode["delta"]["changes"] == []


def test_json_report_relative_change_from_zero_is_null() -> None:
    record = make_record(
        "t.py::test_grew_from_nothing",
        linear_measurement(LINEAR_FWD, 0),
        baseline=Measurement(),
        status=Status.CHANGED,
    )
    metadata = export.RunMetadata.collect()
    (entry,) = export.json_report([record], metadata.to_dict())["measurements"]
    assert entry["delta"]["total"] == LINEAR_FWD
    assert entry["delta"]["relative"] is None


def test_json_report_is_independent_of_record_order() -> None:
    metadata = export.RunMetadata.collect()
    forward = json.dumps(export.json_report(suite(), metadata.to_dict()))
    backward = json.dumps(export.json_report(suite()[::-1], metadata.to_dict()))
    assert forward == backward


def test_metadata_falls_back_to_the_default_device() -> None:
    metadata = export.RunMetadata.collect()
    assert metadata.devices == (str(torch.get_default_device()),)
    assert metadata.plugin_version == pytest_flops.__version__
    assert metadata.torch_version == importlib.metadata.version("torch")  # as any shard says
    assert export.RunMetadata.collect(["cuda:0", "cpu", "cuda:0"]).devices == ("cpu", "cuda:0")


def sharded_record() -> MeasurementRecord:
    """A rank of a 2-way tensor-parallel step: communication per module row, a world."""
    traffic = {"_c10d_functional.all_reduce": Traffic(calls=2, bytes=4096)}
    block = ModuleFlops(forward=100, backward=200, by_op={"aten.mm": 300}, communication=traffic)
    measurement = Measurement(
        modules={
            GLOBAL: block,
            "Block": block,
            "Block.attn": ModuleFlops(forward=40, by_op={"aten.mm": 40}),
        },
        unsupported={"aten.nonzero": 1},
        world=World(rank=1, size=2, mesh={"tp": 2}),
    )
    return MeasurementRecord(
        nodeid="t.py::test_tp[rank 1]",
        name="step",
        measurement=measurement,
        baseline=linear_measurement(100, 200),
        status=Status.OVER_BUDGET,
        budget="1 KFLOP",
    )


def written(tmp_path: Path, records: list[MeasurementRecord], **snapshots: list[str]) -> Path:
    fields: dict[str, Any] = {key: tuple(value) for key, value in snapshots.items()}
    evidence = SnapshotEvidence(**fields)
    path = tmp_path / "flops.json"
    problems = export.write_exports(
        export.Export(
            records=tuple(records),
            metadata=export.RunMetadata.collect().to_dict(),
            snapshots=evidence,
        ),
        json_path=path,
        markdown_path=None,
        html_path=None,
    )
    assert problems == []
    return path


def test_reading_an_export_gives_back_its_records_exactly(tmp_path: Path) -> None:
    records = [*suite(), sharded_record()]
    path = written(tmp_path, records, whole_files=["t.py"], stale=["__flops__/t.py/x.json"])
    read = export.read_export(path)
    key = lambda record: (record.nodeid, record.name)  # noqa: E731
    assert sorted(read.records, key=key) == sorted(records, key=key)
    assert read.snapshots.whole_files == ("t.py",)
    assert read.snapshots.stale == ("__flops__/t.py/x.json",)
    assert read.metadata["torch_version"] == importlib.metadata.version("torch")


def test_the_export_lists_what_it_knows_of_the_snapshot_files(tmp_path: Path) -> None:
    path = written(
        tmp_path,
        suite(),
        whole_files=["t.py"],
        unclaimed=["__flops__/t.py/test_gone.flops.json"],
        claimed=["__flops__/t.py/test_same.flops.json"],
    )
    assert json.loads(path.read_text())["snapshots"] == {
        "whole_files": ["t.py"],
        "unclaimed": ["__flops__/t.py/test_gone.flops.json"],
        "claimed": ["__flops__/t.py/test_same.flops.json"],
        "stale": [],
        "reasons": {},
        "stale_measurements": [],
        "measuring_tests": [],
        "ran": [],
    }


def test_an_export_without_the_snapshots_section_reads(tmp_path: Path) -> None:
    """Exports of pytest-flops 0.1 have no ``snapshots``: nothing is known of stale files."""
    path = written(tmp_path, suite())
    document = json.loads(path.read_text())
    del document["snapshots"]
    path.write_text(json.dumps(document))
    assert export.read_export(path).snapshots == SnapshotEvidence()


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: "not json{", "not JSON"),
        (lambda d: json.dumps([1, 2]), "not a pytest-flops JSON export"),
        (lambda d: json.dumps({"tests": []}), "not a pytest-flops JSON export"),
        (lambda d: json.dumps({**d, "schema_version": 2}), "schema_version 2, but this"),
        (
            lambda d: json.dumps({**d, "measurements": [{**d["measurements"][0], "status": "?"}]}),
            "measurements[0] (t.py::test_grew): unknown status '?'",
        ),
        (
            lambda d: json.dumps(
                {**d, "measurements": [{**d["measurements"][0], "total": 1}]}
            ),
            "measurements[0] (t.py::test_grew): total is 1 but the Global module row says 840",
        ),
        (
            lambda d: json.dumps({**d, "snapshots": {**d["snapshots"], "stale": "x"}}),
            "snapshots.stale: expected a list of paths",
        ),
    ],
    ids=["not-json", "a-list", "another-tool", "newer-schema", "bad-status", "bad-total",
         "bad-snapshots"],
)  # fmt: skip
def test_bad_exports_are_named_with_what_is_wrong(
    tmp_path: Path, edit: object, message: str
) -> None:
    path = written(tmp_path, suite())
    document = json.loads(path.read_text())
    path.write_text(edit(document))  # type: ignore[operator]
    with pytest.raises(SnapshotFormatError) as error:
        export.read_export(path)
    assert str(error.value).startswith(f"{path}: ")
    assert message in str(error.value)


def test_an_unreadable_export_is_named(tmp_path: Path) -> None:
    with pytest.raises(SnapshotFormatError, match="cannot read it"):
        export.read_export(tmp_path / "absent.json")


def test_an_unwritable_export_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    problems = export.write_exports(
        export.Export(records=tuple(suite()), metadata={}),
        json_path=blocker / "flops.json",
        markdown_path=tmp_path / "flops.md",
        html_path=None,
    )
    assert len(problems) == 1
    assert problems[0].startswith(f"flops: cannot write the report {blocker / 'flops.json'}: ")
    assert (tmp_path / "flops.md").read_text().startswith("## FLOPs report")


def test_a_baseline_from_before_bytes_shows_no_bytes_change(tmp_path: Path) -> None:
    # Linear(5, 6) on (4, 5), fp32: (20 + 30 + 24) * 4 = 296 bytes; the baseline, read
    # from a format-3 snapshot, recorded none: not 0, so no "0 -> 296" change
    row = ModuleFlops(
        forward=LINEAR_FWD,
        by_op={"aten.mm": LINEAR_FWD},
        bytes_forward=296,
        bytes_by_op={"aten.mm": 296},
    )
    current = Measurement(modules={GLOBAL: row})
    record = make_record("t.py::test_a", current, baseline=current.without_bytes())
    document = export.json_report([record], export.RunMetadata.collect().to_dict())
    assert document["measurements"][0]["delta"]["changes"] == []
    assert "bytes_accessed" not in document["measurements"][0]["delta"]


def test_a_change_of_bytes_or_precision_at_equal_flops_is_in_the_delta() -> None:
    # the matmul of a Linear(5, 6) on (4, 5): 2*4*5*6 = 240 FLOP, fp32 moving
    # (20 + 30 + 24) * 4 = 296 bytes; under TF32 (or as an upcast's result) other rows
    def matmul(precision: str, size: int) -> Measurement:
        row = ModuleFlops(
            forward=240,
            by_op={"aten.mm": 240},
            bytes_forward=size,
            bytes_by_op={"aten.mm": size},
            flops_by_precision={"aten.mm": {precision: 240}},
        )
        return Measurement(modules={GLOBAL: row})

    records = [
        make_record("t.py::tf32", matmul("tf32", 296), baseline=matmul("fp32", 296)),
        make_record("t.py::copy", matmul("fp32", 400), baseline=matmul("fp32", 296)),
    ]
    document = export.json_report(records, export.RunMetadata.collect().to_dict())
    delta = {entry["nodeid"]: entry["delta"] for entry in document["measurements"]}
    tf32, copy = delta["t.py::tf32"], delta["t.py::copy"]
    assert (tf32["total"], tf32["bytes_accessed"]) == (0, 0)
    assert tf32["changes"] == [
        {"module": GLOBAL, "op": "aten.mm", "unit": unit, "before": old, "after": new,
         "delta": new - old}
        for unit, old, new in (("fp32 FLOP", 240, 0), ("tf32 FLOP", 0, 240))
    ]  # fmt: skip
    assert (copy["total"], copy["bytes_accessed"]) == (0, 400 - 296)
    assert copy["changes"] == [
        {"module": GLOBAL, "op": "aten.mm", "unit": "bytes accessed", "before": 296,
         "after": 400, "delta": 104}
    ]  # fmt: skip
