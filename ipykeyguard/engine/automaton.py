"""The linear-time first pass: every rule in one Hyperscan (Vectorscan) database.

Rules are written in Python ``re`` syntax and confirmed with Python ``re``. Python's ``re``
backtracks, so it only ever runs here on *regions*: the blocks of text where the automaton saw
a possible match of that rule, widened by the rule's maximum match width. The automaton itself
is a DFA/NFA hybrid with a linear-time guarantee, and the number of reports it makes is bounded
(one per rule per block, ``HS_FLAG_SINGLEMATCH``), so neither the input nor the number of
findings can make the first pass super-linear.

**How a Python pattern becomes an automaton pattern.** :func:`superset_pattern` walks the
pattern's parse tree (Python's own parser, so the syntax is exactly ``re``'s) and writes a
Hyperscan pattern that matches *at least* every string the Python pattern matches:

- look-arounds, ``\\b``, ``^``/``$`` and the other zero-width assertions are dropped (a
  weaker pattern matches more);
- a back-reference becomes the pattern of the group it refers to;
- repeats above :data:`_REPEAT_CAP` become unbounded (``{20,16000}`` -> ``{20,}``), which is
  a superset and keeps Hyperscan's compile small; their lower bound is kept up to
  :data:`_LOWER_CAP` (``{100,2000}`` -> ``{100,}``: a shorter near miss is not a report);
- the text is fed to the automaton as one byte per character: ASCII characters as themselves,
  every other character (lone surrogates included) as a byte in ``0x80-0xFF``. Every
  non-ASCII character the Python pattern can match (through ``\\w``, ``\\d``, ``\\s``, a
  negated class, ``.``, a non-ASCII literal, or case folding such as ``K`` / KELVIN SIGN) is
  written as the class ``[\\x80-\\xff]``. Offsets in the byte string are therefore offsets in
  the text, and no Unicode mode (slow to compile) is needed.

``HS_FLAG_PREFILTER`` is also set, so Hyperscan may widen further any construct it cannot
build exactly. A rule that still does not compile is a *fallback rule*: it is confirmed by
Python ``re`` over the whole text whenever the text is scanned (correct, not linear-bounded);
the test suite checks that no shipped rule falls back.

**Why regions are sound.** A Python match ``[s, e)`` of rule ``r`` is a string the automaton
pattern accepts, so the block holding ``e`` reports ``r``. The region of that block starts
``width(r) + margin`` before the block, so it holds ``[s, e)`` and the context a look-behind
reads. Regions of one rule are merged, so each character is examined by each rule's ``re`` at
most once plus the overlap of neighbouring blocks.
"""

from __future__ import annotations

import functools
import re
import threading
from dataclasses import dataclass
from typing import Iterable, Sequence

try:  # Python 3.11+ moved the regex parser
    from re import _constants as _c  # type: ignore[attr-defined]
    from re import _parser as _p  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - Python 3.10
    import sre_constants as _c  # type: ignore[no-redef]
    import sre_parse as _p  # type: ignore[no-redef]

__all__ = ["Automaton", "superset_pattern", "automaton_bytes", "ENGINE_VERSION"]

#: Bumped whenever the translation or the database layout changes: part of the cache key.
ENGINE_VERSION = "11"

#: Repeats with a larger upper bound are written unbounded for the automaton.
_REPEAT_CAP = 64
#: Lower bounds of unbounded repeats are kept up to this (``{100,2000}`` -> ``{100,}``).
_LOWER_CAP = 256
#: Context kept around a region for look-arounds at a match's edges.
MARGIN = 64

_HIGH = frozenset(range(0x80, 0x100))
_ALL = frozenset(range(0x100))


def _ascii_where(pattern: str) -> frozenset[int]:
    compiled = re.compile(pattern)
    return frozenset(c for c in range(0x80) if compiled.fullmatch(chr(c)))


# The tables below serve the translation only (a compile, on a cache miss): built on first
# use so that loading a cached automaton costs no regex compiles.
@functools.lru_cache(maxsize=1)
def _category_sets() -> dict:
    return {
        _c.CATEGORY_DIGIT: _ascii_where(r"\d") | _HIGH,
        _c.CATEGORY_NOT_DIGIT: _ascii_where(r"\D") | _HIGH,
        _c.CATEGORY_SPACE: _ascii_where(r"\s") | _HIGH,
        _c.CATEGORY_NOT_SPACE: _ascii_where(r"\S") | _HIGH,
        _c.CATEGORY_WORD: _ascii_where(r"\w") | _HIGH,
        _c.CATEGORY_NOT_WORD: _ascii_where(r"\W") | _HIGH,
    }


_ASSERTIONS = {_c.AT, _c.ASSERT, _c.ASSERT_NOT}
_REPEATS = {_c.MAX_REPEAT, _c.MIN_REPEAT} | ({_c.POSSESSIVE_REPEAT} if hasattr(_c, "POSSESSIVE_REPEAT") else set())
_ATOMIC = getattr(_c, "ATOMIC_GROUP", None)
_IGNORECASE = re.IGNORECASE.value
_DOTALL = re.DOTALL.value


@functools.lru_cache(maxsize=1)
def _folds_to_non_ascii() -> frozenset[int]:
    """ASCII letters that Python's case-insensitive matching also finds as a non-ASCII character
    (KELVIN SIGN, LONG S, dotted and dotless I); computed, not hard-coded, so a Python whose
    case tables differ is still covered."""
    return frozenset(
        c for c in range(0x80)
        if chr(c).isalpha()
        and re.compile("(?i)[" + chr(c) + "]").search("\u0130\u0131\u017f\u212a\u1e9e\u2126") is not None
    )


def _case_closure(chars: Iterable[int]) -> set[int]:
    """``chars`` plus the other case of each ASCII letter, plus the non-ASCII bytes for the
    few letters that Unicode case folding reaches from outside ASCII (``k`` / KELVIN SIGN).

    Only those letters: giving every caseless letter the non-ASCII bytes would turn
    ``(?i:kaggle)`` from a literal into a class chain and cost Hyperscan seconds to compile.
    """
    out = set(chars)
    letters = {c for c in out if c < 0x80 and chr(c).isalpha()}
    for c in letters:
        out.add(ord(chr(c).swapcase()))
    if any(c in _folds_to_non_ascii() for c in out):
        out |= _HIGH
    return out


def _byte_set(op, av, flags: int) -> frozenset[int]:
    """The automaton bytes one character-matching node can match."""
    ignorecase = bool(flags & _IGNORECASE)
    if op is _c.LITERAL:
        chars = {av} if av < 0x80 else set(_HIGH)
        return frozenset(_case_closure(chars) if ignorecase else chars)
    if op is _c.NOT_LITERAL:
        excluded = {av} if av < 0x80 else set()
        if ignorecase:
            excluded = {c for c in _case_closure(excluded) if c < 0x80}
        return _ALL - excluded
    if op is _c.ANY:
        return _ALL if flags & _DOTALL else _ALL - {0x0A}
    if op is _c.CATEGORY:
        return _category_sets()[av]
    if op is _c.IN:
        negate = False
        chars: set[int] = set()
        for item_op, item_av in av:
            if item_op is _c.NEGATE:
                negate = True
            elif item_op is _c.LITERAL:
                chars |= {item_av} if item_av < 0x80 else _HIGH
            elif item_op is _c.RANGE:
                lo, hi = item_av
                chars |= set(range(lo, min(hi, 0x7F) + 1))
                if hi >= 0x80:
                    chars |= _HIGH
            elif item_op is _c.CATEGORY:
                chars |= _category_sets()[item_av]
            else:  # pragma: no cover - parser-only node types are the ones above
                chars |= _ALL
        if ignorecase:
            chars = _case_closure(chars)
        if negate:
            return frozenset((_ALL - chars) | _HIGH)
        return frozenset(chars)
    raise ValueError(f"not a character node: {op}")  # pragma: no cover


def _class(chars: frozenset[int]) -> str:
    """A Hyperscan character class for a byte set (``[^\\x00-\\xff]`` for the empty set)."""
    if not chars:
        return "[^\\x00-\\xff]"
    ranges = []
    ordered = sorted(chars)
    lo = prev = ordered[0]
    for c in ordered[1:]:
        if c == prev + 1:
            prev = c
            continue
        ranges.append((lo, prev))
        lo = prev = c
    ranges.append((lo, prev))
    body = "".join(f"\\x{a:02x}" if a == b else f"\\x{a:02x}-\\x{b:02x}" for a, b in ranges)
    return f"[{body}]"


def _emit_rep(lo: int, hi: int, inner: str) -> str:
    if hi == _c.MAXREPEAT or hi > _REPEAT_CAP:
        return f"(?:{inner}){{{min(lo, _LOWER_CAP)},}}"
    return f"(?:{inner}){{{lo},{hi}}}"


def superset_pattern(regex: str) -> str:
    """A Hyperscan pattern (byte mode) that matches every string ``regex`` matches in Python.

    The text must be given to the automaton through :func:`automaton_bytes`.

    Args:
        regex: A pattern in Python ``re`` syntax.

    Returns:
        The automaton pattern (possibly matching more; see the module docstring).

    Raises:
        re.error: ``regex`` is not a valid Python pattern.
    """
    parsed = _p.parse(regex)
    flags = parsed.state.flags
    groups: dict[int, str] = {}

    def emit(nodes, flags: int) -> str:
        out: list[str] = []
        for op, av in nodes:
            if op in _ASSERTIONS:
                continue
            if op in (_c.LITERAL, _c.NOT_LITERAL, _c.ANY, _c.CATEGORY, _c.IN):
                out.append(_class(_byte_set(op, av, flags)))
            elif op in _REPEATS:
                lo, hi, sub = av
                inner = emit(sub, flags)
                if not inner:
                    continue
                out.append(_emit_rep(lo, hi, inner))
            elif op is _c.SUBPATTERN:
                group, add_flags, del_flags, sub = av
                inner = emit(sub, (flags | add_flags) & ~del_flags)
                if group is not None:
                    groups[group] = inner
                out.append(f"(?:{inner})")
            elif op is _c.BRANCH:
                out.append("(?:" + "|".join(emit(alt, flags) for alt in av[1]) + ")")
            elif op is _c.GROUPREF:
                out.append(f"(?:{groups[av]})" if av in groups else "[\\x00-\\xff]*")
            elif op is _c.GROUPREF_EXISTS:
                _group, yes, no = av
                out.append("(?:" + emit(yes, flags) + "|" + (emit(no, flags) if no is not None else "") + ")")
            elif _ATOMIC is not None and op is _ATOMIC:
                out.append("(?:" + emit(av, flags) + ")")
            else:  # an unknown node: anything at all, still a superset
                out.append("[\\x00-\\xff]*")
        return "".join(out)

    nodes = list(parsed)
    head = _edge_guard(nodes[0], flags, behind=True) if nodes else None
    tail = _tail_guard(nodes, flags)
    body = emit(nodes, flags)
    if head is not None:
        body = f"(?:^|{head})(?:{body})"
    if tail is not None:
        body = f"(?:{body})(?:{tail}|$)"
    return body


_CHAR_OPS = (_c.LITERAL, _c.NOT_LITERAL, _c.ANY, _c.CATEGORY, _c.IN)


def _edge_guard(node, flags: int, *, behind: bool) -> str | None:
    """The automaton class for a pattern's leading negative look-behind (or trailing negative
    look-ahead) of one character, e.g. ``(?<![A-Za-z0-9_-])``; ``None`` for anything else.

    Written as ``(?:^|[^class])`` before the pattern (``(?:[^class]|$)`` after it), the boundary
    check moves into the automaton: a glued run such as ``sk-sk-proj-sk-...`` or ``ghp_..ghp_..``
    no longer matches the superset at every repetition, where it made Hyperscan track
    overlapping candidates (``sk-prefixes``: 90 ms per 256 KiB) and made every block a region.
    Still a superset: every non-ASCII character reads as ``0x80``, which the guard always admits
    (some non-ASCII character may be outside the class), and ``^``/``$`` admit a block's edges.
    """
    allowed = _edge_guard_bytes(node, flags, behind=behind)
    return None if allowed is None else _class(allowed)


def _edge_guard_bytes(node, flags: int, *, behind: bool) -> frozenset[int] | None:
    """The bytes :func:`_edge_guard` admits (``None``: not a one-character negative look-around)."""
    op, av = node
    if op is not _c.ASSERT_NOT:
        return None
    direction, sub = av
    if (direction < 0) != behind:
        return None
    sub = list(sub)
    if len(sub) != 1 or sub[0][0] not in _CHAR_OPS:
        return None
    inside = _byte_set(sub[0][0], sub[0][1], flags)
    return frozenset((_ALL - inside) | _HIGH)


def _lookahead_bytes(node, flags: int) -> frozenset[int] | None:
    """The bytes a trailing one-character positive look-ahead (``(?=[A-Za-z0-9.])``) may see
    (over-approximated like any character node); ``None`` for anything else."""
    op, av = node
    if op is not _c.ASSERT or av[0] < 0:
        return None
    sub = list(av[1])
    if len(sub) != 1 or sub[0][0] not in _CHAR_OPS:
        return None
    return _byte_set(sub[0][0], sub[0][1], flags)


def _tail_guard(nodes, flags: int) -> str | None:
    """The automaton pattern for a pattern's trailing look-aheads: a one-character negative
    guard, the complement of a longer negative look-ahead, a one-character positive look-ahead,
    or a positive one followed by a negative one (``url-credentials``:
    ``@(?=[A-Za-z0-9.\\[_-])(?![A-Za-z][A-Za-z0-9+.-]{0,20}://)``); ``None`` when there is none.

    A dropped positive look-ahead made every ``user:pw@`` followed by a newline a report (the
    DB-URL rules on near-miss text: a region and a ``re`` pass per line).
    """
    if len(nodes) < 2:
        return None
    last = nodes[-1]
    first = _lookahead_bytes(last, flags)
    if first is not None:
        return _class(first)
    first = _lookahead_bytes(nodes[-2], flags) if len(nodes) > 2 else None
    allowed = _edge_guard_bytes(last, flags, behind=False)
    if allowed is not None:
        return _class(allowed if first is None else allowed & first)
    complement = _lookahead_complement(last, flags, next_bytes=first)
    if complement is None and first is not None:
        return _class(first)
    return complement


#: Limits for :func:`_lookahead_complement`: the look-ahead's automaton may have at most this
#: many states, read at most this many characters (the complement then stays within the
#: :data:`MARGIN` a region keeps after a reported end) and be written in this many characters.
_COMPLEMENT_MAX_STATES = 256
_COMPLEMENT_MAX_DEPTH = 32
_COMPLEMENT_MAX_SIZE = 20_000


class _Unsupported(Exception):
    """A look-ahead body the complement construction does not handle (it is then dropped)."""


def _sure_bytes(op, av, flags: int) -> frozenset[int]:
    """The automaton bytes *every* character of which matches this node: the ASCII characters
    it matches, plus the non-ASCII bytes only when it matches every non-ASCII character.

    The under-approximation of :func:`_byte_set`: reading text through it, a look-ahead that
    matches the bytes certainly matches the characters behind them.
    """
    ascii_part = frozenset(c for c in _byte_set(op, av, flags) if c < 0x80)
    ignorecase = bool(flags & _IGNORECASE)
    if op is _c.ANY:
        return ascii_part | _HIGH  # "." excludes only "\n" (and nothing with DOTALL)
    if op is _c.NOT_LITERAL:
        folds = ignorecase and av < 0x80 and av in _folds_to_non_ascii()
        return ascii_part | (frozenset() if folds or av >= 0x80 else _HIGH)
    if op is _c.IN and av and av[0][0] is _c.NEGATE:
        for item_op, item_av in av[1:]:
            if item_op is _c.LITERAL and item_av < 0x80 and not (ignorecase and item_av in _folds_to_non_ascii()):
                continue
            if item_op is _c.RANGE and item_av[1] < 0x80 and not (
                ignorecase and any(c in _folds_to_non_ascii() for c in range(item_av[0], item_av[1] + 1))
            ):
                continue
            return ascii_part  # an excluded item reaches outside ASCII
        return ascii_part | _HIGH
    return ascii_part


def _lookahead_complement(node, flags: int, *, next_bytes: frozenset[int] | None = None) -> str | None:
    """An automaton pattern for a trailing ``(?!X)``: the strings no prefix of which is in X
    (or the end of the text), when X is a bounded pattern of characters; ``None`` otherwise.

    Dropping the look-ahead (the plain superset) makes every near-match a report: with
    ``url-credentials``' ``(?![A-Za-z][A-Za-z0-9+.-]{0,20}://)``, a text of repeated
    ``https://user:pw@`` reported every 22 characters, flooded the exact pass and sent whole
    blocks to Python ``re``. The complement is built as a finite automaton of X (byte classes
    from :func:`_sure_bytes`, so the automaton rejects only where Python's look-ahead certainly
    fails: still a superset), made deterministic, and written out state by state: at each state
    the text may end, read a character that leaves X (the match ends there), or read one that
    keeps X possible and continue; characters that complete X are not allowed. ``next_bytes``: the
    bytes a positive look-ahead at the same place allows as the next character (the others are
    not allowed either).
    """
    op, av = node
    if op is not _c.ASSERT_NOT or av[0] < 0:
        return None
    try:
        start, accept, moves, empties = _nfa(list(av[1]), flags)
    except (_Unsupported, RecursionError):
        return None

    def closure(states) -> frozenset[int]:
        seen, todo = set(states), list(states)
        while todo:
            for t in empties.get(todo.pop(), ()):
                if t not in seen:
                    seen.add(t)
                    todo.append(t)
        return frozenset(seen)

    # Bytes that no node tells apart behave alike: one representative per class of bytes.
    signature: dict[int, tuple] = {b: () for b in range(0x100)}
    all_sets = [chars for out in moves.values() for chars, _t in out]
    for i, chars in enumerate(all_sets):
        for b in chars:
            signature[b] = signature[b] + (i,)
    byte_classes: dict[tuple, list[int]] = {}
    for b, sig in signature.items():
        byte_classes.setdefault(sig, []).append(b)

    first = closure({start})
    if accept in first:
        return None  # X matches the empty string: (?!X) never holds; keep the plain superset
    index: dict[frozenset[int], int] = {first: 0}
    table: list[dict[int, int | None]] = []  # state -> {representative byte: next state or None (left X)}
    accepting: set[int] = set()
    order = [first]
    depth = {0: 0}
    while len(table) < len(order):
        here = order[len(table)]
        me = len(table)
        row: dict[int, int | None] = {}
        table.append(row)
        if accept in here:
            accepting.add(me)
            continue
        for members in byte_classes.values():
            b = members[0]
            nxt = closure({t for s in here for chars, t in moves.get(s, ()) if b in chars})
            if not nxt:
                row[b] = None
                continue
            if nxt not in index:
                index[nxt] = len(order)
                order.append(nxt)
                depth[index[nxt]] = depth[me] + 1
                if len(order) > _COMPLEMENT_MAX_STATES or depth[index[nxt]] > _COMPLEMENT_MAX_DEPTH:
                    return None
            row[b] = index[nxt]
    members_of = {members[0]: members for members in byte_classes.values()}
    written: dict[int, str] = {}

    def write(state: int) -> str:
        if state in written:
            return written[state]
        leave: set[int] = set()
        onward: dict[int, set[int]] = {}
        for b, nxt in table[state].items():
            chars = members_of[b]
            if state == 0 and next_bytes is not None:
                chars = [c for c in chars if c in next_bytes]
            if nxt is None:
                leave.update(chars)
            elif nxt not in accepting:
                onward.setdefault(nxt, set()).update(chars)
        onward = {nxt: chars for nxt, chars in onward.items() if chars}
        parts = ["$"]
        if leave:
            parts.append(_class(frozenset(leave)))
        for nxt, chars in onward.items():
            parts.append(_class(frozenset(chars)) + "(?:" + write(nxt) + ")")
        text = "|".join(parts)
        if len(text) > _COMPLEMENT_MAX_SIZE:
            raise _Unsupported("complement too large")
        written[state] = text
        return text

    try:
        return write(0)
    except (_Unsupported, RecursionError):
        return None


def _nfa(nodes, flags: int):
    """A Thompson automaton for a bounded pattern: ``(start, accept, moves, empties)`` where
    ``moves[state]`` lists ``(bytes, next state)`` and ``empties[state]`` the states reached
    without reading. Raises :class:`_Unsupported` for assertions, back-references and
    unbounded or large repeats (the language must be finite for a finite complement)."""
    moves: dict[int, list[tuple[frozenset[int], int]]] = {}
    empties: dict[int, list[int]] = {}
    count = [0]

    def new() -> int:
        count[0] += 1
        if count[0] > 4 * _COMPLEMENT_MAX_STATES:
            raise _Unsupported("too many states")
        return count[0]

    def build(items, at: int, flags: int) -> int:
        for op, av in items:
            if op in _CHAR_OPS:
                to = new()
                moves.setdefault(at, []).append((_sure_bytes(op, av, flags), to))
                at = to
            elif op is _c.SUBPATTERN:
                _group, add_flags, del_flags, sub = av
                at = build(list(sub), at, (flags | add_flags) & ~del_flags)
            elif op is _c.BRANCH:
                end = new()
                for alt in av[1]:
                    begin = new()
                    empties.setdefault(at, []).append(begin)
                    empties.setdefault(build(list(alt), begin, flags), []).append(end)
                at = end
            elif op in _REPEATS:
                lo, hi, sub = av
                if hi == _c.MAXREPEAT or hi > _COMPLEMENT_MAX_DEPTH:
                    raise _Unsupported("unbounded repeat")
                for _ in range(lo):
                    at = build(list(sub), at, flags)
                ends = [at]
                for _ in range(hi - lo):
                    at = build(list(sub), at, flags)
                    ends.append(at)
                end = new()
                for e in ends:
                    empties.setdefault(e, []).append(end)
                at = end
            else:
                raise _Unsupported(str(op))
        return at

    start = new()
    accept = build(nodes, start, flags)
    return start, accept, moves, empties


#: ``b"?"`` (what the ASCII encoder's "replace" handler writes for a non-ASCII character) -> 0x80.
_QUESTION_HIGH = bytes(0x80 if i == 0x3F else i for i in range(0x100))
#: Every byte of 0x80 or more -> 0x80: the same bytes for a character whatever its neighbours.
_HIGH_TO_80 = bytes(min(i, 0x80) for i in range(0x100))
#: ``b"?"`` -> 0x80, every other byte -> 0: a mask of where the replacements are.
_QUESTION_FLAG = bytes(0x80 if i == 0x3F else 0 for i in range(0x100))


def automaton_bytes(text: str) -> bytes:
    """``text`` as the automaton reads it: one byte per character, every non-ASCII character
    the byte 0x80 (the translation treats all of ``0x80-0xFF`` alike).

    Every step is one C call over the text, whatever its mix of characters: the ASCII encoder's
    "replace" handler writes ``?`` for each non-ASCII code point (lone surrogates too) without a
    Python callback, and a translation turns those into 0x80. Where the text holds real ``?``
    characters, a second encoding with them hidden marks which ``?`` were replacements, and an
    integer OR sets the high bit there. (Replacing runs of non-ASCII characters with a regex
    callback, as before, cost one Python call per run: 100 ms per MiB for ``"a数"`` repeated.)
    """
    if text.isascii():
        return text.encode("ascii")
    coded = text.encode("ascii", "replace")
    if "?" not in text:
        return coded.translate(_QUESTION_HIGH)
    # DEL stands in for each real "?": after this encoding a "?" is a replacement only.
    replaced = text.replace("?", "\x7f").encode("ascii", "replace").translate(_QUESTION_FLAG)
    marked = (int.from_bytes(coded, "little") | int.from_bytes(replaced, "little")).to_bytes(len(text), "little")
    return marked.translate(_HIGH_TO_80)  # 0xBF (a "?" with the high bit) -> 0x80, as without real "?"


#: Characters of a non-ASCII text copied out and made into bytes at a time (see _window_bytes).
_CONVERT_CHUNK = 1 << 16


def _window_bytes(text: str, lo: int, hi: int) -> bytes:
    """``automaton_bytes(text[lo:hi])``; a non-ASCII text (2 or 4 bytes per character) is copied
    out and converted a small chunk at a time, so each copy is still in the CPU cache when it
    is encoded and searched (a 4 MB copy of a 1 Mi-character window was not)."""
    if text.isascii() or hi - lo <= _CONVERT_CHUNK:
        return automaton_bytes(text[lo:hi])
    return b"".join(automaton_bytes(text[at:min(hi, at + _CONVERT_CHUNK)]) for at in range(lo, hi, _CONVERT_CHUNK))


@dataclass(frozen=True)
class _Tier:
    """Rules of similar maximum width, scanned in blocks sized to that width."""

    rule_indexes: tuple[int, ...]  # automaton id -> index into the rule list
    width: int  # the widest rule in this tier (characters)
    block: int  # characters per block
    exact: bool = False  # compiled without SINGLEMATCH: reports every match end (see regions)


#: Tier upper widths; a rule goes into the first tier it fits. ``None``: unbounded rules.
_TIER_WIDTHS = (512, 4096, 40_000, None)
_MIN_BLOCK = 2048
#: Reports one exact scan of a block may make, per this many characters of the block, before
#: it stops and the block falls back to the single-match database (so a run that matches at
#: every offset cannot flood Python callbacks: at most one callback per 32 characters).
_EXACT_SPACING = 32
#: Texts up to this long are confirmed whole when they fit in one block (a cell: the exact
#: pass would cost more Python than it saves).
_EXACT_MIN_TEXT = 8192
#: Longest string escape an escape view changes (``\\U0000000a``), for ``regions(near=...)``.
_NEAR_REACH = 10
#: How far past a Python match's end the automaton may report it: one character for a trailing
#: one-character guard, up to the complement's depth for a trailing look-ahead complement.
_REPORT_LAG = _COMPLEMENT_MAX_DEPTH + 1


def _near_pieces(near: Sequence[int], width: int, block: int, n: int) -> Iterable[tuple[int, int]]:
    """The spans of reported ends wanted around each offset in ``near``, merged and cut into
    pieces of at most ``block`` characters.

    An escape at ``p`` changes characters ``p + 1 .. p + _NEAR_REACH``; a match ``[s, e)`` of a
    rule at most ``width`` wide differs between text and view only if a changed character lies
    within its look-around context (``MARGIN``) of it: ``s - MARGIN <= c < e + MARGIN``. So
    ``p + 1 - MARGIN < e < p + _NEAR_REACH + width + MARGIN``, and the automaton reports ``e``
    at most ``_REPORT_LAG`` later. Scanning whole blocks near an escape instead (as before)
    re-read ~3 widths per escape, the whole text when escapes are a few hundred characters apart.
    """
    lo_pad = MARGIN
    hi_pad = _NEAR_REACH + width + MARGIN + _REPORT_LAG
    spans: list[list[int]] = []
    for p in near:
        lo, hi = max(0, p + 1 - lo_pad), min(n, p + hi_pad)
        if lo >= hi:
            continue
        if spans and lo <= spans[-1][1]:
            spans[-1][1] = max(spans[-1][1], hi)
        else:
            spans.append([lo, hi])
    for lo, hi in spans:
        for start in range(lo, hi, block):
            yield start, min(hi, start + block)


def tiers_for(widths: Sequence[int | None]) -> list[_Tier]:
    """Group rule indexes by maximum width (see :data:`_TIER_WIDTHS`)."""
    buckets: dict[int | None, list[int]] = {}
    for index, width in enumerate(widths):
        for limit in _TIER_WIDTHS:
            if width is not None and (limit is None or width <= limit):
                buckets.setdefault(limit, []).append(index)
                break
            if width is None and limit is None:
                buckets.setdefault(None, []).append(index)
                break
    tiers = []
    for limit in _TIER_WIDTHS:
        indexes = buckets.get(limit)
        if not indexes:
            continue
        bounded = [widths[i] for i in indexes if widths[i] is not None]
        if limit is None and len(bounded) < len(indexes):
            tiers.append(_Tier(tuple(indexes), -1, -1))  # unbounded: always the whole text
            continue
        width = max(bounded)
        # A power of two: a window (a larger power of two) then holds whole blocks, so no
        # block's bytes are made twice, in two windows.
        tiers.append(_Tier(tuple(indexes), width, max(_MIN_BLOCK, 1 << (16 * width - 1).bit_length())))
    return tiers


#: Characters of text turned into automaton bytes at a time (see :meth:`Automaton.regions`).
_WINDOW = 1 << 20


class _Pass:
    """One tier's blocks (or pieces near escapes) and its flood back-off, during one scan."""

    __slots__ = ("tier", "scan", "scratch", "twin", "pieces", "next", "overlap", "cap", "backoff", "skip")

    def __init__(self, tier: _Tier, scan, scratch, twin, pieces: list[tuple[int, int]]) -> None:
        self.tier, self.scan, self.scratch, self.twin, self.pieces = tier, scan, scratch, twin, pieces
        self.next = 0  # index of the first piece not yet scanned
        self.overlap = tier.width + MARGIN
        self.cap = max(64, tier.block // _EXACT_SPACING)
        self.backoff = self.skip = 0  # after a flooded block, the next ``skip`` go single-match


class Automaton:
    """The compiled first pass for one ordered list of rule patterns.

    Build it with :func:`ipykeyguard.engine.dbcache.load_automaton` (cached) or
    :meth:`compile` (always compiles).
    """

    def __init__(self, tiers: list[_Tier], databases: list, fallback: tuple[int, ...], n_rules: int) -> None:
        import hyperscan

        self.tiers = tiers
        # A compiled database, or its serialized bytes until first use: a cached exact twin is
        # deserialized only when a text longer than one cell needs it (see dbcache._decode).
        self._databases = list(databases)
        self._load_lock = threading.Lock()
        self.fallback = fallback
        self.n_rules = n_rules
        self._hyperscan = hyperscan
        # Hyperscan scratch space may not be shared by two scans at once: one per thread
        # (the kernel scans input on the main thread and output on the IOPub thread).
        self._local = threading.local()
        # (tier, database index, exact twin's database index or None), single-match tiers only.
        twin_of = {tier.rule_indexes: i for i, tier in enumerate(tiers) if tier.exact}
        self._order = [(tier, i, twin_of.get(tier.rule_indexes)) for i, tier in enumerate(tiers) if not tier.exact]

    @property
    def databases(self) -> list:
        """Every database, compiled or deserialized now."""
        return [self._database(i) for i in range(len(self._databases))]

    def _database(self, at: int):
        db = self._databases[at]
        if isinstance(db, bytes):
            with self._load_lock:
                db = self._databases[at]
                if isinstance(db, bytes):
                    db = self._databases[at] = self._hyperscan.loadb(db, self._hyperscan.HS_MODE_BLOCK)
        return db

    def _scratch(self, at: int):
        scratches = getattr(self._local, "scratches", None)
        if scratches is None:
            scratches = self._local.scratches = [None] * len(self._databases)
        scratch = scratches[at]
        if scratch is None:
            scratch = scratches[at] = self._hyperscan.Scratch(self._database(at))
        return scratch

    # -- building -------------------------------------------------------------------------
    @classmethod
    def compile_parts(cls, regexes: Sequence[str], widths: Sequence[int | None]):
        """Compile the databases. Returns ``(tiers, databases, fallback)``."""
        import hyperscan

        flags = hyperscan.HS_FLAG_SINGLEMATCH | hyperscan.HS_FLAG_ALLOWEMPTY | hyperscan.HS_FLAG_PREFILTER
        translated: dict[int, bytes] = {}
        fallback: list[int] = []
        for index, regex in enumerate(regexes):
            try:
                translated[index] = superset_pattern(regex).encode("ascii")
            except (re.error, RecursionError, KeyError, ValueError):
                fallback.append(index)
        try:  # the common case: everything compiles in one go per tier
            return cls._compile_tiers(translated, widths, flags, fallback)
        except hyperscan.error:
            pass
        for index in list(translated):  # find the rules Hyperscan refuses, one by one
            single = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
            try:
                single.compile(expressions=[translated[index]], ids=[0], flags=[flags])
            except hyperscan.error:
                del translated[index]
                fallback.append(index)
        return cls._compile_tiers(translated, widths, flags, sorted(fallback))

    @staticmethod
    def _compile_tiers(translated: dict[int, bytes], widths: Sequence[int | None], flags: int, fallback: list[int]):
        import hyperscan

        usable = [w if i in translated else 0 for i, w in enumerate(widths)]
        tiers = [
            _Tier(tuple(i for i in tier.rule_indexes if i in translated), tier.width, tier.block)
            for tier in tiers_for(usable)
        ]
        tiers = [tier for tier in tiers if tier.rule_indexes]
        # Each bounded narrow tier is followed by its exact twin (same rules, every end reported).
        tiers = [t for tier in tiers for t in (
            (tier, _Tier(tier.rule_indexes, tier.width, tier.block, True))
            if tier.width >= 0 else (tier,)
        )]
        databases = []
        for tier in tiers:
            db = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
            tier_flags = flags & ~hyperscan.HS_FLAG_SINGLEMATCH if tier.exact else flags
            db.compile(
                expressions=[translated[i] for i in tier.rule_indexes],
                ids=list(range(len(tier.rule_indexes))),
                flags=[tier_flags] * len(tier.rule_indexes),
            )
            databases.append(db)
        return tiers, databases, tuple(fallback)

    @classmethod
    def compile(cls, regexes: Sequence[str], widths: Sequence[int | None]) -> "Automaton":
        """Compile an automaton for ``regexes`` (Python syntax) with their maximum widths."""
        tiers, databases, fallback = cls.compile_parts(regexes, widths)
        return cls(tiers, databases, fallback, len(regexes))

    # -- scanning -------------------------------------------------------------------------
    def regions(
        self, text: str, widths: Sequence[int | None], near: Sequence[int] | None = None
    ) -> dict[int, list[tuple[int, int]]]:
        """Where each rule may match: ``{rule index: [(lo, hi), ...]}``, ascending and disjoint.

        A rule missing from the result cannot match anywhere in ``text``; fallback rules are
        always present with the whole text.

        Args:
            text: The text to scan.
            widths: The maximum match width of each rule (as given to :meth:`compile`).
            near: Ascending offsets (the escapes an escape view changed): only matches that
                can differ from the text's around one of them are wanted, so only the windows
                :func:`_near_pieces` gives are scanned.
        """
        n = len(text)
        out: dict[int, list[tuple[int, int]]] = {i: [(0, n)] for i in self.fallback}
        hit: list[int] = []

        def on_match(ident, _start, _end, _flags, _context):
            hit.append(ident)
            return None

        ends: list[tuple[int, int]] = []

        cap = [0]

        def on_end(ident, _start, end, _flags, _context):
            ends.append((ident, end))
            return len(ends) >= cap[0]  # True stops the scan: this block falls back

        def add(index: int, start: int, end: int) -> None:
            spans = out.setdefault(index, [])
            if spans and start <= spans[-1][1]:
                if end > spans[-1][1]:
                    spans[-1] = (spans[-1][0], end)
            else:
                spans.append((start, end))

        whole: bytes | None = None
        passes: list[_Pass] = []
        for tier, at, twin_at in self._order:
            db, scratch = self._database(at), self._scratch(at)
            indexes = tier.rule_indexes
            # A text within one block is confirmed whole, except a long one with an exact twin
            # (a 64 KiB text in a 512 KiB-block tier: regions by end offsets pay off there).
            if tier.block < 0 or (n <= tier.block and (twin_at is None or n <= _EXACT_MIN_TEXT)):
                if whole is None:
                    whole = automaton_bytes(text)
                hit.clear()
                db.scan(whole, match_event_handler=on_match, scratch=scratch)
                for ident in hit:
                    out[indexes[ident]] = [(0, n)]
                continue
            pieces = (
                [(lo, min(n, lo + tier.block)) for lo in range(0, n, tier.block)] if near is None
                else list(_near_pieces(near, tier.width, tier.block, n))
            )
            if pieces:
                twin = (self._database(twin_at).scan, self._scratch(twin_at)) if twin_at is not None else None
                passes.append(_Pass(tier, db.scan, scratch, twin, pieces))
        if not passes:
            return out
        terminated = self._hyperscan.ScanTerminated
        # Every tier's pieces are scanned window by window: the window's bytes are made once and
        # are still in the CPU cache when the next tier reads them (a 16 MiB text made whole and
        # read by each tier in turn came from memory every time: 2x the per-MiB cost of 1 MiB).
        window_start = 0
        while window_start < n:
            window_end = window_start + _WINDOW
            chosen: list[tuple[_Pass, list[tuple[int, int]]]] = []
            data_lo, data_hi = n, 0
            for job in passes:
                first = job.next
                while job.next < len(job.pieces) and job.pieces[job.next][0] < window_end:
                    job.next += 1
                if job.next > first:
                    mine = job.pieces[first:job.next]
                    data_lo = min(data_lo, max(0, mine[0][0] - job.overlap))
                    data_hi = max(data_hi, mine[-1][1])
                    chosen.append((job, mine))
            if chosen:
                if data_lo == 0 and data_hi == n and whole is not None:
                    chunk = whole
                else:
                    chunk = _window_bytes(text, data_lo, data_hi)
                view = memoryview(chunk)  # block slices without copies
                for job, mine in chosen:
                    indexes, overlap = job.tier.rule_indexes, job.overlap
                    cap[0] = job.cap
                    for lo, hi in mine:
                        base = max(0, lo - overlap)
                        if job.twin is not None and job.skip:
                            job.skip -= 1
                        elif job.twin is not None:
                            # Every end offset in the block: ``re`` then runs only on a rule's
                            # width around each end (a Python match [s, e) of the rule is
                            # accepted by the automaton pattern, so e, or a little later with a
                            # trailing guard or complement, is reported).
                            ends.clear()
                            try:
                                job.twin[0](view[base - data_lo:hi - data_lo], match_event_handler=on_end, scratch=job.twin[1])
                            except terminated:
                                pass  # the cap was reached
                            if len(ends) >= job.cap:
                                # Dense text stays dense: back off exponentially so a flooded
                                # text pays the exact pass on a few blocks only, not on every one.
                                job.backoff = job.skip = min(2 * job.backoff + 1, 64)
                            else:
                                job.backoff = 0
                                for ident, end in ends:
                                    e = base + end
                                    if e <= lo and lo > 0:
                                        continue  # ended in the overlap: the previous block reported it
                                    index = indexes[ident]
                                    add(index, max(0, e - (widths[index] or 0) - MARGIN), min(n, e + MARGIN))
                                continue
                        hit.clear()
                        job.scan(view[base - data_lo:hi - data_lo], match_event_handler=on_match, scratch=job.scratch)
                        for ident in hit:
                            index = indexes[ident]
                            width = widths[index] or 0
                            add(index, max(0, lo - width - MARGIN), min(n, hi + MARGIN))
            window_start = window_end
            if near is not None:  # sparse pieces: jump to the next one
                upcoming = [job.pieces[job.next][0] for job in passes if job.next < len(job.pieces)]
                if not upcoming:
                    break
                window_start = max(window_start, min(upcoming) // _WINDOW * _WINDOW)
        return out
