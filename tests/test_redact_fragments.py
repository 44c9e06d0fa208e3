"""The redactor masks every run of 8+ characters of a known value (truncated reprs), nothing shorter."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fakekeys
from ipykeyguard.engine.findings import fingerprint
from ipykeyguard.transforms.redact import _DFA_FRAGMENTS, FRAGMENT_LENGTH, Redactor, StreamRedactor


def longest_shared_run(value: str, text: str) -> int:
    """Length of the longest substring of ``value`` found in ``text`` (never prints either)."""
    best = 0
    for i in range(len(value)):
        j = i + best + 1
        while j <= len(value) and value[i:j] in text:
            best = j - i
            j += 1
    return best


def assert_no_fragment(value: str, text: str) -> None:
    if longest_shared_run(value, text) >= FRAGMENT_LENGTH:
        pytest.fail(f"{FRAGMENT_LENGTH}+ characters of a known value leaked", pytrace=False)


def redactor_with(**values: str) -> Redactor:
    r = Redactor()
    for name, value in values.items():
        r.add_known(name, value)
    return r


@pytest.mark.parametrize("shape", ["whos", "dataframe", "slice", "middle"])
def test_truncated_reprs_show_no_eight_characters_of_a_known_value(shape):
    """%whos-style 25+25 truncation, a DataFrame cell, a slice and a middle piece show only masks."""
    key = fakekeys.openai_project_key()
    r = redactor_with(OPENAI_API_KEY=key)
    text = {
        "whos": f"key    str    {key[:25]}<...>{key[-25:]}\n",
        "dataframe": f"   name   value\n0  prod   {key[:40]}...\n1  dev    {key[60:90]}...\n",
        "slice": f"'{key[:30]}'",
        "middle": f"got {key[50:58]} in the log",
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
    a, b = fakekeys.generic_secret(n=40), fakekeys.generic_secret(n=40)
    r = redactor_with(A_TOKEN=a, B_TOKEN=b)
    out = r.redact(f"{a} {a[3:20]}|{b[10:30]} {b}")
    assert_no_fragment(a, out)
    assert_no_fragment(b, out)
    assert out.count("[secret:A_TOKEN]") == 2 and out.count("[secret:B_TOKEN]") == 2


def test_many_values_use_the_nfa_and_still_mask_fragments():
    """Above the DFA's size limit the contiguous NFA indexes the fragments with the same result."""
    rng = random.Random(7)
    values = [fakekeys.generic_secret(rng, n=60) for _ in range(_DFA_FRAGMENTS // 40)]
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
    key = fakekeys.generic_secret(n=40)
    r = redactor_with(MY_TOKEN=key)
    out = r.redact("\udcff" + key[4:20] + "\udcfe")
    assert_no_fragment(key, out)
    assert out.startswith("\udcff") and out.endswith("\udcfe") and "[secret:MY_TOKEN]" in out


def test_a_held_tail_of_eight_or_more_characters_is_released_masked():
    """A stream that stops after 9 characters of a key releases a mask, not the 9 characters."""
    key = fakekeys.generic_secret(n=40)
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
