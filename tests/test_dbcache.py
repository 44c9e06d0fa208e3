"""The compiled-automaton cache: real ``ipykeyguard scan`` processes racing on an empty cache,
and truncated, corrupted or foreign cache files, which are ignored and rebuilt, never trusted."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from ipykeyguard.engine import dbcache
from ipykeyguard.engine.rules import default_rules
from ipykeyguard.engine.scan import automaton_regexes

import fakekeys

REGEXES = automaton_regexes(default_rules())


def _leaky_file(tmp_path: Path) -> Path:
    path = tmp_path / "leaky.py"
    path.write_text(f'token = "{fakekeys.npm_token(random.Random(4))}"\n', encoding="utf-8")
    return path


def _scan(target: Path, cache: Path) -> subprocess.Popen:
    env = dict(os.environ, IPYKEYGUARD_CACHE_DIR=str(cache))
    return subprocess.Popen(
        ["ipykeyguard", "scan", str(target)], env=env, cwd=target.parent,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def _finish(proc: subprocess.Popen) -> str:
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 1, err[-2000:]  # 1: findings
    return out


def _valid_entry(cache: Path) -> Path:
    key = dbcache.rules_key(REGEXES)
    path = cache / f"{key}.hsdb"
    assert dbcache._read(path, key, len(REGEXES)) is not None, "cache entry missing or invalid"
    return path


def test_concurrent_scans_on_an_empty_cache_all_succeed_and_leave_one_valid_file(tmp_path):
    """Four CLI scans started together on an empty cache directory each find the key, and leave
    exactly one complete cache file and no temporary file."""
    cache = tmp_path / "cache"
    target = _leaky_file(tmp_path)
    procs = [_scan(target, cache) for _ in range(4)]
    outputs = [_finish(p) for p in procs]
    assert all("npm-access-token" in out for out in outputs)
    _valid_entry(cache)
    assert sorted(p.suffix for p in cache.iterdir() if p.is_file()) == [".hsdb"]
    # ... and the parsed shipped data beside it as JSON (no temporary file left either).
    assert {p.suffix for p in (cache / "rules").iterdir()} == {".json"}


@pytest.mark.parametrize("damage", ["garbage", "truncated", "flipped-byte", "foreign-key", "empty"])
def test_damaged_cache_file_is_ignored_and_rebuilt(tmp_path, damage):
    """A cache file that is garbage, cut short, altered by one byte, written for other rules or
    empty is not used: the scan still finds the key, and the file is replaced by a valid one."""
    cache = tmp_path / "cache"
    target = _leaky_file(tmp_path)
    _finish(_scan(target, cache))
    path = _valid_entry(cache)
    good = path.read_bytes()
    if damage == "garbage":
        bad = os.urandom(len(good))
    elif damage == "truncated":
        bad = good[: len(good) // 2]
    elif damage == "flipped-byte":
        i = len(good) - 1000
        bad = good[:i] + bytes([good[i] ^ 0xFF]) + good[i + 1:]
    elif damage == "foreign-key":
        other = dbcache.rules_key(REGEXES[:-1])
        bad = good.replace(path.stem.encode(), other.encode(), 1)
    else:
        bad = b""
    path.write_bytes(bad)
    assert dbcache._read(path, path.stem, len(REGEXES)) is None
    out = _finish(_scan(target, cache))
    assert "npm-access-token" in out
    assert _valid_entry(cache).read_bytes() != bad


def test_unwritable_cache_directory_costs_a_compile_not_an_error(tmp_path):
    """When the cache directory cannot be created, scanning still works (compiled in memory)."""
    blocker = tmp_path / "file"
    blocker.write_text("not a directory", encoding="utf-8")
    target = _leaky_file(tmp_path)
    out = _finish(_scan(target, blocker / "cache"))
    assert "npm-access-token" in out


def test_cache_lives_in_the_xdg_cache_home_by_default(tmp_path):
    """Without $IPYKEYGUARD_CACHE_DIR the compiled rules go under $XDG_CACHE_HOME/ipykeyguard."""
    target = _leaky_file(tmp_path)
    env = {k: v for k, v in os.environ.items() if k != "IPYKEYGUARD_CACHE_DIR"}
    env["XDG_CACHE_HOME"] = str(tmp_path / "xdg")
    proc = subprocess.run(["ipykeyguard", "scan", str(target)], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 1, proc.stderr[-2000:]
    _valid_entry(tmp_path / "xdg" / "ipykeyguard" / "automaton")


def test_parsed_rules_cache_is_used_when_it_matches_and_rebuilt_when_broken_or_foreign(tmp_path):
    """The shipped rules read from the JSON cache are the rules parsed from TOML; a garbage file, a
    file for other rules text, or one whose tables are not a list is ignored and rewritten."""
    import json
    import os
    import subprocess
    import sys

    cache = tmp_path / "cache"
    code = ("from ipykeyguard.engine.rules import default_rules; import json; "
            "print(json.dumps([(r.id, r.regex, r.env) for r in default_rules()]))")
    env = {**os.environ, "IPYKEYGUARD_CACHE_DIR": str(cache)}

    def rules() -> list:
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        return json.loads(out.stdout)

    fresh = rules()
    [cached] = list((cache / "rules").iterdir())
    assert rules() == fresh
    key = json.loads(cached.read_text())["key"]
    for broken in ("{not json", json.dumps({"key": "0" * 64, "doc": {}}), json.dumps({"key": key, "doc": []})):
        cached.write_text(broken)
        assert rules() == fresh
        assert json.loads(cached.read_text())["key"] == key


def test_stale_compiled_rule_sets_are_pruned_after_a_miss_and_used_ones_are_kept(tmp_path):
    """Every rule-set change used to leave its compiled databases behind for good. After a
    cache miss writes a new entry, only the most recently used entries stay (a hit refreshes
    an entry's time); non-cache files and the new entry are never touched."""
    cache = tmp_path / "cache"
    cache.mkdir()
    old = []
    for i in range(dbcache.KEEP_ENTRIES + 3):
        stale = cache / f"{i:064x}.hsdb"
        stale.write_bytes(b"old compiled rules")
        os.utime(stale, (1_000_000 + i, 1_000_000 + i))
        old.append(stale)
    other = cache / "notes.txt"
    other.write_text("not ours to remove", encoding="utf-8")
    target = _leaky_file(tmp_path)
    _finish(_scan(target, cache))
    fresh = _valid_entry(cache)
    left = sorted(p.name for p in cache.glob("*.hsdb"))
    assert len(left) == dbcache.KEEP_ENTRIES and fresh.name in left
    assert [p.name for p in old[-(dbcache.KEEP_ENTRIES - 1):]] == [n for n in left if n != fresh.name]
    assert other.exists()
    # A hit refreshes the entry: a later prune keeps it over newer-looking stale ones.
    os.utime(fresh, (1_000, 1_000))
    _finish(_scan(target, cache))
    assert fresh.stat().st_mtime > 1_000_000
    assert dbcache.prune(cache, ".hsdb", limit=1) == dbcache.KEEP_ENTRIES - 1
    assert [p.name for p in cache.glob("*.hsdb")] == [fresh.name]
