"""The origins ledger: names, sources and times of stored secrets, never values."""

from __future__ import annotations

import json

from fakekeys import generic_secret
from ipykeyguard.storage.origins import forget_origin, ledger_path, origins_of, record_origin
from ipykeyguard.storage.store import DotenvStore, MemoryStore


def test_recorded_names_are_listed_with_source_and_time_and_the_file_holds_no_value(tmp_path, monkeypatch):
    """A name written to a store is listed with its source and an ISO time; the ledger file never holds the value."""
    monkeypatch.setenv("IPYKEYGUARD_STATE_DIR", str(tmp_path / "state"))
    store = DotenvStore(tmp_path / ".env")
    value = generic_secret()
    store.put({"API_TOKEN": value})
    record_origin(store, ["API_TOKEN"], "added in the secrets panel")
    origins = origins_of(store)
    assert origins["API_TOKEN"]["source"] == "added in the secrets panel"
    assert origins["API_TOKEN"]["updated"].endswith("+00:00")
    assert value not in ledger_path().read_text()
    assert (ledger_path().stat().st_mode & 0o777) == 0o600


def test_stores_are_kept_apart_and_forget_drops_one_name(tmp_path, monkeypatch):
    """Each store has its own entries (a .env by its real path); forget removes only that name."""
    monkeypatch.setenv("IPYKEYGUARD_STATE_DIR", str(tmp_path / "state"))
    a, b = DotenvStore(tmp_path / "a" / ".env"), DotenvStore(tmp_path / "b" / ".env")
    record_origin(a, ["X", "Y"], "moved from a cell of a.ipynb")
    record_origin(b, ["X"], "%keyguard set")
    forget_origin(a, "X")
    assert set(origins_of(a)) == {"Y"}
    assert origins_of(b)["X"]["source"] == "%keyguard set"
    assert origins_of(MemoryStore()) == {}


def test_a_broken_or_unwritable_ledger_never_fails_the_caller(tmp_path, monkeypatch):
    """A corrupt ledger reads as empty, and a ledger that cannot be written is skipped without an error."""
    state = tmp_path / "state"
    state.mkdir()
    monkeypatch.setenv("IPYKEYGUARD_STATE_DIR", str(state))
    ledger_path().write_text("{not json")
    store = DotenvStore(tmp_path / ".env")
    assert origins_of(store) == {}
    record_origin(store, ["Z"], "x")
    assert json.loads(ledger_path().read_text())
    blocked = tmp_path / "file-not-dir"
    blocked.write_text("")
    monkeypatch.setenv("IPYKEYGUARD_STATE_DIR", str(blocked / "sub"))
    record_origin(store, ["Z"], "x")  # no exception
    assert origins_of(store) == {}
