"""Finding the files to scan or clean, and reading them with clear, content-free errors.

Shared by ``ipykeyguard scan`` and ``ipykeyguard clean``: :func:`discover` turns the paths on a
command line into :class:`Target` files (recursing into directories, skipping version-control,
cache and virtualenv directories, applying the config's ``exclude`` patterns to every file,
named or found), and :func:`read_target` reads one target as a notebook, as text, or reports it
as binary. Every failure is a :class:`FileReadError` that names the path and the reason and
never quotes the file's content, so a caller can print it without leaking a secret.

Symbolic links met while recursing are not followed (as git stores the link, not its target),
so a link loop cannot trap the walk; a link named on the command line is followed.
"""

from __future__ import annotations

import os
import stat
import sys
from dataclasses import dataclass, field
from typing import BinaryIO, Iterable

from ..engine.config import Config
from ..storage.secret_files import is_secret_store
from ..transforms.notebook import NotebookError, parse_notebook

__all__ = [
    "STDIN",
    "SKIP_DIR_NAMES",
    "BINARY_SNIFF_BYTES",
    "FileReadError",
    "Target",
    "Discovery",
    "LoadedFile",
    "discover",
    "is_virtualenv",
    "read_target",
    "decode_text",
    "store_directory",
]

CHECKPOINT_DIR = ".ipynb_checkpoints"


def store_directory(path: str) -> str:
    """The directory whose ``.env`` keeps the keys moved out of ``path``: the file's own, or for
    a Jupyter checkpoint (``nb/.ipynb_checkpoints/x-checkpoint.ipynb``) the notebook's (``nb``),
    so the checkpoint's keys land where the notebook's do."""
    directory = os.path.dirname(os.path.abspath(path))
    if os.path.basename(directory) == CHECKPOINT_DIR:
        return os.path.dirname(directory)
    return directory

#: The path that means "read standard input".
STDIN = "-"

#: Directory names never recursed into: version control, caches, virtualenvs.
#: ``.ipynb_checkpoints`` is *not* among them: git does not ignore it by default, and it is
#: where the old, leaky copy of a notebook lives after the notebook itself was cleaned.
SKIP_DIR_NAMES = frozenset(
    {
        ".git",
        ".hg",
        ".svn",
        "__pycache__",
        "node_modules",
        ".venv",
        "venv",
        ".tox",
        ".nox",
        "site-packages",
    }
)

#: A file with a NUL byte in its first this-many bytes is binary and is not scanned.
BINARY_SNIFF_BYTES = 8192

NOTEBOOK_SUFFIX = ".ipynb"


class FileReadError(Exception):
    """A file that could not be read or parsed. ``str()`` is ``"<path>: <message>"``.

    Attributes:
        path: The path as the user gave it (or as found under a directory they gave).
        message: Why, without any of the file's content.
    """

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message

    def __reduce__(self):  # keep both fields across --jobs worker processes
        return (FileReadError, (self.path, self.message))


@dataclass(frozen=True)
class Target:
    """One file to read.

    Attributes:
        path: The path to show in reports (as given, or joined under the directory given);
            ``"-"`` for standard input.
        explicit: Named on the command line rather than found by recursion.
    """

    path: str
    explicit: bool = True

    @property
    def is_stdin(self) -> bool:
        """True for standard input."""
        return self.path == STDIN

    @property
    def is_notebook(self) -> bool:
        """True when the name says notebook (``.ipynb``); standard input is sniffed instead."""
        return self.path.lower().endswith(NOTEBOOK_SUFFIX)


@dataclass
class Discovery:
    """What :func:`discover` found.

    Attributes:
        targets: Files to read, in command-line order, directories expanded in sorted order.
        errors: Paths that do not exist or cannot be listed.
        excluded: Paths (files, or directories pruned whole) skipped by ``exclude`` patterns.
        skipped_links: Symbolic links met while recursing, not followed.
        secret_stores: Files whose job is to hold secrets (``.env``, ``.envrc``,
            ``.aws/credentials``, ...: :mod:`ipykeyguard.storage.secret_files`), named or found;
            never read or rewritten.
    """

    targets: list[Target] = field(default_factory=list)
    errors: list[FileReadError] = field(default_factory=list)
    excluded: list[str] = field(default_factory=list)
    skipped_links: list[str] = field(default_factory=list)
    secret_stores: list[Target] = field(default_factory=list)


def is_virtualenv(directory: str | os.PathLike[str]) -> bool:
    """True when ``directory`` is a virtual environment (it holds a ``pyvenv.cfg``)."""
    return os.path.isfile(os.path.join(directory, "pyvenv.cfg"))


def _skip_dir(parent: str, name: str) -> bool:
    return name in SKIP_DIR_NAMES or is_virtualenv(os.path.join(parent, name))


def _strerror(exc: OSError) -> str:
    # strerror is the OS's reason ("Permission denied"); never the file's content.
    return exc.strerror.lower() if exc.strerror else type(exc).__name__


def _walk(root: str, config: Config | None, found: Discovery) -> None:
    """Add every regular file under ``root`` to ``found`` (sorted, pruned, links not followed)."""

    def on_error(exc: OSError) -> None:
        where = exc.filename if isinstance(exc.filename, str) else root
        found.errors.append(FileReadError(where, f"cannot list directory: {_strerror(exc)}"))

    for folder, dirnames, filenames in os.walk(root, onerror=on_error, followlinks=False):
        kept = []
        for name in sorted(dirnames):
            full = os.path.join(folder, name)
            if os.path.islink(full):
                found.skipped_links.append(full)
            elif _skip_dir(folder, name):
                continue
            elif config is not None and config.is_excluded(full):
                found.excluded.append(full)
            else:
                kept.append(name)
        dirnames[:] = kept  # os.walk descends only into what is left here
        for name in sorted(filenames):
            full = os.path.join(folder, name)
            if os.path.islink(full):
                found.skipped_links.append(full)
            elif config is not None and config.is_excluded(full):
                found.excluded.append(full)
            elif is_secret_store(full):
                found.secret_stores.append(Target(full, explicit=False))
            else:
                found.targets.append(Target(full, explicit=False))


def discover(paths: Iterable[str], config: Config | None = None) -> Discovery:
    """Expand command-line ``paths`` into the files to read.

    Directories are walked recursively, skipping :data:`SKIP_DIR_NAMES`, virtualenvs (any
    directory with a ``pyvenv.cfg``) and symbolic links. The config's ``exclude`` patterns
    apply both to files found that way and to files named explicitly (so
    ``ipykeyguard scan $(git ls-files)`` honours them); excluded paths are listed in
    :attr:`Discovery.excluded`, never dropped silently. Secret stores (``.env``, ``.envrc``,
    ...) are listed in :attr:`Discovery.secret_stores`, not in the targets. Jupyter's
    ``.ipynb_checkpoints`` folders are walked. ``"-"`` is standard input.

    Args:
        paths: Files, directories or ``"-"``, as given on the command line.
        config: Supplies ``exclude`` patterns; ``None`` excludes nothing.

    Returns:
        The targets, the paths that could not be found or listed, and the excluded paths.
    """
    found = Discovery()
    seen: set[str] = set()
    for given in paths:
        if given == STDIN:
            found.targets.append(Target(STDIN))
            continue
        try:
            mode = os.stat(given).st_mode  # follows a link named explicitly
        except OSError as exc:
            reason = "no such file or directory" if isinstance(exc, FileNotFoundError) else _strerror(exc)
            found.errors.append(FileReadError(given, reason))
            continue
        if config is not None and config.is_excluded(given):
            found.excluded.append(given)
        elif stat.S_ISDIR(mode):
            _walk(given, config, found)
        elif stat.S_ISREG(mode) and is_secret_store(given):
            found.secret_stores.append(Target(given, explicit=True))
        elif stat.S_ISREG(mode):
            found.targets.append(Target(given, explicit=True))
        else:
            found.errors.append(FileReadError(given, "not a regular file or directory"))
    # The same file named twice (or named and found under a named directory) is read once.
    unique = []
    for target in found.targets:
        key = target.path if target.is_stdin else os.path.normpath(target.path)
        if key not in seen:
            seen.add(key)
            unique.append(target)
    found.targets = unique
    found.excluded = list(dict.fromkeys(os.path.normpath(p) for p in found.excluded))
    return found


@dataclass(frozen=True)
class LoadedFile:
    """A target's content, as read by :func:`read_target`.

    Attributes:
        path: The target's path.
        kind: ``"notebook"``, ``"text"`` or ``"binary"`` (not scanned).
        raw: The bytes read (``clean`` needs them to keep an unchanged file byte-identical).
        text: The decoded text (a BOM removed) for ``text`` files, else ``None``.
        notebook: The parsed notebook for ``notebook`` files, else ``None``.
    """

    path: str
    kind: str
    raw: bytes
    text: str | None = None
    notebook: dict | None = None


def decode_text(data: bytes) -> str:
    """Decode UTF-8 (a leading BOM is dropped).

    Raises:
        ValueError: the bytes are not UTF-8; the message gives the offset, not the content.
    """
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8 text (invalid byte at offset {exc.start}); only UTF-8 is scanned") from None


def _read_limited(stream: BinaryIO, limit: int) -> bytes:
    """At most ``limit + 1`` bytes, so that a caller can tell "over the limit" from "at it"."""
    chunks, total = [], 0
    while total <= limit:
        chunk = stream.read(min(1 << 20, limit + 1 - total))
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    return b"".join(chunks)


def _too_big(size: int, limit: int) -> str:
    return f"file is larger than max-file-size ({size} > {limit} bytes); not scanned"


def _looks_like_notebook(data: bytes) -> bool:
    head = data[:4096].lstrip(b"\xef\xbb\xbf \t\r\n")
    return head.startswith(b"{") and b'"nbformat' in data


def read_target(target: Target, *, max_file_size: int, stdin: BinaryIO | None = None) -> LoadedFile:
    """Read one target: notebooks (``.ipynb``) are parsed, other files decoded as UTF-8 text.

    Standard input is parsed as a notebook when it is a JSON object with an ``nbformat`` key,
    otherwise read as text. A non-notebook with a NUL byte in its first
    :data:`BINARY_SNIFF_BYTES` bytes is returned as ``binary`` and not decoded.

    Args:
        target: What to read.
        max_file_size: Files larger than this many bytes are refused.
        stdin: The stream for ``"-"`` (default: ``sys.stdin.buffer``).

    Returns:
        The file's bytes and its decoded text or parsed notebook.

    Raises:
        FileReadError: the file cannot be read, is too large, is not UTF-8, or is a notebook
            that is not valid JSON / not nbformat 2 to 4.
    """
    path = target.path
    try:
        if target.is_stdin:
            raw = _read_limited(stdin if stdin is not None else sys.stdin.buffer, max_file_size)
            if len(raw) > max_file_size:
                raise FileReadError(path, f"input is larger than max-file-size ({max_file_size} bytes); not scanned")
        else:
            with open(path, "rb") as handle:
                size = os.fstat(handle.fileno()).st_size
                if size > max_file_size:
                    raise FileReadError(path, _too_big(size, max_file_size))
                raw = _read_limited(handle, max_file_size)
            if len(raw) > max_file_size:  # grew while we read it
                raise FileReadError(path, _too_big(len(raw), max_file_size))
    except OSError as exc:
        raise FileReadError(path, f"cannot read: {_strerror(exc)}") from None

    as_notebook = _looks_like_notebook(raw) if target.is_stdin else target.is_notebook
    if as_notebook:
        try:
            nb = parse_notebook(raw, path, old_formats=True)  # nbformat 2 and 3 too
        except NotebookError as exc:
            message = str(exc)
            prefix = f"{path}: "
            raise FileReadError(path, message[len(prefix):] if message.startswith(prefix) else message) from None
        return LoadedFile(path, "notebook", raw, notebook=nb)
    if b"\0" in raw[:BINARY_SNIFF_BYTES]:
        return LoadedFile(path, "binary", raw)
    try:
        text = decode_text(raw)
    except ValueError as exc:
        raise FileReadError(path, str(exc)) from None
    return LoadedFile(path, "text", raw, text=text)
