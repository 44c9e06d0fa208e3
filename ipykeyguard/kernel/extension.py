"""The IPython glue: ``%load_ext ipykeyguard`` moves pasted keys out of cells and history.

What the user sees (kernel): they run ``client = OpenAI(api_key="sk-proj-...")``; the cell runs as
``client = OpenAI(api_key=os.environ["OPENAI_API_KEY"])``, the key is put in the secret store and
in ``os.environ``, one line says ``ipykeyguard: moved 1 key (OPENAI_API_KEY) to .env``, and the
notebook cell's text is replaced by the rewritten one. A key the store already holds is not
written again; the line then says ``ipykeyguard: OPENAI_API_KEY is already in .env; the cell
now reads it from os.environ``. ``In``/``_ih``/``_i*``, ``%history``,
``history.sqlite`` (both input columns, and output history when ``db_log_output`` is on), the
kernel's ``history_request`` reply and the ``execute_input`` broadcast hold only rewritten text.

Design, and why (measured with IPython 9.18 / ipykernel 7.4; see JUPYTER-APIS.md §1, §2, §7):

* **The input transformer is pure.** ipykernel transforms a synchronous cell twice (once in
  ``do_execute``, again in ``run_cell``) and cleanup transformers also run on ``is_complete``.
  Ours is the *first* cleanup transformer, so it sees exactly the text the user typed (magics,
  ``!cmd`` and ``%%bash`` bodies included; ``rewrite_source`` handles IPython syntax), and it
  only returns text: the rewritten cell (``rewrite``), the cell unchanged (``warn``), or a
  one-line ``raise`` (``block``, or an internal error: fail closed). It carries
  ``has_side_effects = True`` so ``is_complete`` skips it. The rewrite of one raw text is cached
  (``rewrite_source`` is pure), so the two transforms, the ``execute_input`` publication, the
  history wrapper and the side effects of one cell cost one rewrite; the cache is emptied
  after every execution, so a later change of the store or of the environment is seen.
* **The side effects happen once per execution, in a ``run_cell_async`` wrapper.** Every
  execution, silent or not, passes through ``shell.run_cell_async`` exactly once, with the raw
  cell (IPython 9.18: ``run_cell`` -> ``_run_cell`` -> ``self.run_cell_async``; ipykernel 7.4's
  ``do_execute`` calls ``shell.run_cell_async`` itself for top-level ``await`` cells), after
  the transforms and before compiling; ``is_complete`` never reaches it. The events do not
  fit: ``pre_run_cell`` is not fired for silent executions (frontends and extensions send
  ``silent=True`` requests), and ``pre_execute``, fired for every execution, carries no
  argument, so it cannot tell which cell is running. The wrapper (installed on the instance,
  with the original's signature, which ipykernel inspects) puts the moved keys in the store
  (all or nothing), then in ``os.environ`` and the output redactor, and prints the notice, so
  the values are in ``os.environ`` before the rewritten code runs.
* **A store failure runs nothing.** The wrapper then passes IPython a one-line cell that
  raises :class:`KeyGuardRejected` (one line of message, no guard frames) as the transformed
  cell, so nothing of the user's cell runs, whether it compiles or not. Nothing was
  half-moved: the store's ``put`` is all or nothing and ``os.environ`` is only touched after it
  succeeded. (No AST transformer is involved: while any is registered IPython runs
  ``ast.fix_missing_locations`` over every cell, the main cost on a 200-line cell.)
* **``import os``.** When an earlier cell bound ``os`` to the os module in the user's
  namespace, the rewrite inserts no ``import os`` line (``rewrite_source(os_imported=True)``):
  the text that runs then has the user's line numbers, which matters for a cell that raises,
  whose editor keeps the original text. Otherwise the line is inserted, so the rewritten cell
  runs on its own in a fresh kernel without ipykeyguard.
* **The allow-list** (``c.KeyGuard.allow``, ``%keyguard allow``) reaches the rewriter and the
  redactor: the redactor is built once and shared with the output guard, so it scans with the
  guard's *current* scanner, and a known value whose fingerprint is allowed is dropped from it.
* **History** is written from the local ``raw_cell`` (``pre_run_cell`` cannot change it), so
  ``history_manager.store_inputs`` and ``store_output`` are wrapped on the instance; the
  ``execute_input`` broadcast is published before any transformer runs, so
  ``kernel._publish_execute_input`` is overridden on the instance. Both send the rewritten text
  (or, in ``warn``/``block`` mode, the text with keys masked), then pass it through the redactor
  so values already known (moved earlier, loaded from the store) are masked too.
* **The frontend** gets ``set_next_input(rewritten, replace=True)`` from ``post_run_cell``, in a
  kernel only (in the terminal it would pre-fill the next prompt), and only when the cell
  changed. JupyterLab and Notebook 7 apply it only to a cell that *succeeded*: a cell that
  raises keeps the key in the browser's editor (the key is still moved, history still clean,
  and the server's pre-save hook cleans the saved file). The payload manager keeps one
  ``set_next_input`` per reply, so when the cell already queued one (``%load``) ours is not
  sent and a note says so. Silent executions get no replacement (they have no cell).
* **The store stays where the kernel started** (the notebook's directory): ``%cd`` changes
  the working directory but not the ``.env`` the keys go to, nor the ``[tool.ipykeyguard]``
  settings read at load time; ``%keyguard`` status and the notice show the absolute path once
  the working directory is elsewhere.
* **Load/unload are symmetric.** Everything installed is recorded, with the original it
  replaced, on the :class:`KeyGuard` kept at ``shell._ipykeyguard_state`` (``%reload_ext``
  re-imports this module, so module globals cannot hold it); unload undoes each step in reverse
  order. Loading twice is a no-op. Environment variables loaded from the store are left set on
  unload: they are the user's state and the rewritten cells need them.
"""

from __future__ import annotations

import functools
import os
import re
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Mapping
from typing import Any, Callable

from IPython.core.error import InputRejected
from IPython.core.magic import Magics, line_magic, magics_class
from traitlets import Bool, observe
from traitlets.config import Configurable

from .._traits import QuietEnum, QuietList, QuietUnicode, confidence_trait
from .egress import MODES as PROMPT_MODES, PromptGuard, install_prompt_guard
from .comm import install_channel, record_moves, set_secret
from ._patch import replace_attribute
from .output_guard import install_output_guard
from ..engine.config import Config, ConfigError, load_config
from ..engine.findings import Confidence, fingerprint
from ..transforms.prompt import Endpoints
from ..transforms.redact import Redactor, secret_like_env
from ..transforms.rewrite import Rewrite, rewrite_source
from ..engine.scan import scanner_for
from ..storage import ledger
from ..storage.store import NameTaken, SecretStore, StoreError, open_store

__all__ = [
    "KeyGuard",
    "KeyGuardRejected",
    "KeyGuardMagics",
    "load_ipython_extension",
    "unload_ipython_extension",
]

STATE_ATTR = "_ipykeyguard_state"

#: The raw-text rewrite cache holds one cell's worth of texts; this only bounds odd callers.
_CACHE_LIMIT = 64
#: ``%keyguard mask VALUE`` would put VALUE in history; this finds the argument to hide.
_MASK_MAGIC_RE = re.compile(
    r"^(\s*%keyguard\s+mask\s+)(?!\$)(\S[^\n]*)$"  # as typed
    r"|(run_line_magic\(\s*['\"]keyguard['\"]\s*,\s*['\"]\s*mask\s+)(?!\$)([^'\"\n]+)",  # as translated
    re.MULTILINE,
)


class KeyGuardRejected(InputRejected):
    """The guard refused to run a cell (block mode, a failed store, an internal error).

    IPython shows only the message (no traceback of the guard's own frames).
    """

    def _render_traceback_(self) -> list[str]:
        return [f"{type(self).__name__}: {self}"]


@dataclass
class _Outcome:
    """What the guard does with one raw cell text (computed once, cached per cell)."""

    run_source: str
    """The text IPython runs in place of the cell."""
    history_source: str
    """The text history and the ``execute_input`` broadcast get."""
    rewrite: Rewrite | None = None
    """The rewrite (``None`` when the guard is off or failed)."""
    moves: dict[str, str] = field(default_factory=dict, repr=False)
    """NAME -> value to store, in rewrite mode."""
    error: str | None = None
    """Set when the rewrite itself failed: the cell is not run."""

    @property
    def changed(self) -> bool:
        return self.rewrite is not None and self.rewrite.changed


def _destination(store: SecretStore) -> str:
    """Where moved keys went, as the notice says it: ``.env`` (relative when under cwd)."""
    path = getattr(store, "path", None)
    if path is not None:
        try:
            return os.path.relpath(path) if not os.path.relpath(path).startswith("..") else str(path)
        except ValueError:  # another drive on Windows
            return str(path)
    return {"keyring": "the keyring", "memory": "memory (this session only)"}.get(store.kind, store.description)


def _move_notice(moved: list[str], already: list[str], destination: str) -> str:
    """The one line printed after a cell's keys were handled (names only, never values)."""
    parts = []
    if moved:
        parts.append(f"moved {len(moved)} key{'s' if len(moved) != 1 else ''} ({', '.join(moved)}) to {destination}")
    if already:
        verb = "is" if len(already) == 1 else "are"
        where = "there" if moved else f"in {destination}"
        parts.append(f"{', '.join(already)} {verb} already {where}")
        if not moved:
            parts.append(f"the cell now reads {'it' if len(already) == 1 else 'them'} from os.environ")
    return "ipykeyguard: " + "; ".join(parts)


def _raise_line(message: str) -> str:
    """A one-line cell that raises :class:`KeyGuardRejected` with ``message`` (no secret in it)."""
    return (
        f"raise __import__('ipykeyguard.kernel.extension', fromlist=['_']).KeyGuardRejected({message!r})\n"
    )


class _OutputExposures:
    """Records in the exposure ledger each key the output guard masked by rule (a key printed,
    shown or raised that the kernel never moved: an exposure it prevented). Each key once per
    kernel, written on a daemon thread so that a message is never held up by SQLite."""

    def __init__(self, where: str) -> None:
        self._where = where
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, findings: list) -> None:
        with self._lock:
            new = [f for f in findings if f.fingerprint not in self._seen]
            self._seen.update(f.fingerprint for f in new)
        if new:
            threading.Thread(target=ledger.record_findings, args=("kernel output", "masked", new),
                             kwargs={"where": self._where}, daemon=True, name="ipykeyguard-ledger").start()


class KeyGuard(Configurable):
    """The kernel input guard of one shell, configured with ``c.KeyGuard.*``.

    It owns the secret store, the redactor shared with the output guard, and every hook the
    extension installs; :meth:`install` and :meth:`uninstall` are exact inverses.
    """

    mode = QuietEnum(
        ["rewrite", "warn", "block"],
        default_value="rewrite",
        help="What to do with a cell holding a key: 'rewrite' moves the key to the store and runs "
        "the cell with os.environ lookups; 'warn' runs it unchanged and warns; 'block' refuses "
        "to run it.",
    ).tag(config=True)
    store = QuietEnum(
        ["dotenv", "keyring", "memory"],
        default_value="dotenv",
        help="Where moved keys are kept: a .env file, the OS keyring, or memory (this session only).",
    ).tag(config=True)
    dotenv_path = QuietUnicode(
        "",
        help="The .env file of the 'dotenv' store; relative paths are resolved against the "
        "kernel's working directory when the extension loads. Default: .env in that directory.",
    ).tag(config=True)
    min_confidence = confidence_trait(
        "Rewrite (or block) keys found with at least this confidence; weaker findings are only warned about."
    )
    allow = QuietList(
        QuietUnicode(),
        help="SHA-256 fingerprints of values that are not secrets (as shown by `ipykeyguard scan` "
        "and `%keyguard`).",
    ).tag(config=True)
    enabled = Bool(True, help="Check cells at all (`%keyguard on` / `%keyguard off`).").tag(config=True)
    prompts = QuietEnum(
        list(PROMPT_MODES),
        default_value="mask",
        help="Requests to language-model APIs: 'mask' sends them with secrets masked in the body "
        "(one line names what was masked); 'block' refuses them, sending nothing; 'off' leaves them alone.",
    ).tag(config=True)
    prompt_endpoints = QuietList(
        QuietUnicode(),
        help="More language-model endpoints, besides the known providers and routes: a host "
        "('llm.example.com', '*.inference.example.com') or a path ending ('/v2/generate', ':predict').",
    ).tag(config=True)

    def __init__(self, shell: Any = None, **kwargs: Any) -> None:
        super().__init__(parent=shell, **kwargs)
        self.shell = shell
        # The kernel's start directory is the notebook's: the store and the project settings
        # stay tied to it when the user changes directory with %cd.
        self._start_dir = os.getcwd()
        self._base_config: Config | None = None
        self._store: SecretStore | None = None
        self._stored: dict[str, str] = {}  # NAME -> fingerprint of what the store holds
        self._cache: dict[str, _Outcome] = {}
        # raw text -> what history gets; the execute_input broadcast and both history columns
        # of one cell usually carry the same text, so it is rewritten and redacted once.
        self._history_cache: dict[str, str] = {}
        self._known_values: dict[str, str] = {}  # NAME -> value given to the redactor
        self._lock = threading.RLock()
        self._undo: list[tuple[str, Callable[[], None]]] = []
        self._current: _Outcome | None = None
        # Called as f(cell_id, rewritten_text, names) after a non-silent cell whose keys moved
        # (kernel/comm.py tells the JupyterLab extension, which applies it even when it raised).
        self.moved_listeners: list[Callable[[str | None, str, list[str]], None]] = []
        self.channel: Any = None
        self._configure()
        # One redactor per shell, shared with the output guard: every key moved or loaded is
        # registered with it. Outputs are masked from LIKELY up, whatever min_confidence says.
        # It scans with whatever scanner the guard has now, so `%keyguard allow` reaches it.
        self.redactor = Redactor(scanner=_LiveScanner(self))  # type: ignore[arg-type]
        self.redactor.on_masked = _OutputExposures(self._start_dir)
        self._ready = True

    # -- configuration -------------------------------------------------------------------------
    def _configure(self) -> None:
        """Build the scanner config from ``[tool.ipykeyguard]`` (if any) plus the traits.

        The project settings are read once, from the start directory.
        """
        if self._base_config is None:
            try:
                self._base_config = load_config(self._start_dir)
            except ConfigError as exc:
                print(f"ipykeyguard: warning: ignoring project settings: {exc}", file=sys.stderr)
                self._base_config = Config()
        base = self._base_config
        allow = frozenset(a.lower() for a in self.allow) | base.allow
        # Scan at every confidence: weaker findings are warned about (Rewrite.skipped).
        self._config = base.replace(allow=allow, min_confidence=Confidence.POSSIBLE)
        self._scanner = scanner_for(self._config)
        self._scanner.warm_up()  # the compiled rules load in the background: %load_ext does not wait
        self._clear_caches()

    def _open_store(self) -> SecretStore:
        if self.store == "dotenv":
            path = Path(self.dotenv_path or ".env").expanduser()
            return open_store("dotenv", path=path if path.is_absolute() else Path(self._start_dir) / path)
        return open_store(self.store)

    @property
    def secret_store(self) -> SecretStore:
        """The store moved keys go to."""
        assert self._store is not None
        return self._store

    def _clear_caches(self) -> None:
        """Forget cached rewrites (after each cell, and when the store or settings change)."""
        with self._lock:
            self._cache.clear()
            self._history_cache.clear()

    # -- the pure part: what a raw cell becomes ------------------------------------------------
    def outcome(self, raw: str) -> _Outcome:
        """What the guard does with ``raw`` (cached; pure: no store, environment or output).

        Never raises: an internal failure yields an outcome that runs nothing.
        """
        key = raw if raw.endswith("\n") else raw + "\n"
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None:
                return cached
            if len(self._cache) >= _CACHE_LIMIT:
                self._clear_caches()
            result = self._compute(key)
            self._cache[key] = result
            return result

    def _taken(self) -> Mapping[str, str]:
        """Names the rewrite must not reuse for another value: the store's and the environment's
        (a lazy view: fingerprints are computed only for a cell that holds a key)."""
        return _TakenNames(self._stored)

    def _compute(self, text: str) -> _Outcome:
        try:
            if not self.enabled:
                # Guard off: the cell runs as typed; history still gets the keys masked.
                return _Outcome(text, self._masked(text))
            user_ns = getattr(self.shell, "user_ns", None)
            rewrite = rewrite_source(
                text,
                config=self._config,
                scanner=self._scanner,
                taken=self._taken(),
                min_confidence=Confidence.parse(self.min_confidence),
                # An earlier cell imported os: inserting `import os` would shift the line
                # numbers of a cell that raises (its editor keeps the original text).
                os_imported=isinstance(user_ns, dict) and user_ns.get("os") is os,
            )
            if self.mode == "rewrite":
                moves = {name: secret.reveal() for name, secret in rewrite.moved.items()}
                return _Outcome(rewrite.source, rewrite.source, rewrite, moves)
            if self.mode == "warn" or not rewrite.moved:
                return _Outcome(text, self._masked(text), rewrite)
            return _Outcome(_raise_line(self._block_message(rewrite)), self._masked(text), rewrite)
        except Exception as exc:  # fail closed: the cell must not run unchecked
            message = (
                f"ipykeyguard could not check this cell ({type(exc).__name__}), so it was not run. "
                "Run `%keyguard off` to run cells without the guard."
            )
            return _Outcome(_raise_line(message), "# ipykeyguard: input not recorded (it could not be checked)\n",
                            error=message)

    def _masked(self, text: str) -> str:
        """``text`` with every key at or above the threshold replaced by its mask."""
        findings = self._scanner.scan_text(text, min_confidence=Confidence.parse(self.min_confidence))
        pieces, last = [], 0
        for finding in findings:  # ordered and non-overlapping
            pieces += [text[last:finding.start], finding.mask]
            last = finding.end
        pieces.append(text[last:])
        return "".join(pieces)

    def _keys(self, rewrite: Rewrite) -> list:
        """The findings of ``rewrite`` at or above the threshold (the keys to act on)."""
        threshold = Confidence.parse(self.min_confidence)
        return [f for f in rewrite.findings if f.confidence >= threshold]

    def _block_message(self, rewrite: Rewrite) -> str:
        keys = self._keys(rewrite) or list(rewrite.findings)
        env = next(iter(rewrite.moved), None) or keys[0].env or "API_KEY"
        where = ", ".join(f"{f.rule} on line {f.location.line}" for f in keys)
        return (
            f"ipykeyguard blocked this cell: it holds a key ({where}), and block mode keeps keys "
            f"out of notebooks. Put the key in an environment variable instead (for example in a "
            f".env file or your shell: {env}=...), then read it with os.environ[\"{env}\"]."
        )

    def history_text(self, text: str) -> str:
        """``text`` as history and the ``execute_input`` broadcast may hold it.

        Never raises: on an internal failure a placeholder is recorded instead of the text.
        """
        if not text:
            return text
        key = text if text.endswith("\n") else text + "\n"
        with self._lock:
            clean = self._history_cache.get(key)
        if clean is None:
            clean = self._history_text(key)
            with self._lock:
                if len(self._history_cache) >= _CACHE_LIMIT:
                    self._history_cache.clear()
                self._history_cache[key] = clean
        if not text.endswith("\n") and clean.endswith("\n"):
            clean = clean[:-1]
        return clean

    def _history_text(self, text: str) -> str:
        outcome = self.outcome(text)
        clean = _MASK_MAGIC_RE.sub(lambda m: (m.group(1) or m.group(3)) + "[masked]", outcome.history_source)
        try:
            if outcome.rewrite is not None and not outcome.rewrite.findings:
                # The rewrite's scan found nothing at any confidence: only known values (and
                # 8+ character pieces of them) can be left, so skip the rules' second scan.
                return self.redactor.redact_known(clean)
            return self.redactor.redact(clean)
        except Exception as exc:  # fail closed: record a placeholder, never the text
            return f"# ipykeyguard: input not recorded (redaction failed: {type(exc).__name__})"

    def _know(self, name: str, value: str) -> None:
        """Register ``value`` with the redactor (outputs and history mask it from now on),
        unless its fingerprint is allowed (an allowed value is not a secret)."""
        if fingerprint(value) in self._config.allow:
            return
        self.redactor.add_known(name, value)
        self._known_values[name] = value

    def _unknow(self, name: str) -> None:
        self.redactor.remove_known(name)
        self._known_values.pop(name, None)

    # -- hooks -----------------------------------------------------------------------------------
    def _transform(self, lines: list[str]) -> list[str]:
        """The cleanup input transformer: pure, idempotent, never raises."""
        outcome = self.outcome("".join(lines))
        return outcome.run_source.splitlines(keepends=True)

    def _before_execution(self, raw: Any, silent: bool) -> str | None:
        """Do one execution's side effects, before IPython runs it; never raises.

        Called once per execution, silent or not (see module docstring).

        Returns:
            ``None`` to run the cell as transformed, a one-line cell that raises
            :class:`KeyGuardRejected` to run instead (the key could not be stored), or the
            cell rewritten again when another process took one of its names meanwhile.
        """
        if not isinstance(raw, str) or not raw or raw.isspace():
            return None
        renamed: str | None = None
        try:
            outcome = self.outcome(raw)
            if not silent:
                self._current = outcome  # post_run_cell (non-silent only) replaces the cell
            if outcome.error is not None or outcome.rewrite is None:
                return None
            rewrite = outcome.rewrite
            if outcome.moves:
                try:
                    self._move(outcome.moves)
                except NameTaken:
                    # Another kernel, save or clean gave one of these names to another key since
                    # this kernel read the store: re-read it and name the keys again (once).
                    self._reload_stored()
                    outcome = self.outcome(raw)
                    if not silent:
                        self._current = outcome
                    if outcome.error is not None or outcome.rewrite is None:
                        return None
                    rewrite = outcome.rewrite
                    if outcome.moves:
                        self._move(outcome.moves)
                    # IPython transformed the cell before this ran: run the new rewrite instead.
                    renamed = outcome.run_source
            elif self.enabled and self.mode == "warn" and rewrite.moved:
                for finding in self._keys(rewrite):
                    self._know(finding.env or finding.rule, finding.secret.reveal())
                    print(
                        f"ipykeyguard: warning: line {finding.location.line} holds a key "
                        f"({finding.rule}); it ran unchanged (warn mode). Move it to an environment "
                        f"variable ({finding.env or 'API_KEY'}).",
                        file=sys.stderr,
                    )
            if self.enabled and rewrite.skipped:
                for finding in rewrite.skipped:
                    print(
                        f"ipykeyguard: warning: line {finding.location.line} may hold a secret "
                        f"({finding.rule}, {finding.confidence}); it was left in place. If it is one, "
                        "move it to an environment variable.",
                        file=sys.stderr,
                    )
        except StoreError as exc:
            self._current = None
            return _raise_line(
                f"ipykeyguard could not store the key(s) in {self.secret_store.description}: {exc}. "
                "Nothing was moved and the cell was not run."
            )
        except Exception as exc:  # fail closed: reject the cell rather than run it half-guarded
            self._current = None
            return _raise_line(
                f"ipykeyguard failed before running this cell ({type(exc).__name__}), so it was not run. "
                "Run `%keyguard off` to run cells without the guard."
            )
        return renamed

    def _move(self, moves: Mapping[str, str]) -> None:
        """Store ``moves`` (all or nothing), then set ``os.environ`` and teach the redactor.

        Values the store already holds under the same name are not written again; the one-line
        notice tells moved keys from those that were already stored (names only).

        Raises:
            StoreError: nothing was stored and nothing else changed.
        """
        fingerprints = {name: fingerprint(value) for name, value in moves.items()}
        new = {name: value for name, value in moves.items() if self._stored.get(name) != fingerprints[name]}
        if new:
            self.secret_store.put(new, overwrite=False)  # a name never stands for two keys
            record_moves(self, list(new))
        ledger.record_moves("kernel", fingerprints)  # never raises
        for name, value in moves.items():
            os.environ[name] = value
            self._stored[name] = fingerprints[name]
            self._know(name, value)
        print(_move_notice(list(new), [name for name in moves if name not in new],
                           _destination(self.secret_store)))

    def _post_run_cell(self, result: Any) -> None:
        """Replace the frontend's cell with the rewritten text (kernel only, non-silent cells)."""
        outcome, self._current = self._current, None
        if outcome is None or not outcome.moves or not outcome.changed:
            return
        if getattr(self.shell, "kernel", None) is None:
            return  # terminal: set_next_input would pre-fill the next prompt
        raw = result.info.raw_cell
        new_source = outcome.run_source if raw.endswith("\n") else outcome.run_source[:-1]
        for listener in list(self.moved_listeners):
            listener(getattr(result.info, "cell_id", None), new_source, list(outcome.moves))
        payloads = getattr(self.shell.payload_manager, "_payload", [])
        if any(p.get("source") == "set_next_input" for p in payloads):
            print(
                "ipykeyguard: the cell queued its own replacement (e.g. %load), so the editor "
                "still shows the key; replace it with the os.environ lookup by hand.",
                file=sys.stderr,
            )
            return
        self.shell.set_next_input(new_source, replace=True)

    # -- store and environment -----------------------------------------------------------------
    def _reload_stored(self) -> None:
        """Re-read the store's names (another process wrote it) and forget cached rewrites.

        Raises:
            StoreError: the store could not be read.
        """
        self._stored = {name: fingerprint(value) for name, value in self.secret_store.items().items()}
        self._clear_caches()

    def load_known(self) -> None:
        """Load the store into ``os.environ`` (without overriding what is set) and register the
        store's values and secret-looking environment variables with the redactor."""
        try:
            stored = self.secret_store.items()
        except StoreError as exc:
            print(f"ipykeyguard: warning: cannot read {self.secret_store.description}: {exc}", file=sys.stderr)
            stored = {}
        for name, value in stored.items():
            os.environ.setdefault(name, value)
            self._stored[name] = fingerprint(value)
            # The redactor keeps one value per name: a stored value the environment overrides
            # is still masked, under a name that says where it came from.
            self._know(name if os.environ[name] == value else f"{name}_STORED", value)
        for name, value in secret_like_env(os.environ).items():
            self._know(name, value)  # ignores values too short to be credentials

    def forget(self, name: str) -> bool:
        """Remove ``name`` from the store, ``os.environ`` and the redactor.

        Returns:
            True when the name was known anywhere.

        Raises:
            StoreError: the store could not be rewritten.
        """
        known = name in self._stored or name in os.environ
        self.secret_store.delete(name)
        os.environ.pop(name, None)
        self._stored.pop(name, None)
        self._unknow(name)
        self._unknow(f"{name}_STORED")  # the stored value, when the environment overrode it
        self._clear_caches()
        return known

    def allow_fingerprint(self, value: str) -> None:
        """Add a fingerprint to the allow-list (for this session).

        Raises:
            ValueError: ``value`` is not a SHA-256 hex digest.
        """
        value = value.strip().lower()
        if not re.fullmatch(r"[0-9a-f]{64}", value):
            raise ValueError("a fingerprint is 64 hex digits (as shown by `ipykeyguard scan`)")
        if value not in self.allow:
            self.allow = [*self.allow, value]  # _allow_changed applies it

    @observe("allow")
    def _allow_changed(self, change: Any) -> None:
        """Apply a new allow-list to the rewriter, the redactor's rules and its known values."""
        if not getattr(self, "_ready", False):
            return  # set from config while constructing: __init__ configures afterwards
        self._configure()
        for name, value in list(self._known_values.items()):
            if fingerprint(value) in self._config.allow:
                self._unknow(name)

    def _prompt_endpoints(self) -> Endpoints:
        """The language-model endpoints: the defaults plus ``prompt_endpoints`` (rebuilt on change)."""
        extra = tuple(self.prompt_endpoints)
        cached = getattr(self, "_endpoints_cache", None)
        if cached is None or cached[0] != extra:
            cached = self._endpoints_cache = (extra, Endpoints.with_extra(extra))
        return cached[1]

    # -- install / uninstall -------------------------------------------------------------------
    def _record(self, what: str, undo: Callable[[], None]) -> None:
        self._undo.append((what, undo))

    def _patch_instance(self, obj: Any, name: str, replacement: Callable) -> None:
        """Set ``obj.name = replacement``, recording how to put the original back exactly."""
        label = f"{type(obj).__name__}.{name}"
        self._record(label, replace_attribute(obj, name, replacement, label))

    def install(self) -> None:
        """Install every hook (undone by :meth:`uninstall`)."""
        shell = self.shell
        self._store = self._open_store()
        self.load_known()

        transformer = _Transformer(self)
        # First, so it sees the cell exactly as typed (before prompt and indent stripping).
        shell.input_transformers_cleanup.insert(0, transformer)
        self._record("input transformer", lambda: shell.input_transformers_cleanup.remove(transformer))

        # Every execution, silent or not, and only executions, pass through run_cell_async
        # (run_cell calls it too), with the raw cell: the one place for the side effects.
        self._patch_instance(shell, "run_cell_async", self._wrap_run_cell_async(shell.run_cell_async))

        shell.events.register("post_run_cell", self._post_run_cell)
        self._record("post_run_cell handler", lambda: shell.events.unregister("post_run_cell", self._post_run_cell))

        history = getattr(shell, "history_manager", None)
        if history is not None:
            self._patch_instance(history, "store_inputs", self._wrap_store_inputs(history.store_inputs))
            self._patch_instance(history, "store_output", self._wrap_store_output(history, history.store_output))

        kernel = getattr(shell, "kernel", None)
        if kernel is not None and hasattr(kernel, "_publish_execute_input"):
            self._patch_instance(kernel, "_publish_execute_input",
                                 self._wrap_publish_execute_input(kernel._publish_execute_input))

        # know=self._know: variables the user's code sets later are judged by the allow-list too.
        self._record("output guard", install_output_guard(shell, self.redactor, know=self._know))
        self._record("prompt guard", install_prompt_guard(
            PromptGuard(self.redactor, lambda: self.prompts, self._prompt_endpoints)))
        if isinstance(getattr(shell, "configurables", None), list):  # `%config KeyGuard.prompts = 'block'`
            shell.configurables.append(self)
            self._record("%config KeyGuard", lambda: shell.configurables.remove(self))

        magics = KeyGuardMagics(shell, guard=self)
        shell.register_magics(magics)

        def unregister_magic() -> None:
            shell.magics_manager.magics["line"].pop("keyguard", None)
            shell.magics_manager.registry.pop(type(magics).__name__, None)

        self._record("%keyguard magic", unregister_magic)
        self._record("frontend channel", install_channel(self))

    def uninstall(self) -> None:
        """Undo every hook, newest first; one failing step does not stop the others."""
        failures = []
        while self._undo:
            what, undo = self._undo.pop()
            try:
                undo()
            except (ValueError, KeyError, AttributeError, TypeError) as exc:
                failures.append(f"{what} ({type(exc).__name__})")
        if failures:
            print(f"ipykeyguard: warning: could not undo: {', '.join(failures)}", file=sys.stderr)

    # -- wrappers ------------------------------------------------------------------------------
    def _wrap_run_cell_async(self, original: Callable) -> Callable:
        @functools.wraps(original)  # keeps the signature ipykernel inspects (cell_id, cell_meta)
        async def run_cell_async(raw_cell: str, *args: Any, **kwargs: Any) -> Any:
            silent = kwargs["silent"] if "silent" in kwargs else (len(args) > 1 and bool(args[1]))
            try:
                replacement = self._before_execution(raw_cell, bool(silent))
                if replacement is not None:
                    kwargs["transformed_cell"] = replacement
                    kwargs["preprocessing_exc_tuple"] = None
                return await original(raw_cell, *args, **kwargs)
            finally:
                # One cell's rewrites are cached; the next sees the store and environment anew.
                self._clear_caches()

        return run_cell_async

    def _wrap_store_inputs(self, original: Callable) -> Callable:
        def store_inputs(line_num: int, source: str, source_raw: str | None = None) -> None:
            if source_raw is None:
                source_raw = source
            return original(line_num, self.history_text(source), self.history_text(source_raw))

        store_inputs.__wrapped__ = original  # type: ignore[attr-defined]
        return store_inputs

    def _wrap_store_output(self, history: Any, original: Callable) -> Callable:
        def store_output(line_num: int) -> None:
            reprs = getattr(history, "output_hist_reprs", None)
            if isinstance(reprs, dict) and isinstance(reprs.get(line_num), str):
                reprs[line_num] = self._redact_or_placeholder(reprs[line_num])
            outputs = getattr(history, "outputs", None)
            if isinstance(outputs, dict) and line_num in outputs:
                for item in outputs[line_num]:
                    _redact_bundle(getattr(item, "bundle", None), self._redact_or_placeholder)
            return original(line_num)

        store_output.__wrapped__ = original  # type: ignore[attr-defined]
        return store_output

    def _redact_or_placeholder(self, text: str) -> str:
        try:
            return self.redactor.redact(text)
        except Exception as exc:  # fail closed
            return f"[ipykeyguard: output not recorded ({type(exc).__name__})]"

    def _wrap_publish_execute_input(self, original: Callable) -> Callable:
        def publish_execute_input(code: str, parent: Any, execution_count: int) -> None:
            return original(self.history_text(code), parent, execution_count)

        publish_execute_input.__wrapped__ = original  # type: ignore[attr-defined]
        return publish_execute_input

    # -- status ----------------------------------------------------------------------------------
    def status(self) -> str:
        """A human summary: mode, store, names and counts, never a value."""
        try:
            names = sorted(self.secret_store.items())
        except StoreError as exc:
            names = []
            store_note = f" (unreadable: {exc})"
        else:
            store_note = ""
        lines = [
            f"ipykeyguard: {'on' if self.enabled else 'off'}, mode {self.mode}, "
            f"min confidence {self.min_confidence}",
            f"store: {self.secret_store.description}{store_note}",
            f"stored keys ({len(names)}): {', '.join(names) if names else '-'}",
            f"allowed fingerprints: {len(self.allow)}",
            f"prompts to language models: {self.prompts}"
            + (f" (+{len(self.prompt_endpoints)} endpoints)" if self.prompt_endpoints else ""),
        ]
        return "\n".join(lines)


def _redact_bundle(bundle: Any, redact: Callable[[str], str]) -> None:
    """Redact the text of an in-memory ``HistoryOutput.bundle`` (mimetype -> str | list[str])."""
    if not isinstance(bundle, dict):
        return
    for mimetype, value in bundle.items():
        if isinstance(value, str):
            bundle[mimetype] = redact(value)
        elif isinstance(value, list) and value and all(isinstance(v, str) for v in value):
            # IPython keeps every write of a stream as its own string (a 5 MB print is ~10^5 of
            # them) and reads them back concatenated: redact the concatenation once, which is
            # far cheaper than one call per write and also masks a key split across writes.
            joined = "".join(value)
            redacted = redact(joined)
            if redacted is not joined:
                bundle[mimetype] = [redacted]
        elif isinstance(value, list):
            bundle[mimetype] = [redact(v) if isinstance(v, str) else v for v in value]


class _TakenNames(Mapping):
    """NAME -> fingerprint of the value it holds, for the store's names and ``os.environ``'s.

    ``rewrite_source`` reads it only when a cell holds a key, so a lazy view keeps the cost of
    hashing every environment variable off ordinary cells.
    """

    def __init__(self, stored: Mapping[str, str]) -> None:
        self._stored = dict(stored)

    def __getitem__(self, name: str) -> str:
        if name in self._stored:
            return self._stored[name]
        return fingerprint(os.environ[name])

    def __iter__(self):
        yield from self._stored
        yield from (name for name in os.environ if name not in self._stored)

    def __len__(self) -> int:
        return len(self._stored) + sum(1 for name in os.environ if name not in self._stored)


class _LiveScanner:
    """The guard's current scanner, for the redactor: the allow-list can change after the
    redactor (shared with the output guard) was built, and the redactor keeps its scanner."""

    def __init__(self, guard: KeyGuard) -> None:
        self._guard = guard

    def scan_text(self, *args: Any, **kwargs: Any) -> list:
        return self._guard._scanner.scan_text(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._guard._scanner, name)


class _Transformer:
    """The cleanup transformer object (a callable with ``has_side_effects`` for ``is_complete``)."""

    has_side_effects = True

    def __init__(self, guard: KeyGuard) -> None:
        self._guard = guard

    def __call__(self, lines: list[str]) -> list[str]:
        return self._guard._transform(lines)

    def __repr__(self) -> str:
        return "<ipykeyguard input transformer>"


_HELP = """\
%keyguard                 status: mode, store, stored names and counts (never values)
%keyguard allow SHA256    treat the value with this fingerprint as not a secret (this session)
%keyguard forget NAME     remove NAME from the store, os.environ and the output redactor
%keyguard set NAME        ask for a value (hidden input) and store it under NAME
%keyguard on | off        check cells, or stop checking them
%keyguard mask $NAME      mask the value of environment variable NAME in every output
%keyguard mask VALUE      mask VALUE in every output (it is hidden in history)
%keyguard help            this text"""


@magics_class
class KeyGuardMagics(Magics):
    """``%keyguard``: inspect and steer the guard."""

    def __init__(self, shell: Any, guard: KeyGuard) -> None:
        super().__init__(shell)
        self._guard = guard

    @line_magic
    def keyguard(self, line: str) -> None:
        """Inspect and steer ipykeyguard; ``%keyguard help`` lists the commands."""
        from IPython.core.error import UsageError

        guard = self._guard
        command, _, argument = line.strip().partition(" ")
        argument = argument.strip()
        if command in ("", "status"):
            print(guard.status())
        elif command == "help":
            print(_HELP)
        elif command in ("on", "off"):
            guard.enabled = command == "on"
            guard._clear_caches()
            print(f"ipykeyguard: {command}")
        elif command == "allow":
            try:
                guard.allow_fingerprint(argument)
            except ValueError as exc:
                raise UsageError(str(exc)) from None
            print("ipykeyguard: allowed 1 fingerprint for this session")
        elif command == "forget":
            if not argument:
                raise UsageError("%keyguard forget NAME")
            try:
                known = guard.forget(argument)
            except StoreError as exc:
                raise UsageError(f"cannot forget {argument}: {exc}") from None
            print(f"ipykeyguard: {'forgot' if known else 'did not know'} {argument}")
        elif command == "set":
            import getpass

            from ..storage.store import is_valid_name

            if not is_valid_name(argument):
                raise UsageError("%keyguard set NAME: NAME is letters, digits and _, not starting "
                                 "with a digit (the value is asked for, hidden)")

            value = getpass.getpass(f"value for {argument} (hidden): ")
            if not value:
                raise UsageError("no value given; nothing stored")
            try:
                set_secret(guard, argument, value, source="%keyguard set")
            except StoreError as exc:
                raise UsageError(f"cannot store {argument}: {exc}") from None
            finally:
                del value
            print(f"ipykeyguard: stored {argument} in {_destination(guard.secret_store)}; "
                  f"read it with os.environ[\"{argument}\"]")
            if guard.channel is not None:
                guard.channel.broadcast({"event": "reloaded", "names": [argument]})
        elif command == "mask":
            if not argument:
                raise UsageError("%keyguard mask VALUE or %keyguard mask $NAME")
            if argument.startswith("$"):
                name = argument[1:]
                value = os.environ.get(name)
                if value is None:
                    raise UsageError(f"no environment variable {name}")
            else:
                name, value = "secret", argument
            guard._know(name, value)
            print(f"ipykeyguard: masking the value of {name} in outputs")
        else:
            raise UsageError(f"unknown %keyguard command {command!r}\n{_HELP}")


def load_ipython_extension(shell: Any) -> None:
    """Install the guard on ``shell``; a second call is a no-op."""
    if getattr(shell, STATE_ATTR, None) is not None:
        return
    guard = KeyGuard(shell)
    try:
        guard.install()
    except BaseException:
        guard.uninstall()
        raise
    setattr(shell, STATE_ATTR, guard)


def unload_ipython_extension(shell: Any) -> None:
    """Undo everything :func:`load_ipython_extension` did on ``shell``."""
    guard = getattr(shell, STATE_ATTR, None)
    if guard is None:
        return
    guard.uninstall()
    delattr(shell, STATE_ATTR)
