"""The kernel's egress guard, end to end: real kernels, real clients, a loopback stand-in provider.

Each client the guard covers (httpx sync, async and streaming; requests; urllib; aiohttp; the
real openai and anthropic SDKs, sync, async and streaming, with ``base_url`` pointing at the
stub) sends a prompt holding a key the guard knows. The stub on 127.0.0.1 records what arrived:
the body holds a mask instead of the key, is valid JSON of the same shape with a right
``Content-Length``, the auth header still carries the key, and the notebook was told by name.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

import fakekeys
from kernelharness import RealKernel
from llmstub import LLMStub
from ipykeyguard.engine.findings import mask_for

pytestmark = [pytest.mark.kernel]

MASK = mask_for("OPENAI_API_KEY")

# Built in the kernel from os.environ (a literal key in a cell would be moved by the input guard).
SETUP = """
import os, json, asyncio
KEY = os.environ["OPENAI_API_KEY"]
PROMPT = "Why does this fail?\\nclient = OpenAI(api_key='" + KEY + "')\\nThanks"
BODY = {"model": "stub", "temperature": 0.5, "messages": [
    {"role": "system", "content": "You are terse."}, {"role": "user", "content": PROMPT}]}
RAW = json.dumps(BODY).encode()
AUTH = {"Authorization": "Bearer " + KEY, "Content-Type": "application/json"}
CHAT = URL + "/v1/chat/completions"
"""

# client -> cell (sends BODY, or the SDK's equivalent, to the stub)
CLIENTS = {
    "httpx": "import httpx\nhttpx.post(CHAT, json=BODY, headers=AUTH).raise_for_status()",
    "httpx-content": "import httpx\nhttpx.post(CHAT, content=RAW, headers=AUTH).raise_for_status()",
    "httpx-async": ("import httpx\nasync with httpx.AsyncClient() as c:\n"
                    "    (await c.post(CHAT, json=BODY, headers=AUTH)).raise_for_status()"),
    "httpx-stream": ("import httpx\nwith httpx.stream('POST', CHAT, json=dict(BODY, stream=True), headers=AUTH) as r:\n"
                     "    chunks = list(r.iter_lines())\nassert chunks[-2] == 'data: [DONE]', chunks[-2:]"),
    "requests": "import requests\nrequests.post(CHAT, json=BODY, headers=AUTH).raise_for_status()",
    "urllib3": ("import urllib3\n"
                "r = urllib3.request('POST', CHAT, body=RAW, headers=AUTH)\nassert r.status == 200"),
    "urllib": ("import urllib.request\n"
               "urllib.request.urlopen(urllib.request.Request(CHAT, data=RAW, headers=AUTH)).read()"),
    "aiohttp-json": ("import aiohttp\nasync with aiohttp.ClientSession() as s:\n"
                     "    async with s.post(CHAT, json=BODY, headers=AUTH) as r:\n        r.raise_for_status()"),
    "aiohttp-data": ("import aiohttp\nasync with aiohttp.ClientSession(headers=AUTH) as s:\n"
                     "    async with s.post(CHAT, data=RAW) as r:\n        r.raise_for_status()"),
    "openai": ("import openai\nc = openai.OpenAI(api_key=KEY, base_url=URL + '/v1', max_retries=0)\n"
               "r = c.chat.completions.create(model='stub', messages=BODY['messages'])\n"
               "assert r.choices[0].message.content == 'stub reply'"),
    "openai-stream": ("import openai\nc = openai.OpenAI(api_key=KEY, base_url=URL + '/v1', max_retries=0)\n"
                      "text = ''.join(ch.choices[0].delta.content or '' for ch in "
                      "c.chat.completions.create(model='stub', messages=BODY['messages'], stream=True))\n"
                      "assert text == 'stub reply', text"),
    "openai-async": ("import openai\nc = openai.AsyncOpenAI(api_key=KEY, base_url=URL + '/v1', max_retries=0)\n"
                     "r = await c.chat.completions.create(model='stub', messages=BODY['messages'])\n"
                     "assert r.choices[0].message.content == 'stub reply'"),
    "anthropic": ("import anthropic\nc = anthropic.Anthropic(api_key=KEY, base_url=URL, max_retries=0)\n"
                  "r = c.messages.create(model='stub', max_tokens=5, system=BODY['messages'][0]['content'], "
                  "messages=BODY['messages'][1:])\nassert r.content[0].text == 'stub reply'"),
    "anthropic-stream": ("import anthropic\nc = anthropic.Anthropic(api_key=KEY, base_url=URL, max_retries=0)\n"
                         "with c.messages.stream(model='stub', max_tokens=5, system=BODY['messages'][0]['content'], "
                         "messages=BODY['messages'][1:]) as s:\n    text = ''.join(s.text_stream)\n"
                         "assert text == 'stub reply', text"),
    "anthropic-async": ("import anthropic\nc = anthropic.AsyncAnthropic(api_key=KEY, base_url=URL, max_retries=0)\n"
                        "r = await c.messages.create(model='stub', max_tokens=5, "
                        "system=BODY['messages'][0]['content'], messages=BODY['messages'][1:])\n"
                        "assert r.content[0].text == 'stub reply'"),
}
SDKS = {"openai", "openai-stream", "openai-async", "anthropic", "anthropic-stream", "anthropic-async"}


def assert_no_key(key: str, text: str | bytes, where: str) -> None:
    """Fail without echoing either string (pytest would print both on a plain assert)."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    if key in text:
        pytest.fail(f"key leaked in {where}", pytrace=False)


def prompt_for(key: str) -> str:
    return "Why does this fail?\nclient = OpenAI(api_key='" + key + "')\nThanks"


def start_guarded(tmp: Path, stub: LLMStub, key: str, config: str = "", load: bool = True,
                  python: str | None = None) -> RealKernel:
    """A kernel whose environment holds the key, with the guard loaded (before any HTTP import)."""
    work, ipdir = tmp / "work", tmp / "ipython"
    (ipdir / "profile_default").mkdir(parents=True, exist_ok=True)
    work.mkdir(exist_ok=True)
    if config:
        (ipdir / "profile_default" / "ipython_kernel_config.py").write_text(config)
    # LiteLLM fetches its model price map from GitHub at import unless told to use its local copy.
    k = RealKernel(work, ipython_dir=ipdir, env={"OPENAI_API_KEY": key, "LITELLM_LOCAL_MODEL_COST_MAP": "True"},
                   python=python)
    k.start()
    if load:
        k.ok("%load_ext ipykeyguard")
    k.ok(f"URL = {stub.url!r}\n" + SETUP)
    return k


@pytest.fixture(scope="module")
def stub():
    with LLMStub() as s:
        yield s


@pytest.fixture(scope="module")
def key() -> str:
    return fakekeys.openai_project_key()


@pytest.fixture(scope="module")
def guarded(tmp_path_factory, stub, key):
    """One kernel with the guard in its default mode (mask), shared by the per-client tests."""
    k = start_guarded(tmp_path_factory.mktemp("egress"), stub, key)
    yield k
    k.stop()


@pytest.mark.parametrize("client", list(CLIENTS))
def test_prompt_reaches_the_model_masked_with_auth_intact(guarded, stub, key, client):
    """Through each client, the prompt that arrives holds the mask instead of the key, the body is
    valid JSON of the same shape with a right Content-Length, the credential header still carries
    the key, and the notebook is told by name."""
    stub.requests.clear()
    ex = guarded.run(CLIENTS[client])
    assert ex.status == "ok", f"{ex.content.get('ename')}: {ex.content.get('evalue')}"
    assert len(stub.requests) == 1
    (arrived,) = stub.requests
    assert_no_key(key, arrived.body, "the request body")
    assert int(arrived.headers["content-length"]) == len(arrived.body)
    sent = arrived.json()
    auth = arrived.headers.get("authorization", "") + arrived.headers.get("x-api-key", "")
    assert key in auth, "the credential header lost the key"
    expected_prompt = prompt_for(key).replace(key, MASK)
    if client in SDKS:
        user = sent["messages"][-1]["content"]
        assert (user if isinstance(user, str) else user[0]["text"]) == expected_prompt
    else:
        expected = {"model": "stub", "temperature": 0.5, "messages": [
            {"role": "system", "content": "You are terse."}, {"role": "user", "content": expected_prompt}]}
        if client == "httpx-stream":
            expected["stream"] = True
        assert sent == expected
    assert "ipykeyguard: masked OPENAI_API_KEY in the prompt sent to 127.0.0.1/" in ex.stderr
    assert_no_key(key, ex.wire_text(), "the notebook's messages")


@pytest.mark.parametrize("client, code", [
    ("httpx", "httpx.post(URL + '/upload', content=RAW, headers=AUTH)"),
    ("requests", "requests.post(URL + '/upload', data=RAW, headers=AUTH)"),
    ("urllib3", "urllib3.request('POST', URL + '/upload', body=RAW, headers=AUTH)"),
    ("urllib", "urllib.request.urlopen(urllib.request.Request(URL + '/upload', data=RAW, headers=AUTH)).read()"),
    ("aiohttp", "async with aiohttp.ClientSession() as s:\n"
                "    async with s.post(URL + '/upload', data=RAW, headers=AUTH) as r:\n        await r.read()"),
])
def test_non_model_requests_are_sent_byte_identical(guarded, stub, key, client, code):
    """A request that is not a model call goes out exactly as built, key and all, with no notice."""
    stub.requests.clear()
    ex = guarded.run(f"import httpx, requests, urllib3, urllib.request, aiohttp\n{code}")
    assert ex.status == "ok", f"{ex.content.get('ename')}: {ex.content.get('evalue')}"
    (arrived,) = stub.requests
    expected_raw = json.dumps({"model": "stub", "temperature": 0.5, "messages": [
        {"role": "system", "content": "You are terse."}, {"role": "user", "content": prompt_for(key)}]}).encode()
    assert arrived.body == expected_raw, "the body of a non-model request changed"
    assert "ipykeyguard: masked" not in ex.stderr


def test_gemini_and_ollama_routes_and_a_configured_endpoint(guarded, stub, key):
    """Gemini's :generateContent (key in the query, which stays), Ollama's /api/chat and a route
    added with c.KeyGuard.prompt_endpoints are all masked; the query-string credential is kept."""
    stub.requests.clear()
    guarded.ok(
        "import httpx, requests\n"
        "httpx.post(URL + '/v1beta/models/gemini:generateContent', params={'key': KEY},\n"
        "           json={'contents': [{'parts': [{'text': PROMPT}]}]}).raise_for_status()\n"
        "requests.post(URL + '/api/chat', json={'model': 'llama3', 'messages': BODY['messages']}).raise_for_status()\n"
        "%config KeyGuard.prompt_endpoints = ['/internal/llm/ask']\n"
        "requests.post(URL + '/internal/llm/ask', json={'q': PROMPT}).raise_for_status()\n"
        "%config KeyGuard.prompt_endpoints = []\n"
    )
    gemini, ollama, custom = stub.requests
    assert key in gemini.path  # the credential in the URL is untouched
    for arrived in (gemini, ollama, custom):
        assert_no_key(key, arrived.body, arrived.path.split("?")[0])
        assert MASK in arrived.body.decode()


def test_off_mode_sends_the_prompt_unchanged(guarded, stub, key):
    """With c.KeyGuard.prompts = 'off' the key reaches the model (what the guard prevents otherwise)."""
    stub.requests.clear()
    try:
        ex = guarded.ok("%config KeyGuard.prompts = 'off'\nimport httpx\nhttpx.post(CHAT, content=RAW, headers=AUTH)")
    finally:
        guarded.ok("%config KeyGuard.prompts = 'mask'")
    (arrived,) = stub.requests
    assert key in arrived.body.decode()
    assert "ipykeyguard: masked" not in ex.stderr


def test_block_mode_refuses_and_sends_nothing(tmp_path, stub, key):
    """In block mode every client's model request raises PromptBlocked naming the variable, at
    once and without retries, and nothing reaches the model."""
    k = start_guarded(tmp_path, stub, key, config="c.KeyGuard.prompts = 'block'\n")
    try:
        for client, code in CLIENTS.items():
            stub.requests.clear()
            ex = k.run(code)
            assert ex.status == "error", client
            assert ex.content["ename"] == "PromptBlocked", (client, ex.content["ename"])
            assert "OPENAI_API_KEY" in ex.content["evalue"] and "nothing was sent" in ex.content["evalue"]
            assert_no_key(key, ex.wire_text(), f"the notebook's messages ({client})")
            assert stub.requests == [], f"{client} sent a blocked request"
        stub.requests.clear()
        k.ok("import httpx\nhttpx.post(URL + '/upload', content=RAW)")  # not a model call: sent
        assert len(stub.requests) == 1
        assert "prompts to language models: block" in k.ok("%keyguard").stdout
    finally:
        k.stop()


def test_reload_does_not_stack_and_unload_restores_every_original(tmp_path, stub, key):
    """%reload_ext leaves one wrapper per hook point (one notice per request), libraries imported
    after loading are covered, and %unload_ext puts every original method back."""
    k = start_guarded(tmp_path, stub, key)
    try:
        check = (
            "import httpx, httpx2, requests, urllib3, http.client, aiohttp\n"
            "targets = [(httpx.Client, 'send'), (httpx.AsyncClient, 'send'), (httpx2.Client, 'send'),\n"
            "           (httpx2.AsyncClient, 'send'), (requests.Session, 'send'),\n"
            "           (urllib3.connectionpool.HTTPConnectionPool, 'urlopen'),\n"
            "           (http.client.HTTPConnection, 'request'), (aiohttp.ClientSession, '_request')]\n"
            "def depth(f):\n"
            "    n = 0\n"
            "    while hasattr(f, '_ipykeyguard_prompt_guard'):\n"
            "        n += 1; f = f.__wrapped__\n"
            "    return n\n"
            "print(json.dumps([depth(getattr(c, n)) for c, n in targets]))\n"
        )
        assert json.loads(k.ok(check).stdout) == [1] * 8  # imported after %load_ext: patched on import
        k.ok("%reload_ext ipykeyguard")
        k.ok("%reload_ext ipykeyguard")
        assert json.loads(k.ok(check).stdout) == [1] * 8
        stub.requests.clear()
        ex = k.ok("httpx.post(CHAT, content=RAW, headers=AUTH)")
        assert ex.stderr.count("ipykeyguard: masked OPENAI_API_KEY") == 1
        ex = k.ok("requests.post(CHAT, data=RAW, headers=AUTH)")  # Session.send, then urllib3
        assert ex.stderr.count("ipykeyguard: masked OPENAI_API_KEY") == 1
        k.ok("%unload_ext ipykeyguard")
        assert json.loads(k.ok(check).stdout) == [0] * 8
        assert k.value("httpx.Client.send.__qualname__") == "Client.send"
        stub.requests.clear()
        k.ok("httpx.post(CHAT, content=RAW, headers=AUTH)")
        (arrived,) = stub.requests
        assert key in arrived.body.decode()  # unloaded: nothing masks any more
    finally:
        k.stop()


def test_a_secret_the_guard_does_not_know_is_masked_by_rule(guarded, stub):
    """A token the guard never saw (found by its rule) is masked in the prompt too, by its variable name."""
    token = fakekeys.github_classic_token()
    stub.requests.clear()
    # Passed split in two so that no cell text holds the token (the input guard would move it).
    half = len(token) // 2
    ex = guarded.ok(f"import httpx\nhttpx.post(CHAT, json={{'messages': [{{'role': 'user', 'content': "
                    f"'deploy with ' + {token[:half]!r} + {token[half:]!r}}}]}})")
    (arrived,) = stub.requests
    assert_no_key(token, arrived.body, "the request body")
    assert mask_for("GITHUB_TOKEN") in arrived.body.decode()
    assert "masked GITHUB_TOKEN" in ex.stderr


def test_langchain_is_covered_when_installed(guarded, stub, key):
    """LangChain's OpenAI chat model sends through the openai SDK, so its prompt is masked too."""
    pytest.importorskip("langchain_openai")
    stub.requests.clear()
    guarded.ok("from langchain_openai import ChatOpenAI\n"
               "ChatOpenAI(api_key=KEY, base_url=URL + '/v1', model='stub', max_retries=0).invoke(PROMPT)")
    (arrived,) = stub.requests
    assert_no_key(key, arrived.body, "the request body")


def test_litellm_is_covered_when_installed(guarded, stub, key):
    """LiteLLM's OpenAI-compatible and Ollama calls (through the openai SDK and httpx) are masked too."""
    pytest.importorskip("litellm")
    stub.requests.clear()
    guarded.ok("import litellm\n"
               "r = litellm.completion(model='openai/stub', api_base=URL + '/v1', api_key=KEY, messages=BODY['messages'])\n"
               "assert r.choices[0].message.content == 'stub reply'\n"
               "litellm.completion(model='ollama/llama3', api_base=URL, messages=BODY['messages'])", timeout=180)
    assert [r.path for r in stub.requests] == ["/v1/chat/completions", "/api/generate"]
    for arrived in stub.requests:
        assert_no_key(key, arrived.body, arrived.path)
        assert MASK in arrived.body.decode()


@pytest.fixture(scope="module")
def jupyter_ai_kernel(tmp_path_factory, stub, key):
    """A guarded kernel that has jupyter-ai-magics: this environment's, or else one of its own
    (jupyter-ai-magics 2.31 pins langchain < 0.4, which this environment's LangChain tests exceed)."""
    python = None
    if importlib.util.find_spec("jupyter_ai_magics") is None:
        from nestedenv import REPO, make_env

        python = str(make_env(tmp_path_factory.mktemp("jai") / "venv", "jupyter-ai-magics==2.31.7",
                              "langchain-openai<0.4", "ipykernel", str(REPO), pinned=False))
    k = start_guarded(tmp_path_factory.mktemp("egress-jai"), stub, key, python=python)
    yield k
    k.stop()


@pytest.mark.slow
def test_jupyter_ai_magic_prompt_is_masked(jupyter_ai_kernel, stub, key):
    """The %%ai magic's prompt, with a key interpolated from the user namespace, reaches the model
    masked: jupyter-ai-magics sends through LangChain and the openai SDK, which the guard covers."""
    guarded = jupyter_ai_kernel
    stub.requests.clear()
    guarded.ok("%load_ext jupyter_ai_magics")
    params = json.dumps({"openai_api_base": stub.url + "/v1", "max_retries": 0}, separators=(",", ":"))
    ex = guarded.run(f"%%ai openai-chat:gpt-4o --model-parameters {params}\nExplain this: {{PROMPT}}", timeout=180)
    assert ex.status == "ok", f"{ex.content.get('ename')}: {ex.content.get('evalue')}"
    (arrived,) = stub.requests
    assert_no_key(key, arrived.body, "the %%ai request body")
    assert MASK in arrived.body.decode()
    assert "masked OPENAI_API_KEY" in ex.stderr
