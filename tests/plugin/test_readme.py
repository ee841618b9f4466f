"""The README's complete examples run as written.

A Python block that starts with an import is a complete program: a script,
whose own asserts check the numbers it shows, or a test file, which must pass
under pytest-flops (``--flops-update`` first, then compared). Blocks that start
otherwise are fragments of a larger file and are not run here.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BLOCKS = [
    textwrap.dedent(block)
    for block in re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
]
PROGRAMS = [block for block in BLOCKS if block.startswith(("import ", "from "))]
TEST_FILES = [block for block in PROGRAMS if re.search(r"^def test_", block, re.M)]
SCRIPTS = [block for block in PROGRAMS if block not in TEST_FILES]


def first_test(block: str) -> str:
    match = re.search(r"^def (test_\w+)", block, re.M)
    assert match is not None
    return match.group(1)


def test_the_readme_has_complete_examples_of_both_kinds() -> None:
    # the ways to count (FlopCounterMode, count(), a custom op's formula) and the fixture
    assert len(SCRIPTS) >= 4
    assert len(TEST_FILES) >= 3


@pytest.mark.parametrize("script", SCRIPTS, ids=[f"script{i}" for i in range(len(SCRIPTS))])
def test_readme_script_runs(script: str) -> None:
    if "torchvision" in script:
        pytest.importorskip("torchvision")
    # a process of its own: scripts register ops and formulas for good
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("test_file", TEST_FILES, ids=[first_test(f) for f in TEST_FILES])
def test_readme_test_file_passes(pytester: pytest.Pytester, test_file: str) -> None:
    if "torchvision" in test_file:
        pytest.importorskip("torchvision")
    pytester.syspathinsert(ROOT)  # examples/
    pytester.makepyfile(test_readme_example=test_file)
    tests = len(re.findall(r"^def test_", test_file, re.M))

    pytester.runpytest("--flops-update", "-p", "no:cacheprovider").assert_outcomes(passed=tests)
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=tests)
    result.stdout.fnmatch_lines(
        [f"flops: {tests} test{'s' if tests > 1 else ''} passed, 0 failed, 0 written, 0 removed"]
    )
