"""Secret stores: .env (exact round trip, atomic, 0600, git-ignored once), keyring, memory, none."""

from __future__ import annotations

import io
import os
import stat
import subprocess
import sys
import time

import pytest
from dotenv import dotenv_values
from hypothesis import given, settings
from hypothesis import strategies as st

import fakekeys
from ipykeyguard.engine.findings import fingerprint
from ipykeyguard.storage.store import (
    DotenvStore,
    MemoryStore,
    NullStore,
    StoreError,
    open_store,
    quote_dotenv_value,
    taken_names,
)


def git(cwd, *args):
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True)


@pytest.fixture
def repo(tmp_path):
    git(tmp_path, "init", "-q")
    git(tmp_path, "config", "user.email", "t@example.invalid")
    git(tmp_path, "config", "user.name", "t")
    return tmp_path


def pem_block() -> str:
    body = fakekeys.chars(64 * 5)
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return "-----BEGIN PRIVATE KEY-----\n" + "\n".join(lines) + "\n-----END PRIVATE KEY-----\n"


TRICKY = {
    "OPENAI_API_KEY": fakekeys.openai_project_key(),
    "PEM_KEY": pem_block(),
    "QUOTES": "it's \"quoted\"",
    "BACKSLASH_END": "abc\\",
    "BACKSLASHES": "a\\nb\\\\c\\'d",
    "HASH": "#not a comment",
    "SPACES": "  padded  ",
    "UNICODE": "pässwörd✓",
    "DOLLAR": "${HOME}and$USER",
    "EMPTY": "",
}


def test_dotenv_round_trips_tricky_values_through_python_dotenv(tmp_path):
    """Every value put into a .env reads back exactly with python-dotenv's own parser."""
    store = open_store("dotenv", directory=tmp_path)
    store.put(TRICKY)
    parsed = dotenv_values(tmp_path / ".env", interpolate=False)
    for name, value in TRICKY.items():
        assert fingerprint(parsed[name]) == fingerprint(value), f"{name} did not round-trip"
    assert {n: fingerprint(v) for n, v in store.items().items()} == {n: fingerprint(v) for n, v in TRICKY.items()}


def test_dotenv_values_without_interpolation_characters_also_load_with_interpolation(tmp_path):
    """A key without ``${`` also round-trips through python-dotenv's default (interpolating) read."""
    values = {k: v for k, v in TRICKY.items() if "$" not in v}
    open_store("dotenv", directory=tmp_path).put(values)
    parsed = dotenv_values(tmp_path / ".env")
    assert all(parsed[k] == v for k, v in values.items()), "a value changed on load"


_HOSTILE = st.text(
    st.one_of(
        st.sampled_from(list(";`$'\"\\|&<>(){}!#*?~ \t\n=")),
        st.characters(blacklist_characters="\x00\r", blacklist_categories=("Cs",)),
    ),
    max_size=40,
)


def _shell_reads(env_file) -> str:
    """What a POSIX shell gets for A after ``set -a; . ./.env`` (stderr must stay empty: nothing ran)."""
    result = subprocess.run(
        ["sh", "-c", 'set -a; . "$1"; printf %s "$A"', "sh", str(env_file)],
        capture_output=True, timeout=30, cwd=env_file.parent,
    )
    assert result.returncode == 0 and result.stderr == b"", "the shell failed on the .env"
    return result.stdout.decode("utf-8", "surrogateescape")


@settings(max_examples=150, deadline=None)
@given(value=_HOSTILE)
def test_hostile_values_read_back_exactly_in_python_dotenv_and_a_posix_shell(tmp_path_factory, value):
    """A value with ; ` $ quotes or backslashes is written so that python-dotenv and ``sh`` (set -a; . ./.env) both read the exact string and the shell runs nothing; a value no quoting serves both is refused, the .env untouched."""
    folder = tmp_path_factory.mktemp("sh")
    env = folder / ".env"
    env.write_text("# before\nB='after'\n")
    canary = folder / "ran"
    value = value.replace("CANARY", str(canary))
    try:
        DotenvStore(env).put({"A": value})
    except StoreError as exc:
        assert ("'" in value or "\\" in value) and ("$" in value or "`" in value)
        assert value not in str(exc) or len(value) < 8
        assert env.read_text() == "# before\nB='after'\n"
        return
    assert dotenv_values(env, interpolate=False) == {"B": "after", "A": value}
    assert _shell_reads(env) == value
    assert not canary.exists()


def test_command_in_a_password_does_not_run_when_a_shell_sources_the_env(tmp_path):
    """A password built to run ``touch`` when a shell sources the .env (backtick, $(), ;) is stored and read back literally; nothing runs."""
    canary = tmp_path / "ran"
    values = {
        "A": f"pw;touch {canary}",
        "B": f"`touch {canary}`",
        "C": f"$(touch {canary})",
        "D": f"it's\\\"; touch {canary}; \"",
        "E": f"pw;touch {canary}\\",  # a trailing backslash was once written unquoted
    }
    DotenvStore(tmp_path / ".env").put(values)
    for name, value in values.items():
        result = subprocess.run(
            ["sh", "-c", f'set -a; . ./.env; printf %s "${name}"'], cwd=tmp_path, capture_output=True, text=True,
        )
        assert result.stdout == value
    assert not canary.exists(), "sourcing the .env ran a command"
    assert dotenv_values(tmp_path / ".env", interpolate=False) == values
    with pytest.raises(StoreError):  # a quote and a backtick: no quoting serves both readers
        DotenvStore(tmp_path / ".env").put({"F": f"it's `touch {canary}`"})



def test_existing_dotenv_files_in_the_older_quoting_still_read(tmp_path):
    """A .env written by an earlier version (double quotes with \\n escapes, unquoted values) still reads the same, and its lines stay as they are when another name is set."""
    old = 'A="line1\\nline2"\nB="it\'s \\"q\\""\nC=plain\nD=ends\\\n'
    env = tmp_path / ".env"
    env.write_text(old)
    store = DotenvStore(env)
    assert store.items() == {"A": "line1\nline2", "B": "it's \"q\"", "C": "plain", "D": "ends\\"}
    store.put({"E": "new"})
    assert env.read_text() == old + "E='new'\n"


def test_new_dotenv_is_mode_0600_and_a_loose_one_is_tightened(tmp_path):
    """A .env created by the store is 0600, and an existing 0644 one becomes 0600 when written."""
    store = open_store("dotenv", directory=tmp_path)
    store.put({"A_TOKEN": fakekeys.generic_secret()})
    assert stat.S_IMODE((tmp_path / ".env").stat().st_mode) == 0o600
    os.chmod(tmp_path / ".env", 0o644)
    store.put({"B_TOKEN": fakekeys.generic_secret()})
    assert stat.S_IMODE((tmp_path / ".env").stat().st_mode) == 0o600


def test_existing_lines_and_comments_are_kept(tmp_path):
    """Putting a key keeps comments, blank lines and other entries; an existing name is updated in place."""
    env = tmp_path / ".env"
    env.write_text("# my settings\nDEBUG=1\n\nexport API_TOKEN=old # note\nLAST='x'\n")
    new = fakekeys.generic_secret()
    DotenvStore(env).put({"API_TOKEN": new, "NEW_KEY": "v"})
    lines = env.read_text().splitlines()
    assert lines[:3] == ["# my settings", "DEBUG=1", ""]
    assert lines[3].startswith("export API_TOKEN=")
    assert lines[4] == "LAST='x'"
    assert lines[5] == "NEW_KEY='v'"
    assert "old" not in env.read_text()
    assert dotenv_values(env)["API_TOKEN"] == new


def test_put_is_all_or_nothing_on_an_invalid_name(tmp_path):
    """A batch with one invalid name stores nothing and the error holds no value."""
    env = tmp_path / ".env"
    env.write_text("KEEP=1\n")
    secret = fakekeys.generic_secret()
    with pytest.raises(StoreError) as info:
        DotenvStore(env).put({"GOOD_KEY": secret, "bad name": secret})
    assert secret not in str(info.value), "key leaked"
    assert env.read_text() == "KEEP=1\n"


def test_failed_rename_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    """If the atomic rename fails (injected), the .env is the old one and no temp file is left."""
    env = tmp_path / ".env"
    env.write_text("KEEP=1\n")
    os.chmod(env, 0o600)

    def failing_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", failing_replace)
    secret = fakekeys.generic_secret()
    with pytest.raises(StoreError) as info:
        DotenvStore(env).put({"NEW_TOKEN": secret})
    assert secret not in str(info.value), "key leaked"
    assert env.read_text() == "KEEP=1\n"
    assert sorted(p.name for p in tmp_path.iterdir()) in ([".env"], [".env", ".env.ipykeyguard-lock"])


def test_gitignore_gets_dotenv_once(repo):
    """In a git work tree the .env is added to .gitignore once, however often keys are put."""
    store = open_store("dotenv", directory=repo)
    store.put({"A_TOKEN": fakekeys.generic_secret()})
    store.put({"B_TOKEN": fakekeys.generic_secret()})
    lines = (repo / ".gitignore").read_text().splitlines()
    assert lines.count(".env") == 1
    assert subprocess.run(["git", "check-ignore", "-q", ".env"], cwd=repo).returncode == 0
    assert "?? .env" not in git(repo, "status", "--porcelain").stdout


def test_existing_env_pattern_is_respected(repo):
    """A .gitignore that already ignores ``*.env`` gets no ``.env`` line, only the pattern for the store's lock and temporaries; one that ignores ``.env*`` is left byte for byte alone."""
    (repo / ".gitignore").write_text("*.env\n")
    open_store("dotenv", directory=repo).put({"A_TOKEN": fakekeys.generic_secret()})
    assert (repo / ".gitignore").read_text().splitlines()[::2] == ["*.env", ".env.ipykeyguard-*"]
    (repo / ".gitignore").write_text(".env*\n")
    open_store("dotenv", directory=repo).put({"B_TOKEN": fakekeys.generic_secret()})
    assert (repo / ".gitignore").read_text() == ".env*\n"
    assert git(repo, "status", "--porcelain", "--untracked-files=all").stdout.strip() == "?? .gitignore"


def test_nearest_gitignore_is_used_for_a_nested_notebook_folder(repo):
    """For a .env in a sub-folder the nearest existing .gitignore above it gets one anchored line."""
    (repo / ".gitignore").write_text("build/\n")
    sub = repo / "analysis" / "q1"
    sub.mkdir(parents=True)
    open_store("dotenv", directory=sub).put({"A_TOKEN": fakekeys.generic_secret()})
    assert (repo / ".gitignore").read_text() == (
        "build/\n# secrets moved out of notebooks by ipykeyguard (and its lock and temporary files)\n"
        "/analysis/q1/.env\n/analysis/q1/.env.ipykeyguard-*\n"
    )
    assert not (sub / ".gitignore").exists()
    assert subprocess.run(["git", "check-ignore", "-q", "analysis/q1/.env"], cwd=repo).returncode == 0


def test_outside_git_no_gitignore_is_written(tmp_path):
    """Outside a git work tree nothing but the .env (and its empty lock file) is written."""
    open_store("dotenv", directory=tmp_path).put({"A_TOKEN": fakekeys.generic_secret()})
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names in ([".env"], [".env", ".env.ipykeyguard-lock"])
    assert all((tmp_path / n).stat().st_size == 0 for n in names if n != ".env")


def test_a_tracked_dotenv_is_refused(repo):
    """A .env that git tracks is not written to: the key would be committed with it."""
    env = repo / ".env"
    env.write_text("DEBUG=1\n")
    git(repo, "add", ".env")
    secret = fakekeys.generic_secret()
    with pytest.raises(StoreError, match="git tracks") as info:
        open_store("dotenv", directory=repo).put({"A_TOKEN": secret})
    assert secret not in str(info.value), "key leaked"
    assert env.read_text() == "DEBUG=1\n"


def test_symlinked_dotenv_is_refused_and_nothing_is_written_through_it(tmp_path):
    """A .env that is a symlink (to a file in another git repository) is refused with a clear error: the target and that repository's .gitignore are untouched."""
    elsewhere = tmp_path / "other-repo"
    elsewhere.mkdir()
    git(elsewhere, "init", "-q")
    shared = elsewhere / "shared.env"
    shared.write_text("SHARED=1\n")
    nbdir = tmp_path / "nb"
    nbdir.mkdir()
    (nbdir / ".env").symlink_to(shared)
    secret = fakekeys.generic_secret()
    with pytest.raises(StoreError, match="symbolic link") as info:
        open_store("dotenv", directory=nbdir).put({"A_TOKEN": secret})
    assert secret not in str(info.value), "key leaked"
    assert shared.read_text() == "SHARED=1\n"
    assert not (elsewhere / ".gitignore").exists()
    assert (nbdir / ".env").is_symlink()


def test_read_only_or_foreign_dotenv_is_refused_not_replaced(tmp_path):
    """A read-only .env, and a .env owned by another user, are refused (not replaced by a new file of ours), even for root."""
    env = tmp_path / ".env"
    env.write_text("KEEP=1\n")
    os.chmod(env, 0o444)
    with pytest.raises(StoreError, match="read-only"):
        DotenvStore(env).put({"A_TOKEN": fakekeys.generic_secret()})
    assert env.read_text() == "KEEP=1\n" and stat.S_IMODE(env.stat().st_mode) == 0o444
    if os.geteuid() == 0:  # only root can give a file away
        os.chmod(env, 0o644)
        os.chown(env, 65534, 65534)
        with pytest.raises(StoreError, match="another user"):
            DotenvStore(env).put({"A_TOKEN": fakekeys.generic_secret()})
        assert env.stat().st_uid == 65534 and env.read_text() == "KEEP=1\n"


def test_delete_removes_only_that_name(tmp_path):
    """delete drops one binding and keeps the rest of the file."""
    env = tmp_path / ".env"
    env.write_text("# c\nA=1\nB=2\n")
    DotenvStore(env).delete("A")
    assert env.read_text() == "# c\nB=2\n"


def test_memory_and_null_stores():
    """The memory store keeps values in the process; the none store keeps nothing and says so."""
    secret = fakekeys.generic_secret()
    memory = open_store("memory")
    memory.put({"A_TOKEN": secret})
    assert memory.get("A_TOKEN") == secret
    assert secret not in repr(memory), "key leaked"
    none = open_store("none")
    none.put({"A_TOKEN": secret})
    assert none.kind == "none" and none.items() == {} and none.get("A_TOKEN") is None
    assert isinstance(memory, MemoryStore) and isinstance(none, NullStore)


def test_taken_names_are_fingerprints():
    """taken_names maps each stored name to the SHA-256 of its value, never the value."""
    secret = fakekeys.generic_secret()
    store = MemoryStore({"A_TOKEN": secret})
    assert taken_names(store) == {"A_TOKEN": fingerprint(secret)}


def test_unknown_store_kind_is_an_error():
    """open_store names the valid kinds when given an unknown one."""
    with pytest.raises(StoreError, match="dotenv"):
        open_store("vault")


# -- keyring, with keyrings.alt's file backend (a real backend, writing under tmp_path) ----------


@pytest.fixture
def file_keyring(tmp_path):
    keyring = pytest.importorskip("keyring")
    alt = pytest.importorskip("keyrings.alt.file")

    class TmpKeyring(alt.PlaintextKeyring):
        file_path = str(tmp_path / "keyring.cfg")

    previous = keyring.get_keyring()
    backend = TmpKeyring()
    keyring.set_keyring(backend)
    yield backend
    keyring.set_keyring(previous)


def test_keyring_store_round_trip_with_index(file_keyring):
    """The keyring store sets, enumerates (through its index) and deletes keys."""
    store = open_store("keyring", service="ipykeyguard-test")
    a, b = fakekeys.openai_project_key(), pem_block()
    store.put({"OPENAI_API_KEY": a, "PEM_KEY": b})
    assert store.get("OPENAI_API_KEY") == a
    assert {k: fingerprint(v) for k, v in store.items().items()} == {"OPENAI_API_KEY": fingerprint(a), "PEM_KEY": fingerprint(b)}
    store.delete("OPENAI_API_KEY")
    assert sorted(store.items()) == ["PEM_KEY"]


def test_keyring_put_rolls_back_when_one_value_fails(tmp_path):
    """When the backend fails on the second key, the first is rolled back and the error holds no value."""
    keyring = pytest.importorskip("keyring")
    alt = pytest.importorskip("keyrings.alt.file")
    from keyring.errors import PasswordSetError

    class FailingKeyring(alt.PlaintextKeyring):
        file_path = str(tmp_path / "keyring.cfg")

        def set_password(self, service, username, password):
            if username == "B_TOKEN":
                raise PasswordSetError("backend refused")
            super().set_password(service, username, password)

    previous = keyring.get_keyring()
    keyring.set_keyring(FailingKeyring())
    try:
        store = open_store("keyring", service="ipykeyguard-test")
        secret = fakekeys.generic_secret()
        with pytest.raises(StoreError) as info:
            store.put({"A_TOKEN": secret, "B_TOKEN": secret})
        assert secret not in str(info.value), "key leaked"
        assert store.get("A_TOKEN") is None
        assert store.items() == {}
    finally:
        keyring.set_keyring(previous)


# -- one store object over many writes (clean of a many-notebook directory) ---------------------

_dotenv_names = st.sampled_from(["A", "B", "TOKEN", "TOKEN_2", "OPENAI_API_KEY", "X_1"])
_dotenv_values = st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=20)
_dotenv_starts = st.sampled_from([
    "", "# a comment\n", "A=1\n", "A=1", "\n\n", "export B='x'\n\n", 'BROKEN="unclosed\n', "C\nD=2\n",
])


@settings(max_examples=150, deadline=None)
@given(start=_dotenv_starts, puts=st.lists(st.dictionaries(_dotenv_names, _dotenv_values, min_size=1, max_size=3), max_size=6))
def test_one_store_object_writes_and_reads_as_a_fresh_one_each_time(tmp_path_factory, start, puts):
    """A store reused for many puts (its parse cached) writes the same bytes and reads the same values as a new store per put."""
    folder = tmp_path_factory.mktemp("env")
    reused_path, fresh_path = folder / "reused.env", folder / "fresh.env"
    reused_path.write_text(start)
    fresh_path.write_text(start)
    reused = DotenvStore(reused_path)
    for values in puts:
        try:
            reused.put(values)
        except StoreError:
            with pytest.raises(StoreError):
                DotenvStore(fresh_path).put(values)
            continue
        DotenvStore(fresh_path).put(values)
        assert reused_path.read_bytes() == fresh_path.read_bytes()
        expected = {k: v for k, v in dotenv_values(fresh_path, interpolate=False).items() if v is not None}
        assert reused.items() == expected
        assert DotenvStore(fresh_path).items() == expected


def test_a_cached_parse_is_not_used_once_the_file_changed(tmp_path):
    """Another writer's change to the .env is seen by a store object that read the file before."""
    path = tmp_path / ".env"
    store = DotenvStore(path)
    store.put({"A": "one"})
    assert store.items() == {"A": "one"}
    path.write_text("A='two'\nB=three\n")
    assert store.items() == {"A": "two", "B": "three"}
    store.put({"C": "four"})
    assert dotenv_values(path, interpolate=False) == {"A": "two", "B": "three", "C": "four"}


def test_git_is_asked_at_every_write_unless_once_is_asked_for(repo):
    """A long-lived store refuses a .env that git started tracking after its first write; a per-run store asks once."""
    every, once = DotenvStore(repo / ".env"), DotenvStore(repo / ".env", git_check_once=True)
    every.put({"A": "1"})
    once.put({"B": "2"})
    git(repo, "add", "-f", ".env")
    with pytest.raises(StoreError, match="git tracks this file"):
        every.put({"C": "3"})
    once.put({"D": "4"})  # asked git at its first write, as documented
    assert "D" in dotenv_values(repo / ".env")


def test_check_dotenv_values_refuses_what_put_refuses_and_writes_nothing(tmp_path):
    """check_dotenv_values raises put's error for a bad name, a NUL or an unquotable value, and accepts the rest."""
    from ipykeyguard.storage.store import check_dotenv_values

    secret = fakekeys.generic_secret()
    for bad in ({"1BAD": secret}, {"A": secret + "\x00"}, {"A": secret + "'$x"}, {"A": secret + "\r\n"}):
        with pytest.raises(StoreError) as info:
            DotenvStore(tmp_path / ".env").put(bad)
        with pytest.raises(StoreError) as checked:
            check_dotenv_values(bad)
        assert str(checked.value) == str(info.value)
        assert secret not in str(checked.value), "key leaked"
    check_dotenv_values({"A": secret, "B": "it's \"quoted\"\nand multi-line \\ inside", "C": "ends\\", "D": "$x`y`;"})
    assert not (tmp_path / ".env").exists()


_KEYRING_WRITER = r"""
import sys, time
from pathlib import Path
from ipykeyguard.storage.store import open_store

start, me, count = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
store = open_store("keyring", service="ipykeyguard-race")
while not start.exists():
    time.sleep(0.001)
for i in range(count):
    store.put({f"KEY_{me}_{i}": f"value-{me}-{i}-" + "x" * 12}, overwrite=False)
"""


def test_processes_adding_keyring_names_at_once_lose_none(tmp_path):
    """Six processes add ten names each to one keyring service at the same instant (keyrings.alt's
    file backend under a temporary data folder): afterwards every name is listed with its value.
    Without the per-service lock the index is a read-modify-write race and names go missing."""
    pytest.importorskip("keyrings.alt.file")
    env = dict(os.environ, PYTHON_KEYRING_BACKEND="keyrings.alt.file.PlaintextKeyring",
               XDG_DATA_HOME=str(tmp_path / "data"))
    start = tmp_path / "go"
    writers, count = 6, 10
    procs = [
        subprocess.Popen([sys.executable, "-c", _KEYRING_WRITER, str(start), str(me), str(count)], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for me in range(writers)
    ]
    time.sleep(1.0)  # every process is waiting for the start file
    start.touch()
    for proc in procs:
        _out, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, err[-2000:]
    listing = subprocess.run(
        [sys.executable, "-c", "from ipykeyguard.storage.store import open_store; "
         "items = open_store('keyring', service='ipykeyguard-race').items(); "
         "print('\\n'.join(f'{k}={v}' for k, v in sorted(items.items())))"],
        env=env, capture_output=True, text=True, timeout=120, check=True,
    ).stdout.split()
    expected = sorted(f"KEY_{me}_{i}=value-{me}-{i}-" + "x" * 12 for me in range(writers) for i in range(count))
    assert listing == expected
