"""``--flops-report-html``: one self-contained page, an icicle of the module tree per test.

The page embeds the JSON export (:func:`pytest_flops.reports.export.json_report`) and
draws from it in the browser, with the CSS and JavaScript of ``assets/``
inlined: no request to any network, so a CI artifact opens offline from
``file://``. Each measurement's icicle is drawn when its section is first
opened, so a suite of large models opens at once.

Two things the browser would get wrong are settled here. Every integer of the export
is embedded as a decimal string, read with ``BigInt``: a JavaScript number holds
integers exactly only up to 2^53, and a 405B-parameter step counts more FLOPs than
that. And every rounded figure (a change's percentage, a roofline time and its
memory-bound share, FLOPs per token) is embedded as the terminal report writes it,
so the page rounds as Python does (half to even), not as JavaScript does.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Mapping, Sequence
from importlib.resources import files
from typing import Any

from pytest_flops.measurement import GLOBAL
from pytest_flops.reports.records import MeasurementRecord, Status
from pytest_flops.reports.terminal import change_cells, ordered
from pytest_flops.units import format_seconds

__all__ = ["filled", "html_report", "script_json"]


def html_report(document: dict[str, Any], records: Sequence[MeasurementRecord]) -> str:
    """The page of a :func:`~pytest_flops.reports.export.json_report` document of ``records``.

    Its tables list the measurements in the terminal report's order
    (:func:`~pytest_flops.reports.terminal.ordered`: failures first).
    """
    assets = files("pytest_flops.reports") / "assets"
    measurements = document["measurements"]
    position = {(m["nodeid"], m["name"]): i for i, m in enumerate(measurements)}
    order = [position[record.nodeid, record.name] for record in ordered(records)]
    texts: list[dict[str, Any]] = [{} for _ in measurements]
    for record in records:
        index = position[record.nodeid, record.name]
        texts[index] = _texts(record, measurements[index])
    failing = [status.value for status in Status if status.failed]
    title = f"FLOPs report: {document['summary']['measurements']} measurement(s)"
    parts = {
        "@TITLE@": html.escape(title),
        "@STYLE@": (assets / "report.css").read_text(encoding="utf-8"),
        "@DATA@": script_json(document),
        "@PAGE@": script_json({"order": order, "failing": failing, "texts": texts}),
        "@SCRIPT@": "\n".join(
            (assets / script).read_text(encoding="utf-8") for script in ("common.js", "report.js")
        ),
    }
    return filled((assets / "report.html").read_text(encoding="utf-8"), parts)


_MARKER = re.compile(r"@[A-Z]+@")


def filled(template: str, parts: Mapping[str, str]) -> str:
    """``template`` with each of its ``@MARKER@``s replaced by its part, in one pass: a
    part already placed may hold a marker's text (a test id, a commit subject), which is
    data, never a place to fill."""
    return _MARKER.sub(lambda match: parts.get(match[0], match[0]), template)


def _texts(record: MeasurementRecord, entry: Mapping[str, Any]) -> dict[str, Any]:
    """A measurement's rounded figures as the terminal report writes them."""
    change, relative = change_cells(record)
    texts: dict[str, Any] = {"change": change, "relative": relative}
    if (roofline := entry.get("roofline")) is not None:
        gpu = roofline["gpu"]
        texts["time"] = format_seconds(roofline["seconds"])
        texts["times"] = {
            path: f"{format_seconds(estimate['seconds'])} on {gpu} "
            f"({estimate['memory_bound_share']:.0%} memory-bound)"
            for path, estimate in [(GLOBAL, roofline), *roofline["by_module"].items()]
        }
    if (per_token := entry.get("flops_per_token")) is not None:
        six_n = entry.get("flops_per_token_6n")
        texts["per_token"] = round(per_token)
        texts["ratio"] = f"{per_token / six_n:.2f}" if six_n else ""
    return texts


_SCRIPT_SAFE = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026"})


def script_json(value: object) -> str:
    """JSON safe inside a ``<script>`` element, every integer a decimal string (see the
    module's docstring).

    No ``<`` is left in it: a ``</script>`` in a test id would end the element, and a
    ``<!--<script>`` would make the HTML parser read past its own ``</script>``. JSON
    strings hold ``\\u003c`` for it (and ``>`` and ``&`` alike), read back as the same text.
    """
    return json.dumps(_exact(value), ensure_ascii=False).translate(_SCRIPT_SAFE)


def _exact(value: object) -> object:
    if isinstance(value, bool) or not isinstance(value, (int, dict, list)):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, dict):
        return {key: _exact(item) for key, item in value.items()}
    return [_exact(item) for item in value]
