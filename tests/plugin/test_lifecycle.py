"""The snapshot life cycle end to end, with pytester: fail, update, rerun, change, remove."""

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.forked_pytest import runpytest_forked
from tests.helpers import NET, recorded, snapshot_bytes

SNAPSHOTS = Path("__flops__", "test_model.py")

TESTS = """
def test_{name}(flops):
    net = Net({out})
    with flops(net):
        net(torch.randn(4, 9)).sum().backward()

def test_other(flops):
    net = Net({out})
    with torch.no_grad(), flops(net):
        net(torch.randn(1, 9))
"""


def suite(*, out: int = 10, name: str = "train") -> str:
    return NET + TESTS.format(out=out, name=name)


def write_tests(pytester: pytest.Pytester, *, out: int = 10, name: str = "train") -> None:
    pytester.makepyfile(test_model=suite(out=out, name=name))


def record_tests(pytester: pytest.Pytester) -> dict[str, bytes]:
    """The snapshots of ``suite()``, recorded."""
    return recorded(pytester, suite(), passed=2, test_file="test_model.py")


def stored(pytester: pytest.Pytester) -> dict[str, bytes]:
    return snapshot_bytes(pytester, "test_model.py")


@pytest.mark.slow
def test_life_cycle(pytester: pytest.Pytester) -> None:
    write_tests(pytester)

    # A missing snapshot fails the test, names it and says how to create it.
    result = runpytest_forked(pytester)
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(
        [
            "No FLOP snapshot for test_model.py::test_train (1,440 FLOP counted).",
            "Run `pytest --flops-update` to write __flops__/test_model.py/test_train.flops.json.",
            "flops: 0 tests passed, 2 failed, 0 written, 0 removed",
        ]
    )
    assert stored(pytester) == {}

    # --flops-update writes them; the test passes, and so does a rerun.
    first = record_tests(pytester)
    assert set(first) == {"test_train.flops.json", "test_other.flops.json"}
    assert b'"total": 1440,' in first["test_train.flops.json"]  # 720 forward + 720 weight grad
    result = pytester.runpytest()
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["flops: 2 tests passed, 0 failed, 0 written, 0 removed"])

    # Linear(9, 10) -> Linear(9, 11): the test fails with the module and the numbers.
    write_tests(pytester, out=11)
    result = pytester.runpytest()
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(
        [
            "FLOP count changed for test_model.py::test_train: total 1,440 → 1,584 FLOP (+10.00%)",
            "  forward   720 → 792 FLOP (+10.00%)",
            "  backward  720 → 792 FLOP (+10.00%)",
            "*Net.fc  aten.addmm     720    792  +72",
            "Run `pytest --flops-update` to accept the new counts.",
        ]
    )
    assert stored(pytester) == first

    # --flops-update accepts the change.
    result = pytester.runpytest("--flops-update")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["flops: 0 tests passed, 0 failed, 2 written, 0 removed"])
    assert b'"total": 1584,' in stored(pytester)["test_train.flops.json"]
    pytester.runpytest().assert_outcomes(passed=2)


def test_update_is_byte_stable(pytester: pytest.Pytester) -> None:
    first = record_tests(pytester)
    (pytester.path / SNAPSHOTS / "test_train.flops.json").touch()
    result = pytester.runpytest("--flops-update")
    result.stdout.fnmatch_lines(["flops: 2 tests passed, 0 failed, 0 written, 0 removed"])
    assert stored(pytester) == first
    assert all(text.endswith(b"}\n") for text in first.values())


def test_renamed_test_leaves_a_stale_snapshot_that_prune_removes(
    pytester: pytest.Pytester,
) -> None:
    record_tests(pytester)
    write_tests(pytester, name="renamed")

    result = pytester.runpytest()
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "flops: 1 test passed, 1 failed, 0 written, 0 removed, 1 stale",
            "flops: Stale snapshots, kept (*`pytest --flops-prune` on a run that covers *):",
            "  __flops__/test_model.py/test_train.flops.json (its test is gone from its file)",
        ]
    )
    assert "test_train.flops.json" in stored(pytester)  # reported, not deleted

    result = pytester.runpytest("--flops-update")  # never removes
    result.stdout.fnmatch_lines(["flops: 1 test passed, 0 failed, 1 written, 0 removed, 1 stale"])
    assert "test_train.flops.json" in stored(pytester)
    result = pytester.runpytest("--flops-prune")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["flops: 2 tests passed, 0 failed, 0 written, 1 removed"])
    assert set(stored(pytester)) == {"test_renamed.flops.json", "test_other.flops.json"}


@pytest.mark.parametrize(
    ("selection", "removed"),
    [
        ([], True),  # the whole file ran
        (["-k", "train"], False),  # deselects test_other
        (["test_model.py::test_train"], False),  # names some tests of the file only
        (["--deselect", "test_model.py::test_other"], False),
        (["-x"], False),  # stops at test_boom: the tests after it never run
    ],
)
def test_prune_removes_only_in_files_that_ran_whole(
    pytester: pytest.Pytester, selection: list[str], removed: bool
) -> None:
    pytester.makepyfile(test_model="def test_boom():\n    assert 0\n" + suite())
    if selection != ["-x"]:
        (pytester.path / "test_model.py").write_text(
            (pytester.path / "test_model.py").read_text().replace("assert 0", "pass")
        )
    gone = pytester.path / SNAPSHOTS / "test_gone.flops.json"
    gone.parent.mkdir(parents=True)
    gone.write_text("{}")  # a test that no longer exists; content does not matter
    result = pytester.runpytest(*selection, "--flops-update", "--flops-prune")
    assert result.ret in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED)
    assert gone.exists() is not removed


def test_a_module_skipped_at_collection_keeps_its_snapshots(pytester: pytest.Pytester) -> None:
    # As under a torch without torchvision: the module-level importorskip hides
    # every test of the file, so none of its snapshots is stale.
    pytester.makepyfile(
        test_model="import pytest\npytest.importorskip('no_such_module')\n" + suite()
    )
    kept = pytester.path / SNAPSHOTS / "test_train.flops.json"
    kept.parent.mkdir(parents=True)
    kept.write_text("{}")
    result = pytester.runpytest("--flops-update")
    result.assert_outcomes(skipped=1)
    assert kept.read_text() == "{}"
    assert "stale" not in result.stdout.str()


def test_failing_or_skipped_tests_keep_their_snapshots_under_update(
    pytester: pytest.Pytester,
) -> None:
    before = record_tests(pytester)
    pytester.makepyfile(
        test_model=NET
        + """
def test_train(flops):
    net = Net(11)
    with flops(net):
        net(torch.randn(4, 9)).sum().backward()
    assert False, "the test itself fails"

@pytest.mark.skip(reason="not today")
def test_other(flops):
    pass

def test_new(flops):
    net = Net(11)
    with flops(net):
        net(torch.randn(4, 9))
    raise RuntimeError("fails before its first snapshot")
"""
    )
    result = pytester.runpytest("--flops-update")
    result.assert_outcomes(failed=2, skipped=1)
    result.stdout.fnmatch_lines(
        ["flops: 0 tests passed, 0 failed, 0 written, 0 removed, 2 not compared (test failed)"]
    )
    assert stored(pytester) == before


def test_an_exception_inside_the_block_writes_nothing(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_model=NET
        + """
def test_raises(flops):
    net = Net()
    with flops(net):
        net(torch.randn(4, 9))
        raise ValueError("inside the block")

def test_no_hooks_left_behind():
    from torch.utils._python_dispatch import _get_current_dispatch_mode
    assert _get_current_dispatch_mode() is None
    assert not torch.nn.modules.module._global_forward_hooks
"""
    )
    result = pytester.runpytest("--flops-update")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*ValueError: inside the block"])
    assert stored(pytester) == {}


def test_a_test_that_stops_measuring_leaves_a_stale_snapshot(pytester: pytest.Pytester) -> None:
    record_tests(pytester)
    pytester.makepyfile(test_model=suite().replace("with torch.no_grad(), flops(net):", "if True:"))
    result = pytester.runpytest("--flops-update")
    result.stdout.fnmatch_lines(
        [
            "flops: 2 tests passed, 0 failed, 0 written, 0 removed, 1 stale",
            "  __flops__/test_model.py/test_other.flops.json (its test passed without measuring)",
        ]
    )
    assert set(stored(pytester)) == {"test_train.flops.json", "test_other.flops.json"}
    result = pytester.runpytest("--flops-update", "--flops-prune")
    result.stdout.fnmatch_lines(["flops: 2 tests passed, 0 failed, 0 written, 1 removed"])
    assert set(stored(pytester)) == {"test_train.flops.json"}


def test_broken_snapshots_fail_only_their_tests_and_update_repairs_them(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        test_model=NET
        + """
CASES = ["truncated", "wrong type", "negative", "missing key", "not an object", "newer version"]

@pytest.mark.parametrize("case", [*CASES, "copied", "fine"])
def test_train(flops, case):
    net = Net()
    with flops(net):
        net(torch.randn(4, 9)).sum().backward()
"""
    )
    pytester.runpytest("--flops-update").assert_outcomes(passed=8)
    good = stored(pytester)
    folder = pytester.path / SNAPSHOTS
    damages: list[tuple[str, Callable[[str], str]]] = [
        ("truncated", lambda text: text[: len(text) // 2]),
        ("wrong type", lambda text: text.replace('"total": 1440', '"total": "1440"')),
        ("negative", lambda text: text.replace('"total": 1440', '"total": -1440')),
        ("missing key", lambda text: text.replace('"depth": 6,', "")),
        ("not an object", lambda text: f"[{text}]"),
        ("newer version", lambda text: text.replace('"version": 4', '"version": 99')),
    ]
    for name, damage in damages:
        path = next(folder.glob(f"test_train[[]{name.replace(' ', '_')}]*"))
        path.write_text(damage(path.read_text()))
    (folder / "test_train[copied].flops.json").write_bytes(good["test_train[fine].flops.json"])

    result = pytester.runpytest()
    result.assert_outcomes(passed=1, failed=7)
    result.stdout.fnmatch_lines_random(
        [
            "Cannot read the FLOP snapshot of test_model.py::test_train[[]truncated]: "
            "__flops__/test_model.py/test_train[[]truncated].flops.json: not valid JSON*",
            "Cannot read the FLOP snapshot of test_model.py::test_train[[]wrong type]: "
            "__flops__/test_model.py/test_train[[]wrong_type]~*.flops.json: "
            "measurements[[]'default']: total: expected a non-negative integer, got str '1440'",
            "Cannot read the FLOP snapshot of test_model.py::test_train[[]negative]: *"
            "measurements[[]'default']: total: expected a non-negative integer, got -1440",
            "Cannot read the FLOP snapshot of test_model.py::test_train[[]missing key]: "
            "__flops__/test_model.py/test_train[[]missing_key]~*.flops.json: missing key(s) depth",
            "Cannot read the FLOP snapshot of test_model.py::test_train[[]not an object]: "
            "__flops__/test_model.py/test_train[[]not_an_object]~*.flops.json: "
            "expected an object, got list",
            "Cannot read the FLOP snapshot of test_model.py::test_train[[]newer version]: *"
            "snapshot format version 99 is newer than this pytest-flops reads (version 4)*",
            "Cannot read the FLOP snapshot of test_model.py::test_train[[]copied]: "
            "__flops__/test_model.py/test_train[[]copied].flops.json: holds the snapshot of test "
            "'test_train[[]fine]', not of 'test_train[[]copied]'",
            "Run `pytest --flops-update` to rewrite "
            "__flops__/test_model.py/test_train[[]truncated]*",
        ]
    )
    # --flops-update rewrites what is damaged, but not what a newer pytest-flops wrote:
    # rewriting it would drop what that version stores
    newer = next(folder.glob("test_train[[]newer_version]*"))
    newer_bytes = newer.read_bytes()
    result = pytester.runpytest("--flops-update")
    result.assert_outcomes(passed=7, failed=1)
    result.stdout.fnmatch_lines(
        [
            "Cannot read the FLOP snapshot of test_model.py::test_train[[]newer version]: *"
            "upgrade pytest-flops."
        ]
    )
    assert newer.read_bytes() == newer_bytes
    assert stored(pytester) == good | {newer.name: newer_bytes}
