"""A key used as a JSON object key (JSON outputs, cell and notebook metadata, widget state) is
found by ``scan``, masked by ``clean``, the kernel, the save hook and nbconvert, and renamed in
place with the object's order kept."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import fakekeys
from ipykeyguard import clean_notebook, scan_notebook
from ipykeyguard.transforms.notebook import iter_leaves, key_label, set_leaf

OPENAI_MASK = "[secret:OPENAI_API_KEY]"


class Keys(dict):
    def __repr__(self) -> str:
        return f"Keys({', '.join(self)}: <masked>)"


@pytest.fixture()
def keys() -> Keys:
    return Keys(openai=fakekeys.openai_project_key(), github=fakekeys.github_classic_token())


def holds_any(text: str, keys: dict) -> bool:
    """Computed outside ``assert`` so a failure never prints a key."""
    return any(v in text for v in keys.values())


def keyed_notebook(keys: dict) -> dict:
    """Keys used as object keys in: notebook metadata, widget state, cell metadata, a JSON output."""
    openai, github = keys["openai"], keys["github"]
    return {
        "nbformat": 4,
        "nbformat_minor": 5,
        "metadata": {
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
            "widgets": {"application/vnd.jupyter.widget-state+json": {
                "version_major": 2, "version_minor": 0,
                "state": {"a1b2c3d4e5f60718293a4b5c6d7e8f90": {
                    "model_name": "DictModel", "state": {"first": 1, github: "gh", "last": 3}}}}},
        },
        "cells": [
            {"cell_type": "code", "id": "c1", "execution_count": 1, "source": "from IPython.display import JSON\nJSON(d)",
             "metadata": {"tags": [], "params": {openai: True}},
             "outputs": [{"output_type": "display_data", "metadata": {},
                          "data": {"application/json": {"a": 1, openai: 2, "z": 3},
                                   "text/plain": "<IPython.core.display.JSON object>"}}]},
        ],
    }


# -- the pure walk --------------------------------------------------------------------------------
def test_scan_finds_a_secret_used_as_a_key_and_says_it_is_a_key(keys):
    """Every key-position secret is found, at a field ending in <key N>, and no field path holds a secret."""
    findings = scan_notebook(keyed_notebook(keys))
    fields = {(f.location.cell, f.location.field) for f in findings}
    assert (0, "outputs[0].data.application/json.<key 1>") in fields
    assert (0, "metadata.params.<key 0>") in fields
    assert any(cell is None and field.startswith("metadata.widgets.") and field.endswith("<key 1>")
               for cell, field in fields)
    assert not holds_any(json.dumps(sorted(map(str, fields))), keys)


def test_clean_renames_the_key_keeping_order_and_value(keys):
    """clean masks the key itself; the object keeps its order and the value stays under the mask."""
    nb = keyed_notebook(keys)
    out, report = clean_notebook(nb)
    assert report.changed
    assert not holds_any(json.dumps(out), keys)
    data = out["cells"][0]["outputs"][0]["data"]["application/json"]
    assert list(data.items()) == [("a", 1), (OPENAI_MASK, 2), ("z", 3)]
    state = out["metadata"]["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    (model,) = state.values()
    assert list(model["state"]) == ["first", "[secret:GITHUB_TOKEN]", "last"]
    assert holds_any(json.dumps(nb), keys), "the input is not mutated"
    again, report2 = clean_notebook(out)
    assert not report2.changed and again is out  # idempotent


def test_two_secret_keys_of_one_object_keep_both_values():
    """Two different keys of one object do not overwrite each other: each is masked under its own
    name (the second key's name gets a suffix, as a second value of one variable does)."""
    a, b = fakekeys.openai_project_key(), fakekeys.openai_project_key()
    nb = {"nbformat": 4, "nbformat_minor": 5, "metadata": {"x": {a: 1, b: 2}}, "cells": []}
    out, _ = clean_notebook(nb)
    assert out["metadata"]["x"] == {OPENAI_MASK: 1, "[secret:OPENAI_API_KEY_2]": 2}


def test_key_leaves_follow_their_subtree_and_set_leaf_renames_in_place():
    """A key's leaf comes after the leaves below it, so a walk that writes as it goes can rename it;
    short keys and keys made of ordinary words are not leaves."""
    outer, inner, second = "Ab3dE5gH9k", "zY8xW7vU6t", "Qq1Ww2Ee3R"
    nb = {"nbformat": 4, "metadata": {outer: {inner: "v", "plain_name": "p"}, second: "w", "tags": "t"}, "cells": []}
    order = [(leaf.field, leaf.is_key) for leaf in iter_leaves(nb)]
    assert order == [("metadata.<key 0>.<key 0>", False), ("metadata.<key 0>.<key 0>", True),
                     ("metadata.<key 0>.plain_name", False),
                     ("metadata.<key 0>", True), ("metadata.<key 1>", False), ("metadata.<key 1>", True),
                     ("metadata.tags", False)]
    for leaf in iter_leaves(nb):
        set_leaf(nb, leaf, leaf.text.lower())
    assert nb["metadata"] == {outer.lower(): {inner.lower(): "v", "plain_name": "p"}, second.lower(): "w", "tags": "t"}
    assert list(nb["metadata"]) == [outer.lower(), second.lower(), "tags"]


@pytest.mark.parametrize("key, shown", [
    ("language_info", True), ("application/vnd.jupyter.widget-state+json", True), ("ExecuteTime", True),
    ("col2", True), ("a1b2c3d4e5f60718293a4b5c6d7e8f90", False), ("FAKEq8ZrT2Lm9XwVb", False),
])
def test_field_paths_show_a_key_only_when_it_cannot_be_a_secret(key, shown):
    """Ordinary names are shown; model ids and token-like keys are shown by position."""
    assert (key_label(key, 3) == key) is shown
    if not shown:
        assert key_label(key, 3) == "<key 3>"


# -- the CLI ---------------------------------------------------------------------------------------
def _exe() -> str:
    return shutil.which("ipykeyguard") or str(Path(sys.executable).with_name("ipykeyguard"))


def test_cli_scan_and_clean_handle_keys(tmp_path, keys):
    """`ipykeyguard scan` reports the key-position secrets (exit 1); `clean` removes them from the file."""
    path = tmp_path / "nb.ipynb"
    path.write_text(json.dumps(keyed_notebook(keys), indent=1, sort_keys=True) + "\n")
    proc = subprocess.run([_exe(), "scan", "--isolated", "--format", "json", str(path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    fields = {f["field"] for f in json.loads(proc.stdout)["findings"]}
    assert "outputs[0].data.application/json.<key 1>" in fields
    assert not holds_any(proc.stdout + proc.stderr, keys)
    proc = subprocess.run([_exe(), "clean", "--isolated", "--store", "none", str(path)],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr[-500:]
    assert not holds_any(path.read_text() + proc.stdout + proc.stderr, keys)
    assert OPENAI_MASK in json.loads(path.read_text())["cells"][0]["outputs"][0]["data"]["application/json"]


# -- nbconvert ---------------------------------------------------------------------------------------
@pytest.mark.slow
def test_nbconvert_export_masks_keys_used_as_keys(tmp_path, keys):
    """The real `jupyter nbconvert --to keyguard-html` and `--to notebook` with the preprocessor write no key."""
    env = dict(os.environ)
    for name in ("JUPYTER_CONFIG_DIR", "JUPYTER_DATA_DIR", "JUPYTER_RUNTIME_DIR"):
        (tmp_path / name.lower()).mkdir()
        env[name] = str(tmp_path / name.lower())
    path = tmp_path / "nb.ipynb"
    path.write_text(json.dumps(keyed_notebook(keys), indent=1))
    for args in (["--to", "notebook", "--output", "out.ipynb",
                  '--Exporter.preprocessors=["ipykeyguard.KeyGuardPreprocessor"]',
                  "--KeyGuardPreprocessor.code_keys=mask"],
                 ["--to", "keyguard-html", "--output", "out.html"]):
        proc = subprocess.run([sys.executable, "-m", "jupyter", "nbconvert", *args, str(path)],
                              cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
        assert proc.returncode == 0, proc.stderr[-1500:]
    for name in ("out.ipynb", "out.html"):
        assert not holds_any((tmp_path / name).read_text(), keys), f"key in {name}"
    assert OPENAI_MASK in (tmp_path / "out.ipynb").read_text()


# -- the save hook ------------------------------------------------------------------------------------
@pytest.mark.server
@pytest.mark.slow
def test_save_hook_renames_keys_that_are_secrets(tmp_path, keys):
    """A notebook PUT through a real jupyter server reaches disk with key-position secrets masked."""
    from test_server import Server

    server = Server(tmp_path / "srv")
    try:
        resp = server.put_notebook("k.ipynb", keyed_notebook(keys))
        assert resp.status_code == 201, resp.text[:300]
        text = (server.root / "k.ipynb").read_text()
        assert not holds_any(text, keys), "key leaked into the saved notebook"
        data = json.loads(text)["cells"][0]["outputs"][0]["data"]["application/json"]
        assert data == {"a": 1, OPENAI_MASK: 2, "z": 3}  # (Jupyter writes keys sorted)
    finally:
        server.stop()
