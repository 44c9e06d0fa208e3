"""The scanner: notebook locations, binary outputs, overlap resolution, what findings hold, the
prefilter's soundness, speed, and property tests over planted keys and random text."""

from __future__ import annotations

import base64
import random
import struct
import zlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ipykeyguard import scan_notebook, scan_text
from ipykeyguard.engine.config import Config
from ipykeyguard.engine.findings import Confidence
from ipykeyguard.engine.scan import Scanner, env_name_from, notebook_findings, scanner_for

import fakekeys
import strategies

SCANNER = Scanner(Config())


def _png_base64() -> str:
    """A real 32x32 RGB PNG, made now, base64-encoded as Jupyter stores it."""
    rng = random.Random(1)
    rows = b"".join(b"\x00" + bytes(rng.randrange(256) for _ in range(32 * 3)) for _ in range(32))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 32, 32, 8, 2, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")
    return base64.encodebytes(png).decode()


def _notebook(gh: str, aws: str, hf: str, jwt: str, slack: str) -> dict:
    return {
        "nbformat": 4,
        "nbformat_minor": 5,
        "metadata": {
            "kernelspec": {"name": "python3", "display_name": "Python 3"},
            "widgets": {"application/vnd.jupyter.widget-state+json": {"state": {"abc": {"state": {"value": slack}}}}},
        },
        "cells": [
            {"id": "c0", "cell_type": "markdown", "metadata": {}, "source": ["# Title\n", "plain prose\n"]},
            {
                "id": "c1", "cell_type": "code", "metadata": {}, "execution_count": 1,
                "source": ["import os\n", f"token = '{gh}'\n"],
                "outputs": [
                    {"output_type": "stream", "name": "stdout", "text": ["ok\n"]},
                    {"output_type": "display_data", "metadata": {},
                     "data": {"text/plain": "<table>", "text/html": ["<table>\n", f"<td>{aws}</td>\n", "</table>"],
                              "image/png": _png_base64()}},
                ],
            },
            {
                "id": "c2", "cell_type": "code", "metadata": {}, "execution_count": 2, "source": "fail()",
                "outputs": [{"output_type": "error", "ename": "HTTPError", "evalue": "401",
                             "traceback": ["Traceback", "  File x", f"HTTPError: 401 for token {hf}"]}],
            },
            {"id": "c3", "cell_type": "markdown", "metadata": {}, "source": "see",
             "attachments": {"note.txt": {"text/plain": f"jwt {jwt}"}}},
        ],
    }


def test_notebook_findings_are_located_by_cell_field_line_and_column():
    """scan_notebook reports each key with its cell index, field path, line and column."""
    rng = random.Random(5)
    gh, aws, hf = fakekeys.github_classic_token(rng), fakekeys.aws_access_key_id(rng), fakekeys.huggingface_token(rng)
    jwt, slack = fakekeys.jwt(rng), fakekeys.slack_webhook_url(rng)
    found = scan_notebook(_notebook(gh, aws, hf, jwt, slack))
    where = {(f.rule, f.location.cell, f.location.field, f.location.line, f.location.column) for f in found}
    assert ("slack-webhook-url", None, "metadata.widgets.application/vnd.jupyter.widget-state+json.state.abc.state.value", 1, 1) in where
    assert ("github-pat-classic", 1, "source", 2, 10) in where
    assert ("aws-access-key-id", 1, "outputs[1].data.text/html", 2, 5) in where
    assert ("huggingface-access-token", 2, "outputs[0].traceback[2]", 1, 26) in where
    assert ("jwt", 3, "attachments.note.txt.text/plain", 1, 5) in where
    assert len(found) == 5


def test_binary_mimetypes_are_skipped_by_type():
    """A key-shaped string under image/png is skipped; the same text under text/plain is found."""
    key = fakekeys.github_classic_token()
    nb = {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [{
        "cell_type": "code", "metadata": {}, "source": "", "execution_count": 1,
        "outputs": [{"output_type": "display_data", "metadata": {},
                     "data": {"image/png": key, "application/pdf": key, "text/plain": key}}]}]}
    found = scan_notebook(nb)
    assert [f.location.field for f in found] == ["outputs[0].data.text/plain"]


def test_real_png_in_outputs_and_data_uri_in_html_yield_nothing():
    """Base64 images (a real PNG in image/png and inline in HTML as a data URI) yield no finding."""
    png = _png_base64()
    assert scan_text(f'<img src="data:image/png;base64,{png.replace(chr(10), "")}">') == []
    nb = {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [{
        "cell_type": "code", "metadata": {}, "source": "plt.show()", "execution_count": 1,
        "outputs": [{"output_type": "display_data", "metadata": {}, "data": {"image/png": png}}]}]}
    assert scan_notebook(nb) == []


def test_finding_repr_and_dict_hold_no_plaintext():
    """Finding/Secret reprs, str and to_dict() carry a fingerprint, never the key."""
    key = fakekeys.openai_project_key()
    (finding,) = scan_text(f'client = OpenAI(api_key="{key}")')
    assert finding.confidence is Confidence.CERTAIN and finding.env == "OPENAI_API_KEY"
    for text in (repr(finding), str(finding), repr(finding.secret), str(finding.to_dict()), finding.mask):
        assert key not in text and key[8:30] not in text, "key leaked"
    assert finding.to_dict()["hash"] == finding.fingerprint


def test_provider_rule_beats_generic_and_checksum_decides_certainty():
    """An overlapping generic match loses to the provider rule; a wrong checksum is not a key at all."""
    good, bad = fakekeys.github_classic_token(), fakekeys.github_classic_token(valid=False)
    (f_good,) = scan_text(f'api_token = "{good}"')
    assert (f_good.rule, f_good.confidence) == ("github-pat-classic", Confidence.CERTAIN)
    assert scan_text(f'api_token = "{bad}"', min_confidence=Confidence.POSSIBLE) == []


def test_generic_rule_names_the_whole_variable():
    """The generic rule derives the env name from the whole assigned identifier."""
    value = fakekeys.generic_secret(random.Random(11)) + "9"  # the generic rule needs a digit and a letter
    (f,) = scan_text(f'my_service.client_secret = "{value}"')
    assert f.rule == "generic-secret-assignment" and f.env == "MY_SERVICE_CLIENT_SECRET"
    assert env_name_from("hfToken") == "HF_TOKEN" and env_name_from("---") == "SECRET"


def test_min_confidence_filters():
    """min_confidence drops weaker findings."""
    text = 'LANGFUSE_PUBLIC_KEY="pk-lf-' + "0a1b2c3d-1e2f-3a4b-5c6d-7e8f9a0b1c2d" + '"'
    assert [f.confidence for f in scan_text(text)] == [Confidence.POSSIBLE]
    assert scan_text(text, min_confidence=Confidence.LIKELY) == []


def test_notebook_findings_yields_leaves_and_scanner_is_cached():
    """notebook_findings pairs each text leaf with its findings; scanner_for caches per config."""
    key = fakekeys.npm_token()
    nb = {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [
        {"cell_type": "code", "metadata": {}, "source": f"t='{key}'", "outputs": [], "execution_count": 1}]}
    pairs = list(notebook_findings(nb, SCANNER))
    assert [(leaf.field, [f.rule for f in fs]) for leaf, fs in pairs] == [("source", ["npm-access-token"])]
    config = Config()
    assert scanner_for(config) is scanner_for(config)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(alphabet=st.sampled_from(sorted({c for r in SCANNER.rules for k in r.keywords for c in k} | set("xyz \n_"))), max_size=200))
def test_prefilter_selects_every_rule_that_matches(text):
    """The automaton prefilter is sound: every rule whose regex matches the text is a candidate."""
    matching = {r.id for r in SCANNER.rules if r.pattern.search(text)}
    assert matching <= {r.id for r in SCANNER._candidate_rules(text)}


# -- properties -----------------------------------------------------------------------------

@pytest.mark.parametrize("family", sorted(strategies.KEY_FAMILIES))
def test_planted_key_is_found_anywhere(family):
    """A planted key of each family is found, by its rule, wherever it sits in random code or prose."""
    keys, rule_id = strategies.KEY_FAMILIES[family]

    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(key=keys, before=strategies.code, after=strategies.code, place=strategies.placements)
    def check(key, before, after, place):
        text = before + "\n" + place.format(k=key) + "\n" + after
        found = [f for f in SCANNER.scan_text(text) if f.rule == rule_id]
        assert found, f"{family} key not found"
        assert any(f.secret.reveal() == key for f in found)
        assert all(f.confidence >= Confidence.LIKELY for f in found)

    check()


@settings(max_examples=300, deadline=None)
@given(strategies.non_secret_text)
def test_random_non_secret_text_yields_no_likely_finding(text):
    """Identifiers, prose, hex hashes and UUIDs never yield a likely or certain finding."""
    assert SCANNER.scan_text(text, min_confidence=Confidence.LIKELY) == []


# -- a typical cell ---------------------------------------------------------------------------

TYPICAL_CELL = '''import os
import numpy as np
import pandas as pd
from transformers import AutoTokenizer, AutoModelForCausalLM

tokenizer = AutoTokenizer.from_pretrained("meta-llama/Llama-3.2-1B")
model = AutoModelForCausalLM.from_pretrained("meta-llama/Llama-3.2-1B", device_map="auto")
api_key = os.environ["OPENAI_API_KEY"]

def generate(prompt: str, max_new_tokens: int = 128) -> str:
    inputs = tokenizer(prompt, return_tensors="pt").to(model.device)
    outputs = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=True)
    return tokenizer.decode(outputs[0], skip_special_tokens=True)

df = pd.read_csv("data/train.csv")
df["label"] = df["label"].map({"pos": 1, "neg": 0})
print(df.head())
for key, group in df.groupby("category"):
    print(key, len(group), group["score"].mean())

results = {}
for i, row in df.iterrows():
    results[row["id"]] = generate(row["text"])
    if i > 10:
        break
plt.figure(figsize=(8, 4))
plt.hist(df["score"], bins=50)
plt.title("Score distribution")
plt.savefig("scores.png")
print(f"done: {len(results)} rows")
'''


def test_typical_cell_without_keys_has_no_finding():
    """A typical data-science cell (a tokenizer, an api_key read from os.environ, dict keys) yields no finding at all."""
    assert SCANNER.scan_text(TYPICAL_CELL) == []




def _escape_view_by_one_sub(text: str):
    """The escape view made by one ``re.sub`` over the whole text (the definition)."""
    from ipykeyguard.engine import scan as scan_module

    changed: list[int] = []

    def boundary(m):
        escape = m.group(0)
        if len(escape) > 2 and chr(int(escape[2:], 16)) in scan_module._TOKEN_CHARS:
            return escape
        changed.append(m.start())
        return "\\" + " " * (len(escape) - 1)

    return scan_module._ESCAPE_BEFORE_TOKEN_RE.sub(boundary, text), changed


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(alphabet=st.sampled_from(["\\", "n", "t", "x", "u", "U", "0", "4", "1", "a", "F", "K", " ", "\n", "数"]),
               max_size=80),
       st.sampled_from([1, 3, 8, 64, 1 << 16]))
def test_escape_view_chunk_by_chunk_is_one_pass_over_the_text(monkeypatch, text, chunk):
    """The escape view runs its pattern only on chunks holding a backslash: with chunks of any
    size (escapes across chunk ends too) it changes exactly what one pass over the text does."""
    from ipykeyguard.engine import scan as scan_module

    monkeypatch.setattr(scan_module, "_ESCAPE_CHUNK", chunk)
    view, changed = scan_module._escape_view(text)
    expected_view, expected_changed = _escape_view_by_one_sub(text)
    assert view == expected_view
    dense = len(expected_changed) > len(text) // scan_module._ESCAPE_SPACING + 1
    assert changed == (None if dense else expected_changed)
    if not expected_changed:
        assert view is text and changed == []
