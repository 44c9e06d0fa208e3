"""Secret stores: where moved keys live so that ``os.environ["NAME"]`` works now and later.

Four kinds, one small protocol (:class:`SecretStore`):

``dotenv``
    A ``.env`` file (by default beside the notebook), in python-dotenv's syntax. Written
    atomically (a 0600 temporary ``<name>.ipykeyguard-tmp-*`` in the same directory, ``fsync``,
    ``os.replace``), mode 0600, existing lines and comments kept as they are (only the lines of
    the names being set are replaced, new names are appended). Every write happens under an OS
    file lock (``<name>.ipykeyguard-lock``, through the ``filelock`` package) with the file
    re-read inside it, so writers in other processes (two ``clean`` runs, the save hook, two
    kernels) never lose each other's keys; callers that choose names hold the lock across
    choosing and storing (:func:`store_lock`), and ``put(..., overwrite=False)`` refuses to give
    a name that holds another value a new one (:class:`NameTaken`). Temporaries a killed writer
    left are removed at the next write. Inside a git work tree the file and its companions are
    added to the nearest ``.gitignore`` once (``.env`` and ``.env.ipykeyguard-*``) unless git
    already ignores them, and a ``.env`` that git *tracks* is refused, because a key written
    there would be committed with the next ``git commit -a``. A ``.env`` that is a symbolic
    link, read-only, or owned by another user is refused, never written through or replaced.
    Values are quoted so that python-dotenv (``interpolate=False``, as this store reads) and a
    POSIX shell (``set -a; . ./.env``) both read back exactly the value and the shell runs
    nothing (:func:`quote_dotenv_value`); a value no quoting serves both is refused.
``keyring``
    The OS keyring through the ``keyring`` package, one entry per name under ``service``, plus
    an index entry listing the names (keyring cannot enumerate). Writes hold an OS file lock per
    service in the user data folder, so processes adding names at once lose none from the index.
``memory``
    A dict in this process: nothing on disk.
``none``
    Keeps nothing: ``put`` accepts and discards, ``get`` finds nothing. Callers that report what
    they stored check ``kind == "none"`` and say the keys were *not* kept.

No exception or ``repr`` of a store holds a stored value.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import shutil
import stat
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Iterator, Mapping, Protocol, runtime_checkable

from ..engine.findings import fingerprint

__all__ = [
    "StoreError",
    "NameTaken",
    "store_lock",
    "quote_dotenv_value",
    "atomic_write_bytes",
    "SecretStore",
    "DotenvStore",
    "KeyringStore",
    "MemoryStore",
    "NullStore",
    "STORE_KINDS",
    "open_store",
    "taken_names",
    "is_valid_name",
    "check_dotenv_values",
    "fsync_directory",
]

#: The kinds :func:`open_store` knows.
STORE_KINDS = ("dotenv", "keyring", "memory", "none")

_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


class StoreError(Exception):
    """A store could not be read or written. The message names the store and the variable,
    never a value."""


class NameTaken(StoreError):
    """``put(..., overwrite=False)`` found a name already holding another value (another
    process named a different key the same in the meantime). Nothing was written.

    Attributes:
        names: The names that clash.
    """

    def __init__(self, where: object, names: list[str]) -> None:
        super().__init__(f"{where}: {', '.join(names)} already hold(s) another value; not overwritten")
        self.names = tuple(names)


def is_valid_name(name: str) -> bool:
    """True when ``name`` can be an environment variable and a ``.env`` key."""
    return isinstance(name, str) and bool(_NAME_RE.match(name)) and len(name) <= 256


def _check_values(values: Mapping[str, str]) -> None:
    for name, value in values.items():
        if not is_valid_name(name):
            raise StoreError(f"{name!r} is not a valid environment variable name")
        if not isinstance(value, str):
            raise StoreError(f"the value for {name} is not a string")
        if "\x00" in value:
            # os.environ cannot hold NUL, so such a value could never be looked up again.
            raise StoreError(f"the value for {name} contains a NUL character")


#: No message may hold this many consecutive characters of a secret.
SECRET_WINDOW = 8


def shares_a_secret_window(text: str, secret: str) -> bool:
    """True when ``text`` holds :data:`SECRET_WINDOW` or more consecutive characters of
    ``secret`` (a shorter secret: the whole of it)."""
    if len(secret) <= SECRET_WINDOW:
        return bool(secret) and secret in text
    return any(secret[i : i + SECRET_WINDOW] in text for i in range(len(secret) - SECRET_WINDOW + 1))


def check_dotenv_values(values: Mapping[str, str]) -> None:
    """Raise the :class:`StoreError` that ``DotenvStore.put(values)`` would raise for the values
    themselves (a bad name, a NUL, a value no ``.env`` quoting can hold), without writing.

    Raises:
        StoreError: the first value that cannot be stored; the message names it, never shows it.
    """
    _check_values(values)
    for name, value in values.items():
        _binding_line(name, value)


@runtime_checkable
class SecretStore(Protocol):
    """Where moved keys are kept."""

    kind: str
    description: str

    def get(self, name: str) -> str | None:
        """The value stored under ``name``, or ``None``."""

    def items(self) -> dict[str, str]:
        """Every name and value in the store."""

    def put(self, values: Mapping[str, str], *, overwrite: bool = True) -> None:
        """Store every value, or none of them.

        Args:
            values: NAME -> value.
            overwrite: ``False``: raise :class:`NameTaken` rather than give a name that holds
                another value a new one.

        Raises:
            StoreError: nothing was stored.
        """

    def delete(self, name: str) -> None:
        """Remove ``name`` if present."""


# -- memory and none ---------------------------------------------------------------------------
class MemoryStore:
    """Keys kept in this process only."""

    kind = "memory"
    description = "memory (nothing on disk)"

    def __init__(self, values: Mapping[str, str] | None = None) -> None:
        self._values: dict[str, str] = {}
        self._lock = threading.Lock()
        if values:
            self.put(values)

    def get(self, name: str) -> str | None:
        return self._values.get(name)

    def items(self) -> dict[str, str]:
        return dict(self._values)

    def put(self, values: Mapping[str, str], *, overwrite: bool = True) -> None:
        _check_values(values)
        with self._lock:
            if not overwrite:
                clash = sorted(n for n, v in values.items() if self._values.get(n, v) != v)
                if clash:
                    raise NameTaken("memory", clash)
            self._values.update(values)

    def delete(self, name: str) -> None:
        with self._lock:
            self._values.pop(name, None)

    def __repr__(self) -> str:
        return f"MemoryStore(names={sorted(self._values)})"


class NullStore:
    """Keeps nothing (``--store none``): ``put`` validates and discards."""

    kind = "none"
    description = "none (keys are not kept)"

    def get(self, name: str) -> str | None:
        return None

    def items(self) -> dict[str, str]:
        return {}

    def put(self, values: Mapping[str, str], *, overwrite: bool = True) -> None:
        _check_values(values)

    def delete(self, name: str) -> None:
        return None

    def __repr__(self) -> str:
        return "NullStore()"


# -- .env --------------------------------------------------------------------------------------
_SHELL_EXPANDS = frozenset("$`")


def quote_dotenv_value(value: str) -> str:
    """``value`` quoted for a ``.env`` line that python-dotenv *and* a POSIX shell
    (``set -a; . ./.env``) both read back as exactly ``value``, running nothing.

    Single quotes when the value holds no quote, no double backslash, no carriage return and
    does not end in a backslash: both readers take
    everything between them literally (``$``, backticks, ``;`` and newlines included, so PEM
    blocks stay one line per line). Otherwise double quotes with ``\\`` and ``\"`` escaped,
    which both readers undo the same way, provided the value holds no ``$`` or backtick (a shell
    expands those inside double quotes; python-dotenv has no escape for them).

    The shell's own escape for a quote inside single quotes (``'it'\\''s'``) is not used:
    python-dotenv cannot parse it (checked with python-dotenv 1.2; see ``docs/STORE.md``).

    Raises:
        StoreError: no quoting reads the same in both: a carriage return (python-dotenv reads
            with universal newlines), or a quote or backslash together with ``$`` or a backtick.
            The message never holds the value.
    """
    if "\r" in value:
        raise StoreError("a value holding a carriage return cannot be written to a .env file")
    if "'" not in value and "\\\\" not in value and not value.endswith("\\"):
        # Inside single quotes python-dotenv undoes only a doubled backslash and an escaped
        # quote; a shell undoes nothing.
        return f"'{value}'"
    if _SHELL_EXPANDS.isdisjoint(value):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    raise StoreError(
        "a value holding a quote or backslash together with '$' or a backtick cannot be written to a "
        ".env file that both python-dotenv and a POSIX shell read back exactly"
    )


#: Every file the store keeps beside a ``.env`` (its lock, its temporaries) is named
#: ``<name>`` + this + ``...``, so one ``.gitignore`` line (``.env.ipykeyguard-*``) covers them all.
COMPANION_INFIX = ".ipykeyguard-"
_TEMP_TAG = "tmp-"
_LOCK_TAG = "lock"
#: How long a writer waits for another process's lock on the same ``.env`` before giving up.
LOCK_TIMEOUT_SECONDS = 120.0


def companion_pattern(name: str) -> str:
    """The ``.gitignore`` pattern covering the lock and temporary files of the store file ``name``."""
    return f"{name}{COMPANION_INFIX}*"


def atomic_write_bytes(
    path: str | Path,
    data: bytes,
    *,
    mode: int | None = None,
    sync_directory: bool = True,
    temp_prefix: str | None = None,
) -> None:
    """Replace ``path`` with ``data`` atomically: a temporary file in the same directory is
    written, flushed to disk and renamed over ``path``, so a crash leaves the old or the new file.

    Args:
        path: The file to (re)write.
        data: Its new content.
        mode: Permission bits for the new file; by default those of the existing file, or 0600
            for a new one (``mkstemp``'s mode).
        sync_directory: Also fsync the directory, so that the rename itself survives a power
            loss. A caller replacing many files in one directory passes ``False`` and calls
            :func:`fsync_directory` once at the end: until then a crash may bring back the old
            file, never a torn one.
        temp_prefix: The temporary file's name prefix (default ``.<name>.``, with the suffix
            ``.ipykeyguard-tmp``). The temporary is created with mode 0600 whatever ``mode`` is,
            and only then filled.

    Raises:
        OSError: the file could not be written; ``path`` is unchanged and no temporary is left.
    """
    path = Path(path)
    if mode is None:
        try:
            mode = stat.S_IMODE(path.stat().st_mode)
        except FileNotFoundError:
            mode = None
    if temp_prefix is None:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".ipykeyguard-tmp")
    else:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=temp_prefix)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    if sync_directory:
        _fsync_dir(path.parent)


def fsync_directory(directory: str | Path) -> None:
    """Make the renames done in ``directory`` durable (see :func:`atomic_write_bytes`).

    Args:
        directory: The directory whose entries to flush; where a directory cannot be opened or
            fsynced (some filesystems, Windows) this does nothing: the renames still happened.
    """
    _fsync_dir(Path(directory))


def _fsync_dir(directory: Path) -> None:
    """Make a rename durable (POSIX); silently unsupported elsewhere."""
    try:
        dir_fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass  # some filesystems (and Windows) cannot fsync a directory; the rename still happened
    finally:
        os.close(dir_fd)


class DotenvStore:
    """Keys in a ``.env`` file (see the module docstring for the guarantees)."""

    kind = "dotenv"

    def __init__(self, path: str | Path, *, git_check_once: bool = False) -> None:
        """Args:
            path: The ``.env`` file (it need not exist yet).
            git_check_once: Ask git whether the file is tracked or ignored only at this object's
                first write, not at every write: for one command run over many notebooks of a
                directory (three git processes per notebook otherwise), not for a store that
                lives as long as a kernel, where the user may ``git add`` the file meanwhile.
        """
        self.path = Path(os.path.abspath(path))  # never resolved: a link is refused, not followed
        self.description = f".env ({self.path})"
        self._git_check_once = git_check_once
        self._git_checked: Path | None = None
        # The text last read or written by this object and its parsed bindings. Re-parsing a
        # growing .env for every notebook of a directory made cleaning many notebooks
        # quadratic; a cached parse is used only for exactly the text it was made from.
        self._parsed: tuple[str, list] | None = None

    # reading
    def _read_text(self) -> str:
        try:
            # Universal newlines, as python-dotenv itself reads the file.
            with open(self.path, encoding="utf-8") as fh:
                return fh.read()
        except FileNotFoundError:
            return ""
        except UnicodeDecodeError:
            raise StoreError(f"{self.path}: not UTF-8 text") from None
        except OSError as exc:
            raise StoreError(f"{self.path}: cannot read: {exc.strerror or type(exc).__name__}") from None

    def _bindings(self, text: str) -> list:
        """python-dotenv's bindings of ``text`` (warning about invalid lines as it does)."""
        if self._parsed is not None and self._parsed[0] == text:
            return self._parsed[1]
        bindings = _parse_dotenv(text)
        self._parsed = (text, bindings)
        return bindings

    def items(self) -> dict[str, str]:
        """Every binding of the file, read as python-dotenv's ``dotenv_values(interpolate=False)``
        reads it (a later binding of a name wins; a name without ``=`` has no value)."""
        text = self._read_text()
        if not text:
            return {}
        values: dict[str, str | None] = {}
        for binding in self._bindings(text):
            if binding.key is not None:
                values[binding.key] = binding.value
        return {k: v for k, v in values.items() if v is not None}

    def get(self, name: str) -> str | None:
        return self.items().get(name)

    # locking
    def _lock_path(self) -> Path:
        return self.path.parent / f"{self.path.name}{COMPANION_INFIX}{_LOCK_TAG}"

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the store's OS file lock (``<name>.ipykeyguard-lock`` beside the file).

        Every write takes it, so a caller that picks names from :meth:`items` and then
        :meth:`put`\\ s them holds it across both: no other process or thread (``clean``, the save
        hook, a kernel) can give one of those names to another value in between. Re-entrant
        within a thread; other threads and processes wait (up to :data:`LOCK_TIMEOUT_SECONDS`).

        Raises:
            StoreError: the lock file cannot be created, or the wait timed out.
        """
        self._check_target()
        with _held_file_lock(self._lock_path(), str(self.path)):
            yield

    def _check_target(self) -> None:
        """Refuse a ``.env`` that is a symbolic link, read-only, or owned by another user.

        Writing through a link would put keys (and a ``.gitignore``) wherever it points; replacing
        a read-only or foreign file would silently take it over (the rename makes it ours, 0600).

        Raises:
            StoreError: one of those; the message says which and what to do.
        """
        if not self.path.parent.is_dir():
            raise StoreError(f"{self.path}: the directory does not exist")
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise StoreError(f"{self.path}: cannot check: {exc.strerror or type(exc).__name__}") from None
        if stat.S_ISLNK(st.st_mode):
            raise StoreError(
                f"{self.path}: is a symbolic link; ipykeyguard does not write keys through links "
                "(remove the link, or point the store at the file it names)"
            )
        if not stat.S_ISREG(st.st_mode):
            raise StoreError(f"{self.path}: is not a regular file; not written")
        if hasattr(os, "geteuid") and st.st_uid != os.geteuid():
            raise StoreError(
                f"{self.path}: belongs to another user (uid {st.st_uid}); not replaced "
                "(write keys to a .env of your own)"
            )
        if not st.st_mode & 0o200 or not os.access(self.path, os.W_OK):
            raise StoreError(f"{self.path}: is read-only; not changed (make it writable to store keys in it)")

    # writing
    def put(self, values: Mapping[str, str], *, overwrite: bool = True) -> None:
        """Set ``values`` in the file (one atomic rewrite, under :meth:`lock`, from the file as
        it is once locked), creating it with mode 0600.

        Args:
            values: NAME -> value.
            overwrite: ``False`` refuses to give a name that holds another value a new one
                (:class:`NameTaken`); the callers that move keys pass it, so a name never
                stands for two keys even when their naming raced another writer.

        Raises:
            NameTaken: ``overwrite`` is false and a name holds another value; nothing written.
            StoreError: a name or value is invalid, git tracks the file, the file is a link,
                read-only or another user's, or a file could not be written; the file is then
                unchanged.
        """
        _check_values(values)
        if not values:
            return
        with self.lock():
            target = self.path
            if not overwrite:
                current = self.items()
                clash = sorted(n for n, v in values.items() if n in current and current[n] != v)
                if clash:
                    raise NameTaken(self.path, clash)
            if not (self._git_check_once and self._git_checked == target):
                _ensure_git_ignored(target)
                self._git_checked = target
            self._rewrite(target, lambda lines: _set_lines(lines, values))

    def delete(self, name: str) -> None:
        """Remove every binding of ``name`` from the file (comments and other lines kept).

        Raises:
            StoreError: the file could not be rewritten.
        """
        with self.lock():
            if not self.path.exists():
                return
            self._rewrite(self.path, lambda lines: _drop_lines(lines, name))

    def _rewrite(self, target: Path, edit) -> None:
        old = self._read_text()
        bindings = self._bindings(old)
        new = edit(bindings)
        if new == old and target.exists():
            _tighten_mode(target)
            return
        self._parsed = None
        _remove_stale_temporaries(target)
        try:
            atomic_write_bytes(
                target, new.encode("utf-8"), mode=0o600,
                temp_prefix=f"{target.name}{COMPANION_INFIX}{_TEMP_TAG}",
            )
        except OSError as exc:
            raise StoreError(f"{self.path}: cannot write: {exc.strerror or type(exc).__name__}") from None
        appended = _appended_bindings(old, bindings, new)
        if appended is not None:
            self._parsed = (new, appended)

    def __repr__(self) -> str:
        return f"DotenvStore({str(self.path)!r})"


def _remove_stale_temporaries(target: Path) -> None:
    """Delete temporaries a killed writer left beside ``target`` (they may hold every key).

    Called under the store's lock: a writer holds the lock for as long as its temporary
    exists, so any temporary seen here is stale. Names of earlier versions are swept too.
    """
    patterns = (f"{target.name}{COMPANION_INFIX}{_TEMP_TAG}*", f".{target.name}.*.ipykeyguard-tmp")
    for pattern in patterns:
        for stale in target.parent.glob(glob_escape(pattern)):
            try:
                if stale.is_file() and not stale.is_symlink():
                    stale.unlink()
            except OSError:
                pass  # not ours to remove, or already gone; git still ignores it


def glob_escape(pattern: str) -> str:
    """``pattern`` with the glob characters of a file name escaped, its ``*`` kept."""
    from glob import escape

    return "*".join(escape(part) for part in pattern.split("*"))


def _parse_dotenv(text: str) -> list:
    from dotenv.main import with_warn_for_invalid_lines
    from dotenv.parser import parse_stream

    return list(with_warn_for_invalid_lines(parse_stream(io.StringIO(text))))


def _appended_bindings(old: str, old_bindings: list, new: str) -> list | None:
    """The bindings of ``new`` without parsing it whole, when ``new`` is ``old`` plus lines.

    python-dotenv parses a binding at a time, each ending at the end of its line, so when
    ``old`` parsed without an invalid statement and ends with a newline, the parse of
    ``old + more`` is the parse of ``old`` followed by that of ``more``. (An invalid statement
    could be an unclosed quote that a later line would close; then nothing is assumed.)
    Blank lines at the end of ``old`` stay a binding of their own here, where a whole parse
    would count them as the start of the next binding: the keys, values and text are the same.

    Returns:
        The bindings, or ``None`` when ``new`` must be parsed whole.
    """
    if not new.startswith(old) or (old and not old.endswith("\n")) or any(b.error for b in old_bindings):
        return None
    return old_bindings + _parse_dotenv(new[len(old):])


def _tighten_mode(path: Path) -> None:
    try:
        if stat.S_IMODE(path.stat().st_mode) != 0o600:
            os.chmod(path, 0o600)
    except OSError as exc:
        raise StoreError(f"{path}: cannot set mode 0600: {exc.strerror or type(exc).__name__}") from None


def _binding_line(name: str, value: str) -> str:
    try:
        return f"{name}={quote_dotenv_value(value)}\n"
    except StoreError as exc:
        raise StoreError(f"{name}: {exc}") from None


def _set_lines(bindings, values: Mapping[str, str]) -> str:
    """The file text with each name in ``values`` set: its (first) binding replaced in place,
    later duplicates dropped (python-dotenv would let them win), new names appended."""
    out: list[str] = []
    done: set[str] = set()
    for binding in bindings:
        original = binding.original.string
        key = binding.key
        if key is not None and key in values:
            if key in done:
                continue
            done.add(key)
            # A binding's text starts with the blank lines before it: keep them.
            rest = original.lstrip()
            leading = original[: len(original) - len(rest)]
            export = "export " if rest.startswith("export") else ""
            out.append(f"{leading}{export}{_binding_line(key, values[key])}")
            continue
        out.append(original)
    text = "".join(out)
    missing = [k for k in values if k not in done]
    if missing:
        if text and not text.endswith("\n"):
            text += "\n"
        text += "".join(_binding_line(k, values[k]) for k in missing)
    return text


def _drop_lines(bindings, name: str) -> str:
    return "".join(b.original.string for b in bindings if b.key != name)


# -- .gitignore --------------------------------------------------------------------------------
def _git(args: list[str], cwd: Path) -> subprocess.CompletedProcess | None:
    """Run git, or return ``None`` when git is not installed."""
    exe = shutil.which("git")
    if exe is None:
        return None
    return subprocess.run(
        [exe, *args], cwd=cwd, capture_output=True, text=True, timeout=30,
        env={**os.environ, "GIT_OPTIONAL_LOCKS": "0"},
    )


def _work_tree(directory: Path) -> Path | None:
    """The root of the git work tree holding ``directory``, or ``None``."""
    result = _git(["rev-parse", "--show-toplevel"], directory)
    if result is not None:
        if result.returncode != 0:
            return None
        return Path(result.stdout.strip())
    for folder in (directory, *directory.parents):  # no git binary: look for the marker
        if (folder / ".git").exists():
            return folder
    return None


_ENV_PATTERNS = {".env", "/.env", "**/.env", "*.env", "/*.env", "**/*.env", ".env*", "*.env*"}


def _ensure_git_ignored(env_path: Path) -> None:
    """Add ``env_path`` to the nearest ``.gitignore`` when it is inside a git work tree and not
    ignored yet; refuse a file that git tracks.

    Raises:
        StoreError: git tracks the file, or the ``.gitignore`` could not be written.
    """
    directory = env_path.parent
    root = _work_tree(directory)
    if root is None:
        return
    rel_name = env_path.name
    tracked = _git(["ls-files", "--error-unmatch", "--", rel_name], directory)
    if tracked is not None and tracked.returncode == 0:
        raise StoreError(
            f"{env_path}: git tracks this file, so a key written there would be committed; "
            f"untrack it first ('git rm --cached {rel_name}')"
        )
    # The file and its companions (lock, temporaries: a killed writer's temporary holds every
    # key) must both be ignored; one check-ignore call answers for both.
    probe = f"{rel_name}{COMPANION_INFIX}{_TEMP_TAG}probe"
    ignored = _git(["check-ignore", "--", rel_name, probe], directory)
    if ignored is not None and ignored.returncode in (0, 1):
        already = set(ignored.stdout.splitlines())
    else:
        already = set()
    wanted = [name for name in (rel_name, probe) if name not in already]
    if not wanted:
        return
    # The nearest existing .gitignore between the file and the work tree root, else a new one
    # beside the file.
    gitignore = directory / ".gitignore"
    resolved_root = root.resolve()
    for folder in (directory, *directory.parents):
        if (folder / ".gitignore").is_file():
            gitignore = folder / ".gitignore"
            break
        if folder.resolve() == resolved_root:
            break
    try:
        existing = gitignore.read_text(encoding="utf-8") if gitignore.exists() else ""
    except (OSError, UnicodeDecodeError) as exc:
        raise StoreError(f"{gitignore}: cannot read: {exc.strerror if isinstance(exc, OSError) else 'not UTF-8'}") from None
    if gitignore.parent.resolve() == directory.resolve():
        prefix = ""
    else:
        prefix = "/" + directory.resolve().relative_to(gitignore.parent.resolve()).as_posix() + "/"
    lines = {line.strip() for line in existing.splitlines()}
    entries = []
    if rel_name in wanted:
        entry = prefix + rel_name
        if not (entry in lines or (rel_name == ".env" and lines & _ENV_PATTERNS) or (
            rel_name.endswith(".env") and lines & {"*.env", "/*.env", "**/*.env"}
        )):
            entries.append(entry)
    if probe in wanted:
        entry = prefix + companion_pattern(rel_name)
        if entry not in lines and not (lines & {".env*", "*.env*"}):
            entries.append(entry)
    if not entries:
        return  # already there (git unavailable, or a pattern git would honour anyway)
    if existing and not existing.endswith("\n"):
        existing += "\n"
    new = existing + "# secrets moved out of notebooks by ipykeyguard (and its lock and temporary files)\n"
    new += "".join(entry + "\n" for entry in entries)
    try:
        atomic_write_bytes(gitignore, new.encode("utf-8"), mode=None if gitignore.exists() else 0o644)
    except OSError as exc:
        raise StoreError(f"{gitignore}: cannot write: {exc.strerror or type(exc).__name__}") from None


@contextlib.contextmanager
def _held_file_lock(path: Path, who: str) -> Iterator[None]:
    """Hold the OS file lock at ``path`` through ``filelock`` (re-entrant within a thread; other
    threads and processes wait up to :data:`LOCK_TIMEOUT_SECONDS`).

    Raises:
        StoreError: the lock file cannot be created, or the wait timed out (``who`` names the store).
    """
    import filelock

    lock = filelock.FileLock(path, timeout=LOCK_TIMEOUT_SECONDS, mode=0o600, is_singleton=True)
    try:
        lock.acquire()
    except filelock.Timeout:
        raise StoreError(f"{who}: another process has held its lock for {LOCK_TIMEOUT_SECONDS:.0f} s; not written") from None
    except OSError as exc:
        raise StoreError(f"{who}: cannot lock: {exc.strerror or type(exc).__name__}") from None
    try:
        yield
    finally:
        lock.release()


# -- keyring -----------------------------------------------------------------------------------
_INDEX_ENTRY = "__ipykeyguard_index__"


class KeyringStore:
    """Keys in the OS keyring, one entry per name under ``service`` plus an index of names."""

    kind = "keyring"

    def __init__(self, service: str = "ipykeyguard") -> None:
        try:
            import keyring  # noqa: F401
        except ImportError:
            raise StoreError(
                "the keyring store needs the 'keyring' package (pip install 'ipykeyguard[keyring]')"
            ) from None
        self.service = service
        self.description = f"keyring (service {service!r})"
        self._lock = threading.Lock()

    def _error(self, action: str, name: str, exc: BaseException, secret: str | None = None) -> StoreError:
        detail = str(exc)
        if secret and shares_a_secret_window(detail, secret):
            detail = ""  # a backend echoed (part of) the value: say nothing of it
        return StoreError(f"keyring: cannot {action} {name}: {type(exc).__name__}{': ' + detail if detail else ''}")

    def _lock_path(self) -> Path:
        from .ledger import _user_data_dir

        digest = hashlib.sha256(self.service.encode("utf-8")).hexdigest()[:16]
        return _user_data_dir() / "ipykeyguard" / f"keyring-{digest}.{_LOCK_TAG}"

    @contextlib.contextmanager
    def _process_lock(self) -> Iterator[None]:
        """An OS file lock per service (in the user data folder), held across each read-modify-
        write of the index and the clash check of :meth:`put`: the keyring has no transactions,
        so two processes (a kernel and ``clean``) adding names at once each wrote an index
        without the other's name, and a key no listing showed was as good as lost."""
        path = self._lock_path()
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise StoreError(f"{self.description}: cannot lock {path}: {exc.strerror or type(exc).__name__}") from None
        with _held_file_lock(path, self.description):
            yield

    def _index(self) -> list[str]:
        import keyring
        from keyring.errors import KeyringError

        try:
            raw = keyring.get_password(self.service, _INDEX_ENTRY)
        except KeyringError as exc:
            raise self._error("read", "the index", exc) from None
        if not raw:
            return []
        return [n for n in raw.split("\n") if is_valid_name(n)]

    def _set_index(self, names: list[str]) -> None:
        import keyring

        keyring.set_password(self.service, _INDEX_ENTRY, "\n".join(sorted(set(names))))

    def get(self, name: str) -> str | None:
        import keyring
        from keyring.errors import KeyringError

        try:
            return keyring.get_password(self.service, name)
        except KeyringError as exc:
            raise self._error("read", name, exc) from None

    def items(self) -> dict[str, str]:
        out = {}
        for name in self._index():
            value = self.get(name)
            if value is not None:
                out[name] = value
        return out

    def put(self, values: Mapping[str, str], *, overwrite: bool = True) -> None:
        """Set every value, then the index; on any failure restore the earlier values.

        Raises:
            NameTaken: ``overwrite`` is false and a name holds another value.
            StoreError: nothing was kept.
        """
        import keyring
        from keyring.errors import KeyringError, PasswordDeleteError

        _check_values(values)
        if not values:
            return
        with self._lock, self._process_lock():
            index = self._index()
            previous = {name: self.get(name) for name in values}
            if not overwrite:
                clash = sorted(n for n, v in values.items() if previous[n] not in (None, v))
                if clash:
                    raise NameTaken(self.description, clash)
            written: list[str] = []
            try:
                for name, value in values.items():
                    try:
                        keyring.set_password(self.service, name, value)
                    except KeyringError as exc:
                        raise self._error("store", name, exc, value) from None
                    written.append(name)
                try:
                    self._set_index(index + list(values))
                except KeyringError as exc:
                    raise self._error("store", "the index", exc) from None
            except StoreError:
                for name in written:  # roll back what was set
                    try:
                        if previous[name] is None:
                            keyring.delete_password(self.service, name)
                        else:
                            keyring.set_password(self.service, name, previous[name])
                    except (KeyringError, PasswordDeleteError):
                        pass  # best effort; the caller is told the put failed either way
                raise

    def delete(self, name: str) -> None:
        import keyring
        from keyring.errors import KeyringError, PasswordDeleteError

        with self._lock, self._process_lock():
            try:
                keyring.delete_password(self.service, name)
            except PasswordDeleteError:
                pass  # not there
            except KeyringError as exc:
                raise self._error("delete", name, exc) from None
            index = self._index()
            if name in index:
                try:
                    self._set_index([n for n in index if n != name])
                except KeyringError as exc:
                    raise self._error("store", "the index", exc) from None

    def __repr__(self) -> str:
        return f"KeyringStore(service={self.service!r})"


# -- factory -----------------------------------------------------------------------------------
def open_store(
    kind: str,
    *,
    directory: str | Path | None = None,
    path: str | Path | None = None,
    service: str = "ipykeyguard",
) -> SecretStore:
    """Open a store by kind.

    Args:
        kind: ``dotenv``, ``keyring``, ``memory`` or ``none``.
        directory: For ``dotenv``: the folder whose ``.env`` is used (default: the current one).
        path: For ``dotenv``: the exact file (overrides ``directory``).
        service: For ``keyring``: the service name entries are kept under.

    Returns:
        The store. Opening reads and writes nothing.

    Raises:
        StoreError: unknown kind, or the keyring package is missing.
    """
    if kind == "dotenv":
        if path is None:
            path = Path(directory if directory is not None else ".") / ".env"
        return DotenvStore(path)
    if kind == "keyring":
        return KeyringStore(service)
    if kind == "memory":
        return MemoryStore()
    if kind == "none":
        return NullStore()
    raise StoreError(f"unknown store {kind!r} (expected one of: {', '.join(STORE_KINDS)})")


def store_lock(store: SecretStore) -> contextlib.AbstractContextManager:
    """The lock to hold while choosing names from ``store`` and storing them: the ``.env``'s OS
    file lock for a dotenv store, nothing for the others (memory and none are private to the
    process; the keyring store serialises its own writes within the process and refuses a
    clashing name with :class:`NameTaken`).

    Raises:
        StoreError: on entering, the lock could not be taken.
    """
    lock = getattr(store, "lock", None)
    return lock() if callable(lock) else contextlib.nullcontext()


def taken_names(store: SecretStore) -> dict[str, str]:
    """Names already used in ``store`` and the fingerprints of their values, for
    ``rewrite_source(taken=...)``: a key already stored reuses its name, another value under the
    same name gets a suffix.

    Raises:
        StoreError: the store could not be read.
    """
    return {name: fingerprint(value) for name, value in store.items().items()}
