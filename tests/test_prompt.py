"""The pure prompt core: which requests are model calls, and their bodies masked leaf by leaf."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fakekeys
from ipykeyguard.engine.findings import mask_for
from ipykeyguard.transforms.prompt import (
    REDACTION_FAILED,
    Endpoints,
    blocked_message,
    masked_notice,
    redact_body,
    redact_json_value,
)
from ipykeyguard.transforms.redact import Redactor


def assert_no_key(key: str, text: str | bytes, where: str = "body") -> None:
    """Fail without echoing either string (pytest would print both on a plain assert)."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    if key in text:
        pytest.fail(f"key leaked in {where}", pytrace=False)


@pytest.fixture
def key() -> str:
    return fakekeys.openai_project_key()


@pytest.fixture
def redactor(key: str) -> Redactor:
    r = Redactor()
    r.add_known("OPENAI_API_KEY", key)
    return r


# -- which requests ---------------------------------------------------------------------------------

@pytest.mark.parametrize("host", [
    "api.openai.com", "API.OpenAI.com", "api.anthropic.com", "generativelanguage.googleapis.com",
    "us-central1-aiplatform.googleapis.com", "myres.openai.azure.com", "api.mistral.ai", "openrouter.ai",
])
def test_known_provider_hosts_are_model_calls_on_any_path(host):
    """A request to a known provider's host is a model call whatever its path."""
    assert Endpoints().matches(host, "/anything/else")


@pytest.mark.parametrize("path", [
    "/v1/chat/completions", "/openai/deployments/gpt4/chat/completions?api-version=2024-06-01",
    "/v1/completions", "/v1/responses", "/v1/messages", "/v1/embeddings",
    "/v1beta/models/gemini-2.0-flash:generateContent?key=AIzaFAKE",
    "/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse", "/api/chat", "/api/generate",
    "/gateway/v1/chat/completions/", "http://proxy.example/v1/messages",
])
def test_known_routes_are_model_calls_on_any_host(path):
    """A request on a known model route is a model call whatever its host (a local server, a proxy)."""
    assert Endpoints().matches("127.0.0.1", path)


@pytest.mark.parametrize("host, path", [
    ("127.0.0.1", "/upload"), ("example.com", "/v1/chat"), ("example.com", "/api/chat.postMessage"),
    ("example.com", "/messages"), ("api.openai.com.evil.example", "/x"), ("pypi.org", "/simple/"),
    ("example.com", "/search?q=/v1/chat/completions"), (None, None),
])
def test_other_requests_are_not_model_calls(host, path):
    """Hosts and paths that only resemble a provider's, and a route in the query string, are not model calls."""
    assert not Endpoints().matches(host, path)


@pytest.mark.parametrize("headers", [
    {"User-Agent": "OpenAI/Python 3.63.0"}, {"user-agent": "AsyncOpenAI/Python 1.2"},
    {"User-Agent": "AzureOpenAI/Python 1.2"}, {"User-Agent": "Anthropic/Python 2.17.0"},
    {"anthropic-version": "2023-06-01"},
])
def test_sdk_requests_are_model_calls_whatever_the_base_url(headers):
    """The openai and anthropic SDKs are recognised by the headers they send, on any URL."""
    assert Endpoints().matches("gateway.internal", "/team-a/proxy", headers)
    assert not Endpoints().matches("gateway.internal", "/team-a/proxy", {"User-Agent": "python-httpx/0.29"})


def test_extra_endpoints_add_hosts_wildcards_and_routes():
    """c.KeyGuard.prompt_endpoints entries add a host, a wildcard host, a host:port or URL, and a route."""
    ep = Endpoints.with_extra(["llm.corp.example", "*.inference.example", "gw.example:8443",
                               "https://other.example/base", "/v2/generate", ":predict", " "])
    assert ep.matches("llm.corp.example", "/")
    assert ep.matches("eu.inference.example", "/")
    assert ep.matches("gw.example", "/")
    assert ep.matches("other.example", "/")
    assert ep.matches("10.0.0.5", "/models/x/v2/generate")
    assert ep.matches("10.0.0.5", "/models/x:predict")
    assert ep.matches("api.openai.com", "/")  # the defaults stay
    assert not ep.matches("corp.example", "/")


# -- what bodies become ------------------------------------------------------------------------------

def test_json_body_leaves_are_masked_with_structure_and_other_values_kept(key, redactor):
    """Every string leaf (messages, system prompt, tool arguments, input) is masked; keys, numbers,
    booleans and nulls stay, and the result is valid JSON of the same shape."""
    body = {
        "model": "gpt-4o", "temperature": 0.2, "stream": True, "user": None, "n": 1,
        "messages": [
            {"role": "system", "content": f"You hold {key}."},
            {"role": "user", "content": [{"type": "text", "text": f"debug: api_key={key}"}]},
            {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function", "function": {
                "name": "f", "arguments": json.dumps({"token": key})}}]},
        ],
        "input": [key, "plain"],
        key: "a key in an object key is not prompt content",
    }
    raw = json.dumps(body).encode()
    out = redact_body(raw, redactor)
    assert out.names == ("OPENAI_API_KEY",)
    sent = json.loads(out.body)
    mask = mask_for("OPENAI_API_KEY")
    expected = json.loads(json.dumps({k: v for k, v in body.items() if k != key}).replace(key, mask))
    assert {k: v for k, v in sent.items() if k != key} == expected
    assert set(sent) == set(body)  # object keys are structure, kept as they were
    assert isinstance(out.body, bytes)


@pytest.mark.parametrize("style", [
    {},  # json.dumps defaults (requests, urllib users): spaced, ASCII with \\u escapes
    {"separators": (",", ":"), "ensure_ascii": False},  # httpx and the SDKs: compact, UTF-8
])
def test_masked_body_differs_from_the_original_only_where_the_key_was(key, redactor, style):
    """The body is re-serialised in the original's style, so only the key's span changes."""
    body = {"model": "m", "messages": [{"role": "user", "content": f"Grüße, 東京: {key}\n\"quoted\""}], "t": 0.7}
    raw = json.dumps(body, **style).encode()
    out = redact_body(raw, redactor)
    mask = mask_for("OPENAI_API_KEY")
    assert out.body == raw.replace(key.encode(), mask.encode())


def test_rule_matches_are_masked_by_the_rule_variable_name(redactor):
    """A secret the guard does not know yet is masked by rule, and reported by its variable name."""
    token = fakekeys.github_classic_token()
    out = redact_body(json.dumps({"prompt": f"my token is {token}"}), redactor)
    assert out.names == ("GITHUB_TOKEN",)
    assert_no_key(token, out.body)
    assert isinstance(out.body, str)


def test_body_without_secrets_is_the_same_object(redactor):
    """A body with nothing to mask comes back as the very object given, so it is sent byte for byte."""
    raw = b'{"messages": [{"role": "user", "content": "hello"}],   "x": 1.50}'
    out = redact_body(raw, redactor)
    assert out.body is raw and not out.changed


def test_non_json_text_body_is_masked_as_text(key, redactor):
    """A text body that is not JSON (form, plain text) is masked as one text, framing kept."""
    raw = f"prompt=explain&secret={key}&n=1".encode()
    out = redact_body(raw, redactor)
    assert out.body == f"prompt=explain&secret={mask_for('OPENAI_API_KEY')}&n=1".encode()


def test_non_utf8_body_is_left_alone_and_reported_skipped(redactor):
    """A binary body (audio, gzip) is not decoded or changed; the outcome says why."""
    raw = b"\xff\xfe\x00binary"
    out = redact_body(raw, redactor)
    assert out.body is raw and out.skipped == "not UTF-8"


def test_json_value_redaction_returns_same_object_when_clean(redactor):
    """An aiohttp-style json= value with no secret is returned unchanged (same object)."""
    value = {"messages": [{"role": "user", "content": "hi"}], "tools": ({"name": "x"},)}
    assert redact_json_value(value, redactor) == (value, ())
    assert redact_json_value(value, redactor)[0] is value


def test_failed_redaction_withholds_the_leaf_and_says_so(key):
    """When the redactor fails, the leaf is withheld (fail closed) and reported as a failure."""

    class Broken:
        def scan_text(self, *a, **k):
            raise RuntimeError("boom")

    r = Redactor(scanner=Broken())  # type: ignore[arg-type]
    out = redact_body(json.dumps({"prompt": f"x {key}"}), r)
    assert out.names == (REDACTION_FAILED,)
    assert_no_key(key, out.body)


def test_messages_name_variables_and_hide_the_query_string(key):
    """The notice and the block error name the variables and host/path, never a value or the query."""
    note = masked_notice(("OPENAI_API_KEY",), "generativelanguage.googleapis.com",
                         f"/v1beta/models/g:generateContent?key={key}")
    err = blocked_message(("OPENAI_API_KEY",), "h", f"/v1/messages?key={key}")
    for text in (note, err):
        assert "OPENAI_API_KEY" in text
        assert_no_key(key, text, "message")
    assert note.endswith("generativelanguage.googleapis.com/v1beta/models/g:generateContent")


json_leaves = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=30)),
    lambda children: st.one_of(st.lists(children, max_size=4),
                               st.dictionaries(st.text(max_size=8), children, max_size=4)),
    max_leaves=20,
)


def _shape(value):
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_shape(v) for v in value]
    return type(value).__name__


@settings(max_examples=60, deadline=None)
@given(tree=json_leaves, where=st.integers(min_value=0, max_value=50))
def test_any_json_body_keeps_its_shape_and_loses_the_key(tree, where):
    """For any JSON body with a known key planted in a string leaf, the result is valid JSON of
    the same shape (keys, types, lengths) and holds no trace of the key."""
    key = fakekeys.openai_project_key()
    r = Redactor()
    r.add_known("OPENAI_API_KEY", key)
    planted = {"messages": [{"role": "user", "content": f"see {key}"}], "extra": tree, "n": where}
    raw = json.dumps(planted).encode()
    out = redact_body(raw, r)
    sent = json.loads(out.body)
    assert _shape(sent) == _shape(planted)
    assert_no_key(key, out.body)
    assert "OPENAI_API_KEY" in out.names
