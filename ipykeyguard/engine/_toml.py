"""The engine's data files and TOML parser, loaded on first need.

A one-notebook ``scan`` reads the shipped tables from the JSON cache
(:func:`ipykeyguard.engine.dbcache.parsed_toml`) and never parses TOML, so ``tomllib`` (4 ms
to import) and ``importlib.resources`` (5 ms with what it imports) stay out of its start-up.
The data files sit beside this module in every install (wheel, sdist, editable).
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["loads", "packaged_text"]

_HERE = Path(__file__).resolve().parent


def loads(text: str) -> dict:
    """Parse TOML text.

    Raises:
        ValueError: the text is not TOML (``tomllib.TOMLDecodeError`` is a ``ValueError``).
    """
    try:
        import tomllib
    except ImportError:  # pragma: no cover - Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    return tomllib.loads(text)


def packaged_text(name: str) -> str:
    """The text of the data file ``name`` shipped in ``ipykeyguard/engine/``."""
    return (_HERE / name).read_text(encoding="utf-8")
