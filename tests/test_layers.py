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
