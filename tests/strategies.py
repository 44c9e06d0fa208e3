"""Hypothesis strategies shared by the tests: planted fake keys (one strategy per provider
family), surrounding code and prose, and random non-secret text."""

from __future__ import annotations

import hashlib
import random

from hypothesis import strategies as st

import fakekeys


def _from(generator):
    """A strategy drawing a fake key from a ``fakekeys`` generator seeded by Hypothesis."""
    return st.integers(min_value=0, max_value=2**32 - 1).map(lambda seed: generator(random.Random(seed)))


#: family -> (strategy of keys, rule id expected to find them)
KEY_FAMILIES = {
    "openai": (_from(fakekeys.openai_project_key), "openai-api-key"),
    "anthropic": (_from(fakekeys.anthropic_key), "anthropic-api-key"),
    "github": (_from(fakekeys.github_classic_token), "github-pat-classic"),
    "npm": (_from(fakekeys.npm_token), "npm-access-token"),
    "aws": (_from(fakekeys.aws_access_key_id), "aws-access-key-id"),
    "pypi": (_from(fakekeys.pypi_token), "pypi-upload-token"),
    "gitlab": (_from(fakekeys.gitlab_routable_token), "gitlab-pat-routable"),
    "slack": (_from(fakekeys.slack_bot_token), "slack-bot-token"),
    "slack-webhook": (_from(fakekeys.slack_webhook_url), "slack-webhook-url"),
    "stripe": (_from(fakekeys.stripe_secret_key), "stripe-secret-key"),
    "huggingface": (_from(fakekeys.huggingface_token), "huggingface-access-token"),
    "google": (_from(fakekeys.google_api_key), "google-api-key"),
    "groq": (_from(fakekeys.groq_key), "groq-api-key"),
    "sendgrid": (_from(fakekeys.sendgrid_key), "sendgrid-api-key"),
    "telegram": (_from(fakekeys.telegram_bot_token), "telegram-bot-token"),
    "jwt": (_from(fakekeys.jwt), "jwt"),
    "pem": (_from(fakekeys.pem_private_key), "private-key"),
    "openssh": (_from(fakekeys.openssh_private_key), "openssh-private-key"),
}

_WORDS = [
    "import", "numpy", "as", "np", "df", "model", "fit", "plot", "data", "result", "value", "print", "for", "in",
    "range", "the", "a", "train", "loss", "epoch", "batch", "return", "def", "class", "self", "None", "True",
    "config", "path", "with", "open", "json", "load", "user", "name", "score", "mean", "label", "tokenizer",
]

identifiers = st.from_regex(r"[a-z_][a-z0-9_]{0,20}", fullmatch=True)
words = st.sampled_from(_WORDS)
hex_hashes = st.binary(min_size=1, max_size=64).map(
    lambda b: random.Random(b).choice([hashlib.md5, hashlib.sha1, hashlib.sha256])(b).hexdigest()
)
uuids = st.uuids().map(str)
prose = st.lists(words, min_size=0, max_size=12).map(" ".join)
code_lines = st.one_of(
    st.builds(lambda a, b: f"{a} = {b}", identifiers, identifiers),
    st.builds(lambda a, b: f"{a}({b!r})", identifiers, words),
    st.builds(lambda a, n: f"for {a} in range({n}):", identifiers, st.integers(0, 1000)),
    st.builds(lambda a, h: f'{a} = "{h}"', identifiers, hex_hashes),
    st.builds(lambda u: f'run_id = "{u}"', uuids),
    prose.map(lambda p: f"# {p}"),
    st.just(""),
)
code = st.lists(code_lines, min_size=0, max_size=8).map("\n".join)

#: Random text with nothing secret in it: identifiers, prose, hex hashes, UUIDs.
non_secret_text = st.lists(
    st.one_of(identifiers, words, hex_hashes, uuids, prose, code_lines, st.integers().map(str)), max_size=20
).map(lambda parts: random.Random(len(parts)).choice([" ", "\n", ", "]).join(parts))

#: How a key is embedded: as a string literal, after `=`, in a comment, in prose, in a URL param.
_SEPARATORS = [" ", "\n", "\t", "(", ")", ",", ";", "\"", "'", "=", ": "]
placements = st.sampled_from([
    '"{k}"', "'{k}'", "= {k}\n", "# {k}", " {k} ", "({k})", "\n{k}\n", '{{"key": "{k}"}}', "KEY={k}\n",
])
separators = st.sampled_from(_SEPARATORS)
