"""Reading notebooks and walking every text they hold.

A notebook is read as a notebook, not as JSON text: :func:`iter_leaves` yields each piece of
text with its place (cell index, a field path such as ``outputs[2].data.text/html``) and its
kind (code, markdown, raw, output, metadata, attachment). Binary mimetypes (PNG, JPEG, PDF,
...) are skipped by type. :func:`set_leaf` writes a changed text back in the same shape (a
string stays a string, a list of lines stays a list of lines), so an unchanged notebook can be
re-serialised byte for byte.

The keys of free-form JSON objects (notebook and cell metadata, widget state, JSON outputs such
as ``display(JSON({key: 1}))``, attachment names) are text a user chose, so they are leaves too
(``Leaf.is_key``; keys shorter than 8 characters or made of ordinary words are skipped: they
can hold no secret a rule finds): a key that is a secret is found, and :func:`set_leaf` renames it in place,
keeping the object's order. A key leaf comes after the leaves below it, so a walk that writes
as it goes has finished with the old name's subtree before the name changes. In field paths a
key that could be a secret is shown by position (``<key 2>``), never as text: a location must
not leak what it locates.

Nothing here imports nbformat: notebooks are plain dicts (``NotebookNode`` is a dict too).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

__all__ = [
    "NotebookError",
    "Leaf",
    "parse_notebook",
    "read_notebook",
    "is_code_source",
    "iter_leaves",
    "set_leaf",
    "is_text_mimetype",
    "detect_indent",
    "dump_notebook",
    "value_offsets",
    "file_positions",
    "key_label",
    "renamed_key",
]

#: Field kinds. Only ``code`` leaves are rewritten to environment lookups; the rest are masked.
CODE, MARKDOWN, RAW, OUTPUT, METADATA, ATTACHMENT = "code", "markdown", "raw", "output", "metadata", "attachment"

_TEXTUAL_APPLICATION = {
    "application/javascript",
    "application/x-javascript",
    "application/ecmascript",
    "application/x-latex",
    "application/x-tex",
    "application/xml",
    "application/x-sh",
    "application/x-python",
    "application/sql",
    "application/x-sql",
    "application/vnd.code.notebook.stdout",
    "application/vnd.code.notebook.stderr",
    "application/vnd.code.notebook.error",
}


class NotebookError(ValueError):
    """A file is not a notebook we can read. The message says why and where; no content."""


def is_text_mimetype(mime: str) -> bool:
    """True for mimetypes that hold text or JSON; False for binary ones (images, PDF, ...)."""
    mime = mime.lower().split(";", 1)[0].strip()
    if mime.startswith("text/"):
        return True
    if mime.endswith("+json") or mime == "application/json" or mime.endswith("+xml"):
        return True
    return mime in _TEXTUAL_APPLICATION


@dataclass(frozen=True)
class Leaf:
    """One text inside a notebook.

    Attributes:
        cell: Cell index, or ``None`` for notebook-level metadata.
        field: Human-readable path inside the cell (or notebook), e.g. ``"source"``.
        kind: ``code``, ``markdown``, ``raw``, ``output``, ``metadata`` or ``attachment``.
        text: The text (lists of lines joined).
        path: Keys and indices from the notebook root to the value, for :func:`set_leaf`; for
            a key leaf, the path of the object holding the key, then the key.
        is_lines: The value was stored as a list of lines.
        is_key: The text is a key of a JSON object, not a value; its field ends in ``<key N>``
            (N counts the object's keys from 0).
    """

    cell: int | None
    field: str
    kind: str
    text: str
    path: tuple[Any, ...]
    is_lines: bool = False
    is_key: bool = False


# A key shown as text in a field path: short, or made of ordinary words (``language_info``,
# ``application/vnd.jupyter.widget-state+json``, ``ExecuteTime``). Anything else (a model id, a
# token used as a key) is shown by position.
_WORD_KEY_RE = re.compile(r"[^A-Za-z0-9]*(?:(?:[a-z]+|[A-Z]+|(?:[A-Z]?[a-z]+)+|[0-9]{1,4})(?:[^A-Za-z0-9]+|\Z))*")
_SHORT_KEY = 8


def key_label(key: Any, position: int) -> str:
    """How a JSON object key appears in a field path: its text when it cannot hold a secret
    (shorter than 8 characters, or ordinary words), else ``<key N>`` by position."""
    if isinstance(key, str) and (len(key) < _SHORT_KEY or _WORD_KEY_RE.fullmatch(key)):
        return key
    return f"<key {position}>"


def _may_be_secret_key(key: Any) -> bool:
    """Whether a key is worth scanning: keys shorter than 8 characters or made of ordinary
    words (``kernelspec``, ``application/json``, ``ExecuteTime``) hold no secret a rule could
    find, and skipping them keeps the walk's cost near what it was without keys (a scan call
    per key costs tens of microseconds; most notebook keys are such names)."""
    return isinstance(key, str) and len(key) >= _SHORT_KEY and not _WORD_KEY_RE.fullmatch(key)


def renamed_key(mapping: dict, old: Any, new: str) -> dict:
    """A copy of ``mapping`` (same type) with key ``old`` renamed to ``new``, order kept.

    When ``new`` is already a key, ``" (2)"``, ``" (3)"``, ... is appended so no value is lost
    (two secrets used as keys of one object become the same mask).
    """
    if new != old and new in mapping:
        n = 2
        while f"{new} ({n})" in mapping:
            n += 1
        new = f"{new} ({n})"
    items = [(new if k == old else k, v) for k, v in mapping.items()]
    try:
        out = type(mapping)()
    except TypeError:
        out = {}
    for k, v in items:
        out[k] = v
    return out


def _decode(data: bytes, name: str) -> str:
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise NotebookError(
            f"{name}: not UTF-8 text (invalid byte 0x{data[exc.start]:02x} at offset {exc.start})"
        ) from None


def parse_notebook(data: str | bytes, name: str = "<notebook>", *, old_formats: bool = False) -> dict:
    """Parse notebook JSON and check that it is a notebook we support (nbformat 4).

    Args:
        data: The file's bytes or text.
        name: Shown in errors.
        old_formats: Accept nbformat 2 and 3 too (worksheets of cells): :func:`iter_leaves`
            reads them and :func:`set_leaf` writes them back in their own layout.

    Raises:
        NotebookError: not UTF-8, not JSON, not a notebook, or an nbformat older than 4
            (older than 2 with ``old_formats``).
    """
    text = _decode(data, name) if isinstance(data, bytes) else data.lstrip("\ufeff")
    try:
        nb = json.loads(text)
    except json.JSONDecodeError as exc:
        raise NotebookError(f"{name}: not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise NotebookError(f"{name}: JSON nested too deeply") from None
    if not isinstance(nb, dict):
        raise NotebookError(f"{name}: not a notebook (the top level is not a JSON object)")
    version = nb.get("nbformat")
    if not isinstance(version, int):
        raise NotebookError(f"{name}: not a notebook (no integer 'nbformat' field)")
    if old_formats and version in (2, 3):
        if "cells" in nb and "worksheets" not in nb:
            raise NotebookError(f"{name}: not a notebook (nbformat {version} with the 'cells' list of version 4)")
        sheets = nb.get("worksheets", [])  # nbformat reads a notebook without any as empty
        if not isinstance(sheets, list) or not all(
            isinstance(sheet, dict) and isinstance(sheet.get("cells", []), list)
            and all(isinstance(c, dict) for c in sheet.get("cells", [])) for sheet in sheets
        ):
            raise NotebookError(f"{name}: not a notebook ('worksheets' is not a list of objects with lists of cells)")
        return nb
    if version < 4:
        raise NotebookError(
            f"{name}: nbformat {version} is not supported; upgrade it with "
            "'jupyter nbconvert --to notebook --nbformat 4 --inplace'"
        )
    if version > 4:
        raise NotebookError(f"{name}: nbformat {version} is newer than this ipykeyguard supports (4)")
    cells = nb.get("cells")
    if not isinstance(cells, list) or not all(isinstance(c, dict) for c in cells):
        raise NotebookError(f"{name}: not a notebook ('cells' is not a list of objects)")
    return nb


def read_notebook(path: str | Path) -> tuple[dict, bytes]:
    """Read and parse a notebook file; returns the notebook and the bytes read.

    Raises:
        NotebookError: see :func:`parse_notebook`; also when the file cannot be read.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise NotebookError(f"{path}: cannot read: {exc.strerror or exc}") from None
    return parse_notebook(data, str(path)), data


def detect_indent(raw: str | bytes) -> int | None:
    """The JSON indent a notebook file was written with (Jupyter writes 1), ``None`` if compact."""
    if isinstance(raw, bytes):
        raw = raw[:4096].decode("utf-8", "replace")
    raw = raw.lstrip("\ufeff")
    nl = raw.find("\n")
    if nl < 0:
        return None
    rest = raw[nl + 1 :]
    return len(rest) - len(rest.lstrip(" ")) or None


def dump_notebook(nb: dict, indent: int | None = 1) -> str:
    """Serialise a notebook the way Jupyter does (indent 1, sorted keys, non-ASCII kept, final newline)."""
    return json.dumps(nb, indent=indent, sort_keys=True, ensure_ascii=False) + "\n"


def _text(value: Any) -> tuple[str, bool] | None:
    if isinstance(value, str):
        return value, False
    if isinstance(value, list):
        try:
            # join checks that every item is a string, in C: the 'all(isinstance...)' it replaces
            # took half of a notebook walk on long outputs stored as lists of lines.
            return "".join(value), True
        except TypeError:
            return None
    return None


class _KeyOf:
    """A stack entry for a JSON object key (yielded after the key's value subtree)."""

    __slots__ = ("key",)

    def __init__(self, key: str) -> None:
        self.key = key


def _json_leaves(value: Any, field: str, path: tuple, cell: int | None, kind: str) -> Iterator[Leaf]:
    stack: list[tuple[Any, str, tuple]] = [(value, field, path)]
    while stack:
        node, fld, pth = stack.pop()
        if isinstance(node, str):
            if node:
                yield Leaf(cell, fld, kind, node, pth)
        elif isinstance(node, _KeyOf):
            yield Leaf(cell, fld, kind, node.key, pth, is_key=True)
        elif isinstance(node, dict):
            keys = list(node)
            for position in range(len(keys) - 1, -1, -1):
                key = keys[position]
                if _may_be_secret_key(key):
                    # Pushed first, popped after the value's whole subtree.
                    stack.append((_KeyOf(key), f"{fld}.<key {position}>" if fld else f"<key {position}>", pth + (key,)))
                label = key_label(key, position)
                stack.append((node[key], f"{fld}.{label}" if fld else label, pth + (key,)))
        elif isinstance(node, list):
            for i in range(len(node) - 1, -1, -1):
                stack.append((node[i], f"{fld}[{i}]", pth + (i,)))


def _bundle_leaves(bundle: Any, field: str, path: tuple, cell: int | None, kind: str) -> Iterator[Leaf]:
    """Leaves of a mime bundle ``{mimetype: data}``: text types only, JSON walked."""
    if not isinstance(bundle, dict):
        return
    for mime, data in bundle.items():
        if not isinstance(mime, str) or not is_text_mimetype(mime):
            continue
        fld, pth = f"{field}.{mime}", path + (mime,)
        as_text = _text(data)
        if as_text is not None:
            if as_text[0]:
                yield Leaf(cell, fld, kind, as_text[0], pth, as_text[1])
        else:
            yield from _json_leaves(data, fld, pth, cell, kind)


#: nbformat 2/3 output keys that name a mimetype (nbformat's own v3 -> v4 mapping, and PDF).
_OLD_OUTPUT_MIMES = {
    "text": "text/plain", "html": "text/html", "svg": "image/svg+xml", "png": "image/png",
    "jpeg": "image/jpeg", "latex": "text/latex", "json": "application/json",
    "javascript": "application/javascript", "pdf": "application/pdf",
}
#: nbformat 2/3 output keys that are the format's own, not output data.
_OLD_OUTPUT_FIELDS = {"output_type", "prompt_number", "stream", "metadata", "ename", "evalue", "traceback"}


def _old_format_leaves(nb: dict) -> Iterator[Leaf]:
    """:func:`iter_leaves` for nbformat 2 and 3: cells sit in worksheets (numbered on across
    them, as nbformat's upgrade to 4 numbers them), a code cell's text is ``input``, a text
    cell may keep its ``rendered`` HTML, and outputs hold their data under short keys (``text``,
    ``html``, ``png``, ...) beside ``output_type``; ``pyerr`` is the old ``error``."""
    yield from _json_leaves(nb.get("metadata", {}), "metadata", ("metadata",), None, METADATA)
    index = 0
    for w, sheet in enumerate(nb.get("worksheets") or []):
        if not isinstance(sheet, dict):
            continue
        for c, cell in enumerate(sheet.get("cells") or []):
            if not isinstance(cell, dict):
                continue
            base = ("worksheets", w, "cells", c)
            code = cell.get("cell_type") == "code"
            kind = CODE if code else MARKDOWN if cell.get("cell_type") in ("markdown", "heading") else RAW
            for key in ("input",) if code else ("source", "rendered"):
                src = _text(cell.get(key, ""))
                if src is not None and src[0]:
                    yield Leaf(index, key, kind if key != "rendered" else MARKDOWN, src[0], base + (key,), src[1])
            outputs = cell.get("outputs")
            for j, out in enumerate(outputs if isinstance(outputs, list) else []):
                if not isinstance(out, dict):
                    continue
                obase, ofield = base + ("outputs", j), f"outputs[{j}]"
                for key in ("ename", "evalue"):
                    val = out.get(key)
                    if isinstance(val, str) and val:
                        yield Leaf(index, f"{ofield}.{key}", OUTPUT, val, obase + (key,))
                tb = out.get("traceback")
                for k, frame in enumerate(tb if isinstance(tb, list) else []):
                    if isinstance(frame, str) and frame:
                        yield Leaf(index, f"{ofield}.traceback[{k}]", OUTPUT, frame, obase + ("traceback", k))
                for key, data in out.items():
                    if not isinstance(key, str) or key in _OLD_OUTPUT_FIELDS:
                        continue
                    mime = _OLD_OUTPUT_MIMES.get(key, key if "/" in key else "text/plain")
                    if not is_text_mimetype(mime):
                        continue
                    as_text = _text(data)
                    if as_text is not None:
                        if as_text[0]:
                            yield Leaf(index, f"{ofield}.{key}", OUTPUT, as_text[0], obase + (key,), as_text[1])
                    else:
                        yield from _json_leaves(data, f"{ofield}.{key}", obase + (key,), index, OUTPUT)
                if "metadata" in out:
                    yield from _json_leaves(out["metadata"], f"{ofield}.metadata", obase + ("metadata",), index, OUTPUT)
            if "metadata" in cell:
                yield from _json_leaves(cell["metadata"], "metadata", base + ("metadata",), index, METADATA)
            index += 1
        if "metadata" in sheet:
            yield from _json_leaves(sheet["metadata"], f"worksheets[{w}].metadata", ("worksheets", w, "metadata"), None, METADATA)


#: The field of a code cell's own text: ``source`` (nbformat 4), ``input`` (nbformat 2 and 3).
CODE_SOURCE_FIELDS = ("source", "input")


def is_code_source(leaf: Leaf) -> bool:
    """Whether ``leaf`` is a code cell's text (which keys are moved out of, not masked in)."""
    return leaf.kind == CODE and leaf.field in CODE_SOURCE_FIELDS


def iter_leaves(nb: dict) -> Iterator[Leaf]:
    """Every text in the notebook: notebook metadata, then each cell's source, attachments,
    outputs and metadata. Binary mimetypes, cell ids and the notebook format's own keys
    (field names, mimetypes) are not yielded; keys of free-form JSON objects are, each after
    the leaves below it (``Leaf.is_key``). nbformat 2 and 3 (see :func:`parse_notebook`'s
    ``old_formats``) are read by :func:`_old_format_leaves`."""
    if nb.get("nbformat") in (2, 3):
        yield from _old_format_leaves(nb)
        return
    yield from _json_leaves(nb.get("metadata", {}), "metadata", ("metadata",), None, METADATA)
    for index, cell in enumerate(nb.get("cells", [])):
        base = ("cells", index)
        cell_type = cell.get("cell_type")
        kind = {"code": CODE, "markdown": MARKDOWN}.get(cell_type, RAW)
        src = _text(cell.get("source", ""))
        if src is not None and src[0]:
            yield Leaf(index, "source", kind, src[0], base + ("source",), src[1])
        attachments = cell.get("attachments")
        if isinstance(attachments, dict):
            for position, (name, bundle) in enumerate(list(attachments.items())):
                label = key_label(name, position)
                yield from _bundle_leaves(bundle, f"attachments.{label}", base + ("attachments", name), index, ATTACHMENT)
                if _may_be_secret_key(name):
                    # The name is the user's text (a markdown cell refers to it as attachment:name).
                    yield Leaf(index, f"attachments.<key {position}>", ATTACHMENT, name,
                               base + ("attachments", name), is_key=True)
        outputs = cell.get("outputs")
        if isinstance(outputs, list):
            for j, out in enumerate(outputs):
                if not isinstance(out, dict):
                    continue
                obase, ofield = base + ("outputs", j), f"outputs[{j}]"
                otype = out.get("output_type")
                if otype == "stream":
                    txt = _text(out.get("text", ""))
                    if txt is not None and txt[0]:
                        yield Leaf(index, f"{ofield}.text", OUTPUT, txt[0], obase + ("text",), txt[1])
                elif otype == "error":
                    for key in ("ename", "evalue"):
                        val = out.get(key)
                        if isinstance(val, str) and val:
                            yield Leaf(index, f"{ofield}.{key}", OUTPUT, val, obase + (key,))
                    tb = out.get("traceback")
                    if isinstance(tb, list):
                        for k, frame in enumerate(tb):
                            if isinstance(frame, str) and frame:
                                yield Leaf(index, f"{ofield}.traceback[{k}]", OUTPUT, frame, obase + ("traceback", k))
                else:
                    yield from _bundle_leaves(out.get("data"), f"{ofield}.data", obase + ("data",), index, OUTPUT)
                if "metadata" in out:
                    yield from _json_leaves(out["metadata"], f"{ofield}.metadata", obase + ("metadata",), index, OUTPUT)
        if "metadata" in cell:
            yield from _json_leaves(cell["metadata"], "metadata", base + ("metadata",), index, METADATA)


def split_lines(text: str) -> list[str]:
    """Split like nbformat stores multi-line strings: each line keeps its ``\\n``."""
    return text.splitlines(keepends=True)


def set_leaf(nb: dict, leaf: Leaf, text: str) -> None:
    """Write ``text`` where ``leaf`` was, in the same shape (string or list of lines).

    A key leaf renames the key in place, keeping the object's order (see :func:`renamed_key`
    for a name that is taken).
    """
    node: Any = nb
    for key in leaf.path[:-1]:
        node = node[key]
    if leaf.is_key:
        old = leaf.path[-1]
        if text == old or old not in node:
            return
        renamed = renamed_key(node, old, text)
        node.clear()
        node.update(renamed)
        return
    node[leaf.path[-1]] = split_lines(text) if leaf.is_lines else text


# -- where a leaf sits in the notebook's own JSON text ---------------------------------------------

# Unrolled string pattern (no nested repetition of an alternation), so long strings match in one
# linear pass; the last branch takes numbers, true, false and null.
_JSON_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[{}\[\],:]|[^\s{}\[\],:"]+')


_KEY = object()  # marks a path that means "the key itself", not the value under it


def value_offsets(text: str, wanted: set[tuple[Any, ...]]) -> dict[tuple[Any, ...], int]:
    """Offsets in a notebook's JSON text of the values at the ``wanted`` paths.

    A path is a :attr:`Leaf.path`-style tuple of keys and indices from the root; a list of lines
    is reported element by element too (``path + (j,)``), so that callers can place one line.
    ``(_KEY,) + path`` asks for the object key at the end of ``path`` rather than its value.
    One linear pass; only wanted paths (and their elements) are kept.

    Args:
        text: The notebook file's text, as parsed by :func:`parse_notebook`.
        wanted: The paths to locate.

    Returns:
        ``{path: offset of the value's first character}`` for the wanted paths found.
    """
    offsets: dict[tuple[Any, ...], int] = {}
    path: list[Any] = []  # one component per open container: its current key or index
    kinds: list[str] = []  # "o" or "a" per open container
    want_key = False
    for match in _JSON_TOKEN.finditer(text):
        token = match.group()
        first = token[0]
        if first in "{[":
            here = tuple(path)
            if here in wanted or here[:-1] in wanted:
                offsets[here] = match.start()
            kinds.append("o" if first == "{" else "a")
            path.append(None if first == "{" else 0)
            want_key = first == "{"
        elif first in "}]":
            kinds.pop()
            path.pop()
            want_key = False
        elif first == ",":
            if kinds and kinds[-1] == "a":
                path[-1] += 1
            else:
                want_key = True
        elif first == ":":
            want_key = False
        elif first == '"' and want_key and kinds and kinds[-1] == "o":
            path[-1] = json.loads(token)
            here = (_KEY,) + tuple(path)
            if here in wanted:  # an object key that is itself a leaf (Leaf.is_key)
                offsets[here] = match.start()
        else:
            here = tuple(path)
            if here in wanted or here[:-1] in wanted:
                offsets[here] = match.start()
    return offsets


_RAW_STRING_PIECE = re.compile(r'\\u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2}|\\u[0-9a-fA-F]{4}|\\.|[^\\]+')


def _raw_index(token_text: str, start: int, decoded_chars: int) -> int:
    """Offset in ``token_text`` of the ``decoded_chars``-th character of the JSON string at ``start``."""
    index, remaining = start + 1, decoded_chars  # skip the opening quote
    for piece in _RAW_STRING_PIECE.finditer(token_text, index):
        text = piece.group()
        if text == '"' or remaining <= 0:
            break
        if text[0] != "\\":
            if len(text) > remaining:
                return piece.start() + remaining
            remaining -= len(text)
        else:
            remaining -= 1
        index = piece.end()
    return index


def file_positions(text: str, nb: dict, located: list[tuple[Leaf, int]]) -> list[tuple[int, int] | None]:
    """Line and column, in the notebook file itself, of offsets inside leaves.

    Reports point into cells (cell 3, ``source`` line 2); tools that read the ``.ipynb`` as a
    file (SARIF consumers such as code scanning) need the line of the JSON text instead.

    Args:
        text: The notebook file's text (what :func:`parse_notebook` parsed).
        nb: The parsed notebook.
        located: ``(leaf, offset in leaf.text)`` pairs.

    Returns:
        For each pair, the 1-based ``(line, column)`` of that character in ``text`` (columns in
        code points), or ``None`` where it could not be placed.
    """
    if text.startswith("\ufeff"):
        text = text[1:]
    elements: list[tuple[tuple[Any, ...], int]] = []  # per pair: the value's path and offset in it
    for leaf, offset in located:
        path, inner = leaf.path, offset
        if leaf.is_key:
            path = (_KEY,) + leaf.path
        elif leaf.is_lines:
            value: Any = nb
            try:
                for key in leaf.path:
                    value = value[key]
            except (KeyError, IndexError, TypeError):
                value = []
            for j, line in enumerate(value if isinstance(value, list) else []):
                if inner < len(line) or j == len(value) - 1:
                    path = leaf.path + (j,)
                    break
                inner -= len(line)
        elements.append((path, inner))
    offsets = value_offsets(text, {path for path, _ in elements})
    newlines = [m.start() for m in re.finditer("\n", text)]
    from bisect import bisect_left

    positions: list[tuple[int, int] | None] = []
    for path, inner in elements:
        start = offsets.get(path)
        if start is None or text[start] != '"':
            positions.append(None)
            continue
        at = _raw_index(text, start, inner)
        line = bisect_left(newlines, at)
        column = at - (newlines[line - 1] if line else -1)
        positions.append((line + 1, column))
    return positions
