"""The output guard in terminal IPython (no kernel), driven through a real pty with pexpect."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pexpect
import pytest

import fakekeys

MASK = "[secret:MY_SERVICE_TOKEN]"
PROMPT = r"In \[\d+\]: "

LEAKY_LINES = [
    "import os, sys, time",
    "print('tok', os.environ['MY_SERVICE_TOKEN'])",
    "os.environ['MY_SERVICE_TOKEN']",
    "k = os.environ['MY_SERVICE_TOKEN']; print('a ' + k[:10], end='', flush=True); time.sleep(0.3); print(k[10:] + ' b')",
    "raise ValueError('bad ' + os.environ['MY_SERVICE_TOKEN'])",
    "sys.stderr.write('err ' + k + '\\n')",
    "import logging; logging.getLogger('kg').warning('log %s', k)",
    "%env MY_SERVICE_TOKEN",
]
HARMLESS_LINES = [
    "print('harmless ✓\\ttab', 'sk-... placeholder')",
    "{'a': [1, 2.5, None]}",
    "import sys; sys.stderr.write('warning: nothing\\n')",
    "raise KeyError('nothing secret')",
]


class Transcript(str):
    """Terminal output; its repr is masked so a failure report never prints a key."""

    def __repr__(self) -> str:
        return f"<transcript of {len(self)} chars>"


def assert_no_key(key: str, text: str) -> None:
    if key in text:
        pytest.fail("key leaked to the terminal", pytrace=False)


def run_ipython(tmp_path: Path, key: str, lines: list[str], *args: str) -> list[Transcript]:
    """Run ``lines`` in ``ipython --simple-prompt``; return what each printed before the next prompt."""
    ipython_dir = tmp_path / "ipython"
    ipython_dir.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}
    env.update(IPYTHONDIR=str(ipython_dir), MY_SERVICE_TOKEN=key, TERM="dumb")
    child = pexpect.spawn(
        sys.executable,
        ["-m", "IPython", "--simple-prompt", "--colors=nocolor", "--no-banner", "--no-confirm-exit", *args],
        env=env, cwd=str(tmp_path), encoding="utf-8", timeout=60,
    )
    try:
        child.expect(PROMPT)
        outputs = []
        for line in lines:
            child.sendline(line)
            child.expect(PROMPT)
            # Drop the echoed input line: the typed text is the user's own, not output.
            outputs.append(Transcript(child.before.split("\n", 1)[1] if "\n" in child.before else ""))
        child.sendline("exit")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    return outputs


@pytest.fixture
def key() -> str:
    return fakekeys.generic_secret(n=40)


@pytest.mark.parametrize("how", ["load_ext", "startup"])
def test_terminal_output_is_redacted(tmp_path, key, how):
    """print, Out[n], a split write, a traceback, stderr, logging and %env show the mask in the terminal."""
    if how == "load_ext":
        outputs = run_ipython(tmp_path, key, ["%load_ext ipykeyguard", *LEAKY_LINES])[1:]
    else:
        outputs = run_ipython(tmp_path, key, LEAKY_LINES, "--ext=ipykeyguard")
    for out in outputs:
        assert_no_key(key, out)
    _imports, printed, result, split, traceback, stderr, logged, env = outputs
    assert printed.strip() == f"tok {MASK}"
    counter = 3 if how == "startup" else 4
    assert result.strip() == f"Out[{counter}]: '{MASK}'"
    assert split.strip() == f"a {MASK} b"
    assert f"ValueError: bad {MASK}" in traceback
    assert f"err {MASK}" in stderr
    assert f"log {MASK}" in logged
    assert MASK in env


def test_terminal_harmless_output_is_unchanged(tmp_path, key):
    """Without secrets, the terminal shows exactly what it shows without the guard."""
    (tmp_path / "plain").mkdir()
    (tmp_path / "guarded").mkdir()
    plain = run_ipython(tmp_path / "plain", key, HARMLESS_LINES)
    guarded = run_ipython(tmp_path / "guarded", key, HARMLESS_LINES, "--ext=ipykeyguard")
    assert [str(o) for o in guarded] == [str(o) for o in plain]
    assert "harmless ✓" in plain[0]


def test_terminal_uninstall_restores_streams_and_releases_held_text(tmp_path, key):
    """A held key prefix is shown at the end of the cell; uninstalling puts the real sys.stdout back."""
    lines = [
        "import os, sys",
        "from ipykeyguard.kernel.output_guard import install_output_guard",
        "from ipykeyguard.transforms.redact import Redactor",
        "r = Redactor(); r.add_known('MY_SERVICE_TOKEN', os.environ['MY_SERVICE_TOKEN']); real = sys.stdout",
        "un = install_output_guard(get_ipython(), r)",
        "print('wrapped', sys.stdout is not real)",
        "print('p=' + os.environ['MY_SERVICE_TOKEN'][:6], end='')",
        "un(); un(); print('restored', sys.stdout is real)",
    ]
    outputs = run_ipython(tmp_path, key, lines)
    assert outputs[5].strip() == "wrapped True"
    held = outputs[6]
    if ("p=" + key[:6]) not in held:
        pytest.fail("held prefix was not released at the end of the cell", pytrace=False)
    assert outputs[7].strip() == "restored True"
