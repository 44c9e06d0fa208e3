"""transforms.notebook.file_positions: a place inside a cell, found again in the .ipynb text."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from ipykeyguard.transforms.notebook import file_positions, iter_leaves, parse_notebook

KEY = "FAKEKEY0123456789abcdef"
text_lines = st.lists(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12), max_size=4)


def _at(raw: str, position: tuple[int, int]) -> str:
    line, column = position
    return raw.split("\n")[line - 1][column - 1:]


@settings(max_examples=150, deadline=None)
@given(before=text_lines, prefix=st.text(max_size=8, alphabet=st.characters(blacklist_categories=("Cs",))),
       after=text_lines, as_lines=st.booleans(), ascii_only=st.booleans(), indent=st.sampled_from([None, 1, 2]),
       where=st.sampled_from(["source", "output", "metadata"]))
def test_a_planted_key_is_placed_on_its_line_of_the_file(before, prefix, after, as_lines, ascii_only, indent, where):
    """Whatever the text around it (quotes, backslashes, non-ASCII, newlines), the way lists of
    lines or one string are stored, and the JSON layout, the position points at the key itself."""
    lines = [s.replace("\n", " ") + "\n" for s in before] + [f"{prefix.replace(chr(10), ' ')}{KEY} tail\n"] + \
        [s.replace("\n", " ") + "\n" for s in after]
    value = lines if as_lines else "".join(lines)
    cell = {"cell_type": "code", "execution_count": 1, "id": "a", "metadata": {}, "outputs": [], "source": "x = 1\n"}
    if where == "source":
        cell["source"] = value
    elif where == "output":
        cell["outputs"] = [{"name": "stdout", "output_type": "stream", "text": value}]
    else:
        cell["metadata"] = {"tags": ["t"], "note": value}
    nb = {"cells": [{"cell_type": "markdown", "id": "m", "metadata": {}, "source": "# t"}, cell],
          "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    raw = json.dumps(nb, indent=indent, ensure_ascii=ascii_only)
    parsed = parse_notebook(raw)
    leaf = next(leaf for leaf in iter_leaves(parsed) if KEY in leaf.text)
    [position] = file_positions(raw, parsed, [(leaf, leaf.text.index(KEY))])
    assert position is not None and _at(raw, position).startswith(KEY)


def test_a_key_used_as_a_json_object_key_is_placed_on_that_key():
    """A secret that is a dict key (widget state, display JSON) points at the key, not its value."""
    nb = {"cells": [{"cell_type": "code", "execution_count": 1, "id": "a", "metadata": {}, "source": "x\n",
                     "outputs": [{"output_type": "display_data", "metadata": {},
                                  "data": {"application/json": {"ordinary": 1, KEY: {"nested": True}}}}]}],
          "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    raw = json.dumps(nb, indent=1)
    parsed = parse_notebook(raw)
    leaf = next(leaf for leaf in iter_leaves(parsed) if leaf.is_key and leaf.text == KEY)
    [position] = file_positions(raw, parsed, [(leaf, 0)])
    assert position is not None and _at(raw, position).startswith(KEY + '": {')
