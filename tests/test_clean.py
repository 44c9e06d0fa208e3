"""The cleaning walk: golden notebooks for every location type, idempotence, purity, scan agreement.

Golden files live in ``tests/fixtures/golden``: ``X.ipynb`` is cleaned by the installed
``ipykeyguard clean`` and must equal ``X.expected.ipynb`` byte for byte. Inputs are written by
``_generate.py`` there (fake, format-exact keys from a fixed seed).
"""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import fakekeys
from ipykeyguard.transforms.clean import clean_notebook, clean_text
from ipykeyguard.engine.findings import Confidence
from ipykeyguard.transforms.notebook import iter_leaves
from ipykeyguard.engine.scan import scan_notebook

GOLDEN = Path(__file__).parent / "fixtures" / "golden"
CASES = sorted(p.name[: -len(".expected.ipynb")] for p in GOLDEN.glob("*.expected.ipynb"))


def cli() -> list[str]:
    exe = shutil.which("ipykeyguard")
    return [exe] if exe else [sys.executable, "-m", "ipykeyguard"]


def all_texts(nb: dict) -> str:
    return "\n".join(leaf.text for leaf in iter_leaves(nb))


def load(name: str) -> dict:
    return json.loads((GOLDEN / name).read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def cleaned_goldens(tmp_path_factory):
    """Every golden input, each in its own folder, cleaned by one run of the installed CLI (twice)."""
    root = tmp_path_factory.mktemp("golden")
    paths = {}
    for case in CASES:
        folder = root / case
        folder.mkdir()
        shutil.copyfile(GOLDEN / f"{case}.ipynb", folder / f"{case}.ipynb")
        paths[case] = folder / f"{case}.ipynb"
    first = subprocess.run([*cli(), "clean", "--isolated", *map(str, paths.values())], capture_output=True, text=True, cwd=root)
    after_first = {case: p.read_bytes() for case, p in paths.items()}
    second = subprocess.run([*cli(), "clean", "--isolated", *map(str, paths.values())], capture_output=True, text=True, cwd=root)
    return {"first": first, "second": second, "after_first": after_first, "paths": paths, "root": root}


def test_there_is_a_golden_case_for_every_location_type():
    """The golden table covers every kind of place a key can be in a notebook."""
    wanted = {"markdown", "raw", "stream", "execute_result", "display_json", "error", "cell_metadata",
              "widget_state", "attachments", "known_value", "no_key", "code_literal", "code_fstring",
              "code_shell", "code_env_magic", "code_cell_magic", "code_comment"}
    assert wanted <= set(CASES)


@pytest.mark.parametrize("case", CASES)
def test_golden(case, cleaned_goldens):
    """Cleaning X.ipynb with the installed CLI gives X.expected.ipynb byte for byte."""
    expected = (GOLDEN / f"{case}.expected.ipynb").read_bytes()
    assert cleaned_goldens["after_first"][case] == expected, cleaned_goldens["first"].stderr[-2000:]


def test_golden_run_exit_codes_and_idempotence(cleaned_goldens):
    """The first run reports changes (exit 1); the second changes nothing (exit 0, same bytes)."""
    assert cleaned_goldens["first"].returncode == 1, cleaned_goldens["first"].stderr[-2000:]
    assert cleaned_goldens["second"].returncode == 0, cleaned_goldens["second"].stdout[-2000:]
    for case, path in cleaned_goldens["paths"].items():
        assert path.read_bytes() == cleaned_goldens["after_first"][case], f"{case} changed on the second run"


def test_cli_output_names_no_value(cleaned_goldens):
    """What clean prints holds variable names, never a key from the inputs."""
    printed = cleaned_goldens["first"].stdout + cleaned_goldens["first"].stderr
    for case in CASES:
        for finding in scan_notebook(load(f"{case}.ipynb")):
            assert finding.secret.reveal() not in printed, "key leaked"


@pytest.mark.parametrize("case", CASES)
def test_expected_notebooks_validate_and_hold_no_key(case):
    """Every expected notebook is a valid nbformat 4 notebook with no finding at or above likely."""
    nbformat = pytest.importorskip("nbformat")
    expected = nbformat.reads((GOLDEN / f"{case}.expected.ipynb").read_text(encoding="utf-8"), as_version=nbformat.NO_CONVERT)
    nbformat.validate(expected)
    if case != "possible_only":
        assert scan_notebook(expected, min_confidence=Confidence.LIKELY) == []


@pytest.mark.parametrize("case", sorted(set(CASES) - {"possible_only", "no_key"}))
def test_clean_acts_exactly_where_scan_reports(case):
    """clean acts on exactly the findings scan reports at the same threshold (one walk, no drift)."""
    nb = load(f"{case}.ipynb")
    scanned = [(f.location, f.fingerprint) for f in scan_notebook(nb, min_confidence=Confidence.LIKELY)]
    _new, report = clean_notebook(nb, min_confidence=Confidence.LIKELY)
    assert [(f.location, f.fingerprint) for f in report.findings] == scanned
    assert scanned, "the case has no finding"


@pytest.mark.parametrize("case", CASES)
def test_clean_notebook_is_pure(case):
    """clean_notebook does not mutate its input, and its report's repr and summary hold no key."""
    nb = load(f"{case}.ipynb")
    before = copy.deepcopy(nb)
    new, report = clean_notebook(nb)
    assert nb == before
    secrets = [f.secret.reveal() for f in scan_notebook(before)]
    rendered = repr(report) + report.summary(stored_in=".env") + repr(report.secrets)
    for secret in secrets:
        assert secret not in rendered, "key leaked"
    if report.changed:
        assert new is not nb
    else:
        assert new is nb


def test_possible_findings_are_reported_not_changed():
    """A finding below the threshold is listed in below_threshold and the notebook is unchanged."""
    nb = load("possible_only.ipynb")
    new, report = clean_notebook(nb, min_confidence=Confidence.LIKELY)
    assert not report.changed and new is nb
    assert report.below_threshold and all(f.confidence == Confidence.POSSIBLE for f in report.below_threshold)
    masked, report2 = clean_notebook(nb, min_confidence=Confidence.POSSIBLE)
    assert report2.changed and report2.masked == 1


def test_known_value_is_masked_where_the_rule_does_not_match():
    """A key found in one place is masked wherever else its exact text appears (an output echo)."""
    nb = load("known_value.ipynb")
    output_text = nb["cells"][1]["outputs"][0]["text"][0]
    assert scan_notebook({"cells": [{"cell_type": "markdown", "source": output_text}], "metadata": {}, "nbformat": 4},
                         min_confidence=Confidence.LIKELY) == [], "the echo alone must not be a finding"
    new, report = clean_notebook(nb)
    assert new["cells"][1]["outputs"][0]["text"] == ["[secret:TOKEN]\n"]
    assert report.masked_by_kind == {"markdown": 1, "output": 1}


def test_code_keys_can_be_masked_instead_of_moved():
    """With move_code_keys=False a code key is masked in place and nothing is offered for storing."""
    key = fakekeys.github_classic_token()
    nb = {"cells": [{"cell_type": "code", "execution_count": None, "id": "a", "metadata": {}, "outputs": [],
                     "source": f"t = \"{key}\""}], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    new, report = clean_notebook(nb, move_code_keys=False)
    assert new["cells"][0]["source"] == 't = "[secret:GITHUB_TOKEN]"'
    assert report.secrets == {} and report.moved == {}


def test_clean_text_masks_every_occurrence():
    """clean_text masks each key and its other exact occurrences, and leaves clean text alone."""
    key = fakekeys.github_classic_token()
    text = f"GITHUB_TOKEN={key}\n# again: {key}\n"
    new, report = clean_text(text)
    assert key not in new, "key left in text"
    assert new == "GITHUB_TOKEN=[secret:GITHUB_TOKEN]\n# again: [secret:GITHUB_TOKEN]\n"
    assert report.changed and report.masked == 2
    same, report2 = clean_text("nothing here\n")
    assert same == "nothing here\n" and not report2.changed


def _code_notebook(*sources: str) -> dict:
    cells = [
        {"cell_type": "code", "id": f"c{i}", "metadata": {}, "source": src, "outputs": [], "execution_count": None}
        for i, src in enumerate(sources)
    ]
    return {"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}


def test_clean_and_store_stores_moved_keys_and_reuses_a_stored_name():
    """clean_and_store puts each moved key in the store, and a key the store already holds keeps its name."""
    from ipykeyguard.transforms.clean import clean_and_store
    from ipykeyguard.storage.store import open_store

    first, second = fakekeys.openai_project_key(), fakekeys.openai_project_key()
    store = open_store("memory")
    cleaned, report = clean_and_store(_code_notebook(f'k = "{first}"'), store)
    assert report.changed and set(store.items()) == {"OPENAI_API_KEY"}
    assert store.get("OPENAI_API_KEY") == first, "stored value differs"
    again, _ = clean_and_store(_code_notebook(f'a = "{first}"', f'b = "{second}"'), store)
    text = json.dumps(again)
    assert 'os.environ[\\"OPENAI_API_KEY\\"]' in text
    assert len(store.items()) == 2 and first not in text and second not in text


def test_clean_and_store_raises_when_the_store_fails_and_stores_nothing():
    """A store that refuses the keys makes clean_and_store raise, so the caller writes no notebook."""
    from ipykeyguard.transforms.clean import clean_and_store
    from ipykeyguard.storage.store import StoreError

    class RefusingStore:
        kind, description = "memory", "a store that refuses"

        def items(self):
            return {}

        def get(self, name):
            return None

        def put(self, values, *, overwrite=True):
            raise StoreError("refused")

    with pytest.raises(StoreError):
        clean_and_store(_code_notebook(f'k = "{fakekeys.openai_project_key()}"'), RefusingStore())


# -- nbformat 3, the old layout -------------------------------------------------------------------
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import strategies  # noqa: E402

_PLACES = ["code", "markdown", "stream", "html", "error"]
_FAMILIES = sorted(k for k in strategies.KEY_FAMILIES if k not in ("pem", "openssh", "jwt"))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(_PLACES), st.sampled_from(_FAMILIES), st.data()), min_size=1, max_size=4))
def test_a_notebook_downgraded_to_nbformat_3_is_cleaned_whole_and_stays_valid(planted):
    """Keys planted in code, markdown, stream, HTML and error outputs of a notebook that
    nbformat downgrades to version 3: ``clean_notebook`` leaves none of them, the result is still
    nbformat 3 and passes nbformat's validator, a scan of it finds nothing at ``likely``, a
    second clean changes nothing, and every key moved out of code is in the report's secrets."""
    import nbformat
    from nbformat import v4

    cells, keys, code_keys = [], [], []
    for place, family, data in planted:
        key = data.draw(strategies.KEY_FAMILIES[family][0])
        keys.append(key)
        if place == "code":
            code_keys.append(key)
            cells.append(v4.new_code_cell(f'token = "{key}"\nprint(len(token))'))
        elif place == "markdown":
            cells.append(v4.new_markdown_cell(f"The token was {key} once."))
        else:
            output = {
                "stream": lambda: v4.new_output("stream", name="stdout", text=f"token {key}\n"),
                "html": lambda: v4.new_output("display_data", data={"text/html": f"<b>{key}</b>", "text/plain": "b"}),
                "error": lambda: v4.new_output("error", ename="AuthError", evalue=f"bad key {key}",
                                               traceback=[f"AuthError: bad key {key}"]),
            }[place]()
            cells.append(v4.new_code_cell("call()", outputs=[output]))
    old = nbformat.convert(v4.new_notebook(cells=cells), 3)
    assert old.nbformat == 3 and "worksheets" in old
    cleaned, report = clean_notebook(json.loads(json.dumps(old)))
    text = json.dumps(cleaned)
    assert not any(key in text for key in keys), "a key survived cleaning"
    assert cleaned["nbformat"] == 3
    nbformat.validate(nbformat.from_dict(cleaned))
    assert scan_notebook(cleaned, min_confidence=Confidence.LIKELY) == []
    again, second = clean_notebook(cleaned)
    assert again is cleaned and not second.changed
    stored = {secret.reveal() for secret in report.secrets.values()}
    assert all(key in stored for key in code_keys)
