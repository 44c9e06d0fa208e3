"""Where each stored secret came from and when: names and short descriptions, never values.

The secrets panel shows, for every name in a store, how it got there ("moved from a cell of
analysis.ipynb", "added in the secrets panel", "%keyguard set") and when. The stores themselves
cannot say (a ``.env`` line is just ``NAME=value``, and rewriting its comments belongs to the
store), so this small ledger keeps it beside them: one JSON file per user, by default
``$XDG_STATE_HOME/ipykeyguard/origins.json`` (``~/.local/state/...``), overridable with
``IPYKEYGUARD_STATE_DIR``. It lives outside every project, so it is never committed, and it holds
no value, so losing or reading it exposes nothing.

The ledger is a convenience: reading or writing it never fails the caller (a broken or
unwritable file yields "origin unknown" in the panel). Concurrent writers may lose an entry
(read-modify-write through an atomic rename), never corrupt the file.
"""

from __future__ import annotations

import json
import os
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable

from .store import SecretStore, atomic_write_bytes

__all__ = ["ledger_path", "record_origin", "forget_origin", "origins_of"]

_lock = threading.Lock()
#: Entries kept per store; the oldest are dropped beyond it (names of deleted secrets linger).
_LIMIT_PER_STORE = 500


def ledger_path() -> Path:
    """The ledger file (it need not exist)."""
    base = os.environ.get("IPYKEYGUARD_STATE_DIR")
    if base:
        return Path(base) / "origins.json"
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(state) / "ipykeyguard" / "origins.json"


def _store_key(store: SecretStore) -> str:
    path = getattr(store, "path", None)
    if path is not None:
        return f"dotenv:{os.path.realpath(path)}"
    return f"{store.kind}:{getattr(store, 'service', '')}"


def _read(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def record_origin(store: SecretStore, names: Iterable[str], source: str) -> None:
    """Note that ``names`` were just written to ``store`` by ``source`` (a short description).

    Args:
        store: The store the names were written to.
        names: The names (never values).
        source: How they got there, e.g. ``"moved from a cell of x.ipynb"``.
    """
    names = list(names)
    if not names:
        return
    path = ledger_path()
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    with _lock:
        data = _read(path)
        entries = data.setdefault(_store_key(store), {})
        if not isinstance(entries, dict):
            entries = data[_store_key(store)] = {}
        for name in names:
            entries.pop(name, None)
            entries[name] = {"source": source[:200], "updated": now}
        while len(entries) > _LIMIT_PER_STORE:
            entries.pop(next(iter(entries)))
        _write(path, data)


def forget_origin(store: SecretStore, name: str) -> None:
    """Drop the ledger entry of ``name`` in ``store`` (after it was deleted)."""
    path = ledger_path()
    with _lock:
        data = _read(path)
        entries = data.get(_store_key(store))
        if isinstance(entries, dict) and entries.pop(name, None) is not None:
            _write(path, data)


def origins_of(store: SecretStore) -> dict[str, dict[str, str]]:
    """NAME -> ``{"source": ..., "updated": ISO-8601}`` for the names the ledger knows."""
    entries = _read(ledger_path()).get(_store_key(store))
    if not isinstance(entries, dict):
        return {}
    return {
        name: {"source": str(e.get("source", "")), "updated": str(e.get("updated", ""))}
        for name, e in entries.items()
        if isinstance(e, dict)
    }


def _write(path: Path, data: dict) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, json.dumps(data, indent=1, sort_keys=True).encode("utf-8"), mode=0o600)
    except OSError:
        # The ledger only labels the panel's rows; a read-only home must not stop a store write.
        return
