"""Prompt redaction: which outgoing requests are language-model calls, and their bodies masked.

This is the pure core behind the kernel's egress guard (:mod:`ipykeyguard.kernel.egress`). It
imports no HTTP library and does no I/O: it answers two questions about a request that is about
to leave the process.

* **Is it a language-model call?** :class:`Endpoints` says so from the host (a known provider,
  ``api.openai.com``, ``*.openai.azure.com``, ...), the route (a path ending in
  ``/v1/chat/completions``, ``/v1/messages``, ``:generateContent``, ``/api/chat``, ...), or the
  ``User-Agent`` the ``openai`` and ``anthropic`` SDKs send (so an SDK call is caught whatever its
  ``base_url``). Users add hosts and routes with ``c.KeyGuard.prompt_endpoints``.
* **What does its body become?** :func:`redact_body` masks every JSON string leaf (message
  contents, system prompts, tool and function arguments, inputs) with the guard's own
  :class:`~ipykeyguard.transforms.redact.Redactor` (known values, then rule matches: the same
  masks as the output guard) and re-serialises the JSON with the same structure. Object keys,
  numbers, booleans and nulls are kept. A body with nothing to mask is returned as the very same
  object, so an unaffected request is sent byte for byte as built.

Headers are never an input here: the credentials that authenticate the call (``Authorization``,
``x-api-key``, ``api-key``, a Gemini ``?key=``) are not prompt content and must keep working.
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from ..engine.findings import mask_for
from .redact import WITHHELD_NOTICE, Redactor

__all__ = [
    "DEFAULT_HOSTS",
    "DEFAULT_ROUTES",
    "Endpoints",
    "PromptRedaction",
    "redact_body",
    "redact_json_value",
    "masked_notice",
    "blocked_message",
]

#: Hosts of language-model APIs. ``*`` matches any run of characters (``fnmatch``).
DEFAULT_HOSTS: tuple[str, ...] = (
    "api.openai.com",
    "api.anthropic.com",
    "generativelanguage.googleapis.com",
    "aiplatform.googleapis.com",
    "*-aiplatform.googleapis.com",
    "*.openai.azure.com",
    "*.services.ai.azure.com",
    "api.mistral.ai",
    "api.cohere.com",
    "api.cohere.ai",
    "api.groq.com",
    "api.together.xyz",
    "api.together.ai",
    "api.fireworks.ai",
    "api.deepseek.com",
    "api.perplexity.ai",
    "api.x.ai",
    "openrouter.ai",
    "api-inference.huggingface.co",
    "router.huggingface.co",
    "api.deepinfra.com",
    "api.replicate.com",
    "api.ai21.com",
    "api.voyageai.com",
    "api.cerebras.ai",
)

#: Path endings of language-model routes (matched against the path without its query).
#: ``/chat/completions`` rather than only ``/v1/...``: OpenAI-compatible servers mount it under
#: other prefixes (Azure's ``/openai/deployments/<name>/chat/completions``, Groq's
#: ``/openai/v1/chat/completions``).
DEFAULT_ROUTES: tuple[str, ...] = (
    "/chat/completions",
    "/v1/completions",
    "/v1/responses",
    "/v1/messages",
    "/v1/messages/count_tokens",
    "/v1/embeddings",
    ":generateContent",
    ":streamGenerateContent",
    "/api/chat",
    "/api/generate",
)

# The User-Agent of the openai and anthropic SDKs is "<client class name>/Python <version>"
# (OpenAI, AsyncOpenAI, AzureOpenAI, Anthropic, AsyncAnthropicVertex, ...): every call they make
# is a model call, whatever base_url the user gave them.
_SDK_USER_AGENT_RE = re.compile(r"^(?:Async)?(?:Azure)?(?:OpenAI|Anthropic)\w*/Python\b")
_SDK_HEADERS = ("anthropic-version",)  # sent by the anthropic SDK on every call

_MASK_PREFIX, _MASK_SUFFIX = mask_for("\0").split("\0")
_MASK_RE = re.compile(re.escape(_MASK_PREFIX) + r"([^\s\]\[]{1,200})" + re.escape(_MASK_SUFFIX))

#: What a leaf whose redaction failed is reported as (the redactor withholds it: fail closed).
REDACTION_FAILED = "(redaction failed)"


@dataclass(frozen=True)
class Endpoints:
    """Which requests are language-model calls.

    Args:
        hosts: Host names, lower case; ``*`` matches any run of characters.
        routes: Path endings (``/v1/chat/completions``, ``:generateContent``).
    """

    hosts: tuple[str, ...] = DEFAULT_HOSTS
    routes: tuple[str, ...] = DEFAULT_ROUTES

    def __post_init__(self) -> None:
        exact = frozenset(h for h in self.hosts if "*" not in h and "?" not in h and "[" not in h)
        object.__setattr__(self, "_exact_hosts", exact)
        object.__setattr__(self, "_host_patterns", tuple(h for h in self.hosts if h not in exact))
        object.__setattr__(self, "_route_tuple", tuple(self.routes))

    @classmethod
    def with_extra(cls, extra: Iterable[str]) -> "Endpoints":
        """The default endpoints plus ``extra``.

        Args:
            extra: Each entry is a route when it starts with ``/`` or ``:`` (a path ending),
                else a host name (``*`` allowed, e.g. ``*.llm.example.com``); a ``host:port``
                entry is taken as its host.

        Returns:
            The endpoints to match requests against.
        """
        hosts = list(DEFAULT_HOSTS)
        routes = list(DEFAULT_ROUTES)
        for entry in extra:
            entry = entry.strip()
            if not entry:
                continue
            if entry[0] in "/:":
                routes.append(entry.rstrip("/") or "/")
            else:
                host = entry.lower().split("://", 1)[-1].split("/", 1)[0]
                if host.count(":") == 1:  # host:port (an IPv6 literal has more colons)
                    host = host.split(":", 1)[0]
                hosts.append(host)
        return cls(hosts=tuple(dict.fromkeys(hosts)), routes=tuple(dict.fromkeys(routes)))

    def matches(self, host: str | None, path: str | None, headers: Mapping[str, str] | None = None) -> bool:
        """True when a request to ``host`` and ``path`` (with ``headers``) is a language-model call.

        Args:
            host: The host name (no port); ``None`` when unknown.
            path: The request path, with or without its query string.
            headers: The request headers (any case-insensitive or plain mapping), to recognise
                the ``openai``/``anthropic`` SDKs; optional.

        Returns:
            Whether the request's body should be checked.
        """
        if host:
            name = host.lower().rstrip(".")
            if name in self._exact_hosts:  # type: ignore[attr-defined]
                return True
            if any(fnmatch.fnmatchcase(name, p) for p in self._host_patterns):  # type: ignore[attr-defined]
                return True
        if path:
            bare = path.split("?", 1)[0].split("#", 1)[0]
            if "://" in bare:  # an absolute URL (a request through a proxy)
                bare = "/" + bare.split("://", 1)[1].partition("/")[2]
            bare = bare.rstrip("/")
            if bare.endswith(self._route_tuple):  # type: ignore[attr-defined]
                return True
        if headers:
            return _is_sdk_request(headers)
        return False


def _is_sdk_request(headers: Mapping[str, str]) -> bool:
    for key, value in headers.items():
        name = key.decode("latin-1") if isinstance(key, bytes) else str(key)
        lower = name.lower()
        if lower == "user-agent":
            text = value.decode("latin-1") if isinstance(value, bytes) else str(value)
            if _SDK_USER_AGENT_RE.match(text):
                return True
        elif lower in _SDK_HEADERS:
            return True
    return False


@dataclass(frozen=True)
class PromptRedaction:
    """The outcome of :func:`redact_body`.

    Attributes:
        body: The body to send: the very same object as given when nothing was masked.
        names: The variables (or rule ids) whose values were masked, sorted; the notice and
            the ``block`` error name them. Never a value.
        skipped: Why the body was not checked (``"not UTF-8"``), or ``""``.
    """

    body: Any
    names: tuple[str, ...] = ()
    skipped: str = ""

    @property
    def changed(self) -> bool:
        """True when something was masked."""
        return bool(self.names)


def _new_names(before: str, after: str) -> list[str]:
    """Names of the masks in ``after`` that ``before`` did not already hold."""
    if after == WITHHELD_NOTICE:
        return [REDACTION_FAILED]
    added = Counter(_MASK_RE.findall(after))
    if added:
        added.subtract(Counter(_MASK_RE.findall(before)))
    return [name for name, count in added.items() if count > 0] or [REDACTION_FAILED]


def redact_json_value(value: Any, redactor: Redactor) -> tuple[Any, tuple[str, ...]]:
    """Mask every string leaf of a JSON-like value (dicts, lists, tuples); keys are kept.

    Args:
        value: The decoded JSON body (or the ``json=`` argument of a client call).
        redactor: The guard's redactor (known values and rules).

    Returns:
        ``(new value, names masked)``; the value itself and ``()`` when nothing was masked.
    """
    names: set[str] = set()

    def walk(obj: Any) -> Any:
        if isinstance(obj, str):
            new = redactor.redact(obj)
            if new is not obj and new != obj:
                names.update(_new_names(obj, new))
                return new
            return obj
        if isinstance(obj, dict):
            changed = None
            for key, item in obj.items():
                new = walk(item)
                if new is not item:
                    if changed is None:
                        changed = dict(obj)
                    changed[key] = new
            return obj if changed is None else changed
        if isinstance(obj, (list, tuple)):
            items = [walk(item) for item in obj]
            if all(new is old for new, old in zip(items, obj)):
                return obj
            return items if isinstance(obj, list) else tuple(items)
        return obj

    new_value = walk(value)
    return new_value, tuple(sorted(names))


def redact_body(body: bytes | str, redactor: Redactor) -> PromptRedaction:
    """Mask secrets in a request body, keeping it what it was (JSON stays the same JSON shape).

    A JSON body has each string leaf redacted and is serialised again in the original's style
    (its separators; ``\\u`` escapes if it was ASCII, else UTF-8 characters kept); any other
    UTF-8 body is redacted as one text (masks are plain ASCII, so a text, form or multipart body
    keeps its framing); a body that is not UTF-8 (an audio upload, a gzip stream) is left alone
    and reported as skipped.

    Args:
        body: The encoded body (``bytes``) or text (``str``) about to be sent.
        redactor: The guard's redactor.

    Returns:
        A :class:`PromptRedaction`; its ``body`` has the type of ``body`` and is ``body`` itself
        when nothing was masked.
    """
    if isinstance(body, (bytes, bytearray, memoryview)):
        try:
            text = bytes(body).decode("utf-8")
        except UnicodeDecodeError:
            return PromptRedaction(body, skipped="not UTF-8")
        encode = True
    elif isinstance(body, str):
        text = body
        encode = False
    else:
        return PromptRedaction(body, skipped=f"a {type(body).__name__} body")
    if not text:
        return PromptRedaction(body)
    try:
        decoded = json.loads(text)
    except ValueError:
        new_text = redactor.redact(text)
        if new_text is text or new_text == text:
            return PromptRedaction(body)
        names = tuple(sorted(_new_names(text, new_text)))
    else:
        new_value, names = redact_json_value(decoded, redactor)
        if not names:
            return PromptRedaction(body)
        new_text = _dumps_like(new_value, text)
    return PromptRedaction(new_text.encode("utf-8") if encode else new_text, names)


def _dumps_like(value: Any, original: str) -> str:
    """``value`` as JSON in the style of ``original``: its separators, and ``\\u`` escapes when it
    was pure ASCII (also ~2x faster than ``ensure_ascii=False`` on a 200 KB prompt)."""
    head = original[:1000]
    spaced = '": ' in head or '", "' in head
    return json.dumps(value, ensure_ascii=original.isascii(),
                      separators=(", ", ": ") if spaced else (",", ":"))


def _where(host: str | None, path: str | None) -> str:
    """``host/path`` without the query string (a Gemini ``?key=`` is a credential)."""
    bare = (path or "").split("?", 1)[0].split("#", 1)[0]
    if "://" in bare:
        return bare.split("://", 1)[1]
    return f"{host or '?'}{bare}"


def masked_notice(names: Iterable[str], host: str | None, path: str | None) -> str:
    """The one line the notebook gets when a request was masked (names only, never a value)."""
    listed = ", ".join(names)
    return f"ipykeyguard: masked {listed} in the prompt sent to {_where(host, path)}"


def blocked_message(names: Iterable[str], host: str | None, path: str | None) -> str:
    """The error of a request refused in ``block`` mode (names only, never a value)."""
    listed = ", ".join(names)
    return (
        f"ipykeyguard refused a request to {_where(host, path)}: its prompt holds the value of "
        f"{listed}; nothing was sent (c.KeyGuard.prompts = 'block'; use 'mask' to send it masked)"
    )
