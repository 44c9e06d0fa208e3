"""KeyGuardPreprocessor and the keyguard exporters through nbconvert's Python API."""

from __future__ import annotations

import copy
import stat

import nbformat
import pytest
from dotenv import dotenv_values
from nbconvert.exporters import HTMLExporter, MarkdownExporter, NotebookExporter, get_exporter
from traitlets import TraitError
from traitlets.config import Config

import fakekeys
from ipykeyguard import KeyGuardPreprocessor
from ipykeyguard.engine.findings import fingerprint
from ipykeyguard.nbconvert.preprocessor import KeyGuardHTMLExporter, KeyGuardNotebookExporter


def leaky_notebook(keys: dict) -> nbformat.NotebookNode:
    """Code cell with an OpenAI key and its printed output; a GitHub token in markdown."""
    nb = nbformat.v4.new_notebook()
    code = nbformat.v4.new_code_cell(f'client_key = "{keys["openai"]}"\nprint(client_key)\n', execution_count=1)
    code.outputs = [nbformat.v4.new_output("stream", name="stdout", text=keys["openai"] + "\n")]
    nb.cells = [code, nbformat.v4.new_markdown_cell(f"token `{keys['github']}`")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


def holds_any_key(text: str, keys: dict) -> bool:
    """True when ``text`` holds a key (computed outside ``assert`` so that no key is printed)."""
    return any(value in text for value in keys.values())


def test_html_export_with_registered_preprocessor_has_no_key(keys):
    """HTMLExporter with KeyGuardPreprocessor registered publishes no key and shows the masks."""
    exporter = HTMLExporter()
    exporter.register_preprocessor(KeyGuardPreprocessor, enabled=True)
    body, resources = exporter.from_notebook_node(leaky_notebook(keys))
    leaked = holds_any_key(body, keys)
    assert not leaked, "key leaked into the HTML"
    assert "[secret:GITHUB_TOKEN]" in body
    assert "masked" in resources["ipykeyguard"]


def test_configured_preprocessor_list_cleans_markdown_export(keys):
    """c.Exporter.preprocessors = [KeyGuardPreprocessor] cleans a Markdown export."""
    config = Config()
    config.Exporter.preprocessors = ["ipykeyguard.KeyGuardPreprocessor"]
    body, _ = MarkdownExporter(config=config).from_notebook_node(leaky_notebook(keys))
    leaked = holds_any_key(body, keys)
    assert not leaked, "key leaked into the Markdown"


def test_known_code_key_is_masked_in_outputs_and_input_is_untouched(keys):
    """One walk: the code key is masked in the cell and in the output that printed it, and the
    input notebook object is not modified."""
    nb = leaky_notebook(keys)
    before = copy.deepcopy(nb)
    cleaned, _ = KeyGuardPreprocessor().preprocess(nb, {"metadata": {"path": ""}})
    assert nb == before
    assert isinstance(cleaned, nbformat.NotebookNode)
    text = nbformat.writes(cleaned)
    leaked = holds_any_key(text, keys)
    assert not leaked, "key leaked"
    assert "[secret:OPENAI_API_KEY]" in cleaned.cells[0].outputs[0].text
    nbformat.validate(cleaned)


def test_default_export_writes_no_env(tmp_path, keys):
    """By default an export masks code keys and writes no .env beside the notebook."""
    KeyGuardPreprocessor().preprocess(leaky_notebook(keys), {"metadata": {"path": str(tmp_path)}})
    assert not (tmp_path / ".env").exists()


def test_move_with_dotenv_store_keeps_the_key_beside_the_notebook(tmp_path, keys):
    """code_keys='move' with store='dotenv' rewrites the code to an environment lookup and
    writes the key to the .env in the notebook's folder, mode 0600."""
    pre = KeyGuardPreprocessor(code_keys="move", store="dotenv")
    cleaned, _ = pre.preprocess(leaky_notebook(keys), {"metadata": {"path": str(tmp_path)}})
    source = cleaned.cells[0].source
    assert "os.environ" in source and "OPENAI_API_KEY" in source
    env = tmp_path / ".env"
    assert stat.S_IMODE(env.stat().st_mode) == 0o600
    stored = {k: fingerprint(v or "") for k, v in dotenv_values(env, interpolate=False).items()}
    assert stored == {"OPENAI_API_KEY": fingerprint(keys["openai"]), "GITHUB_TOKEN": fingerprint(keys["github"])}


def test_clean_notebook_is_returned_unchanged():
    """A notebook without keys comes back as the same object, with no summary."""
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1")])
    resources = {"metadata": {"path": ""}}
    out, res = KeyGuardPreprocessor().preprocess(nb, resources)
    assert out is nb
    assert "ipykeyguard" not in res


def test_disabled_preprocessor_leaves_the_key(keys):
    """--KeyGuardPreprocessor.enabled=False turns the cleaning off (the switch really works)."""
    config = Config()
    config.KeyGuardPreprocessor.enabled = False
    body, _ = KeyGuardNotebookExporter(config=config).from_notebook_node(leaky_notebook(keys))
    still_there = keys["github"] in body
    assert still_there


def test_min_confidence_is_validated():
    """An unknown confidence name is rejected when the preprocessor is configured."""
    with pytest.raises(TraitError):
        KeyGuardPreprocessor(min_confidence="sure")


def test_min_confidence_certain_leaves_likely_findings(keys):
    """min_confidence='certain' acts only on validated keys: a likely-only generic secret stays."""
    generic = fakekeys.generic_secret()
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(f'password = "{generic}"')])
    cleaned, _ = KeyGuardPreprocessor(min_confidence="certain").preprocess(nb, {"metadata": {"path": ""}})
    kept = generic in cleaned.cells[0].source
    assert kept
    cleaned, _ = KeyGuardPreprocessor(min_confidence="possible").preprocess(nb, {"metadata": {"path": ""}})
    kept = generic in cleaned.cells[0].source
    assert not kept, "key leaked at min_confidence=possible"


@pytest.mark.parametrize("exporter_class", [KeyGuardNotebookExporter, KeyGuardHTMLExporter])
def test_keyguard_exporters_clean_without_a_preprocessor_list(exporter_class, keys):
    """The keyguard exporters clean with no preprocessor configured, and run the guard after
    execution and before output extraction."""
    names = [p if isinstance(p, str) else p.__name__ for p in exporter_class().default_preprocessors]
    ours = names.index("ipykeyguard.nbconvert.KeyGuardPreprocessor")
    assert names.index("nbconvert.preprocessors.ExecutePreprocessor") < ours
    assert ours < names.index("nbconvert.preprocessors.ExtractOutputPreprocessor")
    body, _ = exporter_class().from_notebook_node(leaky_notebook(keys))
    leaked = holds_any_key(body, keys)
    assert not leaked, "key leaked"


def test_exporter_entry_points_are_registered():
    """nbconvert finds --to keyguard-notebook and --to keyguard-html through entry points."""
    assert get_exporter("keyguard-notebook") is KeyGuardNotebookExporter
    assert get_exporter("keyguard-html") is KeyGuardHTMLExporter
    assert issubclass(KeyGuardNotebookExporter, NotebookExporter)
