"""The JSON report: one object ``{"findings": [...], "errors": [...], "summary": {...}}``.

Each finding is ``{"path", "cell", "field", "line", "column", "rule", "confidence", "hash",
"env"}`` (``cell`` is the 0-based cell index or null, ``hash`` the SHA-256 hex of the secret).
The file is also a valid baseline (``--baseline`` reads the ``hash`` of each finding).
"""

from __future__ import annotations

import json

from . import ScanReport

__all__ = ["render", "to_dict"]


def to_dict(report: ScanReport) -> dict:
    """The report as a JSON-ready dict."""
    return {
        "findings": [f.to_dict() for f in report.findings],
        "errors": [e.to_dict() for e in report.errors],
        "summary": report.summary(),
    }


def render(report: ScanReport) -> str:
    """The report as indented JSON text with a final newline."""
    return json.dumps(to_dict(report), indent=2) + "\n"
