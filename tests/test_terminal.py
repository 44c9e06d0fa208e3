"""The input guard in terminal IPython (`ipython --simple-prompt --ext=ipykeyguard`), via pexpect."""

from __future__ import annotations

import hashlib
import os
import re
import sqlite3
from pathlib import Path

import pexpect
import pytest

from fakekeys import openai_project_key

PROMPT = re.compile(r"In \[(\d+)\]: ")


def fp(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class Terminal:
    """An interactive IPython in a pseudo-terminal; :meth:`run` returns what one input printed."""

    def __init__(self, cwd: Path, ipython_dir: Path) -> None:
        env = {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}
        env.update(IPYTHONDIR=str(ipython_dir), TERM="dumb", PYTHONUNBUFFERED="1")
        self.child = pexpect.spawn(
            "ipython", ["--simple-prompt", "--no-banner", "--colors=nocolor", "--ext=ipykeyguard"],
            cwd=str(cwd), env=env, encoding="utf-8", timeout=60, dimensions=(50, 400),
        )
        self.child.expect(PROMPT)

    def run(self, line: str) -> str:
        """Send one line and return everything printed up to the next prompt (echo excluded)."""
        self.child.sendline(line)
        self.child.expect(PROMPT)
        printed = self.child.before
        return printed.split("\n", 1)[1] if "\n" in printed else ""

    def close(self) -> None:
        self.child.sendline("exit")
        self.child.expect(pexpect.EOF)
        self.child.close()


@pytest.fixture
def terminal(tmp_path):
    cwd, ipython_dir = tmp_path / "work", tmp_path / "ipython"
    cwd.mkdir()
    term = Terminal(cwd, ipython_dir)
    yield term, cwd, ipython_dir
    if term.child.isalive():
        term.child.terminate(force=True)


def test_terminal_moves_key_keeps_history_clean_and_sends_no_payload(terminal):
    """In terminal IPython a pasted key is moved and the code gets its value; the guard never
    calls set_next_input (it would pre-fill the next prompt); `_i`, `%history` and
    history.sqlite hold no key."""
    term, cwd, ipython_dir = terminal
    key = openai_project_key()
    term.run("_kg_calls = []; get_ipython().set_next_input = lambda *a, **k: _kg_calls.append(1)")
    moved = term.run(f'token = "{key}"')
    assert "ipykeyguard: moved 1 key (OPENAI_API_KEY) to .env" in moved
    assert fp(key) in term.run("import hashlib; print(hashlib.sha256(token.encode()).hexdigest())")
    assert "CALLS 0" in term.run("print('CALLS', len(_kg_calls))")
    assert key in (cwd / ".env").read_text(), "key not stored in .env"
    # `_i2` is the key cell: rewritten, so it names the variable and holds no key prefix.
    assert "CLEAN True" in term.run("print('CLEAN', 'OPENAI_API_KEY' in _i2 and 'sk-proj-FAKE' not in _i2)")
    history = term.run("%history -n")
    assert "OPENAI_API_KEY" in history
    assert key not in history, "key leaked into %history"
    term.close()
    db = ipython_dir / "profile_default" / "history.sqlite"
    assert key.encode() not in db.read_bytes(), "key leaked into history.sqlite"
    with sqlite3.connect(db) as conn:
        sources = [row[0] + row[1] for row in conn.execute("SELECT source, source_raw FROM history")]
    assert any("OPENAI_API_KEY" in s for s in sources)
