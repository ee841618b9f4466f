"""Make ``docs/images/html-report.png``: the HTML report of a refactor that widened an MLP.

Copies ``examples/`` to a temporary directory, widens TinyGPT's MLP from
4x to 6x its width there (the kind of change the gate exists for), runs the
language-model examples against their committed snapshots with
``--flops-report-html``, and photographs the page in headless Chromium with
``test_tiny_gpt``'s icicle open and its first block selected.

    python docs/screenshot.py [OUTPUT.png]

Needs Debian's ``chromium`` and ``chromium-driver`` and selenium (the ``test`` extra).
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
DEFAULT_OUTPUT = ROOT / "docs" / "images" / "html-report.png"
WIDER_MLP = ("nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim)",
             "nn.Linear(dim, 6 * dim), nn.GELU(), nn.Linear(6 * dim, dim)")  # fmt: skip


def report(workdir: Path) -> Path:
    shutil.copytree(ROOT / "examples", workdir / "examples")
    models = workdir / "examples" / "models.py"
    text = models.read_text()
    assert WIDER_MLP[0] in text, "examples/models.py changed: update WIDER_MLP"
    models.write_text(text.replace(*WIDER_MLP))
    page = workdir / "report.html"
    subprocess.run(
        [sys.executable, "-m", "pytest", "examples/test_language_models.py", "-p", "no:randomly",
         "-p", "no:cacheprovider", "-q", f"--flops-report-html={page}"],
        cwd=workdir, env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}, check=False,
        capture_output=True,
    )  # fmt: skip
    return page


def photograph(page: Path, output: Path) -> None:
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "chromium"
    for argument in ("--headless=new", "--no-sandbox", "--window-size=1200,900",
                     "--hide-scrollbars", "--force-device-scale-factor=1"):  # fmt: skip
        options.add_argument(argument)
    browser = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    try:
        browser.get(page.as_uri())
        browser.find_element("link text", "examples/test_language_models.py::test_tiny_gpt").click()
        browser.find_element("css selector", 'rect.box[data-path="TinyGPT.blocks.0"]').click()
        browser.execute_script("window.scrollTo(0, 0)")
        output.parent.mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(output))
    finally:
        browser.quit()


def main() -> None:
    output = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_OUTPUT
    with tempfile.TemporaryDirectory() as workdir:
        photograph(report(Path(workdir)), output)
    print(f"wrote {output}")


if __name__ == "__main__":
    main()
