"""Rotation advice (``engine/rotation.toml``): present for every provider rule, validated on load.

When a rule is added to ``rules.toml``, ``test_every_provider_rule_has_rotation_advice[<id>]``
fails for it: add the id to its provider's table in ``rotation.toml`` (or a new table with the
provider's name and the https page where its keys are revoked).
"""

from __future__ import annotations

import pytest

from ipykeyguard.engine.rotation import RotationError, default_rotation, parse_rotation, rotation_for
from ipykeyguard.engine.rules import default_rules

PROVIDER_RULES = [r.id for r in default_rules() if not r.generic]


@pytest.mark.parametrize("rule_id", PROVIDER_RULES)
def test_every_provider_rule_has_rotation_advice(rule_id):
    """Every non-generic shipped rule is listed in rotation.toml with a provider name and an https page."""
    table = default_rotation()
    assert rule_id in table.by_rule, f"add {rule_id!r} to its provider's table in ipykeyguard/engine/rotation.toml"
    rotation = table.by_rule[rule_id]
    assert rotation.url.startswith("https://") and rotation.name


def test_every_listed_rule_id_names_a_shipped_rule():
    """rotation.toml lists no rule id that rules.toml lacks (a renamed or removed rule is caught)."""
    known = {r.id for r in default_rules()}
    stale = sorted(set(default_rotation().by_rule) - known)
    assert stale == []


def test_generic_and_unknown_rules_get_the_default_advice():
    """A generic rule or a user's own rule gets the [default] advice, which is an https page too."""
    generic = next(r.id for r in default_rules() if r.generic)
    assert rotation_for(generic) == default_rotation().default
    assert rotation_for("acme-internal-token").url.startswith("https://")


def test_the_hint_names_the_provider_and_the_page():
    """The hint says where to revoke the key and issue a new one, by provider name and URL."""
    rotation = rotation_for("github-pat-classic")
    assert rotation.hint == f"revoke it at GitHub and issue a new one: {rotation.url}"
    assert rotation.to_dict() == {"provider": "github", "name": "GitHub", "url": rotation.url, "hint": rotation.hint}


GOOD = '[default]\nname = "the issuer"\nurl = "https://example.org/rotate"\n'


@pytest.mark.parametrize(
    "extra, message",
    [
        ('[acme]\nname = "Acme"\nurl = "http://acme.example/keys"\nrules = ["acme-key"]\n', "https URL"),
        ('[acme]\nurl = "https://acme.example/keys"\nrules = ["acme-key"]\n', "name is required"),
        ('[acme]\nname = "Acme"\nurl = "https://acme.example/keys"\nrules = ["Acme_Key"]\n', "kebab-case rule ids"),
        ('[acme]\nname = "Acme"\nurl = "https://acme.example/keys"\nrules = ["a"]\nnote = "x"\n', "unknown field(s) note"),
        ('[a]\nname = "A"\nurl = "https://a.example/"\nrules = ["k"]\n[b]\nname = "B"\nurl = "https://b.example/"\nrules = ["k"]\n',
         "listed under both [a] and [b]"),
        ('[Acme]\nname = "Acme"\nurl = "https://acme.example/keys"\n', "kebab-case"),
    ],
)
def test_malformed_rotation_data_is_rejected_with_a_reason(extra, message):
    """Rotation data is validated on load: https only, names required, ids well-formed and listed once."""
    with pytest.raises(RotationError, match=None) as info:
        parse_rotation(GOOD + extra, "test.toml")
    assert message in str(info.value) and "test.toml" in str(info.value)


def test_a_default_table_is_required():
    """Without a [default] table the data is rejected (generic rules would have no advice)."""
    with pytest.raises(RotationError, match=r"\[default\] table is required"):
        parse_rotation('[acme]\nname = "Acme"\nurl = "https://acme.example/"\nrules = ["acme-key"]\n')


def test_a_key_in_an_export_or_a_saved_output_is_reported_exposed_and_one_in_code_is_not(tmp_path):
    """A plain scan marks keys in an exported HTML file as exposed with the rotation hint; a key in a source file is not called exposed."""
    import json
    import os
    import subprocess

    import fakekeys

    token = fakekeys.github_classic_token()
    (tmp_path / "report.html").write_text(f"<pre>token = {token}</pre>\n")
    (tmp_path / "settings.py").write_text(f'TOKEN = "{fakekeys.npm_token()}"\n')
    env = {**os.environ, "IPYKEYGUARD_LEDGER": "off"}
    done = subprocess.run(["ipykeyguard", "scan", "--isolated", "--format", "json", "report.html", "settings.py"],
                          cwd=tmp_path, capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 1
    by_path = {f["path"]: f for f in json.loads(done.stdout)["findings"]}
    assert by_path["report.html"]["exposed"] == "exported file"
    assert by_path["report.html"]["rotate"]["hint"] == rotation_for("github-pat-classic").hint
    assert by_path["settings.py"]["exposed"] is None and by_path["settings.py"]["rotate"] is None
    text = subprocess.run(["ipykeyguard", "scan", "--isolated", "report.html"], cwd=tmp_path, capture_output=True,
                          text=True, env=env, timeout=120).stdout
    assert text.strip().endswith(f"; exposed: rotate it: {rotation_for('github-pat-classic').hint}")
