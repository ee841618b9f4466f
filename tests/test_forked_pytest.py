"""The suite's forked pytest processes are what ``python -m pytest`` would start."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.forked_pytest import pytest_process, runpytest_forked

pytestmark = pytest.mark.slow  # real processes, fresh ones among them

# what the process says of itself, from a test, a conftest's assert and pytest's own outcome
SELF_REPORT = """
import json, os, random, sys, warnings

import torch

def test_report():
    state = {
        "cwd": os.getcwd(),
        "path": sys.path,
        "argv0": sys.argv[0],
        "args": sys.argv[1:],
        "env": dict(os.environ),
        "dont_write_bytecode": sys.dont_write_bytecode,
        "flags": list(sys.flags),
        "stdin": sys.__stdin__.read() if sys.__stdin__ else None,
        "random": random.random(),
        "torch_seed": torch.initial_seed(),
        "string_hash": hash("abc"),
        "warning_filters": [repr(f) for f in warnings.filters],
    }
    with open(os.environ["REPORT"], "w") as report:
        json.dump(state, report)

def test_rewritten(checked):
    pass
"""
# a conftest's asserts are rewritten as it is imported: the message shows the values
CONFTEST = """
import pytest

@pytest.fixture
def checked():
    width = 3
    assert width == 4
"""


def reported(run: subprocess.CompletedProcess[str], report: Path) -> dict[str, object]:
    # in pytest's own output: the conftest's rewritten assert, with the value it saw
    assert "assert 3 == 4" in run.stdout, run.stdout
    assert run.returncode == 1, run.stdout  # test_rewritten errored in setup
    state: dict[str, object] = json.loads(report.read_text())
    return state


@pytest.mark.parametrize("pythonpath", ["", "extra"])
def test_a_forked_pytest_is_the_process_python_m_pytest_starts(
    tmp_path: Path, pythonpath: str
) -> None:
    (tmp_path / "test_self.py").write_text(SELF_REPORT)
    (tmp_path / "conftest.py").write_text(CONFTEST)
    env = {**os.environ, "PYTEST_ADDOPTS": "-p no:randomly -p no:cacheprovider"}
    if pythonpath:
        env["PYTHONPATH"] = os.pathsep.join([pythonpath, env.get("PYTHONPATH", "")])
    fresh = subprocess.run(
        [sys.executable, "-m", "pytest", "-q"],
        cwd=tmp_path,
        env={**env, "REPORT": str(tmp_path / "fresh.json")},
        capture_output=True,
        text=True,
    )
    expected = reported(fresh, tmp_path / "fresh.json")
    forks = []
    for name in ("forked", "again"):
        report = tmp_path / f"{name}.json"
        forks.append(
            reported(
                pytest_process(["-q"], cwd=tmp_path, env={**env, "REPORT": str(report)}), report
            )
        )
    actual = forks[0]
    # each process draws its own random state and seeds, two forks in a row included
    hash_seeded = "PYTHONHASHSEED" in os.environ
    for seed in ("random", "torch_seed", "string_hash"):
        drawn = {expected.pop(seed), *(fork.pop(seed) for fork in forks)}
        assert len(drawn) == (1 if seed == "string_hash" and hash_seeded else 3), seed
    expected_env, actual_env = expected.pop("env"), actual.pop("env")
    assert isinstance(expected_env, dict) and isinstance(actual_env, dict)
    assert actual_env.pop("REPORT") != expected_env.pop("REPORT")
    assert (actual, actual_env) == (expected, expected_env)


def test_a_forked_pytest_reports_its_exit_code_and_both_streams(tmp_path: Path) -> None:
    (tmp_path / "test_streams.py").write_text(
        "import sys\n"
        "def test_err():\n"
        "    sys.__stderr__.write('to stderr\\n')\n"
        "    raise SystemExit(7)\n"
    )
    result = pytest_process(["-q", "-p", "no:randomly", "-s"], cwd=tmp_path)
    assert (result.returncode, "to stderr\n") == (1, result.stderr), result.stdout
    assert "1 failed" in result.stdout
    assert pytest_process(["-q", "-k", "nothing"], cwd=tmp_path).returncode == 5


def test_a_forked_pytest_past_its_timeout_is_killed(tmp_path: Path) -> None:
    (tmp_path / "test_slow.py").write_text("import time\ndef test_slow():\n    time.sleep(60)\n")
    with pytest.raises(subprocess.TimeoutExpired):
        pytest_process(["-q"], cwd=tmp_path, timeout=2)
    # and the server goes on
    assert pytest_process(["-q", "-k", "nothing"], cwd=tmp_path).returncode == 5


def test_a_run_interrupted_in_this_process_leaves_the_server_ready(tmp_path: Path) -> None:
    (tmp_path / "test_slow.py").write_text("import time\ndef test_slow():\n    time.sleep(60)\n")

    def interrupt(signum: int, frame: object) -> None:
        raise RuntimeError("interrupted")

    previous = signal.signal(signal.SIGALRM, interrupt)
    signal.alarm(2)
    try:
        with pytest.raises(RuntimeError, match="interrupted"):
            pytest_process(["-q"], cwd=tmp_path)
    finally:
        signal.signal(signal.SIGALRM, previous)
    # the slow child is gone and the next run reads its own answers
    (tmp_path / "test_slow.py").unlink()
    assert pytest_process(["-q"], cwd=tmp_path).returncode == 5


@pytest.mark.parametrize(
    ("variable", "value", "check"),
    [
        ("PYTHONOPTIMIZE", "1", "sys.flags.optimize == 1"),
        ("OMP_NUM_THREADS", "1", "torch.get_num_threads() == 1"),
        ("TZ", "Asia/Tokyo", "time.tzname[0] == 'JST'"),
    ],
)
def test_another_start_up_setting_runs_as_a_plain_subprocess(
    tmp_path: Path, variable: str, value: str, check: str
) -> None:
    (tmp_path / "test_setting.py").write_text(
        f"import sys, time, torch\ndef test_setting():\n    assert {check}\n"
    )
    env = {**os.environ, variable: value}
    result = pytest_process(["-q", "-p", "no:randomly"], cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stdout


def test_a_directory_that_is_not_there_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        pytest_process(["-q"], cwd=tmp_path / "missing")


def test_runpytest_forked_gives_what_runpytest_subprocess_gives(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        "import os\n"
        "def test_where(tmp_path):\n"
        "    assert os.environ['PYTHONPATH'].split(os.pathsep)[0] == os.getcwd()\n"
        "    assert 'runpytest-' in str(tmp_path)\n"
        "def test_fails():\n"
        "    assert 1 == 2\n"
    )
    forked, plain = runpytest_forked(pytester, "-q"), pytester.runpytest_subprocess("-q")
    assert (forked.ret, forked.parseoutcomes()) == (plain.ret, plain.parseoutcomes())
    forked.stdout.fnmatch_lines(["*assert 1 == 2", "1 failed, 1 passed in *"])
