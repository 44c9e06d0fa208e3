"""Traitlets shared by the adapters (kernel, server, nbconvert); imports traitlets only."""

from __future__ import annotations

from traitlets import Enum, TraitError

from .engine.findings import Confidence


class QuietEnum(Enum):
    """An ``Enum`` trait whose error never repeats the value given: traitlets' own message
    quotes it (``..., not the str 'sk-...'``), and a key pasted into the wrong setting would
    then reach a log or a traceback."""

    def error(self, obj, value, error=None, info=None):  # noqa: D102 - traitlets' signature
        owner = type(obj).__name__ if obj is not None else "a configurable"
        choices = ", ".join(repr(v) for v in (self.values or ()))
        raise TraitError(
            f"The {self.name!r} trait of {owner} expected one of {choices}; "
            "the value given is not shown (it could be a secret)."
        )


def confidence_trait(help: str, default: str = "likely") -> Enum:
    """A configurable ``possible | likely | certain`` threshold (``c.X.min_confidence``)."""
    return QuietEnum([str(c) for c in Confidence], default_value=default, help=help).tag(config=True)
