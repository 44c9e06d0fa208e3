"""Rotation advice: where each provider's exposed key is revoked or rotated.

A key that reached git history, a saved output or an exported file is *exposed*: cleaning the
file does not un-leak it, rotating it does. ``rotation.toml`` (shipped beside ``rules.toml``,
kept apart so that rules and advice change independently) maps rule ids to a provider's name
and the https page where its keys are revoked or rotated::

    [openai]
    name = "OpenAI"
    url = "https://platform.openai.com/api-keys"
    rules = ["openai-api-key"]

Rules not listed (generic rules, a user's own rules) get the ``[default]`` table's advice. The
file is validated on load (every table has a name, an https URL and a list of kebab-case rule
ids, each listed once); the test suite checks that every non-generic shipped rule is listed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping

from ._toml import loads as toml_loads, packaged_text

__all__ = ["Rotation", "RotationError", "RotationTable", "parse_rotation", "default_rotation", "rotation_for", "EXPOSED"]

#: The verdict every exposed finding carries, in every report format.
EXPOSED = "exposed: rotate it"

_ID_RE = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
_URL_RE = re.compile(r"^https://[A-Za-z0-9.-]+\.[A-Za-z]{2,}(?:[/?#][^\s\"'<>]*)?$")
_KNOWN_KEYS = {"name", "url", "rules"}


class RotationError(ValueError):
    """The rotation data is malformed. The message names the table and the file."""


@dataclass(frozen=True)
class Rotation:
    """How to rotate one provider's keys.

    Attributes:
        provider: The table's id in ``rotation.toml`` (``"openai"``; ``"default"`` for the fallback).
        name: The provider's name as reports show it (``"OpenAI"``).
        url: The https page where the key is revoked or rotated.
    """

    provider: str
    name: str
    url: str

    @property
    def hint(self) -> str:
        """``"revoke it at OpenAI and issue a new one: https://..."`` (names and a URL only)."""
        return f"revoke it at {self.name} and issue a new one: {self.url}"

    def to_dict(self) -> dict:
        """The JSON ``"rotate"`` object: ``{"provider", "name", "url", "hint"}``."""
        return {"provider": self.provider, "name": self.name, "url": self.url, "hint": self.hint}


@dataclass(frozen=True)
class RotationTable:
    """Rule id -> :class:`Rotation`, with a fallback for rules not listed."""

    by_rule: Mapping[str, Rotation]
    default: Rotation

    def for_rule(self, rule_id: str) -> Rotation:
        """The advice for ``rule_id`` (the default advice when the rule is not listed)."""
        return self.by_rule.get(rule_id, self.default)

    @property
    def providers(self) -> tuple[Rotation, ...]:
        """Every provider listed, once each, in file order."""
        return tuple({r.provider: r for r in self.by_rule.values()}.values())


def parse_rotation(text: str, where: str = "<string>", *, cached: bool = False) -> RotationTable:
    """Parse and validate rotation data (see the module docstring for the format).

    Args:
        text: The TOML document.
        where: Its name, for error messages.
        cached: Parse through the JSON cache of shipped data (:func:`~ipykeyguard.engine.dbcache.parsed_toml`).

    Returns:
        The table.

    Raises:
        RotationError: not TOML, no ``[default]`` table, a table without a name, a URL that is
            not https, an unknown field, a malformed rule id, or a rule id listed twice.
    """
    try:
        if cached:
            from .dbcache import parsed_toml

            doc = parsed_toml(text, toml_loads)
        else:
            doc = toml_loads(text)
    except ValueError as exc:  # tomllib.TOMLDecodeError
        raise RotationError(f"{where}: not valid TOML: {exc}") from None
    by_rule: dict[str, Rotation] = {}
    default: Rotation | None = None
    for provider, table in doc.items():
        if not isinstance(table, dict):
            raise RotationError(f"{where}: {provider!r} must be a table")
        if not _ID_RE.match(provider):
            raise RotationError(f"{where}: provider id {provider!r} must be kebab-case ([a-z0-9-])")
        unknown = set(table) - _KNOWN_KEYS
        if unknown:
            raise RotationError(f"{where}: [{provider}]: unknown field(s) {', '.join(sorted(unknown))}")
        name, url, rules = table.get("name"), table.get("url"), table.get("rules", [])
        if not isinstance(name, str) or not name.strip():
            raise RotationError(f"{where}: [{provider}]: name is required")
        if not isinstance(url, str) or not _URL_RE.match(url):
            raise RotationError(f"{where}: [{provider}]: url must be an https URL, got {url!r}")
        if not isinstance(rules, list) or not all(isinstance(r, str) and _ID_RE.match(r) for r in rules):
            raise RotationError(f"{where}: [{provider}]: rules must be a list of kebab-case rule ids")
        rotation = Rotation(provider, name.strip(), url)
        if provider == "default":
            default = rotation
        for rule_id in rules:
            if rule_id in by_rule:
                raise RotationError(
                    f"{where}: rule {rule_id!r} is listed under both [{by_rule[rule_id].provider}] and [{provider}]"
                )
            by_rule[rule_id] = rotation
    if default is None:
        raise RotationError(f"{where}: a [default] table is required (advice for rules not listed)")
    return RotationTable(by_rule, default)


_DEFAULT: RotationTable | None = None


def default_rotation() -> RotationTable:
    """The rotation advice shipped with ipykeyguard (parsed once per process).

    Raises:
        RotationError: the shipped file is malformed (the test suite keeps it valid).
    """
    global _DEFAULT
    if _DEFAULT is None:
        text = packaged_text("rotation.toml")
        _DEFAULT = parse_rotation(text, "ipykeyguard/engine/rotation.toml", cached=True)
    return _DEFAULT


def rotation_for(rule_id: str) -> Rotation:
    """The shipped advice for ``rule_id`` (the ``[default]`` advice for rules not listed)."""
    return default_rotation().for_rule(rule_id)
