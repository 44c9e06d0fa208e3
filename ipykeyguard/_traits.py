"""Traitlets shared by the adapters (kernel, server, nbconvert); imports traitlets only."""

from __future__ import annotations

from traitlets import Enum, List, TraitError, Unicode

from .engine.findings import Confidence


class _Quiet:
    """Mixin for traits whose validation error never repeats the value given: traitlets' own
    message quotes it (``..., not the str 'sk-...'``), and a key pasted into the wrong setting
    would then reach a log or a traceback."""

    def error(self, obj, value, error=None, info=None):  # noqa: D102 - traitlets' signature
        owner = type(obj).__name__ if obj is not None else "a configurable"
        raise TraitError(
            f"The {self.name!r} trait of {owner} expected {self.info()}; "
            "the value given is not shown (it could be a secret)."
        )


class QuietEnum(_Quiet, Enum):
    """An ``Enum`` trait whose error does not quote the value (see :class:`_Quiet`)."""


class QuietUnicode(_Quiet, Unicode):
    """A ``Unicode`` trait whose error does not quote the value (see :class:`_Quiet`)."""


class QuietList(_Quiet, List):
    """A ``List`` trait whose error does not quote the value (see :class:`_Quiet`); give it a
    quiet element trait too, e.g. ``QuietList(QuietUnicode())``."""


def confidence_trait(help: str, default: str = "likely") -> Enum:
    """A configurable ``possible | likely | certain`` threshold (``c.X.min_confidence``)."""
    return QuietEnum([str(c) for c in Confidence], default_value=default, help=help).tag(config=True)
