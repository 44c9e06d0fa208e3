"""Facts that the README states are read from the code, so the prose cannot drift from it."""

from __future__ import annotations

import re
from pathlib import Path

from ipykeyguard.engine.rules import default_rules

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_rule_count_is_the_shipped_rule_count():
    """Every "N rules" in the README is the number of rules the package ships."""
    counts = {int(n) for n in re.findall(r"\b(\d+) rules\b", README.read_text(encoding="utf-8"))}
    assert counts == {len(default_rules())}


def test_readme_names_the_rules_file_that_exists():
    """The rules file the README points to is the one the package loads."""
    named = re.findall(r"`(ipykeyguard/[\w/]+\.toml)`", README.read_text(encoding="utf-8"))
    assert named and all((README.parent / path).is_file() for path in named)
