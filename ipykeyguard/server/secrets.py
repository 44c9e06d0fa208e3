"""The secrets panel's REST API: names in a notebook's store, values in once, never out.

Registered by the server extension under ``{base_url}/ipykeyguard/secrets``::

    GET    /ipykeyguard/secrets?path=<notebook>         -> {"store", "kind", "secrets": [{"name", "source", "updated"}]}
    PUT    /ipykeyguard/secrets/<NAME>?path=<notebook>  body {"value": "..."} -> {"name", "source", "updated"}
    DELETE /ipykeyguard/secrets/<NAME>?path=<notebook>  -> 204
    POST   /ipykeyguard/paste?path=<notebook>           body {"text": "...", "store": false} -> {"names": [...]}
                                                        body {"text": "...", "store": true}  -> {"names", "text", "import_os"}

``paste`` serves the paste guard for code pasted into a cell: without ``store`` it answers which
names the keys in the text would be stored under (nothing is written); with it, the keys move into
the notebook's store exactly as the save hook moves them, and the reply is the text rewritten to
read them with ``os.environ`` (the keys are not in it).

The store is the one the save hook uses for that notebook (``c.KeyGuardServer.store``: by default
the ``.env`` beside it). No reply, log line or error message carries a value: GET lists names only
and PUT answers with the name. The handlers are Jupyter ``APIHandler``s behind
``@tornado.web.authenticated`` and ``@authorized`` (resource ``contents``: storing a secret writes
a file), so the server's token, cookie, XSRF and authorizer rules apply as to every Jupyter API.

Paths are API paths relative to the server's root. A notebook path that leaves the root (``..``,
an absolute path, or a symlinked folder or ``.env`` whose target is outside the root) is refused
with 403, as is a hidden folder unless the contents manager allows hidden files.
"""

from __future__ import annotations

import json
import os
from pathlib import Path, PurePosixPath
from typing import Any

from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join
from tornado import web

from ..storage.origins import forget_origin, origins_of, record_origin
from ..storage.store import StoreError, is_valid_name

__all__ = ["register_secrets_api", "SecretsHandler", "SecretHandler", "PasteHandler", "MAX_VALUE_CHARS", "MAX_PASTE_CHARS"]

#: Large enough for a PEM private key or a service-account JSON, small enough to refuse junk.
MAX_VALUE_CHARS = 64 * 1024
#: The longest pasted text the paste guard looks at (a long notebook cell's worth).
MAX_PASTE_CHARS = 1024 * 1024

_NAME_PATTERN = r"[A-Za-z_][A-Za-z0-9_]{0,255}"


class _StoreHandler(APIHandler):
    """Shared: find the store of the notebook named by ``?path=``, refusing paths outside the root."""

    auth_resource = "contents"

    def initialize(self, guard: Any) -> None:
        self.guard = guard

    def _notebook_dir(self) -> Path:
        api_path = self.get_query_argument("path", "")
        # API paths are relative to the root ("a/b.ipynb"; a leading "/" is tolerated).
        pure = PurePosixPath(api_path.strip("/"))
        if ".." in pure.parts or "\x00" in api_path or "\\" in api_path:
            raise web.HTTPError(403, "path outside the server root")
        cm = self.contents_manager
        if not getattr(cm, "allow_hidden", False) and any(part.startswith(".") for part in pure.parts[:-1]):
            raise web.HTTPError(403, "hidden folder")
        root = Path(os.path.realpath(self.guard.root_dir))
        directory = Path(os.path.realpath(root.joinpath(*pure.parts[:-1])))
        if not _inside(directory, root):
            raise web.HTTPError(403, "path outside the server root")
        if not directory.is_dir():
            raise web.HTTPError(404, "no such folder")
        return directory

    def _store(self) -> Any:
        directory = self._notebook_dir()
        store = self.guard._open_store(directory)
        path = getattr(store, "path", None)
        if path is not None and not self.guard.dotenv_path:
            # The .env beside the notebook may be a symlink: its target must be inside the root too.
            root = Path(os.path.realpath(self.guard.root_dir))
            if not _inside(Path(os.path.realpath(path)), root):
                raise web.HTTPError(403, ".env points outside the server root")
        if store.kind == "none":
            raise web.HTTPError(409, "the server keeps no store (c.KeyGuardServer.store = 'none')")
        return store

    def _label(self, store: Any) -> str:
        path = getattr(store, "path", None)
        if path is None:
            return store.description
        root = Path(os.path.realpath(self.guard.root_dir))
        real = Path(os.path.realpath(path))
        return real.relative_to(root).as_posix() if _inside(real, root) else str(real)

    @staticmethod
    def _entry(name: str, origins: dict) -> dict:
        origin = origins.get(name, {})
        return {"name": name, "source": origin.get("source", ""), "updated": origin.get("updated") or None}

    def _fail(self, exc: StoreError) -> None:
        # StoreError messages name the store and the variable, never a value.
        raise web.HTTPError(500, f"ipykeyguard: {exc}") from None


class SecretsHandler(_StoreHandler):
    """``GET``: the names in the notebook's store, where they came from and when."""

    @web.authenticated
    @authorized
    def get(self) -> None:
        store = self._store()
        try:
            names = sorted(store.items())  # values are read by the store, and dropped here
        except StoreError as exc:
            self._fail(exc)
        origins = origins_of(store)
        self.finish(json.dumps({
            "store": self._label(store),
            "kind": store.kind,
            "secrets": [self._entry(name, origins) for name in names],
        }))


class SecretHandler(_StoreHandler):
    """``PUT``: store a value under a name (added or replaced); ``DELETE``: remove the name."""

    @web.authenticated
    @authorized
    def put(self, name: str) -> None:
        if not is_valid_name(name):
            raise web.HTTPError(400, "a name is letters, digits and _ and does not start with a digit")
        try:
            body = json.loads(self.request.body or b"{}")
        except ValueError:
            raise web.HTTPError(400, "the body is not JSON") from None
        value = body.get("value") if isinstance(body, dict) else None
        if not isinstance(value, str) or not value:
            raise web.HTTPError(400, "the body must be {\"value\": \"...\"} with a non-empty value")
        if len(value) > MAX_VALUE_CHARS:
            raise web.HTTPError(413, f"the value is longer than {MAX_VALUE_CHARS} characters")
        store = self._store()
        try:
            store.put({name: value})
        except StoreError as exc:
            self._fail(exc)
        finally:
            del value, body
        record_origin(store, [name], "added in the secrets panel")
        self.log.info("ipykeyguard: stored %s in %s (secrets panel)", name, self._label(store))
        self.finish(json.dumps(self._entry(name, origins_of(store))))

    @web.authenticated
    @authorized
    def delete(self, name: str) -> None:
        if not is_valid_name(name):
            raise web.HTTPError(400, "not a valid name")
        store = self._store()
        try:
            store.delete(name)
        except StoreError as exc:
            self._fail(exc)
        forget_origin(store, name)
        self.log.info("ipykeyguard: deleted %s from %s (secrets panel)", name, self._label(store))
        self.set_status(204)
        self.finish()


class PasteHandler(_StoreHandler):
    """``POST``: the keys in code pasted into a cell of the notebook ``?path=`` names (names only),
    or, with ``"store": true``, the code with those keys moved into the notebook's store."""

    @web.authenticated
    @authorized
    def post(self) -> None:
        from ..engine.findings import fingerprint
        from ..transforms.clean import clean_and_store, clean_notebook

        try:
            body = json.loads(self.request.body or b"{}")
        except ValueError:
            raise web.HTTPError(400, "the body is not JSON") from None
        text = body.get("text") if isinstance(body, dict) else None
        if not isinstance(text, str):
            raise web.HTTPError(400, "the body must be {\"text\": \"...\"}")
        if len(text) > MAX_PASTE_CHARS:
            raise web.HTTPError(413, f"the text is longer than {MAX_PASTE_CHARS} characters")
        store_now = body.get("store") is True
        directory = self._notebook_dir()
        store = self._store()
        guard = self.guard
        config = guard._config_for(directory)
        # The pasted code as the one code cell of a notebook: the save hook's own path.
        nb = {"cells": [{"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [], "source": text}],
              "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
        try:
            if not store_now:
                taken = {name: fingerprint(value) for name, value in store.items().items()}
                _cleaned, report = clean_notebook(nb, config=config, taken=taken, min_confidence=guard.min_confidence)
                self.finish(json.dumps({"names": sorted(report.moved)}))
                return
            cleaned, report = clean_and_store(nb, store, config=config, min_confidence=guard.min_confidence)
        except StoreError as exc:
            self._fail(exc)
        finally:
            del text, body
        names = sorted(report.moved)
        new_text = cleaned["cells"][0]["source"]
        # The rewriter puts "import os" first in a cell that lacks it; a paste lands at the
        # cursor, maybe mid-line, so that line is handed back apart: the page adds it at the
        # top of the cell when the cell does not import os already.
        needs_os = new_text.startswith(_IMPORT_OS) and not nb["cells"][0]["source"].startswith(_IMPORT_OS)
        if needs_os:
            new_text = new_text[len(_IMPORT_OS):]
        if names:
            record_origin(store, names, "pasted into a cell")
            self.log.info("ipykeyguard: stored %s in %s (pasted into a cell)", ", ".join(names), self._label(store))
        self.finish(json.dumps({"names": names, "text": new_text, "import_os": needs_os}))


_IMPORT_OS = "import os\n"


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def register_secrets_api(serverapp: Any, guard: Any) -> None:
    """Add the secrets handlers to the server's web application."""
    base = serverapp.web_app.settings.get("base_url", "/")
    serverapp.web_app.add_handlers(
        ".*$",
        [
            (url_path_join(base, "ipykeyguard", "secrets"), SecretsHandler, {"guard": guard}),
            (url_path_join(base, "ipykeyguard", "secrets", f"({_NAME_PATTERN})"), SecretHandler, {"guard": guard}),
            (url_path_join(base, "ipykeyguard", "paste"), PasteHandler, {"guard": guard}),
        ],
    )
