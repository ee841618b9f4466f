"""Make ``docs/images/history.png``: the ``history --html`` page of TinyGPT over four commits.

Makes a git repository in a temporary directory from ``examples/`` and its
committed snapshots, then commits three changes, each reblessed with
``--flops-update``: TinyGPT's MLP widened from 4x to 6x, a third block, the MLP
back to 4x. Runs ``python -m pytest_flops history --html`` on it and
photographs the page of ``test_tiny_gpt`` in headless Chromium with the point of
the widened MLP focused.

    python docs/history_screenshot.py [OUTPUT.png]

Needs git, Debian's ``chromium`` and ``chromium-driver`` and selenium (the ``test`` extra).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUTPUT = ROOT / "docs" / "images" / "history.png"
MLP_4X = "nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim)"
MLP_6X = "nn.Linear(dim, 6 * dim), nn.GELU(), nn.Linear(6 * dim, dim)"
TWO_BLOCKS = "num_heads=2, num_layers=2"
THREE_BLOCKS = "num_heads=2, num_layers=3"


def git(repo: Path, *arguments: str) -> None:
    subprocess.run(["git", *arguments], cwd=repo, check=True, capture_output=True)


def commit(repo: Path, message: str, day: int) -> None:
    git(repo, "add", "-A")
    date = f"2026-11-{day:02d}T12:00:00+00:00"
    subprocess.run(
        ["git", "commit", "-q", "-m", message], cwd=repo, check=True,
        env={**os.environ, "GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date},
    )  # fmt: skip


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{path.name} changed: update this script"
    path.write_text(text.replace(old, new))


def rebless(repo: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pytest", "examples/test_language_models.py::test_tiny_gpt",
         "-p", "no:randomly", "-p", "no:cacheprovider", "-q", "--flops-update"],
        cwd=repo, env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}, check=True,
        capture_output=True,
    )  # fmt: skip


def history_page(repo: Path) -> Path:
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.name", "Ada")
    git(repo, "config", "user.email", "ada@example.com")
    examples = repo / "examples"
    examples.mkdir()
    for name in ("__init__.py", "conftest.py", "models.py", "test_language_models.py"):
        shutil.copyfile(ROOT / "examples" / name, examples / name)
    shutil.copytree(
        ROOT / "examples" / "__flops__" / "test_language_models.py",
        examples / "__flops__" / "test_language_models.py",
    )
    commit(repo, "TinyGPT and an LSTM language model", day=2)
    edit(examples / "models.py", MLP_4X, MLP_6X)
    rebless(repo)
    commit(repo, "Widen TinyGPT's MLP to 6x", day=9)
    edit(examples / "test_language_models.py", TWO_BLOCKS, THREE_BLOCKS)
    rebless(repo)
    commit(repo, "A third block", day=16)
    edit(examples / "models.py", MLP_6X, MLP_4X)
    rebless(repo)
    commit(repo, "Back to a 4x MLP", day=23)
    page = repo / "history.html"
    subprocess.run(
        [sys.executable, "-m", "pytest_flops", "history", "--html", str(page),
         "examples/__flops__/test_language_models.py/test_tiny_gpt.flops.json"],
        cwd=repo, check=True, capture_output=True,
    )  # fmt: skip
    return page


def photograph(page: Path, output: Path) -> None:
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "chromium"
    for argument in ("--headless=new", "--no-sandbox", "--window-size=1000,900",
                     "--hide-scrollbars", "--force-device-scale-factor=1"):  # fmt: skip
        options.add_argument(argument)
    browser = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    try:
        browser.get(page.as_uri())
        # the training step's chart comes first; its second point is the widened MLP
        widened = browser.find_elements("css selector", "#series-0 circle.point.backward")[1]
        browser.execute_script("arguments[0].focus()", widened)
        browser.execute_script("window.scrollTo(0, 0)")
        output.parent.mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(output))
    finally:
        browser.quit()


def main() -> None:
    output = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_OUTPUT
    with tempfile.TemporaryDirectory() as workdir:
        photograph(history_page(Path(workdir)), output)
    print(f"wrote {output}")


if __name__ == "__main__":
    main()
