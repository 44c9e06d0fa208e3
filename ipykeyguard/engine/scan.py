"""The scanner: keyword prefilter -> bounded regex -> entropy -> validator -> allowlist.

:class:`Scanner` is built once from a :class:`~ipykeyguard.config.Config` and is then a pure
function of its input: ``scan_text`` takes text and returns findings; nothing else is read or
written. Every rule's regex is bounded (see :mod:`ipykeyguard.rules`), so scanning is linear in
the size of the text.
"""

from __future__ import annotations

import re
import threading
from typing import Iterable

from .matcher import keyword_finder
from .allowlist import allowed_lines, is_placeholder
from .config import Config
from .findings import Confidence, Finding, Location, Secret
from .rules import Rule
from .validators import VALIDATORS, shannon_entropy

__all__ = ["Scanner", "scan_text", "default_scanner", "scanner_for", "env_name_from"]

_NAME_SPLIT_RE = re.compile(r"[^A-Za-z0-9]+")
_NAME_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-")
#: ``data:<mime>;base64,<payload>``: an embedded image or file, never a key.
_DATA_URI_RE = re.compile(r"data:[A-Za-z0-9.+/-]{1,100}(?:;[A-Za-z0-9=.-]{1,40}){0,3};base64,[A-Za-z0-9+/=\s]{16,50000000}")


#: Texts up to this many characters are scanned whole by every candidate rule.
_WHOLE_TEXT_LIMIT = 8192
#: Extra context around a window, so that look-arounds at a match's edges see the real text.
_WINDOW_MARGIN = 64


class _Where:
    """Where one rule runs over one text: everywhere, in windows, or anchored at given starts.

    ``start_spans`` are ascending, disjoint ``(first, last)`` ranges of start offsets (both
    included); ranges rather than a list of offsets because a text with thousands of keyword
    hits would otherwise build and sort a set of ``anchor + 1`` offsets per hit.
    """

    __slots__ = ("windows", "start_spans")

    def __init__(
        self,
        windows: list[tuple[int, int]] | None = None,
        start_spans: list[list[int]] | None = None,
    ) -> None:
        self.windows = windows
        self.start_spans = start_spans

    def finditer(self, pattern: re.Pattern, text: str):
        """Non-overlapping matches of ``pattern`` (leftmost first, like ``re.finditer``)."""
        if self.start_spans is not None:
            end = -1
            for first, last in self.start_spans:
                for start in range(max(first, end), last + 1):
                    if start < end:
                        continue  # inside the match just found
                    m = pattern.match(text, start)
                    if m is not None:
                        end = m.end() if m.end() > start else start + 1
                        yield m
        elif self.windows is not None:
            for lo, hi in self.windows:
                yield from pattern.finditer(text, lo, hi)
        else:
            yield from pattern.finditer(text)


def _start_spans(occurrences: list[int], anchor: int) -> list[list[int]]:
    """The starts ``p - anchor .. p`` of every keyword occurrence ``p`` (clipped at 0), as
    ascending, disjoint, inclusive ``[first, last]`` ranges."""
    spans: list[list[int]] = []
    for p in sorted(set(occurrences)):
        first = p - anchor if p > anchor else 0
        if spans and first <= spans[-1][1] + 1:
            spans[-1][1] = p  # occurrences ascend, so p extends the range
        else:
            spans.append([first, p])
    return spans


def _whole_name(text: str, start: int, end: int, limit: int = 40) -> str:
    """The identifier around ``text[start:end]``, extended leftwards over name characters.

    Generic rules match from the secret-like word (``key``, ``token``) so that the regex engine
    can skip quickly to candidates; the variable's full name (``openai_api_key``) is recovered
    here for the environment-variable name.
    """
    lo = start
    while lo > 0 and start - lo < limit and text[lo - 1] in _NAME_CHARS:
        lo -= 1
    return text[lo:end].strip("._-")
_CAMEL_RE = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def env_name_from(name: str, fallback: str = "SECRET") -> str:
    """An UPPER_SNAKE_CASE variable name derived from an identifier-ish ``name``.

    ``openai.api_key`` -> ``OPENAI_API_KEY``, ``hfToken`` -> ``HF_TOKEN``; ``fallback`` when
    nothing usable is left.
    """
    words = [w for w in _NAME_SPLIT_RE.split(_CAMEL_RE.sub("_", name)) if w]
    env = "_".join(words).upper()
    if not env:
        return fallback
    if env[0].isdigit():
        env = "_" + env
    return env[:64]


class Scanner:
    """Finds secrets in text with one rule set and one configuration.

    Thread-safe and reusable; construct it once (rules are compiled when loaded).
    """

    def __init__(self, config: Config | None = None) -> None:
        self.config = config or Config()
        self.rules: tuple[Rule, ...] = tuple(self.config.ruleset)
        self._order = {rule.id: i for i, rule in enumerate(self.rules)}
        self._by_id = {rule.id: rule for rule in self.rules}
        by_keyword: dict[str, list[Rule]] = {}
        self._always: list[Rule] = []
        for rule in self.rules:
            if rule.keywords:
                for kw in rule.keywords:
                    by_keyword.setdefault(kw, []).append(rule)
            else:
                self._always.append(rule)
        self._by_keyword = by_keyword
        # The prefilter: one Aho-Corasick pass over the lower-cased text.
        self._find_keywords = keyword_finder(list(by_keyword)) if by_keyword else None

    # -- the engine ---------------------------------------------------------------------------
    def _keyword_hits(self, text: str) -> dict[str, list[int]] | None:
        """Start offsets of every keyword occurrence in ``text`` (case-insensitively).

        Returns ``None`` when offsets in the lower-cased text would not be offsets in ``text``
        (a few non-ASCII characters change length when lower-cased); callers then scan whole.
        """
        lowered = text.lower()
        exact = len(lowered) == len(text)
        hits = self._find_keywords(lowered) if self._find_keywords is not None else {}
        return hits if exact else {kw: [] for kw in hits}

    def _candidate_rules(self, text: str) -> list[Rule]:
        """The rules whose keywords occur in ``text`` (case-insensitively), in rule order."""
        return [rule for rule, _windows in self._plan(text)]

    def _plan(self, text: str) -> list[tuple[Rule, "_Where"]]:
        """Which rules to run, and where.

        A rule's match always contains one of its keywords (a test enforces it) and is at most
        ``width`` characters long (every repeat is bounded). So an *anchored* rule (one whose
        matches start at most ``anchor`` characters before a keyword) is tried only at those
        starts, and in a long text every other rule runs only in windows of ``width`` around its
        keywords. Short texts are scanned whole by unanchored rules: windows would cost more
        than they save there, and their regexes start with literals that ``re`` skips to fast.
        """
        hits = self._keyword_hits(text) if self._by_keyword else {}
        plan: list[tuple[Rule, _Where]] = [(r, _Where()) for r in self._always]
        if not hits:
            return plan
        chosen = {rule.id for kw in hits for rule in self._by_keyword[kw]}
        n = len(text)
        exact = any(hits.values())  # offsets are usable (see _keyword_hits)
        for rule_id in sorted(chosen, key=self._order.__getitem__):
            rule = self._by_id[rule_id]
            occurrences = [p for kw in rule.keywords for p in hits.get(kw, ())]
            if not exact or not occurrences:
                plan.append((rule, _Where()))
                continue
            if rule.anchor is not None:
                plan.append((rule, _Where(start_spans=_start_spans(occurrences, rule.anchor))))
                continue
            width = rule.max_width
            if n <= _WHOLE_TEXT_LIMIT or width is None or 4 * width >= n:
                plan.append((rule, _Where()))
                continue
            margin = width + _WINDOW_MARGIN
            merged: list[tuple[int, int]] = []
            for lo, hi in sorted((max(0, p - margin), min(n, p + margin)) for p in occurrences):
                if merged and lo <= merged[-1][1]:
                    if hi > merged[-1][1]:
                        merged[-1] = (merged[-1][0], hi)
                else:
                    merged.append((lo, hi))
            plan.append((rule, _Where(windows=merged)))
        return plan

    def _judge(self, rule: Rule, secret: str) -> Confidence | None:
        """Confidence of one regex match, or ``None`` when it is not a finding."""
        if rule.entropy is not None and shannon_entropy(secret) < rule.entropy:
            return None
        if is_placeholder(secret):
            return None
        confidence = rule.confidence
        if rule.validator is not None:
            if VALIDATORS[rule.validator](secret):
                confidence = Confidence.CERTAIN
            else:
                if rule.invalid is None:
                    return None
                confidence = min(confidence, rule.invalid)
        return confidence

    def raw_matches(self, text: str, rules: Iterable[Rule] | None = None) -> list[Finding]:
        """Every accepted match of every rule, before overlap resolution and allow comments."""
        out: list[Finding] = []
        data_uris: list[tuple[int, int]] | None = None
        plan = self._plan(text) if rules is None else [(rule, _Where()) for rule in rules]
        for rule, where in plan:
            groups = rule.secret_groups
            for m in where.finditer(rule.pattern, text):
                group = next((g for g in groups if m.group(g)), None)
                if group is None:
                    continue
                secret = m.group(group)
                start, end = m.span(group)
                if "base64," in text:
                    if data_uris is None:
                        data_uris = [u.span() for u in _DATA_URI_RE.finditer(text)]
                    if any(s <= start and end <= e for s, e in data_uris):
                        continue  # inside an embedded image or other binary payload
                confidence = self._judge(rule, secret)
                if confidence is None:
                    continue
                env = rule.env
                if rule.generic and "name" in rule.pattern.groupindex and m.group("name"):
                    env = env_name_from(_whole_name(text, m.start("name"), m.end("name")), rule.env)
                out.append(Finding(rule.id, confidence, start, end, Secret(secret), env))
        return out

    def scan_text(
        self,
        text: str,
        *,
        cell: int | None = None,
        field: str | None = None,
        min_confidence: Confidence | None = None,
    ) -> list[Finding]:
        """Find the secrets in ``text``, ordered by position.

        Overlapping matches are resolved to the most specific one (higher confidence, a
        provider rule over a generic one, then the longer match). Matches on lines with an
        allow comment, placeholders and allowed fingerprints are dropped.

        Args:
            text: The text to scan.
            cell: Notebook cell index recorded in each finding's location.
            field: Notebook field path recorded in each finding's location.
            min_confidence: Drop findings below this (default: the config's threshold).

        Returns:
            The findings, each located by offset, line and column.
        """
        if not text:
            return []
        threshold = self.config.min_confidence if min_confidence is None else min_confidence
        matches = [
            f for f in self.raw_matches(text)
            if f.confidence >= threshold and f.fingerprint not in self.config.allow
        ]
        if not matches:
            return []
        rules = self._by_id
        matches.sort(
            key=lambda f: (
                -int(f.confidence),
                rules[f.rule].generic,
                -(f.end - f.start),
                f.start,
            )
        )
        kept: list[Finding] = []
        for f in matches:
            if all(f.end <= k.start or f.start >= k.end for k in kept):
                kept.append(f)
        kept.sort(key=lambda f: f.start)
        allowed = allowed_lines(text)
        out: list[Finding] = []
        line_starts = _LineIndex(text)
        for f in kept:
            line, column = line_starts.locate(f.start)
            if line - 1 in allowed:
                continue
            out.append(f.with_location(Location(cell, field, line, column)))
        return out


class _LineIndex:
    """Maps offsets to 1-based (line, column), computing line starts lazily."""

    def __init__(self, text: str) -> None:
        self._text = text
        self._starts: list[int] | None = None

    def locate(self, offset: int) -> tuple[int, int]:
        if self._starts is None:
            self._starts = [0] + [m.end() for m in re.finditer("\n", self._text)]
        import bisect

        index = bisect.bisect_right(self._starts, offset) - 1
        return index + 1, offset - self._starts[index] + 1


_default_lock = threading.Lock()
_default_scanner: Scanner | None = None


def default_scanner() -> Scanner:
    """The process-wide scanner with the default configuration."""
    global _default_scanner
    with _default_lock:
        if _default_scanner is None:
            _default_scanner = Scanner(Config())
        return _default_scanner


def scan_text(text: str, config: Config | None = None, **kwargs) -> list[Finding]:
    """Find the secrets in ``text`` (see :meth:`Scanner.scan_text`).

    Args:
        text: Any text: a cell's source, a file, an output.
        config: Settings; the defaults when omitted.

    Returns:
        The findings, ordered by position. Their reprs hold no plaintext.
    """
    return scanner_for(config).scan_text(text, **kwargs)


_scanners: dict[Config, Scanner] = {}


def scanner_for(config: Config | None) -> Scanner:
    """A cached scanner for ``config`` (the default scanner for ``None``)."""
    if config is None:
        return default_scanner()
    with _default_lock:
        scanner = _scanners.get(config)
        if scanner is None:
            scanner = _scanners[config] = Scanner(config)
        return scanner



def notebook_findings(nb: dict, scanner: Scanner, *, min_confidence: Confidence | None = None):
    """The one notebook walk: each text leaf with the findings in it (leaves without any are skipped).

    Yields:
        ``(leaf, findings)`` pairs in notebook order.
    """
    from ..transforms.notebook import iter_leaves

    for leaf in iter_leaves(nb):
        found = scanner.scan_text(leaf.text, cell=leaf.cell, field=leaf.field, min_confidence=min_confidence)
        if found:
            yield leaf, found


def scan_notebook(nb: dict, config: Config | None = None, **kwargs) -> list[Finding]:
    """Find the secrets in a notebook: sources, outputs, tracebacks, metadata, attachments.

    Args:
        nb: The notebook as a dict (a parsed ``.ipynb`` or an nbformat ``NotebookNode``).
        config: Settings; the defaults when omitted.

    Returns:
        The findings, in notebook order; each located by cell, field, line and column (offsets
        are within that field's text).
    """
    scanner = scanner_for(config)
    return [f for _leaf, found in notebook_findings(nb, scanner, **kwargs) for f in found]
