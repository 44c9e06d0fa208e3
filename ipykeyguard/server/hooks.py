"""Jupyter Server extension: every notebook saved through Jupyter reaches disk without keys.

Loaded by ``jpserver_extensions`` (the wheel ships
``etc/jupyter/jupyter_server_config.d/ipykeyguard.json``, which enables it on install), it
registers two hooks on the server's contents manager:

* a **pre-save hook**, run before every save of a model: notebook models (``content`` is a
  dict on ``PUT`` and a ``NotebookNode`` on ``POST copy_from``) and ``file`` models whose path
  ends in ``.ipynb`` (``text`` or ``base64``, which is how JupyterLab uploads files) are
  cleaned in place: keys in code cells move into the store (by default the ``.env`` beside the
  notebook) and the code reads ``os.environ["NAME"]``; every other occurrence is masked. Save,
  autosave, copy and non-chunked upload all go through it, and the first checkpoint is a copy
  of the saved file, so it comes out clean too.
* a **post-save hook**, which re-reads every ``.ipynb`` file just written and cleans it on
  disk when it still holds a key. This catches chunked uploads (the server runs pre-save hooks
  on the first chunk only, when the JSON is incomplete) and anything another pre-save hook put
  back.

Jupyter Server lets a save through when a hook raises anything but ``tornado.web.HTTPError``
(fail-open), so every internal error is turned into an ``HTTPError`` that says why and how to
disable the extension: a save is refused rather than written with a key in it.

Options (``jupyter_server_config.py`` or ``--KeyGuardServer.<name>=...``)::

    c.KeyGuardServer.enabled = True
    c.KeyGuardServer.store = "dotenv"          # dotenv | keyring | none
    c.KeyGuardServer.dotenv_path = ""          # one .env for all notebooks (default: beside each)
    c.KeyGuardServer.code_keys = "move"        # move | mask
    c.KeyGuardServer.min_confidence = "likely" # possible | likely | certain
"""

from __future__ import annotations

import base64
import binascii
import inspect
import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any, Mapping

from tornado.web import HTTPError
from traitlets import Bool
from traitlets.config import LoggingConfigurable

from .._traits import QuietEnum, QuietUnicode, confidence_trait
from ..engine.config import Config, ConfigError, find_pyproject, load_config
from ..transforms.notebook import NotebookError, detect_indent, dump_notebook, iter_leaves, parse_notebook
from ..storage.store import StoreError, atomic_write_bytes, open_store

__all__ = ["KeyGuardServer", "SaveRefused", "DISABLE_HINT"]

#: Appended to every refusal, so a user who cannot save knows the way out.
DISABLE_HINT = (
    "The notebook was not saved; your work is still in the browser. To save without "
    "ipykeyguard, run 'jupyter server extension disable ipykeyguard' and restart Jupyter, "
    "or set c.KeyGuardServer.enabled = False."
)

#: How many saved-but-not-yet-re-read notebooks the guard remembers (see post_save_hook).
_VERIFIED_LIMIT = 32

#: Errors whose messages are ours and carry no plaintext (names, paths, reasons only).
_EXPLAINED_ERRORS = (NotebookError, StoreError, ConfigError, OSError, ImportError)


class SaveRefused(Exception):
    """A save must not go through; the message says why (never a secret)."""


class KeyGuardServer(LoggingConfigurable):
    """The save guard of a running Jupyter Server: options plus the two contents hooks."""

    enabled = Bool(True, help="Clean notebooks on save. False registers no hook.").tag(config=True)
    store = QuietEnum(
        ("dotenv", "keyring", "none"),
        default_value="dotenv",
        help="Where keys moved out of code cells are kept: 'dotenv' (the .env beside the notebook, "
        "mode 0600), 'keyring' (the OS keyring) or 'none' (not kept: the code still reads "
        "os.environ, set the variable yourself).",
    ).tag(config=True)
    dotenv_path = QuietUnicode(
        "",
        help="With store='dotenv': one .env file used for every notebook instead of the .env "
        "beside each notebook. Relative paths are relative to the server's root_dir.",
    ).tag(config=True)
    keyring_service = QuietUnicode("ipykeyguard", help="With store='keyring': the keyring service name.").tag(
        config=True
    )
    code_keys = QuietEnum(
        ("move", "mask"),
        default_value="move",
        help="Keys in code cells: 'move' them into the store and read them back with "
        "os.environ['NAME'] (the code keeps working), or 'mask' them like any other text.",
    ).tag(config=True)
    min_confidence = confidence_trait("Only findings at least this sure are cleaned.")

    def __init__(self, root_dir: str | os.PathLike[str] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.root_dir = Path(root_dir).resolve() if root_dir is not None else Path.cwd().resolve()
        # A save of one notebook and the store write that goes with it happen together; two
        # concurrent saves into the same .env are serialised by the store itself.
        self._config_lock = threading.Lock()
        self._configs: dict[tuple[str, int], Config] = {}
        # What the pre-save hook let through, by file, so that the post-save re-read can skip
        # the scan when the file holds exactly those texts. Bounded: a save that fails between
        # the two hooks leaves an entry behind, which only ever causes a full re-scan.
        self._verified: OrderedDict[str, list[str]] = OrderedDict()
        self._verified_lock = threading.Lock()
        # Chunked .ipynb uploads in progress: os path -> the bytes of the file they replace
        # (None: there was none), and the refusal to answer when the finished upload failed.
        self._uploads: dict[str, bytes | None] = {}
        self._refused_uploads: dict[str, HTTPError] = {}
        self._uploads_lock = threading.Lock()

    # -- registration -----------------------------------------------------------------------
    def register(self, contents_manager: Any) -> None:
        """Register the pre-save and post-save hooks on ``contents_manager``, and wrap its
        ``save`` for chunked ``.ipynb`` uploads (see :meth:`_wrap_save`)."""
        contents_manager.register_pre_save_hook(self.pre_save_hook)
        contents_manager.register_post_save_hook(self.post_save_hook)
        self._wrap_save(contents_manager)

    # -- chunked uploads ----------------------------------------------------------------------
    def _wrap_save(self, contents_manager: Any) -> None:
        """Make a chunked ``.ipynb`` upload that cannot be cleaned fail like a one-piece one.

        Jupyter writes chunk 1 over the existing file and runs the post-save hooks only after
        the last chunk, turning any error there into a 500. So the file being replaced is kept
        in memory when chunk 1 arrives; if the finished upload cannot be cleaned (broken JSON,
        nbformat 1, not UTF-8, a store failure), the old file is put back (or the new, possibly
        leaky one removed when there was none) and the reply is this guard's own refusal (400
        for content that is not a readable notebook), not a 500.
        """
        original = contents_manager.save
        get_os_path = getattr(contents_manager, "_get_os_path", None)
        if get_os_path is None or getattr(original, "_ipykeyguard_wrapped", False):
            return
        guard = self

        def before(model: Any, path: str) -> str | None:
            if not (isinstance(model, Mapping) and model.get("chunk") is not None and str(path).endswith(".ipynb")):
                return None
            os_path = str(get_os_path(str(path).strip("/")))
            if model.get("chunk") == 1:
                try:
                    previous = Path(os_path).read_bytes() if not os.path.islink(os_path) else None
                except OSError:
                    previous = None
                with guard._uploads_lock:
                    guard._uploads[os_path] = previous
            return os_path

        def failed(os_path: str | None, exc: BaseException) -> BaseException:
            if os_path is None:
                return exc
            with guard._uploads_lock:
                refusal = guard._refused_uploads.pop(os_path, None)
            return refusal if refusal is not None else exc

        def finished(model: Any, os_path: str | None) -> None:
            if os_path is not None and isinstance(model, Mapping) and model.get("chunk") == -1:
                with guard._uploads_lock:
                    guard._uploads.pop(os_path, None)
                    guard._refused_uploads.pop(os_path, None)

        if inspect.iscoroutinefunction(original):
            async def save(model: Any, path: str = "") -> Any:
                os_path = before(model, path)
                try:
                    result = await original(model, path)
                except Exception as exc:
                    raise failed(os_path, exc) from None
                finished(model, os_path)
                return result
        else:
            def save(model: Any, path: str = "") -> Any:  # type: ignore[misc]
                os_path = before(model, path)
                try:
                    result = original(model, path)
                except Exception as exc:
                    raise failed(os_path, exc) from None
                finished(model, os_path)
                return result

        save._ipykeyguard_wrapped = True  # type: ignore[attr-defined]
        contents_manager.save = save

    # -- hooks (Jupyter Server calls them with keyword arguments) ---------------------------
    def pre_save_hook(self, model: dict, path: str, contents_manager: Any = None, **kwargs: Any) -> None:
        """Clean ``model`` in place before it is written.

        Raises:
            HTTPError: cleaning failed; the save is refused (status 400 for content that cannot
                be read as a notebook, 500 otherwise).
        """
        if not self.enabled:
            return
        try:
            self._clean_model(model, path, contents_manager)
        except HTTPError:
            raise
        except Exception as exc:  # a hook that raises anything else lets the save through
            raise self._refusal(path, exc) from None

    def post_save_hook(self, model: dict, os_path: str, contents_manager: Any = None, **kwargs: Any) -> None:
        """Re-read a saved ``.ipynb`` file and clean it on disk if it still holds a key.

        A file that cannot be cleaned is removed (it came from an upload whose original is
        still on the user's machine, or from a save whose content the browser still holds).

        Raises:
            HTTPError: the file held keys and could not be cleaned.
        """
        if not self.enabled or not str(os_path).endswith(".ipynb"):
            return
        try:
            self._clean_file_on_disk(Path(os_path), self._display_path(model, os_path))
        except Exception as exc:
            refusal = exc if isinstance(exc, HTTPError) else self._refusal(self._display_path(model, os_path), exc)
            with self._uploads_lock:
                uploading = str(os_path) in self._uploads
                previous = self._uploads.pop(str(os_path), None)
                if uploading:
                    self._refused_uploads[str(os_path)] = refusal  # answered by the save wrapper
            if previous is not None:
                self._restore(Path(os_path), previous)
            else:
                self._remove_unclean_file(Path(os_path))
            raise refusal from None

    # -- the work ---------------------------------------------------------------------------
    def _clean_model(self, model: dict, path: str, contents_manager: Any) -> None:
        kind = model.get("type")
        if kind == "notebook":
            content = model.get("content")
            if content is None:
                return
            if not isinstance(content, Mapping):
                raise SaveRefused("the notebook content is not a JSON object")
            cleaned = self._clean_notebook(dict(content), path, contents_manager, remember=True)
            if cleaned is not None:
                model["content"] = cleaned
            return
        if kind != "file" or not path.endswith(".ipynb") or model.get("content") is None:
            return
        if model.get("chunk") is not None:
            # Chunk 1 of a chunked upload: the JSON is incomplete here. The post-save hook
            # cleans the finished file after the last chunk.
            return
        fmt = model.get("format") or "text"
        if fmt == "base64":
            try:
                raw = base64.b64decode(model["content"].encode("ascii"), validate=False)
            except (binascii.Error, UnicodeEncodeError, AttributeError):
                raise SaveRefused("the uploaded file is not valid base64") from None
        elif fmt == "text":
            if not isinstance(model["content"], str):
                raise SaveRefused("the file content is not text")
            raw = model["content"].encode("utf-8", "surrogatepass")
        else:
            raise SaveRefused(f"unknown file format {fmt!r}")
        new_raw = self._clean_notebook_bytes(raw, path, contents_manager, remember=True)
        if new_raw is None:
            return
        model["content"] = base64.b64encode(new_raw).decode("ascii") if fmt == "base64" else new_raw.decode("utf-8")

    def _clean_notebook_bytes(
        self,
        raw: bytes,
        path: str,
        contents_manager: Any,
        *,
        notebook_dir: Path | None = None,
        remember: bool = False,
        nb: dict | None = None,
    ) -> bytes | None:
        """The cleaned file bytes, or ``None`` when nothing had to change."""
        if nb is None:
            nb = parse_notebook(raw, path, old_formats=True)
        cleaned = self._clean_notebook(nb, path, contents_manager, notebook_dir=notebook_dir, remember=remember)
        if cleaned is None:
            return None
        return dump_notebook(cleaned, detect_indent(raw)).encode("utf-8")

    def _clean_file_on_disk(self, os_path: Path, display: str) -> None:
        try:
            raw = os_path.read_bytes()
        except FileNotFoundError:
            return
        nb = parse_notebook(raw, display, old_formats=True)
        with self._verified_lock:
            expected = self._verified.pop(str(os_path), None)
        if expected is not None and _leaf_texts(nb) == expected:
            return  # exactly the texts the pre-save hook cleaned: no second scan
        new_raw = self._clean_notebook_bytes(raw, display, None, notebook_dir=os_path.parent, nb=nb)
        if new_raw is not None:
            atomic_write_bytes(os_path, new_raw)

    def _clean_notebook(
        self,
        nb: dict,
        path: str,
        contents_manager: Any,
        *,
        notebook_dir: Path | None = None,
        remember: bool = False,
    ) -> dict | None:
        """Clean one notebook; store moved keys; return the new notebook or ``None`` if unchanged.

        With ``remember``, the texts of the result are kept for the post-save hook of this file.
        """
        from ..storage.ledger import record_clean
        from ..transforms.clean import clean_and_store

        if notebook_dir is None:
            notebook_dir = self._notebook_dir(path, contents_manager)
        config = self._config_for(notebook_dir)
        if config.is_excluded(notebook_dir / Path(path).name):
            return None
        move = self.code_keys == "move"
        store = self._open_store(notebook_dir) if move else open_store("none")
        cleaned, report = clean_and_store(
            nb, store, config=config, move_code_keys=move, min_confidence=self.min_confidence
        )
        record_clean("save", notebook_dir / Path(path).name, report)  # the exposure ledger; never raises
        if remember:
            self._remember_verified(notebook_dir / Path(path).name, cleaned)
        if not report.changed:
            return None
        stored_in = store.description if store.kind != "none" else None
        self.log.info("ipykeyguard: cleaned %s: %s", path, report.summary(stored_in=stored_in))
        return cleaned

    def _remember_verified(self, os_path: Path, nb: dict) -> None:
        with self._verified_lock:
            self._verified[str(os_path)] = _leaf_texts(nb)
            self._verified.move_to_end(str(os_path))
            while len(self._verified) > _VERIFIED_LIMIT:
                self._verified.popitem(last=False)

    def _open_store(self, notebook_dir: Path) -> Any:
        if self.store == "dotenv":
            if self.dotenv_path:
                target = Path(self.dotenv_path)
                return open_store("dotenv", path=target if target.is_absolute() else self.root_dir / target)
            return open_store("dotenv", directory=notebook_dir)
        if self.store == "keyring":
            return open_store("keyring", service=self.keyring_service)
        return open_store("none")

    def _notebook_dir(self, path: str, contents_manager: Any) -> Path:
        """The directory on disk that holds ``path`` (for the ``.env`` beside it)."""
        get_os_path = getattr(contents_manager, "_get_os_path", None)
        if get_os_path is not None:
            return Path(get_os_path(path)).parent
        if self.store == "dotenv" and not self.dotenv_path and self.code_keys == "move":
            raise SaveRefused(
                "this contents manager stores no files on disk, so there is no folder for a .env; "
                "set c.KeyGuardServer.store = 'keyring' or c.KeyGuardServer.dotenv_path"
            )
        return (self.root_dir / path).parent

    def _config_for(self, notebook_dir: Path) -> Config:
        """``[tool.ipykeyguard]`` from the nearest pyproject.toml, re-read when it changes."""
        pyproject = find_pyproject(notebook_dir) if notebook_dir.is_dir() else None
        if pyproject is None:
            return Config()
        key = (str(pyproject), pyproject.stat().st_mtime_ns)
        with self._config_lock:
            config = self._configs.get(key)
            if config is None:
                config = self._configs[key] = load_config(pyproject=pyproject)
            return config

    # -- failure ----------------------------------------------------------------------------
    def _refusal(self, path: str, exc: BaseException) -> HTTPError:
        """An ``HTTPError`` that refuses the save, says why (no content) and how to disable us."""
        if isinstance(exc, NotebookError):
            status, why = 400, f"it is not a notebook ipykeyguard can read ({exc})"
        elif isinstance(exc, SaveRefused):
            status, why = 400, str(exc)
        elif isinstance(exc, _EXPLAINED_ERRORS):
            status, why = 500, f"{type(exc).__name__}: {exc}"
        else:
            # Messages of foreign exceptions may quote content; log the type only.
            status, why = 500, f"internal error ({type(exc).__name__})"
        message = f"ipykeyguard refused to save {path}: {why}. {DISABLE_HINT}"
        self.log.error("%s", message)
        # Jupyter Server's API handlers put log_message, unformatted, in the JSON reply's
        # "message"; tornado formats it with %-args when logging, so a '%' in a path is doubled.
        # The reason phrase is the HTTP status line, so it stays one short line.
        return HTTPError(status, message.replace("%", "%%"), reason="ipykeyguard refused the save")

    def _restore(self, os_path: Path, previous: bytes) -> None:
        """Put back the file a failed chunked upload replaced (atomically, mode 0600 if new)."""
        try:
            atomic_write_bytes(os_path, previous)
            self.log.error("ipykeyguard: restored %s, which a refused chunked upload had replaced", os_path)
        except OSError as exc:
            self.log.error("ipykeyguard: could not restore %s: %s", os_path, exc.strerror or type(exc).__name__)
            self._remove_unclean_file(os_path)

    def _remove_unclean_file(self, os_path: Path) -> None:
        try:
            os_path.unlink()
            self.log.error("ipykeyguard: removed %s, which still held a key after the save", os_path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            self.log.error("ipykeyguard: could not remove %s, which may hold a key: %s", os_path, exc)

    @staticmethod
    def _display_path(model: Mapping | None, os_path: Any) -> str:
        if isinstance(model, Mapping) and isinstance(model.get("path"), str):
            return model["path"]
        return str(os_path)


def _leaf_texts(nb: dict) -> list[str]:
    """Every text the scanner reads in ``nb``, sorted: each is scanned on its own, and nbformat
    writes keys in sorted order, so the walk order of a saved file differs from the model's."""
    return sorted(leaf.text for leaf in iter_leaves(nb))


def _load_jupyter_server_extension(serverapp: Any) -> None:
    """Called by Jupyter Server at start-up: read ``c.KeyGuardServer`` and register the hooks."""
    guard = KeyGuardServer(root_dir=getattr(serverapp, "root_dir", None), parent=serverapp)
    if getattr(serverapp, "web_app", None) is not None:
        from .secrets import register_secrets_api  # the JupyterLab secrets panel's API

        register_secrets_api(serverapp, guard)
    if not guard.enabled:
        serverapp.log.info("ipykeyguard: disabled by c.KeyGuardServer.enabled; notebooks are saved as they are")
        return
    guard.register(serverapp.contents_manager)
    serverapp.log.info(
        "ipykeyguard: cleaning notebooks on save (code keys: %s, store: %s, min confidence: %s)",
        guard.code_keys,
        guard.store,
        guard.min_confidence,
    )
