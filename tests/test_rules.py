"""The shipped rules: loaded, validated, each example found and each counterexample not, and
every regex linear on adversarial input."""

from __future__ import annotations

import time

import pytest

from ipykeyguard.engine.config import Config
from ipykeyguard.engine.findings import Confidence
from ipykeyguard.engine.rules import RuleError, RuleSet, default_rules, parse_rules
from ipykeyguard.engine.scan import Scanner

RULES = default_rules()
SCANNER = Scanner(Config())

EXAMPLES = [pytest.param(r.id, i, id=f"{r.id}-{i}") for r in RULES for i in range(len(r.examples))]
COUNTEREXAMPLES = [pytest.param(r.id, i, id=f"{r.id}-{i}") for r in RULES for i in range(len(r.counterexamples))]


def _rule(rule_id: str):
    return next(r for r in RULES if r.id == rule_id)


def test_rule_set_is_large_and_complete():
    """At least 110 rules ship, each with a description, an env name, keywords and an example."""
    assert len(RULES) >= 110
    for rule in RULES:
        assert rule.description and rule.env and rule.keywords, rule.id
        assert rule.examples, f"{rule.id} has no example"


@pytest.mark.parametrize("family", [
    "openai-api-key", "anthropic-api-key", "anthropic-admin-key", "google-api-key", "google-oauth-client-secret",
    "huggingface-access-token", "huggingface-org-token", "groq-api-key", "mistral-api-key", "cohere-api-key",
    "replicate-api-token", "openrouter-api-key", "perplexity-api-key", "xai-api-key", "together-api-key",
    "deepseek-api-key", "pinecone-api-key", "langsmith-api-key", "wandb-api-key", "kaggle-api-key",
    "aws-access-key-id", "aws-secret-access-key", "aws-session-token", "gcp-service-account-key",
    "azure-storage-account-key", "azure-ad-client-secret", "azure-sas-token", "digitalocean-pat", "databricks-token",
    "snowflake-url-password", "postgres-url-password", "github-pat-classic", "github-fine-grained-pat", "gitlab-pat",
    "gitlab-pat-routable", "npm-access-token", "pypi-upload-token", "dockerhub-token", "stripe-secret-key",
    "stripe-webhook-secret", "slack-bot-token", "slack-webhook-url", "twilio-api-key", "sendgrid-api-key",
    "mailgun-api-key", "telegram-bot-token", "discord-bot-token", "discord-webhook-url", "private-key",
    "openssh-private-key", "jwt", "generic-secret-assignment", "authorization-header", "url-credentials",
])
def test_required_families_are_present(family):
    """Every provider family the project promises has a rule."""
    assert any(r.id == family for r in RULES)


@pytest.mark.parametrize("rule_id, index", EXAMPLES)
def test_example_is_found_by_its_rule(rule_id, index):
    """Each rule's example is found by that rule, at likely confidence or higher unless the rule is weaker."""
    rule = _rule(rule_id)
    example = rule.examples[index]
    found = [f for f in SCANNER.scan_text(example) if f.rule == rule_id]
    assert found, f"{rule_id} example {index} not found"
    assert all(f.confidence >= min(rule.confidence, Confidence.LIKELY) for f in found)
    for f in found:
        assert f.secret.reveal() == example[f.start:f.end]


@pytest.mark.parametrize("rule_id, index", COUNTEREXAMPLES)
def test_counterexample_is_not_found_by_its_rule(rule_id, index):
    """Each rule's counterexample is not found by that rule."""
    rule = _rule(rule_id)
    found = [f for f in SCANNER.scan_text(rule.counterexamples[index]) if f.rule == rule_id]
    assert not found, f"{rule_id} counterexample {index} found"


@pytest.mark.parametrize("rule_id, index", EXAMPLES)
def test_every_match_contains_a_keyword(rule_id, index):
    """The prefilter is sound: every match of a rule contains one of its keywords (case-insensitively)."""
    rule = _rule(rule_id)
    matches = list(rule.pattern.finditer(rule.examples[index]))
    assert matches
    for m in matches:
        assert any(k in m.group(0).lower() for k in rule.keywords), f"{rule_id}: match without keyword"


@pytest.mark.parametrize(
    "rule_id, index",
    [pytest.param(r.id, i, id=f"{r.id}-{i}") for r in RULES if r.anchor is not None for i in range(len(r.examples))],
)
def test_anchored_rule_matches_start_near_a_keyword(rule_id, index):
    """An anchored rule's every match starts at most `anchor` characters before one of its keywords,
    so trying the regex only there finds exactly what a scan of the whole text finds."""
    rule = _rule(rule_id)
    text = rule.examples[index]
    whole = [m.span("secret") for m in rule.pattern.finditer(text) if m.group("secret")]
    assert whole
    lowered = text.lower()
    for m in rule.pattern.finditer(text):
        assert any(
            lowered.find(k, m.start(), m.end()) != -1 and lowered.find(k, m.start(), m.end()) - m.start() <= rule.anchor
            for k in rule.keywords
        ), f"{rule_id}: example {index} has a match starting more than {rule.anchor} characters before its keyword"
    anchored = [f.start for f in SCANNER.raw_matches(text) if f.rule == rule_id]
    assert sorted(anchored) == sorted(s for s, _e in whole)


@pytest.mark.parametrize("rule_id", [r.id for r in RULES if r.validator])
def test_validated_examples_are_certain_unless_deliberately_malformed(rule_id):
    """An example of a rule with a validator reaches `certain` (the examples are format-exact)."""
    rule = _rule(rule_id)
    levels = {f.confidence for ex in rule.examples for f in SCANNER.scan_text(ex) if f.rule == rule_id}
    assert Confidence.CERTAIN in levels


def _adversarial_inputs(rule, size: int = 100_000) -> list[str]:
    """Long runs of each keyword, of the rule's alphabet, and keyword + alphabet near-misses."""
    def fill(unit: str) -> str:
        return (unit * (size // len(unit) + 1))[:size]

    alphabet = "aZ09_-./+=:~%"
    inputs = [fill(alphabet), fill("A"), fill("a1"), fill("0"), fill(" ")]
    for kw in rule.keywords:
        inputs += [fill(kw), fill(kw.upper()), fill(kw + "a1B9"), fill(kw + ' = "'), fill(kw + "\n")]
    for example in rule.examples:
        cut = max(1, len(example) - 2)
        inputs += [fill(example[:cut] + "\n"), fill(example[: max(1, len(example) // 2)])]
    return inputs


TIMINGS: dict[str, float] = {}


@pytest.mark.slow
@pytest.mark.parametrize("rule_id", [r.id for r in RULES])
def test_regex_is_linear_on_adversarial_input(rule_id):
    """No rule backtracks catastrophically: 100 KB adversarial inputs each scan well within a bound."""
    rule = _rule(rule_id)
    start = time.perf_counter()
    for text in _adversarial_inputs(rule):
        t0 = time.perf_counter()
        for _m in rule.pattern.finditer(text):
            pass
        # generous guard against catastrophic backtracking (measured: a few ms per input)
        assert time.perf_counter() - t0 < 2.0, f"{rule_id}: adversarial input too slow"
    TIMINGS[rule_id] = time.perf_counter() - start


@pytest.mark.slow
def test_megabyte_of_adversarial_text_scans_in_bounded_time():
    """A 1 MB mix of every keyword and near-miss scans through the whole engine in bounded time."""
    units = []
    for rule in RULES:
        for kw in rule.keywords:
            units.append(kw + "a1B9" + ' = "' + kw.upper() + "=")
    blob = " ".join(units)
    text = (blob * (1_000_000 // len(blob) + 1))[:1_000_000]
    start = time.perf_counter()
    SCANNER.scan_text(text)
    # guard only (measured on the shared 2-core box: 4-9 s, every rule runs over every byte)
    assert time.perf_counter() - start < 30.0


# -- the loader -------------------------------------------------------------------------------

def _toml(**fields) -> str:
    base = {
        "id": '"my-rule"',
        "description": '"A test rule"',
        "regex": "'''(?P<secret>tok_[a-z]{8})'''",
        "keywords": '["tok_"]',
    }
    base.update(fields)
    return "[[rule]]\n" + "\n".join(f"{k} = {v}" for k, v in base.items() if v is not None) + "\n"


@pytest.mark.parametrize("fields, message", [
    ({"regex": "'''(?P<secret>tok_[a-z]+)'''"}, "unbounded repeat"),
    ({"regex": "'''(?P<secret>tok_[a-z]*)'''"}, "unbounded repeat"),
    ({"regex": "'''(?P<secret>tok_[a-z]{8,})'''"}, "unbounded repeat"),
    ({"regex": "'''(?:x(?P<secret>[a-z]{2}|y+))'''"}, "unbounded repeat"),
    ({"regex": "'''tok_[a-z]{8}'''"}, "(?P<secret>"),
    ({"regex": "'''(?P<secret>[a-z'''"}, "does not compile"),
    ({"confidence": '"very"'}, "unknown confidence"),
    ({"validator": '"nope"'}, "unknown validator"),
    ({"env": '"lower_case"'}, "UPPER_SNAKE_CASE"),
    ({"entropy": "12"}, "entropy"),
    ({"description": None}, "description is required"),
    ({"colour": '"red"'}, "unknown field"),
])
def test_loader_rejects_malformed_rule_and_names_it(fields, message):
    """A malformed rule is rejected with an error naming the rule and the problem."""
    with pytest.raises(RuleError) as info:
        parse_rules(_toml(**fields), "extra.toml")
    assert "my-rule" in str(info.value) and message in str(info.value)
    assert "extra.toml" in str(info.value)


def test_shipped_rules_pass_the_full_checks_skipped_at_start_up():
    """The shipped rules file loads with every regex check on (start-up trusts it and defers compiling)."""
    from importlib import resources

    from ipykeyguard.engine.rules import parse_rules

    text = resources.files("ipykeyguard.engine").joinpath("rules.toml").read_text(encoding="utf-8")
    checked = parse_rules(text, "rules.toml", trusted=False)
    assert [r.id for r in checked] == [r.id for r in RULES]
    assert all(r.max_width is not None for r in checked)


def test_loader_rejects_duplicate_id():
    """Two rules with one id are rejected, naming the id."""
    with pytest.raises(RuleError, match="duplicate rule id 'my-rule'"):
        parse_rules(_toml() + _toml())


def test_loader_rejects_bad_id():
    """A rule id that is not kebab-case is rejected, quoting the id."""
    with pytest.raises(RuleError, match="My_Rule"):
        parse_rules(_toml(id='"My_Rule"'))


def test_extra_rule_cannot_reuse_builtin_id_and_disabled_ids_must_exist():
    """User rules cannot shadow a built-in id, and disabling an unknown id is an error."""
    clash = parse_rules(_toml(id='"openai-api-key"'))
    with pytest.raises(RuleError, match="openai-api-key"):
        RuleSet(extra=clash)
    with pytest.raises(RuleError, match="no-such-rule"):
        RuleSet(disabled=["no-such-rule"])


def test_valid_extra_rule_loads_and_runs():
    """A well-formed extra rule is loaded and finds its own example through a scanner."""
    rules = parse_rules(_toml(examples='["x = tok_abcdefgh"]'))
    scanner = Scanner(Config())
    found = scanner.raw_matches("x = tok_qwertyui", rules)
    assert [f.rule for f in found] == ["my-rule"]
