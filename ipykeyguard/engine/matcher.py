"""Many literal strings found in one pass: the redactor's and the cleaner's known values.

Runs on ahocorasick_rs (automatons from the Rust ``aho-corasick`` crate), a hard dependency. It
takes text as UTF-8, so it cannot search or hold a lone surrogate (text decoded with
``surrogateescape``): for such text the trie regex (:func:`compile_alternation`) stands in. (The
rules' first pass is a Hyperscan automaton: see :mod:`.automaton`.)
"""

from __future__ import annotations

import re
from typing import Any, Callable

import ahocorasick_rs

#: Lone surrogates cannot be encoded as UTF-8.
LONE_SURROGATE_RE = re.compile("[\ud800-\udfff]")


def values_finder(values: list[str]) -> Callable[[str], list[tuple[int, int]] | None] | None:
    """A function giving the ``(start, end)`` spans of ``values`` in a text: leftmost first,
    the longest where several start at one place, not overlapping.

    A contiguous NFA, not a DFA: measured with 3000 keys, the DFA took 348 ms and 138 MB to
    build against 56 ms and 10 MB, for a search only ~10% faster.

    Args:
        values: The strings to look for.

    Returns:
        The finder, or ``None`` when a value holds a lone surrogate. The finder returns ``None``
        for a text holding one; the caller then uses :func:`compile_alternation`.
    """
    if any(LONE_SURROGATE_RE.search(value) for value in values):
        return None
    nfa = ahocorasick_rs.AhoCorasick(
        values,
        matchkind=ahocorasick_rs.MatchKind.LeftmostLongest,
        implementation=ahocorasick_rs.Implementation.ContiguousNFA,
    )

    def find_values(text: str) -> list[tuple[int, int]] | None:
        try:
            found = nfa.find_matches_as_indexes(text)
        except UnicodeEncodeError:
            return None
        return [(start, end) for _index, start, end in found]

    return find_values


def trie_regex(values: list[str]) -> str:
    """A regex source matching any of ``values``, built as a trie of literals.

    At each position the engine follows one branch per character instead of trying every
    value in turn, so the cost does not grow with the number of values. Where a value ends
    inside a longer one, the longer continuation is an optional greedy group: longest wins.
    """
    end = ""  # characters are one long, so the empty string can mark the end of a value
    trie: dict[str, Any] = {}
    for value in values:
        node = trie
        for ch in value:
            node = node.setdefault(ch, {})
        node[end] = True

    def emit(node: dict[str, Any]) -> str:
        branches = []
        for ch, child in node.items():
            if ch == end:
                continue
            literal = [ch]
            # Collapse single-child chains into one literal: keeps nesting shallow for long keys.
            while len(child) == 1 and end not in child:
                (next_ch, next_child), = child.items()
                literal.append(next_ch)
                child = next_child
            branches.append(re.escape("".join(literal)) + emit(child))
        if not branches:
            return ""
        if end in node:  # a value ends here: the longer continuations are optional (greedy)
            return "(?:" + "|".join(branches) + ")?"
        return branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"

    return emit(trie)


def compile_alternation(values: list[str]) -> re.Pattern[str]:
    """Compile ``values`` into one pattern (a trie; a flat longest-first alternation if the trie is too deep).

    Args:
        values: The strings to match literally; any characters, lone surrogates included.

    Returns:
        A pattern matching, at each position, the longest of ``values`` that starts there.
    """
    try:
        return re.compile(trie_regex(values))
    except (RecursionError, re.error, OverflowError):
        # Pathologically nested value sets (long chains of values that are prefixes of one
        # another) can exceed the regex parser's recursion; the flat form is correct, just slower.
        flat = sorted(values, key=len, reverse=True)
        return re.compile("|".join(re.escape(v) for v in flat))
