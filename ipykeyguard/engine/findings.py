"""Findings: what the scanner reports about one secret, without ever holding it in plain view.

A :class:`Finding` names the rule that matched, how sure the match is, where it is, a
SHA-256 fingerprint of the secret and a mask to show in its place. The secret itself is kept
in a :class:`Secret` box whose ``repr``/``str`` are masked, so that a finding can be logged,
printed, pickled into a report or put in an exception message without leaking the key.
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass, field

__all__ = ["Confidence", "Secret", "Location", "Finding", "fingerprint", "mask_for"]


class Confidence(enum.IntEnum):
    """How sure a finding is. Ordered: ``POSSIBLE < LIKELY < CERTAIN``."""

    POSSIBLE = 1
    """High entropy alone, or a weak shape."""
    LIKELY = 2
    """A provider's format, or a high-entropy value bound to a secret-like name."""
    CERTAIN = 3
    """A structure check (checksum, decoding) proved the format."""

    def __str__(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, value: "str | int | Confidence") -> "Confidence":
        """Return the confidence named by ``value`` (``"likely"``, ``2`` or a member).

        Raises:
            ValueError: ``value`` names no confidence level.
        """
        if isinstance(value, Confidence):
            return value
        if isinstance(value, int):
            return cls(value)
        try:
            return cls[str(value).strip().upper()]
        except KeyError:
            names = ", ".join(str(c) for c in cls)
            # The value is not echoed: a key pasted into the wrong setting would end up in a log.
            raise ValueError(f"unknown confidence level (expected one of: {names})") from None


def fingerprint(secret: str) -> str:
    """SHA-256 hex digest of the secret's UTF-8 bytes: safe to store, compare and report."""
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def mask_for(name: str) -> str:
    """The text shown in place of a secret: names the variable or rule, no character of the key."""
    return f"[secret:{name}]"


class Secret:
    """A secret value in a box: ``repr`` and ``str`` show a mask, never the value.

    Call :meth:`reveal` at the single point where the plaintext is really needed (writing it to
    the secret store, setting ``os.environ``, splicing it out of a text).
    """

    __slots__ = ("_value", "_fingerprint")

    def __init__(self, value: str) -> None:
        self._value = value
        self._fingerprint = fingerprint(value)

    def reveal(self) -> str:
        """Return the plaintext secret."""
        return self._value

    @property
    def fingerprint(self) -> str:
        """SHA-256 hex of the secret."""
        return self._fingerprint

    def __len__(self) -> int:
        return len(self._value)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Secret):
            return self._value == other._value
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._fingerprint)

    def __repr__(self) -> str:
        return f"Secret(sha256={self._fingerprint[:12]}…)"

    __str__ = __repr__

    def __reduce__(self):  # pickling for --jobs worker processes
        return (Secret, (self._value,))


@dataclass(frozen=True)
class Location:
    """Where a finding is.

    Attributes:
        cell: Index of the notebook cell, or ``None`` for plain text and notebook metadata.
        field: Path of the text inside the notebook, e.g. ``"source"``,
            ``"outputs[2].data.text/html"``, ``"metadata.widgets"``; ``None`` for plain text.
        line: 1-based line of the secret's first character within that text.
        column: 1-based column of the secret's first character.
    """

    cell: int | None = None
    field: str | None = None
    line: int = 1
    column: int = 1


@dataclass(frozen=True)
class Finding:
    """One secret found by one rule.

    Attributes:
        rule: Id of the rule that matched, e.g. ``"openai-api-key"``.
        confidence: How sure the match is.
        start: Offset of the secret's first character in the scanned text.
        end: Offset one past the secret's last character.
        secret: The secret, boxed (its repr is masked).
        env: The environment-variable name the secret should live under.
        location: Cell, field, line and column.
    """

    rule: str
    confidence: Confidence
    start: int
    end: int
    secret: Secret = field(compare=False)
    env: str
    location: Location = field(default_factory=Location)

    @property
    def fingerprint(self) -> str:
        """SHA-256 hex of the secret."""
        return self.secret.fingerprint

    @property
    def mask(self) -> str:
        """What replaces the secret in outputs and other non-code text."""
        return mask_for(self.env or self.rule)

    def with_location(self, location: Location) -> "Finding":
        """A copy of this finding placed at ``location``."""
        return Finding(self.rule, self.confidence, self.start, self.end, self.secret, self.env, location)

    def to_dict(self) -> dict:
        """A JSON-ready dict with no plaintext: rule, confidence, location and hash."""
        loc = self.location
        return {
            "cell": loc.cell,
            "field": loc.field,
            "line": loc.line,
            "column": loc.column,
            "rule": self.rule,
            "confidence": str(self.confidence),
            "env": self.env,
            "hash": self.fingerprint,
        }
