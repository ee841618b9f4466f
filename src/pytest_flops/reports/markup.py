"""Markdown shared by the reports that write it: the session's export and ``diff --md``."""

from __future__ import annotations

__all__ = ["code_span"]


def code_span(text: str) -> str:
    """A code span that survives backticks in parametrized ids: fenced by one backtick
    more than the longest run inside, padded where the text starts or ends with one."""
    longest = 0
    run = 0
    for char in text:
        run = run + 1 if char == "`" else 0
        longest = max(longest, run)
    fence = "`" * (longest + 1)
    padding = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{padding}{text}{padding}{fence}"
