"""Offline validators: each accepts its format, rejects a wrong checksum and rejects garbage."""

from __future__ import annotations

import base64
import json
import random

import pytest

from ipykeyguard.engine.validators import VALIDATORS, base36, base62_crc32, shannon_entropy

import fakekeys


def _b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _cases():
    rng = random.Random(7)
    gh = fakekeys.github_classic_token(rng)
    pem = fakekeys.pem_private_key(rng)
    jwt_ok = fakekeys.jwt(rng)
    return {
        "github-crc32": (gh, fakekeys.github_classic_token(rng, valid=False), "ghp_" + "A" * 36),
        "npm-crc32": (fakekeys.npm_token(rng), fakekeys.npm_token_invalid(rng), "npm_short"),
        "pypi-macaroon": (
            fakekeys.pypi_token(rng),
            fakekeys.pypi_token(rng, signature_len=31),
            "pypi-AgEIcHlwaS5vcmc" + "A" * 60,
        ),
        "jwt": (jwt_ok, _b64u(b'{"typ":"JWT"}') + "." + _b64u(b'{"sub":"x"}') + ".sig", "eyJ.eyJ.abc"),
        "azure-storage-key": (fakekeys.azure_storage_key(rng), fakekeys.azure_storage_key(rng, nbytes=48), "not base64 !!"),
        "pem-der": (pem, fakekeys.pem_private_key(rng, der=False), "-----BEGIN PRIVATE KEY-----\n@@@\n-----END PRIVATE KEY-----"),
        "openai-marker": (fakekeys.openai_project_key(rng), "sk-proj-" + "a1" * 60, "T3BlbkFJ"),
        "anthropic-shape": (fakekeys.anthropic_key(rng), fakekeys.anthropic_key(rng)[:-2] + "AB", "sk-ant-api03-short"),
        "gitlab-routable": (
            fakekeys.gitlab_routable_token(rng),
            fakekeys.gitlab_routable_token(rng, valid=False),
            "glpat-" + "a" * 30 + ".01.0a1234567",
        ),
        "slack-webhook": (
            fakekeys.slack_webhook_url(rng),
            fakekeys.slack_webhook_url(rng).replace("/B", "/X", 1),
            "https://hooks.slack.com/services/",
        ),
        "github-stateless": (
            f"ghs_123456_{jwt_ok}",
            "ghs_123456_" + _b64u(b'{"typ":"JWT"}') + "." + _b64u(b"not json") + ".FAKEsignature",
            "ghs_123456_eyJ.eyJ.x",
        ),
        "cloudflare-crc32": (
            fakekeys.cloudflare_token(rng, prefix="cfat_"),
            fakekeys.cloudflare_token(rng, valid=False),
            "cfut_" + "A" * 48,
        ),
        "grafana-crc32": (fakekeys.grafana_sa_token(rng), fakekeys.grafana_sa_token(rng, valid=False), "glsa_short_00000000"),
        "discord-user-id": (
            fakekeys.discord_bot_token(rng),
            fakekeys.discord_bot_token(rng, user_id="FAKEFAKEFAKEFAKEFAKE"),
            "MTE.abc.def",
        ),
        "base64-json": (
            base64.b64encode(json.dumps({"api_address": "https://fake.test", "api_key": "FAKE"}).encode()).decode(),
            base64.b64encode(b'{"api_address": "trunc').decode(),
            "%%%",
        ),
    }


CASES = _cases()


def test_every_validator_has_cases():
    """Each registered validator is covered by the valid / invalid / garbage table."""
    assert set(CASES) == set(VALIDATORS)


@pytest.mark.parametrize("name", sorted(CASES))
def test_validator_accepts_format_exact_token(name):
    """A format-exact fake token passes its validator."""
    assert VALIDATORS[name](CASES[name][0]) is True


@pytest.mark.parametrize("name", sorted(CASES))
def test_validator_rejects_wrong_checksum_or_structure(name):
    """A token with one wrong checksum character or a broken structure fails its validator."""
    assert VALIDATORS[name](CASES[name][1]) is False


@pytest.mark.parametrize("name", sorted(CASES))
def test_validator_rejects_garbage(name):
    """Garbage of roughly the right shape fails every validator without raising."""
    assert VALIDATORS[name](CASES[name][2]) is False
    for junk in ("", "=", "\x00\xff", "a" * 5000):
        assert VALIDATORS[name](junk) is False


def test_pem_validator_accepts_escaped_newlines_and_pgp():
    """A PEM key pasted in a JSON string (literal \\n) validates, as does an OpenSSH key."""
    rng = random.Random(3)
    assert VALIDATORS["pem-der"](fakekeys.pem_private_key(rng, newline="\\n"))
    assert VALIDATORS["pem-der"](fakekeys.openssh_private_key(rng))


def test_test_pypi_location_is_accepted_and_others_not():
    """A macaroon located at test.pypi.org is valid; one located elsewhere is not."""
    assert VALIDATORS["pypi-macaroon"](fakekeys.pypi_token(location=b"test.pypi.org"))
    assert not VALIDATORS["pypi-macaroon"](fakekeys.pypi_token(location=b"evil.example"))


def test_checksum_helpers():
    """base62/base36 encodings match their definitions and entropy is in bits per char."""
    assert base36(0, 2) == "00" and base36(35) == "z" and base36(36) == "10"
    assert len(base62_crc32("x")) == 6
    assert shannon_entropy("") == 0 and shannon_entropy("aaaa") == 0 and shannon_entropy("abcd") == 2.0
