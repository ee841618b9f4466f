"""Markers and configuration: budgets, tolerance, depth, ini/CLI precedence, test ids."""

import json
from pathlib import Path

import pytest

from tests.forked_pytest import runpytest_forked
from tests.helpers import NET as NET_MODULE
from tests.helpers import OUTER, stored, stored_totals

NET = NET_MODULE + "\nOUT = {out}\n"


# -- limit_flops ---------------------------------------------------------------------------


def test_budgets(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_m=NET.format(out=10)
        + """
# Linear(9, 10) on [4, 9]: forward 2*4*9*10 = 720, weight grad 720, total 1,440

@pytest.mark.limit_flops("1 KFLOP")
def test_no_fixture_over():
    Net()(torch.randn(4, 9)).sum().backward()

@pytest.mark.limit_flops(2000)
def test_no_fixture_within():
    Net()(torch.randn(4, 9)).sum().backward()

@pytest.mark.limit_flops("1.4 KFLOP")
def test_fixture_over(flops):
    net = Net()
    with flops(net):
        net(torch.randn(4, 9)).sum().backward()

@pytest.mark.limit_flops(forward="0.7 KFLOP", backward=1e3)
def test_forward_over(flops):
    net = Net()
    with flops(net):
        net(torch.randn(4, 9)).sum().backward()
"""
    )
    result = pytester.runpytest("--flops-update")
    result.assert_outcomes(passed=1, failed=3)
    result.stdout.fnmatch_lines_random(
        [
            "FLOP budget exceeded by test_m.py::test_no_fixture_over: "
            "used 1.44 KFLOP, limit 1 KFLOP",
            "FLOP budget exceeded by test_m.py::test_fixture_over: "
            "used 1.44 KFLOP, limit 1.4 KFLOP",
            "FLOP budget exceeded by test_m.py::test_forward_over: "
            "forward: used 720 FLOP, limit 0.7 KFLOP",  # the limit as the marker wrote it
            "flops: 1 test passed, 3 failed, 0 written, 0 removed",
        ]
    )
    # Without the fixture there is no snapshot; over budget, nothing is written either.
    assert not (pytester.path / "__flops__").exists()


BUDGETED_PAIR = """
import os

import pytest
import torch


@pytest.mark.limit_flops(os.environ["LIMIT"])
def test_pair(flops):
    x = torch.ones(8, 8)
    with flops(name="a"):
        x @ x
    if not os.environ.get("ONLY_A"):
        with flops(name="b"):
            x @ x
"""


def test_a_budget_holds_what_ran_not_the_baselines_kept(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    # each block is one (8, 8) @ (8, 8): 2*8*8*8 = 1,024 FLOP
    pytester.makepyfile(test_pair=BUDGETED_PAIR)
    monkeypatch.setenv("LIMIT", "3 KFLOP")
    pytester.runpytest("--flops-update", "-p", "no:randomly").assert_outcomes(passed=1)
    (path,) = pytester.path.glob("__flops__/test_pair.py/*.json")
    recorded = path.read_bytes()
    # "b" stops being measured, under a budget that both blocks (2,048 FLOP) would break
    monkeypatch.setenv("ONLY_A", "1")
    monkeypatch.setenv("LIMIT", "1.5 KFLOP")
    result = pytester.runpytest("--flops-update", "-p", "no:randomly")
    result.assert_outcomes(passed=1)  # 1,024 FLOP ran: within budget; "b" is kept
    assert path.read_bytes() == recorded
    result = pytester.runpytest("--flops-prune", "-p", "no:randomly")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["flops: 1 test passed, 0 failed, 0 written, 1 removed"])
    assert json.loads(path.read_text())["measurements"].keys() == {"a"}


@pytest.mark.parametrize(
    ("mark", "problem"),
    [
        ('limit_flops("4 GB")', "cannot read '4 GB' as a FLOP amount"),
        ('limit_flops("4 GLOPS")', "limit: cannot read '4 GLOPS' as a FLOP amount"),
        ("limit_flops(-1)", "limit: a FLOP amount cannot be negative, got -1"),
        ("limit_flops(backward=True)", "backward: expected a FLOP amount such as '4 GFLOP'"),
        ("limit_flops()", "limit_flops needs a limit"),
        (
            'limit_flops(communication="64 GFLOP")',
            "communication: cannot read '64 GFLOP' as a size",
        ),
        ("limit_flops(communication=-1)", "communication: a size cannot be negative, got -1"),
        ('limit_flops("1 GFLOP", fwd=1)', "unexpected keyword argument 'fwd'"),
        (
            'limit_flops(forward="1e100000000")',
            "forward: a FLOP amount must be below 1e1000, got '1e100000000'",
        ),
        (
            'limit_flops(roofline=10**400, gpu="h100-sxm")',
            "roofline: expected a time such as '2 ms' or 0.002, got 1000*",
        ),
        ("flops(rtol=-1)", "rtol: expected a number >= 0, got -1"),
        ('flops(depth="deep")', "depth: expected an integer >= 0, got 'deep'"),
        ("flops(depth=1.5)", "depth: expected an integer >= 0, got 1.5"),
        ('flops(rtol="1%")', "rtol: expected a number >= 0, got '1%'"),
        ("flops(tolerance=0.1)", "unexpected keyword argument 'tolerance'"),
        ("flops(0.1)", "too many positional arguments"),
        ("flops(rtol=10**400)", "rtol: expected a number >= 0, got 1000*"),
    ],
)
def test_bad_marker_arguments_are_usage_errors_naming_the_test(
    pytester: pytest.Pytester, mark: str, problem: str
) -> None:
    pytester.makepyfile(test_m=f"import pytest\n\n@pytest.mark.{mark}\ndef test_a():\n    pass\n")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: test_m.py::test_a: bad @pytest.mark.*: *{problem}*"])


HUGE_LIMITS = """
import pytest
import torch


@pytest.mark.limit_flops(forward="1e400", bytes_accessed="1e400 B")
def test_huge():
    torch.ones(2, 4) @ torch.ones(4, 4)  # 2*2*4*4 = 64 FLOP
"""


def test_limits_past_any_count_hold_and_are_shown_as_written(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_m=HUGE_LIMITS)
    result = runpytest_forked(pytester, "--flops-report", "--flops-report-json=flops.json")
    assert result.ret == pytest.ExitCode.OK, result.outlines
    result.stdout.fnmatch_lines(
        [
            "test_m.py::test_huge *64 FLOP*"
            "within budget (limit forward 1e400, bytes accessed 1e400 B)"
        ]
    )
    (entry,) = json.loads((pytester.path / "flops.json").read_text())["measurements"]
    assert entry["budget"] == "forward 1e400, bytes accessed 1e400 B"


BUDGET_MESSAGES = """
import pytest
import torch


def linear(flops):
    # Linear(128, 32) in bf16 on (64, 128): reads x, W and b, writes y, 2 bytes each:
    # 2 * (64*128 + 128*32 + 32 + 64*32) = 28,736 bytes, 8.5779 ns at 3.35 TB/s (h100-sxm)
    x = torch.randn(64, 128, dtype=torch.bfloat16)
    model = torch.nn.Linear(128, 32).to(torch.bfloat16)
    with torch.no_grad(), flops(model):
        model(x)


@pytest.mark.limit_flops(roofline="8.577 ns", gpu="h100-sxm")
def test_roofline(flops):
    linear(flops)


@pytest.mark.limit_flops(bytes_accessed="28.7 kB")
def test_bytes(flops):
    linear(flops)


@pytest.mark.limit_flops("1.0005 MFLOP")
def test_flops(flops):
    with flops():
        torch.ones(1, 500) @ torch.ones(500, 1001)  # 2*500*1001 = 1,001,000 FLOP
"""


def test_a_budget_shows_its_limit_as_written_and_the_use_past_it(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_m=BUDGET_MESSAGES)
    result = runpytest_forked(
        pytester, "--flops-update", "--flops-report", "--flops-report-json=flops.json"
    )
    result.assert_outcomes(failed=3)
    # each limit as written, never rounded onto the amount used nor below it
    result.stdout.fnmatch_lines_random(
        [
            "FLOP budget exceeded by test_m.py::test_roofline: "
            "roofline on h100-sxm: used 8.578 ns, limit 8.577 ns",
            "FLOP budget exceeded by test_m.py::test_bytes: "
            "bytes accessed: used 28.74 kB, limit 28.7 kB",
            "FLOP budget exceeded by test_m.py::test_flops: used 1.001 MFLOP, limit 1.0005 MFLOP",
            "test_m.py::test_flops *over budget (limit 1.0005 MFLOP)",
            "test_m.py::test_roofline *over budget (limit roofline 8.577 ns on h100-sxm)",
        ]
    )
    document = json.loads((pytester.path / "flops.json").read_text())
    assert {entry["nodeid"]: entry["budget"] for entry in document["measurements"]} == {
        "test_m.py::test_bytes": "bytes accessed 28.7 kB",
        "test_m.py::test_flops": "1.0005 MFLOP",
        "test_m.py::test_roofline": "roofline 8.577 ns on h100-sxm",
    }


# -- tolerance and depth ---------------------------------------------------------------------


TOLERANT = """
import pytest
import torch


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.big = torch.nn.Linear(500, {big}, bias=False)
        self.small = torch.nn.Linear(10, {small}, bias=False)

    def forward(self, x, y):
        return self.big(x), self.small(y)


@pytest.mark.flops(rtol=0.1, bytes=False)
def test_tol(flops):
    model = Net()
    with flops(model):
        model(torch.ones(1, 500), torch.ones(1, 10))
"""


def test_with_a_tolerance_the_diagnosis_leads_with_the_rows_beyond_it(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_m=TOLERANT.format(big=1000, small=5))
    runpytest_forked(pytester, "--flops-update").assert_outcomes(passed=1)
    # big: 2*500*1000 = 1,000,000 -> 2*500*1050 = 1,050,000, +5%: within rtol 0.1;
    # small: 2*10*5 = 100 -> 2*10*10 = 200, +100%: what fails the test
    pytester.makepyfile(test_m=TOLERANT.format(big=1050, small=10))
    result = runpytest_forked(pytester)
    result.assert_outcomes(failed=1)
    lines = result.stdout.lines
    start = lines.index("  the change starts in (each module without its submodules):")
    assert lines[start + 1 : start + 5] == [
        "  module     operator     before      after        Δ",
        "  Net.small  aten.mm         100        200     +100",
        "  Net.big    aten.mm   1,000,000  1,050,000  +50,000  within the tolerance",
        "  and the sums of these rows: Global, Net",
    ]


def test_rtol_and_depth_from_marker_cli_and_ini(pytester: pytest.Pytester) -> None:
    tests = (
        OUTER
        + """
def test_default(flops):
    model = Outer(OUT)
    with flops(model):
        model(torch.randn(4, 9))

@pytest.mark.flops(rtol=0.2, depth=1)
def test_marked(flops):
    model = Outer(OUT)
    with flops(model):
        model(torch.randn(4, 9))
"""
    )
    pytester.makepyfile(test_m=NET.format(out=10) + tests)
    pytester.runpytest("--flops-update").assert_outcomes(passed=2)
    modules = {
        test: list(document["measurements"]["default"]["modules"])
        for test, document in stored(pytester).items()
    }
    assert modules == {
        "test_default": ["Global", "Outer", "Outer.net", "Outer.net.fc"],  # depth 3
        "test_marked": ["Global", "Outer"],
    }

    # Linear(9, 10) -> Linear(9, 11): forward 720 -> 792, +10%
    pytester.makepyfile(test_m=NET.format(out=11) + tests)
    result = pytester.runpytest()
    result.assert_outcomes(passed=1, failed=1)  # the marker's rtol=0.2 absorbs +10%
    result.stdout.fnmatch_lines(
        ["FLOP count changed for test_m.py::test_default: total 720 → 792*"]
    )

    pytester.makeini("[pytest]\nflops_rtol = 0.1\nflops_depth = 2\n")
    pytester.runpytest().assert_outcomes(passed=2)  # ini rtol 0.1 accepts exactly +10%
    result = pytester.runpytest("--flops-rtol=0.05")  # the CLI wins over ini
    result.assert_outcomes(passed=1, failed=1)
    result = pytester.runpytest("--flops-update", "--flops-depth=1")
    modules = json.loads(
        (pytester.path / "__flops__/test_m.py/test_default.flops.json").read_text()
    )
    assert list(modules["measurements"]["default"]["modules"]) == ["Global", "Outer"]


@pytest.mark.parametrize(
    ("args", "ini", "problem"),
    [
        # the option is named once, by argparse
        (
            ["--flops-rtol=abc"],
            "",
            "error: argument --flops-rtol: expected a number >= 0, got 'abc'",
        ),
        (
            ["--flops-depth=-1"],
            "",
            "error: argument --flops-depth: expected an integer >= 0, got '-1'",
        ),
        (
            [],
            "flops_depth = x",
            "ERROR: ini option flops_depth: expected an integer >= 0 "
            "(invalid literal for int() with base 10: 'x')",
        ),
        (
            [],
            "flops_depth = 1.5",
            "ERROR: ini option flops_depth: expected an integer >= 0 "
            "(invalid literal for int() with base 10: '1.5')",
        ),
        (
            [],
            "flops_rtol = 1%",
            "ERROR: ini option flops_rtol: expected a number >= 0 "
            "(could not convert string to float: '1%')",
        ),
        ([], "flops_rtol = -0.1", "ERROR: ini option flops_rtol: expected a number >= 0, got -0.1"),
        ([], "flops_rtol = nan", "ERROR: ini option flops_rtol: expected a number >= 0, got nan"),
    ],
)
def test_bad_options_are_usage_errors(
    pytester: pytest.Pytester, args: list[str], ini: str, problem: str
) -> None:
    pytester.makeini(f"[pytest]\n{ini}\n")
    pytester.makepyfile(test_m="def test_a():\n    pass\n")
    result = pytester.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert any(line.endswith(problem) for line in result.stderr.lines), result.stderr.lines


# -- named measurements and parametrized ids -------------------------------------------------


def test_named_measurements_get_their_own_entries(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_m=NET.format(out=10)
        + """
def test_lm(flops):
    net = Net()
    with torch.no_grad():
        with flops(net, name="prefill"):
            net(torch.randn(8, 9))
        with flops(net, name="decode"):
            for _ in range(3):
                net(torch.randn(1, 9))
"""
    )
    pytester.runpytest("--flops-update").assert_outcomes(passed=1)
    lm = stored(pytester)["test_lm"]
    totals = {name: m["total"] for name, m in lm["measurements"].items()}
    assert totals == {"decode": 540, "prefill": 1440}  # 3 * 2*1*9*10, 2*8*9*10


IDS = ["a/b", "a_b", "a b", "é", "x" * 200, "[nested]", "dot.ted", "c::d"]


def test_parametrized_ids_get_stable_distinct_snapshots(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_m=NET.format(out=10)
        + f"""
@pytest.mark.parametrize("batch", range(1, {len(IDS) + 1}), ids={IDS!r})
def test_p(flops, batch):
    net = Net()
    with flops(net):
        net(torch.randn(batch, 9))

class TestGroup:
    @pytest.mark.parametrize("batch", [1])
    def test_q(self, flops, batch):
        net = Net()
        with flops(net):
            net(torch.randn(batch, 9))
"""
    )
    pytester.runpytest("--flops-update").assert_outcomes(passed=len(IDS) + 1)
    # Each id keeps its own count: batch b gives 2*b*9*10 = 180*b FLOPs.
    expected = {f"test_p[{test_id}]": 180 * b for b, test_id in enumerate(IDS, start=1)}
    expected["TestGroup::test_q[1]"] = 180
    # pytest escapes non-ASCII ids: the stored name is the node id's.
    expected["test_p[\\xe9]"] = expected.pop("test_p[é]")
    assert stored_totals(pytester) == expected
    names = {path.name for path in (pytester.path / "__flops__" / "test_m.py").iterdir()}
    # readable where the name is safe; a hash where it is not, or has capitals (on a
    # case-insensitive file system test_p[A] and test_p[a] would share a file)
    assert "test_p[a_b].flops.json" in names
    assert "TestGroup.test_q[1]~60c0ffda08.flops.json" in names
    assert all(len(name) < 150 for name in names)

    before = {p: p.read_bytes() for p in Path(pytester.path, "__flops__").rglob("*.json")}
    result = pytester.runpytest()
    result.assert_outcomes(passed=len(IDS) + 1)
    assert {p: p.read_bytes() for p in Path(pytester.path, "__flops__").rglob("*.json")} == before


def test_bad_marker_arguments_under_xdist_error_the_test(pytester: pytest.Pytester) -> None:
    # A worker cannot stop the run, so the test itself errors with the same message.
    pytester.makepyfile(
        test_m="import pytest\n\n@pytest.mark.limit_flops('4 GB')\ndef test_a():\n    pass\n"
    )
    result = pytester.runpytest("-n", "1")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        ["test_m.py::test_a: bad @pytest.mark.limit_flops argument: limit: *"]
    )
