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

__all__ = ["VALIDATORS", "validator", "base62_crc32", "base36", "shannon_entropy", "fails_checksum"]

VALIDATORS: dict[str, Callable[[str], bool]] = {}

_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_BASE36 = "0123456789abcdefghijklmnopqrstuvwxyz"


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


def base36(value: int, width: int = 0) -> str:
    """``value`` in lowercase base36 (Ruby's ``Integer#to_s(36)``), zero-padded to ``width``."""
    digits = []
    while value:
        value, rem = divmod(value, 36)
        digits.append(_BASE36[rem])
    return "".join(reversed(digits)).rjust(width, "0") or "0"


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


def _crc32(text: str) -> int:
    return zlib.crc32(text.encode("ascii")) & 0xFFFFFFFF


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


def _varint(raw: bytes, pos: int) -> tuple[int, int]:
    """Read an unsigned LEB128 varint at ``pos``; returns ``(value, next_pos)``.

    Raises:
        IndexError: the data ends inside the varint.
    """
    value = shift = 0
    while True:
        byte = raw[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
        if shift > 28:
            raise IndexError("varint too long")


def _macaroon_v2_location(raw: bytes) -> bytes | None:
    """Parse a binary v2 macaroon completely; return its location, ``None`` if malformed.

    Layout (libmacaroons ``v2``): version byte 2; a section of fields (location 1, identifier 2)
    ended by EOS 0; caveat sections (optional location 1, identifier 2, verification id 4),
    each ended by EOS, the list ended by an empty section; then the signature field 6 of 32
    bytes, and nothing after it.
    """
    if len(raw) < 40 or raw[0] != 2:
        return None
    pos = 1

    def section(pos: int) -> tuple[dict[int, bytes], int]:
        fields: dict[int, bytes] = {}
        last = 0
        while True:
            ftype, pos = _varint(raw, pos)
            if ftype == 0:
                return fields, pos
            if ftype <= last or ftype not in (1, 2, 4):
                raise IndexError("field out of order")
            length, pos = _varint(raw, pos)
            if pos + length > len(raw):
                raise IndexError("field overruns the data")
            fields[ftype] = raw[pos : pos + length]
            pos += length
            last = ftype

    try:
        header, pos = section(pos)
        if 2 not in header or 4 in header:
            return None
        for _ in range(256):  # caveats
            caveat, pos = section(pos)
            if not caveat:
                break
            if 2 not in caveat:
                return None
        else:
            return None
        ftype, pos = _varint(raw, pos)
        length, pos = _varint(raw, pos)
    except IndexError:
        return None
    if ftype != 6 or length != 32 or pos + 32 != len(raw):
        return None
    return header.get(1, b"")


@validator("pypi-macaroon")
def pypi_macaroon(secret: str) -> bool:
    """PyPI API tokens: ``pypi-`` + a base64url binary v2 macaroon located at ``pypi.org``
    (or ``test.pypi.org``) that parses completely and ends in a 32-byte signature."""
    if not secret.startswith("pypi-"):
        return False
    raw = _b64decode(secret[5:], urlsafe=True)
    if raw is None:
        return False
    return _macaroon_v2_location(raw) in (b"pypi.org", b"test.pypi.org")


@validator("jwt")
def jwt_structure(secret: str) -> bool:
    """JWTs: three base64url parts; the first two decode to JSON objects and the header
    names a string ``alg``."""
    parts = secret.split(".")
    if len(parts) != 3 or not parts[0] or not parts[1]:
        return False
    try:
        header = json.loads(_b64decode(parts[0], urlsafe=True) or b"")
        payload = json.loads(_b64decode(parts[1], urlsafe=True) or b"")
    except (ValueError, UnicodeDecodeError):
        return False
    return isinstance(header, dict) and isinstance(header.get("alg"), str) and isinstance(payload, dict)


@validator("azure-storage-key")
def azure_storage_key(secret: str) -> bool:
    """Azure storage account keys are base64 of exactly 64 bytes."""
    raw = _b64decode(secret)
    return raw is not None and len(raw) == 64


def _pem_body(secret: str) -> bytes | None:
    # A key pasted inside a JSON or Python string carries literal "\n" escapes.
    text = secret.replace("\\r", "").replace("\\n", "\n")
    lines = [ln.strip() for ln in text.strip().splitlines()]
    body = "".join(
        ln for ln in lines
        if ln and not ln.startswith("-----") and ":" not in ln and not (ln.startswith("=") and len(ln) == 5)
    )
    return _b64decode(body)


@validator("pem-der")
def pem_body(secret: str) -> bool:
    """A PEM private key block whose body is base64 of DER (a SEQUENCE), an OpenSSH key
    container (``openssh-key-v1``) or an OpenPGP secret-key packet."""
    raw = _pem_body(secret)
    if raw is None or len(raw) < 16:
        return False
    if raw.startswith(b"openssh-key-v1\x00"):
        return True
    if "PGP PRIVATE KEY" in secret:
        # Old-format packet tag 5 (0x94-0x97) or new-format 0xC5: a secret-key packet.
        return raw[0] in (0x94, 0x95, 0x96, 0x97, 0xC5)
    if raw[0] != 0x30:  # DER SEQUENCE
        return False
    # The DER length must cover the body exactly (short or long form).
    first = raw[1]
    if first < 0x80:
        return 2 + first == len(raw)
    count = first & 0x7F
    if count == 0 or count > 4 or len(raw) < 2 + count:
        return False
    return 2 + count + int.from_bytes(raw[2 : 2 + count], "big") == len(raw)


@validator("openai-marker")
def openai_marker(secret: str) -> bool:
    """OpenAI keys embed ``T3BlbkFJ``, the base64 of ``OpenAI``, between two random halves."""
    head, sep, tail = secret.partition("T3BlbkFJ")
    return bool(sep) and len(tail) >= 20 and len(head) >= 23


_ANTHROPIC_RE = re.compile(r"sk-ant-(?:api03|admin01)-[A-Za-z0-9_-]{93}AA")


@validator("anthropic-shape")
def anthropic_shape(secret: str) -> bool:
    """Anthropic API (``sk-ant-api03-``) and admin (``sk-ant-admin01-``) keys: 93 characters
    then ``AA``."""
    return _ANTHROPIC_RE.fullmatch(secret) is not None


_GITLAB_ROUTABLE_RE = re.compile(r"(gl[a-z]{2,7}-(?:t\d_)?)([A-Za-z0-9_-]{27,300})(\.01)?\.([0-9a-z]{2})([0-9a-z]{7})")


@validator("gitlab-routable")
def gitlab_routable(secret: str) -> bool:
    """GitLab routable tokens end in the base36 CRC32 (7 chars) of everything before it; in the
    versioned form (``.01.``) the two chars before the CRC are the base36 length of the base64
    payload, and the payload's last byte is the length of its routing part."""
    m = _GITLAB_ROUTABLE_RE.fullmatch(secret)
    if m is None:
        return False
    prefix, payload, version, length, crc = m.groups()
    if base36(zlib.crc32(secret[:-7].encode("ascii")) & 0xFFFFFFFF, 7) != crc:
        return False
    if version is None:
        return True
    if base36(len(payload), 2) != length:
        return False
    raw = _b64decode(payload, urlsafe=True)
    # 16 random bytes, the routing payload, then one byte holding the routing payload's size.
    return raw is not None and len(raw) > 17 and raw[-1] == len(raw) - 17


_SLACK_WEBHOOK_RE = re.compile(
    r"https://hooks\.slack\.com/services/T[A-Z0-9]{8,12}/B[A-Z0-9]{8,12}/[A-Za-z0-9]{24}"
)


@validator("slack-webhook")
def slack_webhook(secret: str) -> bool:
    """Slack incoming webhooks: ``/services/T<team>/B<bot>/<24 alphanumerics>``."""
    return _SLACK_WEBHOOK_RE.fullmatch(secret) is not None


@validator("base64-json")
def base64_json(secret: str) -> bool:
    """Tokens that are base64 of a JSON object (Neptune API tokens, Grafana API keys)."""
    raw = _b64decode(secret, urlsafe="-" in secret or "_" in secret)
    if raw is None:
        return False
    try:
        return isinstance(json.loads(raw), dict)
    except (ValueError, UnicodeDecodeError):
        return False


_GITHUB_STATELESS_RE = re.compile(r"ghs_[0-9]{1,12}_(eyJ[A-Za-z0-9_-]+\.eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+)")


@validator("github-stateless")
def github_stateless(secret: str) -> bool:
    """GitHub App installation tokens in the 2026 stateless format: ``ghs_``, the app id, ``_``
    and a JWT whose header and payload decode to JSON (the signature is GitHub's own)."""
    m = _GITHUB_STATELESS_RE.fullmatch(secret)
    return m is not None and jwt_structure(m.group(1))


_CLOUDFLARE_RE = re.compile(r"cf(?:k|ut|at)_([A-Za-z0-9]{40})([0-9a-f]{8})")


@validator("cloudflare-crc32")
def cloudflare_checksum(secret: str) -> bool:
    """Cloudflare scannable credentials (2026): ``cfk_`` / ``cfut_`` / ``cfat_``, 40
    alphanumerics, then the CRC32 of those 40 characters as 8 lowercase hex digits."""
    m = _CLOUDFLARE_RE.fullmatch(secret)
    return m is not None and f"{_crc32(m.group(1)):08x}" == m.group(2)


_GRAFANA_SA_RE = re.compile(r"(glsa_[A-Za-z0-9]{32})_([0-9a-f]{8})")


@validator("grafana-crc32")
def grafana_checksum(secret: str) -> bool:
    """Grafana service-account tokens: ``glsa_`` + 32 alphanumerics + ``_`` + the CRC32 of
    everything before that underscore, its four bytes little-endian in hex (Grafana's
    ``satokengen``)."""
    m = _GRAFANA_SA_RE.fullmatch(secret)
    return m is not None and _crc32(m.group(1)).to_bytes(4, "little").hex() == m.group(2)


_DISCORD_RE = re.compile(r"([MNO][A-Za-z0-9]{22,26})\.([A-Za-z0-9_-]{6})\.([A-Za-z0-9_-]{27,38})")


@validator("discord-user-id")
def discord_user_id(secret: str) -> bool:
    """Discord bot tokens: the first of the three parts is the base64 of the bot's user id, a
    snowflake of 17 to 20 decimal digits."""
    m = _DISCORD_RE.fullmatch(secret)
    if m is None:
        return False
    raw = _b64decode(m.group(1))
    return raw is not None and 17 <= len(raw) <= 20 and raw.isdigit() and raw[:1] != b"0"


# Formats whose last characters are a checksum of the rest: (full shape, validator). A string of
# one of these shapes whose checksum fails is a typo, a test value or noise, never a key.
_CHECKSUMMED: tuple[tuple[re.Pattern[str], Callable[[str], bool]], ...] = (
    (re.compile(r"gh[pousr]_[A-Za-z0-9]{36}"), github_checksum),
    (re.compile(r"npm_[A-Za-z0-9]{36}"), npm_checksum),
    (_GITLAB_ROUTABLE_RE, gitlab_routable),
    (_CLOUDFLARE_RE, cloudflare_checksum),
    (_GRAFANA_SA_RE, grafana_checksum),
)
_CHECKSUM_LEADS = ("gh", "npm_", "gl", "cf")


def fails_checksum(secret: str) -> bool:
    """True when ``secret`` has the full shape of a checksummed token format (GitHub, npm,
    GitLab routable, Cloudflare, Grafana service account) and its checksum does not match.

    Such a string is not a key: no rule may report it at any confidence (the provider rule
    and the generic ones alike), so the kernel and ``clean`` never rewrite or mask it.
    """
    if not secret.startswith(_CHECKSUM_LEADS):
        return False
    for shape, check in _CHECKSUMMED:
        if shape.fullmatch(secret):
            return not check(secret)
    return False
