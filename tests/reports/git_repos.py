"""Real git repositories for the ``diff`` and ``history`` tests: commits, snapshots, the CLI.

Snapshots come from real pytest-flops sessions (:data:`tests.helpers.CHANGING_SUITE`, run with
``--flops-update``) or from the examples suite's committed files. Each commit
gets a fixed date, so a history prints the same dates on every run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from pytest_flops import FlopCounterMode
from pytest_flops.measurement import GLOBAL, Measurement, ModuleFlops
from pytest_flops.snapshots.format import FlopsSnapshot
from tests.forked_pytest import pytest_process

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "__flops__"

# test_known, a (4, 9) batch: Linear(9, 10) forward 2*4*9*10 = 720 and its weight
# gradient 720 (the input needs none); Linear(10, 3) forward 240, backward 240 for the
# input gradient + 240 for the weight: 2,160, forward 960, backward 1,200.
# test_changed before: fc = Linear(9, 10) 720 + 720, old = Linear(10, 2) 2*4*10*2 = 160
# forward, 320 backward: 1,920 (forward 880, backward 1,040). After: fc = Linear(9, 11)
# 792 + 792, new = Linear(11, 2) 176 + 352: 2,112 (forward 968, backward 1,144).


@dataclass(frozen=True)
class Repo:
    root: Path

    def git(self, *arguments: str) -> str:
        return subprocess.run(
            ["git", *arguments], cwd=self.root, capture_output=True, text=True, check=True
        ).stdout

    def commit(self, message: str, *, day: int) -> str:
        """Commit everything in the working tree on 2026-11-``day``; the commit's hash."""
        self.git("add", "-A")
        date = f"2026-11-{day:02d}T12:00:00+00:00"
        subprocess.run(
            ["git", "commit", "-q", "--allow-empty", "-m", message],
            cwd=self.root,
            check=True,
            env={**os.environ, "GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date},
        )
        return self.git("rev-parse", "HEAD").strip()

    def short(self, ref: str = "HEAD") -> str:
        return self.git("rev-parse", "--short=7", ref).strip()

    def write(self, path: str, text: str) -> Path:
        target = self.root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        return target

    def copy_example(self, example: str, to: str) -> Path:
        """``examples/__flops__/<example>`` (a file or a folder) copied to ``to``."""
        source, target = EXAMPLES / example, self.root / to
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target)
        else:
            shutil.copyfile(source, target)
        return target

    def pytest(self, *arguments: str, changed: bool) -> subprocess.CompletedProcess[str]:
        """A real pytest-flops session in the repository (CHANGED widens test_changed's model)."""
        env = {**os.environ, "PYTEST_ADDOPTS": "-p no:randomly -p no:cacheprovider"}
        env["CHANGED"] = "1" if changed else ""
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        return pytest_process(arguments, cwd=self.root, env=env)


def make_repo(root: Path) -> Repo:
    root.mkdir(parents=True, exist_ok=True)
    repo = Repo(root)
    repo.git("init", "-q", "-b", "main")
    repo.git("config", "user.name", "Ada Reviewer")
    repo.git("config", "user.email", "ada@example.com")
    repo.git("config", "commit.gpgsign", "false")
    return repo


def flops_cli(cwd: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    """``python -m pytest_flops ARGUMENTS`` in ``cwd``, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "pytest_flops", *arguments],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        # no git repository above a temporary directory may answer for it
        env={**os.environ, "GIT_CEILING_DIRECTORIES": tempfile.gettempdir()},
    )


def linear_measurement(leaves: Mapping[str, tuple[int, int]]) -> Measurement:
    """Leaf module rows of (forward, backward) FLOPs, as Linear layers count them (forward
    ``aten.addmm``, backward ``aten.mm``); every row above a leaf, and Global, their sums."""
    sums: dict[str, tuple[int, int]] = {}
    for path, (forward, backward) in leaves.items():
        parts = path.split(".")
        for row in [GLOBAL, *(".".join(parts[: i + 1]) for i in range(len(parts)))]:
            old = sums.get(row, (0, 0))
            sums[row] = (old[0] + forward, old[1] + backward)
    return Measurement(
        modules={
            row: ModuleFlops(
                forward=forward,
                backward=backward,
                by_op={op: n for op, n in (("aten.addmm", forward), ("aten.mm", backward)) if n},
            )
            for row, (forward, backward) in sums.items()
        }
    )


def snapshot_text(test: str, **measurements: Mapping[str, tuple[int, int]]) -> str:
    """A snapshot file of ``test`` in the current format, one measurement per keyword."""
    return FlopsSnapshot(
        test=test,
        depth=3,
        measurements={name: linear_measurement(leaves) for name, leaves in measurements.items()},
    ).to_text()


# test_step of a Net with Linear rows a (100 forward, 200 backward) and b (50, 100), as
# pytest-flops 0.1 stored it: format version 1
FORMAT_1 = {
    "version": 1,
    "test": "TestNet::test_step",
    "depth": 3,
    "measurements": {
        "default": {
            "total": 450,
            "forward": 150,
            "backward": 300,
            "modules": {
                "Global": {
                    "forward": 150,
                    "backward": 300,
                    "by_op": {"aten.addmm": 150, "aten.mm": 300},
                },
                "Net": {
                    "forward": 150,
                    "backward": 300,
                    "by_op": {"aten.addmm": 150, "aten.mm": 300},
                },
                "Net.a": {
                    "forward": 100,
                    "backward": 200,
                    "by_op": {"aten.addmm": 100, "aten.mm": 200},
                },
                "Net.b": {
                    "forward": 50,
                    "backward": 100,
                    "by_op": {"aten.addmm": 50, "aten.mm": 100},
                },
            },
            "unsupported": {},
        }
    },
}


class _CopyingLinear(torch.nn.Module):
    def __init__(self, *, copied_input: bool) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(4, 3)
        self.copied_input = copied_input

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # a copy into the transposed layout: no FLOPs, the same addmm, more bytes
        return self.fc(x.t().contiguous().t() if self.copied_input else x)


def counted_linear(*, copied_input: bool = False) -> Measurement:
    """A ``Linear(4, 3)`` on a (2, 4) input, counted: 48 FLOP of ``addmm`` (at the precision
    the settings give), 116 B accessed, and 64 B more with ``copied_input``."""
    model, x = _CopyingLinear(copied_input=copied_input), torch.ones(2, 4)
    with FlopCounterMode(display=False, models=model) as mode:
        model(x)
    return mode.to_measurement()
