"""Property tests for ipykeyguard.transforms.rewrite: for generated cells with planted fake keys the rewrite
parses wherever the input parsed, evaluates to the same values once the variables are set, holds
no key, and is idempotent."""

from __future__ import annotations

import ast
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fakekeys
from ipykeyguard.engine.findings import Confidence
from ipykeyguard.transforms.rewrite import rewrite_source
from ipykeyguard.engine.scan import default_scanner

GENERATORS = [
    fakekeys.openai_project_key,
    fakekeys.openai_legacy_key,
    fakekeys.github_classic_token,
    fakekeys.npm_token,
    fakekeys.aws_access_key_id,
]

# KG_HYPOTHESIS_EXAMPLES=2000 for a longer hunt.
SETTINGS = settings(max_examples=int(os.environ.get("KG_HYPOTHESIS_EXAMPLES", "150")), deadline=None, suppress_health_check=[HealthCheck.too_slow])


class Planted(list):
    """The keys planted in one example; the repr is masked so a failing example shows none."""

    def __repr__(self) -> str:
        return f"Planted({len(self)} keys)"


class Cell:
    """A generated cell and the keys planted in it; the repr shows the cell with keys masked."""

    def __init__(self, source: str, planted: list[str]) -> None:
        self.source = source
        self.planted = Planted(planted)

    def __iter__(self):
        return iter((self.source, self.planted))

    def __repr__(self) -> str:
        masked = self.source
        for key in sorted(self.planted, key=len, reverse=True):
            masked = masked.replace(key, "<KEY>")
        return f"Cell({masked!r})"


@st.composite
def fake_key(draw) -> str:
    generator = draw(st.sampled_from(GENERATORS))
    return generator(draw(st.randoms(use_true_random=False)))


# Text around a key inside a literal: braces (f-string escaping), escapes, '$', '#', ':'.
FILLER_PIECES = ["a", "Z9", " ", "{", "}", "{{", "}}", ":", "=", "/", "$x", "#", ".", "\\n", "\\t", "%s"]
SEPARATORS_BEFORE = [" ", ":", "=", "/", " {", "("]
SEPARATORS_AFTER = [" ", ".", "/", ":", ",", "}", ")"]


@st.composite
def filler(draw, *, backslashes: bool = True, newlines: bool = False) -> str:
    pieces = [p for p in FILLER_PIECES if backslashes or "\\" not in p]
    if newlines:
        pieces = pieces + ["\n"]
    return "".join(draw(st.lists(st.sampled_from(pieces), max_size=4)))


@st.composite
def literal(draw, key: str, *, nested_in: str | None = None, one_line: bool = False) -> str:
    """A string or bytes literal holding ``key`` whole or in part (``nested_in``: inside an f-string
    field quoted with that character, so no backslash and no such quote before Python 3.12)."""
    kinds = ["str", "raw", "bytes", "rawbytes", "triple", "fstring", "u"]
    if nested_in is not None:
        kinds = ["str", "raw", "bytes"]
    elif one_line:
        kinds.remove("triple")
    kind = draw(st.sampled_from(kinds))
    whole = draw(st.booleans())
    allow_backslash = nested_in is None
    if whole:
        body = key
    else:
        before = draw(filler(backslashes=allow_backslash, newlines=kind == "triple")) + draw(st.sampled_from(SEPARATORS_BEFORE))
        after = draw(st.sampled_from(SEPARATORS_AFTER)) + draw(filler(backslashes=allow_backslash, newlines=kind == "triple"))
        body = before + key + after
    if kind == "triple":
        quote = '"""'
    elif nested_in is not None:
        quote = "'" if nested_in == '"' else '"'
    else:
        quote = draw(st.sampled_from(['"', "'"]))
    if kind == "fstring":
        # Braces in an f-string are fields: escape them, then add one real field.
        body = body.replace("{", "{{").replace("}", "}}") + "{n}"
    prefix = {"str": "", "raw": "r", "bytes": "b", "rawbytes": "rb", "triple": "", "fstring": "f", "u": "u"}[kind]
    return f"{prefix}{quote}{body}{quote}"


@st.composite
def statement(draw, index: int, planted: list[str]) -> str:
    """One statement binding ``v<index>`` to a value built around a planted key."""
    key = draw(fake_key())
    planted.append(key)
    lit = draw(literal(key))
    name = f"v{index}"
    context = draw(st.sampled_from(["plain", "plus", "dict", "kwarg", "concat", "list", "comment", "def", "ffield"]))
    is_bytes = lit.lstrip("rR").startswith(("b", "B"))
    if context == "plain":
        return f"{name} = {lit}\n"
    if context == "plus":
        return f"{name} = {'b' if is_bytes else ''}'Bearer ' + {lit}\n"
    if context == "dict":
        return f'{name} = {{"Authorization": {lit}, "n": 1}}\n'
    if context == "kwarg":
        return f"{name} = dict(api_key={lit}, timeout=3)\n"
    if context == "concat":
        other = ("b" if is_bytes else "") + "'pre{fix} '"
        if lit.startswith("f"):
            other = "'pre{{fix}} '"
        return f"{name} = ({other}  # joined\n    {lit})\n"
    if context == "list":
        return f"{name} = [1, {lit},\n    2]\n"
    if context == "comment":
        other = draw(fake_key())
        planted.append(other)
        return f"{name} = {lit}  # was {other} before\n"
    if context == "def":
        return f"def f{index}():\n    return {lit}\n{name} = f{index}()\n"
    # ffield: the literal sits inside an f-string's replacement field.
    outer = draw(st.sampled_from(['"', "'"]))
    inner = draw(literal(key, nested_in=outer))
    convert = ".decode()" if inner.lstrip("rR").startswith(("b", "B")) else ""
    return f"{name} = f{outer}<{{{inner}{convert}}}>{outer}\n"


@st.composite
def python_cell(draw) -> Cell:
    planted = Planted()
    count = draw(st.integers(min_value=1, max_value=4))
    lines = ["n = 7\n"]
    for i in range(count):
        lines.append(draw(statement(i, planted)))
    return Cell("".join(lines), planted)


def _values(source: str) -> dict:
    namespace: dict = {}
    exec(compile(source, "<cell>", "exec"), namespace)
    return {k: v for k, v in namespace.items() if k.startswith("v")}


def _found_keys(source: str) -> list[str]:
    return [f.secret.reveal() for f in default_scanner().scan_text(source, min_confidence=Confidence.LIKELY)]


@SETTINGS
@given(python_cell())
def test_python_cells_keep_their_values_and_lose_their_keys(cell):
    """Generated Python with planted keys: parses, same values with the env set, no key left, idempotent."""
    source, planted = cell
    ast.parse(source)  # the generator makes valid Python
    result = rewrite_source(source)
    found = _found_keys(source)
    leaked = any(key in result.source for key in found)
    assert not leaked, "a key the scanner found is still in the rewritten source"
    assert not any(f.confidence >= Confidence.LIKELY for f in default_scanner().scan_text(result.source))
    ast.parse(result.source)
    again = rewrite_source(result.source)
    assert again.source == result.source and not again.changed
    for secret in result.moved.values():
        stray = secret.reveal() not in planted
        assert not stray, "moved a value that was not planted"
    with pytest.MonkeyPatch.context() as mp:
        for name, secret in result.moved.items():
            mp.setenv(name, secret.reveal())
        same = _values(source) == _values(result.source)
    assert same, "the rewritten cell computes different values"


@st.composite
def ipython_cell(draw) -> Cell:
    """Python lines mixed with ! commands, %env, x = !cmd, %time and comments, each holding keys."""
    planted = Planted()
    lines = []
    for i in range(draw(st.integers(min_value=1, max_value=5))):
        key = draw(fake_key())
        planted.append(key)
        kind = draw(st.sampled_from(["py", "bang", "bangq", "env", "assign", "time", "block"]))
        if kind == "py":
            lines.append(f"v{i} = {draw(literal(key))}\n")
        elif kind == "bang":
            lines.append(f"!curl -H \"Authorization: Bearer {key}\" -d '{{\"a\": 1}}' https://example.invalid\n")
        elif kind == "bangq":
            lines.append(f"!echo 'token {key}' {{n}}  # {key}\n")
        elif kind == "env":
            lines.append(f"%env V{i}={key}\n")
        elif kind == "assign":
            lines.append(f"out{i} = !echo {key}\n")
        elif kind == "time":
            lines.append(f"%time v{i} = {draw(literal(key, one_line=True))}\n")
        else:
            lines.append(f"if True:\n    !echo {key}\n    v{i} = '{key}'\n")
    return Cell("".join(lines), planted)


def _transformed(cell: str) -> str | None:
    from IPython.core.inputtransformer2 import TransformerManager

    try:
        text = TransformerManager().transform_cell(cell)
        ast.parse(text)
    except SyntaxError:
        return None
    return text


@SETTINGS
@given(ipython_cell())
def test_ipython_cells_parse_lose_their_keys_and_are_idempotent(cell):
    """Cells mixing magics, ! commands and Python: still valid IPython, no key left, idempotent."""
    source, planted = cell
    valid = _transformed(source) is not None
    assert valid, "the generator made a cell IPython cannot run"
    result = rewrite_source(source)
    leaked = any(key in result.source for key in _found_keys(source))
    assert not leaked, "a key the scanner found is still in the rewritten source"
    still_valid = _transformed(result.source) is not None
    assert still_valid, "the rewrite broke the cell"
    again = rewrite_source(result.source)
    assert again.source == result.source and not again.changed
    # Line count changes by at most the one inserted import line.
    assert result.source.count("\n") - source.count("\n") in (0, 1)


JUNK = st.text(alphabet="\"'()[]{}#%!$\\\n :=abf,;", max_size=40)


@st.composite
def junk_cell(draw) -> Cell:
    """Arbitrary Python-ish text with a key somewhere in it."""
    key = draw(fake_key())
    joint = draw(st.sampled_from([" ", "\n", "'", '"', "(", "# ", "!", "%env X=", "b'", "f'{"]))
    return Cell(draw(JUNK) + joint + key + " " + draw(JUNK), [key])


@SETTINGS
@given(junk_cell())
def test_arbitrary_text_never_breaks_and_never_keeps_a_key(cell):
    """Any text around a key: no exception, the key goes, no parse is lost, and a rerun changes nothing."""
    source, _planted = cell
    parsed_before = _transformed(source) is not None
    result = rewrite_source(source)
    leaked = any(k in result.source for k in _found_keys(source))
    assert not leaked, "a key the scanner found is still in the rewritten source"
    if parsed_before:
        still_valid = _transformed(result.source) is not None
        assert still_valid, "the rewrite broke a cell that parsed"
    again = rewrite_source(result.source)
    assert again.source == result.source


@st.composite
def many_keys(draw) -> Planted:
    return Planted(draw(st.lists(fake_key(), min_size=2, max_size=6)))


@settings(max_examples=50, deadline=None)
@given(many_keys(), st.randoms(use_true_random=False))
def test_names_are_stable_and_distinct(keys, rng):
    """Equal values share one name, different values never share one, in any order."""
    lines = [f"k{i} = '{key}'\n" for i, key in enumerate(keys)]
    lines += [f"again{i} = '{key}'\n" for i, key in enumerate(keys)]
    rng.shuffle(lines)
    result = rewrite_source("".join(lines))
    found = set(_found_keys("".join(lines)))
    values = [s.reveal() for s in result.moved.values()]
    assert len(values) == len(set(values)) == len(found)


def test_statement_window_check_keeps_the_properties():
    """With the parse check judged by changed statements only (as for large cells), the properties hold."""
    from ipykeyguard.transforms import rewrite as rewrite_module

    saved = rewrite_module._WHOLE_CELL_CHECK_CHARS
    rewrite_module._WHOLE_CELL_CHECK_CHARS = 0
    try:
        test_arbitrary_text_never_breaks_and_never_keeps_a_key()
        test_ipython_cells_parse_lose_their_keys_and_are_idempotent()
    finally:
        rewrite_module._WHOLE_CELL_CHECK_CHARS = saved
