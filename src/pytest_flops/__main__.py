"""``python -m pytest_flops merge``: one report from the JSON exports of CI shards.

Exit codes: 0 merged, every measurement passed; 1 merged, and some measurement
failed its FLOP check; 2 bad input (a file that is not an export, shards that
cannot be merged, an output that cannot be written).

``python -m pytest_flops diff`` and ``history`` read the committed snapshots with
git. ``diff`` exits 0, or 1 with ``--fail-on-change`` when a count changed; both
exit 2 on bad input (not a git repository, an unknown ref, an unreadable
snapshot at some commit).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pytest_flops.reports.diff import Revision, compare
from pytest_flops.reports.diff_render import diff_json, diff_lines, diff_markdown
from pytest_flops.reports.export import write_exports
from pytest_flops.reports.git import WORKING_TREE, GitError, Repository
from pytest_flops.reports.history import history, history_html, history_lines
from pytest_flops.reports.merge import MergeError, merge_exports
from pytest_flops.reports.terminal import terminal_lines
from pytest_flops.snapshots.stale import STALE_SENTENCE
from pytest_flops.validation import SnapshotFormatError

MERGED, FAILED, BAD_INPUT = 0, 1, 2


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    arguments = parser.parse_args(argv)
    if arguments.command is None:
        parser.print_help()
        return BAD_INPUT
    if arguments.command in GIT_COMMANDS:
        return GIT_COMMANDS[arguments.command](arguments)
    try:
        merged = merge_exports(arguments.exports)
    except (SnapshotFormatError, MergeError) as error:
        print(f"pytest-flops merge: error: {error}", file=sys.stderr)
        return BAD_INPUT
    for line in terminal_lines(merged.records, gpu=merged.gpu):
        print(line)
    stale = merged.snapshots.stale_entries()
    if stale:
        print(f"\n{STALE_SENTENCE}:")
        for entry in stale:
            print(f"  {entry}")
    problems = write_exports(
        merged,
        json_path=arguments.json,
        markdown_path=arguments.md,
        html_path=arguments.html,
        saved=lambda path: print(f"saved {path}"),
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
    _add_git_commands(commands)
    return parser


# -- diff and history: the snapshots in git ------------------------------------------------


def _add_git_commands(commands: Any) -> None:
    diff = commands.add_parser(
        "diff",
        help="the FLOP changes between the snapshots of two git revisions",
        description="Compare the __flops__ snapshots at BASE (default HEAD) with those at HEAD "
        "(default the working tree): per test and measurement the total before and after, its "
        "parts, and the modules where each change starts; then tests added and removed. "
        "'A...' or 'A...B' compares B (default HEAD) with the merge base of A and B, "
        "as git diff does. Reads git only: no test runs, and torch is not imported.",
        epilog="exit codes: 0 compared; 1 a count changed or a measurement was removed, "
        "with --fail-on-change; 2 bad input (not a git repository, an unknown ref, a snapshot "
        "that cannot be read, an output that cannot be written).",
    )
    diff.add_argument(
        "base", nargs="?", default="HEAD", metavar="BASE", help="a git revision, or A...B, A..B"
    )
    diff.add_argument("head", nargs="?", metavar="HEAD", help="a git revision")
    diff.add_argument("--md", type=Path, metavar="PATH", help="write a pull-request comment")
    diff.add_argument("--json", type=Path, metavar="PATH", help="write the comparison as JSON")
    diff.add_argument(
        "--fail-on-change",
        action="store_true",
        help="exit 1 when a count changed or a measurement was removed",
    )
    history = commands.add_parser(
        "history",
        help="each test's FLOPs over the commits that changed its snapshot",
        description="For each test whose snapshot or test file lies under PATH (default: all), "
        "the commits "
        "of HEAD's first-parent line that changed it: date, commit, total and change, with a "
        "sparkline. Follows renames. Reads git only: no test runs, and torch is not imported.",
        epilog="exit codes: 0 shown; 2 bad input (not a git repository, an unknown ref, a "
        "snapshot that cannot be read at some commit, no snapshots under PATH).",
    )
    history.add_argument(
        "paths", nargs="*", type=Path, metavar="PATH", help="a folder, test file or snapshot file"
    )
    history.add_argument("--html", type=Path, metavar="FILE", help="write the charts as one page")
    history.add_argument("--since", metavar="REF", help="start at this commit")


def _diff(arguments: argparse.Namespace) -> int:
    try:
        repository = Repository(Path.cwd())
        base, head = _revisions(repository, arguments.base, arguments.head)
        comparison = compare(repository, base, head)
    except GitError as error:
        return _bad_input("diff", error)
    for line in diff_lines(comparison):
        print(line)
    try:
        if arguments.md:
            arguments.md.write_text(diff_markdown(comparison), encoding="utf-8")
        if arguments.json:
            arguments.json.write_text(diff_json(comparison), encoding="utf-8")
    except OSError as error:
        return _bad_input("diff", f"cannot write {error.filename}: {error.strerror}")
    return FAILED if arguments.fail_on_change and comparison.any_change else MERGED


def _revisions(repository: Repository, base: str, head: str | None) -> tuple[Revision, Revision]:
    """BASE and HEAD as ``git diff`` reads them: ``A...B`` from the merge base, ``A..B``."""
    if head is None and "..." in base:
        first, _, second = base.partition("...")
        second = second or "HEAD"
        merge_base = repository.merge_base(first or "HEAD", second)
        return (
            Revision(ref=f"merge base of {first or 'HEAD'} and {second}", commit=merge_base),
            Revision(ref=second, commit=repository.commit(second)),
        )
    if head is None and ".." in base:
        base, _, head = base.partition("..")
        base, head = base or "HEAD", head or "HEAD"
    return (
        Revision(ref=base, commit=repository.commit(base)),
        Revision(ref=WORKING_TREE, commit=None)
        if head is None
        else Revision(ref=head, commit=repository.commit(head)),
    )


def _history(arguments: argparse.Namespace) -> int:
    try:
        repository = Repository(Path.cwd())
        paths = [_inside(repository, path) for path in arguments.paths]
        series = history(repository, paths=paths, since=arguments.since)
    except GitError as error:
        return _bad_input("history", error)
    for line in history_lines(series):
        print(line)
    if arguments.html:
        where = ", ".join(paths) or repository.root.name
        try:
            arguments.html.write_text(history_html(series, where=where), encoding="utf-8")
        except OSError as error:
            return _bad_input("history", f"cannot write {error.filename}: {error.strerror}")
    return MERGED


def _inside(repository: Repository, path: Path) -> str:
    """``path`` relative to the repository's root, with slashes."""
    absolute = Path(os.path.abspath(path))
    try:
        return absolute.relative_to(repository.root.resolve()).as_posix()
    except ValueError:
        try:
            return absolute.resolve().relative_to(repository.root.resolve()).as_posix()
        except ValueError:
            raise GitError(f"{path} is outside the git repository {repository.root}") from None


def _bad_input(command: str, error: object) -> int:
    print(f"pytest-flops {command}: error: {error}", file=sys.stderr)
    return BAD_INPUT


GIT_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {"diff": _diff, "history": _history}


if __name__ == "__main__":
    sys.exit(main())
