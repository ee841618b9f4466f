"""``pytest -n 2`` behaves like a serial run: snapshots, results, report, JSON, update."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from pytest_flops.measurement import DEFAULT_NAME, GLOBAL, Measurement, ModuleFlops
from pytest_flops.plugin import xdist
from pytest_flops.plugin.attempt import Outcome
from pytest_flops.plugin.result import TestResult
from pytest_flops.plugin.session import FlopsSession
from pytest_flops.plugin.settings import Settings
from pytest_flops.reports.records import MeasurementRecord, Status
from pytest_flops.snapshots.run_record import CollectedFile
from tests.forked_pytest import runpytest_forked
from tests.helpers import snapshot_tree

pytestmark = pytest.mark.slow  # real pytest sessions under xdist

TEST_A = """
import pytest
import torch


@pytest.mark.parametrize("width", {widths})
def test_linear(flops, width):
    model = torch.nn.Linear(5, width)
    with flops(model):
        model(torch.randn(4, 5))
"""

TEST_B = """
import torch


def {mlp_name}(flops):
    model = torch.nn.Sequential(torch.nn.Linear(5, 6), torch.nn.ReLU(), torch.nn.Linear(6, 3))
    with flops(model):
        model(torch.randn(4, 5)).sum().backward()


def test_named(flops):
    model = torch.nn.Linear(5, 6)
    with flops(model, name="prefill"):
        model(torch.randn(4, 5))
    with flops(model, name="decode"):
        model(torch.randn(1, 5))
    {named_end}


def test_plain():
    pass
"""

ORIGINAL = {"widths": [1, 2, 3, 4], "mlp_name": "test_mlp", "named_end": "pass"}
# test_linear[4] and test_mlp are gone (their snapshots are stale), test_mlp_renamed
# is new, and test_named fails by itself after measuring (its snapshot must stay).
CHANGED = {"widths": [1, 2, 3], "mlp_name": "test_mlp_renamed", "named_end": "assert False"}

REPORT_ARGS = ("--flops-report", "--flops-report-json=flops.json")


def write_suite(pytester: pytest.Pytester, version: dict[str, Any]) -> None:
    pytester.makepyfile(test_a=TEST_A.format(**version), test_b=TEST_B.format(**version))


def parallel(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    """Run under ``-n 2`` and check that both workers really ran tests."""
    result = runpytest_forked(pytester, "-n", "2", "-v", *args)
    workers = {
        match[1] for line in result.outlines if (match := re.match(r"\[(gw\d)\] .* PASSED", line))
    }
    assert workers == {"gw0", "gw1"}, result.outlines
    return result


def outcome(result: pytest.RunResult, pytester: pytest.Pytester) -> dict[str, Any]:
    """What a run decided, minus what legitimately differs between serial and -n 2."""
    lines = result.outlines
    start = next(i for i, line in enumerate(lines) if " flops report " in line)
    end = next(i for i, line in enumerate(lines) if line.startswith("=") and i > start)
    document = json.loads((pytester.path / "flops.json").read_text("utf-8"))
    del document["metadata"]
    return {
        "outcomes": result.parseoutcomes(),
        "report and summary": lines[start:end],
        "json": document,
        "snapshots": snapshot_tree(pytester.path),
    }


def test_transport_merges_every_worker_once(tmp_path: Path) -> None:
    module = tmp_path / "test_a.py"
    # Larger than any 64-bit integer: the transport must keep counts exact.
    huge = Measurement(modules={GLOBAL: ModuleFlops(forward=2**70, by_op={"aten.mm": 2**70})})
    small = Measurement(modules={GLOBAL: ModuleFlops(forward=240, by_op={"aten.addmm": 240})})
    sent = {  # test name -> the result of the worker that ran it
        "test_x": TestResult(
            outcome=Outcome.WRITTEN,
            records=(
                MeasurementRecord(
                    nodeid="test_a.py::test_x",
                    name=DEFAULT_NAME,
                    measurement=huge,
                    baseline=small,
                    status=Status.UPDATED,
                ),
            ),
            devices=("meta",),
        ),
        "test_y": TestResult(
            outcome=Outcome.WRITTEN,
            records=(
                MeasurementRecord(
                    nodeid="test_a.py::test_y",
                    name="decode",
                    measurement=small,
                    baseline=None,
                    status=Status.NEW,
                    budget="1 MFLOP",
                ),
            ),
            devices=("cpu",),
        ),
    }
    nodes = []
    for test, result in sent.items():
        worker = FlopsSession(settings=Settings(update=True), rootpath=tmp_path)
        worker.results[f"test_a.py::{test}"] = result
        # Every worker collects the whole file but runs only its share of it.
        worker.run.files[module] = CollectedFile(
            walked=True, tests={"test_x", "test_y"}, ran={test}
        )
        assert not worker.run.files[module].ran_whole
        config = SimpleNamespace(workeroutput={})
        xdist.send(config, worker)  # type: ignore[arg-type]
        nodes.append(SimpleNamespace(workeroutput=config.workeroutput))

    controller = FlopsSession(settings=Settings(update=True), rootpath=tmp_path)
    for node in [*nodes, nodes[0]]:  # xdist can report a node down twice
        xdist.receive(controller, node, None)
    assert controller.records == [record for r in sent.values() for record in r.records]
    assert controller.summary_lines() == ["flops: 0 tests passed, 0 failed, 2 written, 0 removed"]
    assert controller.run.files[module].ran_whole
    assert controller.devices == {"cpu", "meta"}
    assert controller.run.narrowed == []
    # a worker that crashed sent nothing: the run does not count as whole
    xdist.receive(controller, SimpleNamespace(workeroutput={}), "worker crashed")
    assert controller.run.narrowed == ["an xdist worker crashed"]


def test_parallel_runs_match_serial_runs(pytester: pytest.Pytester) -> None:
    pytest.importorskip("xdist")
    write_suite(pytester, ORIGINAL)

    # -- writing every snapshot ---------------------------------------------------------
    serial = outcome(runpytest_forked(pytester, "--flops-update", *REPORT_ARGS), pytester)
    shutil.rmtree(pytester.path / "__flops__")
    written = outcome(parallel(pytester, "--flops-update", *REPORT_ARGS), pytester)
    assert written == serial
    # test_linear[1..4] and test_mlp, test_named (with 2 names) and no test_plain
    assert sorted(written["snapshots"]) == [
        "__flops__/test_a.py/test_linear[1].flops.json",
        "__flops__/test_a.py/test_linear[2].flops.json",
        "__flops__/test_a.py/test_linear[3].flops.json",
        "__flops__/test_a.py/test_linear[4].flops.json",
        "__flops__/test_b.py/test_mlp.flops.json",
        "__flops__/test_b.py/test_named.flops.json",
    ]
    # Nothing lost or duplicated: 4 + 1 + 2 measurements.
    keys = [(m["nodeid"], m["name"]) for m in written["json"]["measurements"]]
    assert len(keys) == len(set(keys)) == 7
    # Linear(5, w) on (4, 5): 2*4*5*w = 40w for w = 1..4: 400; the MLP forward
    # 2*4*5*6 + 2*4*6*3 = 240 + 144 = 384, backward: the weight grads (240 + 144)
    # and the input grad of the second layer (144): 528; test_named 240 + 60.
    assert written["json"]["summary"]["total"] == 400 + 384 + 528 + 300
    assert "flops: 0 tests passed, 0 failed, 6 written, 0 removed" in written["report and summary"]
    originals = written["snapshots"]

    # -- update and prune under -n 2: the writes and removals of a serial run ---------
    write_suite(pytester, CHANGED)
    updated = outcome(parallel(pytester, "--flops-update", "--flops-prune", *REPORT_ARGS), pytester)
    assert updated["outcomes"] == {"passed": 5, "failed": 1}
    statuses = {(m["nodeid"], m["name"]): m["status"] for m in updated["json"]["measurements"]}
    assert statuses == {
        **{(f"test_a.py::test_linear[{width}]", "default"): "passed" for width in (1, 2, 3)},
        ("test_b.py::test_mlp_renamed", "default"): "new",
        ("test_b.py::test_named", "decode"): "not compared",
        ("test_b.py::test_named", "prefill"): "not compared",
    }
    # Both files ran whole, so the snapshots of test_linear[4] and test_mlp are
    # stale and pruned.
    summary = updated["report and summary"]
    assert (
        "flops: 3 tests passed, 0 failed, 1 written, 2 removed, 1 not compared (test failed)"
        in summary
    )
    assert updated["snapshots"] == {
        **{
            name: content
            for name, content in originals.items()
            if name.split("/")[-1] not in ("test_linear[4].flops.json", "test_mlp.flops.json")
        },
        # the MLP under its new name: the same counts, a new file; test_named's
        # snapshot is untouched although its test failed
        "__flops__/test_b.py/test_mlp_renamed.flops.json": originals[
            "__flops__/test_b.py/test_mlp.flops.json"
        ].replace(b'"test_mlp"', b'"test_mlp_renamed"'),
    }
