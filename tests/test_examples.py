"""The example notebooks stay true: ``leaky.cleaned.ipynb`` is what ``ipykeyguard clean`` makes of
``leaky.ipynb`` today, and ``tour.ipynb`` runs top to bottom in a real kernel with the outputs it
was committed with, masking its generated key everywhere.

When one of these fails after a deliberate change, regenerate the files::

    python example_notebooks/make_tour.py
    d=$(mktemp -d) && cp example_notebooks/leaky.ipynb "$d" && \\
      ipykeyguard clean --store none "$d/leaky.ipynb"; cp "$d/leaky.ipynb" example_notebooks/leaky.cleaned.ipynb
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "example_notebooks"
LEAKY = EXAMPLES / "leaky.ipynb"
CLEANED = EXAMPLES / "leaky.cleaned.ipynb"
TOUR = EXAMPLES / "tour.ipynb"
REGENERATE = "regenerate it (see tests/test_examples.py's docstring)"

sys.path.insert(0, str(EXAMPLES))
import make_tour

# make_leaky.py gives every fake key the word FAKE where its format leaves room.
FAKE_TOKEN = re.compile(r"[A-Za-z0-9_\-+/.:]*FAKE[A-Za-z0-9_\-+/.]*")
MASK = "[secret:OPENAI_API_KEY]"


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """Run the installed ``ipykeyguard`` console script (``python -m ipykeyguard`` if this
    interpreter has none beside it)."""
    script = Path(sys.executable).parent / "ipykeyguard"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "ipykeyguard"]
    return subprocess.run([*command, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


# -- leaky.ipynb -> leaky.cleaned.ipynb ---------------------------------------------------------


def test_leaky_notebook_is_what_make_leaky_writes():
    """leaky.ipynb is byte for byte what make_leaky.py generates from its seed."""
    done = subprocess.run([sys.executable, str(EXAMPLES / "make_leaky.py"), "--check"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr


def test_cleaned_example_is_exactly_what_clean_makes_of_leaky(tmp_path):
    """`ipykeyguard clean --store none` on a copy of leaky.ipynb reports a change (exit 1),
    writes no .env, and produces leaky.cleaned.ipynb byte for byte."""
    copy = tmp_path / "leaky.ipynb"
    shutil.copyfile(LEAKY, copy)
    done = cli("clean", "--store", "none", str(copy), cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    assert "OPENAI_API_KEY" in done.stdout
    assert not (tmp_path / ".env").exists(), "--store none wrote a .env"
    assert copy.read_bytes() == CLEANED.read_bytes(), f"leaky.cleaned.ipynb is out of date: {REGENERATE}"


def test_cleaned_example_holds_none_of_the_leaky_keys():
    """Every FAKE key of leaky.ipynb is gone from leaky.cleaned.ipynb, replaced by masks and an
    os.environ lookup (checked by text, independently of the scanner)."""
    leaky_keys = set(FAKE_TOKEN.findall(LEAKY.read_text(encoding="utf-8")))
    cleaned = CLEANED.read_text(encoding="utf-8")
    assert len(leaky_keys) >= 9, "leaky.ipynb lost its fake keys"  # the 9 of make_leaky.py's table
    assert not [k for k in leaky_keys if k in cleaned], "a leaky key survived in leaky.cleaned.ipynb"
    assert "FAKE" not in cleaned, "a fake key survived in leaky.cleaned.ipynb"
    assert 'os.environ[\\"OPENAI_API_KEY\\"]' in cleaned
    assert "[secret:GITHUB_TOKEN]" in cleaned and "[secret:ANTHROPIC_API_KEY]" in cleaned


@pytest.mark.parametrize("config", [["--isolated"], []], ids=["isolated", "repo-config"])
def test_cleaned_example_scans_clean(config):
    """`ipykeyguard scan` finds nothing at likely or above in leaky.cleaned.ipynb and exits 0, as
    documented for a clean scan; without --isolated the repository's own config applies."""
    done = cli("scan", *config, "--min-confidence", "likely", "--format", "json", str(CLEANED), cwd=REPO)
    report = json.loads(done.stdout)
    assert report["findings"] == [] and report["errors"] == []
    assert done.returncode == 0, done.stderr


def test_leaky_example_is_excluded_but_cleaned_and_tour_are_not():
    """The repository's config excludes only leaky.ipynb among the examples, so the repo's own
    scan covers the cleaned notebook and the tour."""
    config = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["ipykeyguard"]
    excluded = config.get("exclude", [])
    assert "example_notebooks/leaky.ipynb" in excluded
    assert not [p for p in excluded if p.startswith("example_notebooks/") and p != "example_notebooks/leaky.ipynb"]
    assert not [p for p in excluded if "*" in p and Path("example_notebooks/tour.ipynb").match(p)]


# -- tour.ipynb ---------------------------------------------------------------------------------


def test_tour_cells_are_what_make_tour_writes():
    """tour.ipynb's cells (ids, sources, tags) are make_tour.py's, so the generator is the source."""
    done = subprocess.run([sys.executable, str(EXAMPLES / "make_tour.py"), "--check"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr


def test_tour_is_scan_clean_and_clean_leaves_it_alone():
    """The committed tour holds no key: the repository's scan of example_notebooks/ reports
    nothing in it at any confidence, and `clean --check` would not change it."""
    done = cli("scan", "--format", "json", "example_notebooks", cwd=REPO)
    report = json.loads(done.stdout)
    assert [f for f in report["findings"] if f["path"].endswith("tour.ipynb")] == []
    assert report["findings"] == [] and done.returncode == 0, done.stderr
    done = cli("scan", "--isolated", "--format", "json", str(TOUR), cwd=REPO)
    assert json.loads(done.stdout)["findings"] == [] and done.returncode == 0
    done = cli("clean", "--check", "--store", "none", str(TOUR), cwd=REPO)
    assert done.returncode == 0, done.stdout + done.stderr


def test_tour_is_saved_as_jupyter_saves_it():
    """The committed tour is in nbformat's canonical form, so saving it unchanged in JupyterLab
    changes nothing, and its outputs hold no temporary path."""
    text = TOUR.read_text(encoding="utf-8")
    assert make_tour.as_jupyter_writes(json.loads(text)) == text
    assert "/tmp" not in text and "ipykeyguard-tour-" not in text


def _executed_tour(tmp_path: Path) -> tuple[dict, set[str]]:
    """Run the committed tour cell by cell with nbclient; return the executed notebook and every
    value the run's .env held after any cell (the generated key, before `forget` removed it)."""
    import nbformat
    from dotenv import dotenv_values
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    workdir = tmp_path / "example_notebooks"
    workdir.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTEST_CURRENT_TEST", "OPENAI_API_KEY")}
    env["IPYTHONDIR"] = str(tmp_path / "ipython")
    node = nbformat.reads(TOUR.read_text(encoding="utf-8"), as_version=4)
    for cell in node.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    client = NotebookClient(node, timeout=120, kernel_name="python3", record_timing=False,
                            resources={"metadata": {"path": str(workdir)}})
    stored: set[str] = set()
    with client.setup_kernel(env=env, cwd=str(workdir)):
        for index, cell in enumerate(node.cells):
            try:
                client.execute_cell(cell, index)
            except CellExecutionError as exc:
                # Name the cell and error only: nbclient's message quotes outputs, which could
                # hold the generated key if the guard had failed.
                raise AssertionError(f"tour cell {cell.get('id')} raised {exc.ename}") from None
            if (workdir / ".env").exists():
                stored.update(v for v in dotenv_values(workdir / ".env").values() if v)
    return json.loads(json.dumps(node)), stored


def _comparable(outputs: list[dict]) -> list:
    """Outputs without what depends on the IPython version (traceback layout) or the run."""

    def text(value) -> str:
        return "".join(value) if isinstance(value, list) else value

    out = []
    for o in outputs:
        if o["output_type"] == "stream":
            out.append(("stream", o["name"], text(o["text"])))
        elif o["output_type"] == "error":
            out.append(("error", o["ename"], o["evalue"]))
        else:
            out.append((o["output_type"], text(o.get("data", {}).get("text/plain", ""))))
    return out


@pytest.mark.kernel
def test_tour_runs_top_to_bottom_and_never_shows_its_key(tmp_path):
    """In a real kernel the tour runs with no error except its raises-exception cell; the key it
    pastes lands in .env, every output shows masks and names instead, no output holds any value
    the .env held, and the outputs are the committed ones (up to the temporary directory)."""
    executed, stored = _executed_tour(tmp_path)
    assert stored, "the tour's paste stored no key in .env"
    assert all(len(value) >= 100 for value in stored)
    cells = {c["id"]: c for c in executed["cells"]}

    everything = json.dumps(executed, ensure_ascii=False)
    for value in stored:
        assert value not in everything, "key leaked into the executed tour"
        assert value[12:60] not in everything, "part of the key leaked into the executed tour"

    for cell in executed["cells"]:
        if cell["cell_type"] != "code":
            continue
        errors = [o for o in cell["outputs"] if o["output_type"] == "error"]
        meant_to_raise = "raises-exception" in cell["metadata"].get("tags", [])
        assert bool(errors) == meant_to_raise, f"cell {cell['id']}: errors={len(errors)}"

    def shown(cell_id: str) -> str:
        return json.dumps(cells[cell_id]["outputs"], ensure_ascii=False)

    assert "ipykeyguard: moved 1 key (OPENAI_API_KEY) to .env" in shown("paste")
    assert 'os.environ[\\"OPENAI_API_KEY\\"]' in shown("paste")
    assert shown("print").count(MASK) == 2  # print and the cell's value
    (error,) = cells["traceback"]["outputs"]
    assert error["ename"] == "PermissionError" and MASK in error["evalue"]
    assert MASK in "".join(error["traceback"])
    assert "stored keys (1): OPENAI_API_KEY" in shown("status")
    assert ".env mode: 0o600" in shown("dotenv") and ".env holds: ['OPENAI_API_KEY']" in shown("dotenv")
    assert "forgot OPENAI_API_KEY" in shown("forget") and ".env holds: []" in shown("forget")
    assert "OPENAI_API_KEY in os.environ: False" in shown("forget")

    committed = json.loads(TOUR.read_text(encoding="utf-8"))
    normalized = make_tour.normalize(executed, tmp_path)
    for ran, saved in zip(normalized["cells"], committed["cells"], strict=True):
        if ran["cell_type"] == "code":
            assert _comparable(ran["outputs"]) == _comparable(saved["outputs"]), (
                f"cell {ran['id']}: outputs differ from the committed tour: {REGENERATE}"
            )
