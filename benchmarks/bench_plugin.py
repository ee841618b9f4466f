"""What the plugin costs a pytest session: per test, on the first block, and at start-up.

* **Per test.** Two generated suites of tiny-model tests (a 16-32-4 MLP, one
  thread), with and without ``with flops(MODEL):``, against stored snapshots,
  run as separate pytest processes. A session's time runs from
  ``pytest_sessionstart`` to ``pytest_unconfigure`` (interpreter start and
  imports excluded); a test's time is its whole runtest protocol.
* **First block.** The first measured test against the median of the others:
  the imports and set-up a first block would pay happen at the end of
  collection, outside every test.
* **Start-up.** A one-test suite that uses no FLOP feature, the whole process
  (interpreter start included), with pytest-flops loaded and with ``-p no:flops``.

Every process runs with Python's bytecode cache on and filled by a warm-up run.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from harness import Results, Target, Timings

TESTS = 200
TEMPLATES = Path(__file__).parent / "templates"


def run(results: Results, repeats: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        timing_file = root / "timing.json"
        env = _python_as_installed(root) | {
            "BENCH_TIMING_FILE": str(timing_file),
            "PYTEST_ADDOPTS": "",
        }
        suites = {
            "no fixture": _suite(root / "plain", fixture="", body="MODEL(INPUTS)"),
            "fixture": _suite(
                root / "measured",
                fixture="flops, ",
                body="with flops(MODEL):\n        MODEL(INPUTS)",
            ),
        }

        def session(suite: Path, *options: str) -> dict[str, Any]:
            _pytest(suite, env, *options)
            return json.loads(timing_file.read_text())

        session(suites["fixture"], "--flops-update")
        session(suites["no fixture"])
        sessions: dict[str, list[float]] = {name: [] for name in suites}
        tests: dict[str, list[float]] = {name: [] for name in suites}
        first_block: list[float] = []
        for _ in range(repeats):
            for name, suite in suites.items():
                timing = session(suite)
                sessions[name].append(timing["session"])
                tests[name].append(statistics.median(timing["tests"]))
                if name == "fixture":
                    first_block.append(timing["tests"][0] - statistics.median(timing["tests"][1:]))

        startup = _startup(root, env, repeats)

    session_times, test_times = Timings(sessions), Timings(tests)
    results.timings += [
        (f"{TESTS} tiny-model tests: pytest session", session_times.medians()),
        ("one of them: median test", test_times.medians()),
        ("a one-test suite, no FLOP feature: whole process", startup.medians()),
    ]
    results.targets += [
        Target(
            "plugin: session overhead / tests",
            1000 * session_times.difference("fixture", "no fixture") / TESTS,
            3.0,
            "ms",
        ),
        Target(
            "plugin: median test overhead",
            1000 * test_times.difference("fixture", "no fixture"),
            3.0,
            "ms",
        ),
        Target(
            "plugin: first block over later ones", 1000 * statistics.median(first_block), 50, "ms"
        ),
        Target(
            "start-up: with pytest-flops over -p no:flops",
            1000 * startup.difference("pytest-flops", "-p no:flops"),
            50,
            "ms",
        ),
    ]


def _python_as_installed(root: Path) -> dict[str, str]:
    """This environment, with Python's bytecode cache on (in ``root``), as users run it.

    With ``PYTHONDONTWRITEBYTECODE`` set (some sandboxes and containers set it),
    every process compiles every module it imports from source: start-up
    then measures the compiler, and the fixture's session pays for compiling
    the counter's modules, neither of which a user's second run does. The
    warm-up runs below fill the cache.
    """
    env = {**os.environ, "PYTHONPYCACHEPREFIX": str(root / "pycache")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def _suite(folder: Path, *, fixture: str, body: str) -> Path:
    folder.mkdir()
    (folder / "conftest.py").write_text((TEMPLATES / "conftest_timing.py.tmpl").read_text())
    source = (TEMPLATES / "test_tiny.py.tmpl").read_text()
    for placeholder, value in (("TESTS", str(TESTS)), ("FIXTURE ", fixture), ("BODY", body)):
        source = source.replace(placeholder, value)
    (folder / "test_tiny.py").write_text(source)
    return folder


def _pytest(suite: Path, env: dict[str, str], *options: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *options],
        cwd=suite,
        env=env,
        check=True,
        capture_output=True,
    )


def _startup(root: Path, env: dict[str, str], repeats: int) -> Timings:
    """Whole-process times of a suite that never measures, interleaved with and without us."""
    suite = root / "no_flops_feature"
    suite.mkdir()
    (suite / "test_plain.py").write_text((TEMPLATES / "test_plain.py.tmpl").read_text())
    variants = {"pytest-flops": (), "-p no:flops": ("-p", "no:flops")}
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for repeat in range(2 * repeats + 1):  # cheap: more repeats, one to warm the disk cache
        for name, options in variants.items():
            start = time.perf_counter()
            _pytest(suite, env, *options)
            if repeat:
                samples[name].append(time.perf_counter() - start)
    return Timings(samples)
