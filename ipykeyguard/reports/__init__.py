"""Scan reports: one plaintext-free data model, one module per output format.

A :class:`ScanReport` holds what a scan found in a set of files: :class:`ReportFinding` rows
(path, cell, field, line, column, rule, confidence, SHA-256 of the secret, environment
variable name - never the secret or any part of it), :class:`ReportError` rows for files that
could not be read, and counts. :func:`render` turns it into ``text``, ``json`` or ``sarif``.

Exit codes (:attr:`ScanReport.exit_code`): 2 when any file could not be read, else 1 when
anything was found, else 0. An unreadable file wins over findings because the scan is then
incomplete: fixing the findings alone must not turn the run green.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Sequence

from ..engine.findings import Confidence

if TYPE_CHECKING:  # pragma: no cover
    from ..engine.findings import Finding
    from ..engine.rotation import Rotation

__all__ = ["FORMATS", "EXPORT_SUFFIXES", "exposure_of", "ReportFinding", "ReportError", "RuleInfo", "HistoryStats", "ScanReport", "render"]

#: Output formats, each implemented by the module of the same name in this package.
FORMATS = ("text", "json", "sarif")


@dataclass(frozen=True)
class ReportFinding:
    """One finding in one file, safe to print: it holds the secret's hash, not the secret.

    Attributes:
        path: The file, as given on the command line (``"-"`` for standard input).
        cell: Notebook cell index (0-based), or ``None`` for text files and notebook metadata.
        field: Where in the notebook (``"source"``, ``"outputs[0].text"``, ...); ``None`` for text files.
        line: 1-based line within the file (text) or within the field (notebooks).
        column: 1-based column of the secret's first character.
        rule: Rule id.
        confidence: How sure the match is.
        hash: SHA-256 hex of the secret.
        env: The environment variable the secret belongs in.
        file_line: For notebooks, the 1-based line of the ``.ipynb`` file's JSON text that holds
            the secret (what tools reading the file as text, such as code scanning, point at);
            for text files the same as ``line``; ``None`` where it could not be placed.
        file_column: The column on ``file_line`` (code points), likewise.
        exposed: Why the key counts as already exposed (``"git history"``, ``"saved output"``,
            ``"exported file"``), or ``None``: an exposed key must be rotated, not just removed.
        commit: For a history finding, the full sha of the commit that introduced the secret.
        in_head: For a history finding, whether the secret is still in HEAD's tree.
    """

    path: str
    cell: int | None
    field: str | None
    line: int
    column: int
    rule: str
    confidence: Confidence
    hash: str
    env: str
    file_line: int | None = None
    file_column: int | None = None
    exposed: str | None = None
    commit: str | None = None
    in_head: bool | None = None

    @classmethod
    def from_finding(
        cls,
        path: str,
        finding: "Finding",
        file_position: tuple[int, int] | None = None,
        *,
        exposed: str | None = None,
    ) -> "ReportFinding":
        """The report row for ``finding`` found in ``path`` (the secret itself is dropped).

        Args:
            path: The file the finding is in, as shown in reports.
            finding: The finding.
            file_position: For a notebook finding, its ``(line, column)`` in the file's text
                (:func:`ipykeyguard.transforms.notebook.file_positions`).
            exposed: Why the key is already exposed; by default a saved output or widget state,
                or an exported file (see :func:`exposure_of`), else ``None``.
        """
        loc = finding.location
        if loc.field is None:
            file_position = (loc.line, loc.column)
        file_line, file_column = file_position if file_position else (None, None)
        return cls(
            path, loc.cell, loc.field, loc.line, loc.column, finding.rule, finding.confidence,
            finding.fingerprint, finding.env, file_line, file_column,
            exposed or exposure_of(path, loc.field),
        )

    @property
    def rotate(self) -> "Rotation | None":
        """Where to rotate the key when it is exposed, else ``None``."""
        if self.exposed is None:
            return None
        from ..engine.rotation import rotation_for

        return rotation_for(self.rule)

    @property
    def in_notebook(self) -> bool:
        """True when the finding was located inside a notebook (it has a field path)."""
        return self.field is not None

    def to_dict(self) -> dict:
        """The JSON object for this finding."""
        return {
            "path": self.path,
            "cell": self.cell,
            "field": self.field,
            "line": self.line,
            "column": self.column,
            "rule": self.rule,
            "confidence": str(self.confidence),
            "hash": self.hash,
            "env": self.env,
            "file_line": self.file_line,
            "file_column": self.file_column,
            "exposed": self.exposed,
            "rotate": None if self.rotate is None else self.rotate.to_dict(),
            **({"commit": self.commit, "in_head": self.in_head} if self.commit is not None else {}),
        }


#: Files that are exports of notebooks (nbconvert's HTML, LaTeX, reST, slides): what they hold
#: was published or shared, so a key found in them is exposed.
EXPORT_SUFFIXES = (".html", ".htm", ".tex", ".rst", ".slides.html")


def exposure_of(path: str, field: str | None) -> str | None:
    """Why a key found at ``path`` (and notebook ``field``) is already exposed, or ``None``.

    A key in a saved output or a widget's saved state was run and printed, and has usually been
    shared with the notebook; a key in an exported file was published. Both must be rotated.
    Keys in code cells and plain source files are not called exposed here: ``clean`` moves them
    before they are committed (``scan --history`` says when one was committed anyway).
    """
    if field is not None and (field.startswith("outputs[") or field.startswith("metadata.widgets")):
        return "saved output"
    if path.lower().endswith(EXPORT_SUFFIXES):
        return "exported file"
    return None


@dataclass(frozen=True)
class ReportError:
    """A file that could not be scanned, and why (the reason never quotes its content)."""

    path: str
    message: str

    def to_dict(self) -> dict:
        """The JSON object for this error."""
        return {"path": self.path, "message": self.message}


@dataclass(frozen=True)
class RuleInfo:
    """What a report says about a rule in force (SARIF lists every rule it checked)."""

    id: str
    description: str
    confidence: Confidence
    env: str


@dataclass(frozen=True)
class HistoryStats:
    """What ``scan --history`` read: commits walked, distinct blobs scanned, the HEAD it compared
    with, and the repository's top folder (finding paths are relative to it)."""

    commits: int
    blobs_scanned: int
    head: str | None
    root: str | None = None

    def to_dict(self) -> dict:
        """The JSON object for these counts."""
        return {"commits": self.commits, "blobs_scanned": self.blobs_scanned, "head": self.head, "root": self.root}


@dataclass
class ScanReport:
    """Everything one ``ipykeyguard scan`` run found.

    Attributes:
        findings: Findings at or above the threshold, in file order.
        errors: Files that could not be read or listed, missing paths, oversized files.
        files_scanned: Files read and scanned (notebooks and text).
        skipped_binary: Files not scanned because they are binary (a NUL byte early on).
        skipped_links: Symbolic links met while recursing, not followed.
        excluded: Paths skipped by the config's ``exclude`` patterns (named or found).
        skipped_secret_stores: Files whose job is to hold secrets (``.env``, ``.envrc``, ...),
            not scanned (reported as ``skipped: secret store``).
        min_confidence: The threshold the findings passed.
        rules: The rules in force.
        history: For ``scan --history``, what was read from git (else ``None``).
    """

    findings: list[ReportFinding] = field(default_factory=list)
    errors: list[ReportError] = field(default_factory=list)
    files_scanned: int = 0
    skipped_binary: list[str] = field(default_factory=list)
    skipped_links: list[str] = field(default_factory=list)
    excluded: list[str] = field(default_factory=list)
    skipped_secret_stores: list[str] = field(default_factory=list)
    min_confidence: Confidence = Confidence.POSSIBLE
    rules: Sequence[RuleInfo] = ()
    history: "HistoryStats | None" = None

    @property
    def to_rotate(self) -> list[tuple[str, str, str]]:
        """The exposed keys, once each: ``(variable name, provider name, rotation URL)``, sorted.

        Names and providers only, never a value: this is the list a person works through.
        """
        seen: dict[tuple[str, str, str], None] = {}
        for f in self.findings:
            rotation = f.rotate
            if rotation is not None:
                seen[(f.env, rotation.name, rotation.url)] = None
        return sorted(seen)

    @property
    def exit_code(self) -> int:
        """2 if any file could not be scanned, else 1 if anything was found, else 0."""
        if self.errors:
            return 2
        return 1 if self.findings else 0

    @property
    def files_with_findings(self) -> int:
        """How many distinct files hold at least one finding."""
        return len({f.path for f in self.findings})

    def summary(self) -> dict:
        """Counts for the JSON report and the text summary line."""
        return {
            "files_scanned": self.files_scanned,
            "files_with_findings": self.files_with_findings,
            "findings": len(self.findings),
            "errors": len(self.errors),
            "skipped_binary": len(self.skipped_binary),
            "skipped_links": len(self.skipped_links),
            "excluded": len(self.excluded),
            "skipped_secret_stores": len(self.skipped_secret_stores),
            "min_confidence": str(self.min_confidence),
            "exit_code": self.exit_code,
            "to_rotate": [{"env": env, "provider": name, "url": url} for env, name, url in self.to_rotate],
            **({"history": self.history.to_dict()} if self.history is not None else {}),
        }


def render(report: ScanReport, fmt: str) -> tuple[str, str]:
    """Format ``report``.

    Args:
        report: What the scan found.
        fmt: One of :data:`FORMATS`.

    Returns:
        ``(stdout, stderr)`` texts; either may be empty.

    Raises:
        ValueError: ``fmt`` is not a known format.
    """
    if fmt == "text":
        from . import text

        return text.render(report)
    if fmt == "json":
        from . import json

        return json.render(report), ""
    if fmt == "sarif":
        from . import sarif

        return sarif.render(report), ""
    raise ValueError(f"unknown report format {fmt!r} (expected one of: {', '.join(FORMATS)})")
