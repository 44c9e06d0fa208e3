"""``ipykeyguard clean PATH...``: move code keys into a store and mask keys everywhere else.

Notebooks: keys in code cells become ``os.environ["NAME"]`` lookups and the keys go to the store
(``--store dotenv``: the ``.env`` beside each notebook; ``keyring``; ``none``: not kept anywhere,
the code is rewritten all the same); keys in markdown, raw cells, outputs, tracebacks, widget
state, metadata and attachments are masked. Other text files are masked. Every key removed from
a file (moved or masked) is stored under the name its lookup or mask shows, unless ``--store
none``. What was done is printed by name, never by value.

Guarantees:

- The key is stored *before* the file is rewritten; if storing fails the file is untouched.
  With ``--store dotenv`` the keys of several notebooks of one directory (up to
  :data:`_BATCH_FILES`) go to the ``.env`` in one write, then those notebooks are written;
  a value no ``.env`` can hold fails its own notebook only (checked before the batch).
- A file that changed after it was read (a save from Jupyter meanwhile) is not overwritten:
  an error says so, and the next run cleans the new content.
- Files are replaced atomically (temporary file in the same directory, fsync, rename) with their
  permission bits kept: a crash leaves the old or the new file, never a mix. Each directory
  written to is fsynced once at the end of the run, which makes the renames durable (a power
  loss before that may bring back an old file, never a torn one).
- ``--jobs N`` cleans in N processes without racing on a store: with ``--store dotenv`` the
  notebooks of one directory (one ``.env``) are cleaned in order by one process, as a serial run
  would; with ``keyring`` everything stays in one process. Output comes in the same order.
  Under :data:`PARALLEL_MIN_BYTES` of files in all it stays in one process (workers would
  cost more to start than they save).
- A file with nothing to clean is not written at all (byte for byte the same, mtime too). A
  changed notebook keeps its nbformat, its indentation, its key order (Jupyter's sorted keys, or
  whatever order the file had), its non-ASCII text and line endings.
- Bad input (broken JSON, nbformat 3, not UTF-8, over ``max-file-size``, read-only, missing): a
  message on stderr, exit 2, that file untouched, the other files still processed.
- A symbolic link named on the command line is refused (exit 2): cleaning writes both the file
  and a ``.env`` beside it, and for a link "beside" is ambiguous; clean the target instead.
  Links met inside a directory are not followed (as in ``scan``).
- Files whose job is to hold secrets (``.env``, ``.envrc``, ``.streamlit/secrets.toml``,
  ``.aws/credentials``, ``.netrc``, ...: ``ipykeyguard/storage/secret_files.toml``) are never
  cleaned: skipped in a directory, an error (exit 2) when named on the command line.
- Jupyter's ``.ipynb_checkpoints`` folders are cleaned too (the old, leaky copy lives there);
  a checkpoint's keys go to the ``.env`` of its notebook's folder.

Exit status: 0 nothing changed; 1 something changed (or would, with ``--dry-run`` / ``--check``);
2 an error in any file (it wins). With ``--stdin`` (a git clean filter) the cleaned text goes to
stdout and the status is 0 on success, changed or not (git treats any other status as a filter
failure), unless ``--check`` is also given.

The threshold defaults to ``likely`` (or the config's ``min-confidence`` when higher): a false
rewrite breaks the user's program, so ``possible`` findings are reported, not changed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import stat
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

if TYPE_CHECKING:  # pragma: no cover
    from ..transforms.clean import CleanReport
    from ..engine.config import Config
    from .files import Target
    from ..engine.scan import Scanner
    from ..storage.store import SecretStore

__all__ = ["add_parser", "run", "serialize_like", "is_store_file"]

_CONFIDENCES = ("possible", "likely", "certain")
_STORES = ("dotenv", "keyring", "none")
_BOM = b"\xef\xbb\xbf"


def add_parser(subparsers) -> None:
    """Register ``clean`` with the top-level parser."""
    parser = subparsers.add_parser(
        "clean",
        help="move keys out of notebooks into .env and mask them everywhere else",
        description=(
            "Rewrite keys in notebook code cells into os.environ lookups (the keys go to the store), "
            "mask keys in outputs, markdown, metadata and text files. Exit 0 when nothing changed, "
            "1 when something changed (or would), 2 on any error."
        ),
    )
    parser.add_argument("paths", nargs="*", metavar="PATH", help="notebooks, text files or directories")
    parser.add_argument("--dry-run", action="store_true", help="show what would change (names only); write nothing")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if anything would change")
    parser.add_argument(
        "--store", choices=_STORES, default="dotenv",
        help="where moved keys go: dotenv (.env beside each notebook, default), keyring, none (not kept)",
    )
    parser.add_argument("--stdin", action="store_true", help="read one file from stdin, write the cleaned file to stdout")
    parser.add_argument("--stdin-filename", metavar="NAME", help="the name of the stdin file (decides notebook or text, and where .env is)")
    parser.add_argument(
        "--textconv", action="store_true",
        help="print the cleaned version of the one PATH given (for git diff textconv); write nothing, store nothing",
    )
    parser.add_argument(
        "--min-confidence", choices=_CONFIDENCES, default=None,
        help="act on findings at least this sure (default: likely, or the config's min-confidence if higher)",
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--config", metavar="PYPROJECT", help="read [tool.ipykeyguard] from this pyproject.toml")
    source.add_argument("--isolated", action="store_true", help="ignore every configuration file")
    parser.add_argument("--max-file-size", type=int, default=None, metavar="BYTES", help="refuse larger files (exit 2)")
    parser.add_argument("--quiet", "-q", action="store_true", help="print errors only")
    parser.add_argument(
        "--jobs", "-j", type=_jobs, default=1, metavar="N",
        help=(
            "clean with up to N processes (default: 1; 0: one per CPU); under 8 MiB of files in "
            "all, one process. With --store dotenv the notebooks of one directory share one "
            "process (it owns their .env); with --store keyring everything runs in one process"
        ),
    )
    parser.set_defaults(func=run)


def _jobs(text: str) -> int:
    from .scan import _non_negative_int

    return _non_negative_int(text)


# -- helpers ------------------------------------------------------------------------------------


def is_store_file(path: str) -> bool:
    """True for files whose job is to hold secrets (``.env``, ``.envrc``, ``.aws/credentials``,
    ...: the list in ``ipykeyguard/storage/secret_files.toml``)."""
    from ..storage.secret_files import is_secret_store

    return is_secret_store(path)


def serialize_like(nb: dict, raw: bytes) -> bytes:
    """Serialise ``nb`` in the format of ``raw``, the bytes the original notebook was parsed from.

    Key order: the file's own. ``json.loads`` keeps it and cleaning only replaces values, so
    dumping without sorting reproduces it exactly, whether it was Jupyter's sorted order or
    another tool's. Indentation comes from :func:`notebook.detect_indent`; non-ASCII text stays
    as it was (raw UTF-8, or ``\\uXXXX`` escapes when the file used them); compact separators,
    a BOM, CRLF line endings and the final newline are kept.

    Returns:
        The new file's bytes.
    """
    from ..transforms.notebook import detect_indent

    bom = raw.startswith(_BOM)
    body = raw[3:] if bom else raw
    crlf = b"\r\n" in body[:65536]
    stripped = body.rstrip(b"\r\n")
    trailing = body[len(stripped):].decode("ascii").replace("\r\n", "\n")
    indent = detect_indent(body)
    # Files with no raw non-ASCII byte either escaped it or had none; escaping keeps both exact.
    ensure_ascii = body.isascii()
    separators = None
    if indent is None:
        colon = body.find(b'":')
        if colon >= 0 and body[colon + 2 : colon + 3] != b" ":
            separators = (",", ":")
    if indent is not None:
        out = _dumps_indented(nb, " " * indent, ensure_ascii) + trailing
    else:
        # Compact output already takes json's C encoder.
        out = json.dumps(nb, sort_keys=False, ensure_ascii=ensure_ascii, separators=separators) + trailing
    if crlf:
        out = out.replace("\n", "\r\n")
    data = out.encode("utf-8")
    return _BOM + data if bom else data


class _NotPlainJSON(Exception):
    """A value :func:`_dumps_indented` leaves to :func:`json.dumps` (a subclass, a tuple, ...)."""


def _dumps_indented(nb: dict, indent: str, ensure_ascii: bool) -> str:
    """``json.dumps(nb, indent=indent, ensure_ascii=ensure_ascii)``, byte for byte, faster.

    With ``indent`` set, :mod:`json` falls back to its pure-Python encoder (a generator per
    container); on notebooks that was most of the cost of writing one. This writes into one
    list and encodes strings with json's own C string encoders, and a list of strings (lines
    of a source or an output, the common case) in one ``join``. Any value that is not plain
    JSON-shaped data (a dict or list subclass, a tuple, a non-string key) is handed to
    :func:`json.dumps` itself, so the output never differs from it (a test checks both).
    """
    from json.encoder import encode_basestring, encode_basestring_ascii

    encode = encode_basestring_ascii if ensure_ascii else encode_basestring
    pieces: list[str] = []
    append = pieces.append
    infinity = float("inf")

    def emit(value, newline: str) -> None:
        # ``newline`` is "\n" plus the indentation of ``value``'s own line.
        kind = type(value)
        if kind is str:
            append(encode(value))
        elif kind is dict:
            if not value:
                append("{}")
                return
            inner = newline + indent
            separator = "{" + inner
            for key, item in value.items():
                if type(key) is not str:
                    raise _NotPlainJSON
                append(separator)
                append(encode(key))
                append(": ")
                emit(item, inner)
                separator = "," + inner
            append(newline + "}")
        elif kind is list:
            if not value:
                append("[]")
                return
            inner = newline + indent
            append("[" + inner)
            try:
                # Lines of a source or an output: all strings, encoded and joined in C (the
                # encoder raises TypeError on anything else; json.dumps writes a str subclass
                # in a list just as a str).
                append(("," + inner).join(map(encode, value)))
            except TypeError:
                for index, item in enumerate(value):
                    if index:
                        append("," + inner)
                    emit(item, inner)
            append(newline + "]")
        elif value is None:
            append("null")
        elif value is True:
            append("true")
        elif value is False:
            append("false")
        elif kind is int:
            append(int.__repr__(value))
        elif kind is float:
            if value != value:
                append("NaN")
            elif value == infinity:
                append("Infinity")
            elif value == -infinity:
                append("-Infinity")
            else:
                append(float.__repr__(value))
        else:
            raise _NotPlainJSON

    try:
        emit(nb, "\n")
    except _NotPlainJSON:
        return json.dumps(nb, indent=indent, sort_keys=False, ensure_ascii=ensure_ascii)
    return "".join(pieces)


class _LazyTaken(Mapping):
    """The store's ``taken_names``, read only if the cleaner asks (a notebook with no key never
    touches its ``.env``), after ``before_read`` (which takes the store's lock)."""

    def __init__(self, store: "SecretStore", pending: Mapping[str, str] | None = None, before_read=None) -> None:
        self._store = store
        self._pending = pending or {}
        self._data: dict[str, str] | None = None
        self._before_read = before_read

    def _load(self) -> dict[str, str]:
        if self._data is None:
            from ..storage.store import taken_names

            if self._before_read is not None:
                self._before_read(self._store)

            # Names given to keys of earlier notebooks whose .env write is still pending.
            self._data = {**taken_names(self._store), **self._pending}
        return self._data

    def __getitem__(self, key: str) -> str:
        return self._load()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._load())

    def __len__(self) -> int:
        return len(self._load())


class _FileError(Exception):
    """One file could not be cleaned; the message names the path and the reason, no content."""


@dataclass
class _Outcome:
    path: str
    changed: bool = False
    error: str | None = None
    lines: tuple[str, ...] = ()
    #: The directory of a file replaced without a directory fsync (one fsync per directory at the end).
    written_in: str | None = None


@dataclass(repr=False)
class _Pending:
    """A cleaned notebook waiting for its keys to be stored (with those of its batch)."""

    path: str
    directory: str
    new: bytes
    read_stat: os.stat_result
    report: "CleanReport"
    store: "SecretStore"
    line: str


#: With --store dotenv, the keys of up to this many notebooks of one directory (or of this many
#: bytes of their new content) go to the .env in one atomic write, before those notebooks are
#: written: one .env rewrite and two fsyncs per batch instead of per notebook.
_BATCH_FILES = 64
_BATCH_BYTES = 64 << 20


def _same_file(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_dev, a.st_ino, a.st_size, a.st_mtime_ns) == (b.st_dev, b.st_ino, b.st_size, b.st_mtime_ns)


def _build_config(args: argparse.Namespace) -> "Config":
    from .scan import build_config

    scan_args = argparse.Namespace(
        paths=list(args.paths) or ([args.stdin_filename] if args.stdin_filename else []),
        isolated=args.isolated,
        config=args.config,
        min_confidence=None,
        max_file_size=args.max_file_size,
        baseline=None,
    )
    return build_config(scan_args)


def _threshold(args: argparse.Namespace, config: "Config"):
    from ..engine.findings import Confidence

    if args.min_confidence is not None:
        return Confidence.parse(args.min_confidence)
    return max(Confidence.LIKELY, config.min_confidence)


def _details(report: "CleanReport") -> list[str]:
    """Diff-like lines for ``--dry-run``: where each key is and what happens to it; names only."""
    from ..transforms.notebook import CODE_SOURCE_FIELDS

    moved_fingerprints = {fp: name for name, fp in report.moved.items()}
    lines = []
    for f in report.findings:
        loc = f.location
        where = f"line {loc.line} col {loc.column}"
        if loc.field is not None:
            where = (f"cell {loc.cell} " if loc.cell is not None else "") + f"{loc.field} {where}"
        name = moved_fingerprints.get(f.fingerprint)
        action = f'-> os.environ["{name}"]' if name and loc.field in CODE_SOURCE_FIELDS else f"-> {f.mask}"
        lines.append(f"  {where}: {f.rule} ({f.confidence}) {action}")
    for f in report.below_threshold:
        loc = f.location
        where = (f"cell {loc.cell} " if loc.cell is not None else "") + (f"{loc.field} " if loc.field else "")
        lines.append(f"  {where}line {loc.line} col {loc.column}: {f.rule} ({f.confidence}) left unchanged")
    return lines


def _check_writable(path: str) -> os.stat_result:
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        raise _FileError(f"{path}: is a symbolic link; clean the file it points to instead")
    # Root passes os.access for every file, so the write bits are checked too: a file its owner
    # made read-only is left alone (os.replace would otherwise happily swap it).
    if not os.access(path, os.W_OK) or not st.st_mode & 0o222:
        raise _FileError(f"{path}: is read-only; not changed")
    if not os.access(os.path.dirname(os.path.abspath(path)), os.W_OK | os.X_OK):
        raise _FileError(f"{path}: its directory is not writable; not changed")
    return st


def _write(path: str, directory: str, new: bytes, checked: os.stat_result, line: str) -> _Outcome:
    """Replace ``path`` with ``new`` (atomically, its mode kept) unless it changed since ``checked``."""
    from ..storage.store import atomic_write_bytes

    try:
        if not _same_file(os.lstat(path), checked):
            return _Outcome(path, error=f"{path}: changed while being cleaned; not changed (run clean again)")
        atomic_write_bytes(path, new, mode=stat.S_IMODE(checked.st_mode), sync_directory=False)
    except OSError as exc:
        return _Outcome(path, error=f"{path}: cannot write: {exc.strerror or type(exc).__name__}; not changed")
    return _Outcome(path, changed=True, lines=(line,), written_in=directory)


# -- one file -----------------------------------------------------------------------------------


class _Cleaner:
    def __init__(self, args: argparse.Namespace, config: "Config") -> None:
        from ..engine.scan import scanner_for

        self.args = args
        self.config = config
        self.scanner: "Scanner" = scanner_for(config)
        self.threshold = _threshold(args, config)
        self.write = not (args.dry_run or args.check)
        self._keyring: "SecretStore | None" = None
        self._dotenv: dict[str, "SecretStore"] = {}
        self._locks = contextlib.ExitStack()
        self._locked: set[int] = set()

    def _lock_store(self, store: "SecretStore") -> None:
        """Take ``store``'s lock before its names are read, and keep it until the keys named from
        them are stored (:meth:`_release_locks` after each batch): another process cleaning or
        saving into the same ``.env`` waits instead of giving the same name to another key."""
        if not self.write or id(store) in self._locked:
            return
        from ..storage.store import store_lock

        self._locks.enter_context(store_lock(store))
        self._locked.add(id(store))

    def _release_locks(self) -> None:
        self._locked.clear()
        self._locks.close()

    def store_for(self, directory: str) -> "SecretStore":
        from ..storage.store import DotenvStore, open_store

        kind = self.args.store
        if kind == "keyring":
            if self._keyring is None:
                self._keyring = open_store("keyring")
            return self._keyring
        if kind == "dotenv":
            # One store object per directory for the whole run: it keeps the parsed .env
            # (checked against the file's text at each use) and asks git about the file once.
            store = self._dotenv.get(directory)
            if store is None:
                store = self._dotenv[directory] = DotenvStore(Path(directory) / ".env", git_check_once=True)
            return store
        return open_store(kind, directory=directory)

    def clean_loaded(
        self, path: str, raw: bytes, notebook: dict | None, text: str | None, store_dir: str,
        pending_names: Mapping[str, str] | None = None,
    ):
        """Clean one file's content. Returns ``(new bytes or None when unchanged, report, store)``."""
        from ..storage import ledger
        from ..transforms.clean import clean_notebook, clean_text

        if notebook is not None:
            store = self.store_for(store_dir)
            taken = _LazyTaken(store, pending_names, self._lock_store) if store.kind != "none" else {}
            new_nb, report = clean_notebook(
                notebook, scanner=self.scanner, taken=taken, move_code_keys=True, min_confidence=self.threshold
            )
            if not report.changed:
                return None, report, store
            if self.write:  # the exposure ledger: what this clean moved or masked (never raises)
                ledger.record_clean("clean", os.path.abspath(path), report)
            return serialize_like(new_nb, raw), report, store
        # A key masked in a text file is stored too (under the name its mask shows): a key
        # removed from a file and kept nowhere would be a key lost.
        store = self.store_for(store_dir)
        taken = _LazyTaken(store, pending_names, self._lock_store) if store.kind != "none" else None
        new_text, report = clean_text(text or "", scanner=self.scanner, min_confidence=self.threshold, taken=taken)
        if not report.changed:
            return None, report, store
        if self.write:
            ledger.record_clean("clean", os.path.abspath(path), report)
        data = new_text.encode("utf-8")
        return (_BOM + data if raw.startswith(_BOM) else data), report, store

    def clean_group(self, items: list[tuple[int, "Target"]]) -> Iterator[tuple[int, _Outcome]]:
        """Clean ``(index, target)`` items in order; yields ``(index, outcome)`` in the same order.

        With ``--store dotenv``, notebooks of one directory whose keys move are committed in
        batches (see :data:`_BATCH_FILES`): their keys go to the ``.env`` in one write, then the
        notebooks are written. Each notebook's keys are still stored before it is rewritten,
        and a later notebook of the batch sees the names the earlier ones took.
        """
        waiting: list[tuple[int, _Outcome | _Pending]] = []
        try:
            for index, target in items:
                batch = [item for _i, item in waiting if isinstance(item, _Pending)]
                if batch and (
                    len(batch) >= _BATCH_FILES
                    or sum(len(p.new) for p in batch) >= _BATCH_BYTES
                    or os.path.dirname(os.path.abspath(target.path)) != batch[0].directory
                ):
                    yield from self._commit(waiting)
                    waiting, batch = [], []
                pending_names = {name: fp for p in batch for name, fp in p.report.moved.items()}
                waiting.append((index, self._prepare(target, pending_names)))
                if not batch and not isinstance(waiting[-1][1], _Pending):
                    self._release_locks()
                    yield from waiting  # nothing waits for a store write: report at once
                    waiting = []
            yield from self._commit(waiting)
        finally:
            self._release_locks()

    def _prepare(self, target: "Target", pending_names: Mapping[str, str]) -> "_Outcome | _Pending":
        """Read and clean one file; write it now, or return it to be written after its batch's
        keys are stored (``--store dotenv`` with keys moved out of code)."""
        from .files import FileReadError, read_target, store_directory
        from ..storage.store import StoreError, check_dotenv_values

        path = target.path
        try:
            read_stat = os.lstat(path)  # before reading: a save made while we clean is detected
        except OSError:
            read_stat = None  # read_target reports it
        try:
            loaded = read_target(target, max_file_size=self.config.max_file_size)
        except FileReadError as exc:
            return _Outcome(path, error=str(exc))
        if loaded.kind == "binary":
            return _Outcome(path)
        directory = os.path.dirname(os.path.abspath(path))
        try:
            new, report, store = self.clean_loaded(
                path, loaded.raw, loaded.notebook, loaded.text, store_directory(path), pending_names
            )
        except StoreError as exc:
            return _Outcome(path, error=f"{path}: {exc}; not changed")
        except RecursionError:
            return _Outcome(path, error=f"{path}: nested too deeply to clean; not changed")
        lines = _details(report) if self.args.dry_run else []
        if new is None:
            return _Outcome(path, lines=tuple(lines) if report.below_threshold else ())
        stored_in = self._stored_in(store, path)
        if not self.write:
            return _Outcome(path, changed=True, lines=(f"{path}: {report.summary(stored_in=stored_in, dry_run=True)}", *lines))
        line = f"{path}: {report.summary(stored_in=stored_in)}"
        try:
            st = _check_writable(path)
            if read_stat is None or not _same_file(st, read_stat):
                raise _FileError(f"{path}: changed while being cleaned; not changed (run clean again)")
            values = {name: secret.reveal() for name, secret in report.secrets.items()}
            if values and store is not None and store.kind == "dotenv":
                check_dotenv_values(values)  # a value the .env cannot hold fails this file alone
                return _Pending(path, directory, new, st, report, store, line)
            if values and store is not None and store.kind != "none":
                # The key goes to the store first: if that fails the notebook still holds it.
                store.put(values, overwrite=False)
        except _FileError as exc:
            return _Outcome(path, error=str(exc))
        except StoreError as exc:
            return _Outcome(path, error=f"{path}: cannot store keys: {exc}; not changed")
        except OSError as exc:
            return _Outcome(path, error=f"{path}: cannot check: {exc.strerror or type(exc).__name__}; not changed")
        return _write(path, directory, new, st, line)

    def _commit(self, waiting: list[tuple[int, "_Outcome | _Pending"]]) -> Iterator[tuple[int, _Outcome]]:
        """Store the keys of the waiting notebooks in one write, then write those notebooks."""
        from ..storage.store import StoreError

        batch = [item for _i, item in waiting if isinstance(item, _Pending)]
        failure: str | None = None
        if batch:
            values: dict[str, str] = {}
            for pending in batch:
                values.update({name: secret.reveal() for name, secret in pending.report.secrets.items()})
            try:
                batch[0].store.put(values, overwrite=False)
            except StoreError as exc:
                failure = str(exc)
        # The keys are stored (or not): the names read under the lock are spent.
        self._release_locks()
        for index, item in waiting:
            if isinstance(item, _Pending):
                if failure is not None:
                    item = _Outcome(item.path, error=f"{item.path}: cannot store keys: {failure}; not changed")
                else:
                    item = _write(item.path, item.directory, item.new, item.read_stat, item.line)
            yield index, item

    def _stored_in(self, store: "SecretStore | None", path: str) -> str | None:
        if store is None or store.kind == "none":
            return None
        if store.kind == "dotenv":
            env = Path(store.path)  # type: ignore[attr-defined]
            try:
                return os.path.relpath(env)
            except ValueError:
                return str(env)
        return store.description


# -- modes --------------------------------------------------------------------------------------


_worker_cleaner: _Cleaner | None = None


def _init_worker(args: argparse.Namespace, config: "Config") -> None:
    global _worker_cleaner
    _worker_cleaner = _Cleaner(args, config)


def _clean_group_in_worker(group: list[tuple[int, "Target"]]) -> list[tuple[int, _Outcome]]:
    assert _worker_cleaner is not None, "worker not initialised"
    return list(_worker_cleaner.clean_group(group))


def _work_groups(targets: list["Target"], args: argparse.Namespace, write: bool) -> list[list[tuple[int, "Target"]]]:
    """Split the targets into units that may run in parallel without racing on a store.

    A store is read (for the names already taken) and written per notebook, so two processes
    must never clean notebooks that share one: with ``--store dotenv`` each directory (one
    ``.env``) is one unit, cleaned in order by one process, exactly as a serial run would;
    with ``keyring`` (one store for everything) there is one unit. With ``none``, or when
    nothing is written (``--dry-run``, ``--check``), every file is its own unit.
    """
    from .files import store_directory

    indexed = list(enumerate(targets))
    if args.store == "none" or not write:
        return [[item] for item in indexed]
    if args.store == "keyring":
        return [indexed]
    by_directory: dict[str, list[tuple[int, "Target"]]] = {}
    for item in indexed:
        by_directory.setdefault(store_directory(item[1].path), []).append(item)
    return list(by_directory.values())


#: Below this many bytes in all, --jobs cleans in this process: starting workers (each imports
#: the cleaner and compiles the rules it meets) costs more than it saves on a few notebooks.
PARALLEL_MIN_BYTES = 8 << 20


def _total_size(targets: list["Target"]) -> int:
    total = 0
    for target in targets:
        try:
            total += os.stat(target.path).st_size
        except OSError:
            pass  # reported when the file is read
    return total


def _clean_all(targets: list["Target"], cleaner: _Cleaner, jobs: int) -> Iterator[_Outcome]:
    """Clean every target; outcomes come in target order (as each is done when serial)."""
    if jobs == 0:
        jobs = os.cpu_count() or 1
    groups = _work_groups(targets, cleaner.args, cleaner.write)
    jobs = min(jobs, len(groups))
    if jobs > 1 and _total_size(targets) < PARALLEL_MIN_BYTES:
        jobs = 1
    if jobs <= 1:
        for _index, outcome in cleaner.clean_group(list(enumerate(targets))):
            yield outcome
        return

    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    try:
        pool = ProcessPoolExecutor(max_workers=jobs, initializer=_init_worker, initargs=(cleaner.args, cleaner.config))
    except (NotImplementedError, OSError, ImportError):
        # No working process pool here (no sem_open, no /dev/shm): the pre-commit hook passes
        # --jobs 0, and cleaning in one process beats failing.
        for _index, outcome in cleaner.clean_group(list(enumerate(targets))):
            yield outcome
        return
    outcomes: dict[int, _Outcome] = {}
    chunksize = max(1, len(groups) // (jobs * 4))
    try:
        with pool:
            for done in pool.map(_clean_group_in_worker, groups, chunksize=chunksize):
                outcomes.update(done)
    except BrokenProcessPool:
        # Each file is replaced atomically, so every file is either cleaned or untouched; but
        # which ones is unknown here, and that must not read as success.
        raise _CLIError("a worker process died; some files may not have been cleaned (try --jobs 1)") from None
    for index in range(len(targets)):
        yield outcomes[index]


def _run_paths(args: argparse.Namespace, cleaner: _Cleaner) -> int:
    from .files import discover

    errors: list[str] = []
    paths = []
    for given in args.paths:
        if os.path.islink(given):
            errors.append(f"{given}: is a symbolic link; clean the file it points to instead")
        else:
            paths.append(given)
    found = discover(paths, cleaner.config)
    errors.extend(str(e) for e in found.errors)
    for store in found.secret_stores:
        # Masking a key in a file whose job is to hold it would destroy the only copy.
        if store.explicit:
            errors.append(f"{store.path}: is a secret store (its job is to hold keys); ipykeyguard never rewrites one")
    targets = found.targets
    changed = False
    written_in: dict[str, None] = {}
    try:
        for outcome in _clean_all(targets, cleaner, args.jobs):
            if outcome.error:
                errors.append(outcome.error)
            changed |= outcome.changed
            if outcome.written_in is not None:
                written_in[outcome.written_in] = None
            if outcome.lines and not args.quiet:
                print("\n".join(outcome.lines), flush=True)
    finally:
        from ..storage.store import fsync_directory

        # Each file was fsynced before its rename; one fsync per directory makes the renames
        # durable (instead of one per file: half the disk flushes on a many-notebook run).
        for directory in written_in:
            fsync_directory(directory)
    for message in errors:
        print(f"ipykeyguard: error: {message}", file=sys.stderr)
    if errors:
        return 2
    return 1 if changed else 0


def _decode_for_filter(raw: bytes, name: str, as_notebook: bool):
    """``(notebook, text)`` for stdin/textconv content; a broken notebook falls back to text.

    Raises:
        _FileError: the content is not UTF-8.
    """
    from ..transforms.notebook import NotebookError, parse_notebook

    if as_notebook:
        try:
            return parse_notebook(raw, name, old_formats=True), None
        except NotebookError as exc:
            if "not UTF-8" in str(exc):
                raise _FileError(str(exc)) from None
            # Still never pass a key through: mask it as plain text.
            print(f"ipykeyguard: warning: {exc}; cleaned as plain text", file=sys.stderr)
    body = raw[3:] if raw.startswith(_BOM) else raw
    try:
        return None, body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _FileError(f"{name}: not UTF-8 text (invalid byte at offset {exc.start})") from None


def _run_stdin(args: argparse.Namespace, cleaner: _Cleaner) -> int:
    from ..storage.store import StoreError

    name = args.stdin_filename or "<stdin>"
    limit = cleaner.config.max_file_size
    raw = sys.stdin.buffer.read(limit + 1)
    if len(raw) > limit:
        raise _CLIError(f"{name}: input is larger than max-file-size ({limit} bytes)")
    if args.stdin_filename:
        as_notebook = args.stdin_filename.lower().endswith(".ipynb")
    else:
        head = raw[:4096].lstrip(_BOM + b" \t\r\n")
        as_notebook = head.startswith(b"{") and b'"nbformat' in raw
    try:
        notebook, text = _decode_for_filter(raw, name, as_notebook)
        directory = os.path.dirname(os.path.abspath(args.stdin_filename)) if args.stdin_filename else os.getcwd()
        try:
            new, report, store = cleaner.clean_loaded(name, raw, notebook, text, directory)
            if new is not None and report.secrets and store is not None and store.kind != "none" and cleaner.write:
                store.put({n: s.reveal() for n, s in report.secrets.items()}, overwrite=False)
        finally:
            cleaner._release_locks()
    except _FileError as exc:
        raise _CLIError(str(exc)) from None
    except StoreError as exc:
        raise _CLIError(f"{name}: cannot store keys: {exc}") from None
    if not args.check:
        sys.stdout.buffer.write(raw if new is None else new)
        sys.stdout.buffer.flush()
    if new is not None and not args.quiet:
        print(f"ipykeyguard: {name}: {report.summary(stored_in=cleaner._stored_in(store, name))}", file=sys.stderr)
    if args.check:
        return 1 if new is not None else 0
    return 0


def _run_textconv(args: argparse.Namespace, cleaner: _Cleaner) -> int:
    if len(args.paths) != 1:
        raise _CLIError("--textconv takes exactly one file")
    path = args.paths[0]
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except OSError as exc:
        raise _CLIError(f"{path}: cannot read: {exc.strerror or type(exc).__name__}") from None
    # git hands textconv a temporary file: decide by content, not by name.
    head = raw[:4096].lstrip(_BOM + b" \t\r\n")
    as_notebook = path.lower().endswith(".ipynb") or (head.startswith(b"{") and b'"nbformat' in raw)
    try:
        notebook, text = _decode_for_filter(raw, path, as_notebook)
        new, _report, _store = cleaner.clean_loaded(path, raw, notebook, text, os.getcwd())
    except _FileError:
        # Fail closed: content we cannot scan is not shown.
        sys.stdout.write("ipykeyguard: not UTF-8 text; content not shown\n")
        return 0
    sys.stdout.buffer.write(raw if new is None else new)
    return 0


def _CLIError(message: str):
    from .app import CLIError

    return CLIError(message)


def run(args: argparse.Namespace) -> int:
    """Run ``ipykeyguard clean``; returns 0 (nothing changed), 1 (changed) or 2 (an error)."""
    if args.stdin and args.paths:
        raise _CLIError("give either --stdin or paths, not both")
    if args.textconv:
        args.store = "none"
        args.check = True  # never writes, never stores
    if not args.stdin and not args.paths:
        raise _CLIError("no paths given (use --stdin to read standard input)")
    config = _build_config(args)
    cleaner = _Cleaner(args, config)
    if args.textconv:
        return _run_textconv(args, cleaner)
    if args.stdin:
        return _run_stdin(args, cleaner)
    return _run_paths(args, cleaner)
