"""The rewriter: move the keys found in a cell's source into environment-variable lookups.

:func:`rewrite_source` is pure: it takes a cell's text and returns a :class:`Rewrite` holding the new
text and the secrets to store. The caller (kernel input guard, ``ipykeyguard clean``, the server
hook, the nbconvert preprocessor) puts :attr:`Rewrite.moved` into the secret store and
``os.environ``; nothing here does I/O or touches the environment.

How each context is rewritten (the user's text is otherwise kept character for character):

==============================================  ===============================================
context                                         becomes
==============================================  ===============================================
``"KEY"`` (the whole literal)                   ``os.environ["NAME"]``
``"Bearer KEY"``, ``'KEY' "..."`` (part of one) ``f"Bearer {os.environ['NAME']}"`` (braces in the
                                                literal doubled, ``r`` kept, ``u`` dropped)
``f"...KEY..."``                                ``f"...{os.environ['NAME']}..."``
a literal inside an f-string's ``{...}``        ``os.environ['NAME']`` / ``('pre' + ... )``
``b"KEY"`` / ``b"pre KEY"``                     ``os.environ["NAME"].encode()`` /
                                                ``(b"pre " + os.environ["NAME"].encode())``
a ``def``/``class`` docstring, a comment        the key is masked (``[secret:NAME]``): a
                                                docstring turned f-string is no docstring
``%env X=KEY`` / ``%set_env X KEY``             ``os.environ["X"] = os.environ["NAME"]``
``!cmd KEY``, ``x = !cmd``, ``%pip``, ``%%!``   ``"$(printenv NAME)"`` (shell quoting respected)
``%%bash`` / ``%%sh`` / ``%%script bash`` body  ``$NAME`` (``${NAME}``, ``"$NAME"`` when needed)
``%%time`` / ``%%capture`` / ``%%python`` body  rewritten as Python
anything else (``%run``, ``%%writefile``, a     masked
broken literal, help lines)
==============================================  ===============================================

Why these forms (each checked in a real IPython 9 kernel, see ``tests/test_rewrite.py``):

* ``import os``: the rewritten cell must run without ipykeyguard, so when it introduces
  ``os.environ`` and does not already ``import os`` at top level before that point, one line
  ``import os`` is inserted before the cell's first line of code (after any
  ``from __future__`` imports, with that line's indentation). That adds a line, but the text
  that runs *is* the text the cell shows afterwards, so tracebacks point at the lines the
  user sees. A same-line ``import os; `` would break compound statements and magics on line 1;
  ``__import__("os")`` in every lookup is correct but reads badly. A caller that knows ``os``
  is already imported where the cell runs (the kernel: an earlier cell did ``import os``) passes
  ``os_imported=True`` and no line is inserted, so the line numbers of a cell that raises (and
  keeps its original text in the editor) stay right.
* ``%env``: the magic does not expand environment variables (``%env X=$$NAME`` sets the
  literal ``$NAME``) and ``$NAME`` / ``{...}`` are expanded from the *Python* namespace, so no
  ``%env`` form keeps the effect. The line becomes the equivalent Python statement.
* ``!cmd``: IPython expands ``$name`` and ``{expr}`` in the command from the Python namespace
  before the shell runs it, and if *any* expansion in the line fails (an undefined name, the
  JSON body of a ``curl -d '{"a": 1}'``) the whole line goes to the shell unexpanded. So
  ``$NAME`` is replaced by a Python variable of that name when one exists (and, when none
  exists, switches off every other expansion in the line), and ``$$NAME`` reaches the shell as
  ``$$`` (the shell's pid) whenever the line has a failing expansion. ``$(printenv NAME)`` has
  no ``$name`` and no braces, so IPython leaves it alone in every case and a POSIX shell reads
  the variable. (Not cmd.exe on Windows; neither would ``$NAME``.)
* ``%%bash``-style bodies reach the shell as they are, so plain ``$NAME`` works there
  (inside an unquoted heredoc too; a quoted heredoc expands nothing, so the key is masked).
* A masked key is still listed in :attr:`Rewrite.moved`: the mask ``[secret:NAME]`` then
  says truthfully where the key went, and the user does not lose it.
* Safety net: if the planned rewrite would leave a key or break a cell that parsed, every key
  is masked in place instead (a mask inside a literal or comment never changes the parse).
  The same happens if planning itself fails: a transformer never raises.
* Cost: only the statements around the keys are tokenized, and a cell over 100,000 characters
  is checked by parsing the changed statements alone (the whole cell only when they cannot be
  judged alone); see "Rewriter cost" in ``docs/ENGINE.md``.

Known limits: a key in an f-string nested inside another f-string's field, in a ``match``
pattern, or spread over a line-continued literal is masked rather than moved; a cell that
rebinds ``os`` shadows the lookups; ``!`` commands assume a POSIX shell.
"""

from __future__ import annotations

import ast
import bisect
import itertools
import json
import re
import warnings
import tokenize
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Iterable, Iterator, Mapping

import ahocorasick_rs

from ..engine.config import Config
from ..engine.findings import Confidence, Finding, Secret, fingerprint, mask_for
from ..engine.scan import Scanner, env_name_from, scanner_for

__all__ = ["Rewrite", "rewrite_source"]


# -- the result ------------------------------------------------------------------------------


@dataclass(frozen=True, repr=False)
class Rewrite:
    """What :func:`rewrite_source` did to one cell.

    Attributes:
        source: The new cell text (the input itself when nothing changed).
        moved: Variable name -> the secret that now lives there. The caller stores these and
            sets ``os.environ``; a masked key is listed too, so its mask names where it went.
        findings: Every finding in the original source, ordered by position.
        masked: Findings replaced by a mask instead of a lookup (comments, docstrings, text
            the key cannot be looked up from).
        skipped: Findings below the confidence threshold, left in the text (the kernel warns).
    """

    source: str
    moved: Mapping[str, Secret] = field(default_factory=lambda: MappingProxyType({}), hash=False)
    findings: tuple[Finding, ...] = ()
    masked: tuple[Finding, ...] = ()
    skipped: tuple[Finding, ...] = ()

    @property
    def changed(self) -> bool:
        """True when the source was rewritten (some key was moved or masked)."""
        return bool(self.moved)

    def __repr__(self) -> str:
        # Names and counts only: ``source`` may still hold skipped (low-confidence) values.
        return (
            f"Rewrite(changed={self.changed}, moved={sorted(self.moved)!r}, "
            f"findings={len(self.findings)}, masked={len(self.masked)}, skipped={len(self.skipped)})"
        )


# -- public entry point ----------------------------------------------------------------------


def rewrite_source(
    source: str,
    *,
    config: Config | None = None,
    scanner: Scanner | None = None,
    taken: Mapping[str, str] | None = None,
    min_confidence: Confidence = Confidence.LIKELY,
    os_imported: bool = False,
) -> Rewrite:
    """Rewrite a cell so that it holds no key: literals become ``os.environ`` lookups.

    The cell may be IPython syntax (line and cell magics, ``!`` commands) and need not parse.
    Only the spans that hold keys change (plus one ``import os`` line when the cell needs it);
    the result parses wherever the input did, gives the same values once the variables in
    ``moved`` are set, and rewriting it again changes nothing.

    Args:
        source: The cell's text.
        config: Settings used to build the scanner when ``scanner`` is not given.
        scanner: The scanner to use (default: ``scanner_for(config)``).
        taken: Variable names already in use (the secret store) mapped to the fingerprint of
            the value they hold. A key already stored reuses its name; a different key never
            takes a used name (it gets a ``_2``, ``_3`` suffix).
        min_confidence: Findings below this are reported in ``skipped`` and left alone.
        os_imported: ``os`` is already bound to the os module where the cell will run (e.g. an
            earlier notebook cell imported it), so no ``import os`` line is inserted. Leave it
            False for text that must run on its own (files, exports).

    Returns:
        A :class:`Rewrite`; ``Rewrite.source is source`` when nothing was found.
    """
    scanner = scanner or scanner_for(config)
    findings = tuple(scanner.scan_text(source, min_confidence=Confidence.POSSIBLE))
    if not findings:
        return Rewrite(source)
    active = [f for f in findings if f.confidence >= min_confidence]
    skipped = tuple(f for f in findings if f.confidence < min_confidence)
    if not active:
        return Rewrite(source, findings=findings, skipped=skipped)

    generic_rules = {rule.id for rule in scanner.rules if rule.generic}
    namer = _Namer(taken or {}, generic_rules, scanner)
    layout = _Layout(source)
    planner = _Planner(source, layout, namer, os_imported=os_imported)
    try:
        new_source, masked = planner.run(active, mask_all=False)
        acceptable = _acceptable(new_source, layout, planner, scanner, min_confidence)
    except ValueError:
        # A planner invariant broke (overlapping edits): a transformer must never raise
        # (IPython would drop the cell), so fall back to masking every key in place.
        acceptable = False
    if not acceptable:
        # Never worse than the input: masks inside literals and comments keep every parse.
        namer = _Namer(taken or {}, generic_rules, scanner)
        planner = _Planner(source, layout, namer, os_imported=os_imported)
        new_source, masked = planner.run(active, mask_all=True)
    return Rewrite(
        new_source,
        moved=MappingProxyType(dict(namer.moved)),
        findings=findings,
        masked=tuple(masked),
        skipped=skipped,
    )


def _acceptable(
    new_source: str, layout: "_Layout", planner: "_Planner", scanner: Scanner, min_confidence: Confidence
) -> bool:
    """The rewrite left no key behind and did not break a cell that parsed."""
    values = {secret.reveal() for secret in planner.namer.moved.values()} | planner.raw_values
    values.discard("")
    if len(values) <= 8:
        if any(value in new_source for value in values):
            return False
    elif ahocorasick_rs.AhoCorasick(list(values)).find_matches_as_indexes(new_source):
        # One pass for all values: ``value in text`` per key grows with keys x cell size.
        return False
    if any(f.confidence >= min_confidence for f in scanner.scan_text(new_source, min_confidence=min_confidence)):
        return False
    return _still_parses(new_source, layout, planner)


#: Cells up to this many characters get the whole-cell parse check (cheap at that size);
#: larger ones check only the statements that changed, when that can be judged locally.
_WHOLE_CELL_CHECK_CHARS = 100_000


def _still_parses(new_source: str, layout: "_Layout", planner: "_Planner") -> bool:
    """The rewrite did not break a cell that parsed (IPython syntax read as IPython does)."""
    if len(layout.source) > _WHOLE_CELL_CHECK_CHARS:
        verdict = _windows_still_parse(layout, planner)
        if verdict is not None:
            return verdict
    return not layout.parses() or _Layout(new_source).parses()


def _windows_still_parse(layout: "_Layout", planner: "_Planner") -> bool | None:
    """Judge the rewrite by the statements it changed, or ``None`` when that cannot be done.

    Every Python edit lies inside one of the planner's token windows (whole logical lines from
    a statement start). When a window parses on its own before the edits, it must parse after
    them; since the edits replace tokens inside those statements with expressions (or mask
    text inside strings and comments), the rest of the cell keeps its meaning. A window that
    does not parse alone (an ``else:`` clause, a deeper block) sends the caller to the
    whole-cell check.
    """
    if planner.import_moved:
        return None
    windows: list[list[int]] = []
    for start, end in sorted(planner.windows):
        if windows and start <= windows[-1][1]:
            windows[-1][1] = max(windows[-1][1], end)
        else:
            windows.append([start, end])
    window_starts = [w[0] for w in windows]
    segment_starts = [seg.start for seg in layout.segments]
    by_window: dict[int, list[_Edit]] = {}
    for edit in planner.edits:
        if edit is planner.import_edit:
            continue  # one simple statement at the first statement's start and indentation
        k = bisect.bisect_right(segment_starts, edit.start) - 1
        segment = layout.segments[k] if k >= 0 else None
        if segment is not None and segment.start <= edit.start and edit.end <= segment.end:
            if segment.kind == "env" and edit.start == segment.start:
                try:
                    _parse(edit.text)  # the %env line became one Python statement
                except (SyntaxError, ValueError):
                    return False
            continue  # IPython syntax stays IPython syntax (masks, $NAME, printenv)
        first, last = planner._row_of(edit.start), planner._row_of(max(edit.start, edit.end - 1))
        w = bisect.bisect_right(window_starts, first) - 1
        if w < 0 or last >= windows[w][1]:
            return None
        if any(layout.view_lines[r] != layout.lines[r] for r in range(first, last + 1)):
            return None  # an edit on an escape row's Python part: columns differ in the view
        by_window.setdefault(w, []).append(edit)
    for w, edits in by_window.items():
        start, end = windows[w]
        view_starts = list(itertools.accumulate((len(line) for line in layout.view_lines[start:end]), initial=0))
        old = "".join(layout.view_lines[start:end])

        def to_view(offset: int) -> int:
            row = planner._row_of(offset)
            return view_starts[row - start] + offset - layout.line_starts[row]

        new = _apply(old, [_Edit(to_view(e.start), to_view(e.start) + (e.end - e.start), e.text) for e in edits])
        if not _parses_alone(old):
            return None
        if not _parses_alone(new):
            return False
    return True


def _parse(text: str) -> ast.AST:
    """``ast.parse`` with compile-time warnings silenced: the user's own compile of the cell
    reports an invalid escape sequence once; our validity checks must not report it again."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ast.parse(text)


def _parses_alone(text: str) -> bool:
    """Whether a run of whole statements parses on its own (indented ones inside ``if 1:``)."""
    for candidate in (_dedent_first(text), "if 1:\n" + text):
        try:
            _parse(candidate)
            return True
        except (SyntaxError, ValueError):
            continue
    return False


# -- names -----------------------------------------------------------------------------------

_ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}\Z")


class _Namer:
    """Picks the variable name of each secret: rule name, else the assigned name, else numbered.

    The same value always gets the same name (also a name already in ``taken``); a name that
    holds a different value is never reused: a suffix ``_2``, ``_3``... is added.
    """

    def __init__(self, taken: Mapping[str, str], generic_rules: set[str], scanner: Scanner) -> None:
        self._taken = dict(taken)
        self._generic = generic_rules
        self._fallback = {rule.id: rule.env for rule in scanner.rules}
        self._by_fingerprint: dict[str, str] = {}
        self._taken_by_fingerprint: dict[str, list[str]] = {}
        for name, fp in sorted(self._taken.items()):
            self._taken_by_fingerprint.setdefault(fp, []).append(name)
        self.moved: dict[str, Secret] = {}
        self._probe: dict[tuple[str, bool], int] = {}

    def name_for(self, finding: Finding, value: str) -> str:
        """The variable name for ``value`` (the runtime value of ``finding``'s text)."""
        fp = fingerprint(value)
        known = self._by_fingerprint.get(fp)
        if known is not None:
            return known
        base = finding.env if finding.env and _ENV_NAME_RE.match(finding.env) else env_name_from(finding.env or "SECRET")
        numbered = finding.rule in self._generic and finding.env == self._fallback.get(finding.rule)
        stored = self._taken_by_fingerprint.get(fp)
        if stored:
            preferred = [n for n in stored if n == base] or [n for n in stored if n.startswith(base)] or stored
            name = preferred[0]
        else:
            name = self._free_name(base, fp, numbered)
        self._by_fingerprint[fp] = name
        self.moved[name] = Secret(value)
        return name

    def _free_name(self, base: str, fp: str, numbered: bool) -> str:
        # Candidates: ``base``, ``base_2``, ``base_3``... (numbered: ``base_1``, ``base_2``...).
        # Probing resumes where the last search for this base stopped: every candidate before
        # it is held by another value for good, so 10,000 keys of one rule cost linear time.
        key = (base, numbered)
        k = self._probe.get(key, 0)
        while True:
            candidate = base if (k == 0 and not numbered) else f"{base}_{k + 1}"
            holder = self.moved.get(candidate)
            if holder is not None:
                if holder.fingerprint == fp:
                    return candidate
                k += 1
                continue
            if candidate in self._taken and self._taken[candidate] != fp:
                k += 1
                continue
            self._probe[key] = k
            return candidate


# -- the layout of a cell: which lines are Python, which are IPython syntax ------------------

_ESCAPES = ("!", "%", "?", ",", ";", "/")
_SHELL_MAGICS = {"sx", "system", "pip", "conda", "mamba", "micromamba", "uv", "sc"}
_PYTHON_LINE_MAGICS = {"time", "timeit", "prun"}
_PYTHON_CELL_MAGICS = {"time", "timeit", "capture", "prun", "debug", "python", "python3", "pypy"}
_SHELL_CELL_MAGICS = {"bash", "sh", "zsh"}
_ISHELL_CELL_MAGICS = {"!", "system", "sx"}
_SHELLS = {"bash", "sh", "zsh", "dash", "ksh"}
_MAGIC_NAME_RE = re.compile(r"[A-Za-z_][\w.]*")
# ``lhs = !cmd`` / ``lhs = %magic``: the first bare ``=`` of the logical line, then the escape.
_ASSIGN_ESCAPE_RE = re.compile(r"(?P<lhs>[ \t]*[A-Za-z_][^=#'\"\n]*?(?<![=!<>+\-*/%&|^@:~])=[ \t]*)(?P<esc>!|%(?=[A-Za-z_]))")


@dataclass
class _Segment:
    """A span of IPython syntax (or a non-Python cell-magic body) and how keys in it are rewritten.

    ``kind`` is one of ``"ishell"`` (a command IPython expands then gives to the shell),
    ``"shell"`` (text the shell gets as it is), ``"env"`` (a ``%env`` line), ``"pyfrag"``
    (Python arguments of ``%time``-like magics) or ``"opaque"`` (keys get masked).
    """

    kind: str
    start: int
    end: int
    line_start: int = 0  # offset of the first physical line (for "env": the whole line is replaced)


class _Layout:
    """Splits a cell into Python lines and IPython-syntax segments, the way IPython reads it.

    Python lines are lexed just enough to know where logical lines start (open brackets,
    strings spanning lines, backslash continuations), because only there can ``%``/``!``
    escapes begin. The *view* is the cell with every non-Python line blanked (its first line
    replaced by ``pass`` or ``None``), with the same rows and the same columns on Python lines,
    so ``tokenize`` positions on it are positions in the source.
    """

    def __init__(self, source: str) -> None:
        self.source = source
        self.lines = source.splitlines(keepends=True)
        self.line_starts: list[int] = []
        offset = 0
        for line in self.lines:
            self.line_starts.append(offset)
            offset += len(line)
        self.segments: list[_Segment] = []
        self.view_lines: list[str] = ["\n" if line.endswith(("\n", "\r")) else "" for line in self.lines]
        self.python_rows: set[int] = set()
        self.python_context = False  # does any Python run in the user's namespace (needs ``os``)?
        self.anchor_row: int | None = None  # first code row of the Python region (for ``import os``)
        self._region_start_row = 0
        #: Rows where a Python logical line with code starts (ascending): the places a
        #: tokenizer can start from, so only the statements around a key need tokenizing.
        self.statement_rows: list[int] = []
        self._classify()
        self._tokens: list[tokenize.TokenInfo] | None = None
        self._parses: bool | None = None

    # -- classification ----------------------------------------------------------------------
    def _classify(self) -> None:
        first = next((i for i, line in enumerate(self.lines) if line.strip()), None)
        if first is not None and self.lines[first].startswith("%%"):
            self._classify_cell_magic(first)
        else:
            self._classify_ipython(0, len(self.lines))

    def _classify_cell_magic(self, row: int) -> None:
        header = self.lines[row]
        name, _, args = header[2:].rstrip("\r\n").partition(" ")
        body_row = row + 1
        self.segments.append(_Segment("opaque", self.line_starts[row], self.line_starts[row] + len(header)))
        if body_row >= len(self.lines):
            return
        body_start = self.line_starts[body_row]
        script = args.split()[0].rsplit("/", 1)[-1] if args.split() else ""
        if name in _PYTHON_CELL_MAGICS or (name == "script" and script.startswith("python")):
            self._classify_ipython(body_row, len(self.lines))
        elif name in _SHELL_CELL_MAGICS or (name == "script" and script in _SHELLS):
            self.segments.append(_Segment("shell", body_start, len(self.source)))
        elif name in _ISHELL_CELL_MAGICS:
            for r in range(body_row, len(self.lines)):
                start = self.line_starts[r]
                self.segments.append(_Segment("ishell", start, start + len(self.lines[r].rstrip("\r\n"))))
        else:
            self.segments.append(_Segment("opaque", body_start, len(self.source)))

    def _classify_ipython(self, start_row: int, end_row: int) -> None:
        self._region_start_row = start_row
        quote: str | None = None
        depth = 0
        continued = False
        row = start_row
        while row < end_row:
            line = self.lines[row]
            at_statement_start = quote is None and depth == 0 and not continued
            stripped = line.lstrip(" \t")
            if at_statement_start and stripped.strip() and not stripped.startswith("#"):
                self.statement_rows.append(row)
            if at_statement_start and stripped.strip():
                escape_row_end = row
                while escape_row_end + 1 < end_row and self.lines[escape_row_end].endswith("\\\n"):
                    escape_row_end += 1
                if stripped.startswith(_ESCAPES):
                    indent = line[: len(line) - len(stripped)]
                    self._add_escape(row, escape_row_end, len(indent), indent + "pass")
                    row = escape_row_end + 1
                    continue
                m = _ASSIGN_ESCAPE_RE.match(line)
                if m:
                    self.python_rows.add(row)
                    self._note_code_row(row)
                    self._add_escape(row, escape_row_end, m.start("esc"), m.group("lhs") + "None", assign=True)
                    row = escape_row_end + 1
                    continue
            self.python_rows.add(row)
            self.view_lines[row] = line
            if stripped.strip() and not stripped.startswith("#") and at_statement_start:
                self._note_code_row(row)
            quote, depth, continued = _lex_python_line(line, quote, depth)
            self.python_context = True
            row += 1

    def _note_code_row(self, row: int) -> None:
        if self.anchor_row is None:
            self.anchor_row = row

    def _add_escape(self, row: int, row_end: int, col: int, placeholder: str, assign: bool = False) -> None:
        self._note_code_row(row)
        self.python_context = True
        start = self.line_starts[row] + col
        end = self.line_starts[row_end] + len(self.lines[row_end].rstrip("\r\n"))
        newline = self.lines[row][len(self.lines[row].rstrip("\r\n")):]
        self.view_lines[row] = placeholder + newline
        text = self.source[start:end]
        line_start = self.line_starts[row]
        if text.startswith("!"):
            skip = 2 if text.startswith("!!") else 1
            self.segments.append(_Segment("ishell", start + skip, end, line_start))
            return
        if text.startswith("%") and not text.startswith("%%"):
            m = _MAGIC_NAME_RE.match(text, 1)
            name = m.group(0) if m else ""
            args_start = start + 1 + len(name) + 1  # IPython: rhs[1:].partition(" ")
            if name in _SHELL_MAGICS:
                self.segments.append(_Segment("ishell", min(args_start, end), end, line_start))
                return
            if name in _PYTHON_LINE_MAGICS:
                self.segments.append(_Segment("pyfrag", min(args_start, end), end, line_start))
                return
            if name in ("env", "set_env") and not assign and row == row_end:
                self.segments.append(_Segment("env", start, end, line_start))
                return
        self.segments.append(_Segment("opaque", start, end, line_start))

    # -- Python tokens ------------------------------------------------------------------------
    @property
    def tokens(self) -> list[tokenize.TokenInfo]:
        """Tokens of the Python view (positions are source rows/columns on Python lines)."""
        if self._tokens is None:
            self._tokens = _robust_tokens(self.view_lines)
        return self._tokens

    def statement_window(self, first_row: int, last_row: int) -> tuple[int, int]:
        """Rows ``[start, end)`` of the logical lines holding rows ``first_row..last_row`` (0-based),
        from the statement before them (a ``def`` header of a docstring) to the next statement."""
        rows = self.statement_rows
        i = bisect.bisect_right(rows, first_row) - 1
        start = rows[max(0, i - 1)] if i >= 0 else self._region_start_row
        # Up to the statement after the next one: a key in an ``if``/``def`` header brings the
        # first line of its body, so the window parses on its own (see ``_still_parses``).
        j = bisect.bisect_right(rows, last_row) + 1
        end = rows[j] if j < len(rows) else len(self.lines)
        return start, end

    def window_tokens(self, windows: list[tuple[int, int]]) -> list[tokenize.TokenInfo]:
        """Tokens of the given row windows (merged, in order), at their rows in the cell.

        Each window starts at a statement start, so it tokenizes on its own; the windows'
        tokens are concatenated (an ENDMARKER separates them, which no grouping crosses).
        """
        if self._tokens is not None:
            return self._tokens
        merged: list[list[int]] = []
        for start, end in sorted(windows):
            if merged and start <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], end)
            else:
                merged.append([start, end])
        if len(merged) == 1 and merged[0][0] <= self._region_start_row and merged[0][1] >= len(self.lines):
            return self.tokens
        out: list[tokenize.TokenInfo] = []
        for start, end in merged:
            for tok in _robust_tokens(self.view_lines[start:end]):
                if start:
                    tok = tok._replace(start=(tok.start[0] + start, tok.start[1]), end=(tok.end[0] + start, tok.end[1]))
                out.append(tok)
        return out

    def offset(self, row: int, col: int) -> int:
        """Source offset of a 1-based token row and 0-based column on a Python line."""
        if row - 1 >= len(self.line_starts):
            return len(self.source)
        return self.line_starts[row - 1] + col

    def parses(self) -> bool:
        """Whether the Python view (IPython syntax replaced by placeholders) parses."""
        if self._parses is None:
            try:
                _parse(_dedent_first("".join(self.view_lines)))
                self._parses = True
            except (SyntaxError, ValueError):
                self._parses = False
        return self._parses

    def segment_at(self, offset: int) -> _Segment | None:
        for segment in self.segments:
            if segment.start <= offset < segment.end or (segment.start == offset == segment.end):
                return segment
        return None


def _dedent_first(text: str) -> str:
    """IPython's ``leading_indent``: a cell whose first line is indented is dedented by that."""
    lines = text.splitlines(keepends=True)
    first = next((line for line in lines if line.strip()), "")
    indent = first[: len(first) - len(first.lstrip(" \t"))]
    if not indent:
        return text
    return "".join(line[len(indent):] if line.startswith(indent) else line for line in lines)


_LEX_INTERESTING = re.compile(r"[#'\"()\[\]{}\\]")
_LEX_CODE = re.compile(r"[#'\"()\[\]{}]")  # outside a string a backslash only matters at the end
_LEX_IN_QUOTE = {q: re.compile("[\\\\" + q + "\r\n]") for q in "'\""}


def _lex_python_line(line: str, quote: str | None, depth: int) -> tuple[str | None, int, bool]:
    """Carry (open string quote, bracket depth) across one physical line; say if it continues."""
    if quote is None and _LEX_INTERESTING.search(line) is None:
        return None, depth, False  # most lines: no quote, bracket, comment or backslash
    # Jump from one character that matters to the next (a per-character loop in Python
    # dominated the cost of large cells).
    i, n = 0, len(line)
    while i < n:
        m = (_LEX_CODE if quote is None else _LEX_IN_QUOTE[quote[0]]).search(line, i)
        if m is None:
            break
        i = m.start()
        c = line[i]
        if quote is not None:
            if c == "\\":
                i += 2
                continue
            if line.startswith(quote, i):
                i += len(quote)
                quote = None
                continue
            if c in "\r\n" and len(quote) == 1:
                quote = None  # unterminated one-line string: Python stops here too
            i += 1
            continue
        if c == "#":
            return None, depth, False
        if c in "'\"":
            quote = line[i : i + 3] if line.startswith(c * 3, i) else c
            i += len(quote)
            continue
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth = max(0, depth - 1)
        i += 1
    continued = quote is None and line.rstrip("\r\n").endswith("\\")
    return quote, depth, continued


def _robust_tokens(view_lines: list[str]) -> list[tokenize.TokenInfo]:
    """Tokenize as far as possible; after an error, carry on from the next line."""
    out: list[tokenize.TokenInfo] = []
    start = 0
    attempts = 0
    while start < len(view_lines) and attempts < 1000:
        attempts += 1
        chunk = iter(view_lines[start:])
        last_row = 0
        try:
            for tok in tokenize.generate_tokens(lambda: next(chunk, "")):
                last_row = tok.start[0]
                if start:
                    tok = tok._replace(start=(tok.start[0] + start, tok.start[1]), end=(tok.end[0] + start, tok.end[1]))
                out.append(tok)
            return out
        except (tokenize.TokenError, SyntaxError) as exc:
            failed = getattr(exc, "lineno", None)
            if failed is None and len(exc.args) > 1 and isinstance(exc.args[1], tuple):
                failed = exc.args[1][0]
            start += max(1, failed or last_row or 1)
    return out


# -- literal parsing ---------------------------------------------------------------------------

_PREFIX_RE = re.compile(r"[A-Za-z]*")


@dataclass
class _Literal:
    """One string literal token: ``prefix`` ``quote`` body ``quote``, located in the source."""

    start: int
    end: int
    prefix: str
    quote: str

    @property
    def body_start(self) -> int:
        return self.start + len(self.prefix) + len(self.quote)

    @property
    def body_end(self) -> int:
        return self.end - len(self.quote)

    @property
    def is_bytes(self) -> bool:
        return "b" in self.prefix.lower()

    @property
    def is_raw(self) -> bool:
        return "r" in self.prefix.lower()

    @property
    def is_f(self) -> bool:
        return "f" in self.prefix.lower()

    @classmethod
    def parse(cls, text: str, start: int) -> "_Literal | None":
        prefix = _PREFIX_RE.match(text).group(0)
        rest = text[len(prefix):]
        for quote in ('"""', "'''", '"', "'"):
            if rest.startswith(quote) and rest.endswith(quote) and len(rest) >= 2 * len(quote):
                return cls(start, start + len(text), prefix, quote)
        return None


def _other_quote(quote: str) -> str:
    """A quote character that may appear inside an f-string delimited by ``quote`` (Python < 3.12)."""
    return "'" if quote[0] == '"' else '"'


#: Names written into code as they are; any other name is written with ``repr``.
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def _lookup(name: str, quote: str = '"') -> str:
    return f"os.environ[{quote}{name}{quote}]"


def _escape_braces(text: str, raw: bool) -> str:
    """Double ``{``/``}`` so ``text`` means the same inside an f-string (``\\N{...}`` kept)."""
    if "{" not in text and "}" not in text:
        return text
    out = []
    i = 0
    while i < len(text):
        c = text[i]
        if not raw and c == "\\":
            if text.startswith("\\N{", i):
                close = text.find("}", i)
                if close != -1:
                    out.append(text[i : close + 1])
                    i = close + 1
                    continue
            out.append(text[i : i + 2])
            i += 2
            continue
        out.append(c * 2 if c in "{}" else c)
        i += 1
    return "".join(out)


def _fstring_fields(body: str, raw: bool) -> list[tuple[int, int, list[tuple[int, int]]]]:
    """Replacement fields of an f-string body: ``(start, end, nested string literal spans)``.

    Offsets are within ``body``; ``end`` is one past the closing brace. Literal text is what lies
    between fields (``{{``/``}}`` are text).
    """
    fields = []
    i, n = 0, len(body)
    while i < n:
        c = body[i]
        if c == "\\" and not raw:
            if body.startswith("\\N{", i):
                close = body.find("}", i)
                i = n if close == -1 else close + 1
            else:
                i += 2
            continue
        if c == "{":
            if body.startswith("{{", i):
                i += 2
                continue
            end, strings = _skip_field(body, i)
            fields.append((i, end, strings))
            i = end
            continue
        i += 1
    return fields


def _skip_field(body: str, i: int) -> tuple[int, list[tuple[int, int]]]:
    """From the ``{`` at ``i``, the index after its closing ``}`` and the string literals inside."""
    depth = 0
    strings: list[tuple[int, int]] = []
    j = i + 1
    n = len(body)
    while j < n:
        c = body[j]
        if c in "'\"":
            k = j
            while k > i + 1 and body[k - 1].isalpha():
                k -= 1
            quote = body[j : j + 3] if body.startswith(c * 3, j) else c
            m = j + len(quote)
            while m < n and not body.startswith(quote, m):
                m += 2 if body[m] == "\\" else 1
            m = min(n, m + len(quote))
            strings.append((k, m))
            j = m
            continue
        if c in "([{":
            depth += 1
        elif c in ")]" and depth:
            depth -= 1
        elif c == "}":
            if depth == 0:
                return j + 1, strings
            depth -= 1
        elif c == ":" and depth == 0:
            # Format spec: text with nested fields, up to the closing brace.
            j += 1
            while j < n and body[j] != "}":
                if body[j] == "{":
                    j, inner = _skip_field(body, j)
                    strings.extend(inner)
                    continue
                j += 1
            return min(n, j + 1), strings
        j += 1
    return n, strings


# -- the planner -----------------------------------------------------------------------------


@dataclass
class _Edit:
    start: int
    end: int
    text: str


class _Planner:
    """Turns findings into exact-span edits of the source."""

    def __init__(self, source: str, layout: _Layout, namer: _Namer, *, os_imported: bool = False) -> None:
        self.source = source
        self.os_imported = os_imported
        self.layout = layout
        self.namer = namer
        self.edits: list[_Edit] = []
        self.masked: list[Finding] = []
        self.raw_values: set[str] = set()
        self.first_use: int | None = None  # offset of the first ``os.environ`` that runs in the kernel
        self.windows: list[tuple[int, int]] = []  # rows tokenized around Python keys
        self.import_moved = False  # ``import os`` not at the anchor row (a masked span was there)
        self.import_edit: _Edit | None = None

    # -- driver ------------------------------------------------------------------------------
    def run(self, findings: list[Finding], *, mask_all: bool) -> tuple[str, list[Finding]]:
        self.mask_all = mask_all
        for f in findings:
            self.raw_values.add(self.source[f.start : f.end])
        in_python: list[Finding] = []
        by_segment: dict[int, list[Finding]] = {}
        for f in findings:
            segment = self.layout.segment_at(f.start)
            if segment is not None and f.end <= segment.end:
                by_segment.setdefault(id(segment), []).append(f)
            elif segment is None and self._on_python_rows(f):
                in_python.append(f)
            else:
                self._mask(f)
        if in_python:
            self._plan_python(in_python)
        for segment in self.layout.segments:
            found = by_segment.get(id(segment))
            if found:
                self._plan_segment(segment, found)
        self._plan_import()
        return _apply(self.source, self.edits), self.masked

    def _on_python_rows(self, f: Finding) -> bool:
        first = self._row_of(f.start)
        last = self._row_of(max(f.start, f.end - 1))
        return all(r in self.layout.python_rows for r in range(first, last + 1))

    def _row_of(self, offset: int) -> int:
        return bisect.bisect_right(self.layout.line_starts, offset) - 1

    def _value_name(self, f: Finding, value: str | None = None) -> str:
        return self.namer.name_for(f, self.source[f.start : f.end] if value is None else value)

    def _mask(self, f: Finding) -> None:
        name = self._value_name(f)
        self.edits.append(_Edit(f.start, f.end, mask_for(name)))
        self.masked.append(f)

    def _use(self, offset: int) -> None:
        if self.first_use is None or offset < self.first_use:
            self.first_use = offset

    # -- Python ------------------------------------------------------------------------------
    def _plan_python(self, findings: list[Finding]) -> None:
        # Tokenize only the statements around the keys: a key on line 70,000 of a cell costs
        # its own logical line (and the one before it), not the whole cell.
        windows = [self.layout.statement_window(self._row_of(f.start), self._row_of(max(f.start, f.end - 1))) for f in findings]
        self.windows.extend(windows)
        tokens = self.layout.window_tokens(windows)
        units = list(self._string_units(tokens))
        ordered = sorted(findings, key=lambda f: f.start)
        starts = [f.start for f in ordered]
        taken: set[int] = set()
        unit_findings: dict[int, list[Finding]] = {}
        for index, (lit, _tok_index) in enumerate(units):
            lo, hi = bisect.bisect_left(starts, lit.start), bisect.bisect_left(starts, lit.end)
            inside = [ordered[k] for k in range(lo, hi) if k not in taken and ordered[k].end <= lit.end]
            if inside:
                unit_findings[index] = inside
                taken.update(k for k in range(lo, hi) if ordered[k].end <= lit.end)
        token_rows = [t.start[0] for t in tokens]
        for k, f in enumerate(ordered):
            if k in taken:
                continue
            first_row = self._row_of(f.start) + 1
            # Tokens start at most a few rows before the key (a string spanning lines does not
            # hold it, or it would be a unit): start from the key's window.
            lo = bisect.bisect_left(token_rows, self.layout.statement_window(first_row - 1, first_row - 1)[0] + 1)
            self._plan_python_other(f, tokens, lo)
        groups = _concat_groups(units, tokens)
        docstrings = _docstring_units(units, tokens)
        for group in groups:
            if not any(i in unit_findings for i in group):
                continue
            members = [units[i][0] for i in group]
            if any(members[k].is_bytes and (group[k] in unit_findings) for k in range(len(group))) and len(group) > 1:
                self._plan_bytes_group(group, members, unit_findings)
                continue
            for k, i in enumerate(group):
                if i in unit_findings:
                    lit = members[k]
                    if self.mask_all or any(d in docstrings for d in group) or any(
                        not (lit.body_start <= f.start and f.end <= lit.body_end) for f in unit_findings[i]
                    ):
                        for f in unit_findings[i]:
                            self._mask(f)
                        continue
                    text = self._rewrite_literal(lit, unit_findings[i], alone=len(group) == 1, quote_ban=None)
                    if text is None:
                        for f in unit_findings[i]:
                            self._mask(f)
                        continue
                    self.edits.append(_Edit(lit.start, lit.end, text))
                    self._use(lit.start)

    def _string_units(self, tokens: list[tokenize.TokenInfo]) -> Iterator[tuple[_Literal, int]]:
        """String literals as whole units (3.12+ f-strings arrive as START/MIDDLE/END tokens)."""
        fstring_start = getattr(tokenize, "FSTRING_START", None)
        fstring_end = getattr(tokenize, "FSTRING_END", None)
        i = 0
        while i < len(tokens):
            tok = tokens[i]
            if tok.type == tokenize.STRING:
                start = self.layout.offset(*tok.start)
                lit = _Literal.parse(tok.string, start)
                if lit is not None and self.layout.offset(*tok.end) == lit.end:
                    yield lit, i
            elif fstring_start is not None and tok.type == fstring_start:
                depth, j = 0, i
                while j < len(tokens):
                    if tokens[j].type == fstring_start:
                        depth += 1
                    elif tokens[j].type == fstring_end:
                        depth -= 1
                        if depth == 0:
                            break
                    j += 1
                if j < len(tokens):
                    start = self.layout.offset(*tok.start)
                    end = self.layout.offset(*tokens[j].end)
                    lit = _Literal.parse(self.source[start:end], start)
                    if lit is not None:
                        yield lit, j
                    i = j
            i += 1

    def _plan_python_other(self, f: Finding, tokens: list[tokenize.TokenInfo], first: int = 0) -> None:
        """A key outside any literal: in a comment (mask) or bare in code (a lookup)."""
        layout = self.layout
        starts = {}
        ends = set()
        comment = False
        line_has_error = False
        first_row, last_row = self._row_of(f.start) + 1, self._row_of(max(f.start, f.end - 1)) + 1
        for index in range(first, len(tokens)):  # an index, not a slice: no copy per finding
            tok = tokens[index]
            if tok.start[0] > last_row:
                break
            if tok.end[0] < first_row or tok.start[0] > last_row:
                # Only tokens on the key's own rows: a neighbouring IPython-escape row holds a
                # placeholder (``pass``) whose columns run past the real line's end, so its
                # offsets would wrongly overlap the key (a ``;`` line before a bare key).
                continue
            if tok.type == tokenize.ERRORTOKEN and tok.string.strip():
                line_has_error = True  # e.g. an unterminated string: no lookup in a broken line
            s, e = layout.offset(*tok.start), layout.offset(*tok.end)
            if e <= f.start or s >= f.end:
                continue
            if tok.type == tokenize.COMMENT:
                comment = True
            starts[s] = tok
            ends.add(e)
        if (
            not comment
            and not line_has_error
            and not self.mask_all
            and f.start in starts
            and f.end in ends
            and all(t.type in (tokenize.NAME, tokenize.NUMBER, tokenize.OP) for t in starts.values())
        ):
            # A key that ends in operator tokens (``sk-...-`` read as names and minus signs)
            # keeps them after the lookup: the code after the key is their operand, so
            # ``sk-...- a`` becomes ``os.environ["NAME"]- a`` and still parses.
            cut = f.end
            for start in sorted(starts, reverse=True):
                tok = starts[start]
                if start <= f.start or tok.type != tokenize.OP or layout.offset(*tok.end) != cut:
                    break
                cut = start
            self.edits.append(_Edit(f.start, cut, _lookup(self._value_name(f))))
            self._use(f.start)
            return
        self._mask(f)

    def _literal_value(self, lit: _Literal, f: Finding) -> str | None:
        """The runtime value of the key's text inside ``lit`` (escapes decoded), or ``None``."""
        text = self.source[f.start : f.end]
        if "\\" not in text or lit.is_raw:
            return text
        prefix = lit.prefix.lower().replace("f", "").replace("u", "")
        try:
            value = ast.literal_eval(f"{prefix}{lit.quote}{text}{lit.quote}")
        except (SyntaxError, ValueError):
            return None
        if isinstance(value, bytes):
            try:
                return value.decode("ascii")
            except UnicodeDecodeError:
                return None
        return value if isinstance(value, str) else None

    def _pieces(self, lit: _Literal, found: list[Finding]) -> list[tuple[str, str]] | None:
        """The literal's body split into ``("text", source)`` and ``("key", NAME)`` pieces."""
        pieces: list[tuple[str, str]] = []
        cursor = lit.body_start
        for f in sorted(found, key=lambda f: f.start):
            value = self._literal_value(lit, f)
            if value is None:
                return None
            if f.start > cursor:
                pieces.append(("text", self.source[cursor : f.start]))
            pieces.append(("key", self._value_name(f, value)))
            cursor = f.end
        if cursor < lit.body_end:
            pieces.append(("text", self.source[cursor : lit.body_end]))
        return pieces

    def _rewrite_literal(self, lit: _Literal, found: list[Finding], *, alone: bool, quote_ban: str | None) -> str | None:
        """New text for a literal holding keys, or ``None`` when only a mask will do.

        Args:
            lit: The literal.
            found: The findings inside its body.
            alone: The literal is not part of an implicit concatenation.
            quote_ban: A quote character the new text must not contain (inside an f-string
                replacement field before Python 3.12), or ``None``.
        """
        if lit.is_f:
            return self._rewrite_fstring(lit, found, quote_ban)
        pieces = self._pieces(lit, found)
        if pieces is None:
            return None
        lookup_quote = "'" if quote_ban == '"' else '"'
        if lit.is_bytes:
            return _bytes_expression(lit, pieces, lookup_quote)
        if alone and len(pieces) == 1:
            return _lookup(pieces[0][1], lookup_quote)
        if quote_ban is not None:
            # No third quote character is available for an f-string: concatenate instead.
            return _concat_expression(lit, pieces, lookup_quote)
        prefix = lit.prefix.replace("u", "").replace("U", "") + "f"
        inner = _other_quote(lit.quote)
        body = "".join(
            _escape_braces(text, lit.is_raw) if kind == "text" else "{" + _lookup(text, inner) + "}"
            for kind, text in pieces
        )
        return f"{prefix}{lit.quote}{body}{lit.quote}"

    def _rewrite_fstring(self, lit: _Literal, found: list[Finding], quote_ban: str | None) -> str | None:
        if quote_ban is not None:
            return None  # an f-string nested in an f-string's field: mask
        body_start = lit.body_start
        body = self.source[body_start : lit.body_end]
        fields = _fstring_fields(body, lit.is_raw)
        inner = _other_quote(lit.quote)
        edits: list[_Edit] = []
        for f in found:
            rel_start, rel_end = f.start - body_start, f.end - body_start
            field_hit = next(((s, e, strs) for s, e, strs in fields if s < rel_end and rel_start < e), None)
            if field_hit is None:
                value = self._literal_value(lit, f)
                if value is None:
                    return None
                edits.append(_Edit(rel_start, rel_end, "{" + _lookup(self._value_name(f, value), inner) + "}"))
                continue
            nested = next(((s, e) for s, e in field_hit[2] if s <= rel_start and rel_end <= e), None)
            if nested is None:
                return None
            nested_lit = _Literal.parse(body[nested[0] : nested[1]], body_start + nested[0])
            if nested_lit is None or not (nested_lit.body_start <= f.start and f.end <= nested_lit.body_end):
                return None
            edits.append(_Edit(nested[0], nested[1], "\0nested\0"))  # resolved below, per literal
        # Group nested-literal edits so that a literal with two keys is rewritten once.
        out: list[_Edit] = []
        seen: set[int] = set()
        for edit in edits:
            if edit.text != "\0nested\0":
                out.append(edit)
                continue
            if edit.start in seen:
                continue
            seen.add(edit.start)
            nested_lit = _Literal.parse(body[edit.start : edit.end], body_start + edit.start)
            assert nested_lit is not None
            inside = [f for f in found if nested_lit.start <= f.start and f.end <= nested_lit.end]
            # Before 3.12 a field cannot hold the f-string's own quote; keep that rule on
            # 3.12+ too, so the cell still runs on older Pythons.
            text = self._rewrite_literal(nested_lit, inside, alone=True, quote_ban=lit.quote[0])
            if text is None:
                return None
            out.append(_Edit(edit.start, edit.end, text))
        return self.source[lit.start : body_start] + _apply(body, out) + lit.quote

    def _plan_bytes_group(self, group: list[int], members: list[_Literal], unit_findings: dict[int, list[Finding]]) -> None:
        """``b"a" b"KEY"``: bytes cannot be f-strings, so the group becomes ``(b"a" + ...)``."""
        texts = []
        for k, i in enumerate(group):
            lit = members[k]
            if i in unit_findings:
                pieces = None if self.mask_all else self._pieces(lit, unit_findings[i])
                if pieces is None or not lit.is_bytes:
                    for f in unit_findings[i]:
                        self._mask(f)
                    texts.append(None)
                    continue
                texts.append(_bytes_expression(lit, pieces, '"'))
            else:
                texts.append(self.source[lit.start : lit.end])
        if all(t is None for t in texts):
            return
        last = len(members) - 1
        for k, lit in enumerate(members):
            before = "(" if k == 0 else "+ "
            after = ")" if k == last else ""
            if texts[k] is None:
                # This member got mask edits inside it: wrap it with zero-width edits.
                self.edits.append(_Edit(lit.start, lit.start, before))
                if after:
                    self.edits.append(_Edit(lit.end, lit.end, after))
            else:
                self.edits.append(_Edit(lit.start, lit.end, before + texts[k] + after))
        self._use(members[0].start)

    # -- IPython syntax ----------------------------------------------------------------------
    def _plan_segment(self, segment: _Segment, found: list[Finding]) -> None:
        if self.mask_all or segment.kind == "opaque":
            for f in found:
                self._mask(f)
            return
        if segment.kind == "env":
            self._plan_env(segment, found)
        elif segment.kind in ("shell", "ishell"):
            self._plan_shell(segment, found)
        elif segment.kind == "pyfrag":
            self._plan_fragment(segment, found)

    def _plan_env(self, segment: _Segment, found: list[Finding]) -> None:
        """``%env X=KEY`` -> ``os.environ["X"] = os.environ["NAME"]`` (see the module docstring)."""
        text = self.source[segment.start : segment.end]
        _magic, _, params = text[1:].partition(" ")
        params_start = segment.start + 1 + len(_magic) + 1
        split = "=" if "=" in params else " "
        var, sep, _ = params.partition(split)
        value_offset = params_start + len(var) + len(sep)
        raw_value = self.source[value_offset : segment.end]
        value_start = value_offset + (len(raw_value) - len(raw_value.lstrip()))
        value_end = value_offset + len(raw_value.rstrip())
        var = var.strip()
        usable = (
            sep
            and var
            and not re.search(r"\s", var)
            # IPython expands $name and {expr} in the whole magic line before %env sees it; a
            # name using them has no fixed spelling to write into code, so the key is masked.
            and not re.search(r"[${}]", var)
            and all(value_start <= f.start and f.end <= value_end for f in found)
        )
        if usable:
            others = self.source[value_start:value_end]
            for f in found:
                others = others.replace(self.source[f.start : f.end], "")
            usable = not re.search(r"[${}]", others)
        if not usable:
            for f in found:
                self._mask(f)
            return
        pieces: list[tuple[str, str]] = []
        cursor = value_start
        for f in sorted(found, key=lambda f: f.start):
            if f.start > cursor:
                pieces.append(("text", self.source[cursor : f.start]))
            pieces.append(("key", self._value_name(f)))
            cursor = f.end
        if cursor < value_end:
            pieces.append(("text", self.source[cursor:value_end]))
        if len(pieces) == 1:
            expression = _lookup(pieces[0][1])
        else:
            expression = 'f"' + "".join(
                _python_string_body(t, '"').replace("{", "{{").replace("}", "}}") if kind == "text" else "{" + _lookup(t, "'") + "}"
                for kind, t in pieces
            ) + '"'
        # The name becomes a Python string literal: repr() escapes whatever it holds (quotes,
        # backslashes, brackets), so a crafted name sets that odd variable, as %env does, and
        # never becomes code.
        target = _lookup(var) if _ENV_NAME.match(var) else f"os.environ[{var!r}]"
        self.edits.append(_Edit(segment.start, segment.end, f"{target} = {expression}"))
        self._use(segment.start)

    def _plan_shell(self, segment: _Segment, found: list[Finding]) -> None:
        text = self.source[segment.start : segment.end]
        for f in found:
            rel = f.start - segment.start
            state = _shell_state(text, rel)
            if state in ("#", "<<'"):
                self._mask(f)  # a shell comment, or a quoted heredoc where nothing expands
                continue
            name = self._value_name(f)
            value = self.source[f.start : f.end]
            if segment.kind == "ishell":
                ref = f"$(printenv {name})"
            else:
                following = self.source[f.end : f.end + 1]
                ref = f"${{{name}}}" if (following.isalnum() or following == "_") else f"${name}"
            safe = re.fullmatch(r"[A-Za-z0-9_./+=:@,%^-]*", value) is not None
            if state in ('"', "<<"):
                replacement = ref
            elif state == "'":
                # Close the single quotes, read the variable in double quotes, reopen.
                opened_here = self.source[f.start - 1 : f.start] == "'"
                closes_here = self.source[f.end : f.end + 1] == "'"
                replacement = ("" if opened_here else "'") + f'"{ref}"' + ("" if closes_here else "'")
                start = f.start - 1 if opened_here else f.start
                end = f.end + 1 if closes_here else f.end
                if opened_here and closes_here:
                    replacement = f'"{ref}"'
                self.edits.append(_Edit(start, end, replacement))
                continue
            else:
                replacement = ref if safe else f'"{ref}"'
            self.edits.append(_Edit(f.start, f.end, replacement))

    def _plan_fragment(self, segment: _Segment, found: list[Finding]) -> None:
        """Python arguments of ``%time``-like line magics: string literals become lookups."""
        text = self.source[segment.start : segment.end]
        tokens = _robust_tokens([text.replace("\\\n", "  ") + "\n"])
        for tok in tokens:
            if tok.type != tokenize.STRING or tok.start[0] != 1:
                continue
            start = segment.start + tok.start[1]
            lit = _Literal.parse(tok.string, start)
            if lit is None:
                continue
            inside = [f for f in found if lit.body_start <= f.start and f.end <= lit.body_end]
            if not inside:
                continue
            new = self._rewrite_literal(lit, inside, alone=True, quote_ban=None)
            if new is None:
                continue
            self.edits.append(_Edit(lit.start, lit.end, new))
            self._use(lit.start)
            found = [f for f in found if f not in inside]
        for f in found:
            self._mask(f)

    # -- import os ---------------------------------------------------------------------------
    def _plan_import(self) -> None:
        """Insert ``import os`` before the first line of code unless the cell imports it first."""
        if self.first_use is None or not self.layout.python_context or self.os_imported:
            return
        use_row = self._row_of(self.first_use)
        if _imports_os_before(self.layout, self.first_use):
            return
        row = self.layout.anchor_row if self.layout.anchor_row is not None else use_row
        row = _after_future_imports(self.layout, row)
        line = self.layout.lines[row] if row < len(self.layout.lines) else ""
        indent = line[: len(line) - len(line.lstrip(" \t"))]
        newline = "\r\n" if line.endswith("\r\n") else "\n"
        at = self.layout.line_starts[row] if row < len(self.layout.line_starts) else len(self.source)
        # A masked span can cover the start of the anchor row (a PEM block in a comment runs
        # onto the following lines, which read as code): insert before the line where that
        # span starts instead, which is still before the first use.
        moved = True
        while moved:
            moved = False
            for edit in self.edits:
                if edit.start < at < edit.end:
                    at = self.layout.line_starts[self._row_of(edit.start)]
                    moved = self.import_moved = True
        self.import_edit = _Edit(at, at, f"{indent}import os{newline}")
        self.edits.append(self.import_edit)


# -- helpers --------------------------------------------------------------------------------


def _apply(text: str, edits: Iterable[_Edit]) -> str:
    """Apply non-overlapping edits (insertions at a point come before a replacement there)."""
    ordered = sorted(edits, key=lambda e: (e.start, e.end != e.start, e.end))
    out = []
    cursor = 0
    for edit in ordered:
        if edit.start < cursor:
            raise ValueError("overlapping edits")  # pragma: no cover - planner invariant
        out.append(text[cursor : edit.start])
        out.append(edit.text)
        cursor = edit.end
    out.append(text[cursor:])
    return "".join(out)


def _python_string_body(text: str, quote: str) -> str:
    """``text`` escaped to sit between ``quote`` characters in a Python literal."""
    return json.dumps(text, ensure_ascii=False)[1:-1] if quote == '"' else text.replace("\\", "\\\\").replace("'", "\\'")


def _bytes_expression(lit: _Literal, pieces: list[tuple[str, str]], lookup_quote: str) -> str:
    parts = [
        f"{lit.prefix}{lit.quote}{text}{lit.quote}" if kind == "text" else _lookup(text, lookup_quote) + ".encode()"
        for kind, text in pieces
    ]
    return parts[0] if len(parts) == 1 else "(" + " + ".join(parts) + ")"


def _concat_expression(lit: _Literal, pieces: list[tuple[str, str]], lookup_quote: str) -> str:
    parts = [
        f"{lit.prefix}{lit.quote}{text}{lit.quote}" if kind == "text" else _lookup(text, lookup_quote)
        for kind, text in pieces
    ]
    return parts[0] if len(parts) == 1 else "(" + " + ".join(parts) + ")"


_SKIP_BETWEEN = {tokenize.NL, tokenize.COMMENT}


def _concat_groups(units: list[tuple[_Literal, int]], tokens: list[tokenize.TokenInfo]) -> list[list[int]]:
    """Indices of ``units`` grouped by implicit concatenation (adjacent literals)."""
    groups: list[list[int]] = []
    for index, (_lit, tok_index) in enumerate(units):
        if groups:
            prev_tok_index = units[groups[-1][-1]][1]
            between = tokens[prev_tok_index + 1 : _first_token_index(units[index], tokens)]
            if all(t.type in _SKIP_BETWEEN for t in between):
                groups[-1].append(index)
                continue
        groups.append([index])
    return groups


def _first_token_index(unit: tuple[_Literal, int], tokens: list[tokenize.TokenInfo]) -> int:
    """Index of the unit's first token (an f-string on 3.12 spans several)."""
    _lit, last = unit
    fstring_end = getattr(tokenize, "FSTRING_END", None)
    if fstring_end is None or tokens[last].type != fstring_end:
        return last
    depth, j = 0, last
    while j >= 0:
        if tokens[j].type == fstring_end:
            depth += 1
        elif tokens[j].type == getattr(tokenize, "FSTRING_START"):
            depth -= 1
            if depth == 0:
                return j
        j -= 1
    return last


def _docstring_units(units: list[tuple[_Literal, int]], tokens: list[tokenize.TokenInfo]) -> set[int]:
    """Indices of units that are the docstring of a ``def`` or ``class``."""
    out: set[int] = set()
    header_colons = _header_colons(tokens)
    for index, unit in enumerate(units):
        j = _first_token_index(unit, tokens) - 1
        while j >= 0 and tokens[j].type in (tokenize.NL, tokenize.COMMENT, tokenize.NEWLINE, tokenize.INDENT):
            j -= 1
        if j < 0 or j not in header_colons:
            continue
        k = unit[1] + 1
        while k < len(tokens) and tokens[k].type in (tokenize.STRING, tokenize.NL, tokenize.COMMENT):
            k += 1
        if k >= len(tokens) or tokens[k].type in (tokenize.NEWLINE, tokenize.ENDMARKER) or tokens[k].string == ";":
            out.add(index)
    return out


def _header_colons(tokens: list[tokenize.TokenInfo]) -> set[int]:
    """Token indices of the ``:`` ending each ``def``/``class`` header."""
    colons: set[int] = set()
    statement_start = True
    in_header = False
    depth = 0
    for i, tok in enumerate(tokens):
        if tok.type in (tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT):
            statement_start, in_header, depth = True, False, 0
            continue
        if tok.type in (tokenize.NL, tokenize.COMMENT):
            continue
        if statement_start:
            statement_start = False
            if tok.string in ("def", "class", "async"):
                in_header = True
            elif tok.string == "@":
                in_header = False
        if tok.string in ("(", "[", "{"):
            depth += 1
        elif tok.string in (")", "]", "}"):
            depth = max(0, depth - 1)
        elif tok.string == ":" and depth == 0 and in_header:
            colons.add(i)
            in_header = False
            statement_start = True  # a one-line body may follow: ``def f(): "doc"``
    return colons


def _imports_os_before(layout: _Layout, offset: int) -> bool:
    """A top-level ``import os`` (or ``import os.path``, ``import sys, os``) before ``offset``."""
    # Only the statements that contain the word ``import`` are tokenized.
    rows: list[int] = []
    at = layout.source.find("import", 0, offset)
    while at != -1:  # str.find, not a ``\b`` regex: this runs over every cell with a key
        row = bisect.bisect_right(layout.line_starts, at) - 1  # a superset; the tokens decide
        if not rows or rows[-1] != row:
            rows.append(row)
        at = layout.source.find("import", at + 6, offset)
    if not rows:
        return False
    tokens = layout.window_tokens([layout.statement_window(r, r) for r in rows])
    depth_indent = 0
    statement_start = True
    for i, tok in enumerate(tokens):
        if tok.type != tokenize.ENDMARKER and layout.offset(*tok.start) >= offset:
            return False
        if tok.type == tokenize.INDENT:
            depth_indent += 1
            continue
        if tok.type == tokenize.DEDENT:
            depth_indent -= 1
            continue
        if tok.type in (tokenize.NEWLINE, tokenize.NL) or tok.string == ";":
            statement_start = True
            continue
        if tok.type == tokenize.ENDMARKER:  # the end of one window: the next starts afresh
            statement_start, depth_indent = True, 0
            continue
        if tok.type == tokenize.COMMENT:
            continue
        if statement_start and depth_indent == 0 and tok.string == "import":
            expect_name = True
            j = i + 1
            while j < len(tokens) and tokens[j].type not in (tokenize.NEWLINE, tokenize.NL) and tokens[j].string != ";":
                t = tokens[j]
                if expect_name and t.type == tokenize.NAME:
                    bound = t.string
                    k = j + 1
                    while k + 1 < len(tokens) and tokens[k].string == ".":
                        k += 2
                    if k < len(tokens) and tokens[k].string == "as":
                        bound = tokens[k + 1].string if k + 1 < len(tokens) else ""
                    if bound == "os":
                        return True
                    expect_name = False
                elif t.string == ",":
                    expect_name = True
                j += 1
        statement_start = False
    return False


def _after_future_imports(layout: _Layout, row: int) -> int:
    """The first row after any ``from __future__ import`` statements starting at ``row``."""
    if "__future__" not in layout.source:
        return row
    tokens = layout.tokens
    while True:
        starts = [i for i, t in enumerate(tokens) if t.start[0] - 1 == row and t.type == tokenize.NAME]
        if not starts:
            return row
        i = starts[0]
        if not (tokens[i].string == "from" and i + 1 < len(tokens) and tokens[i + 1].string == "__future__"):
            return row
        j = i
        while j < len(tokens) and tokens[j].type not in (tokenize.NEWLINE, tokenize.ENDMARKER):
            j += 1
        if j >= len(tokens):
            return row
        row = tokens[j].end[0]  # the row after the statement's last line (0-based)
        while row < len(layout.lines) and not layout.lines[row].strip():
            row += 1
        if row >= len(layout.lines):
            return row


_HEREDOC_RE = re.compile(r"<<(-?)[ \t]*(?:'([^'\n]+)'|\"([^\"\n]+)\"|\\?([A-Za-z0-9_]+))")


def _shell_state(text: str, upto: int) -> str:
    """The POSIX-shell quoting state at ``upto`` in ``text``.

    Returns ``""`` (unquoted), ``"'"``, ``'"'``, ``"#"`` (a comment), ``"<<"`` (the body of a
    heredoc, where ``$NAME`` expands and quotes are plain characters) or ``"<<'"`` (the body of a
    heredoc with a quoted delimiter, where nothing expands).
    """
    state = ""
    pending: list[tuple[str, bool, bool]] = []  # (delimiter, quoted, strip tabs) after this line
    i = 0
    while i < upto:
        c = text[i]
        if state == "#":
            if c == "\n":
                state = ""
                continue
        elif state == "'":
            if c == "'":
                state = ""
        elif state == '"':
            if c == "\\":
                i += 1
            elif c == '"':
                state = ""
        else:
            if c == "\\":
                i += 1
            elif c in "'\"":
                state = c
            elif c == "#" and (i == 0 or text[i - 1] in " \t\n;|&("):
                state = "#"
            elif c == "<" and text.startswith("<<", i) and not text.startswith("<<<", i):
                m = _HEREDOC_RE.match(text, i)
                if m:
                    delimiter = m.group(2) or m.group(3) or m.group(4)
                    quoted = m.group(4) is None or text[m.start(4) - 1] == "\\"
                    pending.append((delimiter, quoted, m.group(1) == "-"))
                    i = m.end()
                    continue
            elif c == "\n" and pending:
                # The heredoc bodies start on the next line, one after the other.
                i += 1
                for delimiter, quoted, strip_tabs in pending:
                    while i < len(text):
                        end = text.find("\n", i)
                        end = len(text) if end == -1 else end
                        line = text[i:end]
                        if (line.lstrip("\t") if strip_tabs else line) == delimiter:
                            if upto < end:
                                return ""
                            i = end + 1
                            break
                        if i <= upto <= end:
                            return "<<'" if quoted else "<<"
                        i = end + 1
                pending = []
                continue
        i += 1
    return state
