"""One frozen configuration, read from ``[tool.ipykeyguard]`` in ``pyproject.toml``.

Keys (kebab-case, all optional)::

    [tool.ipykeyguard]
    min-confidence = "likely"        # report threshold: possible | likely | certain
    disable = ["generic-secret"]     # rule ids to switch off
    extra-rules = ["secrets.toml"]   # more rules files (paths relative to pyproject.toml)
    exclude = ["data/**", "*.csv"]   # glob patterns (relative to pyproject.toml) never scanned
    allow = ["<sha256 hex>", ...]    # fingerprints of values that are not secrets
    baseline = ".ipykeyguard-baseline.json"   # fingerprints accepted from a baseline file
    max-file-size = 52428800         # bytes; larger files are reported as skipped

The kernel reads its own settings from ``c.KeyGuard.*`` traitlets and builds the same
:class:`Config`.
"""

from __future__ import annotations

import fnmatch
import json
import re
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path, PurePosixPath
from typing import Any, Iterable

from ._toml import loads as toml_loads
from .findings import Confidence
from .rules import RuleError, RuleSet, load_rules

__all__ = ["Config", "ConfigError", "load_config", "find_pyproject", "load_baseline"]

DEFAULT_MAX_FILE_SIZE = 50 * 1024 * 1024


class ConfigError(ValueError):
    """The configuration is malformed; the message names the file and the key."""


@dataclass(frozen=True)
class Config:
    """Settings shared by every surface. Immutable: build a new one with :meth:`replace`."""

    min_confidence: Confidence = Confidence.POSSIBLE
    disabled_rules: tuple[str, ...] = ()
    extra_rules: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    allow: frozenset[str] = frozenset()
    max_file_size: int = DEFAULT_MAX_FILE_SIZE
    root: Path | None = field(default=None, compare=False)

    def replace(self, **changes: Any) -> "Config":
        """A copy with ``changes`` applied."""
        return replace(self, **changes)

    @cached_property
    def ruleset(self) -> RuleSet:
        """The rules in force: the defaults, plus extra rules files, minus disabled ids."""
        extra = []
        for path in self.extra_rules:
            p = Path(path)
            if not p.is_absolute() and self.root is not None:
                p = self.root / p
            extra.extend(load_rules(p))
        return RuleSet(extra=extra, disabled=self.disabled_rules)

    def is_excluded(self, path: str | Path) -> bool:
        """True when ``path`` matches an ``exclude`` pattern (relative to :attr:`root`)."""
        if not self.exclude:
            return False
        p = Path(path)
        try:
            rel = p.resolve().relative_to(self.root.resolve()) if self.root else p
        except ValueError:
            rel = p
        posix = PurePosixPath(rel.as_posix())
        text = str(posix)
        for pattern in self.exclude:
            pat = pattern.rstrip("/")
            if fnmatch.fnmatchcase(text, pat) or posix.match(pat):
                return True
            if pat.endswith("/**") and (text == pat[:-3] or text.startswith(pat[:-3] + "/")):
                return True
            if any(fnmatch.fnmatchcase(part, pat) for part in posix.parts) and "/" not in pat:
                return True
        return False


def find_pyproject(start: str | Path) -> Path | None:
    """The nearest ``pyproject.toml`` at or above ``start``, or ``None``."""
    here = Path(start).resolve()
    if here.is_file():
        here = here.parent
    for folder in (here, *here.parents):
        candidate = folder / "pyproject.toml"
        if candidate.is_file():
            return candidate
    return None


def load_baseline(path: str | Path) -> frozenset[str]:
    """Fingerprints listed in a baseline file (as written by ``ipykeyguard scan --format json``
    or a plain list of hex digests).

    Raises:
        ConfigError: the file cannot be read or is not a baseline.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(f"{path}: cannot read baseline: {exc}") from None
    if isinstance(data, dict):
        items: Iterable[Any] = data.get("findings", data.get("fingerprints", []))
    elif isinstance(data, list):
        items = data
    else:
        raise ConfigError(f"{path}: a baseline is a JSON list or an object with 'findings'")
    out = set()
    for item in items:
        value = item.get("hash") if isinstance(item, dict) else item
        if not isinstance(value, str) or len(value) != 64:
            raise ConfigError(f"{path}: baseline entries must be SHA-256 hex fingerprints")
        out.add(value.lower())
    return frozenset(out)


_SETTING_NAME = re.compile(r"[a-z][a-z-]{0,30}\Z")


def _config_from_table(table: dict, root: Path, where: str) -> Config:
    known = {"min-confidence", "disable", "extra-rules", "exclude", "allow", "baseline", "max-file-size"}
    unknown = set(table) - known
    if unknown:
        # Only names that look like settings are echoed: a key pasted as a TOML key is not.
        shown = sorted(k for k in unknown if _SETTING_NAME.match(k))
        hidden = len(unknown) - len(shown)
        listing = ", ".join(shown + ([f"{hidden} more not shown"] if hidden else []))
        raise ConfigError(f"{where}: unknown key(s) in [tool.ipykeyguard]: {listing}")

    def strings(key: str) -> tuple[str, ...]:
        value = table.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{where}: [tool.ipykeyguard] {key} must be a list of strings")
        return tuple(value)

    try:
        min_conf = Confidence.parse(table.get("min-confidence", "possible"))
    except ValueError as exc:
        raise ConfigError(f"{where}: [tool.ipykeyguard] min-confidence: {exc}") from None
    allow = {a.lower() for a in strings("allow")}
    baseline = table.get("baseline")
    if baseline is not None:
        if not isinstance(baseline, str):
            raise ConfigError(f"{where}: [tool.ipykeyguard] baseline must be a path")
        allow |= load_baseline(root / baseline)
    max_size = table.get("max-file-size", DEFAULT_MAX_FILE_SIZE)
    if not isinstance(max_size, int) or max_size <= 0:
        raise ConfigError(f"{where}: [tool.ipykeyguard] max-file-size must be a positive integer")
    config = Config(
        min_confidence=min_conf,
        disabled_rules=strings("disable"),
        extra_rules=strings("extra-rules"),
        exclude=strings("exclude"),
        allow=frozenset(allow),
        max_file_size=max_size,
        root=root,
    )
    try:
        config.ruleset  # validate rules now, so errors surface at load time
    except RuleError as exc:
        raise ConfigError(str(exc)) from None
    return config


def load_config(start: str | Path = ".", *, pyproject: str | Path | None = None) -> Config:
    """Read ``[tool.ipykeyguard]`` from ``pyproject`` or the nearest one above ``start``.

    Returns the defaults when there is no such file or section.

    Raises:
        ConfigError: the file is not TOML or the section is malformed.
    """
    path = Path(pyproject) if pyproject is not None else find_pyproject(start)
    if path is None:
        return Config(root=Path(start).resolve() if Path(start).is_dir() else None)
    try:
        doc = toml_loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:  # UnicodeDecodeError, TOMLDecodeError
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    table = doc.get("tool", {}).get("ipykeyguard", {})
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [tool.ipykeyguard] must be a table")
    return _config_from_table(table, path.parent.resolve(), str(path))
