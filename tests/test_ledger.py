"""The exposure ledger (``storage/ledger.py``) and ``ipykeyguard exposures``.

Real SQLite files, the installed executable, real kernels and a real ``jupyter server``; the
concurrency tests start real processes that write at the same time.
"""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import fakekeys
from conftest import write_leaky_notebook
from ipykeyguard.engine.findings import fingerprint
from ipykeyguard.storage.ledger import Exposure, Ledger, LedgerError, ledger_path, record


def run_cli(*args: str, cwd: Path, ledger: Path | str) -> subprocess.CompletedProcess:
    env = {**os.environ, "IPYKEYGUARD_LEDGER": str(ledger)}
    return subprocess.run(["ipykeyguard", *args], cwd=cwd, capture_output=True, text=True, env=env, timeout=300)


def ledger_bytes(path: Path) -> str:
    """The database file and its WAL, as text, for "no value is ever written" checks."""
    data = b""
    for p in (path, Path(f"{path}-wal")):
        if p.exists():
            data += p.read_bytes()
    return data.decode("latin-1")


def exposure(fp: str, **kw) -> Exposure:
    fields = {"name": "OPENAI_API_KEY", "rule": "openai-api-key", "source": "test", "action": "moved", "place": "/nb.ipynb"}
    fields.update(kw)
    return Exposure(fp, **fields)


# -- the database -------------------------------------------------------------------------------


def test_the_ledger_is_created_0600_in_a_0700_folder(tmp_path):
    """A new ledger file is readable by its owner only, in a folder only its owner can enter."""
    path = tmp_path / "data" / "ipykeyguard" / "exposures.sqlite3"
    Ledger(path).add([exposure(fingerprint("x" * 40))])
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


@pytest.mark.parametrize("xdg", [None, "", "  ", "/srv/data home", "relative/dir"])
def test_the_default_path_is_in_the_user_data_dir_and_the_env_var_overrides_it(tmp_path, monkeypatch, xdg):
    """By default the ledger lives where platformdirs puts user data (written out, not imported,
    for start-up: the two must agree, $XDG_DATA_HOME included); IPYKEYGUARD_LEDGER names another
    file or turns it off."""
    from platformdirs import user_data_dir

    if xdg is None:
        monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    else:
        monkeypatch.setenv("XDG_DATA_HOME", xdg)
    assert ledger_path({}) == Path(user_data_dir("ipykeyguard", appauthor=False)) / "exposures.sqlite3"
    assert ledger_path({"IPYKEYGUARD_LEDGER": str(tmp_path / "x.db")}) == tmp_path / "x.db"
    assert ledger_path({"IPYKEYGUARD_LEDGER": "off"}) is None


def test_the_same_sighting_again_updates_one_row(tmp_path):
    """Seeing a key in the same place again (a scan on every commit) counts it instead of adding rows."""
    ledger = Ledger(tmp_path / "l.db")
    fp = fingerprint("y" * 40)
    for _ in range(3):
        ledger.add([exposure(fp, action="found")])
    (key,) = ledger.keys()
    assert len(key.sightings) == 1 and key.sightings[0]["times"] == 3


def test_a_value_is_refused_where_a_fingerprint_belongs(tmp_path):
    """Only 64-hex fingerprints are accepted: a caller passing a key by mistake gets an error, and nothing is written."""
    ledger = Ledger(tmp_path / "l.db")
    key = fakekeys.github_classic_token()
    with pytest.raises(ValueError, match="64 lower-case hex"):
        ledger.add([exposure(key)])
    leaked = key[8:20] in ledger_bytes(tmp_path / "l.db")
    assert not leaked


def test_status_follows_exposure_and_rotation(tmp_path):
    """A key only moved is 'kept out'; one found in history is 'ROTATE' until its rotation is recorded by name."""
    ledger = Ledger(tmp_path / "l.db")
    kept, exposed = fingerprint("k" * 40), fingerprint("e" * 40)
    ledger.add([exposure(kept, name="KEPT"), exposure(exposed, name="LEAKED", action="found in history", commit="a" * 40)])
    status = {k.names[0]: k.status for k in ledger.keys()}
    assert status == {"KEPT": "kept out", "LEAKED": "ROTATE"}
    assert ledger.mark_rotated("LEAKED") == [exposed]
    assert {k.names[0]: k.status for k in ledger.keys()} == {"KEPT": "kept out", "LEAKED": "rotated"}
    assert ledger.mark_rotated("NO_SUCH_NAME") == []


def test_a_corrupt_ledger_is_reported_moved_aside_and_rebuilt(tmp_path):
    """A file that is not a database is moved aside (kept), reported, and a new ledger records the exposure."""
    path = tmp_path / "exposures.sqlite3"
    path.write_bytes(b"this is not a database, " * 200)
    ledger = Ledger(path)
    ledger.add([exposure(fingerprint("c" * 40))])
    assert len(ledger.keys()) == 1
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("exposures.sqlite3.corrupt-")]
    assert len(aside) == 1 and aside[0].read_bytes().startswith(b"this is not a database")
    assert any("moved it to" in w for w in ledger.warnings)


def test_a_ledger_damaged_inside_is_rebuilt(tmp_path):
    """A real SQLite file with a damaged page is treated as corrupt, not as "locked": moved aside, rebuilt."""
    path = tmp_path / "exposures.sqlite3"
    ledger = Ledger(path)
    ledger.add([exposure(fingerprint(str(i) * 40)) for i in range(10)])
    data = bytearray(path.read_bytes())
    data[4096:8192] = b"\xff" * 4096  # the second page: the table's b-tree
    path.write_bytes(bytes(data))
    again = Ledger(path)
    again.add([exposure(fingerprint("after" * 10))])
    assert [k.fingerprint for k in again.keys()] == [fingerprint("after" * 10)]
    assert any(p.name.startswith("exposures.sqlite3.corrupt-") for p in tmp_path.iterdir())


def test_record_never_raises_when_the_ledger_cannot_be_written(tmp_path, monkeypatch, capfd):
    """record() returns False and says why once on stderr when the ledger's folder cannot be created; it never raises."""
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("IPYKEYGUARD_LEDGER", str(blocker / "sub" / "exposures.sqlite3"))
    assert record([exposure(fingerprint("z" * 40))]) is False
    assert record([exposure(fingerprint("z" * 40))]) is False
    err = capfd.readouterr().err
    assert err.count("could not record exposures") == 1


def test_ledger_error_for_the_cli_when_off(monkeypatch):
    """With recording off, opening the ledger says so (the exposures command turns it into exit 2)."""
    monkeypatch.setenv("IPYKEYGUARD_LEDGER", "off")
    with pytest.raises(LedgerError, match="off"):
        Ledger()


# -- the surfaces record; the CLI lists -----------------------------------------------------------


def test_scan_and_clean_record_fingerprints_and_never_a_value(tmp_path):
    """scan records what it found (a saved output as 'exposed'), clean what it moved and masked; the database holds no key."""
    ledger = tmp_path / "ledger.sqlite3"
    nb = tmp_path / "nb.ipynb"
    key = write_leaky_notebook(nb)
    assert run_cli("scan", str(nb), cwd=tmp_path, ledger=ledger).returncode == 1
    assert run_cli("clean", str(nb), cwd=tmp_path, ledger=ledger).returncode in (0, 1)
    listing = json.loads(run_cli("exposures", "--format", "json", cwd=tmp_path, ledger=ledger).stdout)
    (entry,) = listing["keys"]
    assert entry["fingerprint"] == fingerprint(key)
    actions = {(s["source"], s["action"]) for s in entry["sightings"]}
    assert {("scan", "found"), ("scan", "exposed"), ("clean", "moved"), ("clean", "masked")} <= actions
    assert entry["status"] == "ROTATE"
    leaked = key[12:24] in ledger_bytes(ledger)
    assert not leaked


def test_exposures_lists_text_and_records_a_rotation(tmp_path):
    """`exposures` lists by name and short fingerprint, exits 1 while a key needs rotating, and --rotated NAME records it (unknown names exit 2)."""
    ledger = tmp_path / "ledger.sqlite3"
    fp = fingerprint(fakekeys.npm_token())
    Ledger(ledger).add([exposure(fp, name="NPM_TOKEN", rule="npm-access-token", action="found in history", commit="b" * 40, place="setup.py")])
    listed = run_cli("exposures", cwd=tmp_path, ledger=ledger)
    assert listed.returncode == 1
    assert listed.stdout.splitlines()[0].split() == ["ROTATE", "NPM_TOKEN", f"sha256:{fp[:12]}", "(npm-access-token)"]
    assert f"setup.py @ {'b' * 40}" in listed.stdout and "1 to rotate" in listed.stderr
    unknown = run_cli("exposures", "--rotated", "NOPE", cwd=tmp_path, ledger=ledger)
    assert unknown.returncode == 2 and "knows no key named 'NOPE'" in unknown.stderr
    assert run_cli("exposures", "--rotated", "NPM_TOKEN", cwd=tmp_path, ledger=ledger).returncode == 0
    after = run_cli("exposures", "--format", "json", cwd=tmp_path, ledger=ledger)
    assert after.returncode == 0 and json.loads(after.stdout)["keys"][0]["status"] == "rotated"
    by_fp = run_cli("exposures", "--fingerprint", fp[:16], "--format", "json", cwd=tmp_path, ledger=ledger)
    assert [k["fingerprint"] for k in json.loads(by_fp.stdout)["keys"]] == [fp]


def test_scan_and_clean_work_when_the_ledger_is_corrupt_or_unwritable(tmp_path):
    """A corrupt ledger is rebuilt with one stderr notice and an unwritable one is skipped with a notice: scan and clean still do their job."""
    nb = tmp_path / "nb.ipynb"
    write_leaky_notebook(nb)
    corrupt = tmp_path / "corrupt.sqlite3"
    corrupt.write_bytes(b"\x00garbage" * 512)
    done = run_cli("scan", "--format", "json", str(nb), cwd=tmp_path, ledger=corrupt)
    assert done.returncode == 1 and len(json.loads(done.stdout)["findings"]) == 2
    assert "moved it to corrupt.sqlite3.corrupt-" in done.stderr
    assert len(Ledger(corrupt).keys()) == 1
    blocker = tmp_path / "file"
    blocker.write_text("")
    unwritable = blocker / "ledger.sqlite3"
    done = run_cli("clean", str(nb), cwd=tmp_path, ledger=unwritable)
    assert done.returncode in (0, 1) and "could not record exposures" in done.stderr
    assert run_cli("scan", str(nb), cwd=tmp_path, ledger=unwritable).returncode == 0, "the notebook was cleaned"


_WRITER = r"""
import sys
from ipykeyguard.engine.findings import fingerprint
from ipykeyguard.storage.ledger import Exposure, record
me, n = sys.argv[1], int(sys.argv[2])
ok = all(record([Exposure(fingerprint(f"{me}-{i}"), f"K{i}", None, me, "found", f"/{me}/{i}")]) for i in range(n))
sys.exit(0 if ok else 3)
"""


def test_concurrent_writer_processes_lose_nothing(tmp_path):
    """Six processes recording 100 exposures each at the same time: every row lands and the database stays intact."""
    ledger = tmp_path / "ledger.sqlite3"
    env = {**os.environ, "IPYKEYGUARD_LEDGER": str(ledger)}
    procs = [subprocess.Popen([sys.executable, "-c", _WRITER, f"w{i}", "100"], env=env, stderr=subprocess.PIPE, text=True) for i in range(6)]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    assert all(code == 0 for code, _err in results), results
    conn = sqlite3.connect(ledger)
    try:
        assert conn.execute("SELECT count(*) FROM exposures").fetchone()[0] == 600
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()


_FIRST_USE_WRITER = r"""
import sys, time
from ipykeyguard.engine.findings import fingerprint
from ipykeyguard.storage.ledger import Exposure, Ledger
me, folder, start, rounds = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
failed = []
for r in range(rounds):
    while time.time() < start + r * 0.25:
        time.sleep(0.001)
    try:
        Ledger(f"{folder}/ledger{r}.sqlite3").add([Exposure(fingerprint(f"{me}-{r}"), "K", None, me, "found", "p")])
    except Exception as exc:
        failed.append(f"round {r}: {exc}")
print("\n".join(failed))
sys.exit(3 if failed else 0)
"""


def test_processes_using_a_new_ledger_together_lose_nothing(tmp_path):
    """Eight processes making their first record in the same brand-new ledger at the same instant, twenty times over: every row lands (SQLite's switch to WAL does not wait for the busy handler)."""
    writers, rounds = 8, 20
    start = time.time() + 3.0  # every writer imported and waiting
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _FIRST_USE_WRITER, f"w{i}", str(tmp_path), str(start), str(rounds)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        for i in range(writers)
    ]
    results = [(p.wait(timeout=300), p.stdout.read()) for p in procs]
    assert all(code == 0 for code, _out in results), results
    for r in range(rounds):
        rows = Ledger(tmp_path / f"ledger{r}.sqlite3").keys()
        assert len(rows) == writers, f"round {r}: {len(rows)} of {writers} rows"
    assert not list(tmp_path.glob("*.corrupt-*")), "a file in first use was taken for a corrupt one"


@pytest.mark.kernel
@pytest.mark.server
@pytest.mark.slow
def test_two_kernels_a_save_and_a_scan_record_at_once(tmp_path, kernel, monkeypatch):
    """Two real kernels moving keys, a real jupyter server saving leaky notebooks and `ipykeyguard scan` runs, all at once, each record every key in one ledger."""
    from test_server import Server

    ledger = tmp_path / "ledger.sqlite3"
    monkeypatch.setenv("IPYKEYGUARD_LEDGER", str(ledger))
    server = Server(tmp_path / "server")
    try:
        kernels = []
        for name in ("k1", "k2"):
            cwd = tmp_path / name
            cwd.mkdir()
            kernels.append(kernel(cwd=cwd, load_ext=True))
        rounds = 4
        kernel_keys = {id(k): [fakekeys.openai_project_key() for _ in range(rounds)] for k in kernels}
        save_keys = [fakekeys.github_classic_token() for _ in range(rounds)]
        scan_dir = tmp_path / "scanned"
        scan_dir.mkdir()
        scan_keys = [write_leaky_notebook(scan_dir / f"nb{i}.ipynb") for i in range(rounds)]
        errors: list[str] = []

        def drive_kernel(k):
            for i, key in enumerate(kernel_keys[id(k)]):
                r = k.run(f'key_{i} = "{key}"\n')
                if r.status != "ok":
                    errors.append(f"kernel cell {i}: {r.status}")

        def drive_saves():
            for i, key in enumerate(save_keys):
                nb = {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [
                    {"cell_type": "code", "id": "c", "metadata": {}, "execution_count": None, "outputs": [],
                     "source": f'token = "{key}"\n'}]}
                resp = server.put_notebook(f"save{i}.ipynb", nb)
                if resp.status_code not in (200, 201):
                    errors.append(f"save {i}: HTTP {resp.status_code}")

        def drive_scans():
            for i in range(rounds):
                done = run_cli("scan", str(scan_dir / f"nb{i}.ipynb"), cwd=tmp_path, ledger=ledger)
                if done.returncode != 1:
                    errors.append(f"scan {i}: exit {done.returncode}")

        threads = [threading.Thread(target=drive_kernel, args=(k,)) for k in kernels]
        threads += [threading.Thread(target=drive_saves), threading.Thread(target=drive_scans)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=600)
        assert errors == []
        log = server.log()
    finally:
        server.stop()
    assert "could not record" not in log and "was unreadable" not in log
    assert not list(tmp_path.glob("*.corrupt-*")), "a ledger in use was taken for a corrupt one"
    sources: dict[str, set[str]] = {}
    for key in Ledger(ledger).keys():
        sources.setdefault(key.fingerprint, set()).update(s["source"] for s in key.sightings)
    for k in kernels:
        assert all("kernel" in sources.get(fingerprint(v), set()) for v in kernel_keys[id(k)])
    missing = [i for i, v in enumerate(save_keys) if "save" not in sources.get(fingerprint(v), set())]
    assert missing == [], log
    assert all("scan" in sources.get(fingerprint(v), set()) for v in scan_keys)
    everything = [*scan_keys, *save_keys, *(v for vs in kernel_keys.values() for v in vs)]
    leaked = any(v[12:24] in ledger_bytes(ledger) for v in everything)
    assert not leaked


@pytest.mark.kernel
def test_a_corrupt_ledger_never_breaks_a_kernel_cell(tmp_path, kernel, monkeypatch):
    """With a corrupt ledger the kernel still moves the key and runs the cell; the rebuild is noted once on stderr, never in stdout."""
    ledger = tmp_path / "ledger.sqlite3"
    ledger.write_bytes(b"not sqlite " * 100)
    monkeypatch.setenv("IPYKEYGUARD_LEDGER", str(ledger))
    k = kernel(load_ext=True)
    key = fakekeys.openai_project_key()
    expected_len = str(len(key))  # computed outside assert: a failure report must not show the key
    first = k.run(f'api_key = "{key}"\nprint(len(api_key))\n')
    second = k.run(f'other = "{fakekeys.openai_project_key()}"\n')
    assert first.status == "ok" and second.status == "ok"
    assert expected_len in first.stdout and "ledger" not in first.stdout
    assert (first.stderr + second.stderr).count("exposure ledger") <= 1
    assert k.value("__import__('os').environ['OPENAI_API_KEY'] == api_key") is True
    sources = {s["source"] for entry in Ledger(ledger).keys() for s in entry.sightings}
    assert sources == {"kernel"} and len(Ledger(ledger).keys()) == 2


def test_a_key_the_output_guard_masks_is_recorded_once_as_masked(tmp_path, kernel, monkeypatch):
    """A key the kernel never moved (built at run time, then printed twice) is masked by the
    output guard and recorded once in the ledger as masked by the kernel's output, by fingerprint."""
    ledger = tmp_path / "ledger.sqlite3"
    monkeypatch.setenv("IPYKEYGUARD_LEDGER", str(ledger))
    k = kernel(load_ext=True)
    token = fakekeys.github_classic_token()
    # The cell holds no key: it is assembled from its characters' code points at run time.
    build = "tok = ''.join(map(chr, [" + ", ".join(str(ord(c)) for c in token) + "]))\n"
    assert k.ok(build + "print(tok)\nprint('again', tok)\n").stdout.count("[secret:") == 2
    fp = fingerprint(token)
    for _ in range(50):  # recorded on a background thread
        rows = [e for e in Ledger(ledger).keys() if e.fingerprint == fp] if ledger.exists() else []
        if rows:
            break
        time.sleep(0.1)
    [entry] = rows
    assert [(s["source"], s["action"]) for s in entry.sightings] == [("kernel output", "masked")]
    assert token not in ledger.read_bytes().decode("latin-1")
