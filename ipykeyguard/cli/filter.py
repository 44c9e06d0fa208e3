"""``ipykeyguard install-filter`` / ``uninstall-filter``: a git clean filter for notebooks.

Installs, in the way nbstripout users know::

    filter.ipykeyguard.clean    = <python> -m ipykeyguard clean --stdin --store none --quiet --stdin-filename %f
    filter.ipykeyguard.smudge   = cat
    filter.ipykeyguard.required = true
    diff.ipykeyguard.textconv   = <python> -m ipykeyguard clean --textconv

plus ``*.ipynb filter=ipykeyguard diff=ipykeyguard`` in ``.git/info/attributes`` (``--global``:
the global attributes file; ``--attributes FILE``: that file, e.g. ``.gitattributes`` to share
the setting through the repository).

What it does: ``git add`` stores the *cleaned* notebook in the index (code keys rewritten into
``os.environ`` lookups, every other key masked) while the working copy keeps its key, so
nothing is lost and nothing leaks. The filter never writes a secret store: git runs clean
filters whenever it likes (``git status``, ``git diff``), so it must be a pure function of its
input. ``required = true`` matters: without it git silently stages the *unfiltered* file when
the filter fails. ``<python>`` is the absolute path of the interpreter that ran this command,
so the filter works from any shell, without the virtualenv activated. Installing twice changes
nothing; uninstalling removes exactly what was installed.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import subprocess

# shlex, shutil and subprocess are imported where used: every ``ipykeyguard`` run (a pre-commit
# hook, the git filter on each staged notebook) builds this subcommand's parser.

__all__ = ["add_parser", "run_install", "run_uninstall", "ATTRIBUTES_LINE", "filter_commands"]

DRIVER = "ipykeyguard"
ATTRIBUTES_LINE = f"*.ipynb filter={DRIVER} diff={DRIVER}"


def add_parser(subparsers) -> None:
    """Register ``install-filter`` and ``uninstall-filter``."""
    for name, func, text in (
        ("install-filter", run_install, "install a git clean filter and diff textconv for *.ipynb"),
        ("uninstall-filter", run_uninstall, "remove the git filter installed by install-filter"),
    ):
        parser = subparsers.add_parser(name, help=text, description=text + " (like nbstripout --install).")
        parser.add_argument("--global", dest="global_", action="store_true", help="for every repository of this user (git config --global)")
        parser.add_argument(
            "--attributes", metavar="FILE",
            help="the attributes file to edit (default: .git/info/attributes, or the global one with --global)",
        )
        parser.set_defaults(func=func)


def filter_commands(python: str | None = None) -> dict[str, str]:
    """The git config entries of the filter, for ``python`` (default: this interpreter)."""
    import shlex

    base = f"{shlex.quote(python or sys.executable)} -m ipykeyguard"
    return {
        f"filter.{DRIVER}.clean": f"{base} clean --stdin --store none --quiet --stdin-filename %f",
        f"filter.{DRIVER}.smudge": "cat",
        f"filter.{DRIVER}.required": "true",
        f"diff.{DRIVER}.textconv": f"{base} clean --textconv",
    }


def _git(*args: str, check: bool = True) -> "subprocess.CompletedProcess":
    import shutil
    import subprocess

    from .app import CLIError

    exe = shutil.which("git")
    if exe is None:
        raise CLIError("git is not installed (or not on PATH)")
    result = subprocess.run([exe, *args], capture_output=True, text=True)
    if check and result.returncode != 0:
        raise CLIError(f"git {' '.join(args[:3])}: {result.stderr.strip() or 'failed'}")
    return result


def _scope(args: argparse.Namespace) -> list[str]:
    from .app import CLIError

    if args.global_:
        return ["--global"]
    if _git("rev-parse", "--git-dir", check=False).returncode != 0:
        raise CLIError("not inside a git repository (run it in one, or use --global)")
    return ["--local"]


def _attributes_file(args: argparse.Namespace) -> Path:
    if args.attributes:
        return Path(args.attributes)
    if args.global_:
        configured = _git("config", "--global", "--get", "core.attributesFile", check=False).stdout.strip()
        if configured:
            return Path(os.path.expanduser(configured))
        base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
        return Path(base) / "git" / "attributes"
    return Path(_git("rev-parse", "--git-path", "info/attributes").stdout.strip())


def _read_lines(path: Path) -> list[str]:
    from .app import CLIError

    try:
        return path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError) as exc:
        raise CLIError(f"{path}: cannot read: {exc}") from None


def _write_lines(path: Path, lines: list[str]) -> None:
    from .app import CLIError
    from ..storage.store import atomic_write_bytes

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        data = ("\n".join(lines) + "\n" if lines else "").encode("utf-8")
        atomic_write_bytes(path, data, mode=None if path.exists() else 0o644)
    except OSError as exc:
        raise CLIError(f"{path}: cannot write: {exc.strerror or exc}") from None


def run_install(args: argparse.Namespace) -> int:
    """Install the filter; returns 0. Running it again changes nothing.

    Raises:
        CLIError: git is missing, not in a repository (without ``--global``), or a file cannot
            be written.
    """
    scope = _scope(args)
    for key, value in filter_commands().items():
        _git("config", *scope, key, value)
    attributes = _attributes_file(args)
    lines = _read_lines(attributes)
    if ATTRIBUTES_LINE not in (line.strip() for line in lines):
        _write_lines(attributes, lines + [ATTRIBUTES_LINE])
        print(f"added '{ATTRIBUTES_LINE}' to {attributes}")
    else:
        print(f"{attributes} already has '{ATTRIBUTES_LINE}'")
    where = "global" if args.global_ else "repository"
    print(f"installed the '{DRIVER}' git filter ({where} config): git add stores notebooks without keys")
    return 0


def run_uninstall(args: argparse.Namespace) -> int:
    """Remove the filter's config sections and attributes line; returns 0.

    Raises:
        CLIError: git is missing, or a file cannot be written.
    """
    scope = _scope(args)
    for section in (f"filter.{DRIVER}", f"diff.{DRIVER}"):
        # Exit status 128 means "no such section": nothing to remove.
        _git("config", *scope, "--remove-section", section, check=False)
    attributes = _attributes_file(args)
    lines = _read_lines(attributes)
    kept = [line for line in lines if line.strip() != ATTRIBUTES_LINE]
    if kept != lines:
        _write_lines(attributes, kept)
        print(f"removed '{ATTRIBUTES_LINE}' from {attributes}")
    print(f"uninstalled the '{DRIVER}' git filter")
    return 0
