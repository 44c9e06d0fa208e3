"""Detection rules: data, validated on load.

Rules live in ``rules.toml`` shipped with the package; users add their own from a TOML file named
in ``[tool.ipykeyguard] extra-rules``. Each rule is a table::

    [[rule]]
    id = "openai-api-key"                  # stable kebab-case id
    description = "OpenAI API key"
    regex = '''\\b(?P<secret>sk-proj-[A-Za-z0-9_-]{40,200})'''   # one named group: secret
    keywords = ["sk-"]                     # prefilter, matched case-insensitively
    entropy = 3.5                          # optional floor (Shannon bits per char of the secret)
    env = "OPENAI_API_KEY"                 # where the key should live
    confidence = "likely"                  # possible | likely | certain
    validator = "openai"                   # optional offline structure check
    invalid = "likely"                     # confidence when the validator rejects (or "drop")
    generic = false                        # a name-bound catch-all, loses to provider rules
    anchor = 8                             # optional: every match starts at most this many
                                           # characters before one of its keywords, so the
                                           # regex is tried only there (for rules whose regex
                                           # cannot start with a literal, e.g. case-insensitive)
    examples = ["..."]                     # must be found (with the rule's own id)
    counterexamples = ["..."]              # must not be found by this rule

A rule is rejected on load, with an error naming it, when its regex does not compile, has no
``secret`` group or has an unbounded quantifier (``*``, ``+``, ``{n,}``): Python's ``re``
backtracks, so every repeat must carry an upper bound to keep scanning linear.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Iterable

from ._toml import loads as toml_loads, packaged_text
from .findings import Confidence

try:  # Python 3.11+ moved the regex parser
    from re import _parser as _sre_parse  # type: ignore[attr-defined]
    from re import _constants as _sre_constants  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - Python 3.10
    import sre_constants as _sre_constants  # type: ignore[no-redef]
    import sre_parse as _sre_parse  # type: ignore[no-redef]

__all__ = ["Rule", "RuleError", "RuleSet", "load_rules", "default_rules"]

_ID_RE = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
_ENV_RE = re.compile(r"^[A-Z][A-Z0-9_]*$")
_KNOWN_KEYS = {
    "id", "description", "regex", "keywords", "entropy", "env", "confidence", "validator",
    "invalid", "generic", "examples", "counterexamples", "tags", "anchor",
}


class RuleError(ValueError):
    """A rule is malformed. The message names the rule and the source file."""


@dataclass(frozen=True)
class Rule:
    """One detection rule. See the module docstring for the fields.

    The regex is compiled on first use (:attr:`pattern`): a scan usually runs a handful of the
    rules, and compiling all of them would cost most of a one-file CLI run's start-up.
    """

    id: str
    description: str
    regex: str = field(repr=False)
    keywords: tuple[str, ...] = ()
    entropy: float | None = None
    env: str = "SECRET"
    confidence: Confidence = Confidence.LIKELY
    validator: str | None = None
    invalid: Confidence | None = Confidence.LIKELY
    generic: bool = False
    examples: tuple[str, ...] = field(default=(), repr=False)
    counterexamples: tuple[str, ...] = field(default=(), repr=False)
    tags: tuple[str, ...] = ()
    anchor: int | None = None
    source: str = field(default="<builtin>", repr=False, compare=False)

    @cached_property
    def pattern(self) -> re.Pattern:
        """The compiled regex."""
        return re.compile(self.regex)

    @cached_property
    def secret_groups(self) -> tuple[str, ...]:
        """Names of the groups that hold the secret (``secret``, or alternatives ``secret_*``)."""
        return tuple(g for g in self.pattern.groupindex if g == "secret" or g.startswith("secret_"))

    @cached_property
    def max_width(self) -> int | None:
        """The longest text the regex can match, or ``None`` when it is unbounded."""
        width = _sre_parse.parse(self.regex).getwidth()[1]
        return width if width < _sre_constants.MAXREPEAT else None


def _check_bounded(rule_id: str, where: str, regex: str) -> None:
    """Raise RuleError when ``regex`` has an unbounded repeat anywhere."""
    maxrepeat = _sre_constants.MAXREPEAT
    repeats = {_sre_constants.MAX_REPEAT, _sre_constants.MIN_REPEAT}
    possessive = getattr(_sre_constants, "POSSESSIVE_REPEAT", None)
    if possessive is not None:
        repeats.add(possessive)

    def walk(parsed) -> None:
        for op, av in parsed:
            if op in repeats:
                _lo, hi, sub = av
                if hi == maxrepeat:
                    raise RuleError(
                        f"{where}: rule {rule_id!r}: unbounded repeat in regex "
                        "(use {m,n} with an upper bound instead of *, + or {m,})"
                    )
                walk(sub)
            elif op == _sre_constants.SUBPATTERN:
                walk(av[-1])
            elif op == _sre_constants.BRANCH:
                for alt in av[1]:
                    walk(alt)
            elif op in (_sre_constants.ASSERT, _sre_constants.ASSERT_NOT):
                walk(av[1])
            elif op == getattr(_sre_constants, "ATOMIC_GROUP", None):
                walk(av)
            elif op == _sre_constants.GROUPREF_EXISTS:
                walk(av[1])
                if av[2] is not None:
                    walk(av[2])

    walk(_sre_parse.parse(regex))


def _rule_from_table(table: dict, where: str, *, trusted: bool = False) -> Rule:
    rid = table.get("id")
    if not isinstance(rid, str) or not _ID_RE.match(rid):
        raise RuleError(f"{where}: rule id {rid!r} must be kebab-case ([a-z0-9-])")
    unknown = set(table) - _KNOWN_KEYS
    if unknown:
        raise RuleError(f"{where}: rule {rid!r}: unknown field(s) {', '.join(sorted(unknown))}")

    def fail(msg: str) -> RuleError:
        return RuleError(f"{where}: rule {rid!r}: {msg}")

    regex = table.get("regex")
    if not isinstance(regex, str) or not regex:
        raise fail("regex is required")
    if not trusted:  # the shipped rules are checked by the test suite, not at every start-up
        try:
            pattern = re.compile(regex)
        except re.error as exc:
            raise fail(f"regex does not compile: {exc}") from None
        if "secret" not in pattern.groupindex:
            raise fail("regex needs a named group (?P<secret>...)")
        _check_bounded(rid, where, regex)

    keywords = table.get("keywords", [])
    if not isinstance(keywords, list) or not all(isinstance(k, str) and k for k in keywords):
        raise fail("keywords must be a list of non-empty strings")
    env = table.get("env", "SECRET")
    if not isinstance(env, str) or not _ENV_RE.match(env):
        raise fail(f"env {env!r} must be an UPPER_SNAKE_CASE variable name")
    try:
        confidence = Confidence.parse(table.get("confidence", "likely"))
        invalid_raw = table.get("invalid", "likely")
        invalid = None if invalid_raw == "drop" else Confidence.parse(invalid_raw)
    except ValueError as exc:
        raise fail(str(exc)) from None
    if invalid is not None and invalid > confidence:
        invalid = confidence
    validator = table.get("validator")
    if validator is not None:
        from .validators import VALIDATORS

        if validator not in VALIDATORS:
            raise fail(f"unknown validator {validator!r} (known: {', '.join(sorted(VALIDATORS))})")
    entropy = table.get("entropy")
    if entropy is not None and not (isinstance(entropy, (int, float)) and 0 <= entropy <= 8):
        raise fail("entropy must be a number of bits per character between 0 and 8")
    for name in ("examples", "counterexamples", "tags"):
        value = table.get(name, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise fail(f"{name} must be a list of strings")
    anchor = table.get("anchor")
    if anchor is not None and (not isinstance(anchor, int) or isinstance(anchor, bool) or not 0 <= anchor <= 64):
        raise fail("anchor must be a whole number of characters from 0 to 64")
    if anchor is not None and not keywords:
        raise fail("anchor needs keywords: matches are tried only near keyword occurrences")
    description = table.get("description", "")
    if not isinstance(description, str) or not description:
        raise fail("description is required")
    return Rule(
        id=rid,
        description=description,
        regex=regex,
        keywords=tuple(k.lower() for k in keywords),
        entropy=float(entropy) if entropy is not None else None,
        env=env,
        confidence=confidence,
        validator=validator,
        invalid=invalid,
        generic=bool(table.get("generic", False)),
        examples=tuple(table.get("examples", [])),
        counterexamples=tuple(table.get("counterexamples", [])),
        tags=tuple(table.get("tags", [])),
        anchor=anchor,
        source=where,
    )


def parse_rules(text: str, where: str = "<string>", *, trusted: bool = False) -> list[Rule]:
    """Parse and validate the rules in a TOML document.

    ``trusted`` skips the regex checks (compiles, has a ``secret`` group, every repeat bounded)
    and defers compiling to first use; only the shipped rules are loaded that way, and the test
    suite runs the full checks over them.

    Raises:
        RuleError: the document is not TOML, or a rule is malformed or duplicated.
    """
    try:
        doc = toml_loads(text)
    except ValueError as exc:  # tomllib.TOMLDecodeError
        raise RuleError(f"{where}: not valid TOML: {exc}") from None
    return _rules_from_tables(doc.get("rule", []), where, trusted=trusted)


def load_rules(path: str | Path) -> list[Rule]:
    """Load rules from a TOML file.

    Raises:
        RuleError: the file cannot be read or holds a malformed rule.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RuleError(f"{path}: cannot read rules file: {exc}") from None
    return parse_rules(text, str(path))


_DEFAULT: list[Rule] | None = None


def default_rules() -> list[Rule]:
    """The rules shipped with ipykeyguard (parsed once per process).

    The parsed tables come from a JSON cache keyed by the rules text's SHA-256 (parsing the TOML
    cost a third of a one-notebook scan); every table still goes through the same checks.
    """
    global _DEFAULT
    if _DEFAULT is None:
        text = packaged_text("rules.toml")
        where = "ipykeyguard/engine/rules.toml"
        _DEFAULT = _rules_from_tables(_parsed_tables(text, where), where, trusted=True)
    return list(_DEFAULT)


def _rules_from_tables(tables: Any, where: str, *, trusted: bool) -> list[Rule]:
    if not isinstance(tables, list):
        raise RuleError(f"{where}: expected [[rule]] tables")
    rules: list[Rule] = []
    seen: set[str] = set()
    for table in tables:
        rule = _rule_from_table(table, where, trusted=trusted)
        if rule.id in seen:
            raise RuleError(f"{where}: duplicate rule id {rule.id!r}")
        seen.add(rule.id)
        rules.append(rule)
    return rules


def _parsed_tables(text: str, where: str) -> Any:
    """The ``[[rule]]`` tables of the shipped rules text, through the parsed-TOML cache
    (:func:`ipykeyguard.engine.dbcache.parsed_toml`).

    Raises:
        RuleError: the text is not TOML.
    """
    from .dbcache import parsed_toml

    try:
        return parsed_toml(text, toml_loads).get("rule", [])
    except ValueError as exc:  # tomllib.TOMLDecodeError
        raise RuleError(f"{where}: not valid TOML: {exc}") from None


class RuleSet:
    """An ordered, de-duplicated set of rules: the defaults, minus disabled ids, plus extras.

    Raises:
        RuleError: an extra rule reuses a built-in id, or a disabled id names no rule.
    """

    def __init__(
        self,
        base: Iterable[Rule] | None = None,
        *,
        extra: Iterable[Rule] = (),
        disabled: Iterable[str] = (),
    ) -> None:
        rules = list(default_rules() if base is None else base)
        ids = {r.id for r in rules}
        for rule in extra:
            if rule.id in ids:
                raise RuleError(f"{rule.source}: rule id {rule.id!r} is already defined")
            ids.add(rule.id)
            rules.append(rule)
        disabled = set(disabled)
        unknown = disabled - ids
        if unknown:
            raise RuleError(f"cannot disable unknown rule(s): {', '.join(sorted(unknown))}")
        self.rules: tuple[Rule, ...] = tuple(r for r in rules if r.id not in disabled)
        self.by_id = {r.id: r for r in self.rules}

    def __iter__(self):
        return iter(self.rules)

    def __len__(self) -> int:
        return len(self.rules)
