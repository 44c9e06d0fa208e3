"""`ipykeyguard enable` / `disable` through the installed executable on odd config files: a
symlinked config keeps being a link, CRLF stays CRLF, and the two files change together or not
at all."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

USER_CONFIG_CRLF = b"c = get_config()\r\nc.InteractiveShellApp.exec_lines = ['X = 1']\r\n# trailing, no newline"


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ipykeyguard", *args], capture_output=True, text=True, timeout=120)


def profile(tmp_path: Path) -> Path:
    folder = tmp_path / "ipython" / "profile_default"
    folder.mkdir(parents=True)
    return folder


def test_symlinked_config_stays_a_link_and_its_target_is_edited_then_restored(tmp_path):
    """An ipython_config.py that is a symlink (dotfiles repo) is still that link after enable; the block is in its target; disable gives the target back byte for byte."""
    dotfiles = tmp_path / "dotfiles"
    dotfiles.mkdir()
    target = dotfiles / "ipython_config.py"
    original = b"c = get_config()\nc.TerminalIPythonApp.display_banner = False\n"
    target.write_bytes(original)
    link = profile(tmp_path) / "ipython_config.py"
    link.symlink_to(target)

    enabled = cli("enable", "--ipython-dir", str(tmp_path / "ipython"))
    assert enabled.returncode == 0, enabled.stderr
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert target.read_bytes().startswith(original) and b"ipykeyguard" in target.read_bytes()

    disabled = cli("disable", "--ipython-dir", str(tmp_path / "ipython"))
    assert disabled.returncode == 0, disabled.stderr
    assert link.is_symlink() and target.read_bytes() == original


def test_crlf_config_keeps_its_line_endings_and_every_byte_of_the_users_text(tmp_path):
    """A CRLF config (edited on Windows) gets a CRLF block after its own bytes, unchanged; disable restores the file byte for byte."""
    config = profile(tmp_path) / "ipython_config.py"
    config.write_bytes(USER_CONFIG_CRLF)
    assert cli("enable", "--ipython-dir", str(tmp_path / "ipython")).returncode == 0
    data = config.read_bytes()
    assert data.startswith(USER_CONFIG_CRLF)
    added = data[len(USER_CONFIG_CRLF):]
    assert b"ipykeyguard" in added and added.count(b"\n") == added.count(b"\r\n")
    assert cli("disable", "--ipython-dir", str(tmp_path / "ipython")).returncode == 0
    assert config.read_bytes() == USER_CONFIG_CRLF + b"\r\n"  # the one line ending the block needed


def test_when_the_second_file_cannot_be_written_neither_file_changes(tmp_path):
    """If ipython_kernel_config.py cannot be written (its link points into a folder no one can create, under /proc), enable fails with a clear error and ipython_config.py is untouched too."""
    folder = profile(tmp_path)
    first = folder / "ipython_config.py"
    first.write_bytes(b"c = get_config()\n")
    (folder / "ipython_kernel_config.py").symlink_to("/proc/ipykeyguard-no-such-dir/ipython_kernel_config.py")
    failed = cli("enable", "--ipython-dir", str(tmp_path / "ipython"))
    assert failed.returncode != 0
    assert "cannot" in failed.stderr and "no file was changed" in failed.stderr
    assert first.read_bytes() == b"c = get_config()\n"
    assert sorted(p.name for p in folder.iterdir()) == ["ipython_config.py", "ipython_kernel_config.py"]


def test_when_the_second_file_cannot_be_read_the_first_is_not_edited(tmp_path):
    """A second config that cannot be read (a directory in its place) stops enable before the first file is edited."""
    folder = profile(tmp_path)
    first = folder / "ipython_config.py"
    first.write_bytes(b"c = get_config()\n")
    (folder / "ipython_kernel_config.py").mkdir()
    failed = cli("enable", "--ipython-dir", str(tmp_path / "ipython"))
    assert failed.returncode != 0 and "cannot read" in failed.stderr
    assert first.read_bytes() == b"c = get_config()\n"
