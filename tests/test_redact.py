"""The pure output redactor: known values, rules, hold-back, failure handling, env selection."""

from __future__ import annotations

import logging
import random
import re
import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fakekeys
from ipykeyguard.engine.matcher import compile_alternation, trie_regex
from ipykeyguard.engine.findings import fingerprint, mask_for
from ipykeyguard.transforms.redact import (
    MIN_KNOWN_LENGTH,
    WITHHELD_NOTICE,
    Redactor,
    StreamRedactor,
    _FEW_VALUES,
    _KnownIndex,
    secret_like_env,
)
from ipykeyguard.engine.scan import Scanner


def assert_no_key(key: str, text: str, where: str = "output") -> None:
    """Fail without echoing either string (pytest would print both on a plain assert)."""
    if key in text:
        pytest.fail(f"key leaked in {where}", pytrace=False)


def same(a: str, b: str) -> bool:
    """Equality compared by fingerprint, so a failure report shows hashes, not text."""
    return fingerprint(a) == fingerprint(b)


@pytest.fixture
def key() -> str:
    return fakekeys.generic_secret(n=40)


def test_known_value_is_replaced_by_a_mask_naming_the_variable(key):
    """An exact known value becomes ``[secret:NAME]`` and no character run of it survives."""
    r = Redactor()
    r.add_known("MY_SERVICE_TOKEN", key)
    out = r.redact(f"token is {key}, again {key}.")
    assert_no_key(key, out)
    assert out == "token is [secret:MY_SERVICE_TOKEN], again [secret:MY_SERVICE_TOKEN]."


def test_harmless_text_is_returned_as_the_same_object(key):
    """Text with nothing to mask comes back as the very same object (byte-identical, no copy)."""
    r = Redactor()
    r.add_known("MY_SERVICE_TOKEN", key)
    text = "plain output, ünïcode \x1b[31mred\x1b[0m\n" * 10
    assert r.redact(text) is text
    assert r.redact("") == ""


def test_rule_match_is_masked_without_being_known():
    """A key no one registered is masked by the rules, with the rule's variable name."""
    k = fakekeys.openai_project_key()
    out = Redactor().redact(f"AuthenticationError: Incorrect API key provided: {k}")
    assert_no_key(k, out)
    assert out == "AuthenticationError: Incorrect API key provided: [secret:OPENAI_API_KEY]"


def test_min_confidence_leaves_lower_findings_alone():
    """Rule findings below ``min_confidence`` are not masked (CERTAIN skips a LIKELY-only match)."""
    k = fakekeys.aws_access_key_id()  # no validator: the rule stays at LIKELY
    text = f"id={k}"
    assert Redactor(min_confidence="certain").redact(text) is text
    assert_no_key(k, Redactor().redact(text))


def test_overlapping_known_values_mask_the_longest():
    """When one known value is a prefix of another, the longer one wins where both match."""
    short, long = "Zq8vN2rT5yW1", "Zq8vN2rT5yW1pL7kFAKE"
    r = Redactor()
    r.add_known("SHORT_TOKEN", short)
    r.add_known("LONG_TOKEN", long)
    assert r.redact(f"{long} {short}x") == "[secret:LONG_TOKEN] [secret:SHORT_TOKEN]x"


def test_values_with_regex_metacharacters_and_newlines_match_literally():
    """Known values are matched as literal text, whatever characters they hold."""
    value = "p@ss.w*rd+(x)|[y]\n\\end$^"
    r = Redactor()
    r.add_known("DB_PASSWORD", value)
    assert r.redact(f"<{value}>") == "<[secret:DB_PASSWORD]>"
    assert r.redact("p@ssXw*rd") == "p@ssXw*rd"


def test_trie_regex_collapses_chains_and_makes_longer_values_optional():
    """The trie regex shares prefixes and matches each value exactly."""
    values = ["abcdef", "abcdefgh", "abxyz1", "q12345"]
    pattern = re.compile(trie_regex(values))
    for v in values:
        assert pattern.fullmatch(v)
    assert not pattern.fullmatch("abcdefg")
    assert pattern.pattern.count("ab") == 1


def test_two_hundred_known_values_are_all_masked():
    """With 200 known values of mixed formats, every one is masked and nothing else changes."""
    rng = random.Random(7)
    gens = [fakekeys.openai_project_key, fakekeys.github_classic_token, fakekeys.generic_secret,
            fakekeys.anthropic_key, fakekeys.aws_secret_access_key]
    values = [gens[i % len(gens)](rng) for i in range(200)]
    r = Redactor()
    for i, v in enumerate(values):
        r.add_known(f"K{i}", v)
    text = "\n".join(f"line {i}: {v} done" for i, v in enumerate(values))
    out = r.redact(text)
    for v in values:
        assert_no_key(v, out)
    assert out.count("[secret:") == 200
    assert r.known_names() == sorted(f"K{i}" for i in range(200))


# -- the automaton matcher (more than _FEW_VALUES known values) ---------------------------------
def _filler_values(rng: random.Random, count: int) -> dict[str, str]:
    """``count`` distinct values no test text contains, to push an index onto the automaton path."""
    return {fakekeys.generic_secret(rng, n=30): f"[secret:FILL_{i}]" for i in range(count)}


def _regex_replace(masks: dict[str, str], text: str) -> str:
    """The reference semantics: ``re.sub`` with the trie regex (leftmost, then longest)."""
    pattern = compile_alternation(list(masks))
    return pattern.sub(lambda m: masks[m.group()], text)


def _index(masks: dict[str, str]) -> _KnownIndex:
    """An index that must be on the automaton path."""
    index = _KnownIndex(masks)
    assert index.finder is not None and index.pattern is None
    return index


def test_automaton_is_used_above_few_values_and_not_below():
    """Up to _FEW_VALUES values use substring tests plus the regex; more use one automaton."""
    rng = random.Random(3)
    assert _KnownIndex(_filler_values(rng, _FEW_VALUES)).finder is None
    many = _index(_filler_values(rng, _FEW_VALUES + 1))
    assert many.pattern is None


def test_automaton_masks_overlapping_and_prefix_values_like_the_regex():
    """Prefix-of-another, overlapping and adjacent values are replaced leftmost-longest, as re.sub would."""
    masks = _filler_values(random.Random(4), _FEW_VALUES)
    masks.update({"abcdef": "[secret:A]", "abcdefgh": "[secret:AB]", "defghijk": "[secret:D]",
                  "ghijklmn": "[secret:G]", "zzzzzz": "[secret:Z]"})
    index = _index(masks)
    cases = {
        "x abcdefgh y": "x [secret:AB] y",           # longest value at one start wins
        "abcdefg": "[secret:A]g",                     # the longer one is incomplete: the shorter
        "abcdefghijk": "[secret:AB]ijk",              # leftmost wins over an overlapping later value
        "abcdefghijklmn": "[secret:AB]ijklmn",        # ... and matching resumes after it
        "zzzzzzzzzzzz": "[secret:Z][secret:Z]",       # adjacent repeats, no overlap
        "zzzzzzzzzzz": "[secret:Z]zzzzz",
        "abcdeabcdef": "abcde[secret:A]",
    }
    for text, expected in cases.items():
        assert index.replace(text) == expected == _regex_replace(masks, text)
    harmless = "nothing here " * 50
    assert index.replace(harmless) is harmless


def test_automaton_matches_unicode_values_at_the_right_offsets():
    """Values and text with accents, CJK and astral characters (emoji) are replaced exactly."""
    masks = _filler_values(random.Random(5), _FEW_VALUES)
    masks.update({"clé-😀-sécrète": "[secret:EMOJI]", "秘密のキー123": "[secret:CJK]"})
    index = _index(masks)
    text = "😀😀 a clé-😀-sécrète, 𝔘𝔫𝔦 秘密のキー123!"
    assert index.replace(text) == "😀😀 a [secret:EMOJI], 𝔘𝔫𝔦 [secret:CJK]!"


def test_lone_surrogates_in_text_or_values_are_still_masked():
    """A text with a lone surrogate (surrogateescape) and a value holding one are both matched exactly."""
    masks = _filler_values(random.Random(12), _FEW_VALUES)
    masks["plainvalue123"] = "[secret:PLAIN]"
    index = _index(masks)
    text = "bad byte \udcff then plainvalue123 and \ud800"
    assert index.replace(text) == "bad byte \udcff then [secret:PLAIN] and \ud800" == _regex_replace(masks, text)
    masks["odd\udcffvalue"] = "[secret:ODD]"
    odd = _KnownIndex(masks)
    assert odd.finder is None and odd.pattern is not None  # ahocorasick_rs cannot take it: the regex does
    assert odd.replace("x odd\udcffvalue plainvalue123") == "x [secret:ODD] [secret:PLAIN]"


def test_two_hundred_values_through_the_automaton_in_a_redactor():
    """A Redactor with 200 values (automaton path) masks each, including a value inside a longer one."""
    rng = random.Random(8)
    values = [fakekeys.generic_secret(rng, n=32) for _ in range(199)]
    values.append(values[0][:20])  # a prefix of another known value
    r = Redactor(min_confidence="certain")
    for i, v in enumerate(values):
        r.add_known(f"K{i}_TOKEN", v)
    assert r._known().finder is not None
    text = "".join(f"{i}: {v};" for i, v in enumerate(values))
    out = r.redact(text)
    for v in values:
        assert_no_key(v, out)
    assert out.count("[secret:K") == 200
    assert "0: [secret:K0_TOKEN];" in out and "199: [secret:K199_TOKEN];" in out


@settings(max_examples=150, deadline=None)
@given(
    values=st.lists(st.text(alphabet="abé😀", min_size=6, max_size=10), min_size=1, max_size=8, unique=True),
    pieces=st.lists(st.one_of(st.integers(min_value=0, max_value=7), st.text(alphabet="abé😀 ", max_size=5)),
                    max_size=12),
)
def test_automaton_replacement_equals_the_regex_replacement(values, pieces):
    """On random values from a tiny alphabet (many overlaps and prefixes) the automaton gives re.sub's text."""
    masks = _filler_values(random.Random(6), _FEW_VALUES)
    masks.update({v: f"[secret:V{i}]" for i, v in enumerate(values)})
    text = "".join(values[p % len(values)] if isinstance(p, int) else p for p in pieces)
    index = _index(masks)
    assert index.replace(text) == _regex_replace(masks, text)


def test_short_values_are_ignored_and_remove_known_stops_masking(key):
    """Values shorter than MIN_KNOWN_LENGTH are not registered; removed values are shown again."""
    r = Redactor()
    r.add_known("PIN", "x" * (MIN_KNOWN_LENGTH - 1))
    assert r.known_names() == []
    r.add_known("MY_SERVICE_TOKEN", key)
    r.remove_known("MY_SERVICE_TOKEN")
    r.remove_known("NOT_THERE")
    text = f"v={key}"
    assert r.redact(text) is text


def test_same_value_under_two_names_gets_one_stable_mask(key):
    """A value known under two names is always masked with the first name in sort order."""
    r = Redactor()
    r.add_known("B_TOKEN", key)
    r.add_known("A_TOKEN", key)
    assert r.redact(key) == mask_for("A_TOKEN")
    r.remove_known("A_TOKEN")
    assert r.redact(key) == mask_for("B_TOKEN")


def test_repr_holds_no_value(key):
    """The redactor's repr counts values and never shows them."""
    r = Redactor()
    r.add_known("MY_SERVICE_TOKEN", key)
    assert_no_key(key, repr(r))
    assert "known=1" in repr(r)


def test_redact_tree_changes_only_string_leaves_and_copies_only_when_needed(key):
    """Str leaves and str keys of dicts/lists are redacted into a new tree; numbers and an unchanged tree stay."""
    r = Redactor()
    r.add_known("MY_SERVICE_TOKEN", key)
    tree = {"data": {"text/plain": f"'{key}'", "application/json": {"a": [1, key, None, 2.5]}},
            "metadata": {}, "execution_count": 3, key: "a key used as a dict key"}
    out = r.redact_tree(tree)
    assert out is not tree
    assert tree["data"]["text/plain"] == f"'{key}'"  # the input is not mutated
    assert out["data"]["text/plain"] == "'[secret:MY_SERVICE_TOKEN]'"
    assert out["data"]["application/json"] == {"a": [1, "[secret:MY_SERVICE_TOKEN]", None, 2.5]}
    assert out["metadata"] is tree["metadata"] and out["execution_count"] == 3
    assert list(out) == ["data", "metadata", "execution_count", "[secret:MY_SERVICE_TOKEN]"]  # renamed in place
    harmless = {"data": {"text/plain": "1"}, "list": ["a", ("b",)]}
    assert r.redact_tree(harmless) is harmless


class _BrokenScanner(Scanner):
    """A scanner that fails, standing in for any bug inside the redactor."""

    def scan_text(self, text, **kwargs):  # noqa: D102
        raise RuntimeError("boom")


def test_internal_error_withholds_the_output_and_logs_once(key, caplog):
    """When redaction fails the text is replaced by the notice, nothing raises, and one error is logged."""
    r = Redactor(scanner=_BrokenScanner())
    r.add_known("MY_SERVICE_TOKEN", key)
    with caplog.at_level(logging.ERROR, logger="ipykeyguard.redact"):
        assert r.redact(f"a {key}") == WITHHELD_NOTICE
        assert r.redact("harmless") == WITHHELD_NOTICE
        assert r.redact_tree({"text": "x"}) == {WITHHELD_NOTICE: WITHHELD_NOTICE}  # keys fail closed too
    errors = [rec for rec in caplog.records if rec.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert_no_key(key, caplog.text, "log")


def test_concurrent_adds_and_redactions_never_leak_or_raise():
    """Threads adding values while others redact see every already-added value masked."""
    rng = random.Random(3)
    values = [fakekeys.generic_secret(rng, n=32) for _ in range(100)]
    r = Redactor()
    failures: list[str] = []

    def adder() -> None:
        for i, v in enumerate(values):
            r.add_known(f"T{i}", v)

    def reader() -> None:
        for _ in range(200):
            known = set(r.known_names())
            for i, v in enumerate(values):
                if f"T{i}" in known and v in r.redact(f"x {v} y"):
                    failures.append(f"T{i}")

    threads = [threading.Thread(target=adder)] + [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []


# -- hold-back ---------------------------------------------------------------------------------
def test_split_known_value_is_masked_at_every_split_point(key):
    """A known value fed in two pieces, split anywhere, comes out as one mask."""
    r = Redactor()
    r.add_known("MY_SERVICE_TOKEN", key)
    whole = f"before {key} after\n"
    for cut in range(1, len(whole)):
        s = StreamRedactor(r)
        out = s.feed("out", whole[:cut]) + s.feed("out", whole[cut:])
        assert s.flush("out") is None
        assert out == "before [secret:MY_SERVICE_TOKEN] after\n"


def test_held_tail_is_released_by_flush_with_its_context(key):
    """A prefix of a key that never completes is held until flushed, then released as it was
    (a prefix shorter than 8 characters; a longer one comes out masked)."""
    r = Redactor()
    r.add_known("MY_SERVICE_TOKEN", key)
    s = StreamRedactor(r)
    assert s.feed(("p1", "stdout"), "progress " + key[:7], context="ctx") == "progress "
    assert s.has_pending(("p1", "stdout"))
    assert s.feed(("p2", "stdout"), "other\n") == "other\n"  # other keys are independent
    released = s.flush_where(lambda k: k[0] == "p1")
    assert [(k, same(text, key[:7]), ctx) for k, text, ctx in released] == [(("p1", "stdout"), True, "ctx")]
    assert not s.has_pending(("p1", "stdout"))


def test_text_that_cannot_start_a_key_is_never_held(key):
    """Lines ending in a newline, or in characters no known value starts with, pass at once."""
    r = Redactor()
    r.add_known("MY_SERVICE_TOKEN", "Q" + key)
    s = StreamRedactor(r)
    for piece in ["line one\n", "no q here", "12345", "tail\n"]:
        assert s.feed("out", piece) == piece
    assert list(s.pending_keys()) == []


def test_tail_with_spaces_and_punctuation_of_a_value_is_held():
    """A held tail may hold any character the value holds (spaces, '=', '!'); a newline ends it."""
    value = "ab cd=ef!gh ij"
    r = Redactor()
    r.add_known("ODD_PASSWORD", value)
    s = StreamRedactor(r)
    assert s.feed("out", "x: ab cd=ef!") == "x: "
    assert s.feed("out", "gh ij.\n") == "[secret:ODD_PASSWORD].\n"
    assert s.feed("out", "ab cd=ef!\n") == "ab cd=ef!\n"  # the newline is no character of the value
    assert list(s.pending_keys()) == []
    assert r.holdback_length("zzz ab cd=ef!gh i") == len("ab cd=ef!gh i")
    assert r.holdback_length(value) == 0  # a whole value is no proper prefix


@settings(max_examples=150, deadline=None)
@given(
    before=st.text(alphabet="abc xyz\n", max_size=20),
    after=st.text(alphabet="abc xyz\n", max_size=20),
    cuts=st.lists(st.integers(min_value=0, max_value=80), max_size=5),
)
def test_any_chunking_gives_the_same_text_as_redacting_the_whole(before, after, cuts):
    """However a stream is chopped, the emitted pieces plus the final flush equal redacting it whole."""
    value = "KEYab12cd34ef56"
    r = Redactor()
    r.add_known("SOME_TOKEN", value)
    whole = before + value + after + value[:5]
    bounds = sorted({min(c, len(whole)) for c in cuts} | {0, len(whole)})
    s = StreamRedactor(r)
    out = "".join(s.feed("k", whole[a:b]) for a, b in zip(bounds, bounds[1:]))
    held = s.flush("k")
    out += held[0] if held else ""
    assert out == r.redact(whole)
    assert value not in out


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_a_run_from_a_keys_middle_split_anywhere_shows_at_most_three_of_its_characters(key, data):
    """A run of a known key's middle long enough that what follows any three of its characters
    is still a fragment (11+), written in two pieces split anywhere: at most
    ``INNER_TAIL_MIN - 1`` of its characters come out unmasked. A trailing run inside the key
    is held whole until the next piece (before, up to 7 characters left at once)."""
    from ipykeyguard.transforms.redact import FRAGMENT_LENGTH, INNER_TAIL_MIN

    r = Redactor()
    r.add_known("MY_SERVICE_TOKEN", key)
    least = FRAGMENT_LENGTH + INNER_TAIL_MIN - 1
    start = data.draw(st.integers(1, len(key) - least - 1))
    end = data.draw(st.integers(start + least, len(key) - 1))
    whole = "log: " + key[start:end] + " done\n"
    cuts = [data.draw(st.integers(1, len(whole) - 1))]
    s = StreamRedactor(r)
    pieces = [whole[a:b] for a, b in zip([0] + cuts, cuts + [len(whole)])]
    out = "".join(s.feed("out", piece) for piece in pieces)
    held = s.flush("out")
    out += held[0] if held else ""
    shown = out.replace("[secret:MY_SERVICE_TOKEN]", "\n")
    assert not any(key[i:i + INNER_TAIL_MIN] in shown for i in range(len(key) - INNER_TAIL_MIN + 1))


def test_a_run_from_a_keys_middle_in_pieces_of_four_or_more_is_one_mask(key):
    """Pieces of 4+ characters each (and a longer one first) from a key's middle, one write each:
    one mask, nothing of the key shown."""
    r = Redactor()
    r.add_known("MY_SERVICE_TOKEN", key)
    for pieces in (["mid " + key[5:9], key[9:14], key[14:30] + " end\n"],
                   ["mid " + key[5:17], key[17:21], key[21:33] + " end\n"]):
        s = StreamRedactor(r)
        out = "".join(s.feed("out", piece) for piece in pieces)
        assert s.flush("out") is None
        assert out == "mid [secret:MY_SERVICE_TOKEN] end\n"


# -- the rules pass on long stream text (the scanner's plan) -------------------------------------
def _training_log_with_keys(rng: random.Random) -> tuple[str, dict[str, str]]:
    """~60 kB of training-log lines full of rule keywords, with keys planted on random lines."""
    keys = {
        "url": fakekeys.chars(18, rng=rng),
        "aws_session": fakekeys.chars(320, fakekeys.ALNUM + "/+", rng),
        "aws_secret": fakekeys.aws_secret_access_key(rng),
        "wandb": fakekeys.hexchars(40, rng),
        "notion": "secret_" + fakekeys.chars(43, rng=rng),
        "generic": fakekeys.generic_secret(rng, n=36),
        "openai": fakekeys.openai_project_key(rng),
    }
    planted = [
        f"mlflow: tracking at https://bob:{keys['url']}@mlflow.internal:5000/#/runs",
        f"env: aws_session_token = {keys['aws_session']}",
        f"loaded AWS_SECRET_ACCESS_KEY={keys['aws_secret']} from profile",
        f"wandb: WANDB_API_KEY={keys['wandb']}",
        f"notion sync with {keys['notion']} done",
        f"config: api_token = '{keys['generic']}'",
        f"client key {keys['openai']}",
    ]
    lines = []
    for i in range(600):
        lines += [
            f"Saving model checkpoint to /runs/task-{i}/checkpoint-{i * 50}",
            f"tokenizer config file saved in /runs/task-{i}/tokenizer_config.json",
            f"WARNING: missing keys (task {i}, disk {rng.random():.2f}), attention_mask ok, patience {i % 9}",
            f"wandb: Syncing run session-{i} to https://wandb.ai/u/p/runs/{i:08x}; secret_sauce=off",
        ]
    for line in planted:
        lines.insert(rng.randrange(len(lines)), line)
    return "\n".join(lines) + "\n", keys


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_planned_scan_of_a_long_log_finds_what_a_whole_text_scan_finds(seed):
    """Anchored starts and windows find exactly the matches of running every candidate rule over the whole text."""
    text, keys = _training_log_with_keys(random.Random(seed))
    scanner = Scanner()
    planned = {(f.rule, f.start, f.end) for f in scanner.raw_matches(text)}
    whole = {(f.rule, f.start, f.end) for f in scanner.raw_matches(text, rules=scanner._candidate_rules(text))}
    assert planned == whole
    out = Redactor().redact(text)
    for name, value in keys.items():
        assert_no_key(value, out, name)
    assert "url-credentials" in {rule for rule, _s, _e in planned}


_KEYWORD_SOUP = ["sk", "sk-", "sk-proj-", "token", "Token=", "key", "KEY-", "secret_", "://", "ghp_", "pat",
                 "é", "😀", "\ud800", "\udfff", " ", "\n", "x", "İ"]


def test_automaton_prefilter_is_sound_on_surrogates_and_non_ascii():
    """The automaton prefilter never drops a rule whose regex matches, with lone surrogates,
    emoji and characters whose lower case changes length in the text."""
    scanner = Scanner()
    rng = random.Random(11)
    texts = ["".join(rng.choice(_KEYWORD_SOUP) for _ in range(rng.randrange(0, 40))) for _ in range(300)]
    texts.append("x = 'ghp_\udc80' ; token=\ud800 key=")
    for text in texts:
        candidates = {r.id for r in scanner._candidate_rules(text)}
        missed = [r.id for r in scanner.rules if r.id not in candidates and r.pattern.search(text)]
        assert not missed, repr(text)


def test_dfa_prefilter_masks_a_key_next_to_a_lone_surrogate():
    """Text holding a lone surrogate is still scanned: the rule key beside it is masked, not withheld."""
    k = fakekeys.openai_project_key()
    out = Redactor().redact(f"\udcff bad byte, then {k}")
    assert_no_key(k, out)
    assert out == "\udcff bad byte, then [secret:OPENAI_API_KEY]"


# -- environment -------------------------------------------------------------------------------
def test_secret_like_env_picks_credential_names_only():
    """Names like *_KEY, *_TOKEN, *_SECRET, *PASSWORD* are picked; paths, ids of files and short values are not."""
    value = "Zq8vN2rT5yW1pL7kFAKE"
    env = {
        "OPENAI_API_KEY": value, "GITHUB_TOKEN": value, "CLIENT_SECRET": value, "DB_PASSWORD_PROD": value,
        "HF_TOKEN": value, "MYAPIKEY": value,
        "HOME": value, "PATH": value, "KEYBOARD": value, "TOKEN_FILE": value, "SECRET_PATH": value,
        "GOOGLE_APPLICATION_CREDENTIALS": "/home/me/creds.json", "SHORT_TOKEN": "abc",
    }
    assert sorted(secret_like_env(env)) == [
        "CLIENT_SECRET", "DB_PASSWORD_PROD", "GITHUB_TOKEN", "HF_TOKEN", "MYAPIKEY", "OPENAI_API_KEY",
    ]
