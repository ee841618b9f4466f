"""``python -m pytest_flops merge``: one report from the JSON exports of CI shards.

Exit codes: 0 merged, every measurement passed; 1 merged, and some measurement
failed its FLOP check; 2 bad input (a file that is not an export, shards that
cannot be merged, an output that cannot be written).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from pytest_flops.reports.export import write_exports
from pytest_flops.reports.merge import MergeError, merge_exports
from pytest_flops.reports.terminal import STALE_SENTENCE, terminal_lines
from pytest_flops.validation import SnapshotFormatError

MERGED, FAILED, BAD_INPUT = 0, 1, 2


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    arguments = parser.parse_args(argv)
    if arguments.command is None:
        parser.print_help()
        return BAD_INPUT
    try:
        merged = merge_exports(arguments.exports)
    except (SnapshotFormatError, MergeError) as error:
        print(f"pytest-flops merge: error: {error}", file=sys.stderr)
        return BAD_INPUT
    for line in terminal_lines(merged.records):
        print(line)
    stale = merged.snapshots.stale_entries()
    if stale:
        print(f"\n{STALE_SENTENCE}:")
        for entry in stale:
            print(f"  {entry}")
    problems = write_exports(
        merged, json_path=arguments.json, markdown_path=arguments.md, html_path=arguments.html
    )
    for problem in problems:
        print(f"pytest-flops merge: error: {problem}", file=sys.stderr)
    if problems:
        return BAD_INPUT
    return FAILED if any(record.status.failed for record in merged.records) else MERGED


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pytest_flops",
        description="Tools for the reports of pytest-flops.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    merge = commands.add_parser(
        "merge",
        help="merge the --flops-report-json exports of CI shards into one report",
        description="Merge the --flops-report-json exports of the shards of one suite "
        "(pytest-split groups, a -k or file matrix) into the report of the whole suite, "
        "printed and written as asked. Stale snapshots are those that no shard uses, of "
        "test files some shard collected whole; removing them stays with "
        "pytest --flops-prune on a run that covers their files. A measuring test that some "
        "shard collected and none ran (a shard's export is missing) is an error.",
        epilog="exit codes: 0 merged and every measurement passed; 1 merged, and some "
        "measurement failed its FLOP check; 2 bad input (not an export, a newer "
        "schema_version, shards of other torch or pytest-flops versions, a test in two "
        "shards or in none, an output that cannot be written).",
    )
    merge.add_argument("exports", nargs="+", type=Path, metavar="EXPORT", help="shard JSON exports")
    merge.add_argument("--json", type=Path, metavar="PATH", help="write the merged JSON export")
    merge.add_argument("--md", type=Path, metavar="PATH", help="write the merged Markdown report")
    merge.add_argument("--html", type=Path, metavar="PATH", help="write the merged HTML report")
    return parser


if __name__ == "__main__":
    sys.exit(main())
