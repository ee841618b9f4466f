"""The documentation is true: its examples run, and it names every option, marker and name.

Every ``python`` block of the README and of ``docs/`` that starts with an
import (or with a ``# pytest ARGS`` line, then imports) is a complete program:
a script, whose own asserts check the numbers it shows, or a test file, which
must pass under pytest-flops (``--flops-update`` first, then compared, with
ARGS). Blocks that start otherwise are fragments and are not run. YAML and
TOML blocks must parse, and the site must build with ``mkdocs build --strict``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest
import yaml

import pytest_flops
from pytest_flops.counting.fixture import Flops
from pytest_flops.plugin.marks import MARKERS
from tests.forked_pytest import runpytest_forked

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def blocks(language: str) -> list[tuple[str, str]]:
    """``(page:index, code)`` of every fenced block of ``language``, dedented."""
    found = []
    for page in PAGES:
        fences = re.findall(rf"^( *)```{language}\n(.*?)^\1```", page.read_text(), re.S | re.M)
        for index, (_, code) in enumerate(fences):
            found.append((f"{page.name}:{index}", textwrap.dedent(code)))
    return found


def is_program(code: str) -> bool:
    first = next(line for line in code.splitlines() if not line.startswith("# pytest"))
    return first.startswith(("import ", "from "))


PROGRAMS = [(where, code) for where, code in blocks("python") if is_program(code)]
TEST_FILES = [(where, code) for where, code in PROGRAMS if re.search(r"^\s*def test_", code, re.M)]
SCRIPTS = [(where, code) for where, code in PROGRAMS if (where, code) not in TEST_FILES]


def test_the_docs_have_complete_examples_of_both_kinds() -> None:
    assert len(SCRIPTS) >= 8
    assert len(TEST_FILES) >= 10


@pytest.mark.slow
@pytest.mark.parametrize(("where", "script"), SCRIPTS, ids=[w for w, _ in SCRIPTS])
def test_script_runs(where: str, script: str) -> None:
    if "torchvision" in script:
        pytest.importorskip("torchvision")
    # a process of its own: scripts register ops and formulas for good
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, f"{where}:\n{result.stderr}"


@pytest.mark.slow
@pytest.mark.parametrize(("where", "test_file"), TEST_FILES, ids=[w for w, _ in TEST_FILES])
def test_test_file_passes(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, where: str, test_file: str
) -> None:
    if "torchvision" in test_file:
        pytest.importorskip("torchvision")
    monkeypatch.setenv("PYTHONPATH", str(ROOT), prepend=os.pathsep)  # examples/
    pytester.makepyfile(test_docs_example=test_file)
    tests = len(re.findall(r"^\s*def test_", test_file, re.M))
    args = re.match(r"# pytest (.*)\n", test_file)
    options = args[1].split() if args else []

    written = runpytest_forked(pytester, "--flops-update", "--snapshot-update")
    written.assert_outcomes(passed=tests)
    result = runpytest_forked(pytester, *options)
    result.assert_outcomes(passed=tests)
    if re.search(r"\bflops\(", test_file):
        noun = "test" if tests == 1 else "tests"
        result.stdout.fnmatch_lines(
            [f"flops: {tests} {noun} passed, 0 failed, 0 written, 0 removed"]
        )


@pytest.mark.parametrize(("where", "text"), blocks("yaml"), ids=[w for w, _ in blocks("yaml")])
def test_yaml_parses(where: str, text: str) -> None:
    assert isinstance(yaml.safe_load(text), dict), where


@pytest.mark.parametrize(("where", "text"), blocks("toml"), ids=[w for w, _ in blocks("toml")])
def test_toml_parses(where: str, text: str) -> None:
    assert tomllib.loads(text), where


# -- every name is documented -----------------------------------------------------------


def page(name: str) -> str:
    return (ROOT / "docs" / name).read_text()


def plugin_options() -> set[str]:
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "--help"], capture_output=True, text=True, cwd=ROOT
    )
    return set(re.findall(r"^\s+(--flops-[a-z-]+)", result.stdout, re.M))


@pytest.mark.slow
def test_every_option_and_ini_key_is_in_both_tables() -> None:
    options = plugin_options()
    assert len(options) == 11
    for text in (page("configuration.md"), (ROOT / "README.md").read_text()):
        rows = set(re.findall(r"^\| `(--flops-[a-z-]+)", text, re.M))
        assert rows == options
        assert {"`flops_rtol`", "`flops_depth`"} <= set(re.findall(r"`flops_[a-z]+`", text))


@pytest.mark.slow
def test_the_docs_mention_no_option_that_does_not_exist() -> None:
    mentioned = {m for p in PAGES for m in re.findall(r"--flops-[a-z-]*[a-z]", p.read_text())}
    assert mentioned <= plugin_options()


def test_every_marker_is_documented_with_its_arguments() -> None:
    text = page("configuration.md")
    for marker in MARKERS:
        assert f"@pytest.mark.{marker.name}(" in text
        keywords = marker.help_line.partition("*")[2]
        for argument in re.findall(r"(\w+)=", keywords):
            assert f"{argument}=" in text, (marker.name, argument)


def test_every_public_name_is_in_the_api_page() -> None:
    rows = " ".join(re.findall(r"^\| (.*?) \|", page("api.md"), re.M))
    for name in pytest_flops.__all__:
        assert f"`{name}`" in rows, name


def test_every_fixture_attribute_is_in_the_fixture_table() -> None:
    text = page("fixture.md")
    public = {name for name in vars(Flops) if not name.startswith("_")}
    for name in public:
        assert f"`flops.{name}`" in text, name


def test_the_architecture_page_names_every_module() -> None:
    named = set(re.findall(r"^\| `([a-z_/]+(?:\.py|/))`", page("architecture.md"), re.M))
    package = ROOT / "src" / "pytest_flops"
    formulas = package / "counting" / "formulas"
    modules = {
        path.relative_to(package).as_posix()
        for path in package.rglob("*.py")
        if formulas not in path.parents and path.name != "__init__.py"
    }
    assert named == modules | {"__init__.py", "counting/formulas/"}


@pytest.mark.slow
def test_the_site_builds_strictly(tmp_path: Path) -> None:
    mkdocs = shutil.which("mkdocs")
    if mkdocs is None:
        pytest.skip("mkdocs is not installed (the dev dependency group has it)")
    result = subprocess.run(
        [mkdocs, "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "site" / "screenshot.py").exists()  # a repository script
