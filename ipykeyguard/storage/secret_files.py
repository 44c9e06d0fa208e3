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
import sys
from importlib import resources

__all__ = ["is_secret_store", "secret_store_patterns"]


@functools.lru_cache(maxsize=1)
def secret_store_patterns() -> tuple[tuple[str, ...], tuple[tuple[str, ...], ...]]:
    """``(name patterns, path patterns split into components)`` from ``secret_files.toml``."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib

    data = tomllib.loads(resources.files(__package__).joinpath("secret_files.toml").read_text("utf-8"))
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
    names, paths = secret_store_patterns()
    parts = os.path.normpath(os.fspath(path)).replace(os.sep, "/").split("/")
    name = parts[-1]
    if any(fnmatch.fnmatchcase(name, pattern) for pattern in names):
        return True
    for pattern in paths:
        if len(parts) >= len(pattern) and all(
            fnmatch.fnmatchcase(part, want) for part, want in zip(parts[-len(pattern):], pattern)
        ):
            return True
    return False
