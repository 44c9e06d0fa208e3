"""The project's own scanner over this repository: every tracked file, and its git history.

Fake keys in fixtures and the rules file are excluded by path in ``pyproject.toml``; three fake
values that earlier commits held are allowed by fingerprint there. No rule is switched off.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _ipykeyguard() -> str:
    beside = Path(sys.executable).with_name("ipykeyguard")
    return str(beside) if beside.exists() else shutil.which("ipykeyguard") or "ipykeyguard"


def _git(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def checkout() -> Path:
    if _git("rev-parse", "--git-dir").returncode != 0:
        pytest.skip("not a git checkout (an unpacked sdist): nothing tracked to scan")
    return ROOT


def test_every_tracked_file_is_clean(checkout):
    """``ipykeyguard scan`` over every tracked file exits 0 (with the repository's own config)."""
    files = [f for f in _git("ls-files", "-z").stdout.split("\0") if f and (checkout / f).is_file()]
    proc = subprocess.run([_ipykeyguard(), "scan", "--format", "json", *files], cwd=checkout,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]


def test_the_git_history_is_clean(checkout):
    """``ipykeyguard scan --history .`` over every commit exits 0."""
    if _git("rev-parse", "--is-shallow-repository").stdout.strip() == "true":
        pytest.skip("a shallow clone holds only part of the history")
    proc = subprocess.run([_ipykeyguard(), "scan", "--history", ".", "--format", "json"], cwd=checkout,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
