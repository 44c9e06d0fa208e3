"""Traitlets shared by the adapters (kernel, server, nbconvert); imports traitlets only."""

from __future__ import annotations

from traitlets import Enum

from .engine.findings import Confidence


def confidence_trait(help: str, default: str = "likely") -> Enum:
    """A configurable ``possible | likely | certain`` threshold (``c.X.min_confidence``)."""
    return Enum([str(c) for c in Confidence], default_value=default, help=help).tag(config=True)
