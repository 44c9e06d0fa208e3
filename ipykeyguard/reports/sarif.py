"""The SARIF 2.1.0 report, for GitHub code scanning and other SARIF consumers.

One run; ``tool.driver.rules`` lists every rule in force (id, description, default level,
precision). Each result has its ``ruleId``/``ruleIndex``, a ``level`` (``error`` for certain
and likely findings, ``warning`` for possible ones), a message naming the rule, place and
environment variable (never the secret), and ``partialFingerprints["secretSha256/v1"]``, the
SHA-256 of the secret, so that consumers can track a finding across commits.

Locations: the artifact URI is the path relative to ``%SRCROOT%`` (the working directory) when
the path given was relative, else an absolute ``file:`` URI. The region is always a line and
column of the file as text, because that is how consumers such as GitHub code scanning read
``startLine``: for a notebook, the line of the ``.ipynb`` JSON text that holds the secret. Which
cell and field that is, and the line and column inside the cell, are given by a logical location
and the result's ``properties`` (``cell``, ``field``, ``cellLine``, ``cellColumn``). Files that could not be read are tool
execution notifications of level ``error``, and ``executionSuccessful`` is false.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from urllib.parse import quote

from ..engine.findings import Confidence
from ..engine.rotation import EXPOSED, rotation_for
from . import ReportFinding, ScanReport

__all__ = ["render", "to_dict", "SARIF_SCHEMA_URI"]

SARIF_SCHEMA_URI = "https://json.schemastore.org/sarif-2.1.0.json"
SRCROOT = "%SRCROOT%"
FINGERPRINT_KEY = "secretSha256/v1"

_LEVEL = {Confidence.CERTAIN: "error", Confidence.LIKELY: "error", Confidence.POSSIBLE: "warning"}
# GitHub code scanning reads `precision` to rank alerts.
_PRECISION = {Confidence.CERTAIN: "very-high", Confidence.LIKELY: "high", Confidence.POSSIBLE: "medium"}


def _artifact(path: str) -> dict:
    if path == "-":
        return {"uri": quote("<stdin>")}
    p = Path(path)
    if p.is_absolute():
        return {"uri": p.as_uri()}
    return {"uri": quote(Path(os.path.normpath(path)).as_posix()), "uriBaseId": SRCROOT}


def _directory_uri(folder: Path) -> str:
    uri = folder.as_uri()
    return uri if uri.endswith("/") else uri + "/"  # a base URI must end with a slash


def _where(finding: ReportFinding) -> str:
    if not finding.in_notebook:
        return f"line {finding.line}"
    cell = "the notebook metadata" if finding.cell is None else f"cell {finding.cell}"
    return f"{cell} ({finding.field}, line {finding.line})"


def _region(finding: ReportFinding) -> dict:
    if finding.file_line is None:
        # Not placed in the file's text (should not happen for a parsed notebook): point at the
        # file's first line rather than at a cell's line number that means nothing in the file.
        return {"startLine": 1} if finding.in_notebook else {"startLine": finding.line, "startColumn": finding.column}
    region = {"startLine": finding.file_line}
    if finding.file_column is not None:
        region["startColumn"] = finding.file_column
    return region


def _result(finding: ReportFinding, rule_index: dict[str, int], descriptions: dict[str, str]) -> dict:
    description = descriptions.get(finding.rule, finding.rule)
    location: dict = {
        "physicalLocation": {
            "artifactLocation": _artifact(finding.path),
            "region": _region(finding),
        }
    }
    properties: dict = {"confidence": str(finding.confidence), "env": finding.env}
    rotation = finding.rotate
    advice = f"move it to the environment variable {finding.env} and read it from there."
    if rotation is not None:
        properties.update(exposed=finding.exposed, rotate=rotation.to_dict())
        advice = f"{EXPOSED} ({finding.exposed}): {rotation.hint}; then " + advice
    if finding.commit is not None:
        properties.update(commit=finding.commit, inHead=finding.in_head)
    if finding.in_notebook:
        properties.update(cellLine=finding.line, cellColumn=finding.column)
        cell = "metadata" if finding.cell is None else f"cells[{finding.cell}]"
        location["logicalLocations"] = [
            {
                "name": finding.field,
                "fullyQualifiedName": f"{cell}.{finding.field}",
                "kind": "element",
            }
        ]
        properties.update(cell=finding.cell, field=finding.field)
    result = {
        "ruleId": finding.rule,
        "level": _LEVEL[finding.confidence],
        "message": {
            "text": f"{description} in {_where(finding)}"
            + (f" (introduced in commit {finding.commit})" if finding.commit is not None else "")
            + f"; {advice}"
        },
        "locations": [location],
        "partialFingerprints": {FINGERPRINT_KEY: finding.hash},
        "properties": properties,
    }
    if finding.rule in rule_index:
        result["ruleIndex"] = rule_index[finding.rule]
    return result


def to_dict(report: ScanReport) -> dict:
    """The report as a SARIF 2.1.0 log (a JSON-ready dict)."""
    from .. import __version__

    rules = []
    rule_index: dict[str, int] = {}
    descriptions: dict[str, str] = {}
    for info in report.rules:
        rule_index[info.id] = len(rules)
        descriptions[info.id] = info.description
        rotation = rotation_for(info.id)
        help_text = (
            f"Keep it in the environment variable {info.env}, not in the notebook. If the key was "
            f"committed, printed into a saved output or exported, it is {EXPOSED}: {rotation.hint}."
        )
        rules.append(
            {
                "id": info.id,
                "shortDescription": {"text": info.description},
                "fullDescription": {
                    "text": f"{info.description}. Keep it in the environment variable {info.env}, not in the notebook."
                },
                "help": {
                    "text": help_text,
                    "markdown": (
                        f"Keep it in the environment variable `{info.env}`, not in the notebook. If the key was "
                        f"committed, printed into a saved output or exported, it is **{EXPOSED}**: revoke it at "
                        f"{rotation.name} and issue a new one ([rotate]({rotation.url}))."
                    ),
                },
                "helpUri": rotation.url,
                "defaultConfiguration": {"level": _LEVEL[info.confidence]},
                "properties": {
                    "rotate": rotation.to_dict(),
                    "confidence": str(info.confidence),
                    "precision": _PRECISION[info.confidence],
                    "tags": ["security", "secret"],
                },
            }
        )
    notifications = [
        {
            "level": "error",
            "message": {"text": error.message},
            "locations": [{"physicalLocation": {"artifactLocation": _artifact(error.path)}}],
        }
        for error in report.errors
    ]
    run = {
        "tool": {
            "driver": {
                "name": "ipykeyguard",
                "version": __version__,
                "semanticVersion": __version__,
                "rules": rules,
            }
        },
        # History paths are relative to the repository's top folder, plain scans' to the cwd.
        "originalUriBaseIds": {SRCROOT: {"uri": _directory_uri(Path(report.history.root) if report.history and report.history.root else Path.cwd())}},
        "invocations": [
            {
                "executionSuccessful": not report.errors,
                "toolExecutionNotifications": notifications,
            }
        ],
        "columnKind": "unicodeCodePoints",
        "results": [_result(f, rule_index, descriptions) for f in report.findings],
        "properties": {"summary": report.summary()},
    }
    if report.history is not None and report.history.head:
        run["versionControlProvenance"] = [{"repositoryUri": _directory_uri(Path(report.history.root or ".")), "revisionId": report.history.head}]
    return {"$schema": SARIF_SCHEMA_URI, "version": "2.1.0", "runs": [run]}


def render(report: ScanReport) -> str:
    """The report as SARIF JSON text with a final newline."""
    return json.dumps(to_dict(report), indent=2) + "\n"
