"""Write ``tour.ipynb``: a short tour of the kernel guard, run for real so its outputs are true.

The tour holds no key. Its helper cell builds a visibly fake, format-exact OpenAI key at run
time and "pastes" it by running a cell through IPython, exactly as if the reader had typed it;
the guard then moves it to ``.env`` and masks it wherever it would be shown.

How the file is made: :func:`build` gives the cells (sources, tags, ids); :func:`execute` runs
them top to bottom with nbclient in a fresh directory named ``example_notebooks`` under a
temporary one, with its own IPYTHONDIR (so the user's profile, e.g. ``ipykeyguard enable``,
changes nothing); :func:`normalize` replaces that temporary directory with ``…`` and drops
timing metadata. The outputs are committed so the tour reads well unrun (on GitHub, in a
review); ``tests/test_examples.py`` re-runs the committed tour and compares.

Usage::

    python example_notebooks/make_tour.py           # (re)write tour.ipynb beside this script
    python example_notebooks/make_tour.py --check   # exit 1 if tour.ipynb's cells are out of date
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
TARGET = HERE / "tour.ipynb"
KERNEL_TIMEOUT = 120
TMP_PLACEHOLDER = "…"


def _markdown(cell_id: str, text: str) -> dict:
    return {"cell_type": "markdown", "id": cell_id, "metadata": {}, "source": text.strip("\n")}


def _code(cell_id: str, text: str, *, tags: tuple[str, ...] = ()) -> dict:
    metadata: dict[str, Any] = {"tags": list(tags)} if tags else {}
    return {
        "cell_type": "code",
        "execution_count": None,
        "id": cell_id,
        "metadata": metadata,
        "outputs": [],
        "source": text.strip("\n"),
    }


CELLS = [
    _markdown("intro", """
# A tour of the ipykeyguard kernel guard

Run it top to bottom (Shift+Enter). The threat model in two lines:

- **Guarded:** accidents. A key pasted into a cell, printed, or quoted by a traceback is kept out of the notebook, its history and your commits.
- **Not guarded:** code written to hide a key from the guard (reversed, base64-encoded), and cells run before the guard was loaded.
"""),
    _markdown("load-md", """
## 1. Load the guard

From the next cell on, every cell is checked before it runs, and every output before it is shown.
(`ipykeyguard enable` does this for every kernel, so no cell is needed.)
"""),
    _code("load", "%load_ext ipykeyguard"),
    _markdown("helper-md", """
## 2. A fake key, made here and now

This notebook must not hold a key, not even a fake one, so this cell *builds* one when it runs: the
format of an OpenAI project key, with `FAKE` in it. `OpenAI` is a stand-in for `openai.OpenAI`, so the
tour needs neither the package nor the network. `paste` runs a cell's text exactly as if you had typed
it into a cell and pressed Shift+Enter.
"""),
    _code("helper", '''
import random
import string

_alphabet = string.ascii_letters + string.digits + "-_"
_rng = random.SystemRandom()


def _random_chars(n):
    return "".join(_rng.choice(_alphabet) for _ in range(n))


fake_key = "sk-proj-FAKE" + _random_chars(70) + "T3BlbkFJ" + _random_chars(74)


class OpenAI:
    """A stand-in for openai.OpenAI: keeps the key and refuses it, like a revoked key would be."""

    def __init__(self, api_key):
        self.api_key = api_key

    def list_models(self):
        raise PermissionError(f"401 Unauthorized: Incorrect API key provided: {self.api_key}")


def paste(cell_text):
    """Run cell_text as a cell of its own, then show what JupyterLab would put in that cell."""
    shell = get_ipython()
    shell.run_cell(cell_text)
    # JupyterLab replaces the text of the cell that ran; this helper cell should stay as it is,
    # so print the replacement instead of sending it.
    for payload in shell.payload_manager.read_payload():
        if payload.get("source") == "set_next_input":
            print("The pasted cell now reads:")
            print(payload["text"])
    shell.payload_manager.clear_payload()


print("fake key ready:", len(fake_key), "characters")
'''),
    _markdown("paste-md", """
## 3. Paste the key into a cell

This is the cell you would have written, `client = OpenAI(api_key="sk-proj-...")`. It runs and works,
but the key moves to a `.env` file beside the notebook (and into `os.environ`), and the cell's text
becomes an `os.environ[...]` lookup. History (`In`, `%history`, the up-arrow) only ever holds that text.
"""),
    _code("paste", '''paste(f'client = OpenAI(api_key="{fake_key}")')'''),
    _markdown("print-md", """
## 4. Printing it shows a mask

Whatever reaches the screen passes the guard: `print`, a cell's value, `display`, HTML tables.
"""),
    _code("print", '''
print("the client uses", client.api_key)
client.api_key
'''),
    _markdown("traceback-md", """
## 5. So does a traceback that quotes it

API errors love to quote the key they refused. This cell raises on purpose (it is tagged
`raises-exception`, so *Run All* goes on past it).
"""),
    _code("traceback", "client.list_models()", tags=("raises-exception",)),
    _markdown("status-md", """
## 6. What the guard knows

`%keyguard` shows names and counts, never a value; so does this look at the `.env` file.
"""),
    _code("status", "%keyguard"),
    _code("dotenv", '''
import os
from dotenv import dotenv_values

print(".env mode:", oct(os.stat(".env").st_mode & 0o777))
print(".env holds:", sorted(dotenv_values(".env")))
'''),
    _markdown("forget-md", """
## 7. Forget the key

`%keyguard forget NAME` takes it out of `.env`, `os.environ` and the guard. With a real key, also revoke
it at the provider if it was ever shared: ipykeyguard stops the next leak, not the last one.
"""),
    _code("forget", '''
%keyguard forget OPENAI_API_KEY
print(".env holds:", sorted(dotenv_values(".env")))
print("OPENAI_API_KEY in os.environ:", "OPENAI_API_KEY" in os.environ)
'''),
]


def build() -> dict:
    """The tour as an unexecuted notebook dict (nbformat 4.5, sources as strings)."""
    return {
        "cells": copy.deepcopy(CELLS),
        "metadata": {
            "kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"},
            "language_info": {"name": "python"},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }


def kernel_environment(ipython_dir: Path) -> dict[str, str]:
    """The environment for the tour's kernel: ours, with its own IPYTHONDIR, no pytest marker
    (ipykernel turns fd capture off under pytest), and no OPENAI_API_KEY of the caller's."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTEST_CURRENT_TEST", "OPENAI_API_KEY")}
    env["IPYTHONDIR"] = str(ipython_dir)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def execute(nb: dict, workdir: Path, ipython_dir: Path) -> dict:
    """Run ``nb`` top to bottom with nbclient in ``workdir`` (as the kernel's cwd).

    Args:
        nb: the notebook dict; it is not changed.
        workdir: the kernel's working directory (the ``.env`` is written there).
        ipython_dir: a fresh IPYTHONDIR for the kernel.

    Returns:
        The executed notebook as a plain dict.

    Raises:
        nbclient.exceptions.CellExecutionError: a cell not tagged ``raises-exception`` failed.
    """
    import nbformat
    from nbclient import NotebookClient

    node = nbformat.from_dict(copy.deepcopy(nb))
    client = NotebookClient(
        node, timeout=KERNEL_TIMEOUT, kernel_name="python3", record_timing=False,
        resources={"metadata": {"path": str(workdir)}},
    )
    client.execute(env=kernel_environment(ipython_dir))
    return json.loads(json.dumps(node))


def normalize(nb: dict, tmp_root: Path) -> dict:
    """``nb`` with the temporary directory replaced by ``…`` in every output string and
    nbclient's per-run metadata dropped (so the committed file does not change from run to run).
    """

    def scrub(value: Any) -> Any:
        if isinstance(value, str):
            return value.replace(str(tmp_root), TMP_PLACEHOLDER)
        if isinstance(value, list):
            return [scrub(v) for v in value]
        if isinstance(value, dict):
            return {k: scrub(v) for k, v in value.items()}
        return value

    out = copy.deepcopy(nb)
    for cell in out["cells"]:
        cell.get("metadata", {}).pop("execution", None)
        if cell["cell_type"] == "code":
            cell["outputs"] = scrub(cell["outputs"])
    return out


def as_jupyter_writes(nb: dict) -> str:
    """``nb`` serialised exactly as Jupyter saves it (nbformat: multi-line strings as lists of
    lines, sorted keys, indent 1, final newline), so saving the tour unchanged in JupyterLab
    does not change the file."""
    import nbformat

    return nbformat.writes(nbformat.from_dict(nb)) + "\n"


def cells_of(nb: dict) -> list[tuple]:
    """What ``--check`` compares: each cell's type, id, source and metadata (not outputs)."""

    def text(source: Any) -> str:
        return "".join(source) if isinstance(source, list) else source

    return [(c["cell_type"], c.get("id"), text(c["source"]), c.get("metadata", {})) for c in nb["cells"]]


def main(argv: list[str] | None = None) -> int:
    """Write (or with ``--check``, verify) ``tour.ipynb``; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if tour.ipynb's cells differ from this script's")
    args = parser.parse_args(argv)
    if args.check:
        current = json.loads(TARGET.read_text(encoding="utf-8")) if TARGET.exists() else None
        if current is None or cells_of(current) != cells_of(build()):
            print(f"{TARGET.name} is out of date: run python {Path(__file__).name}", file=sys.stderr)
            return 1
        return 0
    with tempfile.TemporaryDirectory(prefix="ipykeyguard-tour-") as tmp:
        tmp_root = Path(tmp)
        workdir = tmp_root / "example_notebooks"
        workdir.mkdir()
        executed = execute(build(), workdir, tmp_root / "ipython")
        TARGET.write_text(as_jupyter_writes(normalize(executed, tmp_root)), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
