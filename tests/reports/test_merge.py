"""``python -m pytest_flops merge``: the shards of a split suite report as one serial run."""

from __future__ import annotations

import importlib.metadata
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pytest_flops.__main__ import main
from pytest_flops.reports import export
from pytest_flops.reports.records import Status
from tests.built_records import linear_measurement, make_record, suite
from tests.forked_pytest import runpytest_forked
from tests.helpers import NET, snapshot_tree
from tests.plugin.changed_suite import STALE, changed_suite, run

pytestmark = pytest.mark.slow  # real pytest sessions per shard

EXPORTS = ("--flops-report-json={name}.json", "--flops-report-md={name}.md",
           "--flops-report-html={name}.html")  # fmt: skip


def exports(name: str) -> tuple[str, ...]:
    return tuple(option.format(name=name) for option in EXPORTS)


def without_metadata(document: dict[str, Any]) -> str:
    return json.dumps({key: value for key, value in document.items() if key != "metadata"})


def embedded(page: str) -> tuple[dict[str, Any], str]:
    """The JSON document an HTML report embeds, and the page around it."""
    pattern = r'(<script type="application/json" id="flops-data">)(.*?)(</script>)'
    match = re.search(pattern, page, re.DOTALL)
    assert match is not None
    return json.loads(match[2]), page.replace(match[2], "")


@pytest.fixture(scope="module")
def suite_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("split")
    changed_suite(root)
    return root


@pytest.mark.slow
def test_three_pytest_split_shards_merge_into_the_serial_run(
    suite_root: Path, tmp_path: Path
) -> None:
    root = tmp_path / "suite"
    shutil.copytree(suite_root, root)
    before = snapshot_tree(root)
    serial = run(root, exports("serial"), {"PYTEST_ADDOPTS": "-p no:randomly"})
    assert serial.returncode == 1, serial.stdout  # the suite's counts changed
    shards = []
    for group in (1, 2, 3):
        args = ("--splits", "3", "--group", str(group), *exports(f"shard-{group}"))
        shard = run(root, args, {"PYTEST_ADDOPTS": "-p no:randomly"})
        assert shard.returncode in (0, 1), shard.stdout + shard.stderr
        shards.append(json.loads((root / f"shard-{group}.json").read_text()))
    merged = subprocess.run(
        [sys.executable, "-m", "pytest_flops", "merge",
         *(f"shard-{group}.json" for group in (1, 2, 3)),
         "--json", "merged.json", "--md", "merged.md", "--html", "merged.html"],
        cwd=root, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert merged.returncode == 1, merged.stdout + merged.stderr  # a measurement failed
    assert snapshot_tree(root) == before  # comparing, sharding and merging remove nothing

    # each shard measured some of the tests, none twice, all together the serial run's
    nodeids = [{m["nodeid"] for m in shard["measurements"]} for shard in shards]
    assert all(nodeids) and sum(map(len, nodeids)) == len(set().union(*nodeids))
    # no shard saw the whole suite, so none judged a snapshot stale...
    assert all(shard["snapshots"]["stale"] == [] for shard in shards)

    serial_json = json.loads((root / "serial.json").read_text())
    merged_json = json.loads((root / "merged.json").read_text())
    assert without_metadata(merged_json) == without_metadata(serial_json)
    # ...but together they show both stale snapshots, as the serial run does
    assert merged_json["snapshots"]["stale"] == sorted(STALE.values())
    assert (root / "merged.md").read_bytes() == (root / "serial.md").read_bytes()
    serial_data, serial_page = embedded((root / "serial.html").read_text())
    merged_data, merged_page = embedded((root / "merged.html").read_text())
    assert without_metadata(merged_data) == without_metadata(serial_data)
    assert merged_page == serial_page
    assert [shard["file"] for shard in merged_json["metadata"]["shards"]] == [
        f"shard-{group}.json" for group in (1, 2, 3)
    ]

    # the failures first, in the Markdown and on the terminal
    first_row = next(line for line in (root / "merged.md").read_text().splitlines()
                     if line.startswith("| `"))  # fmt: skip
    assert first_row.endswith("| changed |"), first_row
    assert "Stale snapshots" in merged.stdout
    for path in STALE.values():
        assert any(line.startswith(f"  {path} (its ") for line in merged.stdout.splitlines())

    # -- shard 2's job uploaded nothing: the merge names its tests and fails ----------
    incomplete = subprocess.run(
        [sys.executable, "-m", "pytest_flops", "merge", "shard-1.json", "shard-3.json"],
        cwd=root, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert incomplete.returncode == 2, incomplete.stdout + incomplete.stderr
    # every measuring test is listed in every shard's export, deselected or not
    assert all(shard["snapshots"]["measuring_tests"] == shards[0]["snapshots"]["measuring_tests"]
               for shard in shards)  # fmt: skip
    missing = sorted(
        set(shards[1]["snapshots"]["ran"])
        - set(shards[0]["snapshots"]["ran"])
        - set(shards[2]["snapshots"]["ran"])
    )
    assert missing, shards[1]["snapshots"]
    assert f"{len(missing)} measuring test(s) ran in no shard: " in incomplete.stderr
    assert all(test in incomplete.stderr for test in missing[:10]), incomplete.stderr


# -- stale snapshots across shards ------------------------------------------------------

SUITE = (
    NET
    + """

def test_1(flops):
    model = Net()
    with flops(model):
        model(torch.randn(4, 9))


def test_2(flops):
    model = Net()
    with flops(model):
        model(torch.randn(4, 9))


def test_3(flops):
    model = Net()
    with flops(model):
        model(torch.randn(4, 9))
"""
)
SNAPSHOTS = "__flops__/test_m.py"


def stale_after_merge(pytester: pytest.Pytester, shards: list[list[str]]) -> list[str]:
    """Merge the exports of one run per argument list; the stale snapshots it reports."""
    paths = []
    for index, args in enumerate(shards):
        path = pytester.path / f"shard-{index}.json"
        result = runpytest_forked(pytester, *args, f"--flops-report-json={path}")
        assert result.ret in (0, 5), result.outlines
        paths.append(str(path))
    assert main(["merge", *paths, "--json", str(pytester.path / "merged.json")]) == 0
    return json.loads((pytester.path / "merged.json").read_text())["snapshots"]["stale"]


def test_a_shard_that_imports_no_torch_merges_with_one_that_measured(
    pytester: pytest.Pytester,
) -> None:
    """torch's version comes from one source whether or not the shard imported torch."""
    pytester.makepyfile(test_m=SUITE, test_plain="def test_plain():\n    pass\n")
    assert runpytest_forked(pytester, "--flops-update", "test_m.py").ret == 0
    paths = []
    for index, test_file in enumerate(("test_m.py", "test_plain.py")):
        path = pytester.path / f"shard-{index}.json"
        # fresh interpreters: a forked one has torch imported whatever the shard runs
        result = pytester.runpytest_subprocess(test_file, f"--flops-report-json={path}")
        assert result.ret == 0, result.outlines
        paths.append(str(path))
    assert main(["merge", *paths, "--json", str(pytester.path / "merged.json")]) == 0
    merged = json.loads((pytester.path / "merged.json").read_text())["metadata"]
    assert merged["torch_version"] == importlib.metadata.version("torch")


@pytest.fixture
def shards_suite(pytester: pytest.Pytester) -> pytest.Pytester:
    """test_1..3 with snapshots; test_old's snapshot is left from a deleted test."""
    pytester.makepyfile(test_m=SUITE)
    assert runpytest_forked(pytester, "--flops-update").ret == 0
    old = pytester.path / SNAPSHOTS / "test_old.flops.json"
    shutil.copy(pytester.path / SNAPSHOTS / "test_1.flops.json", old)
    return pytester


@pytest.mark.slow
def test_a_snapshot_no_shard_claims_is_stale(shards_suite: pytest.Pytester) -> None:
    stale = stale_after_merge(shards_suite, [["-k", "test_1"], ["-k", "test_2 or test_3"]])
    assert stale == [f"{SNAPSHOTS}/test_old.flops.json"]


@pytest.mark.slow
def test_a_measuring_test_no_shard_ran_fails_the_merge(
    shards_suite: pytest.Pytester, capsys: pytest.CaptureFixture[str]
) -> None:
    # test_3 is deselected in both shards: collected, and run by none (a missing shard)
    with pytest.raises(AssertionError):
        stale_after_merge(shards_suite, [["-k", "test_1"], ["-k", "test_2"]])
    assert capsys.readouterr().err == (
        "pytest-flops merge: error: 1 measuring test(s) ran in no shard: test_m.py::test_3. "
        "Is a shard's export missing? Merge the exports of every shard of the suite\n"
    )
    assert (shards_suite.path / SNAPSHOTS / "test_3.flops.json").exists()


@pytest.mark.slow
def test_a_test_that_stopped_measuring_in_its_shard_is_stale(
    shards_suite: pytest.Pytester,
) -> None:
    no_longer_measuring = SUITE.replace(
        "def test_2(flops):\n    model = Net()\n    with flops(model):",
        "def test_2():\n    model = Net()\n    if True:",
    )
    shards_suite.makepyfile(test_m=no_longer_measuring)
    stale = stale_after_merge(shards_suite, [["-k", "test_2"], ["-k", "not test_2"]])
    assert stale == [f"{SNAPSHOTS}/test_2.flops.json", f"{SNAPSHOTS}/test_old.flops.json"]


@pytest.mark.slow
def test_shards_that_name_tests_never_collect_their_file_whole(
    shards_suite: pytest.Pytester,
) -> None:
    """``file::test`` collects that test only: the others' snapshots look unclaimed."""
    stale = stale_after_merge(shards_suite, [["test_m.py::test_1"], ["test_m.py::test_2"]])
    assert stale == []


@pytest.mark.slow
def test_a_deleted_test_file_is_stale_when_a_shard_collected_its_directory(
    shards_suite: pytest.Pytester,
) -> None:
    (shards_suite.path / "__flops__" / "test_gone.py").mkdir()
    gone = shards_suite.path / "__flops__" / "test_gone.py" / "test_x.flops.json"
    shutil.copy(shards_suite.path / SNAPSHOTS / "test_1.flops.json", gone)
    before = snapshot_tree(shards_suite.path)
    stale = stale_after_merge(shards_suite, [["-k", "test_1"], ["-k", "not test_1"]])
    assert stale == ["__flops__/test_gone.py/test_x.flops.json", f"{SNAPSHOTS}/test_old.flops.json"]
    assert snapshot_tree(shards_suite.path) == before  # reported, never removed


# -- the command line -------------------------------------------------------------------


def write(path: Path, records: list[Any], **metadata: str) -> Path:
    base = export.RunMetadata.collect().to_dict()
    assert not export.write_exports(
        export.Export(records=tuple(records), metadata={**base, **metadata}),
        json_path=path,
        markdown_path=None,
        html_path=None,
    )
    return path


def test_merged_and_passing_exits_0(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    passing = [make_record("t.py::test_a", linear_measurement(240, 480))]
    also = [make_record("u.py::test_b", linear_measurement(60, 0), status=Status.NEW)]
    paths = [write(tmp_path / "1.json", passing), write(tmp_path / "2.json", also)]
    assert main(["merge", *map(str, paths)]) == 0
    out = capsys.readouterr().out
    # 240 + 480 + 60 = 780
    assert "suite total 780 FLOP (forward 300 FLOP, backward 480 FLOP) in 2 measurement(s)" in out


def test_a_failed_measurement_exits_1(tmp_path: Path) -> None:
    paths = [write(tmp_path / "1.json", suite())]  # test_grew changed
    assert main(["merge", str(paths[0]), "--md", str(tmp_path / "all.md")]) == 1
    assert "| `t.py::test_grew` |" in (tmp_path / "all.md").read_text().splitlines()[4]


@pytest.mark.parametrize(
    ("shard_metadata", "message"),
    [
        ({"torch_version": "2.0.0"}, "the shards disagree on torch_version: {one} has "),
        ({"plugin_version": "0.1.0"}, "the shards disagree on plugin_version: {one} has "),
    ],
)
def test_shards_of_other_versions_are_refused(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    shard_metadata: dict[str, str],
    message: str,
) -> None:
    one = write(tmp_path / "1.json", suite()[:1])
    two = write(tmp_path / "2.json", suite()[1:2], **shard_metadata)
    assert main(["merge", str(one), str(two), "--json", str(tmp_path / "all.json")]) == 2
    error = capsys.readouterr().err
    assert message.format(one=one) in error
    assert f"{two} has {next(iter(shard_metadata.values()))}" in error
    assert not (tmp_path / "all.json").exists()


def test_a_test_in_two_shards_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    one = write(tmp_path / "1.json", suite()[:2])
    two = write(tmp_path / "2.json", suite()[1:3])
    assert main(["merge", str(one), str(two)]) == 2
    assert capsys.readouterr().err == (
        f"pytest-flops merge: error: t.py::test_grew is in two shards, {one} and {two}: "
        "each test must run in one shard only\n"
    )


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{}", "not a pytest-flops JSON export"),
        ('{"schema_version": 7}', "schema_version 7, but this pytest-flops"),
        ("<html>", "not JSON"),
    ],
    ids=["another-json", "newer-schema", "not-json"],
)
def test_bad_input_exits_2_naming_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, message: str
) -> None:
    good = write(tmp_path / "good.json", suite())
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    assert main(["merge", str(good), str(bad)]) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"pytest-flops merge: error: {bad}: ")
    assert message in error


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("metadata", "devices"), 5, "metadata.devices: expected a list of strings, got 5"),
        (("metadata", "devices"), "cpu", "metadata.devices: expected a list of strings, got 'cpu'"),
        (("metadata", "torch_version"), ["2.14"], "metadata.torch_version: expected a string"),
        (("metadata", "gpu"), ["h100-sxm"], "metadata.gpu: unknown GPU ['h100-sxm']"),
        (
            ("measurements", 0, "roofline"),
            {"gpu": ["h100-sxm"]},
            """roofline on unknown GPU '["h100-sxm"]'""",
        ),
        (
            ("measurements", 0, "tokens"),
            0,
            "measurements[0] (t.py::test_same): tokens: expected a positive integer, got 0",
        ),
    ],
    ids=[
        "devices-int",
        "devices-str",
        "version-list",
        "gpu-list",
        "roofline-gpu-list",
        "no-tokens",
    ],
)
def test_a_corrupt_field_exits_2_naming_the_file_and_the_field(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    path: tuple[Any, ...],
    value: Any,
    message: str,
) -> None:
    """Exit 1 says a measurement failed: a crash must not read as one."""
    good = write(tmp_path / "good.json", suite()[1:])
    bad = write(tmp_path / "bad.json", suite()[:1])  # t.py::test_same
    document = json.loads(bad.read_text())
    *parents, key = path
    target = document
    for parent in parents:
        target = target[parent]
    target[key] = value
    bad.write_text(json.dumps(document))
    assert main(["merge", str(good), str(bad)]) == 2
    assert capsys.readouterr().err.startswith(f"pytest-flops merge: error: {bad}: {message}")


def test_an_unwritable_output_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = write(tmp_path / "good.json", suite()[:1])
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["merge", str(good), "--md", str(blocker / "all.md")]) == 2
    assert f"cannot write the report {blocker / 'all.md'}" in capsys.readouterr().err


def test_the_command_imports_no_torch_and_documents_its_exit_codes(tmp_path: Path) -> None:
    """A merge job downloads artifacts; it need not install (or import) torch."""
    good = write(tmp_path / "good.json", suite()[:1])
    code = (
        "import sys\n"
        "from pytest_flops.__main__ import main\n"
        f"code = main(['merge', {str(good)!r}])\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "sys.exit(code)\n"
    )
    merged = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert merged.returncode == 0, merged.stderr
    helped = subprocess.run(
        [sys.executable, "-m", "pytest_flops", "merge", "--help"], capture_output=True, text=True
    )
    assert helped.returncode == 0
    assert "exit codes: 0 merged and every measurement passed; 1 merged" in " ".join(
        helped.stdout.split()
    )
    bare = subprocess.run([sys.executable, "-m", "pytest_flops"], capture_output=True, text=True)
    assert bare.returncode == 2
    assert "merge" in bare.stdout
