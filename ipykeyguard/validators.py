"""Offline structure checks that make a finding *certain*.

Each validator takes the secret text and returns ``True`` when its structure proves the format
(a checksum matches, a body decodes to what the format says), ``False`` when the structure
disproves it. None of them touches the network. Register one with :func:`validator`.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import zlib
from typing import Callable

__all__ = ["VALIDATORS", "validator", "base62_crc32", "shannon_entropy"]

VALIDATORS: dict[str, Callable[[str], bool]] = {}

_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def validator(name: str) -> Callable[[Callable[[str], bool]], Callable[[str], bool]]:
    """Register ``func`` as the validator called ``name`` in rules."""

    def register(func: Callable[[str], bool]) -> Callable[[str], bool]:
        VALIDATORS[name] = func
        return func

    return register


def shannon_entropy(text: str) -> float:
    """Shannon entropy of ``text`` in bits per character (0 for empty text)."""
    if not text:
        return 0.0
    import math

    counts: dict[str, int] = {}
    for ch in text:
        counts[ch] = counts.get(ch, 0) + 1
    n = len(text)
    return -sum(c / n * math.log2(c / n) for c in counts.values())


def base62_crc32(data: str, width: int = 6) -> str:
    """CRC32 of ``data`` written in base62, zero-padded to ``width`` characters."""
    value = zlib.crc32(data.encode("ascii")) & 0xFFFFFFFF
    digits = []
    while value:
        value, rem = divmod(value, 62)
        digits.append(_BASE62[rem])
    return "".join(reversed(digits)).rjust(width, "0")


def _b64decode(text: str, *, urlsafe: bool = False) -> bytes | None:
    """Decode base64 (padding optional); ``None`` when it is not base64."""
    text = text.strip()
    text += "=" * (-len(text) % 4)
    try:
        if urlsafe:
            return base64.urlsafe_b64decode(text.encode("ascii"))
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        return None


def _crc_token(secret: str, prefix_re: str) -> bool:
    m = re.fullmatch(prefix_re + r"([A-Za-z0-9]{30})([A-Za-z0-9]{6})", secret)
    return bool(m) and base62_crc32(m.group(1)) == m.group(2)


@validator("github-crc32")
def github_checksum(secret: str) -> bool:
    """GitHub ``gh[pousr]_`` tokens: 30 random base62 chars then their base62 CRC32."""
    return _crc_token(secret, r"gh[pousr]_")


@validator("npm-crc32")
def npm_checksum(secret: str) -> bool:
    """npm ``npm_`` tokens: 30 random base62 chars then their base62 CRC32."""
    return _crc_token(secret, r"npm_")


@validator("pypi-macaroon")
def pypi_macaroon(secret: str) -> bool:
    """PyPI tokens are v2 macaroons whose location field decodes to ``pypi.org``."""
    if not secret.startswith("pypi-"):
        return False
    body = secret[5:]
    raw = _b64decode(body[: len(body) - len(body) % 4] or body, urlsafe=True)
    if raw is None or len(raw) < 3 or raw[0] != 2 or raw[1] != 1:
        return False
    length = raw[2]
    location = raw[3 : 3 + length]
    return location in (b"pypi.org", b"test.pypi.org")


@validator("jwt")
def jwt_structure(secret: str) -> bool:
    """JWTs: three base64url parts, the first two decode to JSON objects, the header names ``alg``."""
    parts = secret.split(".")
    if len(parts) != 3:
        return False
    try:
        header = json.loads(_b64decode(parts[0], urlsafe=True) or b"")
        payload = json.loads(_b64decode(parts[1], urlsafe=True) or b"")
    except (ValueError, UnicodeDecodeError):
        return False
    return isinstance(header, dict) and "alg" in header and isinstance(payload, dict)


@validator("azure-storage-key")
def azure_storage_key(secret: str) -> bool:
    """Azure storage account keys are base64 of exactly 64 bytes."""
    raw = _b64decode(secret)
    return raw is not None and len(raw) == 64


@validator("pem-der")
def pem_body(secret: str) -> bool:
    """A PEM private key block whose body is base64 DER (or an OpenSSH key container)."""
    lines = [ln.strip() for ln in secret.strip().splitlines()]
    body = "".join(ln for ln in lines if ln and not ln.startswith("-----") and ":" not in ln)
    raw = _b64decode(body)
    if raw is None or len(raw) < 16:
        return False
    if raw.startswith(b"openssh-key-v1\x00"):
        return True
    return raw[0] == 0x30  # DER SEQUENCE


@validator("openai-marker")
def openai_marker(secret: str) -> bool:
    """OpenAI keys embed ``T3BlbkFJ``, the base64 of ``OpenAI``."""
    return "T3BlbkFJ" in secret


@validator("anthropic-shape")
def anthropic_shape(secret: str) -> bool:
    """Anthropic API keys: ``sk-ant-api03-`` + 93 chars ending in ``AA`` (108 in all)."""
    return len(secret) == 108 and secret.endswith("AA")
