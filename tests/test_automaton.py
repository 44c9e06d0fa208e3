"""The linear-time engine: every rule compiles into the Hyperscan automaton, the automaton path
finds exactly what a plain ``re`` scan finds, the translation from Python syntax is a superset
(Unicode classes, case folding, look-arounds, back-references), rules Hyperscan refuses fall
back to ``re``, keys right after a string escape are found, and many findings cost no more
than linear time (counted in operations, not timed)."""

from __future__ import annotations

import base64
import random
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ipykeyguard import scan_notebook, scan_text
from ipykeyguard.engine import scan as scan_module
from ipykeyguard.engine.automaton import Automaton, automaton_bytes, superset_pattern
from ipykeyguard.engine.config import Config
from ipykeyguard.engine.findings import Confidence, Finding, Secret
from ipykeyguard.engine.rules import default_rules, parse_rules
from ipykeyguard.engine.scan import Scanner, _resolve_overlaps, escape_boundaries

import fakekeys

RULES = default_rules()
SCANNER = Scanner(Config())


def _spans(findings, rule_id):
    return sorted((f.start, f.end) for f in findings if f.rule == rule_id)


def _texts_of(rule):
    return [pytest.param(rule.id, t, id=f"{rule.id}-{i}") for i, t in enumerate(rule.examples + rule.counterexamples)]


def test_every_shipped_rule_compiles_into_the_automaton():
    """No shipped rule falls back to a whole-text ``re`` scan: each compiles into the automaton."""
    automaton, widths = SCANNER.automaton()
    assert automaton.fallback == ()
    every = len(RULES) + len(scan_module._MARKERS)  # the rules, then the markers
    assert sorted(i for tier in automaton.tiers if not tier.exact for i in tier.rule_indexes) == list(range(every))
    assert widths == [r.max_width for r in RULES] + [width for _regex, width in scan_module._MARKERS]


@pytest.mark.parametrize("rule_id, text", [p for r in RULES for p in _texts_of(r)])
def test_automaton_path_agrees_with_plain_re_on_rule_samples(rule_id, text):
    """On every rule's own examples and counterexamples, the automaton path accepts exactly the
    matches a plain ``re`` scan of the whole text accepts."""
    rule = next(r for r in RULES if r.id == rule_id)
    automaton_path = SCANNER.raw_matches(text)
    plain = SCANNER.raw_matches(text, [rule])
    assert _spans(automaton_path, rule_id) == _spans(plain, rule_id)


def _long_text(rng: random.Random, samples: list[str], size: int) -> tuple[str, list[int]]:
    """Filler prose of about ``size`` characters with ``samples`` planted at random places."""
    words = ["the", "data", "frame", "loss", "epoch", "import", "print(x)", "=", "\n", "key", "token", "#", "é", "数据",
             "?", "😀", "a数"]
    parts: list[str] = []
    length = 0
    while length < size:
        word = rng.choice(words)
        parts.append(word + " ")
        length += len(word) + 1
    for sample in samples:
        parts.insert(rng.randrange(len(parts) + 1), "\n" + sample + "\n")
    return "".join(parts), []


@pytest.mark.parametrize("seed", range(4))
def test_automaton_path_agrees_with_plain_re_on_long_texts(seed):
    """In texts far larger than one automaton block (regions, not the whole text, are confirmed),
    every rule's example planted anywhere is found exactly as a whole-text ``re`` scan finds it."""
    rng = random.Random(seed)
    samples = [ex for r in rng.sample(RULES, 40) for ex in r.examples[:1]]
    text, _ = _long_text(rng, samples, 300_000)
    candidates = {rule.id for rule in SCANNER._candidate_rules(text)}
    automaton_path = SCANNER.raw_matches(text)
    for rule in RULES:
        if rule.id not in candidates:
            assert rule.pattern.search(text) is None, rule.id
            continue
        assert _spans(automaton_path, rule.id) == _spans(SCANNER.raw_matches(text, [rule]), rule.id), rule.id


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(list("aZ09_-:=\"' \n\\tK\u212a\u017f\u0660é数/+.") + ["sk-", "key=", "AKIA", "ghp_", "Bearer "]),
                max_size=150).map("".join))
def test_automaton_never_misses_a_match_on_hostile_text(text):
    """On random text built from token characters, keywords, escapes and non-ASCII characters
    (KELVIN SIGN, LONG S, an Arabic-Indic digit), every rule that matches is a candidate."""
    candidates = {r.id for r in SCANNER._candidate_rules(text)}
    for rule in RULES:
        if rule.id not in candidates:
            assert rule.pattern.search(text) is None, rule.id


@pytest.mark.parametrize("regex, text", [
    (r"(?P<secret>\d{3})", "\u0660\u0661\u0662"),              # Unicode digits are \d in Python
    (r"(?i)(?P<secret>kk)", "\u212a\u212a"),                    # KELVIN SIGN folds to k
    (r"(?i)(?P<secret>ss)", "\u017fs"),                         # LONG S folds to s
    (r"(?P<secret>\w{4})", "数据数据"),
    (r"(?<![a-z])(?P<secret>ab)(?![a-z])", "x ab y"),           # look-arounds dropped, not inverted
    (r"(?P<q>['\"])(?P<secret>x{2})(?P=q)", "'xx'"),             # back-reference -> the group's pattern
    (r"(?P<secret>[^a]{2})", "é\ud800"),                        # negated class, lone surrogate
    (r"(?s)(?P<secret>a.b)", "a\nb"),
    (r"(?P<secret>a{1,500}b)", "a" * 400 + "b"),                 # large bound -> unbounded
    (r"(?P<secret>(?:ab|cd){2,3}(?(1)x|y))", "abcdy"),
])
def test_superset_translation_accepts_what_python_accepts(regex, text):
    """The automaton pattern translated from a Python pattern matches wherever Python's does,
    including non-ASCII characters, case folding, look-arounds and back-references."""
    assert re.search(regex, text)
    automaton = Automaton.compile([regex], [None])
    assert 0 in automaton.regions(text, [None])
    assert automaton.fallback == ()


def test_automaton_reads_one_byte_per_character():
    """Offsets in the automaton's bytes are offsets in the text, whatever the characters."""
    text = "a\u00e9\u6570\ud800\U0001f600z"
    data = automaton_bytes(text)
    assert len(data) == len(text) and data[0:1] == b"a" and data[-1:] == b"z"
    assert all(b >= 0x80 for b in data[1:-1])
    assert superset_pattern(r"(?<=x)a\b") == "[\\x61]"
    latin = automaton_bytes("a\u00e9\u00ffz")
    assert len(latin) == 4 and all(b >= 0x80 for b in latin[1:-1])


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from("a?\x7f\x00 数é\ud800\U0001f600z\\"), max_size=40))
def test_automaton_bytes_keep_ascii_and_mark_every_other_character(text):
    """Each ASCII character (a real ``?`` and DEL too) is its own byte, every other character
    (lone surrogates too) a byte of 0x80 or more, however they mix."""
    data = automaton_bytes(text)
    assert len(data) == len(text)
    for char, byte in zip(text, data):
        assert byte == (ord(char) if char.isascii() else 0x80)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(alphabet=st.sampled_from("ab?数é\U0001f600\ud800 "), max_size=60), st.data())
def test_window_bytes_made_chunk_by_chunk_are_the_window_made_whole(monkeypatch, text, data):
    """A non-ASCII window is made into bytes a small chunk at a time: the same bytes as the
    window made whole, wherever the window and the chunk ends fall."""
    from ipykeyguard.engine import automaton as automaton_module

    monkeypatch.setattr(automaton_module, "_CONVERT_CHUNK", data.draw(st.integers(1, 8)))
    lo = data.draw(st.integers(0, len(text)))
    hi = data.draw(st.integers(lo, len(text)))
    assert automaton_module._window_bytes(text, lo, hi) == automaton_bytes(text[lo:hi])


def test_rule_hyperscan_refuses_falls_back_to_re_and_still_finds(tmp_path):
    """A rule whose pattern Hyperscan cannot compile (too long) is confirmed by ``re`` over the
    whole text instead: it is still found, and the other rules still use the automaton."""
    huge = "|".join(f"x{i:04d}" for i in range(3000))
    rules_file = tmp_path / "extra.toml"
    rules_file.write_text(f'''
[[rule]]
id = "huge-rule"
description = "a rule too long for the automaton"
regex = """(?P<secret>tok_(?:{huge})[a-z]{{8}})"""
keywords = ["tok_"]
examples = ["tok_x2999abcdefgh"]
''', encoding="utf-8")
    (rule,) = parse_rules(rules_file.read_text(encoding="utf-8"))
    automaton = Automaton.compile([rule.regex, RULES[0].regex], [rule.max_width, RULES[0].max_width])
    assert automaton.fallback == (0,)
    assert automaton.regions("nothing here", [rule.max_width, RULES[0].max_width]) == {0: [(0, 12)]}
    keep = RULES[0].id
    config = Config(extra_rules=(str(rules_file),), disabled_rules=tuple(r.id for r in RULES if r.id != keep))
    scanner = Scanner(config)
    assert [f.rule for f in scanner.scan_text("v = 'tok_x2999abcdefgh'")] == ["huge-rule"]
    assert scanner.automaton()[0].fallback == (1,)


# -- escape boundaries (issue 13, Leaks) -------------------------------------------------------

ESCAPES = ["\\t", "\\n", "\\r", "\\x20", "\\u0009", "\\\\\\t"]


@pytest.mark.parametrize("escape", ESCAPES)
@pytest.mark.parametrize("make_key, rule_id", [
    (fakekeys.google_api_key, "google-api-key"),
    (fakekeys.github_classic_token, "github-pat-classic"),
    (fakekeys.huggingface_token, "huggingface-access-token"),
])
def test_key_right_after_a_string_escape_is_found_in_code(escape, make_key, rule_id):
    """A key written right after a separator escape in a string literal (``"\\tKEY"``) is found."""
    key = make_key(random.Random(7))
    found = scan_text(f'headers = "{escape}{key}"\n')
    assert [(f.rule, f.secret.reveal()) for f in found] == [(rule_id, key)]


def test_escape_that_decodes_to_a_token_character_keeps_the_boundary():
    """``\\x41`` is ``A``: a key glued to it is part of a longer token, as before; a doubled
    backslash before an escape letter (JSON inside a Python string) is still a separator."""
    key = fakekeys.google_api_key(random.Random(3))
    assert escape_boundaries(f'"\\x41{key}"') == f'"\\x41{key}"'
    assert escape_boundaries(f'"\\\\t{key}"') == f'"\\\\ {key}"'
    assert escape_boundaries(f'"\\t{key}"') == f'"\\ {key}"'
    assert escape_boundaries("plain text") == "plain text"


def test_key_after_escapes_is_found_in_json_text_and_outputs():
    """In a notebook, keys after escapes are found in JSON-like text, stream outputs and
    display data, each at its own location."""
    rng = random.Random(5)
    keys = [fakekeys.google_api_key(rng) for _ in range(3)]
    nb = {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [
        {"cell_type": "code", "metadata": {}, "execution_count": 1,
         "source": 'cfg = json.loads(\'{"k": "\\\\n' + keys[0] + '"}\')',
         "outputs": [
             {"output_type": "stream", "name": "stdout", "text": "{'k': '\\t" + keys[1] + "'}\n"},
             {"output_type": "execute_result", "execution_count": 1, "metadata": {},
              "data": {"text/plain": "'\\x20" + keys[2] + "'"}},
         ]},
    ]}
    found = scan_notebook(nb)
    assert sorted(f.secret.reveal() for f in found) == sorted(keys)
    assert {f.location.field for f in found} == {"source", "outputs[0].text", "outputs[1].data.text/plain"}


def test_escape_view_is_confirmed_only_near_escapes_and_still_finds_keys_far_apart():
    """On a long text with escapes far apart (beyond any rule's width and several blocks), every
    key glued to an escape is found, and the scan agrees with running every rule over both the
    whole text and its whole escape view (the view is confirmed only near its changed escapes)."""
    rng = random.Random(11)
    keys = [fakekeys.google_api_key(rng) for _ in range(4)]
    filler = "x = compute(y) + 1  # plain code, no escapes\n"
    parts = []
    for i, key in enumerate(keys):
        parts.append(filler * (150 + 97 * i))
        parts.append(f'v{i} = "\\t{key}"\n')
    text = "".join(parts) + filler * 50
    scanner = Scanner()
    found = scanner.scan_text(text)
    assert [f.secret.reveal() for f in found] == keys
    view = escape_boundaries(text)
    assert view != text
    expected = set()
    for rule in scanner.rules:
        for source in (text, view):
            for m in rule.pattern.finditer(source):
                group = next((g for g in rule.secret_groups if m.group(g)), None)
                if group is not None:
                    expected.add((rule.id, *m.span(group)))
    got = {(f.rule, f.start, f.end) for f in scanner.raw_matches(text)}
    assert got <= expected
    assert {(f.rule, f.start, f.end) for f in found} <= got


def test_boundary_guard_moves_into_the_automaton_and_stays_a_superset():
    """A rule's leading one-character negative look-behind becomes a guard in the automaton
    pattern (a glued run of prefixes is no longer a candidate), while a key after a non-ASCII
    character outside the class (an emoji, CJK) or at the very start is still found."""
    pattern = superset_pattern(r"(?<![A-Za-z0-9_-])sk-[A-Za-z0-9]{20,40}(?![A-Za-z0-9_-])")
    assert pattern.startswith("(?:(?:^|[") and pattern.endswith("|$)")
    glued = "sk-" + "sk-proj-" * 2000
    assert "openai-api-key" not in {r.id for r in SCANNER._candidate_rules(glued)}
    key = fakekeys.openai_project_key(random.Random(4))
    for before in ("", " ", "\U0001F600", "\u6570", "\u00e9 "):
        found = scan_text(before + key + " tail")
        assert [f.secret.reveal() for f in found] == [key], repr(before)


_LOOKAHEAD_PIECES = [
    "[a-z]", "[A-Za-z0-9+.-]", "k", "(?i:k)", "(?i:s)", "[^a]", "[^k]", ".", "\\d", "\\w", "\\S", "\\W",
    "é", "://", ":", "/", "(?:ab|a)", "[^/\\n]",
]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(st.sampled_from(_LOOKAHEAD_PIECES), st.sampled_from(["", "?", "{0,3}", "{1,2}", "{2}"])),
        min_size=1, max_size=4,
    ).map(lambda items: "".join(f"(?:{p}){q}" for p, q in items)),
    st.lists(st.sampled_from(list("akKsS/:.+-b\n 9") + ["\u212a", "\u017f", "é", "数", "\u0660", "\u00a0", "://"]),
             max_size=14).map("".join),
    st.sampled_from(["", "(?=[a-z])", "(?=[^/])", "(?=\\w)", "(?=(?i:k))", "(?=.)"]),
    st.booleans(),
)
def test_trailing_lookahead_complement_accepts_what_python_accepts(body, tail, positive, negative):
    """Trailing look-aheads go into the automaton (a one-character positive one as a class, a
    multi-character negative one as its complement, or both, the complement then restricted to
    the positive one's class): wherever Python's pattern matches (non-ASCII characters, case
    folding, text ending inside the look-ahead), the automaton still reports the rule."""
    regex = f"(?P<secret>x=){positive}" + (f"(?!{body})" if negative or not positive else "")
    text = "x=" + tail
    automaton = Automaton.compile([regex], [40])
    if re.search(regex, text):
        assert 0 in automaton.regions(text, [40]), (regex, text)


def test_trailing_lookahead_complement_rejects_near_matches_in_the_automaton():
    """``url-credentials`` ends in ``(?![A-Za-z][A-Za-z0-9+.-]{0,20}://)``: a text of repeated
    ``https://user:pw@`` is no longer a report every 22 characters (it flooded the exact pass),
    while a real URL password, one at the very end of the text and one before a long host are."""
    rule = next(r for r in RULES if r.id == "url-credentials")
    pattern = superset_pattern(rule.regex)
    assert "[\\x3a]" in pattern.split("@", 1)[-1] or "\\x3a" in pattern
    automaton = Automaton.compile([rule.regex], [rule.max_width])
    near = "https://user:" + "pa55" + "w0rd@"  # built here: the repository scan must stay clean
    assert 0 not in automaton.regions(near + "https://x", [rule.max_width])
    for text in (near + "host.fake.test/x", near + "h", near + "h" * 30 + "://", near + "h\u212a://"):
        assert rule.pattern.search(text) and 0 in automaton.regions(text, [rule.max_width]), text
    flood = near * 5000
    covered = sum(hi - lo for lo, hi in automaton.regions(flood, [rule.max_width]).get(0, []))
    assert covered < len(flood) // 10, "only a block's cut edge (the text may go on past it) is left to re"


_ESCAPES = ["\\t", "\\n", "\\r", "\\x09", "\\u0020", "\\x41", "\\\\n"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_escape_view_windows_agree_with_every_rule_over_text_and_view(data):
    """Keys glued to escapes, with escapes in between at random distances (dense and sparse,
    far more text than one block): the scan, which confirms the escape view only in windows
    around its escapes, accepts exactly what every rule run over the whole text and the whole
    view accepts."""
    rng = random.Random(data.draw(st.integers(0, 10_000)))
    makers = [fakekeys.google_api_key, fakekeys.github_classic_token, fakekeys.openai_project_key,
              fakekeys.aws_access_key_id, fakekeys.npm_token]
    parts = []
    for _ in range(data.draw(st.integers(1, 12))):
        parts.append("y = 1  # filler\n" * data.draw(st.sampled_from([0, 1, 3, 40, 700])))
        parts.append(data.draw(st.sampled_from(_ESCAPES)) * data.draw(st.integers(0, 3)))
        if data.draw(st.booleans()):
            parts.append(f'k = "{data.draw(st.sampled_from(_ESCAPES))}{rng.choice(makers)(rng)}"\n')
    text = "".join(parts)
    scanner = SCANNER
    view = escape_boundaries(text)
    expected_all = {(f.rule, f.start, f.end) for f in scanner.raw_matches(text, scanner.rules)}
    got = {(f.rule, f.start, f.end) for f in scanner.raw_matches(text)}
    assert got == expected_all, (len(text), view != text)


def test_escape_view_keeps_rules_that_match_escapes_on_purpose():
    """A service-account JSON's ``\\n``-escaped PEM key is still found whole (rules also run on
    the text as written)."""
    rule = next(r for r in RULES if r.id == "gcp-service-account-key")
    assert [f.rule for f in scan_text(rule.examples[0]) if f.rule == rule.id] == [rule.id]


# -- many findings: linear work, counted not timed -----------------------------------------------

def _greedy_reference(matches, rules):
    """The previous, quadratic resolution: the specification the sweep must agree with."""
    ordered = sorted(matches, key=lambda f: (-int(f.confidence), rules[f.rule].generic, -(f.end - f.start), f.start))
    kept = []
    for f in ordered:
        if all(f.end <= k.start or f.start >= k.end for k in kept):
            kept.append(f)
    return sorted(kept, key=lambda f: f.start)


_RULES_BY_ID = {r.id: r for r in RULES}
_GENERIC = next(r.id for r in RULES if r.generic)
_PROVIDER = next(r.id for r in RULES if not r.generic)


def _finding(rule, start, length, conf):
    return Finding(rule, conf, start, start + length, Secret("x" * length), "X")


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([_GENERIC, _PROVIDER]), st.integers(0, 200), st.integers(1, 40),
                          st.sampled_from(list(Confidence))), max_size=40, unique_by=lambda t: (t[0], t[1], t[2])))
def test_overlap_sweep_agrees_with_pairwise_resolution(spec):
    """Resolving overlaps by sort and sweep keeps exactly what comparing every pair kept: the
    most specific match (confidence, provider over generic, longer, earlier)."""
    matches = [_finding(*t) for t in spec]
    got = [(f.rule, f.start, f.end) for f in _resolve_overlaps(matches, _RULES_BY_ID)]
    want = [(f.rule, f.start, f.end) for f in _greedy_reference(matches, _RULES_BY_ID)]
    assert got == want


def test_thirty_thousand_findings_are_all_kept():
    """30k adjacent, non-overlapping AWS-like key ids in one text are all found and kept (the
    benchmark shows the time is linear in their number)."""
    rng = random.Random(9)
    keys = [fakekeys.aws_access_key_id(rng) for _ in range(30_000)]
    text = "\n".join(keys)
    found = scan_text(text)
    plain = [f for f in SCANNER.raw_matches(text, [r for r in RULES if r.id == "aws-access-key-id"])]
    assert len(found) == len(plain) >= len(keys) - 10


def test_rule_is_confirmed_only_within_its_width_of_each_reported_end():
    """A key in the middle of 256 KiB of prose makes its rule's ``re`` region the rule's width
    around the match (exact end offsets), not the 2 KiB block or more around it."""
    from ipykeyguard.engine.automaton import MARGIN

    rng = random.Random(11)
    key = fakekeys.aws_access_key_id(rng)
    filler = "lorem ipsum dolor sit amet\n" * 5000
    text = filler + f"key = {key!r}\n" + filler
    automaton, widths = SCANNER.automaton()
    index = next(i for i, r in enumerate(RULES) if r.id == "aws-access-key-id")
    spans = automaton.regions(text, widths)[index]
    start = text.index(key)
    assert len(spans) == 1
    lo, hi = spans[0]
    assert lo <= start and start + len(key) <= hi
    assert hi - lo <= widths[index] + 2 * MARGIN + 2
    assert [f.secret.reveal() for f in scan_text(text) if f.rule == "aws-access-key-id"] == [key]


def test_flooded_block_falls_back_to_its_whole_block_and_still_agrees_with_re():
    """Where a rule's automaton pattern ends at nearly every offset (a long run of glued
    candidate keys), the exact pass stops at its cap and the block is confirmed whole: the
    findings are exactly plain ``re``'s."""
    rng = random.Random(12)
    text = " ".join(fakekeys.aws_access_key_id(rng) for _ in range(3000))
    rules = [r for r in RULES if r.id == "aws-access-key-id"]
    found = _spans(SCANNER.raw_matches(text), "aws-access-key-id")
    assert found == _spans(SCANNER.raw_matches(text, rules), "aws-access-key-id")
    assert len(found) == 3000


@pytest.mark.parametrize("shift", [0, 777])
def test_automaton_path_agrees_with_plain_re_on_dense_near_misses(shift):
    """On ~100 KiB of every rule's examples with two characters cut (thousands of candidates:
    exact end windows, flooded blocks falling back, back-off), every rule's findings are exactly
    those of a whole-text ``re`` scan, wherever the block boundaries fall."""
    lines = [ex[:-2] for r in RULES for ex in r.examples if len(ex) > 4] + [ex for r in RULES for ex in r.examples[:1]]
    unit = "\n".join(lines) + "\n"
    text = "x" * shift + (unit * (100_000 // len(unit) + 1))[:100_000]
    automaton_path = SCANNER.raw_matches(text)
    for rule in RULES:
        assert _spans(automaton_path, rule.id) == _spans(SCANNER.raw_matches(text, [rule]), rule.id), rule.id


def test_regions_near_offsets_skip_far_blocks_but_keep_matches_near_them():
    """``regions(near=...)`` reports a key near a given offset and none of the identical keys
    far from every given offset (the escape view's pass is limited to blocks near its escapes)."""
    rng = random.Random(13)
    keys = [fakekeys.aws_access_key_id(rng) for _ in range(3)]
    filler = "lorem ipsum dolor sit amet\n" * 4000
    text = filler + keys[0] + "\n" + filler + keys[1] + "\n" + filler + keys[2] + "\n"
    automaton, widths = SCANNER.automaton()
    index = next(i for i, r in enumerate(RULES) if r.id == "aws-access-key-id")
    middle = text.index(keys[1])
    spans = automaton.regions(text, widths, near=[middle - 3])[index]
    assert all(lo <= middle and middle + 20 <= hi for lo, hi in spans) and len(spans) == 1
    assert len(automaton.regions(text, widths)[index]) == 3


@pytest.mark.parametrize("size", [200, 40_000, 300_000])
def test_a_key_inside_a_data_uri_is_skipped_and_one_beside_it_found(size):
    """Whether a text may hold a data URI comes from the automaton's own pass (a marker beside
    the rules): in short and long texts, a key inside a base64 payload is no finding and the
    same key outside it is, and a text without the marker confirms no data URI."""
    key = fakekeys.github_classic_token(random.Random(size))
    payload = base64.b64encode(random.Random(1).randbytes(size * 3 // 4)).decode()
    middle = len(payload) // 2
    uri = f"data:application/octet-stream;base64,{payload[:middle]}{key}{payload[middle:]}"
    assert scan_text(f'<a href="{uri}">x</a>') == []
    assert [f.secret.reveal() for f in scan_text(f'<a href="{uri}">x</a> t = "{key}"')] == [key]
    markers: set[int] = set()
    SCANNER._plan(f"x = '{key}'", markers=markers)
    assert markers == set()
    SCANNER._plan(uri, markers=markers)
    assert markers == {scan_module._DATA_URI_MARKER}


def test_data_uri_check_is_a_binary_search():
    """The data-URI containment check uses sorted disjoint spans (one bisect per match)."""
    starts, ends = scan_module._disjoint_spans([(50, 60), (0, 10), (5, 20), (70, 80)])
    assert (starts, ends) == ([0, 50, 70], [20, 60, 80])
    assert scan_module._inside(starts, ends, 6, 19) and not scan_module._inside(starts, ends, 15, 25)
    assert not scan_module._inside(starts, ends, 61, 62)


@pytest.mark.parametrize("escape", ["\\t", "\\n", "\\x20"])
def test_key_after_an_escape_is_moved_and_the_literal_keeps_its_value(escape):
    """The rewriter (used by the kernel, clean and the save hook) moves a key that follows an
    escape, and the literal still evaluates to the escape plus the key."""
    from ipykeyguard import rewrite_source

    key = fakekeys.google_api_key(random.Random(7))
    result = rewrite_source(f'headers = "{escape}{key}"\n')
    assert key not in result.source and list(result.moved) == ["GOOGLE_API_KEY"]
    namespace: dict = {}
    import os as _os

    old = _os.environ.get("GOOGLE_API_KEY")
    _os.environ["GOOGLE_API_KEY"] = key
    try:
        exec(result.source, namespace)
    finally:
        if old is None:
            del _os.environ["GOOGLE_API_KEY"]
        else:
            _os.environ["GOOGLE_API_KEY"] = old
    assert namespace["headers"] == eval(f'"{escape}"') + key


@pytest.mark.kernel
def test_kernel_moves_a_key_printed_after_a_tab_escape(kernel):
    """In a real guarded kernel, a key written after ``\\t`` in a literal is moved out of the
    cell and masked in the printed output."""
    key = fakekeys.google_api_key(random.Random(8))
    k = kernel(load_ext=True)
    ex = k.run(f'x = "\\t{key}"\nprint(x)')
    assert ex.status == "ok", ex.content.get("ename")
    assert key not in ex.wire_text()
    assert ex.replaced_source is not None and key not in ex.replaced_source
    assert "GOOGLE_API_KEY" in ex.replaced_source


def test_long_repeats_keep_their_lower_bound_in_the_automaton():
    """``{100,2000}`` becomes ``{100,}`` (unbounded above keeps Hyperscan's compile small), not
    ``{64,}``: a near miss 70 characters long is no longer a report (with a region of the rule's
    whole width for ``re``), while a real 100-character run still is."""
    pattern = superset_pattern(r"(?P<secret>IQoJ[A-Za-z0-9/+=]{100,2000})")
    assert "{100,}" in pattern
    automaton = Automaton.compile([r"(?P<secret>IQoJ[A-Za-z0-9/+=]{100,2000})"], [2004])
    assert 0 not in automaton.regions("x IQoJ" + "a" * 70 + " y", [2004])
    assert 0 in automaton.regions("x IQoJ" + "a" * 100 + " y", [2004])


@pytest.mark.parametrize("window", [4096, 65_536, 1 << 20])
@pytest.mark.parametrize("seed", range(2))
def test_windowed_automaton_pass_agrees_with_every_rule_over_the_whole_text(monkeypatch, window, seed):
    """The automaton reads a long text window by window (each window's bytes made once for every
    tier): with windows smaller than a tier's blocks, equal to them or larger than the text, keys
    planted anywhere (some glued to escapes) are found exactly as running every rule over the
    whole text and its escape view finds them."""
    from ipykeyguard.engine import automaton as automaton_module

    monkeypatch.setattr(automaton_module, "_WINDOW", window)
    rng = random.Random(100 + seed)
    samples = [ex for r in rng.sample(RULES, 30) for ex in r.examples[:1]]
    samples += [f'v = "\\t{fakekeys.google_api_key(rng)}"' for _ in range(5)]
    text, _ = _long_text(rng, samples, 400_000)
    got = {(f.rule, f.start, f.end) for f in SCANNER.raw_matches(text)}
    expected = {(f.rule, f.start, f.end) for f in SCANNER.raw_matches(text, SCANNER.rules)}
    assert got == expected
    assert len(got) >= 30
