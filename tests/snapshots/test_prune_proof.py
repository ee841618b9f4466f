"""``--flops-prune`` removes a snapshot on proof only: tests that this run collected under
another name, or could not collect at all, keep their baselines (real pytest sessions)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_flops.snapshots.store import doctest_name_in
from tests.forked_pytest import runpytest_forked
from tests.helpers import NET, flops_line

TWO_TESTS = """
{decorator}
def test_a(flops):
    net = Net()
    with flops(net):
        net(torch.randn(4, 9)).sum().backward()

def test_b(flops):
    net = Net()
    with flops(net):
        net(torch.randn(4, 9)).sum().backward()
"""

NOT_A_FUNCTION = """
class traced:
    def __init__(self, function):
        self.function = function

    def __call__(self, *args, **kwargs):
        return self.function(*args, **kwargs)
"""

SWITCHED_OFF = """
def switched_off(function):
    function.__test__ = False
    return function
"""


@pytest.mark.parametrize(
    ("helper", "decorator"),
    [(NOT_A_FUNCTION, "@traced"), (SWITCHED_OFF, "@switched_off")],
    ids=["not a function", "__test__ = False"],
)
def test_a_test_function_pytest_gives_up_on_keeps_its_baseline(
    pytester: pytest.Pytester, helper: str, decorator: str
) -> None:
    pytester.makepyfile(test_m=NET + TWO_TESTS.format(decorator=""))
    runpytest_forked(pytester, "--flops-update").assert_outcomes(passed=2)
    baseline = pytester.path / "__flops__" / "test_m.py" / "test_a.flops.json"
    written = baseline.read_bytes()
    # a decorator now hides test_a from pytest: it is still in its file, not gone
    pytester.makepyfile(test_m=NET + helper + TWO_TESTS.format(decorator=decorator))
    for args in (("--flops-prune",), ("--flops-update", "--flops-prune")):
        result = runpytest_forked(pytester, *args)
        result.assert_outcomes(passed=1)
        assert flops_line(result) == "flops: 1 test passed, 0 failed, 0 written, 0 removed"
        assert baseline.read_bytes() == written


def test_a_doctest_keeps_its_baseline_under_another_import_mode(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pytest names a module's doctest after the module, whose name depends on the import
    mode (``test_d.helper``, ``tests.test_d.helper`` under importlib): the same doctest."""
    pytester.makeini("[pytest]\naddopts = --doctest-modules -p no:randomly\n")
    tests = pytester.mkdir("tests")
    (tests / "test_d.py").write_text(
        "def helper():\n"
        '    """\n'
        "    >>> import os, torch\n"
        "    >>> flops = getfixture('flops')\n"
        "    >>> with flops():\n"
        "    ...     _ = torch.ones(2, 3) @ torch.ones(3, int(os.environ.get('N', '4')))\n"
        '    """\n'
    )
    runpytest_forked(pytester, "--flops-update").assert_outcomes(passed=1)
    baseline = tests / "__flops__" / "test_d.py" / "test_d.helper.flops.json"
    written = baseline.read_bytes()
    importlib = "--import-mode=importlib"
    for args in ((), ("--flops-prune",), ("--flops-update", "--flops-prune")):
        result = runpytest_forked(pytester, importlib, *args)
        result.assert_outcomes(passed=1)
        assert flops_line(result) == "flops: 1 test passed, 0 failed, 0 written, 0 removed"
        assert baseline.read_bytes() == written
    # and a changed count still fails there: 2*2*3*4 = 48 FLOPs became 2*2*3*5 = 60
    monkeypatch.setenv("N", "5")
    result = runpytest_forked(pytester, importlib)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["FLOP count changed for *tests.test_d.helper: total 48 → 60*"])


@pytest.mark.parametrize(
    ("name", "other", "same"),
    [
        ("test_d.helper", "tests.test_d.helper", True),
        ("pkg.test_d.Model.forward", "src.pkg.test_d.Model.forward", True),
        ("test_d.helper", "tests.test_d.other", False),
        ("test_d.helper", "tests.other_d.helper", False),  # another module's stem
        ("test_d.helper", "test_d.helper_too", False),
        ("test_helper", "tests.test_helper", False),  # not doctests: test functions
    ],
)
def test_a_doctest_is_known_by_its_name_under_any_import_mode(
    name: str, other: str, same: bool
) -> None:
    found = doctest_name_in(Path("tests/test_d.py"), name, [other])
    assert found == (other if same else None)


def test_a_doctest_text_file_keeps_its_baseline_from_before_0_2(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pytest-flops 0.1 kept every test file's snapshots in a folder named after its stem:
    ``__flops__/test_guide/`` for ``test_guide.txt`` too."""
    pytester.makeini("[pytest]\naddopts = -p no:randomly\n")
    (pytester.path / "test_guide.txt").write_text(
        ">>> import os, torch\n"
        ">>> flops = getfixture('flops')\n"
        ">>> with flops():\n"
        "...     _ = torch.ones(2, 3) @ torch.ones(3, int(os.environ.get('N', '4')))\n"
    )
    runpytest_forked(pytester, "--flops-update").assert_outcomes(passed=1)
    folder = pytester.path / "__flops__"
    (folder / "test_guide.txt").rename(folder / "test_guide")
    baseline = folder / "test_guide" / "test_guide.txt.flops.json"
    written = baseline.read_bytes()
    result = runpytest_forked(pytester, "--flops-prune")
    result.assert_outcomes(passed=1)
    assert flops_line(result) == "flops: 1 test passed, 0 failed, 0 written, 0 removed"
    assert baseline.read_bytes() == written
    # it is the test's baseline: 2*2*3*4 = 48 FLOPs became 2*2*3*5 = 60
    monkeypatch.setenv("N", "5")
    result = runpytest_forked(pytester)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["FLOP count changed for test_guide.txt::test_guide.txt: total 48 → 60*"]
    )
    # --flops-update copies it to the current layout; --flops-prune then removes the old copy
    runpytest_forked(pytester, "--flops-update").assert_outcomes(passed=1)
    result = runpytest_forked(pytester, "--flops-prune")
    assert flops_line(result) == "flops: 1 test passed, 0 failed, 0 written, 1 removed"
    assert not baseline.exists()
    assert (folder / "test_guide.txt" / "test_guide.txt.flops.json").is_file()


def test_a_parameter_id_keeps_its_baseline_with_id_escaping_off(pytester: pytest.Pytester) -> None:
    """``disable_test_id_escaping_and_forfeit_all_rights_to_community_support`` spells the
    id ``test_p[é]`` where pytest spells it ``test_p[\\xe9]``: the same test."""
    pytester.makepyfile(
        test_u=NET
        + """
@pytest.mark.parametrize("device", ["é", "b"])
def test_p(flops, device):
    net = Net()
    with flops(net):
        net(torch.randn(4, 9)).sum().backward()
"""
    )
    runpytest_forked(pytester, "--flops-update").assert_outcomes(passed=2)
    before = {path: path.read_bytes() for path in (pytester.path / "__flops__").rglob("*.json")}
    assert len(before) == 2
    unescaped = ("-o", "disable_test_id_escaping_and_forfeit_all_rights_to_community_support=true")
    for args in ((), ("--flops-prune",), ("--flops-update", "--flops-prune")):
        result = runpytest_forked(pytester, *unescaped, *args)
        result.assert_outcomes(passed=2)
        assert flops_line(result) == "flops: 2 tests passed, 0 failed, 0 written, 0 removed"
        assert {path: path.read_bytes() for path in before} == before


STEP = """
    def test_k(self, flops):
        net = Net()
        with flops(net):
            net(torch.randn(4, 9)).sum().backward()
"""

CLASSES = f"""
import abc
import unittest

def test_kept(flops):
    net = Net()
    with flops(net):
        net(torch.randn(4, 9)).sum().backward()

{{gone}}

class TestOff:
    {{off}}
{STEP}

class TestOn(TestOff):
    __test__ = True

class TestAbstract{{abstract_base}}:
    {{abstract_method}}
{STEP}

class TestCaseOff(unittest.TestCase):
    {{off}}
    @pytest.fixture(autouse=True)
    def _flops(self, flops):
        self.flops = flops

    def test_k(self):
        net = Net()
        with self.flops(net):
            net(torch.randn(4, 9)).sum().backward()
"""

HIDING = {
    "gone": "",
    "off": "__test__ = False",
    "abstract_base": "(abc.ABC)",
    "abstract_method": "@abc.abstractmethod\n    def model(self): ...",
}


def test_a_test_class_pytest_passes_over_keeps_its_baselines(pytester: pytest.Pytester) -> None:
    """A class that says ``__test__ = False`` (a TestCase too) or is abstract is still in
    its file: its tests are not gone. A subclass that pytest collects is its own test."""
    gone = "def test_gone(flops):\n    with flops():\n        torch.ones(2, 2) @ torch.ones(2, 2)"
    shown = dict.fromkeys(HIDING, "")
    pytester.makepyfile(test_c=NET + CLASSES.format(**{**shown, "gone": gone}))
    runpytest_forked(pytester, "--flops-update", "-p", "no:randomly").assert_outcomes(passed=6)
    folder = pytester.path / "__flops__" / "test_c.py"
    classes = ("TestOff", "TestAbstract", "TestCaseOff")
    hidden = [path for name in classes for path in folder.glob(f"{name}.test_k*.flops.json")]
    assert len(hidden) == 3
    written = {path: path.read_bytes() for path in hidden}
    pytester.makepyfile(test_c=NET + CLASSES.format(**HIDING))
    result = runpytest_forked(pytester, "--flops-prune", "-p", "no:randomly")
    result.assert_outcomes(passed=2)  # test_kept, and TestOn (TestOff's test_k, its own name)
    # test_gone's snapshot goes on the same evidence
    assert flops_line(result) == "flops: 2 tests passed, 0 failed, 0 written, 1 removed"
    assert not (folder / "test_gone.flops.json").exists()
    assert {path: path.read_bytes() for path in hidden} == written


@pytest.mark.parametrize(
    "cut", [("--noconftest",), ("--confcutdir=tests/sub",)], ids=["noconftest", "confcutdir"]
)
def test_a_run_without_a_conftest_removes_nothing(
    pytester: pytest.Pytester, cut: tuple[str, ...]
) -> None:
    """A conftest's ``pytest_generate_tests`` makes the ids the snapshots are named by:
    without it, the ids are others, and the run proves nothing stale."""
    sub = pytester.mkdir("tests") / "sub"
    sub.mkdir()
    (pytester.path / "tests" / "conftest.py").write_text(
        "def pytest_generate_tests(metafunc):\n"
        '    if "out" in metafunc.fixturenames:\n'
        '        metafunc.parametrize("out", [5, 7])\n'
    )
    (sub / "test_w.py").write_text(
        NET
        + """
@pytest.fixture
def out():
    return 5

def test_w(flops, out):
    net = Net(out)
    with flops(net):
        net(torch.randn(4, 9)).sum().backward()
"""
    )
    runpytest_forked(pytester, "--flops-update", "tests").assert_outcomes(passed=2)
    written = {path: path.read_bytes() for path in (sub / "__flops__").rglob("*.json")}
    assert len(written) == 2
    result = runpytest_forked(pytester, *cut, "--flops-prune", "tests")
    result.assert_outcomes(failed=1)  # test_w has no snapshot under its conftest-less name
    assert flops_line(result) == "flops: 0 tests passed, 1 failed, 0 written, 0 removed"
    why = "--noconftest" if cut == ("--noconftest",) else "tests/conftest.py above the confcutdir"
    result.stdout.fnmatch_lines([f"*did not cover the whole suite ({why})*"])
    assert {path: path.read_bytes() for path in written} == written
