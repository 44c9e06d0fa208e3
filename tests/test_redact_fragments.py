"""The redactor masks every run of 8+ characters of a known value (truncated reprs), nothing shorter."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fakekeys
from ipykeyguard.engine.findings import fingerprint
from ipykeyguard.transforms.redact import _DFA_FRAGMENTS, _WORDLIKE_RE, FRAGMENT_LENGTH, Redactor, StreamRedactor


def assert_no_fragment(value: str, text: str) -> None:
    """No 8-gram of ``value`` is in ``text``, except 8-grams that read as ordinary words (not
    masked on purpose; ``unwordy`` keys have none)."""
    from ipykeyguard.transforms.redact import _WORDLIKE_RE

    for i in range(len(value) - FRAGMENT_LENGTH + 1):
        gram = value[i : i + FRAGMENT_LENGTH]
        if gram in text and not _WORDLIKE_RE.fullmatch(gram):
            pytest.fail(f"{FRAGMENT_LENGTH}+ characters of a known value leaked", pytrace=False)


def unwordy(make) -> str:
    """A fresh key from ``make`` none of whose 8-grams reads as an ordinary word (those are not
    masked on purpose), so that "no 8 characters of it" can be asserted strictly."""
    from ipykeyguard.transforms.redact import _WORDLIKE_RE

    while True:
        key = make()
        if not any(_WORDLIKE_RE.fullmatch(key[i : i + FRAGMENT_LENGTH]) for i in range(len(key) - FRAGMENT_LENGTH + 1)):
            return key


def redactor_with(**values: str) -> Redactor:
    r = Redactor()
    for name, value in values.items():
        r.add_known(name, value)
    return r


@pytest.mark.parametrize("shape", ["whos", "dataframe", "slice", "middle"])
def test_truncated_reprs_show_no_eight_characters_of_a_known_value(shape):
    """%whos-style 25+25 truncation, a DataFrame cell, a slice and a middle piece show only masks."""
    key = fakekeys.openai_project_key()  # its "sk-proj-" prefix is word-like: never unwordy
    r = redactor_with(OPENAI_API_KEY=key)
    text = {
        "whos": f"key    str    {key[:25]}<...>{key[-25:]}\n",
        "dataframe": f"   name   value\n0  prod   {key[:40]}...\n1  dev    {key[60:90]}...\n",
        "slice": f"'{key[:30]}'",
        # Word-like 8-grams (all lower case, all upper case, digits...) are not indexed by design,
        # so the middle piece is the first 8 characters past the prefix that are not word-like.
        "middle": "got {} in the log".format(next(
            key[i:i + FRAGMENT_LENGTH] for i in range(20, len(key) - FRAGMENT_LENGTH)
            if not _WORDLIKE_RE.fullmatch(key[i:i + FRAGMENT_LENGTH]))),
    }[shape]
    out = r.redact(text)
    assert_no_fragment(key, out)
    assert "[secret:OPENAI_API_KEY]" in out


def test_runs_shorter_than_eight_characters_are_left_alone():
    """Seven characters of a known value are no fragment: the text comes back as the same object."""
    key = fakekeys.generic_secret(n=40)
    r = redactor_with(MY_TOKEN=key)
    for start in range(0, len(key) - 7):
        text = f"x {key[start:start + 7]} y"
        assert r.redact(text) is text


def test_ordinary_words_and_fixed_prefixes_inside_a_value_are_not_masked_elsewhere():
    """A value holding 'password' or 'sk-proj-' does not mask those words in other output."""
    r = redactor_with(DB_PASSWORD="password-" + fakekeys.generic_secret(n=16),
                      OPENAI_API_KEY=fakekeys.openai_project_key())
    text = "enter your password here; keys look like sk-proj-...; INFORMATION 12345678 Database"
    assert r.redact(text) is text


def test_the_whole_value_keeps_its_single_mask():
    """An exact occurrence is one mask, as before fragments were indexed, and neighbours are kept."""
    key = fakekeys.generic_secret(n=40)
    r = redactor_with(MY_SERVICE_TOKEN=key)
    assert r.redact(f"a {key} b {key}") == "a [secret:MY_SERVICE_TOKEN] b [secret:MY_SERVICE_TOKEN]"


def test_fragment_next_to_whole_value_and_of_two_values():
    """Pieces of two values and a whole value in one text all disappear, each under a mask."""
    a, b = unwordy(lambda: fakekeys.generic_secret(n=40)), unwordy(lambda: fakekeys.generic_secret(n=40))
    r = redactor_with(A_TOKEN=a, B_TOKEN=b)
    out = r.redact(f"{a} {a[3:20]}|{b[10:30]} {b}")
    assert_no_fragment(a, out)
    assert_no_fragment(b, out)
    assert out.count("[secret:A_TOKEN]") == 2 and out.count("[secret:B_TOKEN]") == 2


def test_many_values_use_the_nfa_and_still_mask_fragments():
    """Above the DFA's size limit the contiguous NFA indexes the fragments with the same result."""
    rng = random.Random(7)
    values = [unwordy(lambda: fakekeys.generic_secret(rng, n=60)) for _ in range(_DFA_FRAGMENTS // 40)]
    r = Redactor()
    for i, v in enumerate(values):
        r.add_known(f"BULK_{i}_TOKEN", v)
    text = "\n".join(f"row {i}: {v[5:30]}..." for i, v in enumerate(values))
    out = r.redact(text)
    for v in values:
        assert_no_fragment(v, out)
    assert out.count("[secret:BULK_") == len(values)


def test_fragments_next_to_lone_surrogates_are_masked():
    """Text decoded with surrogateescape is searched too (the automaton takes UTF-8)."""
    key = unwordy(lambda: fakekeys.generic_secret(n=40))
    r = redactor_with(MY_TOKEN=key)
    out = r.redact("\udcff" + key[4:20] + "\udcfe")
    assert_no_fragment(key, out)
    assert out.startswith("\udcff") and out.endswith("\udcfe") and "[secret:MY_TOKEN]" in out


def test_a_held_tail_of_eight_or_more_characters_is_released_masked():
    """A stream that stops after 9 characters of a key releases a mask, not the 9 characters."""
    key = unwordy(lambda: fakekeys.generic_secret(n=40))
    s = StreamRedactor(redactor_with(MY_TOKEN=key))
    assert s.feed("out", "progress " + key[:9]) == "progress "
    text, _ctx = s.flush("out")
    assert_no_fragment(key, text)


@settings(max_examples=60, deadline=None)
@given(
    value=st.text(alphabet="abcdefghijkLMNOPQRST0123456789-_", min_size=20, max_size=60),
    start=st.integers(0, 40),
    length=st.integers(FRAGMENT_LENGTH, 60),
    before=st.text(alphabet=" .,;:\n", max_size=5),
    after=st.text(alphabet=" .,;:\n", max_size=5),
)
def test_every_non_wordlike_piece_of_eight_or_more_is_masked(value, start, length, before, after):
    """Whatever piece (8+ characters) of a value is shown, no 8-gram of it that is not a plain
    word survives redaction."""
    piece = value[start : start + length]
    if len(piece) < FRAGMENT_LENGTH or len(value) < 6:
        return
    r = redactor_with(SOME_TOKEN=value)
    out = r.redact(before + piece + after)
    from ipykeyguard.transforms.redact import _WORDLIKE_RE

    for i in range(len(value) - FRAGMENT_LENGTH + 1):
        gram = value[i : i + FRAGMENT_LENGTH]
        if not _WORDLIKE_RE.fullmatch(gram) and gram in out:
            pytest.fail(f"an 8-gram survived (sha256 {fingerprint(gram)[:12]})", pytrace=False)


def _brute_force_runs(text: str, grams: frozenset) -> list[tuple[int, int]]:
    """Union of every indexed 8-gram occurrence, touching spans merged (the reference)."""
    covered = [False] * (len(text) + 1)
    for i in range(len(text) - FRAGMENT_LENGTH + 1):
        if text[i : i + FRAGMENT_LENGTH] in grams:
            for j in range(i, i + FRAGMENT_LENGTH):
                covered[j] = True
    runs, start = [], None
    for i, c in enumerate(covered):
        if c and start is None:
            start = i
        elif not c and start is not None:
            runs.append((start, i))
            start = None
    return runs


@settings(max_examples=200, deadline=None)
@given(
    values=st.lists(st.text(alphabet="aB3xY7-_", min_size=8, max_size=30), min_size=1, max_size=3),
    pieces=st.lists(st.tuples(st.integers(0, 2), st.integers(0, 29), st.integers(1, 30),
                              st.text(alphabet="aB3 .", max_size=4)), max_size=8),
)
def test_leftmost_hits_walked_over_their_runs_equal_every_overlapping_occurrence(values, pieces):
    """The runs found from leftmost, non-overlapping hits plus the walk are exactly the union of
    all (overlapping) indexed 8-gram occurrences: no hidden fragment is missed."""
    from ipykeyguard.transforms.redact import _KnownIndex

    index = _KnownIndex({v: f"[secret:V{i}]" for i, v in enumerate(values)})
    text = "".join(values[v % len(values)][a : a + n] + sep for v, a, n, sep in pieces)
    if index.fragments is None:
        return
    got = [(s, e) for s, e, _mask in index._fragment_runs(text)]
    assert got == _brute_force_runs(text, index.fragment_set)


def test_a_whole_value_ending_in_the_start_of_a_value_is_not_cut_by_hold_back():
    """A complete key whose last character is the first of a known value is masked whole in a
    stream, not split into a shown tail (or, before fragments, a shown head)."""
    key = unwordy(lambda: fakekeys.generic_secret(n=39)) + "F"  # every generic_secret starts "FAKE"
    s = StreamRedactor(redactor_with(MY_TOKEN=key))
    out = s.feed("out", "tok ") + s.feed("out", key) + s.feed("out", "\n")
    assert s.flush("out") is None
    assert out == "tok [secret:MY_TOKEN]\n"
