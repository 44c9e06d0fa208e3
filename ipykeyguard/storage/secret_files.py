"""Files whose job is to hold secrets (``.env``, ``.envrc``, ``.aws/credentials``, ...).

The list is data (``secret_files.toml`` beside this module) so that it can grow without code.
ipykeyguard never rewrites such a file: masking a key there would destroy the only copy of a
secret that is exactly where it belongs. ``clean`` skips them in directories and refuses one
named on the command line; ``scan`` lists them as ``skipped: secret store``.
"""

from __future__ import annotations

import fnmatch
import functools
import os
import re
from pathlib import Path

__all__ = ["is_secret_store", "secret_store_patterns"]


@functools.lru_cache(maxsize=1)
def secret_store_patterns() -> tuple[tuple[str, ...], tuple[tuple[str, ...], ...]]:
    """``(name patterns, path patterns split into components)`` from ``secret_files.toml``."""
    from ..engine._toml import loads
    from ..engine.dbcache import parsed_toml

    data = parsed_toml(Path(__file__).with_name("secret_files.toml").read_text("utf-8"), loads)
    names = tuple(str(p) for p in data.get("names", ()))
    paths = tuple(tuple(str(p).strip("/").split("/")) for p in data.get("paths", ()))
    return names, paths


def is_secret_store(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` names a file whose job is to hold secrets.

    Args:
        path: Any path (relative or absolute; it need not exist). Only its last components are
            looked at, so the answer does not depend on where the project lives.

    Returns:
        Whether the file name matches a ``names`` pattern or the path ends with a ``paths``
        pattern of ``secret_files.toml``.
    """
    names_re, paths = _matchers()
    parts = os.path.normpath(os.fspath(path)).replace(os.sep, "/").split("/")
    if names_re.match(parts[-1]):
        return True
    for pattern in paths:
        if len(parts) >= len(pattern) and all(
            fnmatch.fnmatchcase(part, want) for part, want in zip(parts[-len(pattern):], pattern)
        ):
            return True
    return False


@functools.lru_cache(maxsize=1)
def _matchers():
    """The name patterns as one compiled regex (one compile instead of one per pattern on the
    first file of every run), and the path patterns as they are."""
    names, paths = secret_store_patterns()
    return re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in names) or "(?!)"), paths
