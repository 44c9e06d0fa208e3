"""Real pre-commit (PyPI ``pre-commit``) running this repository's hooks in a temporary git repo.

pre-commit builds a virtualenv with this package installed from the repository, once per
``PRE_COMMIT_HOME`` (shared by the tests of this module).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import write_leaky_notebook

REPO_ROOT = Path(__file__).resolve().parents[1]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("pre-commit") is None and shutil.which("git") is None, reason="needs git and pre-commit"),
]


def run(cwd, *args, env=None, check=False):
    return subprocess.run(list(args), cwd=cwd, capture_output=True, text=True, env=env, check=check, timeout=600)


@pytest.fixture(scope="module")
def precommit_env(tmp_path_factory):
    home = tmp_path_factory.mktemp("pre-commit-home")
    return {**os.environ, "PRE_COMMIT_HOME": str(home), "PRE_COMMIT_COLOR": "never"}


def precommit_cmd() -> list[str]:
    return [sys.executable, "-m", "pre_commit"]


@pytest.fixture
def repo(tmp_path):
    path = tmp_path / "work"
    path.mkdir()
    run(path, "git", "init", "-q", check=True)
    run(path, "git", "config", "user.email", "t@example.invalid", check=True)
    run(path, "git", "config", "user.name", "t", check=True)
    return path


def clean_notebook_file(path: Path) -> None:
    nb = {"cells": [{"cell_type": "markdown", "id": "m1", "metadata": {}, "source": "# nothing secret"}],
          "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    path.write_text(json.dumps(nb, indent=1, sort_keys=True) + "\n")


def test_commit_with_a_key_is_refused_and_fixed_then_passes(repo, precommit_env):
    """With the hooks installed, committing a leaky notebook fails and fixes it; the fixed one commits
    without the key, which lives in the git-ignored .env."""
    rev = run(REPO_ROOT, "git", "rev-parse", "HEAD", check=True).stdout.strip()
    (repo / ".pre-commit-config.yaml").write_text(
        f"repos:\n- repo: {REPO_ROOT}\n  rev: {rev}\n  hooks:\n  - id: ipykeyguard-clean\n  - id: ipykeyguard-scan\n"
    )
    run(repo, *precommit_cmd(), "install", env=precommit_env, check=True)
    key = write_leaky_notebook(repo / "n.ipynb")
    run(repo, "git", "add", ".pre-commit-config.yaml", "n.ipynb", check=True)
    refused = run(repo, "git", "commit", "-m", "leaky", env=precommit_env)
    assert refused.returncode != 0, refused.stdout + refused.stderr
    assert "files were modified by this hook" in refused.stdout + refused.stderr
    assert key not in refused.stdout + refused.stderr, "key leaked in hook output"
    assert run(repo, "git", "rev-parse", "--verify", "HEAD").returncode != 0, "nothing may be committed"
    assert key not in (repo / "n.ipynb").read_text(), "the hook must fix the notebook"
    assert key in (repo / ".env").read_text(), "the key must be kept in .env"
    run(repo, "git", "add", "n.ipynb", ".gitignore", check=True)
    passed = run(repo, "git", "commit", "-m", "fixed", env=precommit_env)
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert key not in run(repo, "git", "log", "-p").stdout, "key committed"
    assert ".env" not in run(repo, "git", "ls-files").stdout.split()


def test_try_repo_clean_hook_passes_clean_files_fast_in_one_process(repo, precommit_env):
    """``pre-commit try-repo`` with the working tree of this repository: 200 clean notebooks pass,
    in one process (well under a second of hook time each batch)."""
    files = []
    for i in range(200):
        path = repo / f"nb{i:03d}.ipynb"
        clean_notebook_file(path)
        files.append(path.name)
    run(repo, "git", "add", *files, check=True)
    # First call builds the hook environment; the second passes 200 notebooks to the hook.
    warm = run(repo, *precommit_cmd(), "try-repo", str(REPO_ROOT), "ipykeyguard-clean", "--files", files[0], env=precommit_env)
    assert warm.returncode == 0, warm.stdout + warm.stderr
    result = run(repo, *precommit_cmd(), "try-repo", str(REPO_ROOT), "ipykeyguard-clean", "--files", *files, env=precommit_env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Passed" in result.stdout


def test_try_repo_clean_hook_fixes_a_key(repo, precommit_env):
    """``pre-commit try-repo`` on uncommitted hooks: the clean hook fails on a leaky file and fixes it."""
    key = write_leaky_notebook(repo / "n.ipynb")
    (repo / "notes.txt").write_text(f"key: {key}\n")
    run(repo, "git", "add", "n.ipynb", "notes.txt", check=True)
    result = run(repo, *precommit_cmd(), "try-repo", str(REPO_ROOT), "ipykeyguard-clean", "--files", "n.ipynb", "notes.txt",
                 env=precommit_env)
    assert result.returncode == 1, result.stdout + result.stderr
    assert key not in result.stdout + result.stderr, "key leaked in hook output"
    assert key not in (repo / "n.ipynb").read_text() and key not in (repo / "notes.txt").read_text()
    again = run(repo, *precommit_cmd(), "try-repo", str(REPO_ROOT), "ipykeyguard-clean", "--files", "n.ipynb", "notes.txt",
                env=precommit_env)
    assert again.returncode == 0, again.stdout + again.stderr
