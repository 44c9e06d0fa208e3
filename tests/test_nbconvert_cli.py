"""The real ``jupyter nbconvert`` command with ipykeyguard enabled every supported way."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from dotenv import dotenv_values

from ipykeyguard.engine.findings import fingerprint

pytestmark = pytest.mark.slow

PREPROCESSORS = '--Exporter.preprocessors=["ipykeyguard.KeyGuardPreprocessor"]'


@pytest.fixture()
def jupyter_env(tmp_path):
    """Environment with fresh, empty Jupyter config/data/runtime dirs (no user config leaks in)."""
    env = dict(os.environ)
    for name in ("JUPYTER_CONFIG_DIR", "JUPYTER_DATA_DIR", "JUPYTER_RUNTIME_DIR"):
        folder = tmp_path / name.lower()
        folder.mkdir()
        env[name] = str(folder)
    return env


def write_leaky_notebook(folder: Path, keys: dict, name: str = "nb.ipynb") -> Path:
    nb = nbformat.v4.new_notebook()
    code = nbformat.v4.new_code_cell(f'client_key = "{keys["openai"]}"\nprint(client_key)\n', execution_count=1)
    code.outputs = [nbformat.v4.new_output("stream", name="stdout", text=keys["openai"] + "\n")]
    nb.cells = [code, nbformat.v4.new_markdown_cell(f"token `{keys['github']}`")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    path = folder / name
    nbformat.write(nb, path)
    return path


def nbconvert(env: dict, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """Run the real ``jupyter nbconvert`` (through this interpreter's jupyter_core)."""
    proc = subprocess.run(
        [sys.executable, "-m", "jupyter", "nbconvert", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


def holds_any_key(text: str, keys: dict) -> bool:
    """True when ``text`` holds a key (computed outside ``assert`` so that no key is printed)."""
    return any(value in text for value in keys.values())


def test_without_the_preprocessor_the_key_stays(tmp_path, jupyter_env, keys):
    """Control: plain ``--to markdown`` keeps the key, so the other tests measure our preprocessor."""
    write_leaky_notebook(tmp_path, keys)
    nbconvert(jupyter_env, tmp_path, "--to", "markdown", "nb.ipynb")
    assert holds_any_key((tmp_path / "nb.md").read_text(), keys)


@pytest.mark.parametrize("fmt, output", [("html", "nb.html"), ("markdown", "nb.md")])
def test_cli_preprocessor_list_cleans_export(tmp_path, jupyter_env, keys, fmt, output):
    """``--to html|markdown --Exporter.preprocessors=[KeyGuardPreprocessor]`` publishes no key."""
    write_leaky_notebook(tmp_path, keys)
    proc = nbconvert(jupyter_env, tmp_path, "--to", fmt, PREPROCESSORS, "nb.ipynb")
    text = (tmp_path / output).read_text()
    leaked = holds_any_key(text, keys)
    assert not leaked, "key leaked into the export"
    assert "[secret:GITHUB_TOKEN]" in text
    leaked = holds_any_key(proc.stdout + proc.stderr, keys)
    assert not leaked, "key leaked into nbconvert's output"


def test_inplace_cleans_the_notebook_and_writes_no_env(tmp_path, jupyter_env, keys):
    """``--to notebook --inplace`` with the preprocessor rewrites the file without keys and,
    by default, writes no .env."""
    path = write_leaky_notebook(tmp_path, keys)
    nbconvert(jupyter_env, tmp_path, "--to", "notebook", "--inplace", PREPROCESSORS, "nb.ipynb")
    text = path.read_text()
    leaked = holds_any_key(text, keys)
    assert not leaked, "key leaked in place"
    nbformat.validate(nbformat.reads(text, as_version=4))
    assert not (tmp_path / ".env").exists()


def test_inplace_with_move_and_dotenv_keeps_the_key_beside_the_notebook(tmp_path, jupyter_env, keys):
    """``--KeyGuardPreprocessor.code_keys=move --KeyGuardPreprocessor.store=dotenv`` rewrites the
    code to an environment lookup and stores the key in the .env beside the notebook."""
    sub = tmp_path / "work"
    sub.mkdir()
    path = write_leaky_notebook(sub, keys)
    nbconvert(
        jupyter_env,
        tmp_path,
        "--to",
        "notebook",
        "--inplace",
        PREPROCESSORS,
        "--KeyGuardPreprocessor.code_keys=move",
        "--KeyGuardPreprocessor.store=dotenv",
        "work/nb.ipynb",
    )
    nb = nbformat.read(path, as_version=4)
    assert "os.environ" in nb.cells[0].source
    env = sub / ".env"
    assert stat.S_IMODE(env.stat().st_mode) == 0o600
    stored = {k: fingerprint(v or "") for k, v in dotenv_values(env, interpolate=False).items()}
    assert stored == {"OPENAI_API_KEY": fingerprint(keys["openai"]), "GITHUB_TOKEN": fingerprint(keys["github"])}


def test_execute_runs_with_the_real_key_then_redacts(tmp_path, jupyter_env, keys):
    """With ``--execute`` the kernel sees the real key (its length is printed) and what the
    execution printed is redacted before the notebook is written."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(f'key = "{keys["openai"]}"\nprint(key)\nprint("length", len(key))\nkey')]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, tmp_path / "run.ipynb")
    nbconvert(jupyter_env, tmp_path, "--to", "notebook", "--execute", PREPROCESSORS, "run.ipynb")
    out = nbformat.read(tmp_path / "run.nbconvert.ipynb", as_version=4)
    text = json.dumps(out)
    leaked = holds_any_key(text, keys)
    assert not leaked, "key leaked from execution"
    outputs = out.cells[0].outputs
    stream = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert f"length {len(keys['openai'])}" in stream
    assert "[secret:OPENAI_API_KEY]" in stream
    results = [o for o in outputs if o.output_type == "execute_result"]
    assert results and "[secret:" in results[0].data["text/plain"]


@pytest.mark.parametrize("fmt, output", [("keyguard-notebook", "nb.nbconvert.ipynb"), ("keyguard-html", "nb.html")])
def test_keyguard_exporters_need_no_preprocessor_list(tmp_path, jupyter_env, keys, fmt, output):
    """``--to keyguard-notebook`` and ``--to keyguard-html`` clean with no preprocessor option."""
    write_leaky_notebook(tmp_path, keys)
    nbconvert(jupyter_env, tmp_path, "--to", fmt, "nb.ipynb")
    leaked = holds_any_key((tmp_path / output).read_text(), keys)
    assert not leaked, "key leaked"
    original = holds_any_key((tmp_path / "nb.ipynb").read_text(), keys)
    assert original, "the input notebook must be left as it was"


def test_nbconvert_config_file_enables_the_preprocessor(tmp_path, jupyter_env, keys):
    """``c.Exporter.preprocessors`` in jupyter_nbconvert_config.py (and a trait set there) apply
    to a plain ``--to markdown`` run; a CLI ``--Exporter.preprocessors=[]`` replaces that list."""
    config_dir = Path(jupyter_env["JUPYTER_CONFIG_DIR"])
    (config_dir / "jupyter_nbconvert_config.py").write_text(
        'c.Exporter.preprocessors = ["ipykeyguard.KeyGuardPreprocessor"]\n'
        'c.KeyGuardPreprocessor.min_confidence = "likely"\n'
    )
    write_leaky_notebook(tmp_path, keys)
    nbconvert(jupyter_env, tmp_path, "--to", "markdown", "nb.ipynb")
    leaked = holds_any_key((tmp_path / "nb.md").read_text(), keys)
    assert not leaked, "key leaked with the config file"

    nbconvert(jupyter_env, tmp_path, "--to", "markdown", "--Exporter.preprocessors=[]", "nb.ipynb")
    replaced = holds_any_key((tmp_path / "nb.md").read_text(), keys)
    assert replaced, "a CLI preprocessor list replaces the configured one (nbconvert's documented behaviour)"
