"""What is never a finding: placeholders, documentation examples and lines marked as allowed."""

from __future__ import annotations

import re
from functools import lru_cache

from ._toml import loads as toml_loads, packaged_text
from .validators import fails_checksum

__all__ = ["is_placeholder", "documented_examples", "allowed_lines", "line_is_allowed", "INLINE_ALLOW_MARKERS"]

#: Comments that allow every finding on their line (``pragma: allowlist nextline secret``
#: allows the line below it, as in detect-secrets).
#: Every marker contains "allow" (line_is_allowed looks for that first: one pass over a long line)
#: and a colon (the scanner skips lines without one before copying them: see scan._Lines).
INLINE_ALLOW_MARKERS = ("ipykeyguard: allow", "ipykeyguard:allow", "gitleaks:allow", "pragma: allowlist secret")
_NEXTLINE_MARKERS = ("pragma: allowlist nextline secret", "ipykeyguard: allow-next-line")



@lru_cache(maxsize=1)
def documented_examples() -> frozenset[str]:
    """Keys that vendors publish in their own documentation as examples (data:
    ``documented_examples.toml`` beside this module, each entry with its source)."""
    text = packaged_text("documented_examples.toml")
    from .dbcache import parsed_toml

    return frozenset(entry["value"] for entry in parsed_toml(text, toml_loads).get("example", []))


# Passwords that appear in tutorials, docker-compose files and local development URLs
# (``postgres://postgres:postgres@localhost``): defaults, not secrets. Compared lower-cased.
_DEFAULT_PASSWORDS = frozenset(
    {
        "password", "passwd", "pass", "pwd", "secret", "changeme", "changeit", "admin", "root",
        "guest", "test", "testing", "user", "username", "postgres", "mysql", "redis", "mongo",
        "mongodb", "rabbitmq", "oracle", "sa", "dbpass", "dbpassword", "db_password", "mypassword",
        "mypass", "mysecret", "pass123", "password123", "password1", "123456", "12345678", "qwerty",
        "letmein", "default", "demo", "sample", "foo", "bar", "foobar", "none", "null", "empty",
    }
)

_PLACEHOLDER_PATTERN = (
    r"""
      \.\.\. | …                                  # elided: sk-...abcd
    | (?-i:x{4,}|X{4,}) | \*{3,} | \#{4,}         # masked or filler runs (xXxX is random text)
    | ^<[^<>]{0,200}>$ | ^\[[^\[\]]{0,200}\]$     # <token>, [redacted]
    | \[secret:[A-Za-z0-9_.-]{1,80}\]              # our own mask
    | \$\{[^}]{0,100}\} | \{\{[^}]{0,100}\}\}     # ${TOKEN}, {{ secrets.TOKEN }}
    | ^\{[A-Za-z_][A-Za-z0-9_.\[\]'"]{0,100}\}$    # {api_key}: an f-string or format field
    | ^\$[A-Za-z_][A-Za-z0-9_]{0,100}$            # $API_KEY
    | %\([a-z_]{1,60}\)s                          # %(password)s
    | your[-_ ]?(?:own[-_ ]?)?(?:api[-_ ]?)?(?:key|token|secret|password|pass|pwd|access)
    | (?:api[-_]?key|token|secret|password)[-_ ]?here
    | (?:insert|replace|enter|put|paste|add)[-_ ](?:your|the|an?|api|key|token)   # a separator: "AddA" is base64
    | placeholder | changeme | change[-_]me | redacted | example | dummy | notreal | not[-_]a[-_]real
    """
)


@lru_cache(maxsize=1)
def _placeholder_re() -> re.Pattern[str]:
    # Compiled on first use: a scan that finds nothing never needs it (~2 ms of start-up).
    return re.compile(_PLACEHOLDER_PATTERN, re.IGNORECASE | re.VERBOSE)


# Every match of _PLACEHOLDER_PATTERN contains one of these (lower-cased): a cheap pre-check that
# spares random key text the regex's many case-insensitive alternatives at every position.
_PLACEHOLDER_TRIGGERS = (
    "...", "…", "xxxx", "***", "####", "<", "[", "{", "$", "%(", "your", "here", "insert", "replace",
    "enter", "put", "paste", "add", "placeholder", "change", "redacted", "example", "dummy", "notreal", "not",
)


def is_placeholder(secret: str) -> bool:
    """True when ``secret`` is not a key: a placeholder, a vendor's documented example, a
    default password, or a token of a checksummed format whose checksum fails.

    Args:
        secret: The candidate secret as a rule cut it.

    Returns:
        ``True`` when no finding may be made of it, by any rule.
    """
    if secret in documented_examples() or secret.lower() in _DEFAULT_PASSWORDS:
        return True
    if fails_checksum(secret):
        return True
    if len(set(secret)) <= 2:
        return True
    lowered = secret.lower()
    if not any(trigger in lowered for trigger in _PLACEHOLDER_TRIGGERS):
        return False  # the regex below cannot match: skip it (it costs ~10x this check)
    return _placeholder_re().search(secret) is not None


def allowed_lines(text: str) -> set[int]:
    """0-based numbers of the lines of ``text`` on which findings are allowed by a comment
    (:func:`line_is_allowed` for every line; the scanner asks only about lines with findings)."""
    lines = text.split("\n")
    return {i for i, line in enumerate(lines) if line_is_allowed(line, lines[i - 1] if i else None)}


def line_is_allowed(line: str, previous: str | None) -> bool:
    """True when findings on ``line`` are allowed: an allow comment on it, or an allow-next-line
    comment on the line before it (``previous``, ``None`` for the first line). The same answer
    as :func:`allowed_lines`, for one line: a scan asks only about lines that hold a finding."""
    lowered = line.lower()
    if "allow" in lowered and any(marker in lowered for marker in INLINE_ALLOW_MARKERS):
        return True
    if previous is not None:
        lowered = previous.lower()
        return "allow" in lowered and any(marker in lowered for marker in _NEXTLINE_MARKERS)
    return False
