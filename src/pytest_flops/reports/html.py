"""``--flops-report-html``: one self-contained page, an icicle of the module tree per test.

The page embeds the JSON export (:func:`pytest_flops.reports.export.json_report`) and
draws from it in the browser, with the CSS and JavaScript of ``assets/``
inlined: no request to any network, so a CI artifact opens offline from
``file://``. Each measurement's icicle is drawn when its section is first
opened, so a suite of large models opens at once.
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from importlib.resources import files
from typing import Any

from pytest_flops.reports.records import MeasurementRecord, Status
from pytest_flops.reports.terminal import ordered

__all__ = ["html_report"]


def html_report(document: dict[str, Any], records: Sequence[MeasurementRecord]) -> str:
    """The page of a :func:`~pytest_flops.reports.export.json_report` document of ``records``.

    Its tables list the measurements in the terminal report's order
    (:func:`~pytest_flops.reports.terminal.ordered`: failures first).
    """
    assets = files("pytest_flops.reports") / "assets"
    position = {(m["nodeid"], m["name"]): i for i, m in enumerate(document["measurements"])}
    order = [position[record.nodeid, record.name] for record in ordered(records)]
    failing = [status.value for status in Status if status.failed]
    title = f"FLOPs report: {document['summary']['measurements']} measurement(s)"
    parts = {
        "@TITLE@": html.escape(title),
        "@STYLE@": (assets / "report.css").read_text(encoding="utf-8"),
        "@DATA@": _script_json(document),
        "@PAGE@": _script_json({"order": order, "failing": failing}),
        "@SCRIPT@": "\n".join(
            (assets / script).read_text(encoding="utf-8") for script in ("common.js", "report.js")
        ),
    }
    page = (assets / "report.html").read_text(encoding="utf-8")
    for marker, text in parts.items():
        page = page.replace(marker, text, 1)
    return page


def _script_json(value: object) -> str:
    """JSON safe inside a ``<script>`` element: a ``</`` in a test id would end it."""
    return json.dumps(value, ensure_ascii=False).replace("</", "<\\/")
