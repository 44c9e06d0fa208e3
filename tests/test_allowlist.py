"""What is never a finding: placeholders, documentation examples, references, hashes, UUIDs and
lines marked with an allow comment."""

from __future__ import annotations

import hashlib
import random
import uuid

import pytest

from ipykeyguard import scan_text
from ipykeyguard.engine.allowlist import allowed_lines, is_placeholder
from ipykeyguard.engine.findings import Confidence

import fakekeys


@pytest.mark.parametrize("value", [
    "YOUR_API_KEY", "your-api-key-here", "<token>", "<OPENAI_API_KEY>", "sk-...", "sk-proj-...abcd", "xxxxxxxxxxxx",
    "XXXX-XXXX", "${TOKEN}", "{{ secrets.OPENAI_API_KEY }}", "$API_KEY", "********", "[secret:OPENAI_API_KEY]",
    "AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "changeme", "password", "postgres",
    "{api_key}", "%(password)s", "insert-your-token", "placeholder123", "aaaaaaaaaa",
])
def test_placeholders_are_recognised(value):
    """Placeholders, masks, template references and vendor examples are placeholders."""
    assert is_placeholder(value)


@pytest.mark.parametrize("value", [fakekeys.generic_secret(), fakekeys.github_classic_token(), "Zq8vN2rT5yW1pL7k"])
def test_random_values_are_not_placeholders(value):
    """A random key-like value is not mistaken for a placeholder."""
    assert not is_placeholder(value)


NEVER = [
    'api_key = "YOUR_API_KEY"',
    'openai.api_key = "sk-..."',
    'client = OpenAI(api_key="<your key>")',
    "aws_access_key_id = AKIAIOSFODNN7EXAMPLE\naws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    'token = "xxxxxxxxxxxxxxxxxxxxxxxx"',
    'api_key = os.environ["OPENAI_API_KEY"]',
    'api_key = os.getenv("OPENAI_API_KEY")',
    'token = userdata.get("HF_TOKEN")',
    "password = getpass()",
    'pw = dbutils.secrets.get(scope="prod", key="db-password")',
    "token: ${{ secrets.GITHUB_TOKEN }}",
    'headers = {"Authorization": f"Bearer {api_key}"}',
    'url = f"https://api.fake.test/v1?api_key={api_key}"',
    'api_key = "[secret:OPENAI_API_KEY]"',
    'password = "********"',
    "engine = create_engine('postgresql://postgres:postgres@localhost/db')",
    "!pip install --require-hashes foo==1.0 --hash=sha256:" + hashlib.sha256(b"x").hexdigest(),
    'sha256 = "' + hashlib.sha256(b"data").hexdigest() + '"',
    'checksum = "' + hashlib.md5(b"data").hexdigest() + '"',
    'etag = "' + hashlib.md5(b"etag").hexdigest() + '"',
    "commit " + hashlib.sha1(b"c").hexdigest() + "\nAuthor: Fake <fake@fake.test>",
    'run_id = "' + str(uuid.uuid4()) + '"',
    '{"id": "' + uuid.uuid4().hex[:8] + '", "cell_type": "code"}',
    '{"model_id": "' + uuid.uuid4().hex + '", "version_major": 2}',
    'tokenizer = AutoTokenizer.from_pretrained("bert-base-uncased")',
    'pad_token = "<|endoftext|>"',
]


@pytest.mark.parametrize("text", NEVER)
def test_never_a_likely_finding(text):
    """References, placeholders, documentation examples, hashes, UUIDs and ids yield no likely finding."""
    found = scan_text(text, min_confidence=Confidence.LIKELY)
    assert found == [], [f.rule for f in found]


@pytest.mark.parametrize("marker", ["# ipykeyguard: allow", "# gitleaks:allow", "# pragma: allowlist secret"])
def test_inline_allow_comment_suppresses_its_line_only(marker):
    """An allow comment silences findings on its own line, not on other lines."""
    key = fakekeys.github_classic_token()
    text = f"a = '{key}'  {marker}\nb = '{key}'\n"
    found = scan_text(text)
    assert [f.location.line for f in found] == [2]


def test_allow_next_line_comment():
    """`pragma: allowlist nextline secret` silences the following line."""
    key = fakekeys.github_classic_token()
    assert scan_text(f"# pragma: allowlist nextline secret\na = '{key}'\n") == []
    assert allowed_lines("x\n# pragma: allowlist nextline secret\ny") == {2}


def test_allowed_fingerprint_is_not_reported():
    """A value whose SHA-256 is in the config's allow set is not reported."""
    from ipykeyguard.engine.config import Config
    from ipykeyguard.engine.findings import fingerprint

    key = fakekeys.github_classic_token()
    config = Config(allow=frozenset({fingerprint(key)}))
    assert scan_text(f"t = '{key}'", config) == []
    assert scan_text(f"t = '{key}'") != []


def test_random_base64_that_spells_a_placeholder_word_is_still_a_key():
    """Mixed-case runs like `xXxX` and phrases like `AddA` inside random base64 do not make a key a placeholder."""
    from ipykeyguard.engine.allowlist import is_placeholder

    assert not is_placeholder("MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQDAddAq7zXxXxQ1")
    assert not is_placeholder("ghp_R2d2C3poXxXx9AbCdEfGhIjKlMnOpQrStUvWx")
    assert is_placeholder("add-your-key-here")
    assert is_placeholder("sk-xxxxxxxxxxxxxxxxxxxx")


@pytest.mark.parametrize("text", [
    'stripe.api_key = "sk_test_4eC39HqLyjWDarjtT1zdp7dc"',
    '!curl https://api.stripe.com/v1/charges -u sk_test_BQokikJOvBiI2HlWgH4olfQ2:',
    'headers = {"Authorization": "Bearer sk_test_26PHem9AhJZvU623DfE1x4sd"}',
    's3 = boto3.client("s3", aws_access_key_id="AKIAI44QH8DHBEXAMPLE", aws_secret_access_key="je7MtGbClwBF/2Zp9Utk/h3yCo8nvbEXAMPLEKEY")',
])
def test_vendor_documentation_keys_are_never_findings(text):
    """Keys that vendors print in their own documentation (documented_examples.toml) are never findings, at any level."""
    assert scan_text(text, min_confidence=Confidence.POSSIBLE) == []


def test_documented_examples_are_data_with_sources():
    """The documentation-example allowlist is a data file: every entry has a value and a source."""
    from importlib import resources

    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib

    from ipykeyguard.engine.allowlist import documented_examples

    entries = tomllib.loads(
        resources.files("ipykeyguard.engine").joinpath("documented_examples.toml").read_text(encoding="utf-8")
    )["example"]
    assert entries and all(e["value"] and e["source"] for e in entries)
    assert documented_examples() == frozenset(e["value"] for e in entries)


def _wrong_checksum_tokens():
    return [
        ("github", fakekeys.github_classic_token(valid=False)),
        ("npm", fakekeys.npm_token_invalid()),
        ("gitlab", fakekeys.gitlab_routable_token(valid=False)),
        ("cloudflare", fakekeys.cloudflare_token(valid=False)),
        ("grafana", fakekeys.grafana_sa_token(valid=False)),
    ]


@pytest.mark.parametrize("name, token", _wrong_checksum_tokens())
def test_a_token_that_fails_its_checksum_is_never_a_finding(name, token):
    """A token of a checksummed format whose checksum fails is reported by no rule (provider or generic) at any level."""
    for text in (f'api_token = "{token}"', f"GITHUB_TOKEN={token}", f'headers = {{"Authorization": "Bearer {token}"}}', token):
        assert scan_text(text, min_confidence=Confidence.POSSIBLE) == [], (name, text.replace(token, "<token>"))


@pytest.mark.parametrize("name, token", _wrong_checksum_tokens())
def test_a_token_that_fails_its_checksum_is_not_rewritten_or_masked(name, token):
    """rewrite_source and clean_notebook leave a wrong-checksum token untouched (the notebook is not changed)."""
    from ipykeyguard import clean_notebook, rewrite_source

    source = f'api_token = "{token}"\nprint(api_token)'
    assert rewrite_source(source).source == source
    nb = {
        "cells": [
            {"cell_type": "code", "execution_count": 1, "id": "c1", "metadata": {}, "source": source,
             "outputs": [{"name": "stdout", "output_type": "stream", "text": token + "\n"}]},
            {"cell_type": "markdown", "id": "m1", "metadata": {}, "source": f"token: `{token}`"},
        ],
        "metadata": {}, "nbformat": 4, "nbformat_minor": 5,
    }
    cleaned, _report = clean_notebook(nb)
    assert cleaned == nb


@pytest.mark.parametrize("name, token", _wrong_checksum_tokens())
def test_the_output_redactor_leaves_a_wrong_checksum_token_alone(name, token):
    """The kernel's output redactor does not mask a token whose checksum fails, and masks the valid one."""
    from ipykeyguard import Redactor

    redactor = Redactor()
    text = f"loaded settings: {token}\n"
    assert redactor.redact(text) == text
    good = fakekeys.github_classic_token()
    assert good not in redactor.redact(f"loaded settings: {good}\n")


@pytest.mark.parametrize("name, token", [
    ("github", fakekeys.github_classic_token()),
    ("cloudflare", fakekeys.cloudflare_token(prefix="cfk_")),
    ("grafana", fakekeys.grafana_sa_token()),
])
def test_a_token_whose_checksum_matches_is_certain(name, token):
    """The same formats with a correct checksum are found and certain."""
    (finding,) = scan_text(f'api_token = "{token}"')
    assert finding.confidence is Confidence.CERTAIN and finding.secret.reveal() == token


from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_LINE_PIECES = ["x = 1", "# ipykeyguard: allow", "# PRAGMA: ALLOWLIST NEXTLINE SECRET", "  # gitleaks:allow",
                "# ipykeyguard: allow-next-line", "", "\r", "数据", "allow", "{'a': 1}", "gitleaks allow"]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(st.sampled_from(_LINE_PIECES), max_size=3).map(" ".join), min_size=1, max_size=12),
       st.data())
def test_findings_allowed_line_by_line_agree_with_the_whole_text_rule(lines, data):
    """The scan asks about allow comments only for lines holding a finding (it no longer
    lower-cases and splits a whole 16 MiB text for one finding): the answer is the one
    ``allowed_lines`` gives for the whole text, whatever the lines and markers."""
    key = fakekeys.github_classic_token()
    chosen = sorted(set(data.draw(st.lists(st.integers(0, len(lines) - 1), min_size=1, max_size=4))))
    lines = [line + f" t = '{key}'" if i in chosen else line for i, line in enumerate(lines)]
    text = "\n".join(lines)
    allowed = allowed_lines(text)
    found = {f.location.line - 1 for f in scan_text(text)}
    assert found == {i for i in chosen if i not in allowed}


def test_many_findings_on_one_long_line_are_each_located():
    """Twenty thousand keys on one line (the incremental locator counts newlines only since the
    previous finding and reads the line once): every finding has line 1 and its own column."""
    rng = random.Random(12)
    keys = [fakekeys.aws_access_key_id(rng) for _ in range(20_000)]
    text = " ".join(keys)
    found = scan_text(text)
    # A random id may hold a filler run such as "XXXX" (a placeholder, never a finding).
    assert len(found) == sum(not is_placeholder(k) for k in keys) > 19_900
    columns = {i * 21 + 1 for i, k in enumerate(keys) if not is_placeholder(k)}
    assert all(f.location.line == 1 for f in found) and {f.location.column for f in found} == columns


def test_every_allow_marker_holds_allow_and_a_colon():
    """The scanner skips, without copying it, a line (and the line before it) with no colon:
    that is sound only while every marker holds one."""
    from ipykeyguard.engine.allowlist import _NEXTLINE_MARKERS, INLINE_ALLOW_MARKERS

    for marker in INLINE_ALLOW_MARKERS + _NEXTLINE_MARKERS:
        assert "allow" in marker and ":" in marker, marker


def test_allow_comments_at_the_far_end_of_long_lines_still_count():
    """A key at the start of a 2 MiB line without a colon is found; the same line ending in an
    allow comment, or after an allow-next-line comment, is not."""
    key = fakekeys.github_classic_token()
    filler = "x" * (2 << 20)
    assert len(scan_text(f"t = '{key}' {filler}")) == 1
    assert scan_text(f"t = '{key}' {filler}  # GitLeaks:Allow") == []
    assert scan_text(f"# pragma: allowlist nextline secret\nt = '{key}' {filler}") == []
    assert len(scan_text(f"# pragma allowlist nextline secret\nt = '{key}' {filler}")) == 1
