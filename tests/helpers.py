"""What tests that run real pytest sessions share: set-ups and reading stored snapshots.

Snapshots live in ``__flops__/<test file name>/``; these helpers read them
the way a user would look at them, as bytes or as parsed JSON.
"""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import torch

__all__ = [
    "BEFORE_PYTEST_9",
    "CHANGING_SUITE",
    "FP32_PRECISION_SETTINGS",
    "NET",
    "OUTER",
    "Net",
    "flops_line",
    "precisions_restored",
    "recorded",
    "snapshot_bytes",
    "snapshot_tree",
    "stored",
    "stored_totals",
]

BEFORE_PYTEST_9 = pytest.version_tuple < (9,)
"""pytest 9 brought the ``subtests`` fixture and ``[tool.pytest]`` with native TOML types."""


# every TF32 setting, the generic one first (precisions_restored restores them);
# torch sets the sub-settings up at import
FP32_PRECISION_SETTINGS: tuple[Any, ...] = (
    torch.backends,
    torch.backends.cuda.matmul,
    torch.backends.cudnn,
    *(getattr(torch.backends.cudnn, kind) for kind in ("conv", "rnn")),
    torch.backends.mkldnn,
    *(getattr(torch.backends.mkldnn, kind) for kind in ("matmul", "conv", "rnn")),
)


@contextmanager
def precisions_restored() -> Iterator[None]:
    """Every precision setting as it was, whatever the block sets: they are the process's.

    The older setters (``allow_tf32``, ``set_float32_matmul_precision``) keep state of
    their own beside ``fp32_precision``: restored first, through torch's own setters
    (the public getters refuse a mixed state), then the new settings over them. Left
    mixed, later tests in the process broke: the cuDNN ``allow_tf32`` getter raised, and
    a CPU LSTM ran without oneDNN.
    """
    matmul, cudnn = torch._C._get_float32_matmul_precision(), torch._C._get_cudnn_allow_tf32()
    before = [setting.fp32_precision for setting in FP32_PRECISION_SETTINGS]
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(matmul)
        torch._C._set_cudnn_allow_tf32(cudnn)
        for setting, precision in zip(FP32_PRECISION_SETTINGS, before, strict=True):
            setting.fp32_precision = precision


class Net(torch.nn.Module):
    """A model whose train step on a (4, 9) batch counts 2*4*9*out forward and as much for the
    weight gradient (its input needs no grad): 1,440 FLOP with ``out=10``."""

    def __init__(self, out: int = 10) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(9, out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)


NET = "import pytest\nimport torch\n\n\n" + inspect.getsource(Net)
""":class:`Net`'s source, for the test files of real pytest sessions."""

OUTER = """
class Outer(torch.nn.Module):
    def __init__(self, out):
        super().__init__()
        self.net = Net(out)

    def forward(self, x):
        return self.net(x)
"""
"""``Net`` one level down (``Outer.net.fc``), for tests of the module depth; after ``NET``."""


def snapshot_dir(root: Path, test_file: str) -> Path:
    return root / "__flops__" / test_file


def snapshot_bytes(pytester: pytest.Pytester, test_file: str = "test_m.py") -> dict[str, bytes]:
    """``{file name: bytes}`` of the snapshots stored for one test file."""
    folder = snapshot_dir(pytester.path, test_file)
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())} if folder.is_dir() else {}


def recorded(
    pytester: pytest.Pytester, source: str, *, passed: int, test_file: str = "test_m.py"
) -> dict[str, bytes]:
    """Write ``source`` as ``test_file``, record its snapshots with ``--flops-update``
    (``passed`` tests pass, nothing else happens) and return them as :func:`snapshot_bytes`."""
    pytester.makepyfile(**{test_file.removesuffix(".py"): source})
    pytester.runpytest("--flops-update").assert_outcomes(passed=passed)
    return snapshot_bytes(pytester, test_file)


def snapshot_tree(root: Path) -> dict[str, bytes]:
    """Every file under every ``__flops__/`` below ``root``, by relative path."""
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in sorted(root.rglob("__flops__/**/*"))
        if path.is_file()
    }


def stored(pytester: pytest.Pytester, test_file: str = "test_m.py") -> dict[str, dict[str, Any]]:
    """``{test name: snapshot document}`` for one test file, keyed by the name stored inside."""
    folder = snapshot_dir(pytester.path, test_file)
    documents = [
        json.loads(path.read_text())
        for path in sorted(folder.glob("*.flops.json"))
        if path.is_file()
    ]
    return {document["test"]: document for document in documents}


def stored_totals(pytester: pytest.Pytester, test_file: str = "test_m.py") -> dict[str, int]:
    """``{test name: total of its default measurement}``."""
    return {
        test: document["measurements"]["default"]["total"]
        for test, document in stored(pytester, test_file).items()
    }


def flops_line(result: pytest.RunResult) -> str:
    """The ``flops: ...`` summary line of a run (its first line, when there are more)."""
    lines = [line for line in result.outlines if re.match(r"flops: \d+ tests? passed", line)]
    assert len(lines) == 1, result.outlines
    return lines[0]


# Two tests: test_known never changes; test_changed widens its first layer and
# swaps a head when CHANGED is set in the environment.
CHANGING_SUITE = """
import os

import torch


def test_known(flops):
    model = torch.nn.Sequential(torch.nn.Linear(9, 10), torch.nn.ReLU(), torch.nn.Linear(10, 3))
    with flops(model):
        model(torch.randn(4, 9)).sum().backward()


class Net(torch.nn.Module):
    def __init__(self, changed):
        super().__init__()
        self.fc = torch.nn.Linear(9, 11 if changed else 10)
        if changed:
            self.new = torch.nn.Linear(11, 2)
        else:
            self.old = torch.nn.Linear(10, 2)

    def forward(self, x):
        x = self.fc(x)
        return self.new(x) if hasattr(self, "new") else self.old(x)


def test_changed(flops):
    model = Net(changed=bool(os.environ.get("CHANGED")))
    with flops(model):
        model(torch.randn(4, 9)).sum().backward()
"""
