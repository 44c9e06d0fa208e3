"""``ipykeyguard scan PATH...``: report the secrets in notebooks and text files.

Notebooks (``.ipynb``) are read as notebooks (every cell source, output, traceback, metadata
and attachment), other files as UTF-8 text; directories are walked (see
:mod:`ipykeyguard.files` for what is skipped); ``-`` reads standard input. Reports come in
three formats (:mod:`ipykeyguard.reports`) and never contain a secret.

Exit status: 0 nothing found; 1 findings; 2 usage or configuration error, or any file that
could not be scanned (missing, unreadable, not UTF-8, broken or pre-v4 notebook, over
``max-file-size``) - 2 wins over 1 because the scan was incomplete.

Settings come from ``[tool.ipykeyguard]`` in the nearest ``pyproject.toml`` above the scanned
paths (``--config`` names one, ``--isolated`` ignores them all); command-line options win.
The threshold defaults to the config's ``min-confidence``, itself ``possible`` by default: a
commit gate that misses a real key costs a key rotation, a false alarm costs one allow
comment or baseline entry, and each line shows its confidence for anyone who wants less.

Start-up matters (this runs as a pre-commit hook on every commit): only what a scan needs is
imported, and the process pool only when ``--jobs`` asks for one.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Sequence

if TYPE_CHECKING:  # pragma: no cover
    from ..engine.config import Config
    from .files import Target
    from ..reports import ReportError, ReportFinding, ScanReport
    from ..engine.scan import Scanner

__all__ = ["add_parser", "run", "scan_paths", "FileOutcome"]

_CONFIDENCES = ("possible", "likely", "certain")
_FORMATS = ("text", "json", "sarif")


_EPILOG = """\
text output, one line per finding (cell N is the 0-based cell index, line counts within it):
  NOTEBOOK: cell N line L: RULE (CONFIDENCE) [in FIELD, when not the cell's source]
  NOTEBOOK: notebook metadata line L: RULE (CONFIDENCE) in FIELD
  FILE:LINE:COLUMN: RULE (CONFIDENCE)
errors go to stderr as 'PATH: error: MESSAGE', followed by a summary line.

exposed keys (in a saved output, an exported file, or git history) end their line with
  '; exposed: rotate it: revoke it at PROVIDER and issue a new one: URL'

--history [PATH] scans every blob git holds (every ref; --since/--until narrow it), each once,
and names the commit that introduced each key and whether HEAD still holds it; the text report
then ends with the keys to rotate, by variable name and provider. See docs/HISTORY.md.

exit status: 0 nothing found, 1 findings, 2 usage/config error or any file not scanned
(2 wins over 1: the scan was incomplete).
"""


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected 0 or more, got {value}")
    return value


def _positive_int(text: str) -> int:
    value = _non_negative_int(text)
    if value == 0:
        raise argparse.ArgumentTypeError("expected a positive number")
    return value


def _add_history_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--history``, ``--since`` and ``--until`` to the ``scan`` parser (here, not in
    ``history.py``: a plain ``scan`` then never imports the history module)."""
    group = parser.add_argument_group("git history (scan --history [PATH])")
    group.add_argument(
        "--history",
        action="store_true",
        help="scan every blob reachable from every ref of the repository at PATH (default: .), "
        "each distinct blob once, and name the commit that introduced each key",
    )
    group.add_argument("--since", metavar="REF", help="with --history: only commits not reachable from REF")
    group.add_argument("--until", metavar="REF", help="with --history: only commits reachable from REF (default: all refs)")


def add_parser(subparsers) -> None:
    """Register ``scan`` with the top-level parser."""
    parser = subparsers.add_parser(
        "scan",
        help="report the secrets in notebooks and other files",
        description=(
            "Report API keys and other secrets in notebooks (every cell, output, traceback and "
            "metadata) and text files. Exit 0 when clean, 1 on findings, 2 when any file could not "
            "be scanned or on a usage error. Reports hold a SHA-256 of each secret, never the secret."
        ),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "paths", nargs="*", metavar="PATH",
        help="files or directories to scan; '-' reads standard input (with --history: the repository, default .)",
    )
    parser.add_argument("--format", choices=_FORMATS, default="text", help="report format (default: text)")
    parser.add_argument(
        "--min-confidence",
        choices=_CONFIDENCES,
        default=None,
        help="report findings at least this sure (default: the config's min-confidence, else 'possible')",
    )
    parser.add_argument("--baseline", metavar="FILE", help="ignore the secrets whose fingerprints this file lists (a JSON report or baseline)")
    parser.add_argument(
        "--write-baseline",
        metavar="FILE",
        help="write the fingerprints of everything found to FILE and exit 0 (2 if a file could not be scanned)",
    )
    parser.add_argument(
        "--jobs", "-j", type=_non_negative_int, default=1, metavar="N",
        help="scan with N processes (default: 1; 0: one per CPU)",
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--config", metavar="PYPROJECT", help="read [tool.ipykeyguard] from this pyproject.toml")
    source.add_argument("--isolated", action="store_true", help="ignore every configuration file")
    parser.add_argument(
        "--max-file-size", type=_positive_int, default=None, metavar="BYTES",
        help="report larger files as not scanned (exit 2) (default: the config's, else 50 MiB)",
    )
    _add_history_arguments(parser)
    parser.set_defaults(func=run)


# -- configuration ------------------------------------------------------------------------------


def _config_start(paths: Sequence[str]) -> Path:
    """Where to look for pyproject.toml: the deepest folder holding every scanned path."""
    folders = []
    for given in paths:
        if given == "-":
            continue
        p = Path(given).absolute()
        folders.append(str(p if p.is_dir() else p.parent))
    if not folders:
        return Path.cwd()
    try:
        return Path(os.path.commonpath(folders))
    except ValueError:  # different drives on Windows
        return Path.cwd()


def build_config(args: argparse.Namespace) -> "Config":
    """The configuration for this run: a config file (or none), then command-line overrides.

    Raises:
        CLIError: the config or baseline file is unreadable or malformed (exit 2).
    """
    from .app import CLIError
    from ..engine.config import Config, ConfigError, load_baseline, load_config
    from ..engine.findings import Confidence

    try:
        if args.isolated:
            config = Config(root=Path.cwd())
        elif args.config:
            if not Path(args.config).is_file():
                raise ConfigError(f"{args.config}: no such config file")
            config = load_config(pyproject=args.config)
        else:
            config = load_config(_config_start(args.paths))
        changes: dict = {}
        if args.min_confidence is not None:
            changes["min_confidence"] = Confidence.parse(args.min_confidence)
        if args.max_file_size is not None:
            changes["max_file_size"] = args.max_file_size
        if args.baseline:
            changes["allow"] = config.allow | load_baseline(args.baseline)
        return config.replace(**changes) if changes else config
    except ConfigError as exc:
        raise CLIError(str(exc)) from None


# -- scanning one file --------------------------------------------------------------------------


@dataclass
class FileOutcome:
    """What scanning one target gave: findings, or an error, or "binary, not scanned"."""

    path: str
    findings: list["ReportFinding"] = field(default_factory=list)
    error: "ReportError | None" = None
    binary: bool = False


def scan_target(target: "Target", scanner: "Scanner", stdin: BinaryIO | None = None) -> FileOutcome:
    """Read and scan one file. Never raises for a bad file: the problem becomes ``error``.

    Args:
        target: The file (or standard input).
        scanner: The scanner (its config supplies the threshold, allowlist and size limit).
        stdin: The stream for ``"-"``.

    Returns:
        The findings (no plaintext), or the reason the file could not be scanned.
    """
    from .files import FileReadError, read_target
    from ..reports import ReportError, ReportFinding
    from ..engine.scan import notebook_findings

    try:
        loaded = read_target(target, max_file_size=scanner.config.max_file_size, stdin=stdin)
        if loaded.kind == "binary":
            return FileOutcome(target.path, binary=True)
        positions: list = []
        if loaded.notebook is not None:
            located = [(leaf, f) for leaf, in_leaf in notebook_findings(loaded.notebook, scanner) for f in in_leaf]
            found = [f for _leaf, f in located]
            if located:
                positions = _file_positions(loaded, located)
        else:
            found = scanner.scan_text(loaded.text or "")
    except FileReadError as exc:
        return FileOutcome(target.path, error=ReportError(exc.path, exc.message))
    except RecursionError:
        return FileOutcome(target.path, error=ReportError(target.path, "nested too deeply to scan"))
    except Exception as exc:  # noqa: BLE001 - fail closed: a crash must not read as "findings" or "clean"
        # The exception text could quote file content, so only its type is reported.
        message = f"internal error while scanning ({type(exc).__name__}); please report this"
        return FileOutcome(target.path, error=ReportError(target.path, message))
    positions = positions or [None] * len(found)
    return FileOutcome(target.path, [ReportFinding.from_finding(target.path, f, at) for f, at in zip(found, positions)])


def _file_positions(loaded, located: list) -> list:
    """Where each notebook finding sits in the file's JSON text (``None`` where unknown)."""
    from ..transforms.notebook import file_positions

    try:
        text = loaded.raw.decode("utf-8")
        return file_positions(text, loaded.notebook, [(leaf, f.start) for leaf, f in located])
    except (UnicodeDecodeError, AttributeError):  # read from a notebook that was not UTF-8 bytes
        return [None] * len(located)


_worker_scanner: "Scanner | None" = None


def _init_worker(config: "Config") -> None:
    global _worker_scanner
    from ..engine.scan import Scanner

    _worker_scanner = Scanner(config)


def _scan_in_worker(target: "Target") -> FileOutcome:
    assert _worker_scanner is not None, "worker not initialised"
    return scan_target(target, _worker_scanner)


def _scan_all(targets: list["Target"], scanner: "Scanner", jobs: int, stdin: BinaryIO | None) -> list[FileOutcome]:
    """Scan every target, in order; with a process pool when ``jobs`` > 1 and it can help."""
    on_disk = [t for t in targets if not t.is_stdin]
    if jobs == 0:
        jobs = os.cpu_count() or 1
    jobs = min(jobs, len(on_disk))
    if jobs <= 1:
        return [scan_target(t, scanner, stdin) for t in targets]

    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    from .app import CLIError

    chunksize = max(1, len(on_disk) // (jobs * 4))
    try:
        with ProcessPoolExecutor(max_workers=jobs, initializer=_init_worker, initargs=(scanner.config,)) as pool:
            pooled = iter(pool.map(_scan_in_worker, on_disk, chunksize=chunksize))
            # Standard input is ours alone: read it here, keep every result in command-line order.
            return [scan_target(t, scanner, stdin) if t.is_stdin else next(pooled) for t in targets]
    except BrokenProcessPool:
        # A worker died (killed, out of memory): the scan is incomplete, never "clean".
        raise CLIError("a worker process died; the scan is incomplete (try --jobs 1)") from None


def scan_paths(
    paths: Sequence[str], config: "Config", *, jobs: int = 1, stdin: BinaryIO | None = None
) -> "ScanReport":
    """Scan files and directories and gather one report.

    Args:
        paths: Files, directories or ``"-"``.
        config: Settings (threshold, exclude patterns, allowlist, rules, size limit).
        jobs: Worker processes (1: none; 0: one per CPU).
        stdin: The stream for ``"-"`` (default: ``sys.stdin.buffer``).

    Returns:
        The report; its ``exit_code`` is the command's.
    """
    from .files import discover
    from ..reports import ReportError, RuleInfo, ScanReport
    from ..engine.scan import scanner_for

    scanner = scanner_for(config)
    found = discover(paths, config)
    report = ScanReport(
        errors=[ReportError(e.path, e.message) for e in found.errors],
        skipped_links=found.skipped_links,
        excluded=found.excluded,
        skipped_secret_stores=[t.path for t in found.secret_stores],
        min_confidence=config.min_confidence,
        rules=[RuleInfo(r.id, r.description, r.confidence, r.env) for r in scanner.rules],
    )
    for outcome in _scan_all(found.targets, scanner, jobs, stdin):
        if outcome.error is not None:
            report.errors.append(outcome.error)
        elif outcome.binary:
            report.skipped_binary.append(outcome.path)
        else:
            report.files_scanned += 1
            report.findings.extend(outcome.findings)
    return report


def _write_baseline(path: str, report: "ScanReport") -> None:
    import json

    from .app import CLIError

    entries = sorted({(f.path, f.rule, f.hash) for f in report.findings})
    document = {
        "version": 1,
        "findings": [{"path": p, "rule": r, "hash": h} for p, r, h in entries],
    }
    try:
        Path(path).write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    except OSError as exc:
        raise CLIError(f"{path}: cannot write baseline: {exc.strerror or exc}") from None


def run(args: argparse.Namespace) -> int:
    """Run ``ipykeyguard scan``; returns the exit status (0 clean, 1 findings, 2 errors)."""
    from .app import CLIError

    if getattr(args, "history", False):
        from . import history

        return history.run(args)
    if getattr(args, "since", None) or getattr(args, "until", None):
        raise CLIError("--since and --until go with --history")
    if not args.paths:
        raise CLIError("the following arguments are required: PATH")
    config = build_config(args)
    report = scan_paths(args.paths, config, jobs=args.jobs)
    if report.findings:  # the exposure ledger (never raises; sqlite3 is imported only here)
        from ..storage import ledger

        ledger.record_findings("scan", "found", report.findings)
    return emit(report, args)


def emit(report: "ScanReport", args: argparse.Namespace) -> int:
    """Print ``report`` in ``args.format``, write ``--write-baseline`` if asked; return the exit status."""
    from ..reports import render

    out, err = render(report, args.format)
    if out:
        sys.stdout.write(out)
        sys.stdout.flush()
    if err:
        sys.stderr.write(err)
    if args.write_baseline:
        _write_baseline(args.write_baseline, report)
        return 2 if report.errors else 0
    return report.exit_code
