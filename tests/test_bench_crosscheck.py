"""benchmarks/bench_crosscheck.py: the Rust-to-Python regex translation, the sample embedding,
and the overlap rule that decides whether a tool found a drawn sample.

The benchmark itself (drawing from Kingfisher's catalogue, running the peers) is a benchmark, not
a test: it prints figures and asserts none. These tests keep its pieces honest.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path

import pytest

from ipykeyguard.engine.scan import scan_notebook, scan_text
from tests.fakekeys import github_classic_token

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"


@pytest.fixture(scope="module")
def crosscheck():
    sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location("bench_crosscheck", BENCH / "bench_crosscheck.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_crosscheck"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("rust, text, matches", [
    (r"\b(p8e-(?i)[a-z0-9]{4})x", "p8e-AbC1x", True),       # mid-pattern flag scoped to the end
    (r"\b(p8e-(?i)[a-z0-9]{4})x", "P8E-abc1x", False),      # ... and not before it
    (r"a(?i)b|c", "C", True),                                # the flag carries across |
    (r"a(?i)b|c", "aB", True),
    (r"(?i)abc\z", "ABC", True),                             # \z is Python's \Z
    (r"[[:alnum:]]{3}(?<tail>x)", "a1Bx", True),            # POSIX class, (?<name>
    (r"(?:(?-i:[Ss]umo))x", "sumox", True),
    (r"(?i:(?-i:[Ss]umo))x", "SUMOx", False),
])
def test_rust_regex_translates_to_an_equivalent_python_pattern(crosscheck, rust, text, matches):
    """A Rust regex with inline flags, \\z, POSIX classes or (?<name>) becomes a Python pattern that matches the same strings."""
    pattern = re.compile(crosscheck.rust_regex_to_python(rust))
    assert bool(pattern.fullmatch(text)) is matches


def test_a_value_only_sample_is_embedded_under_a_name_made_from_its_rule(crosscheck):
    """A name-bound peer sample goes in as NAME = "value" in code, a header, JSON, a URL and a .py file, and our scan finds the value there."""
    key = github_classic_token()
    sample = crosscheck.Sample("betterleaks.github-pat", "github", f"github_token ||= '{key}'", key,
                               bare=False, bound=True, name=crosscheck._name_for("betterleaks.github-pat"))
    assert sample.name == "GITHUB_PAT"
    for context in crosscheck.CONTEXTS:
        suffix, content = crosscheck.embed(sample, context)
        assert "||=" not in content  # the drawn junk separator is not what a user writes
        if suffix == ".ipynb":
            found = scan_notebook(json.loads(content))
        else:
            found = scan_text(content)
        assert any(f.secret.reveal() == key for f in found), context


def test_a_structured_sample_is_embedded_whole_and_skipped_where_it_cannot_fit(crosscheck):
    """A multi-line sample (its match carries structure) is embedded as drawn, and left out of one-line places."""
    text = "-----BEGIN PRIVATE KEY-----\nabc\n-----END PRIVATE KEY-----"
    sample = crosscheck.Sample("betterleaks.private-key", "private", text, text)
    assert crosscheck.embed(sample, "stream-header") is None
    assert crosscheck.embed(sample, "markdown-url") is None
    suffix, content = crosscheck.embed(sample, "py-file")
    assert suffix == ".py" and content == text + "\n"


def test_peer_secret_read_across_notebook_json_lines_compares_as_the_notebook_text(crosscheck):
    """A peer's match that spans a notebook's JSON list of lines is unescaped to the text the notebook holds."""
    raw_json = json.dumps({"source": ["line one\n", "line two"]}, indent=1)
    start = raw_json.index("line one")
    peer_secret = raw_json[start:raw_json.index("two") + 3]
    assert '",' in peer_secret
    assert crosscheck._unescape(peer_secret) == "line one\nline two"
    assert crosscheck.overlaps("one\nline", crosscheck._unescape(peer_secret))
    assert not crosscheck.overlaps("", "anything")
