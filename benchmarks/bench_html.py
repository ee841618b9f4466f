"""The HTML report at scale: its size, the time to write it, and to render it in Chromium.

* **The examples suite**: its page, written by ``pytest examples --flops-report-html``,
  loaded until its tables are drawn (``body[data-ready]``).
* **Llama 70B at depth 4**: one measurement of a 70B train step on the meta
  device, kept to module depth 4 (``Llama.layers.N.mlp``: 243 rows), against a snapshot in
  which every layer's MLP was 10% narrower, so every box is colored as grown
  and carries before/after numbers. Written, loaded, and its icicle drawn by
  opening its section (the page draws an icicle only then).

Render times are wall time through WebDriver, from the command until the
page's state says it is done: a few milliseconds of WebDriver round trip are in
them. Skipped, with a note, without selenium, ``chromium`` or ``chromedriver``.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from harness import Results, Target
from steps import llama_train_step, meta_llama

from examples.llama import LLAMA_70B
from pytest_flops import count
from pytest_flops.reports.export import Export, RunMetadata, write_exports
from pytest_flops.reports.records import MeasurementRecord, Status

ROOT = Path(__file__).resolve().parent.parent


def run(results: Results, repeats: int) -> None:
    browser = _browser()
    if browser is None:
        results.notes.append("html: skipped (needs selenium, chromium and chromedriver)")
        return
    try:
        with tempfile.TemporaryDirectory() as tmp:
            examples_page = _examples_page(Path(tmp))
            llama_page, write_s, rows = _llama_page(Path(tmp))
            examples_load = min(_load(browser, examples_page) for _ in range(repeats))
            llama_load = min(_load(browser, llama_page) for _ in range(repeats))
            llama_draw = min(_draw(browser, llama_page) for _ in range(repeats))
            sizes = {page: page.stat().st_size / 1e6 for page in (examples_page, llama_page)}
    finally:
        browser.quit()
    results.targets += [
        Target("html: examples suite, load to tables drawn", examples_load, 1.0, "s"),
        Target("html: Llama 70B depth 4, load to tables drawn", llama_load, 1.0, "s"),
        Target("html: Llama 70B depth 4, its icicle drawn", llama_draw, 1.0, "s"),
        Target("html: Llama 70B depth 4, page size", sizes[llama_page], 5.0, "MB"),
    ]
    results.notes += [
        f"html: examples suite page {sizes[examples_page]:.2f} MB",
        f"html: Llama 70B depth 4 ({rows} module rows) page written in {write_s:.2f} s",
    ]


def _browser() -> Any:
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        return None
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if chromium is None or driver is None:
        return None
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    return webdriver.Chrome(service=Service(driver), options=options)


def _examples_page(tmp: Path) -> Path:
    page = tmp / "examples.html"
    subprocess.run(
        [sys.executable, "-m", "pytest", "examples", "-q", "-p", "no:randomly",
         "-p", "no:cacheprovider", f"--flops-report-html={page}"],
        cwd=ROOT, env={**os.environ, "PYTEST_ADDOPTS": ""}, check=True, capture_output=True,
    )  # fmt: skip
    return page


def _llama_page(tmp: Path) -> tuple[Path, float, int]:
    measured = count(llama_train_step, *meta_llama(LLAMA_70B)).truncated(4)
    narrower = dataclasses.replace(LLAMA_70B, ffn_dim=LLAMA_70B.ffn_dim * 9 // 10)
    before = count(llama_train_step, *meta_llama(narrower)).truncated(4)
    record = MeasurementRecord(
        nodeid="test_llama.py::test_llama_70b_train_step",
        name="default",
        measurement=measured,
        baseline=before,
        status=Status.CHANGED,
    )
    page = tmp / "llama.html"
    start = time.perf_counter()
    problems = write_exports(
        Export(records=(record,), metadata=RunMetadata.collect().to_dict()),
        json_path=None,
        markdown_path=None,
        html_path=page,
    )
    assert not problems, problems
    return page, time.perf_counter() - start, len(measured.modules)


def _load(browser: Any, page: Path) -> float:
    browser.get("about:blank")
    start = time.perf_counter()
    browser.get(page.as_uri())
    _wait(browser, "return document.body.dataset.ready === 'yes'")
    return time.perf_counter() - start


def _draw(browser: Any, page: Path) -> float:
    browser.get(page.as_uri())
    _wait(browser, "return document.body.dataset.ready === 'yes'")
    start = time.perf_counter()
    browser.execute_script("document.getElementById('measurement-0').open = true")
    _wait(browser, "return document.querySelector('svg.icicle rect.box') !== null")
    return time.perf_counter() - start


def _wait(browser: Any, condition: str) -> None:
    deadline = time.perf_counter() + 60
    while not browser.execute_script(condition):
        if time.perf_counter() > deadline:
            raise TimeoutError(condition)
        time.sleep(0.005)
