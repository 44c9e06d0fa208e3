"""Format-exact fake keys, generated at run time (never a real key; most say FAKE where the
format leaves room). Shared by every test module; Hypothesis strategies live in strategies.py.

Each generator takes a ``random.Random`` (or uses a fresh one) so tests can be reproducible.
"""

from __future__ import annotations

import base64
import random as _random
import string

from ipykeyguard.engine.validators import base62_crc32

ALNUM = string.ascii_letters + string.digits
URLSAFE = ALNUM + "-_"


def _rand(rng: _random.Random | None) -> _random.Random:
    return rng or _random.Random()


def chars(n: int, alphabet: str = ALNUM, rng: _random.Random | None = None) -> str:
    rng = _rand(rng)
    return "".join(rng.choice(alphabet) for _ in range(n))


def openai_project_key(rng: _random.Random | None = None) -> str:
    """``sk-proj-`` + 74 + ``T3BlbkFJ`` + 74: the shape of a current OpenAI project key."""
    return "sk-proj-FAKE" + chars(70, URLSAFE, rng) + "T3BlbkFJ" + chars(74, URLSAFE, rng)


def openai_legacy_key(rng: _random.Random | None = None) -> str:
    return "sk-FAKE" + chars(16, ALNUM, rng) + "T3BlbkFJ" + chars(20, ALNUM, rng)


def github_classic_token(rng: _random.Random | None = None, *, valid: bool = True) -> str:
    body = "FAKE" + chars(26, ALNUM, rng)
    crc = base62_crc32(body)
    if not valid:
        crc = crc[:-1] + ("A" if crc[-1] != "A" else "B")
    return "ghp_" + body + crc


def npm_token(rng: _random.Random | None = None) -> str:
    body = "FAKE" + chars(26, ALNUM, rng)
    return "npm_" + body + base62_crc32(body)


def aws_access_key_id(rng: _random.Random | None = None) -> str:
    return "AKIAFAKE" + chars(12, string.ascii_uppercase + "234567", rng)


def aws_secret_access_key(rng: _random.Random | None = None) -> str:
    return "FAKE" + chars(36, ALNUM + "/+", rng)


def anthropic_key(rng: _random.Random | None = None) -> str:
    return "sk-ant-api03-FAKE" + chars(89, URLSAFE, rng) + "AA"


def jwt(rng: _random.Random | None = None) -> str:
    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    header = b64(b'{"alg":"HS256","typ":"JWT"}')
    payload = b64(('{"sub":"FAKE-%s","name":"Fake User"}' % chars(12, ALNUM, rng)).encode())
    return f"{header}.{payload}.{chars(43, URLSAFE, rng)}"


def generic_secret(rng: _random.Random | None = None, n: int = 32) -> str:
    """A high-entropy value for ``api_key = "..."``-style assignments."""
    return "FAKE" + chars(n - 4, ALNUM, rng)


# --- generators added for the rule, validator and scanner tests (tests/test_rules.py etc.) ---

HEX = "0123456789abcdef"
BASE32_UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"


def hexchars(n: int, rng: _random.Random | None = None) -> str:
    return chars(n, HEX, rng)


def npm_token_invalid(rng: _random.Random | None = None) -> str:
    """An ``npm_`` token whose CRC32 suffix is wrong."""
    token = npm_token(rng)
    return token[:-1] + ("A" if token[-1] != "A" else "B")


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        out.append(low | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(ftype: int, data: bytes) -> bytes:
    return _varint(ftype) + _varint(len(data)) + data


def pypi_token(rng: _random.Random | None = None, *, location: bytes = b"pypi.org", signature_len: int = 32) -> str:
    """A ``pypi-`` token: a complete binary v2 macaroon (location, identifier, one caveat,
    32-byte signature), base64url without padding. ``signature_len`` != 32 makes it malformed."""
    rng = _rand(rng)
    ident = b'{"nonce": "FAKE' + chars(16, ALNUM, rng).encode() + b'", "version": 1}'
    raw = b"\x02" + _field(1, location) + _field(2, ident) + b"\x00"
    raw += _field(2, b'{"version": 1, "permissions": "user"}') + b"\x00" + b"\x00"
    raw += _field(6, bytes(rng.randrange(256) for _ in range(signature_len)))
    return "pypi-" + base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def gitlab_routable_token(rng: _random.Random | None = None, *, prefix: str = "glpat-", valid: bool = True) -> str:
    """A GitLab routable token (``<prefix><base64 payload>.01.<len><crc>``) with a correct
    base36 CRC32, or a wrong one when ``valid`` is false."""
    import zlib

    from ipykeyguard.engine.validators import base36

    rng = _rand(rng)
    payload = b"c:1\no:fake\nu:" + chars(3, HEX, rng).encode()
    raw = bytes(rng.randrange(256) for _ in range(16)) + payload + bytes([len(payload)])
    b64 = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    token = f"{prefix}{b64}.01.{base36(len(b64), 2)}"
    crc = base36(zlib.crc32(token.encode()) & 0xFFFFFFFF, 7)
    if not valid:
        crc = crc[:-1] + ("0" if crc[-1] != "0" else "1")
    return token + crc


def azure_storage_key(rng: _random.Random | None = None, nbytes: int = 64) -> str:
    rng = _rand(rng)
    return base64.b64encode(b"FAKE" + bytes(rng.randrange(256) for _ in range(nbytes - 4))).decode()


def _der_sequence(n: int, rng: _random.Random) -> bytes:
    body = b"\x02\x01\x00" + bytes(rng.randrange(256) for _ in range(n - 3))
    return b"\x30\x82" + len(body).to_bytes(2, "big") + body


def pem_private_key(rng: _random.Random | None = None, *, label: str = "PRIVATE KEY", newline: str = "\n",
                    der: bool = True) -> str:
    """A PEM block whose body is a DER SEQUENCE of the right length (``der=False``: random bytes)."""
    rng = _rand(rng)
    raw = _der_sequence(300, rng) if der else b"\x04" + bytes(rng.randrange(256) for _ in range(303))
    b64 = base64.b64encode(raw).decode()
    lines = [b64[i : i + 64] for i in range(0, len(b64), 64)]
    return newline.join([f"-----BEGIN {label}-----", *lines, f"-----END {label}-----"])


def openssh_private_key(rng: _random.Random | None = None) -> str:
    rng = _rand(rng)
    raw = b"openssh-key-v1\x00\x00\x00\x00\x04none\x00\x00\x00\x04none" + b"FAKE" + bytes(rng.randrange(256) for _ in range(180))
    b64 = base64.b64encode(raw).decode()
    lines = [b64[i : i + 70] for i in range(0, len(b64), 70)]
    return "\n".join(["-----BEGIN OPENSSH PRIVATE KEY-----", *lines, "-----END OPENSSH PRIVATE KEY-----"])


def slack_webhook_url(rng: _random.Random | None = None) -> str:
    rng = _rand(rng)
    return (
        "https://hooks.slack.com/services/TFAKE" + chars(6, string.ascii_uppercase + string.digits, rng)
        + "/BFAKE" + chars(6, string.ascii_uppercase + string.digits, rng) + "/" + "FAKE" + chars(20, ALNUM, rng)
    )


def slack_bot_token(rng: _random.Random | None = None) -> str:
    rng = _rand(rng)
    return f"xoxb-{rng.randrange(10**11, 10**12)}-{rng.randrange(10**12, 10**13)}-FAKE{chars(20, ALNUM, rng)}"


def stripe_secret_key(rng: _random.Random | None = None) -> str:
    return "sk_live_51FAKE" + chars(95, ALNUM, rng)


def huggingface_token(rng: _random.Random | None = None) -> str:
    return "hf_FAKE" + chars(30, string.ascii_letters, rng)


def google_api_key(rng: _random.Random | None = None) -> str:
    return "AIzaFAKE" + chars(31, URLSAFE, rng)


def groq_key(rng: _random.Random | None = None) -> str:
    return "gsk_FAKE" + chars(48, ALNUM, rng)


def sendgrid_key(rng: _random.Random | None = None) -> str:
    return "SG.FAKE" + chars(18, URLSAFE, rng) + "." + chars(43, URLSAFE, rng)


def telegram_bot_token(rng: _random.Random | None = None) -> str:
    rng = _rand(rng)
    return f"{rng.randrange(10**8, 10**9)}:AAFAKE{chars(29, URLSAFE, rng)}"


def postgres_url(rng: _random.Random | None = None) -> tuple[str, str]:
    """``(url, password)`` for a PostgreSQL URL with a random password."""
    password = "FAKE" + chars(16, ALNUM, _rand(rng))
    return f"postgresql://fakeuser:{password}@db.fake.test:5432/app", password


def cloudflare_token(rng: _random.Random | None = None, *, prefix: str = "cfut_", valid: bool = True) -> str:
    """A Cloudflare scannable credential: prefix, 40 alphanumerics, CRC32 of them in 8 hex."""
    import zlib

    body = "FAKE" + chars(36, rng=rng)
    crc = f"{zlib.crc32(body.encode()) & 0xFFFFFFFF:08x}"
    if not valid:
        crc = crc[:-1] + ("0" if crc[-1] != "0" else "1")
    return prefix + body + crc


def grafana_sa_token(rng: _random.Random | None = None, *, valid: bool = True) -> str:
    """A Grafana service-account token: glsa_ + 32 + _ + little-endian hex CRC32 of the head."""
    import zlib

    head = "glsa_FAKE" + chars(28, rng=rng)
    crc = (zlib.crc32(head.encode()) & 0xFFFFFFFF).to_bytes(4, "little").hex()
    if not valid:
        crc = crc[:-1] + ("0" if crc[-1] != "0" else "1")
    return head + "_" + crc


def discord_bot_token(rng: _random.Random | None = None, *, user_id: str | None = None) -> str:
    """A Discord bot token: base64 of a snowflake user id, a 6-char timestamp, a 38-char HMAC."""
    import base64

    rng = _rand(rng)
    user_id = user_id or str(rng.randint(10**18, 2 * 10**18))
    first = base64.b64encode(user_id.encode()).decode().rstrip("=")
    return f"{first}.{chars(6, rng=rng)}.FAKE{chars(34, ALNUM + '-_', rng=rng)}"
