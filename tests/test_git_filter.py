"""The git clean filter: a real ``git add`` stages no key, ``git diff`` stays readable."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import fakekeys
from conftest import write_leaky_notebook
from ipykeyguard.cli.filter import ATTRIBUTES_LINE


def git(cwd, *args, check=True):
    return subprocess.run(["git", *args], cwd=cwd, check=check, capture_output=True, text=True, timeout=120)


def ipykeyguard(cwd, *args, env=None):
    return subprocess.run([sys.executable, "-m", "ipykeyguard", *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=120)


@pytest.fixture
def repo(tmp_path):
    path = tmp_path / "repo"
    path.mkdir()
    git(path, "init", "-q")
    git(path, "config", "user.email", "t@example.invalid")
    git(path, "config", "user.name", "t")
    return path


def write_leaky(path: Path, extra_source: str = "") -> str:
    return write_leaky_notebook(path, "\nprint(OPENAI_API_KEY)" + extra_source)


def test_install_is_idempotent_and_uses_this_interpreter(repo):
    """Installing twice leaves one attributes line and filter commands that name this Python by path."""
    for _ in range(2):
        result = ipykeyguard(repo, "install-filter")
        assert result.returncode == 0, result.stderr
    attributes = (repo / ".git" / "info" / "attributes").read_text().splitlines()
    assert attributes.count(ATTRIBUTES_LINE) == 1
    clean = git(repo, "config", "--get", "filter.ipykeyguard.clean").stdout.strip()
    assert clean.startswith(sys.executable) and "--store none" in clean and "%f" in clean
    assert git(repo, "config", "--get", "filter.ipykeyguard.required").stdout.strip() == "true"
    assert git(repo, "config", "--get", "filter.ipykeyguard.smudge").stdout.strip() == "cat"
    assert "--textconv" in git(repo, "config", "--get", "diff.ipykeyguard.textconv").stdout


def test_git_add_stages_no_key_and_keeps_the_working_copy(repo):
    """Through the filter the index gets the cleaned notebook; the working copy keeps its key; status is clean."""
    assert ipykeyguard(repo, "install-filter").returncode == 0
    key = write_leaky(repo / "n.ipynb")
    git(repo, "add", "n.ipynb")
    staged = git(repo, "show", ":n.ipynb").stdout
    assert key not in staged, "key staged"
    assert 'os.environ[\\"OPENAI_API_KEY\\"]' in staged
    assert json.loads(staged)["nbformat"] == 4
    assert key in (repo / "n.ipynb").read_text(), "the working copy must keep the key"
    git(repo, "commit", "-q", "-m", "add notebook")
    assert git(repo, "status", "--porcelain").stdout == ""
    assert key not in git(repo, "log", "-p").stdout, "key committed"
    assert not (repo / ".env").exists(), "a filter never writes a store"


def test_git_diff_is_readable_and_holds_no_key(repo):
    """After an edit, git diff shows the edit and never the key (textconv cleans both sides)."""
    assert ipykeyguard(repo, "install-filter").returncode == 0
    write_leaky(repo / "n.ipynb")
    git(repo, "add", "n.ipynb")
    git(repo, "commit", "-q", "-m", "first")
    key = write_leaky(repo / "n.ipynb", extra_source="\nprint('second version')")
    diff = git(repo, "diff").stdout
    assert "second version" in diff
    assert key not in diff, "key in diff"
    assert "os.environ" in diff or "[secret:" in diff
    assert key not in git(repo, "diff", "--cached").stdout


def test_a_broken_notebook_is_still_masked_on_add(repo):
    """A notebook that is not valid JSON is masked as text by the filter, never staged with its key."""
    assert ipykeyguard(repo, "install-filter").returncode == 0
    key = fakekeys.github_classic_token()
    (repo / "broken.ipynb").write_text('{"cells": [{"source": "token ' + key + '"')
    git(repo, "add", "broken.ipynb")
    assert key not in git(repo, "show", ":broken.ipynb").stdout, "key staged"


def test_attributes_option_and_uninstall(repo):
    """--attributes writes the line into .gitattributes; uninstall removes config and line."""
    assert ipykeyguard(repo, "install-filter", "--attributes", ".gitattributes").returncode == 0
    assert (repo / ".gitattributes").read_text() == ATTRIBUTES_LINE + "\n"
    result = ipykeyguard(repo, "uninstall-filter", "--attributes", ".gitattributes")
    assert result.returncode == 0, result.stderr
    assert (repo / ".gitattributes").read_text() == ""
    assert git(repo, "config", "--get-regexp", "ipykeyguard", check=False).stdout == ""


def test_global_install_uses_the_global_config(tmp_path):
    """--global writes the user's git config and global attributes file (HOME in a temp folder)."""
    home = tmp_path / "home"
    home.mkdir()
    env = {"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"), "GIT_CONFIG_NOSYSTEM": "1"}
    env.pop("GIT_CONFIG_GLOBAL", None)
    result = ipykeyguard(tmp_path, "install-filter", "--global", env=env)
    assert result.returncode == 0, result.stderr
    assert ATTRIBUTES_LINE in (home / ".config" / "git" / "attributes").read_text()
    assert "filter.ipykeyguard.clean" in (home / ".gitconfig").read_text().replace('[filter "ipykeyguard"]\n\tclean', "filter.ipykeyguard.clean")


def test_install_outside_a_repository_is_an_error(tmp_path):
    """Without --global, install-filter outside a git repository exits 2 with a clear message."""
    result = ipykeyguard(tmp_path, "install-filter", env={"GIT_CEILING_DIRECTORIES": str(tmp_path.parent)})
    assert result.returncode == 2
    assert "not inside a git repository" in result.stderr
