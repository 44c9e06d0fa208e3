"""The exposure ledger: where and when each key was seen or stopped, by fingerprint only.

"Has this key ever been exposed, and where?" is the question a person asks before deciding to
rotate it. The kernel, the save hook, ``clean`` and ``scan`` answer it as they go: each records
the keys it moved, masked or found as a row of (SHA-256 fingerprint, variable name, rule,
source, action, place, commit, time) in a small SQLite database. Never a value, nor any part of
one: the fingerprint is what findings already carry.

Where: ``$IPYKEYGUARD_LEDGER`` when set (a file path; ``off`` turns recording off, for tests
and for people who want no record), else ``exposures.sqlite3`` in the user data directory that
platformdirs would give (``~/.local/share/ipykeyguard`` on Linux). The file is created 0600 in a 0700
directory; SQLite gives its ``-wal``/``-shm`` files the same mode.

Concurrency: several kernels, a server and a CLI run write at once. The database runs in WAL
mode (readers never block the writer) with a busy timeout, and each record is one short
transaction, so writers queue for milliseconds instead of failing. First use (the switch to WAL
and the schema) and the rebuild of a corrupt file take locks SQLite's busy handler does not wait
for, so they run under a file lock (``exposures.sqlite3.lock``, via ``filelock``).

Failure: recording is best effort and never breaks a cell, a save or a scan. :func:`record`
never raises; a failure is reported once per process on the process's own stderr
(``sys.__stderr__``: the terminal for the CLI, the server's log for the save hook; ipykernel
forwards a kernel's fd 2 to the running cell's stderr, where it is one line, once). A database that is not SQLite or is corrupt is reported,
moved aside as ``exposures.sqlite3.corrupt-<time>`` (kept for inspection) and rebuilt empty.
"""

from __future__ import annotations

import os
import sqlite3
import sys
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Mapping

__all__ = [
    "LEDGER_ENV",
    "ACTIONS",
    "NEEDS_ROTATION",
    "Exposure",
    "KeyHistory",
    "Ledger",
    "LedgerError",
    "ledger_path",
    "record",
    "record_findings",
    "record_clean",
    "record_moves",
]

#: Environment variable naming the database file (``off`` disables recording).
LEDGER_ENV = "IPYKEYGUARD_LEDGER"
#: What a surface did with a key.
ACTIONS = ("moved", "masked", "blocked", "found", "exposed", "found in history", "rotated")
#: Actions after which the key must be rotated: it reached a saved output, an export or git.
NEEDS_ROTATION = frozenset({"exposed", "found in history"})
_BUSY_TIMEOUT_S = 30.0
#: ``PRAGMA user_version`` once the schema below exists (files from before it say 0).
_SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS exposures (
    fingerprint TEXT NOT NULL CHECK (length(fingerprint) = 64),
    name        TEXT NOT NULL DEFAULT '',
    rule        TEXT NOT NULL DEFAULT '',
    source      TEXT NOT NULL,
    action      TEXT NOT NULL,
    place       TEXT NOT NULL DEFAULT '',
    commit_sha  TEXT NOT NULL DEFAULT '',
    first_at    TEXT NOT NULL,
    last_at     TEXT NOT NULL,
    times       INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (fingerprint, name, rule, source, action, place, commit_sha)
);
CREATE INDEX IF NOT EXISTS exposures_name ON exposures (name);
"""
#: One row per (key, name, rule, source, action, place, commit): seeing the same key in the same
#: place again (a pre-commit scan on every commit) updates ``last_at`` and ``times``.
_UPSERT = (
    "INSERT INTO exposures (fingerprint, name, rule, source, action, place, commit_sha, first_at, last_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (fingerprint, name, rule, source, action, place, commit_sha) "
    "DO UPDATE SET last_at = excluded.last_at, times = times + 1"
)


class LedgerError(Exception):
    """The ledger cannot be used (unwritable directory, locked past the timeout, ...)."""


@dataclass(frozen=True)
class Exposure:
    """One sighting of one key. No value: ``fingerprint`` is the SHA-256 hex of the key.

    Attributes:
        fingerprint: SHA-256 hex of the secret (64 characters).
        name: The environment-variable name the key belongs under (``OPENAI_API_KEY``).
        rule: The rule that found it.
        source: Who saw it: ``kernel``, ``save``, ``clean``, ``scan``, ``scan --history``.
        action: What was done: one of :data:`ACTIONS`.
        place: Where: a file path (with ``:cell N``), or a folder for the kernel.
        commit: The introducing commit, for history findings.
    """

    fingerprint: str
    name: str | None
    rule: str | None
    source: str
    action: str
    place: str | None = None
    commit: str | None = None


@dataclass
class KeyHistory:
    """Everything the ledger knows about one key (one fingerprint)."""

    fingerprint: str
    names: list[str] = field(default_factory=list)
    rules: list[str] = field(default_factory=list)
    first_seen: str = ""
    last_seen: str = ""
    sightings: list[dict] = field(default_factory=list)
    rotated_at: str | None = None

    @property
    def needs_rotation(self) -> bool:
        """Exposed (saved output, export, git history) and no rotation recorded.

        Once rotated, a key is dead: later sightings of the same value (history keeps it
        forever) need nothing more; a new key has a new fingerprint.
        """
        return self.rotated_at is None and any(s["action"] in NEEDS_ROTATION for s in self.sightings)

    @property
    def status(self) -> str:
        """``ROTATE``, ``rotated``, or ``kept out`` (moved/masked before it reached disk)."""
        if self.needs_rotation:
            return "ROTATE"
        return "rotated" if self.rotated_at else "kept out"

    def to_dict(self) -> dict:
        """The JSON object for ``ipykeyguard exposures --format json``."""
        return {
            "fingerprint": self.fingerprint,
            "names": self.names,
            "rules": self.rules,
            "status": self.status,
            "first_seen": self.first_seen,
            "last_seen": self.last_seen,
            "rotated_at": self.rotated_at,
            "sightings": self.sightings,
        }


def ledger_path(env: Mapping[str, str] | None = None) -> Path | None:
    """The database file, or ``None`` when recording is off (``IPYKEYGUARD_LEDGER=off``)."""
    env = os.environ if env is None else env
    given = env.get(LEDGER_ENV)
    if given is not None:
        if given.strip().lower() in ("", "off", "0", "none"):
            return None
        return Path(given).expanduser()
    return _user_data_dir() / "ipykeyguard" / "exposures.sqlite3"


def _user_data_dir() -> Path:
    """The user data directory ``platformdirs.user_data_dir`` names (``$XDG_DATA_HOME`` or
    ``~/.local/share`` on Linux and other POSIX systems, ``~/Library/Application Support`` on
    macOS, ``%LOCALAPPDATA%`` on Windows), written out as :func:`ipykeyguard.engine.dbcache.cache_dir`
    is: importing platformdirs cost every ``scan`` that records a finding ~5 ms. The test
    suite checks the two agree."""
    if sys.platform == "win32":
        return Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support"
    xdg = os.environ.get("XDG_DATA_HOME", "").strip()
    return Path(xdg) if os.path.isabs(xdg) else Path.home() / ".local" / "share"  # relative: ignored, per the XDG spec


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def _initialised(conn: sqlite3.Connection) -> bool:
    """True when the file is in WAL mode and has this version's schema (reads only)."""
    mode = conn.execute("PRAGMA journal_mode").fetchone()
    version = conn.execute("PRAGMA user_version").fetchone()
    return bool(mode and str(mode[0]).lower() == "wal" and version and version[0] >= _SCHEMA_VERSION)


def _initialise(conn: sqlite3.Connection) -> None:
    """Switch to WAL and create the schema in one write transaction (caller holds the file lock)."""
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()
    if mode is None or str(mode[0]).lower() != "wal":
        raise sqlite3.OperationalError("could not switch the ledger to WAL mode")
    conn.execute("BEGIN IMMEDIATE")
    try:
        for statement in filter(str.strip, _SCHEMA.split(";")):
            conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _is_corrupt(exc: BaseException) -> bool:
    """True for "not a database" and "malformed" errors, not for "locked" or "cannot open"."""
    name = getattr(exc, "sqlite_errorname", None)  # Python 3.11+
    if name is not None:
        return name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB"))
    # OperationalError (locked, cannot open) subclasses DatabaseError but says nothing about
    # the file's content; NOTADB and CORRUPT arrive as DatabaseError itself.
    return type(exc) is sqlite3.DatabaseError


class Ledger:
    """The exposure database at ``path`` (created on first use).

    Args:
        path: The SQLite file; by default :func:`ledger_path`.

    Raises:
        LedgerError: recording is off (no path) and no path was given.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        chosen = Path(path) if path is not None else ledger_path()
        if chosen is None:
            raise LedgerError(f"the exposure ledger is off ({LEDGER_ENV}=off)")
        self.path = chosen
        self.warnings: list[str] = []
        self._file_lock = None

    @property
    def _lock(self):
        """Serialises first use and the corrupt-file rebuild across processes (``filelock``,
        reentrant). Imported on first need: most records find the file ready and never take it,
        and importing filelock costs a one-notebook ``scan`` about 14 ms."""
        if self._file_lock is None:
            from filelock import FileLock

            self._file_lock = FileLock(f"{self.path}.lock", timeout=_BUSY_TIMEOUT_S)
        return self._file_lock

    # -- opening, with the corrupt-file recovery ----------------------------------------------
    def _create_file(self) -> None:
        folder = self.path.parent
        if not folder.exists():
            folder.mkdir(parents=True, mode=0o700, exist_ok=True)
        # Create the file 0600 ourselves: sqlite3 would use the umask (often 0644).
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        os.close(fd)

    def _connect(self) -> sqlite3.Connection:
        self._create_file()
        conn = sqlite3.connect(self.path, timeout=_BUSY_TIMEOUT_S, isolation_level=None)
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(_BUSY_TIMEOUT_S * 1000)}")
            if not _initialised(conn):
                # Switching to WAL and creating the schema take locks SQLite's busy handler does
                # not wait for ("database is locked" at once when several processes use a new
                # file together), so first use is serialised by a file lock.
                with self._lock:
                    if not _initialised(conn):
                        _initialise(conn)
            conn.execute("PRAGMA synchronous = NORMAL")
        except BaseException:
            conn.close()
            raise
        return conn

    def _move_aside(self, exc: BaseException) -> None:
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
        aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}-{os.getpid()}")
        try:
            os.replace(self.path, aside)
        except FileNotFoundError:
            pass  # another process moved it first
        for suffix in ("-wal", "-shm"):
            try:
                os.replace(f"{self.path}{suffix}", f"{aside}{suffix}")
            except FileNotFoundError:
                pass
        message = (
            f"ipykeyguard: the exposure ledger {self.path} was unreadable ({type(exc).__name__}: {exc}); "
            f"moved it to {aside.name} and started a new one"
        )
        self.warnings.append(message)
        _report(message)

    def _run(self, work):
        """Run ``work(conn)`` in one connection; rebuild the file once if it is corrupt.

        Raises:
            LedgerError: the database could not be used (the reason names no value).
        """
        try:
            try:
                return self._run_once(work)
            except sqlite3.Error as exc:
                if not _is_corrupt(exc):
                    raise
            # Corrupt, or being rebuilt by another process right now: decide under the lock,
            # after one more try, so a file another process just rebuilt is never moved aside.
            with self._lock:
                try:
                    return self._run_once(work)
                except sqlite3.Error as exc:
                    if not _is_corrupt(exc):
                        raise
                    self._move_aside(exc)
                return self._run_once(work)
        except sqlite3.Error as exc:
            raise LedgerError(f"{self.path}: {type(exc).__name__}: {exc}") from None
        except OSError as exc:  # filelock's Timeout is a TimeoutError
            raise LedgerError(f"{self.path}: {exc.strerror or type(exc).__name__}") from None

    def _run_once(self, work):
        conn = self._connect()
        try:
            return work(conn)
        finally:
            conn.close()

    # -- writing ---------------------------------------------------------------------------------
    def add(self, exposures: Iterable[Exposure]) -> int:
        """Record ``exposures`` in one transaction; returns how many rows were written.

        Raises:
            LedgerError: the database could not be written.
            ValueError: a fingerprint is not 64 hex characters or an action is unknown.
        """
        rows = []
        at = _now()
        for e in exposures:
            if len(e.fingerprint) != 64 or any(c not in "0123456789abcdef" for c in e.fingerprint):
                raise ValueError("a fingerprint is 64 lower-case hex characters (SHA-256)")
            if e.action not in ACTIONS:
                raise ValueError(f"unknown action {e.action!r} (expected one of: {', '.join(ACTIONS)})")
            rows.append((e.fingerprint, e.name or "", e.rule or "", e.source, e.action, e.place or "", e.commit or "", at, at))
        if not rows:
            return 0

        def work(conn: sqlite3.Connection) -> int:
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany(_UPSERT, rows)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return len(rows)

        return self._run(work)

    def mark_rotated(self, name_or_fingerprint: str, *, source: str = "exposures") -> list[str]:
        """Record that the key(s) known by this variable name (or fingerprint, or a prefix of one
        of at least 12 hex characters) were rotated now.

        Returns:
            The fingerprints marked (empty when the ledger knows no such key).

        Raises:
            LedgerError: the database could not be used.
        """
        wanted = name_or_fingerprint.strip()
        by_fingerprint = len(wanted) >= 12 and all(c in "0123456789abcdef" for c in wanted)

        def work(conn: sqlite3.Connection) -> list[str]:
            conn.execute("BEGIN IMMEDIATE")
            try:
                if by_fingerprint:
                    found = conn.execute(
                        "SELECT DISTINCT fingerprint FROM exposures WHERE fingerprint LIKE ? || '%'", (wanted,)
                    ).fetchall()
                else:
                    found = conn.execute(
                        "SELECT DISTINCT fingerprint FROM exposures WHERE name = ? AND action != 'rotated'", (wanted,)
                    ).fetchall()
                fingerprints = sorted(row[0] for row in found)
                at = _now()
                conn.executemany(
                    _UPSERT, [(fp, "" if by_fingerprint else wanted, "", source, "rotated", "", "", at, at) for fp in fingerprints]
                )
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return fingerprints

        return self._run(work)

    # -- reading ----------------------------------------------------------------------------------
    def keys(self) -> list[KeyHistory]:
        """Every key the ledger knows, most recently seen first.

        Raises:
            LedgerError: the database could not be read.
        """

        def work(conn: sqlite3.Connection) -> list[tuple]:
            return conn.execute(
                "SELECT fingerprint, name, rule, source, action, place, commit_sha, first_at, last_at, times "
                "FROM exposures ORDER BY first_at, rowid"
            ).fetchall()

        histories: dict[str, KeyHistory] = {}
        for fp, name, rule, source, action, place, commit, first_at, last_at, times in self._run(work):
            h = histories.get(fp)
            if h is None:
                h = histories[fp] = KeyHistory(fp, first_seen=first_at)
            if action == "rotated":
                h.rotated_at = max(h.rotated_at or "", last_at)
                continue
            h.first_seen = min(h.first_seen, first_at)
            h.last_seen = max(h.last_seen, last_at)
            if name and name not in h.names:
                h.names.append(name)
            if rule and rule not in h.rules:
                h.rules.append(rule)
            h.sightings.append(
                {
                    "at": first_at, "last": last_at, "times": times, "source": source, "action": action,
                    "place": place or None, "commit": commit or None,
                }
            )
        return sorted(histories.values(), key=lambda h: h.last_seen, reverse=True)


# -- the best-effort recorders the surfaces call (one line each) --------------------------------------

_reported: set[str] = set()
_report_lock = threading.Lock()


def _report(message: str) -> None:
    """Say ``message`` once per process on the process's own stderr (``sys.__stderr__``)."""
    with _report_lock:
        if message in _reported:
            return
        _reported.add(message)
    stream = sys.__stderr__
    if stream is not None:
        try:
            stream.write(message + "\n")
            stream.flush()
        except (OSError, ValueError):
            pass


def record(exposures: Iterable[Exposure]) -> bool:
    """Record ``exposures`` in the default ledger; never raises.

    Returns:
        True when written (or nothing to write), False when recording is off or failed; a
        failure is reported once per process on the real stderr.
    """
    try:
        items = list(exposures)
        if not items:
            return True
        path = ledger_path()
        if path is None:
            return False
        Ledger(path).add(items)
        return True
    except Exception as exc:  # noqa: BLE001 - recording must never break a cell, a save or a scan
        _report(f"ipykeyguard: could not record exposures in the ledger ({type(exc).__name__}: {_safe(exc)})")
        return False


def _safe(exc: BaseException) -> str:
    # LedgerError/OSError/sqlite3 messages name paths and SQL, never a value (we bind no value).
    return str(exc) if isinstance(exc, (LedgerError, OSError, sqlite3.Error, ValueError)) else "see the log"


def _place(path: Any, cell: int | None = None) -> str | None:
    if path is None:
        return None
    place = str(path)
    return place if cell is None else f"{place}:cell {cell}"


def record_findings(source: str, action: str, findings: Iterable[Any], *, where: str | None = None) -> bool:
    """Record findings (engine :class:`Finding` or report rows) as seen by ``source``; never raises.

    ``action`` is used as given, except that a report row already marked exposed (a saved
    output, an export) is recorded as ``exposed`` when ``action`` is ``found``. Report rows
    carry their own path and commit; ``where`` is used for engine findings.
    """
    try:
        items = []
        for f in findings:
            fp = getattr(f, "hash", None) or getattr(f, "fingerprint")
            path = getattr(f, "path", None) or where
            cell = f.cell if hasattr(f, "cell") else getattr(getattr(f, "location", None), "cell", None)
            did = "exposed" if action == "found" and getattr(f, "exposed", None) else action
            items.append(Exposure(fp, f.env, f.rule, source, did, _place(path, cell), getattr(f, "commit", None)))
    except Exception as exc:  # noqa: BLE001 - never break the caller
        _report(f"ipykeyguard: could not record exposures ({type(exc).__name__})")
        return False
    return record(items)


def record_clean(source: str, place: Any, report: Any) -> bool:
    """Record what one clean did (a :class:`~ipykeyguard.transforms.clean.CleanReport`); never raises.

    Keys moved out of code are ``moved``; every other occurrence acted on (an output, markdown,
    a key the rewriter could not move) was ``masked``.
    """
    try:
        if report is None or not getattr(report, "changed", False):
            return True
        moved = set(report.moved.values())
        items = [
            Exposure(fp, name, None, source, "moved", _place(place)) for name, fp in report.moved.items()
        ]
        for f in report.findings:
            # The moved key's own code span is the "moved" row; its echo in an output was masked.
            if f.fingerprint not in moved or f.location.field != "source":
                items.append(Exposure(f.fingerprint, f.env, f.rule, source, "masked", _place(place, f.location.cell)))
    except Exception as exc:  # noqa: BLE001 - never break the caller
        _report(f"ipykeyguard: could not record exposures ({type(exc).__name__})")
        return False
    return record(items)


def record_moves(source: str, fingerprints: Mapping[str, str], place: Any = None) -> bool:
    """Record keys moved into the store: ``{variable name: fingerprint}``; never raises."""
    try:
        where = place or os.environ.get("JPY_SESSION_NAME") or os.getcwd()
        items = [Exposure(fp, name, None, source, "moved", str(where)) for name, fp in fingerprints.items()]
    except Exception as exc:  # noqa: BLE001 - never break the caller
        _report(f"ipykeyguard: could not record exposures ({type(exc).__name__})")
        return False
    return record(items)

