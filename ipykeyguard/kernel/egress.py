"""The kernel's egress guard: prompts sent to language-model APIs pass the redactor first.

``%load_ext ipykeyguard`` installs it with the rest of the guard (``c.KeyGuard.prompts``:
``mask`` by default, ``block``, ``off``). Every request that :class:`~ipykeyguard.transforms.
prompt.Endpoints` calls a language-model call (a known provider host, a known route, or the
``openai``/``anthropic`` SDKs whatever their ``base_url``) has its body redacted by the guard's
own :class:`~ipykeyguard.transforms.redact.Redactor` before it leaves the process; the notebook
gets one line on stderr naming what was masked. In ``block`` mode the request is refused with
:class:`PromptBlocked` and nothing is sent. Headers are never touched (they carry the key that
authenticates the call), and any other request goes out exactly as built.

Hook points, one per transport, each the lowest public layer every caller of that library
passes (the SDKs, LangChain and LiteLLM all sit on these; see ``docs/PROMPTS.md``):

* **httpx** and **httpx2** (the fork the ``openai`` 3.x and ``anthropic`` 2.x SDKs use):
  ``Client.send`` and ``AsyncClient.send``. ``Client.request``, ``.stream``, ``.post`` and
  the module-level ``httpx.post`` all end there with a built :class:`Request`. Event hooks cannot
  replace the body (they get the request after it was built, and are per client), and a
  transport is per client too; so ``send`` is wrapped on the class and the request replaced by
  a new ``Request`` built through the public constructor, with ``Content-Length`` recomputed.
* **requests**: ``Session.send`` (every ``requests.post``/``Session.request`` ends there with a
  ``PreparedRequest``); the body is replaced on a copy and ``prepare_content_length`` recomputes
  the header.
* **urllib3** used directly: ``HTTPConnectionPool.urlopen``, the one call every urllib3 request
  (``urllib3.request``, ``PoolManager.request``) ends in with its body. ``requests`` also ends
  there; its body arrives already masked, so nothing is done twice.
* **urllib.request / http.client**: ``HTTPConnection.request`` (urllib's ``do_open`` calls it
  with the body and a ``Content-length`` header, which is rewritten to match).
* **aiohttp**: ``ClientSession._request``, the one coroutine behind ``request``/``post``/...
  and ``aiohttp.request``. aiohttp has no public hook that can change a body (trace configs only
  observe; client middlewares are per session), so this private method is wrapped; its
  ``json=`` and ``data=`` (bytes/str) arguments are redacted before aiohttp serialises them.

Libraries not yet imported when the guard loads are patched when they are first imported (a
``sys.meta_path`` finder that wraps only those modules' loaders), so loading the guard does not
import four HTTP stacks into every kernel.

Every patch is installed once per process whatever the number of loads, records the original,
and :func:`install_prompt_guard` returns the function that restores every original (the
extension calls it on unload, so ``%reload_ext`` never stacks wrappers).
"""

from __future__ import annotations

import functools
import importlib.abc
import importlib.util
import sys
import threading
from typing import Any, Callable, Iterable, Mapping
from urllib.parse import urlsplit

from ..transforms.prompt import (
    Endpoints,
    PromptRedaction,
    blocked_message,
    masked_notice,
    redact_body,
    redact_json_value,
)
from ..transforms.redact import Redactor
from ._patch import replace_attribute

__all__ = ["PromptBlocked", "PromptGuard", "install_prompt_guard", "MODES"]

MODES = ("mask", "block", "off")

#: Marks our wrappers, so a second install (or someone else's wrapper around ours) is seen.
_MARK = "_ipykeyguard_prompt_guard"


class PromptBlocked(BaseException):
    """A request to a language model was refused because its prompt holds a secret.

    Derives from ``BaseException`` on purpose: the SDKs catch every ``Exception`` raised by
    their HTTP client and retry it (``anthropic`` retries a wrapped connection error twice,
    sleeping in between) or re-raise it as a bare "Connection error". A refusal must reach the
    notebook at once, as itself, and never be retried. The message names the variables, never
    a value.
    """

    def __init__(self, message: str, names: tuple[str, ...]) -> None:
        super().__init__(message)
        self.names = names


class PromptGuard:
    """Decides what happens to one outgoing request; shared by every transport patch.

    Args:
        redactor: The guard's redactor (known values and rules).
        mode: Returns the current mode (``"mask"``, ``"block"`` or ``"off"``); read per request,
            so ``%config KeyGuard.prompts = ...`` takes effect at once.
        endpoints: Returns the current :class:`Endpoints`.
        notify: Called with the one-line notice of a masked request (default: ``sys.stderr``
            as it is at call time, which in a kernel is the cell's output stream).
    """

    def __init__(
        self,
        redactor: Redactor,
        mode: Callable[[], str],
        endpoints: Callable[[], Endpoints],
        notify: Callable[[str], None] | None = None,
    ) -> None:
        self.redactor = redactor
        self._mode = mode
        self._endpoints = endpoints
        self._notify = notify or _print_stderr

    def __repr__(self) -> str:
        return f"PromptGuard(mode={self.mode!r})"

    @property
    def mode(self) -> str:
        """The current mode."""
        return self._mode()

    def applies(self, host: str | None, path: str | None, headers: Mapping[str, Any] | None = None) -> bool:
        """True when the guard is on and the request is a language-model call."""
        if self._mode() == "off":
            return False
        return self._endpoints().matches(host, path, headers)

    def body(self, body: Any, host: str | None, path: str | None) -> Any:
        """The body to send for a language-model request (after :meth:`applies`).

        Args:
            body: The encoded body (``bytes``/``str``); other types are returned unchanged.
            host: The request's host, for the notice.
            path: The request's path, for the notice (its query string is never shown).

        Returns:
            ``body`` itself when nothing was masked, else the masked body of the same type.

        Raises:
            PromptBlocked: In ``block`` mode, when the body holds a secret.
        """
        return self._settle(redact_body(body, self.redactor), host, path)

    def json_value(self, value: Any, host: str | None, path: str | None) -> Any:
        """Like :meth:`body`, for a not yet serialised ``json=`` argument."""
        new, names = redact_json_value(value, self.redactor)
        return self._settle(PromptRedaction(new, names), host, path)

    def _settle(self, outcome: PromptRedaction, host: str | None, path: str | None) -> Any:
        if not outcome.changed:
            return outcome.body
        if self._mode() == "block":
            raise PromptBlocked(blocked_message(outcome.names, host, path), outcome.names)
        self._notify(masked_notice(outcome.names, host, path))
        return outcome.body


def _print_stderr(line: str) -> None:
    print(line, file=sys.stderr)


# -- httpx / httpx2 --------------------------------------------------------------------------------

def _httpx_target(request: Any) -> tuple[str, str]:
    url = request.url
    return url.host, url.raw_path.decode("ascii", "replace")


def _httpx_rebuilt(module: Any, request: Any, new_body: bytes) -> Any:
    """A copy of ``request`` with ``new_body``, built with the library's public constructor."""
    headers = request.headers.copy()
    headers.pop("Transfer-Encoding", None)
    headers["Content-Length"] = str(len(new_body))
    return module.Request(
        request.method, request.url, headers=headers, content=new_body, extensions=request.extensions
    )


def _patch_httpx(module: Any, guard_ref: "_GuardRef") -> list[Callable[[], None]]:
    sync_send = module.Client.send
    async_send = module.AsyncClient.send

    @functools.wraps(sync_send)
    def send(self: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
        guard = guard_ref.current
        if guard is not None and isinstance(request, module.Request):
            host, path = _httpx_target(request)
            if guard.applies(host, path, request.headers):
                body = request.read()  # a streamed (iterator) body of a model call is read whole
                new = guard.body(body, host, path)
                if new is not body:
                    request = _httpx_rebuilt(module, request, new)
        return sync_send(self, request, *args, **kwargs)

    @functools.wraps(async_send)
    async def asend(self: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
        guard = guard_ref.current
        if guard is not None and isinstance(request, module.Request):
            host, path = _httpx_target(request)
            if guard.applies(host, path, request.headers):
                body = await request.aread()
                new = guard.body(body, host, path)
                if new is not body:
                    request = _httpx_rebuilt(module, request, new)
        return await async_send(self, request, *args, **kwargs)

    return [_set_class_attr(module.Client, "send", send), _set_class_attr(module.AsyncClient, "send", asend)]


# -- requests --------------------------------------------------------------------------------------

def _patch_requests(module: Any, guard_ref: "_GuardRef") -> list[Callable[[], None]]:
    original = module.Session.send

    @functools.wraps(original)
    def send(self: Any, request: Any, **kwargs: Any) -> Any:
        guard = guard_ref.current
        body = getattr(request, "body", None)
        if guard is not None and isinstance(body, (bytes, str)):
            parts = urlsplit(request.url or "")
            if guard.applies(parts.hostname, parts.path, request.headers):
                new = guard.body(body, parts.hostname, parts.path)
                if new is not body:
                    request = request.copy()
                    request.body = new
                    request.prepare_content_length(new)
        return original(self, request, **kwargs)

    return [_set_class_attr(module.Session, "send", send)]


# -- urllib3 (direct use; requests also ends here, already masked by Session.send) -----------------

def _patch_urllib3(module: Any, guard_ref: "_GuardRef") -> list[Callable[[], None]]:
    pool_class = module.connectionpool.HTTPConnectionPool
    original = pool_class.urlopen

    @functools.wraps(original)
    def urlopen(self: Any, method: str, url: str, body: Any = None, headers: Any = None,
                *args: Any, **kwargs: Any) -> Any:
        guard = guard_ref.current
        if guard is not None and isinstance(body, (bytes, str)) and guard.applies(self.host, url, headers):
            new = guard.body(body, self.host, url)
            if new is not body:
                length = str(len(new.encode("utf-8") if isinstance(new, str) else new))
                headers = {k: (length if k.lower() == "content-length" else v) for k, v in (headers or {}).items()}
                body = new
        return original(self, method, url, body, headers, *args, **kwargs)

    return [_set_class_attr(pool_class, "urlopen", urlopen)]


# -- http.client (urllib.request) ------------------------------------------------------------------

def _patch_http_client(module: Any, guard_ref: "_GuardRef") -> list[Callable[[], None]]:
    original = module.HTTPConnection.request

    @functools.wraps(original)
    def request(self: Any, method: str, url: str, body: Any = None, headers: Any = None, **kwargs: Any) -> Any:
        guard = guard_ref.current
        if headers is None:
            headers = {}
        if guard is not None and isinstance(body, (bytes, str)):
            # Through a CONNECT proxy, self.host is the proxy; the tunnel host is the server.
            host = getattr(self, "_tunnel_host", None) or self.host
            if guard.applies(host, url, headers):
                new = guard.body(body, host, url)
                if new is not body:
                    length = len(new.encode("latin-1") if isinstance(new, str) else new)
                    headers = {k: (str(length) if k.lower() == "content-length" else v) for k, v in headers.items()}
                    body = new
        return original(self, method, url, body, headers, **kwargs)

    return [_set_class_attr(module.HTTPConnection, "request", request)]


# -- aiohttp ---------------------------------------------------------------------------------------

def _patch_aiohttp(module: Any, guard_ref: "_GuardRef") -> list[Callable[[], None]]:
    session_class = module.ClientSession
    original = session_class._request

    @functools.wraps(original)
    async def _request(self: Any, method: str, str_or_url: Any, *args: Any, **kwargs: Any) -> Any:
        guard = guard_ref.current
        data, value = kwargs.get("data"), kwargs.get("json")
        if guard is not None and (isinstance(data, (bytes, str)) or value is not None):
            try:
                url = self._build_url(str_or_url)
            except AttributeError:  # older aiohttp: no base_url support
                url = module.client.URL(str_or_url)
            headers: dict[str, Any] = {}
            for source in (getattr(self, "headers", None), kwargs.get("headers")):
                if source:
                    headers.update(source)
            host, path = url.host, url.raw_path
            if guard.applies(host, path, headers):
                if value is not None:
                    kwargs["json"] = guard.json_value(value, host, path)
                else:
                    kwargs["data"] = guard.body(data, host, path)
        return await original(self, method, str_or_url, *args, **kwargs)

    return [_set_class_attr(session_class, "_request", _request)]


# -- installation ----------------------------------------------------------------------------------

_PATCHERS: dict[str, Callable[[Any, "_GuardRef"], list[Callable[[], None]]]] = {
    "httpx": _patch_httpx,
    "httpx2": _patch_httpx,
    "requests": _patch_requests,
    "urllib3": _patch_urllib3,
    "http.client": _patch_http_client,
    "aiohttp": _patch_aiohttp,
}


class _GuardRef:
    """The guard the patches consult; ``None`` after uninstall (a stale wrapper then passes)."""

    def __init__(self, guard: PromptGuard) -> None:
        self.current: PromptGuard | None = guard


def _set_class_attr(cls: type, name: str, replacement: Callable) -> Callable[[], None]:
    """Set ``cls.name = replacement``; return the function that puts the original back.

    A method that is already one of our wrappers (a second guard in the same process) is left
    as it is, so wrappers never stack.
    """
    if getattr(getattr(cls, name, None), _MARK, False):
        return lambda: None
    setattr(replacement, _MARK, True)
    return replace_attribute(cls, name, replacement, f"{cls.__module__}.{cls.__qualname__}.{name}")


class _PatchOnImport(importlib.abc.MetaPathFinder):
    """Patches the named modules right after their first import (their loader is wrapped once).

    Only the listed top-level modules are touched; every other import is declined at once.
    """

    def __init__(self, pending: Mapping[str, Callable[[Any], None]]) -> None:
        self._pending = dict(pending)
        self._busy: set[str] = set()
        self._lock = threading.Lock()

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname not in self._pending or fullname in self._busy:
            return None
        self._busy.add(fullname)
        try:
            spec = importlib.util.find_spec(fullname)  # the other finders (we are busy for it)
        finally:
            self._busy.discard(fullname)
        loader = getattr(spec, "loader", None) if spec is not None else None
        if loader is None or not hasattr(loader, "exec_module"):
            return None
        on_import = self._pending[fullname]
        spec.loader = _PatchingLoader(loader, on_import, spec)
        return spec

    def forget(self, fullname: str) -> None:
        self._pending.pop(fullname, None)


class _PatchingLoader(importlib.abc.Loader):
    """Runs the real loader, then the patch; afterwards the module shows its real loader."""

    def __init__(self, loader: Any, on_import: Callable[[Any], None], spec: Any) -> None:
        self._loader = loader
        self._on_import = on_import
        self._spec = spec

    def create_module(self, spec: Any) -> Any:
        return self._loader.create_module(spec)

    def exec_module(self, module: Any) -> None:
        self._spec.loader = self._loader
        module.__loader__ = self._loader
        self._loader.exec_module(module)
        self._on_import(module)

    def __getattr__(self, name: str) -> Any:  # get_resource_reader, is_package, ...
        return getattr(self._loader, name)


def install_prompt_guard(guard: PromptGuard, modules: Iterable[str] = tuple(_PATCHERS)) -> Callable[[], None]:
    """Patch every HTTP library in ``modules`` (now, or when it is first imported).

    Args:
        guard: Decides what each request becomes.
        modules: Which libraries to cover (default: all of ``httpx``, ``httpx2``,
            ``requests``, ``urllib3``, ``http.client``, ``aiohttp``).

    Returns:
        A function that restores every original and stops watching imports; calling it twice
        is harmless.
    """
    ref = _GuardRef(guard)
    undos: list[Callable[[], None]] = []
    lock = threading.Lock()

    def patch(name: str, module: Any) -> None:
        with lock:
            if finder is not None:
                finder.forget(name)
            if ref.current is None:
                return
            try:
                undos.extend(_PATCHERS[name](module, ref))
            except AttributeError as exc:  # a version without the hook point: say so, go on
                print(f"ipykeyguard: warning: prompts sent through {name} are not checked "
                      f"({type(exc).__name__}: {exc})", file=sys.stderr)

    finder: _PatchOnImport | None = None
    pending: dict[str, Callable[[Any], None]] = {}
    for name in modules:
        if name in sys.modules:
            patch(name, sys.modules[name])
        else:
            pending[name] = functools.partial(patch, name)
    if pending:
        finder = _PatchOnImport(pending)
        sys.meta_path.insert(0, finder)

    def uninstall() -> None:
        with lock:
            ref.current = None
            if finder is not None and finder in sys.meta_path:
                sys.meta_path.remove(finder)
            while undos:
                undos.pop()()

    return uninstall
