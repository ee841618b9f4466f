"""The repository the ``diff`` and ``history`` tests share: snapshots of real sessions."""

from __future__ import annotations

import pytest

from tests.helpers import CHANGING_SUITE
from tests.reports.git_repos import Repo, make_repo


@pytest.fixture(scope="session")
def sessions_repo(tmp_path_factory: pytest.TempPathFactory) -> Repo:
    """Three commits: the tests and their snapshots (written by ``--flops-update``) on
    2026-11-01; test_changed's model widened and reblessed on 11-02; ``tests/`` renamed
    to ``suite/`` with ``git mv`` on 11-03. Read it, never change it (copy it first)."""
    repo = make_repo(tmp_path_factory.mktemp("sessions") / "repo")
    repo.write("tests/test_m.py", CHANGING_SUITE)
    written = repo.pytest("--flops-update", changed=False)
    assert written.returncode == 0, written.stdout
    repo.commit("add the tests", day=1)
    reblessed = repo.pytest("--flops-update", changed=True)
    assert reblessed.returncode == 0, reblessed.stdout
    repo.commit("widen fc", day=2)
    repo.git("mv", "tests", "suite")
    repo.commit("move the tests to suite/", day=3)
    return repo
