"""``ipykeyguard clean`` through the installed executable: store, writes, modes and bad input."""

from __future__ import annotations

import json
import os
import random
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from dotenv import dotenv_values

import fakekeys
from ipykeyguard.findings import fingerprint


def cli(*args, cwd, stdin=None, env=None):
    """Run the installed CLI (as ``python -m ipykeyguard`` with this interpreter)."""
    return subprocess.run(
        [sys.executable, "-m", "ipykeyguard", *args], cwd=cwd, input=stdin, capture_output=True,
        env={**os.environ, **(env or {})}, timeout=240,
    )


def notebook(cells) -> dict:
    return {"cells": cells, "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
            "nbformat": 4, "nbformat_minor": 5}


def code_cell(source, outputs=(), cid="c1"):
    return {"cell_type": "code", "execution_count": 1, "id": cid, "metadata": {}, "outputs": list(outputs), "source": source}


def write_nb(path: Path, nb: dict) -> bytes:
    data = (json.dumps(nb, indent=1, sort_keys=True, ensure_ascii=False) + "\n").encode()
    path.write_bytes(data)
    return data


def leaky(path: Path) -> tuple[bytes, str]:
    """A notebook with an OpenAI key in code and echoed in the output."""
    key = fakekeys.openai_project_key()
    nb = notebook([code_cell(f'OPENAI_API_KEY = "{key}"\nprint(OPENAI_API_KEY)',
                             [{"name": "stdout", "output_type": "stream", "text": [key + "\n"]}])])
    return write_nb(path, nb), key


def git(cwd, *args):
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True)


def test_clean_moves_the_key_to_dotenv_and_reports_names(tmp_path):
    """The key goes to a 0600 .env beside the notebook, the code reads os.environ, the output is masked."""
    nb_path = tmp_path / "analysis.ipynb"
    _raw, key = leaky(nb_path)
    result = cli("clean", "analysis.ipynb", cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    out = result.stdout.decode()
    assert out == "analysis.ipynb: moved OPENAI_API_KEY to .env; masked 1 in outputs\n"
    text = nb_path.read_text()
    assert key not in text, "key left in notebook"
    assert 'os.environ[\\"OPENAI_API_KEY\\"]' in text
    env = tmp_path / ".env"
    assert stat.S_IMODE(env.stat().st_mode) == 0o600
    assert fingerprint(dotenv_values(env)["OPENAI_API_KEY"]) == fingerprint(key)
    nbformat = pytest.importorskip("nbformat")
    nbformat.validate(nbformat.read(str(nb_path), as_version=nbformat.NO_CONVERT))


def test_gitignore_updated_once_across_runs(tmp_path):
    """Cleaning two notebooks in a repository adds .env to .gitignore exactly once."""
    git(tmp_path, "init", "-q")
    leaky(tmp_path / "a.ipynb")
    assert cli("clean", "a.ipynb", cwd=tmp_path).returncode == 1
    leaky(tmp_path / "b.ipynb")
    assert cli("clean", "b.ipynb", cwd=tmp_path).returncode == 1
    assert (tmp_path / ".gitignore").read_text().splitlines().count(".env") == 1
    env = dotenv_values(tmp_path / ".env")
    assert sorted(env) == ["OPENAI_API_KEY", "OPENAI_API_KEY_2"], "a different key must get a new name"


def test_clean_notebook_is_not_rewritten(tmp_path):
    """A notebook without a key keeps its bytes and its mtime, whatever its formatting; exit 0."""
    nb = notebook([code_cell("x = 1", [{"name": "stdout", "output_type": "stream", "text": ["1\n"]}])])
    jupyter = tmp_path / "jupyter.ipynb"
    write_nb(jupyter, nb)
    odd = tmp_path / "odd.ipynb"
    odd.write_text(json.dumps(nb, indent=4))  # other indent, unsorted, no final newline
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in (jupyter, odd)}
    time.sleep(0.01)
    result = cli("clean", str(jupyter), str(odd), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == b""
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in (jupyter, odd)} == before
    assert not (tmp_path / ".env").exists()


def test_dry_run_and_check_write_nothing(tmp_path):
    """--dry-run prints names and places, --check only exits 1; neither writes a byte."""
    nb_path = tmp_path / "n.ipynb"
    raw, key = leaky(nb_path)
    dry = cli("clean", "--dry-run", "n.ipynb", cwd=tmp_path)
    assert dry.returncode == 1
    out = dry.stdout.decode()
    assert "n.ipynb: would move OPENAI_API_KEY to .env; would mask 1 in outputs" in out
    assert 'cell 0 source line 1 col 19: openai-api-key (certain) -> os.environ["OPENAI_API_KEY"]' in out
    assert key not in out + dry.stderr.decode(), "key leaked"
    check = cli("clean", "--check", "n.ipynb", cwd=tmp_path)
    assert check.returncode == 1
    assert nb_path.read_bytes() == raw
    assert sorted(p.name for p in tmp_path.iterdir()) == ["n.ipynb"]
    assert cli("clean", "n.ipynb", cwd=tmp_path).returncode == 1
    assert cli("clean", "--check", "n.ipynb", cwd=tmp_path).returncode == 0


def test_store_none_rewrites_without_keeping_the_key(tmp_path):
    """--store none rewrites the code the same way but writes no .env, and says the key was not kept."""
    nb_path = tmp_path / "n.ipynb"
    _raw, key = leaky(nb_path)
    result = cli("clean", "--store", "none", "n.ipynb", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stdout.decode() == "n.ipynb: removed OPENAI_API_KEY from code (not stored); masked 1 in outputs\n"
    assert key not in nb_path.read_text(), "key left in notebook"
    assert not (tmp_path / ".env").exists()


def test_store_keyring(tmp_path):
    """--store keyring puts the key in the keyring (keyrings.alt file backend under a temp home)."""
    pytest.importorskip("keyrings.alt")
    nb_path = tmp_path / "n.ipynb"
    _raw, key = leaky(nb_path)
    env = {"PYTHON_KEYRING_BACKEND": "keyrings.alt.file.PlaintextKeyring", "XDG_DATA_HOME": str(tmp_path / "data")}
    result = cli("clean", "--store", "keyring", "n.ipynb", cwd=tmp_path, env=env)
    assert result.returncode == 1, result.stderr
    assert "moved OPENAI_API_KEY to keyring" in result.stdout.decode()
    probe = "import keyring, hashlib; v = keyring.get_password('ipykeyguard', 'OPENAI_API_KEY'); print(hashlib.sha256(v.encode()).hexdigest())"
    got = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env={**os.environ, **env})
    assert got.stdout.strip() == fingerprint(key)
    assert not (tmp_path / ".env").exists()


def test_store_failure_leaves_the_notebook_untouched(tmp_path):
    """When the key cannot be stored (.env is a directory) the notebook keeps every byte; exit 2."""
    nb_path = tmp_path / "n.ipynb"
    raw, key = leaky(nb_path)
    (tmp_path / ".env").mkdir()
    result = cli("clean", "n.ipynb", cwd=tmp_path)
    assert result.returncode == 2
    assert nb_path.read_bytes() == raw
    err = result.stderr.decode()
    assert "n.ipynb" in err and "not changed" in err
    assert key not in err, "key leaked"


def test_bad_inputs_are_reported_and_the_others_still_cleaned(tmp_path):
    """Broken JSON, nbformat 3, non-UTF-8, read-only, a symlink, oversized and missing files: exit 2,
    each untouched and named on stderr, while a good file in the same run is cleaned."""
    key = fakekeys.github_classic_token()
    files = {
        "broken.ipynb": b'{"cells": [',
        "v3.ipynb": json.dumps({"nbformat": 3, "nbformat_minor": 0, "worksheets": [], "metadata": {}}).encode(),
        "latin1.ipynb": json.dumps(notebook([])).encode().replace(b'"cells"', b'"cells\xe9"'),
        "latin1.txt": b"token caf\xe9 " + key.encode(),
        "readonly.ipynb": json.dumps(notebook([code_cell(f't = "{key}"')])).encode(),
        "big.txt": (f"token {key}\n" + "x" * 5000).encode(),
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    os.chmod(tmp_path / "readonly.ipynb", 0o444)
    (tmp_path / "target.ipynb").write_bytes(files["readonly.ipynb"])
    (tmp_path / "link.ipynb").symlink_to(tmp_path / "target.ipynb")
    good = tmp_path / "good.txt"
    good.write_text(f"GITHUB_TOKEN={key}\n")
    names = [*files, "link.ipynb", "missing.ipynb", "good.txt"]
    result = cli("clean", "--max-file-size", "4000", *names, cwd=tmp_path)
    assert result.returncode == 2
    err = result.stderr.decode()
    for name in [*files, "link.ipynb", "missing.ipynb"]:
        assert f"{name}:" in err, f"no message for {name}"
        if (tmp_path / name).exists() and not (tmp_path / name).is_symlink():
            assert (tmp_path / name).read_bytes() == files[name], f"{name} was changed"
    assert "nbformat 3 is not supported" in err
    assert "read-only" in err and "symbolic link" in err and "max-file-size" in err
    assert (tmp_path / "target.ipynb").read_bytes() == files["readonly.ipynb"]
    assert key not in err + result.stdout.decode(), "key leaked"
    assert good.read_text() == "GITHUB_TOKEN=[secret:GITHUB_TOKEN]\n"
    assert not (tmp_path / ".env").exists(), "no key was moved, so no store was written"


def test_directory_argument_recurses_and_skips_stores_and_checkpoints(tmp_path):
    """A directory is walked: notebooks and text files are cleaned, .env and checkpoints are not."""
    key = fakekeys.github_classic_token()
    (tmp_path / "proj" / "sub").mkdir(parents=True)
    (tmp_path / "proj" / ".ipynb_checkpoints").mkdir()
    write_nb(tmp_path / "proj" / "sub" / "n.ipynb", notebook([code_cell(f't = "{key}"')]))
    (tmp_path / "proj" / "notes.md").write_text(f"token {key}\n")
    (tmp_path / "proj" / ".env").write_text(f"OTHER_TOKEN={key}\n")
    checkpoint = tmp_path / "proj" / ".ipynb_checkpoints" / "n-checkpoint.ipynb"
    write_nb(checkpoint, notebook([code_cell(f't = "{key}"')]))
    result = cli("clean", "proj", cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert key not in (tmp_path / "proj" / "sub" / "n.ipynb").read_text()
    assert (tmp_path / "proj" / "notes.md").read_text() == "token [secret:GITHUB_TOKEN]\n"
    assert key in (tmp_path / "proj" / ".env").read_text(), "the store itself must not be masked"
    assert key in checkpoint.read_text()
    assert fingerprint(dotenv_values(tmp_path / "proj" / "sub" / ".env")["GITHUB_TOKEN"]) == fingerprint(key)


def test_stdin_to_stdout(tmp_path):
    """--stdin writes the cleaned notebook to stdout (exit 0), echoes a clean one byte for byte."""
    nb_path = tmp_path / "n.ipynb"
    raw, key = leaky(nb_path)
    result = cli("clean", "--stdin", "--store", "none", "--stdin-filename", "n.ipynb", cwd=tmp_path, stdin=raw)
    assert result.returncode == 0, result.stderr
    assert key not in result.stdout.decode(), "key left in output"
    assert json.loads(result.stdout)["nbformat"] == 4
    assert nb_path.read_bytes() == raw and not (tmp_path / ".env").exists()
    clean_raw = result.stdout
    again = cli("clean", "--stdin", "--store", "none", "--stdin-filename", "n.ipynb", cwd=tmp_path, stdin=clean_raw)
    assert again.returncode == 0 and again.stdout == clean_raw
    check = cli("clean", "--stdin", "--check", "--store", "none", cwd=tmp_path, stdin=raw)
    assert check.returncode == 1 and check.stdout == b""


def test_a_kill_mid_write_leaves_the_old_or_the_new_file(tmp_path):
    """SIGKILL at random moments of cleaning a 20 MB notebook never leaves a partial file."""
    key = fakekeys.github_classic_token()
    lines = [f"row {i} value {i * 7}\n" for i in range(500_000)]
    nb = notebook([code_cell("x", [{"name": "stdout", "output_type": "stream", "text": lines + [f"tok {key}\n"]}])])
    original = tmp_path / "original.ipynb"
    old = write_nb(original, nb)
    reference = tmp_path / "ref" / "big.ipynb"
    reference.parent.mkdir()
    reference.write_bytes(old)
    started = time.monotonic()
    assert cli("clean", str(reference), cwd=tmp_path).returncode == 1
    duration = time.monotonic() - started
    new = reference.read_bytes()
    assert new != old
    rng = random.Random(7)
    work = tmp_path / "work"
    work.mkdir()
    target = work / "big.ipynb"
    outcomes = set()
    for _ in range(6):
        target.write_bytes(old)
        proc = subprocess.Popen([sys.executable, "-m", "ipykeyguard", "clean", str(target)], cwd=tmp_path,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.3, 1.1) * duration)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        data = target.read_bytes()
        assert data in (old, new), "partial notebook after a kill"
        outcomes.add(data == new)
        for leftover in work.glob(".big.ipynb.*"):
            leftover.unlink()  # a killed writer may leave its temporary file, never a torn notebook
    assert outcomes, "no run happened"
