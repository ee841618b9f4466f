"""The layer rules of docs/architecture.md, checked on the source tree and in a fresh process."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "pytest_flops"
SHARED = (
    "measurement.py",
    "codec.py",
    "roofline.py",
    "portable.py",
    "units.py",
    "validation.py",
    "tables.py",
)


def imported(path: Path) -> set[str]:
    """Every module a source file imports, at any depth (functions' lazy imports too)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            names.add(node.module)
    return names


def layer(name: str) -> list[Path]:
    return sorted((PACKAGE / name).rglob("*.py"))


@pytest.mark.parametrize("path", layer("counting"), ids=lambda p: p.name)
def test_counting_never_imports_pytest(path: Path) -> None:
    assert not {m for m in imported(path) if m.split(".")[0] in {"pytest", "_pytest"}}


@pytest.mark.parametrize(
    "path", layer("snapshots") + layer("reports"), ids=lambda p: f"{p.parent.name}/{p.name}"
)
def test_snapshots_and_reports_import_neither_torch_nor_counting_nor_the_plugin(
    path: Path,
) -> None:
    assert not {
        m
        for m in imported(path)
        if m.split(".")[0] == "torch"
        or m.startswith(("pytest_flops.counting", "pytest_flops.plugin"))
    }


@pytest.mark.parametrize("name", SHARED)
def test_the_shared_top_level_imports_no_sub_package(name: str) -> None:
    assert not {m for m in imported(PACKAGE / name) if m.count(".") >= 2 and "pytest_flops" in m}


def test_the_plugin_imports_no_torch_when_pytest_loads_it() -> None:
    modules = [
        f"pytest_flops.plugin.{p.stem}"
        for p in layer("plugin")
        # imported only when a user names them: they measure, so they bring torch
        if p.stem not in {"__init__", "testcase", "syrupy_extension"}
    ]
    program = "; ".join(
        [
            *(f"import {m}" for m in modules),
            "import sys",
            "loaded = [m for m in sys.modules if m.startswith(('torch', 'pytest_flops.counting'))]",
            "print(sorted(loaded))",
        ]
    )
    result = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
    # the check itself would see a module that imported torch
    assert "pytest_flops.plugin.hooks" in modules


# -- sizes: one job per module, class and function -----------------------------------

MAX_MODULE_LINES = 400
MAX_CLASS_LINES = 200
MAX_FUNCTION_LINES = 60
MAX_TOP_LEVEL_MODULES = 10
# tables, not logic: one small function per op family
EXEMPT = PACKAGE / "counting" / "formulas"


def oversized(path: Path, *, root: Path = PACKAGE) -> list[str]:
    """``kind path[:name]`` for each size limit that the module at ``path`` breaks."""
    shown = path.relative_to(root).as_posix()
    source = path.read_text(encoding="utf-8")
    found = [f"module {shown}"] if source.count("\n") > MAX_MODULE_LINES else []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            lines = (node.end_lineno or node.lineno) - node.lineno + 1
            if isinstance(node, ast.ClassDef) and lines > MAX_CLASS_LINES:
                found.append(f"class {shown}:{node.name}")
            elif not isinstance(node, ast.ClassDef) and lines > MAX_FUNCTION_LINES:
                found.append(f"function {shown}:{node.name}")
    return found


def test_no_module_class_or_function_outgrows_one_job() -> None:
    found = [
        entry
        for path in sorted(PACKAGE.rglob("*.py"))
        if EXEMPT not in path.parents
        for entry in oversized(path)
    ]
    assert found == []
    assert len(list(PACKAGE.glob("*.py"))) <= MAX_TOP_LEVEL_MODULES


def source_of(*, function_lines: int, class_lines: int, module_lines: int) -> str:
    """A module of exactly those sizes: a class whose last method is the function."""
    function = ["    def run(self):", *["        pass"] * (function_lines - 1)]
    members = ["    x = 0"] * (class_lines - 1 - len(function))
    module = ["class Big:", *members, *function]
    return "\n".join(module + ["y = 0"] * (module_lines - len(module))) + "\n"


@pytest.mark.parametrize(
    ("sizes", "expected"),
    [
        ((60, 200, 400), []),
        ((61, 200, 400), ["function probe.py:run"]),
        ((60, 201, 400), ["class probe.py:Big"]),
        ((60, 200, 401), ["module probe.py"]),
    ],
)
def test_the_size_check_finds_each_limit_broken_by_one_line(
    tmp_path: Path, sizes: tuple[int, int, int], expected: list[str]
) -> None:
    function_lines, class_lines, module_lines = sizes
    probe = tmp_path / "probe.py"
    probe.write_text(
        source_of(function_lines=function_lines, class_lines=class_lines, module_lines=module_lines)
    )
    assert oversized(probe, root=tmp_path) == expected
