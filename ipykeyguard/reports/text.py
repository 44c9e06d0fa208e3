"""The human- and grep-readable report.

One line per finding on stdout::

    notebook.ipynb: cell 3 line 2: openai-api-key (certain)
    notebook.ipynb: cell 4 line 1: github-pat-classic (certain) in outputs[0].text
    notebook.ipynb: notebook metadata line 1: npm-access-token (certain) in metadata.widgets...
    settings.py:12:5: aws-access-key-id (likely)

A key that is already exposed (found in git history, a saved output or an exported file) gets
``; exposed: rotate it: revoke it at <provider> and issue a new one: <url>``; a history finding
also names the commit that introduced it and whether HEAD still holds it::

    nb.ipynb: cell 0 line 1: openai-api-key (certain); introduced in <full sha>; removed since;
        exposed: rotate it: revoke it at OpenAI and issue a new one: https://...

(one line). When a history scan found keys, stdout ends with the keys to rotate, by variable
name and provider, never by value.

``cell N`` is the 0-based cell index (the same number as ``"cell"`` in the JSON report) and
``line`` counts within that cell's field; ``in <field>`` is added for anything but a cell's
source. Text files use the compiler-style ``path:line:column:`` that editors and grep
understand. Errors go to stderr as ``path: error: message``, then one summary line.
"""

from __future__ import annotations

from ..engine.rotation import EXPOSED
from . import ReportFinding, ScanReport

__all__ = ["render", "format_finding"]


def _place_and_verdict(finding: ReportFinding) -> str:
    verdict = f"{finding.rule} ({finding.confidence})"
    if not finding.in_notebook:
        return f"{finding.path}:{finding.line}:{finding.column}: {verdict}"
    where = "notebook metadata" if finding.cell is None else f"cell {finding.cell}"
    line = f"{finding.path}: {where} line {finding.line}: {verdict}"
    if finding.field != "source":
        line += f" in {finding.field}"
    return line


def format_finding(finding: ReportFinding) -> str:
    """The one-line text form of ``finding``, with the exposure verdict when it is exposed."""
    line = _place_and_verdict(finding)
    if finding.commit is not None:
        line += f"; introduced in {finding.commit}; " + ("still in HEAD" if finding.in_head else "removed since")
    rotation = finding.rotate
    if rotation is not None:
        line += f"; {EXPOSED}: {rotation.hint}"
    return line


def rotation_list(report: ScanReport) -> str:
    """The closing list of a history scan: each exposed key by variable name and provider."""
    rows = report.to_rotate
    if not rows:
        return ""
    lines = [f"\nkeys to rotate ({len(rows)}): each was exposed; removing it from the files does not un-leak it"]
    lines += [f"  {env} ({name}): {url}" for env, name, url in rows]
    return "\n".join(lines) + "\n"


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" + ("" if count == 1 else "s")


def summary_line(report: ScanReport) -> str:
    """``ipykeyguard: 3 findings in 2 of 5 files scanned; 1 error; ...`` (counts only)."""
    history = report.history
    if history is not None:
        head = f", HEAD {history.head[:12]}" if history.head else ""
        where = f"{_plural(history.commits, 'commit')} ({_plural(history.blobs_scanned, 'distinct blob')} scanned{head})"
        parts = [
            f"{_plural(len(report.findings), 'key')} in git history of {where} (min confidence {report.min_confidence})"
        ]
    else:
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
    if report.history is not None:
        out += rotation_list(report)
    err = "".join(f"{e.path}: error: {e.message}\n" for e in report.errors)
    err += "".join(f"{path}: skipped: secret store\n" for path in report.skipped_secret_stores)
    err += summary_line(report) + "\n"
    return out, err
