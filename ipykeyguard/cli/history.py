"""``ipykeyguard scan --history [PATH]``: the keys git still holds, and the commit that brought each.

Cleaning a file does not un-leak a key that was committed: every clone, fork and pack still
has it. This mode reads what git holds, not what the working tree holds:

1. ``git log <refs> --topo-order --reverse --raw -c --no-renames -z`` lists, commit by commit
   in topological order (parents first), every blob a commit added or changed (for merges, the
   ``-c`` combined diff lists only what differs from *every* parent: a merge that takes a side
   branch's file did not introduce it, the side branch's commit did). ``<refs>`` is ``--all``
   (every branch, tag, remote-tracking ref and stash), or ``--until REF``; ``--since REF``
   drops the commits ``REF`` already holds.
2. Each distinct blob is read once through one ``git cat-file --batch`` process and scanned once
   (per kind: a notebook path is read as a notebook through the one notebook walk, any other
   path as text), at the first path and commit where it appeared.
3. Each secret (by fingerprint) is reported once, at its earliest appearance in topological
   order: the commit that *introduced* it (full sha), the path, cell and line there, and whether
   the tree of ``HEAD`` still holds it. Every such key is exposed, so each finding carries the
   rotation advice of its rule, and the text report ends with the list of keys to rotate.

Git itself reads the objects (packs, deltas, alternates, replace refs all handled) instead of a
Python pack reader: ``git`` is already a requirement of the repositories we scan, and two
long-lived processes stream every object faster than per-object library calls (see
``docs/HISTORY.md`` for the comparison with dulwich and pygit2).

Old blobs are what they are: a broken or pre-v4 notebook is scanned as text, text that is not
UTF-8 is decoded with replacement characters (keys are ASCII), binary blobs (a NUL byte near
the start) are skipped, and a blob over ``max-file-size`` is an error (exit 2: the scan is then
incomplete). The config's ``exclude`` patterns apply to the paths blobs had in history.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Iterator, Sequence

if TYPE_CHECKING:  # pragma: no cover
    from ..engine.config import Config
    from ..engine.findings import Finding
    from ..engine.scan import Scanner
    from ..reports import ScanReport

__all__ = ["run", "scan_history", "HistoryError", "BlobSighting"]

_NULL_SHA = "0" * 40
_NOTEBOOK, _TEXT = "notebook", "text"
_BINARY_SNIFF = 8192


class HistoryError(Exception):
    """The repository cannot be read (not a repository, unknown ref, git missing or failing)."""


# -- reading git ----------------------------------------------------------------------------------


def _git(repo: str, *args: str) -> bytes:
    """Run one git command in ``repo`` and return its stdout.

    Raises:
        HistoryError: git is missing or the command failed (its first stderr line is given:
            git's messages name refs and paths, never file content).
    """
    try:
        import subprocess  # imported here: `scan` builds this module's arguments on every run

        done = subprocess.run(["git", "-C", repo, *args], capture_output=True, check=False)
    except FileNotFoundError:
        raise HistoryError("git is not installed (scan --history needs it)") from None
    if done.returncode != 0:
        reason = done.stderr.decode("utf-8", "replace").strip().splitlines()
        raise HistoryError(f"git {args[0]} failed: {reason[0] if reason else f'exit {done.returncode}'}")
    return done.stdout


@dataclass(frozen=True)
class BlobSighting:
    """The first appearance of one blob (read as one kind): where and in which commit.

    Attributes:
        blob: The blob's sha.
        kind: ``"notebook"`` or ``"text"`` (decided by the path's suffix).
        order: The commit's position in topological order (0 = oldest).
        commit: The commit's full sha.
        path: The path the blob had there.
    """

    blob: str
    kind: str
    order: int
    commit: str
    path: str


def _kind(path: str) -> str:
    return _NOTEBOOK if path.lower().endswith(".ipynb") else _TEXT


def _is_file_mode(mode: str) -> bool:
    # 100644 / 100755 (and the legacy 100664); not 120000 (symlink) or 160000 (submodule).
    return mode.startswith("100")


def _parse_log(stream: bytes) -> Iterator[tuple[str, list[tuple[str, str]]]]:
    """``(commit, [(blob, path), ...])`` from ``git log --format=%x01%H --raw -c -z`` output.

    Raw lines are ``:mode mode sha sha status`` for one parent (or none), and
    ``::mode mode mode sha sha sha status`` for a two-parent combined diff (one more colon, mode
    and sha per parent): the resulting blob is the last sha. Deleted files (null sha), symbolic
    links and submodules are left out.
    """
    for record in stream.split(b"\x01"):
        if not record:
            continue
        commit = record[:40].decode("ascii")
        fields = record[40:].lstrip(b"\0\n").split(b"\0")
        changes: list[tuple[str, str]] = []
        for i in range(0, len(fields) - 1, 2):
            meta, path = fields[i], fields[i + 1]
            if not meta.startswith(b":"):
                continue
            parents = len(meta) - len(meta.lstrip(b":"))
            parts = meta[parents:].split()
            if len(parts) < 2 * parents + 2:
                continue
            mode, blob = parts[parents].decode("ascii"), parts[2 * parents + 1].decode("ascii")
            if blob == _NULL_SHA or not _is_file_mode(mode):
                continue
            changes.append((blob, os.fsdecode(path)))
        yield commit, changes


def _revisions(since: str | None, until: str | None) -> list[str]:
    revs = [until] if until else ["--all"]
    if since:
        revs.append(f"^{since}")
    return revs


def first_sightings(
    repo: str, *, since: str | None = None, until: str | None = None, excluded=None
) -> tuple[list[BlobSighting], int]:
    """Every distinct (blob, kind) in the range, at its first commit in topological order.

    Args:
        repo: The repository (any folder inside its work tree, or a bare repository).
        since: Leave out the commits reachable from this ref.
        until: Walk from this ref instead of every ref.
        excluded: ``path -> bool``; blobs seen only at excluded paths are left out.

    Returns:
        The sightings (oldest first) and how many commits were walked.

    Raises:
        HistoryError: not a repository, an unknown ref, or git failed.
    """
    for ref in (since, until):
        if ref is not None:
            if ref.startswith("-"):
                raise HistoryError(f"not a revision: {ref!r}")
            try:
                _git(repo, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}")
            except HistoryError:
                raise HistoryError(f"unknown revision {ref!r} (not a commit in this repository)") from None
    out = _git(
        repo, "log", *_revisions(since, until), "--topo-order", "--reverse", "--raw", "-c", "--root",
        "--no-renames", "--no-abbrev", "--no-ext-diff", "--no-textconv", "--format=%x01%H", "-z", "--",
    )
    seen: set[tuple[str, str]] = set()
    sightings: list[BlobSighting] = []
    commits = 0
    for order, (commit, changes) in enumerate(_parse_log(out)):
        commits += 1
        for blob, path in sorted(changes, key=lambda c: c[1]):
            kind = _kind(path)
            if (blob, kind) in seen or (excluded is not None and excluded(path)):
                continue
            seen.add((blob, kind))
            sightings.append(BlobSighting(blob, kind, order, commit, path))
    return sightings, commits


def head_tree(repo: str) -> tuple[str | None, list[tuple[str, str]]]:
    """``(HEAD's sha or None, [(blob, path), ...])`` for the files in HEAD's tree."""
    try:
        head = _git(repo, "rev-parse", "--verify", "--quiet", "HEAD^{commit}").decode().strip()
    except HistoryError:
        return None, []  # an empty repository, or a HEAD pointing at an unborn branch
    listing = _git(repo, "ls-tree", "-r", "-z", "--full-tree", head)
    files = []
    for entry in listing.split(b"\0"):
        if not entry:
            continue
        meta, _tab, path = entry.partition(b"\t")
        mode, kind, blob = meta.decode("ascii").split()
        if kind == "blob" and _is_file_mode(mode):
            files.append((blob, os.fsdecode(path)))
    return head, files


class BlobReader:
    """Streams blobs out of one ``git cat-file --batch`` process.

    A writer thread feeds the shas while the caller reads, so neither pipe fills up.
    """

    def __init__(self, repo: str) -> None:
        self._repo = repo

    def read(self, shas: Sequence[str], max_size: int) -> Iterator[tuple[str, bytes | None, int]]:
        """Yield ``(sha, content or None when over max_size, size)`` in the order given.

        Raises:
            HistoryError: git failed or an object is missing.
        """
        if not shas:
            return
        import subprocess
        import threading

        try:
            proc = subprocess.Popen(
                ["git", "-C", self._repo, "cat-file", "--batch"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            )
        except FileNotFoundError:
            raise HistoryError("git is not installed (scan --history needs it)") from None
        assert proc.stdin is not None and proc.stdout is not None

        def feed(stdin: IO[bytes]) -> None:
            try:
                for start in range(0, len(shas), 1024):
                    stdin.write("".join(s + "\n" for s in shas[start:start + 1024]).encode("ascii"))
                stdin.close()
            except (BrokenPipeError, ValueError):
                pass  # the reader stopped early; it reports why

        writer = threading.Thread(target=feed, args=(proc.stdin,), daemon=True)
        writer.start()
        out = proc.stdout
        try:
            for sha in shas:
                header = out.readline().split()
                if len(header) != 3:
                    raise HistoryError(f"git cat-file: object {sha} is missing or unreadable")
                size = int(header[2])
                if size > max_size:
                    _skip(out, size + 1)
                    yield sha, None, size
                else:
                    data = out.read(size)
                    out.read(1)  # the newline after each object
                    yield sha, data, size
        finally:
            out.close()
            proc.kill()
            proc.wait()
            writer.join(timeout=5)


def _skip(stream: IO[bytes], count: int) -> None:
    while count > 0:
        chunk = stream.read(min(count, 1 << 20))
        if not chunk:
            return
        count -= len(chunk)


# -- scanning blobs ---------------------------------------------------------------------------------


def scan_blob(data: bytes, kind: str, scanner: "Scanner") -> list["Finding"]:
    """The findings in one blob (empty for binary content).

    A notebook that does not parse (a conflict committed by mistake, nbformat 1) is scanned as
    text; undecodable bytes become replacement characters. Nothing that git holds is skipped
    for being malformed.
    """
    from ..engine.scan import notebook_findings
    from ..transforms.notebook import NotebookError, parse_notebook

    if kind == _NOTEBOOK:
        try:
            nb = parse_notebook(data, old_formats=True)
        except NotebookError:
            pass
        else:
            return [f for _leaf, found in notebook_findings(nb, scanner) for f in found]
    if b"\0" in data[:_BINARY_SNIFF]:
        return []
    text = data.decode("utf-8", "replace").lstrip("\ufeff")
    return scanner.scan_text(text)


_worker_scanner: "Scanner | None" = None


def _init_worker(config: "Config") -> None:
    global _worker_scanner
    from ..engine.scan import Scanner

    _worker_scanner = Scanner(config)


def _scan_batch(batch: list[tuple[bytes, str]]) -> list[list[tuple]]:
    """Worker: findings of each ``(data, kind)`` as plain tuples (no secret crosses back)."""
    assert _worker_scanner is not None, "worker not initialised"
    return [[_row(f) for f in scan_blob(data, kind, _worker_scanner)] for data, kind in batch]


def _row(f: "Finding") -> tuple:
    loc = f.location
    return (f.fingerprint, f.rule, int(f.confidence), f.env, loc.cell, loc.field, loc.line, loc.column)


class _Progress:
    """A progress bar on a terminal (tqdm, on stderr), nothing when stderr is piped."""

    def __init__(self, total: int, enabled: bool) -> None:
        self._bar = None
        if enabled and total:
            from tqdm import tqdm

            self._bar = tqdm(total=total, unit="blob", desc="ipykeyguard: history", file=sys.stderr, leave=False)

    def update(self, n: int = 1) -> None:
        if self._bar is not None:
            self._bar.update(n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


@dataclass
class _Found:
    """What a history scan found, before it is shaped into a report."""

    rows: dict[tuple[str, str], list[tuple]] = field(default_factory=dict)  # (blob, kind) -> rows
    errors: list[tuple[str, str]] = field(default_factory=list)  # (path, message)


def _scan_blobs(
    repo: str,
    wanted: list[tuple[str, str, str]],
    scanner: "Scanner",
    *,
    jobs: int,
    progress: _Progress,
) -> _Found:
    """Scan each ``(blob, kind, path)``; ``path`` only names the blob in an error."""
    found = _Found()
    reader = BlobReader(repo)
    limit = scanner.config.max_file_size
    shas = [blob for blob, _kind_, _path in wanted]
    contents = reader.read(shas, limit)
    if jobs == 0:
        jobs = os.cpu_count() or 1
    if jobs <= 1 or len(wanted) < 64:
        for (blob, kind, path), (_sha, data, size) in zip(wanted, contents):
            if data is None:
                found.errors.append((path, f"blob {blob} is larger than max-file-size ({size} > {limit} bytes); not scanned"))
            else:
                found.rows[(blob, kind)] = [_row(f) for f in scan_blob(data, kind, scanner)]
            progress.update()
        return found

    from concurrent.futures import ProcessPoolExecutor

    def batches() -> Iterator[tuple[list[tuple[str, str]], list[tuple[bytes, str]]]]:
        keys, batch, size_in_batch = [], [], 0
        for (blob, kind, path), (_sha, data, size) in zip(wanted, contents):
            if data is None:
                found.errors.append((path, f"blob {blob} is larger than max-file-size ({size} > {limit} bytes); not scanned"))
                progress.update()
                continue
            keys.append((blob, kind))
            batch.append((data, kind))
            size_in_batch += len(data)
            if len(batch) >= 256 or size_in_batch >= 8 << 20:
                yield keys, batch
                keys, batch, size_in_batch = [], [], 0
        if batch:
            yield keys, batch

    with ProcessPoolExecutor(max_workers=jobs, initializer=_init_worker, initargs=(scanner.config,)) as pool:
        pending = []
        for keys, batch in batches():
            pending.append((keys, pool.submit(_scan_batch, batch)))
            if len(pending) >= 2 * jobs:  # bound the memory held by queued blobs
                done_keys, future = pending.pop(0)
                _collect(found, done_keys, future.result(), progress)
        for done_keys, future in pending:
            _collect(found, done_keys, future.result(), progress)
    return found


def _collect(found: _Found, keys: list[tuple[str, str]], results: list[list[tuple]], progress: _Progress) -> None:
    for key, rows in zip(keys, results):
        found.rows[key] = rows
    progress.update(len(keys))


# -- the report ---------------------------------------------------------------------------------------


def scan_history(
    repo: str,
    config: "Config",
    *,
    since: str | None = None,
    until: str | None = None,
    jobs: int = 1,
    progress: bool = False,
) -> "ScanReport":
    """Scan what git holds and report each secret once, at the commit that introduced it.

    Args:
        repo: A folder inside the repository's work tree (or a bare repository).
        config: Settings: threshold, allowlist, rules, ``exclude`` (matched against the paths
            blobs had in history, relative to the config's root) and ``max-file-size``.
        since: Only commits not reachable from this ref.
        until: Only commits reachable from this ref (default: every ref).
        jobs: Worker processes for scanning (1: none; 0: one per CPU).
        progress: Show a progress bar on stderr.

    Returns:
        A report whose findings carry ``commit``, ``in_head`` and ``exposed="git history"``;
        its ``exit_code`` is the command's (2 when a blob could not be scanned, else 1 when
        anything was found, else 0).

    Raises:
        HistoryError: not a repository, an unknown ref, or git failed.
    """
    from ..engine.findings import Confidence
    from ..engine.scan import scanner_for
    from ..reports import HistoryStats, ReportError, ReportFinding, RuleInfo, ScanReport

    top = _git(repo, "rev-parse", "--absolute-git-dir").decode().strip()
    inside = _git(repo, "rev-parse", "--is-bare-repository").decode().strip() == "false"
    root = _git(repo, "rev-parse", "--show-toplevel").decode().strip() if inside else top

    def excluded(path: str) -> bool:
        return bool(config.exclude) and config.is_excluded(os.path.join(root, path))

    sightings, commits = first_sightings(repo, since=since, until=until, excluded=excluded)
    head, head_files = head_tree(repo)
    head_files = [(blob, path) for blob, path in head_files if not excluded(path)]

    wanted: dict[tuple[str, str], str] = {(s.blob, s.kind): s.path for s in sightings}
    for blob, path in head_files:
        wanted.setdefault((blob, _kind(path)), path)
    scanner = scanner_for(config)
    bar = _Progress(len(wanted), progress)
    try:
        found = _scan_blobs(repo, [(b, k, p) for (b, k), p in wanted.items()], scanner, jobs=jobs, progress=bar)
    finally:
        bar.close()

    in_head = {row[0] for blob, path in head_files for row in found.rows.get((blob, _kind(path)), ())}
    earliest: dict[str, tuple[BlobSighting, tuple]] = {}
    for sighting in sightings:  # oldest first: the first sighting of a fingerprint wins
        for row in found.rows.get((sighting.blob, sighting.kind), ()):
            earliest.setdefault(row[0], (sighting, row))
    report = ScanReport(
        errors=[ReportError(path, message) for path, message in found.errors],
        min_confidence=config.min_confidence,
        rules=[RuleInfo(r.id, r.description, r.confidence, r.env) for r in scanner.rules],
        history=HistoryStats(commits, len(wanted), head, root),
    )
    report.files_scanned = len(wanted) - len(found.errors)
    ordered = sorted(earliest.values(), key=lambda item: (item[0].order, item[0].path, item[1][4] or -1, item[1][6], item[1][7]))
    for sighting, (fp, rule, confidence, env, cell, fld, line, column) in ordered:
        report.findings.append(
            ReportFinding(
                sighting.path, cell, fld, line, column, rule, Confidence(confidence), fp, env,
                exposed="git history", commit=sighting.commit, in_head=fp in in_head,
            )
        )
    return report


def run(args: argparse.Namespace) -> int:
    """``ipykeyguard scan --history``: report, record the exposures, return the exit status.

    Raises:
        CLIError: more than one PATH, an unreadable repository or ref, a bad config (exit 2).
    """
    from .app import CLIError
    from .scan import build_config, emit

    if len(args.paths) > 1:
        raise CLIError("--history takes one repository PATH")
    repo = args.paths[0] if args.paths else "."
    if repo == "-":
        raise CLIError("--history reads a repository, not standard input")
    if not args.paths:
        args.paths = [repo]
    config = build_config(args)
    try:
        report = scan_history(
            repo, config, since=args.since, until=args.until, jobs=args.jobs,
            progress=sys.stderr.isatty(),
        )
    except HistoryError as exc:
        raise CLIError(f"{repo}: {exc}") from None
    from ..storage.ledger import record_findings

    record_findings("scan --history", "found in history", report.findings, where=os.path.abspath(repo))
    return emit(report, args)
