"""What the command line selects: test names, and what narrows a run.

A test's name inside its file folds the copies that plugins make of one test
(pytest-repeat's ``[2-3]``, pytest-flakefinder's ``[0]``): copies of one test
are the same test, with one snapshot. The rest tells the stale-snapshot
judgement (:mod:`pytest_flops.snapshots.stale`) what this run could see.
"""

from __future__ import annotations

import functools
import inspect
import os
import re
import unittest
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_flops.snapshots.run_record import CollectionRules, RunRecord

__all__ = [
    "collection_rules",
    "files_named_with_tests",
    "is_unittest",
    "name_in_file",
    "narrowing_options",
    "respelled",
    "roots",
    "run_record",
    "skipped_test_class",
    "uncollectable",
    "uncollectable_function",
]

# pytest-repeat runs a test N times as parametrized copies, "test_a[2-3]", and
# pytest-flakefinder as "test_a[0]".
_REPEAT_PARAM = "__pytest_repeat_step_number"
_FLAKEFINDER_PARAM = "__flakefinder_"  # + the function's name


_NO_ID_ESCAPING = "disable_test_id_escaping_and_forfeit_all_rights_to_community_support"


def name_in_file(item: pytest.Item) -> str:
    """The test's name inside its file, as pytest spells it by default (see
    :func:`respelled`), without pytest-repeat's ``N-M`` id or pytest-flakefinder's
    run number."""
    name = _name_as_collected(item)
    head, bracket, params = name.partition("[")
    if bracket and item.config.getini(_NO_ID_ESCAPING):
        escaped = params.removesuffix("]").encode("unicode_escape").decode("ascii")
        return f"{head}[{escaped}]"
    return name


def respelled(item: pytest.Item, name: str) -> bool:
    """Whether ``name``, the test's :func:`name_in_file`, escaped its id as pytest does
    by default (``[é]`` as ``[\\xe9]``), which the ini option
    ``disable_test_id_escaping_...`` turns off. For an id pytest never escapes (an
    enum's, a class's name) the escaped name is not the default one: such a run proves
    no snapshot stale."""
    return bool(item.config.getini(_NO_ID_ESCAPING)) and name != _name_as_collected(item)


def _name_as_collected(item: pytest.Item) -> str:
    name = item.nodeid.split("::", 1)[1] if "::" in item.nodeid else item.nodeid
    callspec = getattr(item, "callspec", None)
    if callspec is None:
        return name
    if _REPEAT_PARAM in callspec.params:
        step = callspec.params[_REPEAT_PARAM] + 1
        name = re.sub(rf"(\[|-){step}-\d+\]$", lambda m: "]" if m[1] == "-" else "", name)
    run = next((key for key in callspec.params if key.startswith(_FLAKEFINDER_PARAM)), None)
    if run is not None:
        # flakefinder parametrizes first: its run number leads the id
        number = callspec.params[run]
        name = re.sub(
            rf"\[{number}(?:-|\]$)", lambda m: "[" if m[0].endswith("-") else "", name, count=1
        )
    return name


def is_unittest(item: pytest.Item) -> bool:
    """Whether the test is a ``unittest.TestCase`` method (collected whatever its class's name)."""
    test_class = getattr(item, "cls", None)
    return isinstance(test_class, type) and issubclass(test_class, unittest.TestCase)


def uncollectable(cls: object) -> bool:
    """Whether pytest gives up on a test class, as it does on one with ``__init__``."""
    if not isinstance(cls, type) or not getattr(cls, "__test__", True):
        return False
    return getattr(cls, "__init__") is not object.__init__ or (  # noqa: B009 (mypy)
        getattr(cls, "__new__") is not object.__new__  # noqa: B009
    )


def skipped_test_class(collector: pytest.Collector, name: str, obj: object) -> str | None:
    """The name (``Outer::Inner``) of a test class that pytest passes over without a
    warning: one that says ``__test__ = False`` (itself or by inheritance), or an
    abstract one."""
    if not isinstance(obj, type) or not isinstance(collector, (pytest.Module, pytest.Class)):
        return None
    if not (collector.classnamefilter(name) or issubclass(obj, unittest.TestCase)):
        return None
    if getattr(obj, "__test__", True) and not inspect.isabstract(obj):
        return None
    if isinstance(collector, pytest.Class):
        return f"{collector.nodeid.split('::', 1)[1]}::{name}"
    return name


def uncollectable_function(collector: pytest.Collector, name: str, obj: object) -> bool:
    """Whether ``obj`` is named as a test function that pytest gives up on: it is not a
    function (a decorator returned another callable), or it says ``__test__ = False``."""
    if isinstance(obj, type) or not isinstance(collector, (pytest.Module, pytest.Class)):
        return False
    if not collector.istestfunction(obj, name):
        return False
    function = getattr(obj, "__func__", obj)
    return not (_is_function(function) and getattr(function, "__test__", True))


def _is_function(obj: object) -> bool:
    """A function, or a wrapper of one (``functools.wraps``, ``partial``), as pytest unwraps."""
    try:
        real = inspect.unwrap(obj)  # type: ignore[arg-type]
    except ValueError:  # a cycle of __wrapped__
        real = obj
    if isinstance(real, functools.partial):
        real = real.func
    return inspect.isfunction(obj) or inspect.isfunction(real)


def run_record(config: pytest.Config) -> RunRecord:
    """The run record as the command line starts it, before anything is collected."""
    run = RunRecord(roots=roots(config), rules=collection_rules(config))
    for test_file in files_named_with_tests(config):
        # ``file.py::test``: the file's other tests are not collected
        run.file(test_file).complete = False
    for reason in narrowing_options(config):
        run.narrow(reason)
    return run


def collection_rules(config: pytest.Config) -> CollectionRules:
    return CollectionRules(
        python_functions=tuple(config.getini("python_functions")),
        python_classes=tuple(config.getini("python_classes")),
        doctest_modules=bool(config.getoption("doctestmodules", False)),
    )


def narrowing_options(config: pytest.Config) -> list[str]:
    """Command-line choices that leave some tests out of the run."""
    option = config.option
    reasons = [
        flag
        for flag, given in (
            ("-k", getattr(option, "keyword", "")),
            ("-m", getattr(option, "markexpr", "")),
            ("--deselect", getattr(option, "deselect", None)),
            ("--lf", getattr(option, "lf", False)),
            ("--sw", getattr(option, "stepwise", False) or getattr(option, "stepwise_skip", False)),
            ("--collect-only", getattr(option, "collectonly", False)),
        )
        if given
    ]
    if any("::" in arg for arg in config.args):
        reasons.append("tests named on the command line")
    if config.getoption("noconftest", False):
        reasons.append("--noconftest")
    cut = _conftest_cut_off(config)
    if cut is not None:
        reasons.append(f"{os.path.relpath(cut, config.rootpath)} above the confcutdir")
    return reasons


def _conftest_cut_off(config: pytest.Config) -> Path | None:
    """A project's ``conftest.py`` that this run does not load, as it lies above the
    confcutdir (``--confcutdir``, or the ini file's folder under ``-c``): what it
    parametrizes or deselects is not collected. pytest skips a folder's conftest when
    the folder is an ancestor of the confcutdir; above the root directory and the
    invocation directory, that is no project's and every run's."""
    given = config.getoption("confcutdir", None)
    if given is not None:
        cut = Path(os.path.abspath(config.invocation_params.dir / given))
    else:
        cut = config.inipath.parent if config.inipath is not None else config.rootpath
    project = (config.rootpath, config.invocation_params.dir)
    targets = [
        Path(os.path.abspath(config.invocation_params.dir / arg.split("::", 1)[0]))
        for arg in config.args
    ]
    for folder in cut.parents:
        if not any(top == folder or top in folder.parents for top in project):
            continue
        related = any(
            folder == target or folder in target.parents or target in folder.parents
            for target in targets
        )
        if related and (folder / "conftest.py").is_file():
            return folder / "conftest.py"
    return None


def files_named_with_tests(config: pytest.Config) -> Iterator[Path]:
    for arg in config.args:
        if "::" in arg:
            yield Path(os.path.abspath(config.invocation_params.dir / arg.split("::", 1)[0]))


def roots(config: pytest.Config) -> tuple[Path, ...]:
    """The directories the command line (or ``testpaths``) names whole."""
    roots = []
    for arg in config.args:
        if "::" in arg:
            continue
        path = Path(os.path.abspath(config.invocation_params.dir / arg))
        if path.is_dir():
            roots.append(path)
    return tuple(roots)
