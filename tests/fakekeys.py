"""Format-exact fake keys, generated at run time (never a real key; most say FAKE where the
format leaves room). Shared by every test module; Hypothesis strategies live in strategies.py.

Each generator takes a ``random.Random`` (or uses a fresh one) so tests can be reproducible.
"""

from __future__ import annotations

import base64
import random as _random
import string

from ipykeyguard.validators import base62_crc32

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
