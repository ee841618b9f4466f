"""The fork server behind :mod:`tests.forked_pytest`, run as ``python -c``.

It imports torch and pytest once, then reads one request per line (JSON: the
arguments, the directory, the environment and two output files) and answers
with two lines: the child's pid when it starts, and its exit code. The child
becomes what ``python -m pytest ARGS`` started in that directory with that
environment would be, as far as pytest and torch can tell, and exits through
the interpreter's own shutdown (threads joined, ``atexit`` run, streams
flushed).

Nothing here may import a pytest plugin: pytest rewrites a plugin's asserts as
it imports it, which an imported module escapes.
"""

import gc
import json
import os
import random
import runpy
import sys
import warnings
from typing import Any, NoReturn

# A fresh process imports torch inside pytest's catch_warnings (collecting, or
# loading conftests), which drops the filters torch and numpy add as they load.
with warnings.catch_warnings():
    import pytest  # noqa: F401
    import torch  # the import that every pytest process of the suite repeats

# -c puts "" first; the server starts without PYTHONPATH, which each child applies
_SITE_PATH = sys.path[1:]


def _answer(message: dict[str, Any]) -> None:
    # os.write, not sys.stdout: a child would inherit whatever that buffered
    os.write(1, (json.dumps(message) + "\n").encode())


def _become_pytest(request: dict[str, Any]) -> NoReturn:
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    for fd, path in ((1, request["stdout"]), (2, request["stderr"])):
        os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), fd)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    # what the interpreter does with these at start-up, which has passed
    pythonpath = request["env"].get("PYTHONPATH", "")
    entries = (
        [os.path.abspath(entry) for entry in pythonpath.split(os.pathsep)] if pythonpath else []
    )
    # site drops repeats; -m then puts the directory first, repeated or not
    sys.path[:] = [os.getcwd(), *dict.fromkeys([*entries, *_SITE_PATH])]
    sys.dont_write_bytecode = bool(request["env"].get("PYTHONDONTWRITEBYTECODE"))
    sys.argv = ["-m", *request["args"]]  # run_module puts the module's file first
    random.seed()  # a fresh process's, not the server's copied state
    torch.seed()
    runpy.run_module("pytest", run_name="__main__", alter_sys=True)  # what -m runs
    raise SystemExit(0)


def serve() -> None:
    # what the imports made lives as long as a child: pytest's gc.collect() calls at
    # its end need not walk it (hundreds of ms with torch's objects)
    gc.freeze()
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            _become_pytest(request)  # raises SystemExit, out of this loop, in the child
        _answer({"pid": pid})
        _, status = os.waitpid(pid, 0)
        _answer({"exit": os.waitstatus_to_exitcode(status)})


if __name__ == "__main__":  # as python -c runs it; an import serves nothing
    serve()
