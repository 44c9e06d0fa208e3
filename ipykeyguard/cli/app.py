"""The ``ipykeyguard`` command line.

Each subcommand lives in its own module (``_cmd_<name>.py``) with ``add_parser(subparsers)``
and ``run(args) -> int``; this module only builds the parser and maps errors to exit codes:
0 clean / nothing changed, 1 findings / changed, 2 usage or input error.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

__all__ = ["main", "CLIError", "EXIT_OK", "EXIT_FINDINGS", "EXIT_ERROR"]

EXIT_OK, EXIT_FINDINGS, EXIT_ERROR = 0, 1, 2

#: subcommand name -> module that implements it
COMMANDS = {
    "scan": "scan",
    "clean": "clean",
    "enable": "enable",
    "disable": "enable",
    "install-filter": "filter",
    "uninstall-filter": "filter",
    "exposures": "exposures",
}


class CLIError(Exception):
    """An error the CLI reports as ``ipykeyguard: error: <message>`` with ``exit_code``."""

    def __init__(self, message: str, exit_code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse's own usage errors exit 2 as well
        self.print_usage(sys.stderr)
        raise CLIError(message, EXIT_ERROR)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The ``ipykeyguard`` parser.

    Args:
        command: Build only this sub-command's parser (its module is the only one imported, which
            keeps a one-file ``scan`` from pulling in every other command); ``None`` or an
            unknown name builds them all, so top-level help and "invalid choice" stay complete.
    """
    from .. import __version__

    parser = _Parser(
        prog="ipykeyguard",
        description="Keep API keys and other credentials out of Jupyter notebooks.",
    )
    parser.add_argument("--version", action="version", version=f"ipykeyguard {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    seen = set()
    wanted = {COMMANDS[command]} if command in COMMANDS else set(COMMANDS.values())
    for name, module_name in COMMANDS.items():
        if module_name in seen or module_name not in wanted:
            continue
        seen.add(module_name)
        module = importlib.import_module(f"ipykeyguard.cli.{module_name}")
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (also used as the pre-commit entry point)."""
    try:
        argv = list(sys.argv[1:] if argv is None else argv)
        parser = build_parser(argv[0] if argv else None)
        args = parser.parse_args(argv)
        return int(args.func(args))
    except CLIError as exc:
        print(f"ipykeyguard: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("ipykeyguard: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
