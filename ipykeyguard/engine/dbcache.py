"""The compiled automaton, cached on disk so that start-up does not pay Hyperscan's compile.

One file per rule set in the user cache directory (see :func:`cache_dir`; or
``$IPYKEYGUARD_CACHE_DIR``), named by the cache key: the SHA-256 of the engine version, the
Hyperscan version and every rule's pattern. The file is::

    MAGIC | key (64 hex) | CRC-32 of the payload (4 bytes, big-endian) | payload

and the payload is a JSON header (tiers, widths, fallback rules) followed by the serialised
databases. Nothing in the file is trusted until the magic, the key and the checksum match: a
truncated, corrupted or foreign file is ignored, rebuilt and replaced. (The checksum guards
against damage, not an adversary, who could write a matching SHA-256 as easily: CRC-32 reads the
2.5 MB in 0.45 ms where SHA-256 took 1.3 ms of every start.) Writers write a
private temporary file in the same directory and ``os.replace`` it into place, so concurrent
writers never expose a partial file and the last complete one wins (they hold the same bytes).
A cache directory that cannot be written costs a compile per process, never an error.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import sys
import zlib
from pathlib import Path
from typing import Sequence

from .automaton import ENGINE_VERSION, Automaton, _Tier

__all__ = ["load_automaton", "cache_dir", "cache_path"]

MAGIC = b"IPYKGDB2"
_HEADER = struct.Struct(">I")
_CRC = struct.Struct(">I")


def cache_dir() -> Path:
    """Where compiled databases are kept: ``$IPYKEYGUARD_CACHE_DIR`` if set, else the user cache
    directory (``$XDG_CACHE_HOME`` or ``~/.cache`` on Linux and other POSIX systems,
    ``~/Library/Caches`` on macOS, ``%LOCALAPPDATA%`` on Windows: the places
    ``platformdirs.user_cache_dir`` names), then ``ipykeyguard/automaton``.

    Written out rather than imported from platformdirs: its import cost ~11 ms, about the whole
    budget this cache exists to save on a one-notebook CLI run.
    """
    override = os.environ.get("IPYKEYGUARD_CACHE_DIR")
    if override:
        return Path(override)
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    else:
        xdg = os.environ.get("XDG_CACHE_HOME", "")
        base = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "ipykeyguard" / "automaton"


def parsed_rules_dir() -> Path:
    """Where the parsed shipped TOML data is kept (:func:`parsed_toml`): ``rules/`` inside
    ``$IPYKEYGUARD_CACHE_DIR`` when set, else beside the compiled databases."""
    override = os.environ.get("IPYKEYGUARD_CACHE_DIR")
    return Path(override) / "rules" if override else cache_dir().parent / "rules"


def parsed_toml(text: str, loads) -> dict:
    """``loads(text)`` (a TOML parser), from a JSON copy cached under the text's SHA-256.

    Parsing the shipped ``rules.toml`` and ``rotation.toml`` costs more than the rest of a
    one-notebook scan; JSON reads several times faster. A missing, broken or foreign cache file
    is ignored and rewritten atomically; without a usable cache directory this just parses.
    Callers validate the result as they would a fresh parse.

    Raises:
        Whatever ``loads`` raises for text that does not parse (never cached).
    """
    key = hashlib.sha256(text.encode("utf-8")).hexdigest()
    try:
        path = parsed_rules_dir() / f"{key[:32]}.json"
    except (OSError, RuntimeError):  # no home directory to put a cache in
        return loads(text)
    try:
        cached = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(cached, dict) and cached.get("key") == key and isinstance(cached.get("doc"), dict):
            _touch(path)
            return cached["doc"]
    except (OSError, ValueError):
        pass
    doc = loads(text)
    try:
        _publish(path, json.dumps({"key": key, "doc": doc}).encode("utf-8"))
    except (TypeError, ValueError):  # a TOML value JSON cannot hold: parse every time
        return doc
    # Several data files share this folder (rules, rotation, documented examples, secret files):
    # keep a few versions of each.
    prune(path.parent, ".json", keep=path, limit=4 * KEEP_ENTRIES)
    return doc


def rules_key(regexes: Sequence[str]) -> str:
    """The cache key: engine version, Hyperscan version and every pattern, in order."""
    import hyperscan

    digest = hashlib.sha256()
    digest.update(f"ipykeyguard-automaton {ENGINE_VERSION} hyperscan {getattr(hyperscan, '__version__', '?')}\0".encode())
    for regex in regexes:
        digest.update(regex.encode("utf-8", "surrogatepass") + b"\0")
    return digest.hexdigest()


def cache_path(key: str) -> Path:
    return cache_dir() / f"{key}.hsdb"


def _encode(automaton: Automaton, widths: Sequence[int | None]) -> bytes:
    import hyperscan

    blobs = [hyperscan.dumpb(db) for db in automaton.databases]
    header = json.dumps({
        "tiers": [[list(t.rule_indexes), t.width, t.block, t.exact] for t in automaton.tiers],
        "fallback": list(automaton.fallback),
        "widths": list(widths),
        "n_rules": automaton.n_rules,
        "blobs": [len(b) for b in blobs],
    }).encode()
    return _HEADER.pack(len(header)) + header + b"".join(blobs)


def _decode(payload: bytes, n_rules: int) -> tuple[Automaton, list[int | None]]:
    """Raises ``ValueError`` (or a Hyperscan error) on anything unexpected."""
    import hyperscan

    (size,) = _HEADER.unpack_from(payload, 0)
    header = json.loads(payload[_HEADER.size:_HEADER.size + size])
    if header["n_rules"] != n_rules or len(header["widths"]) != n_rules:
        raise ValueError("rule count differs")
    offset = _HEADER.size + size
    tiers = [_Tier(tuple(int(i) for i in idx), int(width), int(block), bool(exact)) for idx, width, block, exact in header["tiers"]]
    if len(header["blobs"]) != len(tiers):
        raise ValueError("missing data")
    databases: list = []
    for length, tier in zip(header["blobs"], tiers):
        blob = payload[offset:offset + length]
        if len(blob) != length:
            raise ValueError("truncated")
        # Exact twins serve texts longer than a cell only: kept serialized (the digest above
        # vouches for them) until the automaton first needs one, which a one-notebook scan
        # of ordinary cells never does.
        databases.append(blob if tier.exact else hyperscan.loadb(blob, hyperscan.HS_MODE_BLOCK))
        offset += length
    if offset != len(payload):
        raise ValueError("trailing data")
    if any(not 0 <= i < n_rules for t in tiers for i in t.rule_indexes):
        raise ValueError("rule index out of range")
    automaton = Automaton(tiers, databases, tuple(int(i) for i in header["fallback"]), n_rules)
    return automaton, header["widths"]


def _read(path: Path, key: str, n_rules: int) -> tuple[Automaton, list[int | None]] | None:
    try:
        data = path.read_bytes()
    except OSError:
        return None
    prefix = len(MAGIC) + 64 + _CRC.size
    if len(data) < prefix or not data.startswith(MAGIC) or data[len(MAGIC):len(MAGIC) + 64] != key.encode():
        return None
    (checksum,) = _CRC.unpack_from(data, len(MAGIC) + 64)
    if zlib.crc32(memoryview(data)[prefix:]) != checksum:
        return None
    payload = data[prefix:]
    try:
        return _decode(payload, n_rules)
    except Exception:  # a file we wrote never fails here; anything else is rebuilt
        return None


def _write(path: Path, key: str, payload: bytes) -> None:
    """Publish a compiled database: magic, key, the payload's digest, the payload; then prune."""
    _publish(path, MAGIC + key.encode() + _CRC.pack(zlib.crc32(payload)) + payload)
    prune(path.parent, ".hsdb", keep=path)


#: Cache entries kept per folder: the newest ones (a read refreshes an entry's time), so several
#: installed versions or rule sets sharing one cache directory keep theirs.
KEEP_ENTRIES = 6


def prune(folder: Path, suffix: str, *, keep: Path | None = None, limit: int = KEEP_ENTRIES) -> int:
    """Remove all but the ``limit`` most recently used ``*suffix`` files of ``folder`` (``keep``
    always stays); returns how many were removed. Runs only after a cache miss wrote a new entry:
    every rule-set change (an upgrade, a project's own rules) used to leave ~2.5 MB behind for
    good. Another process still reading a removed entry keeps its open file; one that misses it
    compiles again. Never raises."""
    try:
        entries = []
        for entry in os.scandir(folder):
            if entry.name.endswith(suffix) and entry.is_file(follow_symlinks=False):
                entries.append((entry.stat(follow_symlinks=False).st_mtime, entry.path))
    except OSError:
        return 0
    entries.sort(reverse=True)
    removed = 0
    for _mtime, entry_path in entries[limit:]:
        if keep is not None and entry_path == str(keep):
            continue
        try:
            os.unlink(entry_path)
            removed += 1
        except OSError:
            pass
    return removed


def _touch(path: Path) -> None:
    """Mark a cache entry as used now (what :func:`prune` keeps); never raises."""
    try:
        os.utime(path)
    except OSError:
        pass


def _publish(path: Path, data: bytes) -> None:
    """Atomically write a cache file (temporary file, then rename): readers racing a writer see
    the old file or the new one, never part of one. A failure (read-only or full disk) only
    means no cache, and leaves no partial file behind."""
    import tempfile  # only on a cache miss (with random and shutil, ~3 ms of start-up)

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError:
        return
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass


def load_automaton(regexes: Sequence[str], widths_of) -> tuple[Automaton, list[int | None]]:
    """The automaton for ``regexes``: from the cache when a valid entry exists, else compiled
    (and cached).

    Args:
        regexes: The rules' patterns (Python syntax), in rule order.
        widths_of: A callable returning the rules' maximum widths; called only on a cache
            miss (computing widths parses every pattern, which start-up avoids).

    Returns:
        ``(automaton, widths)``.
    """
    key = rules_key(regexes)
    path = cache_path(key)
    cached = _read(path, key, len(regexes))
    if cached is not None:
        _touch(path)
        return cached
    widths = list(widths_of())
    automaton = Automaton.compile(regexes, widths)
    _write(path, key, _encode(automaton, widths))
    return automaton, widths
