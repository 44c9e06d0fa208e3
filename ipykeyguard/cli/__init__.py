"""The ``ipykeyguard`` command: :func:`main` dispatches to one module per sub-command
(:mod:`.scan`, :mod:`.clean`, :mod:`.enable`, :mod:`.filter`), each imported only when used."""

from .app import EXIT_OK, CLIError, build_parser, main

__all__ = ["main", "build_parser", "CLIError", "EXIT_OK"]
