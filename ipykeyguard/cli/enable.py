"""``ipykeyguard enable`` / ``ipykeyguard disable``: guard every IPython kernel and terminal.

IPython has no drop-in configuration directory, so the only way to load an extension in every
kernel and terminal without a ``%load_ext`` cell is a line in an IPython config file. ``enable``
appends one clearly delimited block to that file (creating it if needed) and ``disable`` removes
exactly that block, leaving the rest of the user's configuration byte for byte as it was::

    # >>> ipykeyguard >>>
    ...
    c.InteractiveShellApp.extensions.append("ipykeyguard")
    (and "ipykeyguard" added to c.IPKernelApp.extensions / c.TerminalIPythonApp.extensions
     when the file assigned a list to them, see below)
    # <<< ipykeyguard <<<

Where:

- ``--user`` (default): ``profile_default/ipython_config.py`` (read by terminals and kernels)
  and ``profile_default/ipython_kernel_config.py`` (read by kernels after it, so an assignment
  to ``extensions`` there cannot drop ours) in the IPython directory (``$IPYTHONDIR``, else
  ``~/.ipython``; ``--ipython-dir`` overrides it).
- ``--sys-prefix``: ``{sys.prefix}/etc/ipython/ipython_config.py``, read by every IPython of this
  environment (terminal and kernel) whatever the user's profile.

Why ``.append`` is right (measured with traitlets 5 and a real kernel): on a config object in
which ``extensions`` was never assigned, ``c.InteractiveShellApp.extensions`` is a traitlets
``LazyConfigValue``; ``append`` records the operation and traitlets applies it to the trait's
real value when the application loads its config, so it adds to whatever other files set and
never replaces it. An *assignment* later in the same file (or in a file read after ours)
replaces the list, which is why the block goes at the end of each file. Loading the extension
twice (both files contribute an append in a kernel) is harmless: IPython loads it once.

A user config may also set ``c.IPKernelApp.extensions = [...]`` (or
``c.TerminalIPythonApp.extensions``): traitlets gives the more specific class's section
precedence, so kernels would ignore ``InteractiveShellApp.extensions`` and never load the guard
(measured). When the file assigned such a list before our block, the block appends
``"ipykeyguard"`` to that plain list as well. It never adds a *lazy* ``append`` to those
sections: with lazy values for ``extensions`` in two sections of one application's class
hierarchy, traitlets 5.16 merges them into one shared list that doubles on every configurable
created, and the kernel hangs at start (measured). For the same reason a user config that itself
does ``c.IPKernelApp.extensions.append(...)`` conflicts with our block: ``enable`` warns about
it and says what to write instead. With ``--sys-prefix``, an ``extensions`` assignment in the
user's own profile (read after the environment's file) would drop the guard, so ``enable`` warns
about that too.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
from pathlib import Path

from .app import EXIT_OK, CLIError

__all__ = ["BEGIN_MARKER", "END_MARKER", "config_block", "config_conflicts", "add_block", "remove_block",
           "target_files", "run"]

BEGIN_MARKER = "# >>> ipykeyguard >>>"
END_MARKER = "# <<< ipykeyguard <<<"


def config_block() -> str:
    """The block ``enable`` writes: markers included, ending with a newline."""
    return (
        f"{BEGIN_MARKER}\n"
        "# Added by `ipykeyguard enable`: load the ipykeyguard key guard in every IPython kernel\n"
        "# and terminal. `ipykeyguard disable` removes this block (and only this block).\n"
        "_ipykeyguard_config = get_config()  # noqa: F821\n"
        "_ipykeyguard_config.InteractiveShellApp.extensions.append(\"ipykeyguard\")\n"
        "# An assignment `c.IPKernelApp.extensions = [...]` above would override that line in kernels.\n"
        "for _ipykeyguard_app in (\"IPKernelApp\", \"TerminalIPythonApp\"):\n"
        "    _ipykeyguard_list = (_ipykeyguard_config[_ipykeyguard_app].get(\"extensions\")\n"
        "                         if _ipykeyguard_app in _ipykeyguard_config else None)\n"
        "    if isinstance(_ipykeyguard_list, list) and \"ipykeyguard\" not in _ipykeyguard_list:\n"
        "        _ipykeyguard_list.append(\"ipykeyguard\")\n"
        f"{END_MARKER}\n"
    )


#: A lazy list operation on an application's own ``extensions`` (see the module docstring).
_LAZY_APP_EXTENSIONS_RE = re.compile(
    r"^[^#\n]*\b(IPKernelApp|TerminalIPythonApp)\.extensions\s*(?:\.\s*(?:append|extend|insert|prepend|add)\b|\+=)",
    re.MULTILINE,
)
#: Any assignment to an ``extensions`` list (for ``--sys-prefix``: the user's profile wins).
_ASSIGNED_EXTENSIONS_RE = re.compile(
    r"^[^#\n]*\b(InteractiveShellApp|IPKernelApp|TerminalIPythonApp)\.extensions\s*=(?!=)", re.MULTILINE
)


def config_conflicts(text: str, *, later_file: bool = False) -> list[str]:
    """Warnings about settings in a config file that would keep the guard from loading.

    Args:
        text: The file's text; our own block, if present, is ignored.
        later_file: The file is read after ours (the user's profile, for ``--sys-prefix``), so
            any assignment to an ``extensions`` list replaces ours.

    Returns:
        One human line per conflict (empty when there is none).
    """
    span = _block_span(text, "config")
    if span is not None:
        text = text[:span[0]] + text[span[1]:]
    warnings = [
        f"it changes c.{m.group(1)}.extensions with a list method; with ipykeyguard's block "
        f"traitlets then hangs IPython at start: assign a list instead "
        f"(c.{m.group(1)}.extensions = [...]), which the block extends"
        for m in _LAZY_APP_EXTENSIONS_RE.finditer(text)
    ]
    if later_file:
        warnings += [
            f"it assigns c.{m.group(1)}.extensions, which replaces the environment's setting: "
            f"add \"ipykeyguard\" to that list (or run `ipykeyguard enable` without --sys-prefix)"
            for m in _ASSIGNED_EXTENSIONS_RE.finditer(text)
        ]
    return list(dict.fromkeys(warnings))


def _block_span(text: str, where: str) -> tuple[int, int] | None:
    """Offsets of our block in ``text`` (from its begin marker through the end marker's newline).

    Raises:
        CLIError: a begin marker without an end marker (or the reverse): the file was edited by
            hand and we will not guess which lines are ours.
    """
    begin = text.find(BEGIN_MARKER)
    end = text.find(END_MARKER)
    if begin == -1 and end == -1:
        return None
    if begin == -1 or end == -1 or end < begin:
        raise CLIError(f"{where}: unbalanced ipykeyguard markers; fix or remove the block by hand")
    stop = end + len(END_MARKER)
    if text[stop:stop + 1] == "\n":
        stop += 1
    return begin, stop


def add_block(text: str, where: str = "config") -> str:
    """``text`` with our block present exactly once, at the end (a current block is kept as is).

    Raises:
        CLIError: the file holds unbalanced markers.
    """
    span = _block_span(text, where)
    if span is not None:
        if text[span[0]:span[1]] == config_block():
            return text
        text = text[:span[0]] + text[span[1]:]
    if text and not text.endswith("\n"):
        text += "\n"
    return text + config_block()


def remove_block(text: str, where: str = "config") -> str:
    """``text`` without our block (unchanged when there is none).

    Raises:
        CLIError: the file holds unbalanced markers.
    """
    span = _block_span(text, where)
    if span is None:
        return text
    return text[:span[0]] + text[span[1]:]


def _ipython_dir(explicit: str | None) -> Path:
    if explicit:
        return Path(explicit).expanduser()
    from IPython.paths import get_ipython_dir  # the adapter may import IPython

    return Path(get_ipython_dir())


def target_files(args: argparse.Namespace) -> list[Path]:
    """The config files ``enable``/``disable`` edit for the chosen scope."""
    if args.sys_prefix:
        return [Path(sys.prefix) / "etc" / "ipython" / "ipython_config.py"]
    profile = _ipython_dir(args.ipython_dir) / "profile_default"
    return [profile / "ipython_config.py", profile / "ipython_kernel_config.py"]


def _write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` in one step, keeping the old file's permissions."""
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = path.stat().st_mode & 0o7777 if path.exists() else 0o644
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise CLIError(f"{path}: cannot read: {exc}") from None


def run(args: argparse.Namespace) -> int:
    """Add (``enable``) or remove (``disable``) the block in every target file; idempotent.

    Returns:
        0; a file already in the wanted state is left untouched and reported as such.

    Raises:
        CLIError: a file cannot be read or written, or holds unbalanced markers.
    """
    enabling = args.command == "enable"
    for path in target_files(args):
        old = _read(path)
        if enabling:
            for warning in config_conflicts(old or ""):
                print(f"ipykeyguard: warning: {path}: {warning}", file=sys.stderr)
        if enabling:
            new = add_block(old or "", str(path))
        else:
            if old is None:
                print(f"ipykeyguard: not enabled in {path} (no such file)")
                continue
            new = remove_block(old, str(path))
        if new == old:
            state = "already enabled" if enabling else "not enabled"
            print(f"ipykeyguard: {state} in {path}")
            continue
        try:
            if not enabling and new == "":
                path.unlink()  # the file held nothing but our block
            else:
                _write_atomically(path, new)
        except OSError as exc:
            raise CLIError(f"{path}: cannot write: {exc}") from None
        print(f"ipykeyguard: {'enabled' if enabling else 'disabled'} in {path}")
    if enabling and args.sys_prefix:
        profile = _ipython_dir(args.ipython_dir) / "profile_default"
        for path in (profile / "ipython_config.py", profile / "ipython_kernel_config.py"):
            for warning in config_conflicts(_read(path) or "", later_file=True):
                print(f"ipykeyguard: warning: {path}: {warning}", file=sys.stderr)
    if enabling:
        print("ipykeyguard: new IPython kernels and terminals load the guard; restart running kernels.")
    return EXIT_OK


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``enable`` and ``disable``."""
    for name, summary in (
        ("enable", "load the key guard in every IPython kernel and terminal (edits IPython config)"),
        ("disable", "remove what `ipykeyguard enable` added"),
    ):
        parser = subparsers.add_parser(name, help=summary, description=summary)
        scope = parser.add_mutually_exclusive_group()
        scope.add_argument(
            "--user", dest="sys_prefix", action="store_false",
            help="the user's IPython profile_default (default)",
        )
        scope.add_argument(
            "--sys-prefix", dest="sys_prefix", action="store_true",
            help=f"every IPython of this environment ({sys.prefix}/etc/ipython)",
        )
        parser.add_argument(
            "--ipython-dir", metavar="DIR", default=None,
            help="IPython directory for --user (default: $IPYTHONDIR or ~/.ipython)",
        )
        parser.set_defaults(func=run, sys_prefix=False)
