"""The human- and grep-readable report.

One line per finding on stdout::

    notebook.ipynb: cell 3 line 2: openai-api-key (certain)
    notebook.ipynb: cell 4 line 1: github-pat-classic (certain) in outputs[0].text
    notebook.ipynb: notebook metadata line 1: npm-access-token (certain) in metadata.widgets...
    settings.py:12:5: aws-access-key-id (likely)

``cell N`` is the 0-based cell index (the same number as ``"cell"`` in the JSON report) and
``line`` counts within that cell's field; ``in <field>`` is added for anything but a cell's
source. Text files use the compiler-style ``path:line:column:`` that editors and grep
understand. Errors go to stderr as ``path: error: message``, then one summary line.
"""

from __future__ import annotations

from . import ReportFinding, ScanReport

__all__ = ["render", "format_finding"]


def format_finding(finding: ReportFinding) -> str:
    """The one-line text form of ``finding``."""
    verdict = f"{finding.rule} ({finding.confidence})"
    if not finding.in_notebook:
        return f"{finding.path}:{finding.line}:{finding.column}: {verdict}"
    where = "notebook metadata" if finding.cell is None else f"cell {finding.cell}"
    line = f"{finding.path}: {where} line {finding.line}: {verdict}"
    if finding.field != "source":
        line += f" in {finding.field}"
    return line


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" + ("" if count == 1 else "s")


def summary_line(report: ScanReport) -> str:
    """``ipykeyguard: 3 findings in 2 of 5 files scanned; 1 error; ...`` (counts only)."""
    parts = [
        f"{_plural(len(report.findings), 'finding')} in {report.files_with_findings} of "
        f"{_plural(report.files_scanned, 'file')} scanned (min confidence {report.min_confidence})"
    ]
    if report.errors:
        parts.append(f"{_plural(len(report.errors), 'file')} could not be scanned")
    if report.skipped_binary:
        parts.append(f"{len(report.skipped_binary)} binary skipped")
    if report.skipped_links:
        parts.append(f"{_plural(len(report.skipped_links), 'symlink')} not followed")
    if report.excluded:
        parts.append(f"{len(report.excluded)} excluded by config")
    if report.skipped_secret_stores:
        parts.append(f"{_plural(len(report.skipped_secret_stores), 'secret store')} skipped")
    return "ipykeyguard: " + "; ".join(parts)


def render(report: ScanReport) -> tuple[str, str]:
    """The text report.

    Returns:
        ``(stdout, stderr)``: finding lines; error lines and the summary line.
    """
    out = "".join(format_finding(f) + "\n" for f in report.findings)
    err = "".join(f"{e.path}: error: {e.message}\n" for e in report.errors)
    err += "".join(f"{path}: skipped: secret store\n" for path in report.skipped_secret_stores)
    err += summary_line(report) + "\n"
    return out, err
