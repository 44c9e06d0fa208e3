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
    if text[stop:stop + 2] == "\r\n":
        stop += 2
    elif text[stop:stop + 1] == "\n":
        stop += 1
    return begin, stop


def _newline_of(text: str) -> str:
    """The file's line ending: CRLF when its first line ends so, else LF."""
    first = text.find("\n")
    return "\r\n" if first > 0 and text[first - 1] == "\r" else "\n"


def add_block(text: str, where: str = "config") -> str:
    """``text`` with our block present exactly once, at the end (a current block is kept as is).
    The block takes the file's line ending; no other byte of ``text`` changes.

    Raises:
        CLIError: the file holds unbalanced markers.
    """
    newline = _newline_of(text)
    block = config_block().replace("\n", newline)
    span = _block_span(text, where)
    if span is not None:
        if text[span[0]:span[1]] == block:
            return text
        text = text[:span[0]] + text[span[1]:]
    if text and not text.endswith("\n"):
        text += newline
    return text + block


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


def _real_file(path: Path) -> Path:
    """The file to edit for ``path``: a symbolic link's target (the link itself stays a link)."""
    return Path(os.path.realpath(path)) if path.is_symlink() else path


def _read(path: Path) -> str | None:
    """The file's text exactly as stored (no newline translation), or ``None`` when absent."""
    try:
        with open(path, encoding="utf-8", newline="") as handle:
            return handle.read()
    except FileNotFoundError:
        return None
    except UnicodeDecodeError:
        raise CLIError(f"{path}: cannot read: not UTF-8 text") from None
    except OSError as exc:
        raise CLIError(f"{path}: cannot read: {exc.strerror or type(exc).__name__}") from None


def _stage(path: Path, text: str) -> str:
    """Write ``text`` to a temporary beside ``path`` (with ``path``'s permissions) and return it.

    Raises:
        OSError: nothing is left behind.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = path.stat().st_mode & 0o7777 if path.exists() else 0o644
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".ipykeyguard-tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return tmp


def _apply_all(changes: list[tuple[Path, str | None, str | None]]) -> None:
    """Apply every ``(file, old text or None, new text or None to delete)``, or none of them.

    Every new text is first written to a temporary beside its file (where most failures
    happen: a read-only directory, a full disk); only then are the files replaced, and if a
    replacement still fails the files already replaced get their old text back.

    Raises:
        CLIError: nothing was changed (or, if even the rollback failed, the message says which
            file to check).
    """
    staged: list[tuple[Path, str | None, str | None]] = []
    try:
        for path, old, new in changes:
            staged.append((path, old, _stage(path, new) if new is not None else None))
    except OSError as exc:
        for _path, _old, tmp in staged:
            if tmp is not None:
                Path(tmp).unlink(missing_ok=True)
        raise CLIError(f"{path}: cannot write: {exc.strerror or type(exc).__name__}; no file was changed") from None
    done: list[tuple[Path, str | None]] = []
    for index, (path, old, tmp) in enumerate(staged):
        try:
            if tmp is not None:
                os.replace(tmp, path)
            else:
                path.unlink()
        except OSError as exc:
            for _path, _old, pending in staged[index:]:
                if pending is not None:
                    Path(pending).unlink(missing_ok=True)
            broken = []
            for done_path, done_old in reversed(done):
                try:
                    if done_old is None:
                        done_path.unlink()
                    else:
                        os.replace(_stage(done_path, done_old), done_path)
                except OSError:
                    broken.append(str(done_path))
            detail = f"; could not undo the change to {', '.join(broken)}" if broken else "; no file was changed"
            raise CLIError(f"{path}: cannot write: {exc.strerror or type(exc).__name__}{detail}") from None
        done.append((path, old))


def run(args: argparse.Namespace) -> int:
    """Add (``enable``) or remove (``disable``) the block in every target file; idempotent.

    Returns:
        0; a file already in the wanted state is left untouched and reported as such.

    Raises:
        CLIError: a file cannot be read or written, or holds unbalanced markers.
    """
    enabling = args.command == "enable"
    changes: list[tuple[Path, str | None, str | None]] = []
    messages: list[str] = []
    for shown in target_files(args):
        path = _real_file(shown)  # a symlinked config: edit its target, keep the link
        old = _read(path)
        if enabling:
            for warning in config_conflicts(old or ""):
                print(f"ipykeyguard: warning: {shown}: {warning}", file=sys.stderr)
        if enabling:
            new: str | None = add_block(old or "", str(shown))
        else:
            if old is None:
                print(f"ipykeyguard: not enabled in {shown} (no such file)")
                continue
            new = remove_block(old, str(shown))
        if new == old:
            state = "already enabled" if enabling else "not enabled"
            print(f"ipykeyguard: {state} in {shown}")
            continue
        if not enabling and new == "" and path == shown:
            new = None  # the file held nothing but our block (a link's target is emptied instead)
        changes.append((path, old, new))
        messages.append(f"ipykeyguard: {'enabled' if enabling else 'disabled'} in {shown}")
    _apply_all(changes)  # both files, or neither
    for message in messages:
        print(message)
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
