"""The scanner: automaton first pass -> bounded regex on regions -> entropy -> validator -> allowlist.

:class:`Scanner` is built once from a :class:`~ipykeyguard.config.Config` and is then a pure
function of its input: ``scan_text`` takes text and returns findings; nothing else is read or
written (the compiled automaton is loaded from, or saved to, the user cache directory once per
process; see :mod:`.dbcache`).

Linear time by construction: the first pass is a Hyperscan automaton over the whole text
(:mod:`.automaton`); a rule's Python regex then runs only on the merged regions where the
automaton saw a possible match of that rule, each region bounded by the rule's maximum match
width around a block. Overlaps between findings are resolved with a sort and a sweep, and the
data-URI check is a binary search, so the number of findings does not make a scan quadratic.
"""

from __future__ import annotations

import bisect
import re
import threading
from typing import Iterable, Iterator, Sequence

from .allowlist import is_placeholder, line_is_allowed
from .automaton import MARGIN
from .config import Config
from .findings import Confidence, Finding, Location, Secret
from .rules import Rule
from .validators import VALIDATORS, shannon_entropy

__all__ = ["Scanner", "scan_text", "default_scanner", "scanner_for", "env_name_from"]

_NAME_SPLIT_RE = re.compile(r"[^A-Za-z0-9]+")
_NAME_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-")
#: ``data:<mime>;base64,<payload>``: an embedded image or file, never a key.
#: Literal markers the automaton reports beside the rules, ``(regex, width)``: whether a text
#: may hold a data URI is known from its pass (a separate search cost 0.5 ms per MiB).
_MARKERS = ((r";base64,", 8),)
_DATA_URI_MARKER = 0



def automaton_regexes(rules: Sequence[Rule]) -> list[str]:
    """The patterns a scanner's automaton is compiled from (and cached by): the rules', in
    order, then the markers'."""
    return [rule.regex for rule in rules] + [regex for regex, _width in _MARKERS]


_DATA_URI_RE = re.compile(r"data:[A-Za-z0-9.+/-]{1,100}(?:;[A-Za-z0-9=.-]{1,40}){0,3};base64,[A-Za-z0-9+/=\s]{16,50000000}")

#: Characters a decoded escape may stand for and still continue a token.
_TOKEN_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-+/=.~")


def escape_boundaries(text: str) -> str:
    """``text`` with the letters of string escapes that decode to a separator and stand right
    before a token character turned into spaces.

    Rules judge a key's left boundary on the character before it, so in ``"\\tKEY"`` they see
    ``t`` and take ``tKEY`` for one longer token. Replacing the escape's letters (not the
    backslash) by spaces keeps every offset, so findings located in this view are located in
    ``text``; the secret itself is always read from ``text``. An escape that decodes to a token
    character (``\\x41`` is ``A``) is left alone. The scanner runs the rules on both the text
    and this view (a rule may match an escape on purpose, e.g. the ``\\n`` of a PEM key in JSON).

    Returns:
        ``text`` itself (the same object) when there is nothing to change.
    """
    return _escape_view(text)[0]


#: An escape followed by a token character, the only kind that can hide a key's left boundary.
#: Backslash parity is not checked on purpose: in ``json.loads('"\\tKEY"')`` the doubled
#: backslash is still a tab one decoding later. One pattern, one pass (each extra pass over a
#: MiB of backslashes cost ~25 ms).
_ESCAPE_BEFORE_TOKEN_RE = re.compile(
    r"\\(?:[ntrfvab0]|x[0-9A-Fa-f]{2}|u[0-9A-Fa-f]{4}|U[0-9A-Fa-f]{8})(?=[A-Za-z0-9_+/=.~-])"
)


#: Characters per chunk in which :func:`_escape_view` runs its pattern (only chunks holding a backslash).
_ESCAPE_CHUNK = 1 << 16

#: More escapes than one per this many characters: the view is confirmed everywhere instead
#: (locating each escape in Python would cost more than it saves).
_ESCAPE_SPACING = 512


def _escape_view(text: str) -> tuple[str, list[int] | None]:
    """:func:`escape_boundaries` plus where the escapes are: ascending offsets, ``None`` when
    they are too dense to be worth locating, ``[]`` when the view is ``text`` itself.

    The offsets let the scanner confirm rules on the view only near an escape: away from every
    escape the view and the text are the same characters, so the text's own pass has already
    found whatever the view would (on escape-heavy text this halves the ``re`` work).
    """
    first = text.find("\\")
    if first < 0:
        return text, []
    # Only an escape right before a token character can hide a key's left boundary, so only
    # those are changed and cost a Python call: escape soup with no token after its escapes
    # (``escape-soup``: 450 ms per MiB when every escape was rewritten) is left as it is.
    # The pattern runs only on chunks that hold a backslash (found by a C search): a large
    # text with backslashes in a few places is not walked by ``re`` from end to end. Matches
    # never overlap (a backslash is only ever an escape's first character), so chunk by chunk
    # finds exactly the matches one pass over the text finds.
    changed: list[int] = []
    parts: list[str] = []
    done = 0  # text[:done] is in parts
    n = len(text)
    at = first
    while at >= 0:
        hi = min(n, at - at % _ESCAPE_CHUNK + _ESCAPE_CHUNK)
        for m in _ESCAPE_BEFORE_TOKEN_RE.finditer(text, at, min(n, hi + _ESCAPE_LEN + 1)):
            start = m.start()
            if start >= hi:
                break
            escape = m.group(0)
            if len(escape) > 2:
                try:
                    decoded = chr(int(escape[2:], 16))
                except (ValueError, OverflowError):
                    continue
                if decoded in _TOKEN_CHARS:
                    continue
            changed.append(start)
            parts.append(text[done:start + 1])
            parts.append(" " * (len(escape) - 1))
            done = m.end()
        at = text.find("\\", max(hi, done))
    if not changed:
        return text, []
    parts.append(text[done:])
    view = "".join(parts)
    if len(changed) > len(text) // _ESCAPE_SPACING + 1:
        return view, None
    return view, changed


#: Longest escape ``_escape_view`` changes (``\U0000000a``).
_ESCAPE_LEN = 10


def _near_changes(changed: list[int] | None, width: int | None, n: int) -> list[tuple[int, int]] | None:
    """Merged windows around escapes in which a match of a rule ``width`` wide (plus its
    look-around context) could differ between the text and its escape view (``None``: anywhere)."""
    if width is None or changed is None:
        return None
    reach = width + MARGIN
    out: list[tuple[int, int]] = []
    for p in changed:
        lo, hi = max(0, p - reach), min(n, p + _ESCAPE_LEN + reach)
        if out and lo <= out[-1][1]:
            out[-1] = (out[-1][0], hi)
        else:
            out.append((lo, hi))
    return out


def _intersect(a: list[tuple[int, int]] | None, b: list[tuple[int, int]] | None) -> list[tuple[int, int]] | None:
    """The intersection of two ascending, disjoint span lists (``None`` stands for everything)."""
    if a is None:
        return b
    if b is None:
        return a
    out: list[tuple[int, int]] = []
    i = j = 0
    while i < len(a) and j < len(b):
        lo, hi = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if lo < hi:
            out.append((lo, hi))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return out


def _finditer(pattern: re.Pattern, view: str, regions: list[tuple[int, int]] | None) -> Iterator[re.Match]:
    """Non-overlapping matches of ``pattern`` in ``view`` within ``regions`` (all of it for ``None``).

    A region ends before the text does, so a match touching a region's end may have been cut
    short by it (a look-ahead sees the region's end as the text's end): such a match is
    re-made against the whole text from the same start (bounded by the rule's width).
    """
    if regions is None:
        yield from pattern.finditer(view)
        return
    n = len(view)
    last_end = -1
    for lo, hi in regions:
        if lo >= n:
            break
        for m in pattern.finditer(view, max(lo, last_end if last_end > lo else lo), hi):
            if hi < n and m.end() >= hi - MARGIN:
                full = pattern.match(view, m.start())
                if full is None:
                    continue
                m = full
            if m.start() < last_end:
                continue
            last_end = m.end() if m.end() > m.start() else m.start() + 1
            yield m


def _disjoint_spans(spans: list[tuple[int, int]]) -> tuple[list[int], list[int]]:
    """Sorted, merged ``(starts, ends)`` of ``spans`` for binary-search containment checks."""
    starts: list[int] = []
    ends: list[int] = []
    for lo, hi in sorted(spans):
        if ends and lo <= ends[-1]:
            ends[-1] = max(ends[-1], hi)
        else:
            starts.append(lo)
            ends.append(hi)
    return starts, ends


def _inside(starts: list[int], ends: list[int], lo: int, hi: int) -> bool:
    i = bisect.bisect_right(starts, lo) - 1
    return i >= 0 and hi <= ends[i]


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

    Thread-safe and reusable; construct it once. The automaton is built (or loaded from the
    cache) on the first scan, not here, so creating a scanner costs nothing at start-up.
    """

    def __init__(self, config: Config | None = None) -> None:
        self.config = config or Config()
        self.rules: tuple[Rule, ...] = tuple(self.config.ruleset)
        self._order = {rule.id: i for i, rule in enumerate(self.rules)}
        self._by_id = {rule.id: rule for rule in self.rules}
        self._automaton_lock = threading.Lock()
        self._automaton = None
        self._widths: list[int | None] = []

    # -- the engine ---------------------------------------------------------------------------
    def automaton(self):
        """The compiled first pass with the rules' widths, ``(automaton, widths)``, built once."""
        with self._automaton_lock:
            if self._automaton is None:
                from .dbcache import load_automaton

                rules = self.rules
                # The rules, then the markers (see _MARKERS): the automaton reports whether a
                # text holds one in the same pass, no separate search over the text needed.
                self._automaton, self._widths = load_automaton(
                    automaton_regexes(rules), lambda: [rule.max_width for rule in rules] + [w for _r, w in _MARKERS]
                )
            return self._automaton, self._widths

    def warm_up(self) -> None:
        """Load (or compile) the automaton on a daemon thread, so that the first scan does not
        wait for it when there is idle time before it (the kernel calls this on ``%load_ext``)."""
        if self._automaton is None:
            threading.Thread(target=self.automaton, name="ipykeyguard-warm-up", daemon=True).start()

    def _candidate_rules(self, text: str) -> list[Rule]:
        """The rules the automaton says may match somewhere in ``text``, in rule order."""
        view, _changed = _escape_view(text)
        ids = {rule.id for rule, _regions in self._plan(text)}
        if view is not text:
            ids |= {rule.id for rule, _regions in self._plan(view)}
        return [rule for rule in self.rules if rule.id in ids]

    def _plan(
        self, text: str, near: list[int] | None = None, markers: set[int] | None = None
    ) -> list[tuple[Rule, list[tuple[int, int]] | None]]:
        """Which rules to confirm with ``re``, and on which regions (``None``: the whole text).

        ``near``: only matches near these offsets are wanted (see ``Automaton.regions``).
        ``markers``: the indexes into :data:`_MARKERS` of the markers the text may hold are added."""
        if not self.rules:
            return []
        automaton, widths = self.automaton()
        regions = automaton.regions(text, widths, near)
        n = len(text)
        n_rules = len(self.rules)
        plan = []
        for index in sorted(regions):
            if index >= n_rules:
                if markers is not None:
                    markers.add(index - n_rules)
                continue
            spans = regions[index]
            whole = len(spans) == 1 and spans[0][0] == 0 and spans[0][1] >= n
            plan.append((self.rules[index], None if whole else spans))
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
        """Every accepted match of every rule, before overlap resolution and allow comments.

        Args:
            text: The text to scan.
            rules: Run exactly these rules over the whole text instead of the automaton's plan.
        """
        out: list[Finding] = []
        data_uris: tuple[list[int], list[int]] | None = None
        # Rules run on the text as it is (some match escapes such as a JSON ``\\n`` on purpose)
        # and, when it holds separator escapes, on the view where those are spaces. The view
        # gets its own automaton pass (the automaton checks a key's left boundary, which an
        # escape letter changes) and is confirmed only near the escapes it changed.
        view, changed = _escape_view(text)
        has_view = view is not text
        n = len(text)
        _absent = object()
        plan: dict[str, list] = {}  # rule id -> [rule, text regions, view regions]
        if rules is None:
            markers: set[int] = set()
            for rule, regions in self._plan(text, markers=markers):
                plan[rule.id] = [rule, regions, _absent]
            if has_view:
                # The view differs from the text only near the escapes it changed; blocks far
                # from all of them hold nothing the text's own pass has not found.
                for rule, regions in self._plan(view, changed):
                    plan.setdefault(rule.id, [rule, _absent, _absent])[2] = regions
        else:
            for rule in rules:
                plan[rule.id] = [rule, None, None if has_view else _absent]
        if not plan:
            return out
        seen: set[tuple[str, int, int]] = set()
        # Once (per match it made many findings quadratic): from the automaton's pass when it
        # made one, else one search.
        has_data_uri = _DATA_URI_MARKER in markers if rules is None else ";base64," in text
        # Repeated text repeats matches: entropy, placeholder and validator checks run once
        # per distinct (rule, secret) of this text.
        judged: dict[tuple[str, str], Confidence | None] = {}
        windows: dict[int | None, list[tuple[int, int]] | None] = {}
        ordered = sorted(plan.values(), key=lambda p: self._order.get(p[0].id, len(self._order))) if rules is None else list(plan.values())
        for rule, text_regions, view_regions in ordered:
            groups = rule.secret_groups
            passes = [] if text_regions is _absent else [(text, text_regions)]
            if view_regions is not _absent:
                width = rule.max_width
                if width is not None:
                    # Rounded up to a power of two (wider windows are still sound), so the
                    # windows are built for a handful of widths, not once per distinct rule width
                    # (~110 of them: 50 ms per MiB on escape-heavy near-miss text).
                    width = 1 << max(0, width - 1).bit_length()
                if width not in windows:
                    windows[width] = _near_changes(changed, width, n)
                near = _intersect(view_regions, windows[width])
                if near is None or near:
                    passes.append((view, near))
            for m in (m for v, spans in passes for m in _finditer(rule.pattern, v, spans)):
                group = next((g for g in groups if m.group(g)), None)
                if group is None:
                    continue
                start, end = m.span(group)
                if len(passes) > 1:
                    if (rule.id, start, end) in seen:
                        continue
                    seen.add((rule.id, start, end))
                secret = text[start:end]
                if has_data_uri:
                    if data_uris is None:
                        data_uris = _disjoint_spans([u.span() for u in _DATA_URI_RE.finditer(text)])
                    if _inside(*data_uris, start, end):
                        continue  # inside an embedded image or other binary payload
                verdict = (rule.id, secret)
                if verdict in judged:
                    confidence = judged[verdict]
                else:
                    confidence = judged[verdict] = self._judge(rule, secret)
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
        kept = _resolve_overlaps(matches, self._by_id)
        out: list[Finding] = []
        lines = _Lines(text)
        for f in kept:  # ordered by position
            line, column, allowed = lines.locate(f.start)
            if allowed:
                continue
            out.append(f.with_location(Location(cell, field, line, column)))
        return out


def _resolve_overlaps(matches: list[Finding], rules: dict[str, Rule]) -> list[Finding]:
    """The findings kept where matches overlap, ordered by position.

    Among overlapping matches the most specific wins: higher confidence, then a provider rule
    over a generic one, then the longer match, then the earlier. A sort and a sweep split the
    matches into clusters of transitively overlapping ones (almost always a single match);
    only inside a cluster are candidates checked against the kept ones, by binary search, so
    many findings cost ``O(n log n)``, not ``O(n^2)``.
    """
    matches = sorted(matches, key=lambda f: (f.start, f.end))
    kept: list[Finding] = []
    cluster: list[Finding] = []
    cluster_end = -1

    def settle() -> None:
        if len(cluster) == 1:
            kept.append(cluster[0])
            return
        cluster.sort(key=lambda f: (-int(f.confidence), rules[f.rule].generic, -(f.end - f.start), f.start))
        starts: list[int] = []
        chosen: list[Finding] = []
        for f in cluster:
            # Kept spans are disjoint and sorted, so only the last one starting before f.end can overlap.
            i = bisect.bisect_left(starts, f.end) - 1
            if i >= 0 and chosen[i].end > f.start:
                continue
            starts.insert(i + 1, f.start)
            chosen.insert(i + 1, f)
        kept.extend(chosen)

    for f in matches:
        if cluster and f.start >= cluster_end:
            settle()
            cluster = []
        cluster.append(f)
        cluster_end = max(cluster_end, f.end) if len(cluster) > 1 else f.end
    if cluster:
        settle()
    return kept


class _Lines:
    """Line, column and allow-comment state of ascending offsets in one text.

    Each call counts only the newlines since the previous offset and looks at the text of a
    line (and the line before it, for allow-next-line comments) once, so the findings of a text
    cost O(len(text)) together, however many there are and however long the lines; a text
    with one finding is never split or lower-cased whole (a 16 MiB output used to be, twice).
    """

    def __init__(self, text: str) -> None:
        self._text = text
        self._at = 0  # offsets below this are counted
        self._line = 1  # the line holding self._at
        self._line_start = 0
        self._allowed: tuple[int, bool] | None = None  # (line, answer) for the current line

    def locate(self, offset: int) -> tuple[int, int, bool]:
        """``(line, column, allowed)`` of ``offset``; offsets must not decrease."""
        text = self._text
        if offset > self._at:
            newlines = text.count("\n", self._at, offset)
            if newlines:
                self._line += newlines
                self._line_start = text.rfind("\n", self._at, offset) + 1
            self._at = offset
        if self._allowed is None or self._allowed[0] != self._line:
            start = self._line_start
            end = text.find("\n", start)
            if end < 0:
                end = len(text)
            before = text.rfind("\n", 0, start - 1) + 1 if start > 0 else start
            if text.find(":", before, end) < 0:
                allowed = False  # every allow marker holds a colon: no line is copied or lower-cased
            else:
                previous = text[before:start - 1] if start > 0 else None
                allowed = line_is_allowed(text[start:end], previous)
            self._allowed = (self._line, allowed)
        return self._line, offset - self._line_start + 1, self._allowed[1]


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
