"""Output redaction: known secret values and rule matches replaced by masks.

This is the pure core behind the kernel output guard (:mod:`ipykeyguard._output_guard`) and the
terminal stream wrapper. It imports no host framework.

Two sources of secrets are masked:

* **Known values** - exact strings the guard already knows (keys the input guard moved, values
  in the secret store, environment variables with secret-like names, values registered with
  ``%keyguard mask``). They are matched exactly - a few by one substring test each, more by one
  Aho-Corasick pass, so the cost of a pass does not grow with the number of values - and each
  is replaced by ``mask_for(name)`` (leftmost first, the longest value where several start).
* **Fragments of known values** - a truncated repr (``%whos``, a DataFrame cell, an ``x[:30]``)
  shows part of a key. Every run of :data:`FRAGMENT_LENGTH` (8) or more characters that is a
  substring of a known value is masked too: every 8-gram of every value is indexed in one
  Aho-Corasick automaton, and each hit is extended over the run it starts, so the cost stays
  one linear pass. 8-grams that read like ordinary words (all lower case, all upper case, all
  digits, or one capitalised word, punctuation aside) are not indexed, so a value holding
  ``password`` or a fixed prefix such as ``sk-proj-`` does not mask those words elsewhere.
* **Rules** - whatever the :class:`~ipykeyguard.engine.scan.Scanner` finds at or above
  ``min_confidence`` is replaced by :attr:`Finding.mask`.

A mask names the variable or rule and never holds a character of the key. Text with nothing to
mask is returned as the very same object (callers rely on this to keep harmless output
byte-identical and to skip copying messages).

:class:`StreamRedactor` adds hold-back for streams: a known value printed in pieces across
separate writes is still masked.
"""

from __future__ import annotations

import logging
import re
import threading
from typing import Any, Callable, Hashable, Iterator, Mapping

import ahocorasick_rs

from ..engine.matcher import compile_alternation, values_finder
from ..engine.config import Config
from ..engine.findings import Confidence, Finding, mask_for
from ..engine.scan import Scanner, default_scanner, scanner_for
from .notebook import renamed_key

__all__ = [
    "Redactor",
    "StreamRedactor",
    "secret_like_env",
    "WITHHELD_NOTICE",
    "MIN_KNOWN_LENGTH",
    "FRAGMENT_LENGTH",
]

log = logging.getLogger("ipykeyguard.redact")

#: What replaces an output when redaction itself failed: the guard fails closed.
WITHHELD_NOTICE = "[ipykeyguard: output withheld: internal error]"

#: Known values shorter than this are ignored: masking every ``"abc"`` in every output would
#: mangle harmless text, and such a value is no credential worth the damage.
MIN_KNOWN_LENGTH = 6

#: No output shows this many consecutive characters of a known value (a shorter run is too
#: likely to be an ordinary piece of text, and gives an attacker little).
FRAGMENT_LENGTH = 8
#: Stream hold-back also keeps back a tail of this many characters or more (up to
#: ``FRAGMENT_LENGTH - 1``) that lies inside a value: a piece of a key's middle printed across
#: two writes then shows at most ``INNER_TAIL_MIN - 1`` characters before the rest is masked.
#: Shorter tails are not held: one to three characters end almost any output and are in almost
#: any key, and holding them would delay ordinary text for nothing.
INNER_TAIL_MIN = 4

#: Up to this many indexed fragments the automaton is a DFA (faster search, ~2.5 ns a
#: character, but its build time and memory grow fast: 255 ms for 18k fragments); above it a
#: contiguous NFA (~40 ms to build 18k fragments, a search about 1.5x slower).
_DFA_FRAGMENTS = 4000

# An 8-gram whose letters and digits form one ordinary word shape (lower, UPPER, Capitalised,
# digits) is not indexed: masking it would mangle harmless text, and it is no secret's entropy.
_WORDLIKE_RE = re.compile(r"[^A-Za-z0-9]*(?:(?:[a-z]+|[A-Z]+|[A-Z][a-z]+|[0-9]+)(?:[^A-Za-z0-9]+|\Z))*")
# The automaton takes UTF-8: a lone surrogate (text decoded with surrogateescape) is searched as
# U+FFFD, one character for one, so offsets are unchanged.
_LONE_SURROGATE_RE = re.compile("[\ud800-\udfff]")

# How many clean dict keys the redactor remembers (see Redactor._redact_key).
_CLEAN_KEYS_LIMIT = 4096

# Hold-back looks up a tail's first few characters in a set before comparing whole values.
_PREFIX_PROBE = 12

#: Up to this many known values, each is looked for with ``value in text`` (a fast substring
#: search, ~0.04 ms per value on 450 kB); above it, one Aho-Corasick pass finds them all
#: (~1 ms on 450 kB, whatever the count). Measured on the 5 MB print benchmark's stream chunks.
_FEW_VALUES = 16


class _KnownIndex:
    """An immutable snapshot of the known values, built once per change and shared by threads.

    Attributes:
        finder: When there are more than ``_FEW_VALUES`` values and none holds a lone
            surrogate, a function giving the ``(start, end)`` spans of the values in a text, or
            ``None`` for a text it cannot search; else ``None``.
        pattern: One regex matching every value, longest first at a given position; ``None``
            when there are no values, or until the finder meets a text it cannot search.
        masks: Value -> mask.
        longest: Length of the longest value (0 when empty).
        prefix_chars: Every character of every value but its last (what a held tail can hold).
        short_prefixes: Every proper prefix of every value, up to ``_PREFIX_PROBE`` characters.
        by_probe: The first ``_PREFIX_PROBE`` characters of every value longer than that ->
            those values (to check longer tails).
        fragments: An automaton of every indexed :data:`FRAGMENT_LENGTH`-gram of the values
            (``None`` when there is none).
        fragment_masks: The indexed fragments, in automaton order, -> the mask of a value
            holding it.
        uncovered: Whether some value has no indexed fragment (shorter than 8 characters, or
            only word-like 8-grams): then the fragment search cannot stand in for the exact one.
    """

    __slots__ = ("pattern", "finder", "masks", "longest", "prefix_chars", "short_prefixes", "by_probe",
                 "fragments", "fragment_masks", "fragment_set", "inner_tails", "lengths", "uncovered")

    def __init__(self, masks: dict[str, str]) -> None:
        self.masks = masks
        self.longest = max((len(v) for v in masks), default=0)
        self.lengths = sorted({len(v) for v in masks})
        # Many values: one automaton finds them all. Few values (or a value the automaton
        # cannot hold): the trie regex substitutes, after a cheap ``in`` test per value says
        # some value occurs.
        self.finder = values_finder(list(masks)) if len(masks) > _FEW_VALUES else None
        self.pattern = compile_alternation(list(masks)) if masks and self.finder is None else None
        self.prefix_chars = frozenset(ch for value in masks for ch in value[:-1])
        self.short_prefixes: frozenset[str] = frozenset(
            value[:cut] for value in masks for cut in range(1, min(len(value), _PREFIX_PROBE + 1)) if cut < len(value)
        )
        by_probe: dict[str, list[str]] = {}
        for value in masks:
            if len(value) > _PREFIX_PROBE:
                by_probe.setdefault(value[:_PREFIX_PROBE], []).append(value)
        self.by_probe = by_probe
        fragment_masks: dict[str, str] = {}
        uncovered = False
        for value, mask in masks.items():
            before = len(fragment_masks)
            covered = False
            for i in range(len(value) - FRAGMENT_LENGTH + 1):
                gram = value[i : i + FRAGMENT_LENGTH]
                if gram in fragment_masks:
                    covered = True
                elif not _WORDLIKE_RE.fullmatch(gram) and not _LONE_SURROGATE_RE.search(gram):
                    fragment_masks[gram] = mask
            uncovered = uncovered or not (covered or len(fragment_masks) > before)
        self.uncovered = uncovered
        self.fragment_masks = list(fragment_masks.values())
        self.fragment_set = frozenset(fragment_masks)
        # (4-7 character pieces, 8-grams) of every value: built on the first hold-back (see _inner_holdback).
        self.inner_tails: tuple[frozenset[str], frozenset[str]] | None = None
        self.fragments = None
        if fragment_masks:
            # Leftmost-first, not overlapping: with few fragments (one key of up to ~70
            # characters) the automaton then searches with a SIMD prefilter (Teddy), about 3x
            # faster than an overlapping search; the fragments a hit hides are found by
            # _fragment_runs walking the run.
            self.fragments = ahocorasick_rs.AhoCorasick(
                list(fragment_masks),
                matchkind=ahocorasick_rs.MatchKind.LeftmostFirst,
                implementation=(
                    ahocorasick_rs.Implementation.DFA
                    if len(fragment_masks) <= _DFA_FRAGMENTS
                    else ahocorasick_rs.Implementation.ContiguousNFA
                ),
            )

    def _fragment_runs(self, text: str) -> list[tuple[int, int, str]]:
        """The runs of ``text`` covered by indexed fragments: ``(start, end, mask)``, ascending,
        disjoint and not touching; the mask is that of the run's first fragment.

        The automaton reports leftmost, non-overlapping hits, so a fragment starting inside a
        hit is not reported. Each run is therefore walked: every start position inside it is
        looked up in the fragment set, and a fragment found there extends the run. A hidden
        fragment always starts inside a reported hit, so the walk finds it; each position is
        looked up once, so the cost stays linear.
        """
        search = text
        try:
            hits = self.fragments.find_matches_as_indexes(search)
        except UnicodeEncodeError:
            search = _LONE_SURROGATE_RE.sub("\ufffd", text)
            hits = self.fragments.find_matches_as_indexes(search)
        if not hits:
            return []
        grams = self.fragment_set
        last_start = len(search) - FRAGMENT_LENGTH
        runs: list[tuple[int, int, str]] = []
        run_start = run_end = walked = -1
        run_mask = ""
        for index, start, end in hits:  # ascending
            # Finish walking the current run: it may grow to reach this hit.
            while walked < run_end and walked <= last_start:
                if search[walked : walked + FRAGMENT_LENGTH] in grams and walked + FRAGMENT_LENGTH > run_end:
                    run_end = walked + FRAGMENT_LENGTH
                walked += 1
            if start <= run_end:
                run_end = max(run_end, end)
                continue
            if run_end >= 0:
                runs.append((run_start, run_end, run_mask))
            run_start, run_end, run_mask = start, end, self.fragment_masks[index]
            walked = start + 1
        while walked < run_end and walked <= last_start:
            if search[walked : walked + FRAGMENT_LENGTH] in grams and walked + FRAGMENT_LENGTH > run_end:
                run_end = walked + FRAGMENT_LENGTH
            walked += 1
        runs.append((run_start, run_end, run_mask))
        return runs

    @staticmethod
    def _mask_runs(text: str, runs: list[tuple[int, int, str]]) -> str:
        """``text`` with each run replaced by its mask."""
        pieces: list[str] = []
        done = 0
        for start, end, mask in runs:
            pieces += [text[done:start], mask]
            done = end
        pieces.append(text[done:])
        return "".join(pieces)

    def replace(self, text: str) -> str:
        """``text`` with every known value, and every run of :data:`FRAGMENT_LENGTH` or more
        characters of one, replaced by its mask; ``text`` itself when none occurs.

        Whole values are taken leftmost first and, where several values start at the same
        place, the longest; then the fragments left over are masked run by run. One fragment
        search decides the common case (no hit: no value of 8+ characters occurs either).
        """
        if self.fragments is None:
            return self._replace_values(text)
        runs = self._fragment_runs(text)
        if not runs:
            return self._replace_values(text) if self.uncovered else text
        out = self._replace_values(text)
        if out is not text:
            runs = self._fragment_runs(out)
            if not runs:
                return out
        return self._mask_runs(out, runs)

    def _replace_values(self, text: str) -> str:
        """``text`` with every whole known value replaced by its mask (leftmost, longest)."""
        masks = self.masks
        if not masks:
            return text
        if self.finder is not None:
            spans = self.finder(text)
            if spans is not None:
                return _replace_spans(text, spans, masks)
        elif len(masks) <= _FEW_VALUES and not any(value in text for value in masks):
            return text  # the common case: one substring search per value, no regex pass
        pattern = self.pattern
        if pattern is None:
            # A text the finder cannot search: compiled once, on first need. Two threads may
            # both compile it; either result is the same pattern.
            pattern = self.pattern = compile_alternation(list(masks))
        if pattern.search(text) is None:
            return text
        return pattern.sub(lambda m: masks[m.group()], text)

    def value_spanning(self, text: str, cut: int) -> int:
        """The end of a whole known value in ``text`` that starts before ``cut`` and ends after
        it (the furthest, when several do), or -1."""
        masks = self.masks
        if not masks or cut <= 0:
            return -1
        pattern = self.pattern
        if pattern is None:
            pattern = self.pattern = compile_alternation(list(masks))
        end = -1
        # Only the values that can reach past the cut matter: start at most longest-1 before it.
        for match in pattern.finditer(text, max(0, cut - self.longest + 1)):
            if match.start() >= cut:
                break
            if match.end() > cut:
                end = max(end, match.end())
        return end

    def _value_ends_at(self, text: str, end: int) -> bool:
        """Whether a whole known value ends at ``end`` in ``text`` (one slice per distinct length)."""
        masks = self.masks
        return any(text[end - n : end] in masks for n in self.lengths if n <= end)

    def holdback_length(self, text: str) -> int:
        """Length of the longest suffix of ``text`` that is a proper prefix of a known value,
        or ends in a piece of :data:`INNER_TAIL_MIN` to ``FRAGMENT_LENGTH - 1`` characters of a
        value (a run of a value's middle that the next write may make long enough to mask)."""
        if not self.masks or not text:
            return 0
        return max(self._inner_holdback(text), self._prefix_holdback(text))

    def _inner_holdback(self, text: str) -> int:
        """The trailing run of ``text`` inside a value, when its last 4 to 7 characters are a
        piece of one: those, or a longer run all of whose 8-grams are a value's (held whole, up
        to the longest value: emitting its head now, unmasked because shorter than a fragment,
        and the rest later would show the head)."""
        size = len(text)
        pieces = self.inner_tails
        if pieces is None:
            # Built when a stream first needs them (~16 ms for 200 known values), not with the
            # index, which every change of the known values rebuilds. Word-like 8-grams count
            # here (unlike for masking): holding a tail back only delays it.
            values = list(self.masks)
            pieces = self.inner_tails = (
                frozenset(v[i : i + n] for v in values for n in range(INNER_TAIL_MIN, FRAGMENT_LENGTH)
                          for i in range(len(v) - n + 1)),
                frozenset(v[i : i + FRAGMENT_LENGTH] for v in values for i in range(len(v) - FRAGMENT_LENGTH + 1)),
            )
        tails, grams = pieces
        for n in range(min(FRAGMENT_LENGTH - 1, size), INNER_TAIL_MIN - 1, -1):
            if text[size - n:] in tails:
                break
        else:
            return 0
        if self._value_ends_at(text, size):
            return 0  # a whole value ends the text: released now, masked whole
        if n < FRAGMENT_LENGTH - 1:
            return n
        start = size - n  # the run starts here or earlier: walk back one 8-gram at a time
        floor = max(0, size - self.longest)
        while start > floor and text[start - 1 : start - 1 + FRAGMENT_LENGTH] in grams:
            start -= 1
        return size - start

    def _prefix_holdback(self, text: str) -> int:
        size = len(text)
        limit = max(0, size - (self.longest - 1))
        # A proper prefix of a value holds only prefix characters: the tail worth checking is
        # the run of those at the end (none when the text ends in a newline, as most do).
        chars = self.prefix_chars
        start = size
        while start > limit and text[start - 1] in chars:
            start -= 1
        short = self.short_prefixes
        # Scan left to right: the first start that works gives the longest suffix.
        for i in range(start, size):
            tail_len = size - i
            if tail_len <= _PREFIX_PROBE:
                if text[i:] in short:
                    return tail_len
                continue
            candidates = self.by_probe.get(text[i : i + _PREFIX_PROBE])
            if candidates:
                tail = text[i:]
                if any(len(v) > tail_len and v.startswith(tail) for v in candidates):
                    return tail_len
        return 0


def _replace_spans(text: str, spans: list[tuple[int, int]], masks: Mapping[str, str]) -> str:
    """Replace the values found at ``spans`` by their masks.

    Args:
        text: The text that was searched.
        spans: ``(start, end)`` of value occurrences, ascending and not overlapping (the
            values finder's leftmost-longest matches, which are those of ``re.sub`` with the
            trie regex).
        masks: Value -> mask.

    Returns:
        The text with those occurrences replaced; ``text`` itself when there was none.
    """
    if not spans:
        return text
    pieces: list[str] = []
    done = 0
    for start, end in spans:
        pieces.append(text[done:start])
        pieces.append(masks[text[start:end]])
        done = end
    pieces.append(text[done:])
    return "".join(pieces)


class Redactor:
    """Replaces known secret values and rule matches in output text by masks.

    Thread-safe: the known values live in an immutable snapshot swapped under a lock, so
    :meth:`redact` may run on the shell, IOPub and control threads at once while
    :meth:`add_known` is called from another.

    Args:
        config: Settings for the scanner (rules, allowlist). Ignored when ``scanner`` is given.
        scanner: The scanner whose findings are masked; the default scanner when omitted.
        min_confidence: Rule findings below this level are left alone (a false mask in an
            output is cheap, but ``possible`` findings are mostly harmless identifiers).
    """

    def __init__(
        self,
        *,
        config: Config | None = None,
        scanner: Scanner | None = None,
        min_confidence: Confidence = Confidence.LIKELY,
    ) -> None:
        if scanner is None:
            scanner = scanner_for(config) if config is not None else default_scanner()
        self._scanner = scanner
        self._min_confidence = Confidence.parse(min_confidence)
        self._lock = threading.Lock()
        self._values_by_name: dict[str, str] = {}
        self._index: _KnownIndex | None = _KnownIndex({})
        self._failure_logged = False
        self._failures = 0
        # dict key -> the known-value snapshot under which it needed no mask.
        self._clean_keys: dict[str, _KnownIndex] = {}
        #: Called with the rule findings each redaction masked (the kernel records them in the
        #: exposure ledger); must be cheap and never raise into the caller (errors are ignored).
        self.on_masked: Callable[[list[Finding]], None] | None = None

    @property
    def failures(self) -> int:
        """How many redactions failed (and were replaced by :data:`WITHHELD_NOTICE`) so far."""
        return self._failures

    def __repr__(self) -> str:  # never the values themselves
        return f"Redactor(known={len(self._values_by_name)}, min_confidence={self._min_confidence})"

    # -- known values -------------------------------------------------------------------------
    def add_known(self, name: str, value: str) -> None:
        """Mask every exact occurrence of ``value`` as ``mask_for(name)`` from now on.

        Adding a name again replaces its value. Values shorter than :data:`MIN_KNOWN_LENGTH`
        are ignored.

        Args:
            name: The variable the value lives under, e.g. ``"OPENAI_API_KEY"``.
            value: The secret itself.
        """
        if not isinstance(name, str) or not isinstance(value, str):
            raise TypeError("add_known(name, value) takes two strings")
        with self._lock:
            if len(value) < MIN_KNOWN_LENGTH:
                # A shorter value could only be masked by mangling harmless text; drop any old one.
                changed = self._values_by_name.pop(name, None) is not None
            else:
                changed = self._values_by_name.get(name) != value
                self._values_by_name[name] = value
            if changed:
                self._index = None  # rebuilt on next use: 200 adds cost one compile, not 200

    def remove_known(self, name: str) -> None:
        """Stop masking the value registered under ``name`` (no error when there is none)."""
        with self._lock:
            if self._values_by_name.pop(name, None) is not None:
                self._index = None

    def is_known(self, value: str) -> bool:
        """True when ``value`` is masked as a known value (under any name)."""
        return value in self._known().masks

    def known_names(self) -> list[str]:
        """The names of the known values, sorted."""
        with self._lock:
            return sorted(self._values_by_name)

    def _known(self) -> _KnownIndex:
        index = self._index
        if index is not None:
            return index
        with self._lock:
            if self._index is None:
                masks: dict[str, str] = {}
                # Sorted by name so that a value held under two names always gets the same mask.
                for name in sorted(self._values_by_name):
                    masks.setdefault(self._values_by_name[name], mask_for(name))
                self._index = _KnownIndex(masks)
            return self._index

    # -- redaction ----------------------------------------------------------------------------
    def redact(self, text: str) -> str:
        """Return ``text`` with known values and rule findings replaced by their masks.

        Never raises: on an internal error the whole text is replaced by
        :data:`WITHHELD_NOTICE` and the error is logged once.

        Args:
            text: Any output text. Non-strings are returned unchanged.

        Returns:
            The redacted text; the very same object when nothing was masked.
        """
        if not isinstance(text, str) or not text:
            return text
        try:
            return self._redact(text)
        except Exception:  # fail closed: a broken redactor must not let the text through
            self._log_failure()
            return WITHHELD_NOTICE

    def _redact(self, text: str) -> str:
        out = self._known().replace(text)
        findings = self._scanner.scan_text(out, min_confidence=self._min_confidence)
        if not findings:
            return out
        if self.on_masked is not None:
            try:
                self.on_masked(findings)
            except Exception:  # noqa: BLE001 - bookkeeping must never stop the masking
                pass
        pieces = []
        last = 0
        for finding in findings:  # ordered by position and non-overlapping
            pieces.append(out[last : finding.start])
            pieces.append(finding.mask)
            last = finding.end
        pieces.append(out[last:])
        return "".join(pieces)

    def redact_known(self, text: str) -> str:
        """:meth:`redact` with known values (and their 8+ character pieces) only, no rules: for
        a text the caller has just scanned with the same rules and found clean.

        Never raises (see :meth:`redact`).
        """
        if not isinstance(text, str) or not text:
            return text
        try:
            return self._known().replace(text)
        except Exception:  # fail closed, see redact()
            self._log_failure()
            return WITHHELD_NOTICE

    def redact_tree(self, obj: Any) -> Any:
        """Redact every string leaf and every string key of a JSON-like tree (dicts, lists,
        tuples). A key that changes is renamed in place in a copy of its dict, order kept (a
        name already taken gets ``" (2)"``, ... appended, so no value is lost).

        Never raises: on an internal error the result is :data:`WITHHELD_NOTICE` (a string in
        place of the whole tree) and the error is logged once.

        Args:
            obj: A message content, a MIME bundle, a traceback list, a string, ...

        Returns:
            A new tree when a leaf changed, else ``obj`` itself.
        """
        try:
            return self._tree(obj)
        except Exception:  # fail closed, see redact()
            self._log_failure()
            return WITHHELD_NOTICE

    def _tree(self, obj: Any) -> Any:
        if isinstance(obj, str):
            return self.redact(obj)
        if isinstance(obj, dict):
            changed = None
            renames = None
            for key, value in obj.items():
                new = self._tree(value)
                if new is not value:
                    if changed is None:
                        changed = dict(obj)
                    changed[key] = new
                if isinstance(key, str):
                    new_key = self._redact_key(key)
                    if new_key is not key:
                        renames = renames or []
                        renames.append((key, new_key))
            if renames:
                out = changed if changed is not None else dict(obj)
                for key, new_key in renames:
                    out = renamed_key(out, key, new_key)
                return out
            return obj if changed is None else changed
        if isinstance(obj, (list, tuple)):
            items = [self._tree(v) for v in obj]
            if all(new is old for new, old in zip(items, obj)):
                return obj
            return items if isinstance(obj, list) else tuple(items)
        return obj

    def _redact_key(self, key: str) -> str:
        """:meth:`redact` for a dict key, remembering keys that need nothing (mimetypes, trait
        names and field names recur in every message). The memory is emptied whenever the
        known values change; a change of rules only ever allows more, so it stays valid."""
        index = self._known()
        clean = self._clean_keys
        if clean.get(key) is index:
            return key
        new = self.redact(key)
        if new is key:
            if len(clean) >= _CLEAN_KEYS_LIMIT:
                clean.clear()
            clean[key] = index
        return new

    def holdback_cut(self, text: str) -> int:
        """Where to cut ``text`` so that what follows may be the start of a known value split
        across writes: ``len(text)`` when nothing needs holding.

        The held tail never cuts a complete known value in two: a value whose last characters
        happen to start a known value (any value ending in ``F`` when one starts ``FAKE``) is
        released whole, so it is masked whole.
        """
        index = self._known()
        size = len(text)
        cut = size - index.holdback_length(text)
        while cut < size:
            end = index.value_spanning(text, cut)
            if end < 0:
                return cut
            cut = max(end, size - index.holdback_length(text[end:]))
        return cut

    def holdback_length(self, text: str) -> int:
        """Length of the longest suffix of ``text`` that is a proper prefix of a known value.

        That tail may be the first part of a key whose rest comes in a later write.
        """
        return self._known().holdback_length(text)

    def _log_failure(self) -> None:
        # Logged once: a redactor failing on every message would flood the console. The
        # exception text is not logged, since it might quote the output being redacted.
        with self._lock:
            self._failures += 1
            if self._failure_logged:
                return
            self._failure_logged = True
        log.error("ipykeyguard: output redaction failed; outputs are withheld", exc_info=False)


class StreamRedactor:
    """Hold-back redaction for streams whose text arrives in pieces.

    Per key (the kernel guard uses ``(parent msg_id, stream name)``) it withholds the longest
    tail of what it was fed that is a proper prefix of a known value; the tail is prepended to
    the next piece for the same key, or released by :meth:`flush` (the caller flushes before the
    next non-stream message of the same parent, and at idle). So ``print(k[:10], end="")``, a
    pause, ``print(k[10:])`` comes out as one mask.

    Only **known values** can be held back. A secret that is found only by a rule's regex and
    arrives split across pieces cannot be: nothing tells a harmless tail from the start of an
    unknown key, and holding every tail would delay all output.

    Thread-safe. Each piece released is redacted with the wrapped :class:`Redactor`.

    Args:
        redactor: The redactor holding the known values and rules.
    """

    def __init__(self, redactor: Redactor) -> None:
        self._redactor = redactor
        self._lock = threading.Lock()
        self._pending: dict[Hashable, tuple[str, Any]] = {}

    def feed(self, key: Hashable, text: str, context: Any = None) -> str:
        """Take one piece of stream text; return the redacted text that may be shown now.

        Args:
            key: Identifies the stream (pieces with the same key are joined).
            text: The new piece.
            context: Anything the caller needs to emit the held tail later (for the kernel:
                the socket, topic and parent header); returned by :meth:`flush`.

        Returns:
            The redacted text to emit now; may be empty when everything is held back.
        """
        with self._lock:
            held = self._pending.pop(key, None)
            combined = held[0] + text if held else text
            try:
                cut = self._redactor.holdback_cut(combined)
            except Exception:  # fail closed: nothing held, the whole text still gets redacted
                cut = len(combined)
            if cut < len(combined):
                self._pending[key] = (combined[cut:], context)
            ready = combined[:cut]
        return self._redactor.redact(ready) if ready else ready

    def has_pending(self, key: Hashable) -> bool:
        """True when a tail is being held for ``key``."""
        with self._lock:
            return key in self._pending

    def flush(self, key: Hashable) -> tuple[str, Any] | None:
        """Release the tail held for ``key``: ``(redacted text, context)``, or ``None``."""
        with self._lock:
            held = self._pending.pop(key, None)
        if held is None:
            return None
        return self._redactor.redact(held[0]), held[1]

    def flush_where(self, predicate: Callable[[Hashable], bool]) -> list[tuple[Hashable, str, Any]]:
        """Release every held tail whose key satisfies ``predicate``, oldest first.

        Returns:
            ``(key, redacted text, context)`` triples.
        """
        with self._lock:
            keys = [k for k in self._pending if predicate(k)]
            held = [(k, self._pending.pop(k)) for k in keys]
        return [(k, self._redactor.redact(text), ctx) for k, (text, ctx) in held]

    def pending_keys(self) -> Iterator[Hashable]:
        """A snapshot of the keys with held tails."""
        with self._lock:
            return iter(list(self._pending))


# Names whose values are credentials: *_KEY, *_TOKEN, *_SECRET, *PASSWORD*, ...
_SECRET_ENV_NAME_RE = re.compile(
    r"""(?:^|_)(?:API_?KEY|KEY|TOKEN|SECRET|PAT|PASSWORD|PASSWD|PWD|PASSPHRASE|CREDENTIALS?|AUTH)$
      | PASSWORD | PASSWD | SECRET | TOKEN | API_?KEY | ACCESS_KEY | PRIVATE_KEY""",
    re.VERBOSE,
)
# ... unless the name says the value is where the secret is, or something about it.
_NOT_A_VALUE_NAME_RE = re.compile(r"_(?:PATH|FILE|DIR|URL|URI|HOST|PORT|USER|USERNAME|NAME|TYPE|ID_FILE|EXPIRY|TTL|TIMEOUT)$")
_PATH_LIKE_RE = re.compile(r"^(?:[/~.]|[A-Za-z]:[\\/])")


def secret_like_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment variables whose names look like they hold a credential.

    Matches ``*_KEY``, ``*_TOKEN``, ``*_SECRET``, ``*PASSWORD*``, ``*API_KEY*`` and the like,
    but not names that point at a secret (``*_PATH``, ``*_FILE``, ``*_URL``, ...). Values shorter
    than :data:`MIN_KNOWN_LENGTH` and values that look like file paths are skipped: masking them
    would mangle harmless output.

    Args:
        environ: e.g. ``os.environ``.

    Returns:
        ``{name: value}`` for each such variable.
    """
    out: dict[str, str] = {}
    for name, value in environ.items():
        upper = name.upper()
        if not _SECRET_ENV_NAME_RE.search(upper) or _NOT_A_VALUE_NAME_RE.search(upper):
            continue
        if not isinstance(value, str) or len(value.strip()) < MIN_KNOWN_LENGTH:
            continue
        if _PATH_LIKE_RE.match(value):
            continue
        out[name] = value
    return out
