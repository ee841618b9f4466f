"""The committed snapshots, read through the ``git`` command line: at a commit, in the
working tree, and commit by commit along the history.

A snapshot file is known by the test it holds, ``tests/test_x.py::test_a``: the
folder it lies in names the test file (``__flops__/test_x.py/``, or before 0.2
the stem, ``__flops__/test_x/``) and the file holds the test's name. So a file
moved from the old layout to the new one is the same test, whatever its name.
Every file is parsed by :class:`~pytest_flops.snapshots.format.FlopsSnapshot`,
the reader the plugin uses, so every format it reads is read here.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from pytest_flops.snapshots.format import FlopsSnapshot
from pytest_flops.snapshots.store import FILE_SUFFIX, SNAPSHOT_DIRNAME
from pytest_flops.validation import SnapshotFormatError

__all__ = [
    "WORKING_TREE",
    "Commit",
    "GitError",
    "Repository",
    "StoredSnapshot",
    "is_snapshot_path",
    "test_label",
]

WORKING_TREE = "working tree"
# Only files of this shape are snapshots: <dir>/__flops__/<test file>/<stem>.flops.json
_PATHSPEC = f":(glob)**/{SNAPSHOT_DIRNAME}/*/*{FILE_SUFFIX}"


class GitError(Exception):
    """A git command failed, or a ref or file it names cannot be read; the message says which."""


def is_snapshot_path(path: str) -> bool:
    parts = PurePosixPath(path).parts
    return len(parts) >= 3 and parts[-3] == SNAPSHOT_DIRNAME and path.endswith(FILE_SUFFIX)


def test_label(path: str, test: str) -> str:
    """``tests/__flops__/test_x.py/a.flops.json`` holding ``test_a``: ``tests/test_x.py::test_a``.

    A folder without a suffix is the pre-0.2 layout, named after the file's stem.
    """
    parts = PurePosixPath(path).parts
    test_file = parts[-2] if "." in parts[-2] else f"{parts[-2]}.py"
    return PurePosixPath(*parts[:-3], test_file).as_posix() + f"::{test}"


def is_legacy_path(path: str) -> bool:
    return "." not in PurePosixPath(path).parts[-2]


@dataclass(frozen=True, kw_only=True)
class StoredSnapshot:
    """One snapshot file as stored at a revision."""

    path: str  # relative to the repository's root, with slashes
    snapshot: FlopsSnapshot

    @property
    def label(self) -> str:
        return test_label(self.path, self.snapshot.test)


@dataclass(frozen=True, kw_only=True)
class Commit:
    sha: str
    date: str  # ISO 8601, the committer's
    subject: str

    @property
    def short(self) -> str:
        return self.sha[:7]


@dataclass(frozen=True, kw_only=True)
class FileChange:
    """One snapshot file a commit added (``A``), changed (``M``), removed (``D``) or renamed
    (``R``, from ``old_path``); ``blob`` is its content after the commit (none once removed)."""

    status: str
    path: str
    old_path: str | None = None
    blob: str | None = None


class Repository:
    """The git repository around a directory, driven through the ``git`` command line."""

    def __init__(self, directory: Path) -> None:
        try:
            top = self._git(["rev-parse", "--show-toplevel"], cwd=directory)
        except GitError:
            raise GitError(f"not a git repository: {directory}") from None
        self.root = Path(top.strip())

    # -- refs ---------------------------------------------------------------

    def commit(self, ref: str) -> str:
        """The full hash of the commit ``ref`` names."""
        try:
            return self.git(
                "rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}"
            ).strip()
        except GitError:
            raise GitError(f"unknown ref {ref!r}: no commit of that name in {self.root}") from None

    def merge_base(self, a: str, b: str) -> str:
        first, second = self.commit(a), self.commit(b)
        try:
            return self.git("merge-base", first, second).strip()
        except GitError:
            raise GitError(f"{a!r} and {b!r} have no common ancestor") from None

    def describe(self, sha: str) -> Commit:
        sha_, date, subject = self.git("show", "-s", "--format=%H%x1f%cI%x1f%s", sha).split("\x1f")
        return Commit(sha=sha_, date=date, subject=subject.rstrip("\n"))

    # -- snapshots at a revision ---------------------------------------------

    def snapshots(self, revision: str) -> list[StoredSnapshot]:
        """Every snapshot file at commit ``revision``, or in the :data:`WORKING_TREE`."""
        if revision == WORKING_TREE:
            listed = self.git(
                "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", _PATHSPEC
            )
            texts = {
                path: self._read_working_file(path)
                for path in listed.split("\0")
                if is_snapshot_path(path) and (self.root / path).is_file()
            }
            where = WORKING_TREE
        else:
            blobs = {}
            for line in self.git("ls-tree", "-r", "-z", "--full-tree", revision).split("\0"):
                if line:
                    meta, _, path = line.partition("\t")
                    if meta.split()[1] == "blob" and is_snapshot_path(path):
                        blobs[path] = meta.split()[2]
            contents = self.blobs(blobs.values())
            texts = {path: contents[blob] for path, blob in blobs.items()}
            where = f"commit {revision[:7]}"
        return [
            StoredSnapshot(path=path, snapshot=parse(text, path=path, where=where))
            for path, text in sorted(texts.items())
        ]

    def renames(self, base: str, head: str) -> dict[str, str]:
        """The snapshot files git sees renamed from ``base`` to ``head``: new path -> old path."""
        revisions = [base] if head == WORKING_TREE else [base, head]
        out = self.git("diff", "-M", "-z", "--name-status", *revisions, "--", _PATHSPEC)
        fields = iter(out.split("\0"))
        renamed = {}
        for status in fields:
            if not status:
                continue
            old = next(fields)
            if status[0] in "RC":
                new = next(fields)
                if status[0] == "R":
                    renamed[new] = old
        return renamed

    # -- history ------------------------------------------------------------

    def log(self, *, since: str | None) -> Iterator[tuple[Commit, list[FileChange]]]:
        """Each commit of HEAD's first-parent line (after ``since``) that touched a snapshot
        file, oldest first, with those files."""
        revisions = f"{since}..HEAD" if since else "HEAD"
        out = self.git(
            "log", "--first-parent", "--reverse", "-z", "--no-abbrev", "--raw", "-M",
            "--format=%x1e%H%x1f%cI%x1f%s", revisions, "--", _PATHSPEC,
        )  # fmt: skip
        for record in out.split("\x1e")[1:]:
            header, _, raw = record.partition("\0")
            sha, date, subject = header.split("\x1f")
            fields = iter(raw.lstrip("\n").split("\0"))
            changes = []
            for meta in fields:
                if not meta.startswith(":"):
                    continue
                blob, status = meta.split()[3], meta.split()[4][0]
                path, old = next(fields), None
                if status in "RC":  # a copy is a new file to us
                    old, path = (path if status == "R" else None), next(fields)
                    status = "R" if status == "R" else "A"
                changes.append(
                    FileChange(
                        status=status,
                        path=path,
                        old_path=old,
                        blob=None if status == "D" else blob,
                    )
                )
            yield (
                Commit(sha=sha, date=date, subject=subject),
                [change for change in changes if is_snapshot_path(change.path)],
            )

    def blobs(self, shas: Iterable[str]) -> dict[str, str]:
        """The text of each blob, read by one ``git cat-file --batch``."""
        wanted = list(dict.fromkeys(shas))
        if not wanted:
            return {}
        result = subprocess.run(
            ["git", "cat-file", "--batch"],
            cwd=self.root,
            input="".join(f"{sha}\n" for sha in wanted).encode(),
            capture_output=True,
            check=False,
        )
        if result.returncode != 0:
            raise GitError(f"git cat-file failed: {result.stderr.decode(errors='replace').strip()}")
        out, position, texts = result.stdout, 0, {}
        for sha in wanted:
            end = out.index(b"\n", position)
            size = int(out[position:end].split()[2])
            content = out[end + 1 : end + 1 + size]
            position = end + 1 + size + 1
            try:
                texts[sha] = content.decode("utf-8")
            except UnicodeDecodeError:
                texts[sha] = content.decode("utf-8", errors="replace")
        return texts

    # -- the command line -----------------------------------------------------

    def git(self, *arguments: str) -> str:
        return self._git(list(arguments), cwd=self.root)

    @staticmethod
    def _git(arguments: Sequence[str], *, cwd: Path) -> str:
        try:
            result = subprocess.run(
                ["git", *arguments],
                cwd=cwd,
                capture_output=True,
                check=False,
                # read-only: take no lock, so a git command of the user's never waits on us
                env={
                    **os.environ,
                    "LC_ALL": "C",
                    "GIT_TERMINAL_PROMPT": "0",
                    "GIT_OPTIONAL_LOCKS": "0",
                },
            )
        except FileNotFoundError:
            raise GitError("git is not installed (no 'git' command on PATH)") from None
        except NotADirectoryError:
            raise GitError(f"not a directory: {cwd}") from None
        if result.returncode != 0:
            message = result.stderr.decode(errors="replace").strip().splitlines()
            raise GitError(
                f"git {arguments[0]} failed: {message[-1] if message else result.returncode}"
            )
        return result.stdout.decode("utf-8", errors="replace")

    def _read_working_file(self, path: str) -> str:
        try:
            return (self.root / path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise GitError(f"{path} (working tree): cannot read the file ({error})") from None


def parse(text: str, *, path: str, where: str) -> FlopsSnapshot:
    """A snapshot file's text; a corrupt or foreign file is a :class:`GitError` naming it."""
    try:
        return FlopsSnapshot.from_text(text, where=f"{path} ({where})")
    except SnapshotFormatError as error:
        raise GitError(str(error)) from None
