"""Real pytest processes for the suite, forked from one that has imported torch.

Most of the suite's end-to-end tests start ``python -m pytest`` in a directory
of their own: hooks and global state must start fresh. Each such process used
to spend about two of its three seconds importing torch. Here they are forked
from server processes (:mod:`tests.pytest_forkserver`, two per test process)
that imported torch and pytest once; each child is a process of its own that
sets up its directory, environment, ``sys.path`` and ``sys.argv`` as the
interpreter would and runs pytest's own entry point. Plugins, conftests and
test files are imported afresh in each, with pytest's assertion rewriting.
The server itself starts without ``PYTHONPATH`` (each child applies its own),
so torch and pytest are the ones the interpreter finds without it.

What a fork cannot be is a process whose interpreter or torch started
differently: a request whose start-up variables (``PYTHON*`` other than
``PYTHONPATH`` and ``PYTHONDONTWRITEBYTECODE``, which are applied; OpenMP's,
MKL's, torch's, CUDA's, the locale's, ``TZ``) differ from the server's runs as
a plain subprocess. And what the server imported is there in every child:

* torch, even in a session that would import none. Tests of what a session
  imports, or of a session without torch, start their own interpreters
  (``test_startup``, ``test_layers``, a merge of a shard that imports no torch);
* those modules' names, which a test directory's own file cannot shadow;
* its string-hash seed: a set of strings iterates in one order in every child
  of one server. Two servers take turns, so two runs in a row differ, as two
  fresh processes do (torch's and ``random``'s seeds are drawn per child).

The server starts in an empty directory, so nothing of the suite's own is
imported with torch.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import json
import os
import random
import select
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

__all__ = ["pytest_process", "runpytest_forked"]

SERVER = Path(__file__).with_name("pytest_forkserver.py")
# read when the interpreter or torch starts; the first two the server applies per child
APPLIED = frozenset({"PYTHONPATH", "PYTHONDONTWRITEBYTECODE"})
STARTUP_PREFIXES = ("PYTHON", "OMP_", "KMP_", "MKL_", "TORCH", "PYTORCH_", "CUDA_", "LC_")
STARTUP_NAMES = frozenset({"LANG", "LANGUAGE", "TZ"})
# the server's environment: this process's own, whatever a test has monkeypatched since
STARTED_WITH = dict(os.environ)


def _startup_variables(env: Mapping[str, str]) -> dict[str, str]:
    return {
        name: value
        for name, value in env.items()
        if (name.startswith(STARTUP_PREFIXES) or name in STARTUP_NAMES) and name not in APPLIED
    }


def _forkable(env: Mapping[str, str]) -> bool:
    """Whether a server's child can be what a fresh interpreter with ``env`` would be."""
    return _startup_variables(env) == _startup_variables(STARTED_WITH)


class _ForkServer:
    def __init__(self) -> None:
        server_env = {k: v for k, v in STARTED_WITH.items() if k != "PYTHONPATH"}
        # a string-hash seed of its own, as a fresh process draws (when none is set)
        server_env.setdefault("PYTHONHASHSEED", str(random.randrange(1, 2**32)))
        self.directory = tempfile.TemporaryDirectory(prefix="pytest-forkserver-")
        self.process = subprocess.Popen(
            [sys.executable, "-c", SERVER.read_text()],
            cwd=self.directory.name,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,  # its own errors only: a child writes to its files
            env=server_env,
        )

    def _read(self, timeout: float | None) -> dict[str, Any] | None:
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        if not ready:
            return None
        line = self.process.stdout.readline()
        if not line:
            assert self.process.stderr is not None
            raise RuntimeError(
                f"the pytest fork server died:\n{self.process.stderr.read().decode()}"
            )
        answer: dict[str, Any] = json.loads(line)
        return answer

    def run(
        self, command: list[str], cwd: Path, env: Mapping[str, str], timeout: float | None
    ) -> subprocess.CompletedProcess[str]:
        """``command``, ``python -m pytest ARGS``, in a child."""
        assert self.process.stdin is not None
        with tempfile.TemporaryDirectory() as outputs:
            out, err = Path(outputs, "stdout"), Path(outputs, "stderr")
            request = {"args": command[3:], "cwd": str(cwd), "env": dict(env)}
            request |= {"stdout": str(out), "stderr": str(err)}
            self.process.stdin.write((json.dumps(request) + "\n").encode())
            self.process.stdin.flush()
            started = self._read(None)
            assert started is not None
            finished = None
            try:
                finished = self._read(timeout)
            finally:
                if finished is None:  # past its time, or this process interrupted
                    with contextlib.suppress(ProcessLookupError):  # it has just ended
                        os.kill(started["pid"], signal.SIGKILL)
                    self._read(None)
            if finished is None:
                raise subprocess.TimeoutExpired(
                    command,
                    timeout or 0,
                    output=out.read_text(errors="replace"),
                    stderr=err.read_text(errors="replace"),
                )
            return subprocess.CompletedProcess(
                command,
                finished["exit"],
                out.read_text(errors="replace"),
                err.read_text(errors="replace"),
            )

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.wait()
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()
        self.directory.cleanup()


# Two servers take turns, so that two runs in a row differ in their string-hash
# seed as two fresh processes do (a set's order, say).
_servers: list[_ForkServer | None] = [None, None]
_turns = itertools.cycle(range(len(_servers)))


def _fork_server() -> _ForkServer:
    turn = next(_turns)
    server = _servers[turn]
    if server is None or server.process.poll() is not None:  # not yet, or died
        server = _servers[turn] = _ForkServer()
        atexit.register(server.close)
    return server


def pytest_process(
    args: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str] | None = None,
    timeout: float | None = 300,
) -> subprocess.CompletedProcess[str]:
    """What ``subprocess.run([sys.executable, "-m", "pytest", *args], cwd=cwd, env=env,
    capture_output=True, text=True, timeout=timeout)`` returns, forked when it can be."""
    env = os.environ if env is None else env
    if not Path(cwd).is_dir():
        raise FileNotFoundError(f"no directory to run pytest in: {cwd}")
    command = [sys.executable, "-m", "pytest", *args]
    if not _forkable(env):
        return subprocess.run(
            command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
        )
    return _fork_server().run(command, cwd, env, timeout)


def runpytest_forked(
    pytester: pytest.Pytester, *args: str | os.PathLike[str], timeout: float | None = None
) -> pytest.RunResult:
    """``pytester.runpytest_subprocess(*args)``, forked: the same ``--basetemp``, ``-p``
    plugins, environment (``PYTHONPATH`` with the test's directory first) and result."""
    basetemp = tempfile.mkdtemp(prefix="runpytest-", dir=pytester.path)
    options = [f"--basetemp={basetemp}", *map(str, args)]
    for plugin in pytester.plugins:
        if not isinstance(plugin, str):
            raise ValueError(f"a forked pytest takes plugins by name, not {plugin!r}")
        options = ["-p", plugin, *options]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [os.getcwd(), env.get("PYTHONPATH", "")]))
    start = time.monotonic()
    try:
        done = pytest_process(options, cwd=Path.cwd(), env=env, timeout=timeout)
    except subprocess.TimeoutExpired as expired:
        raise pytester.TimeoutExpired(f"{expired.cmd} timed out after {timeout} s") from expired
    print(done.stdout, end="")
    print(done.stderr, end="", file=sys.stderr)
    return pytest.RunResult(
        done.returncode,
        done.stdout.splitlines(),
        done.stderr.splitlines(),
        time.monotonic() - start,
    )
