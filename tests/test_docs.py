"""The documentation is true: its examples run, and it names every option, marker and name.

Every ``python`` block of the README and of ``docs/`` that starts with an
import (or with a ``# pytest ARGS`` line, then imports) is a complete program:
a script, whose own asserts check the numbers it shows, or a test file, which
must pass under pytest-flops (``--flops-update`` first, then compared, with
ARGS). Blocks that start otherwise are fragments and are not run. The output
blocks that ``SHOWN_OUTPUTS`` declares are compared with what a real run of their
page's example prints. YAML and TOML blocks must parse, and the site must build
with ``mkdocs build --strict``.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import os
import re
import shlex
import shutil
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest
import yaml

import pytest_flops
from pytest_flops import Measurement, ModuleFlops, Traffic, World
from pytest_flops.__main__ import _parser as command_line_parser
from pytest_flops.counting.fixture import Flops
from pytest_flops.plugin.marks import MARKERS
from tests.forked_pytest import runpytest_forked

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def fenced(page: Path, language: str) -> list[str]:
    """Every fenced block of ``language`` on ``page``, dedented, in order."""
    fences = re.findall(rf"^( *)```{language}\n(.*?)^\1```", page.read_text(), re.S | re.M)
    return [textwrap.dedent(code) for _, code in fences]


def blocks(language: str) -> list[tuple[str, str]]:
    """``(page:index, code)`` of every fenced block of ``language``."""
    return [
        (f"{page.name}:{index}", code)
        for page in PAGES
        for index, code in enumerate(fenced(page, language))
    ]


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


@dataclasses.dataclass(frozen=True)
class ShownOutput:
    """An output block of a page, and the run of the page's example that prints it.

    The page's ``program``-th ``python`` block is written as ``path``. With a
    ``change`` (the edit the page states, as text replacements), its snapshot is
    recorded first and the edit made. Then pytest runs (with the arguments of a
    ``console`` block's ``$ pytest ARGS`` line, whose next lines are the output),
    and what it printed must hold the block, line for line.
    """

    page: str
    block: str  # the output block, as "LANGUAGE:INDEX" among the page's blocks
    program: int = 0
    path: str = "tests/test_model.py"
    change: tuple[tuple[str, str], ...] = ()


WIDER = ("(10_240, 12_288)", "(15_360, 18_432)")  # the test's own assert, widened 32 -> 48
SHOWN_OUTPUTS = [
    ShownOutput("README.md", "text:0", change=(("16, 32", "16, 48"), ("(32, 4", "(48, 4"), WIDER)),
    ShownOutput("docs/index.md", "console:0"),
    ShownOutput(
        "docs/index.md", "text:0", change=(("hidden: int = 32", "hidden: int = 48"), WIDER)
    ),
]


@pytest.mark.slow
@pytest.mark.parametrize("shown", SHOWN_OUTPUTS, ids=[f"{s.page}:{s.block}" for s in SHOWN_OUTPUTS])
def test_an_output_block_is_what_its_example_prints(
    pytester: pytest.Pytester, shown: ShownOutput
) -> None:
    page = ROOT / shown.page
    language, index = shown.block.split(":")
    output = fenced(page, language)[int(index)].splitlines()
    arguments: list[str] = []
    if language == "console":
        command, *output = output
        assert command.startswith("$ pytest"), shown
        arguments = shlex.split(command.removeprefix("$ pytest"))
    test_file = pytester.path / shown.path
    test_file.parent.mkdir(parents=True, exist_ok=True)
    test_file.write_text(fenced(page, "python")[shown.program])
    if shown.change:
        assert runpytest_forked(pytester, "--flops-update").ret == pytest.ExitCode.OK
        source = test_file.read_text()
        for old, new in shown.change:
            assert old in source, (shown, old)
            source = source.replace(old, new)
        test_file.write_text(source)
    result = runpytest_forked(pytester, *arguments)
    result.stdout.re_match_lines([rf"{re.escape(line)}\Z" for line in output], consecutive=True)


@pytest.mark.parametrize(("where", "text"), blocks("yaml"), ids=[w for w, _ in blocks("yaml")])
def test_yaml_parses(where: str, text: str) -> None:
    assert isinstance(yaml.safe_load(text), dict), where


@pytest.mark.parametrize(("where", "text"), blocks("toml"), ids=[w for w, _ in blocks("toml")])
def test_toml_parses(where: str, text: str) -> None:
    assert tomllib.loads(text), where


# -- every name is documented -----------------------------------------------------------


def page(name: str) -> str:
    return (ROOT / "docs" / name).read_text()


@functools.cache
def pytest_help() -> str:
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "--help"], capture_output=True, text=True, cwd=ROOT
    )
    return result.stdout


def plugin_options() -> set[str]:
    return set(re.findall(r"^\s+(--flops-[a-z-]+)", pytest_help(), re.M))


def plugin_ini_keys() -> set[str]:
    """The ini keys the plugin registers, as pytest's parser lists them."""
    return set(re.findall(r"^\s+(flops_\w+) \(", pytest_help(), re.M))


@pytest.mark.slow
def test_every_option_and_ini_key_is_in_both_tables() -> None:
    options, ini_keys = plugin_options(), plugin_ini_keys()
    assert len(options) == 11
    assert len(ini_keys) == 5
    for text in (page("configuration.md"), (ROOT / "README.md").read_text()):
        # an option's cell may hold an escaped pipe (`--flops-bytes=on\|off`)
        cells = r"^\| `(--flops-[a-z-]+)(?:\\\||[^|])*\| (?:`(flops_\w+)`)? *\|"
        rows = re.findall(cells, text, re.M)
        assert {option for option, _ in rows} == options
        assert {key for _, key in rows if key} == ini_keys


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


def public_members(cls: type) -> set[str]:
    fields = {field.name for field in dataclasses.fields(cls)}
    return fields | {name for name in vars(cls) if not name.startswith("_")}


def member_table(name: str) -> set[str]:
    """The members that the table of ``name``'s section of the API page names."""
    section = re.search(rf"^## `{name}`\n(.*?)(?=^## )", page("api.md"), re.S | re.M)
    assert section is not None, name
    cells = re.findall(r"^\| (.*?) \|", section[1], re.M)
    return {member for cell in cells for member in re.findall(r"`(\w+)", cell)}


@pytest.mark.parametrize("cls", [Measurement, ModuleFlops, Traffic, World], ids=str)
def test_the_api_page_documents_exactly_the_public_members(cls: type) -> None:
    assert member_table(cls.__name__) == public_members(cls)


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


def subcommands() -> dict[str, argparse.ArgumentParser]:
    (commands,) = (
        action
        for action in command_line_parser()._actions
        if isinstance(action, argparse._SubParsersAction)
    )
    return dict(commands.choices)


@pytest.mark.parametrize("command", sorted(subcommands()))
def test_every_command_and_its_flags_are_documented(command: str) -> None:
    """Each ``python -m pytest_flops`` command is on some page, and every flag of it on
    the pages that show the command."""
    pages = [p.read_text() for p in PAGES if f"python -m pytest_flops {command}" in p.read_text()]
    assert pages, command
    flags = {
        flag
        for action in subcommands()[command]._actions
        for flag in action.option_strings
        if flag.startswith("--") and flag != "--help"
    }
    for flag in flags:
        assert any(re.search(rf"{flag}\b", text) for text in pages), (command, flag)


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
