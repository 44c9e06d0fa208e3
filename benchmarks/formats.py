"""Fake keys drawn from the providers' documented formats, written independently of ``rules.toml``.

Every generator here takes a seeded :class:`random.Random` and returns a :class:`Plant`: one
fake key and how it is written down in a notebook. The shapes come from the providers' own
documentation or announcements (``SOURCES`` names the page for each family; ``docs/DETECTION.md``
lists them), never from this project's rules, so the benchmark measures the rules against the
formats rather than against themselves. Nothing here imports ``ipykeyguard``: checksums are
computed with ``zlib`` from the providers' published constructions.

Keys are fake: where a format leaves room the random part carries ``FAKE``; private keys are
DER structures of the right shape filled with random bytes (not usable keys).
"""

from __future__ import annotations

import base64
import json
import random
import string
import struct
import zlib
from dataclasses import dataclass, field
from typing import Callable

__all__ = ["Plant", "FAMILIES", "SOURCES", "TOKEN", "CONTEXT", "MULTILINE"]

ALNUM = string.ascii_letters + string.digits
URLSAFE = ALNUM + "-_"
HEX = "0123456789abcdef"
B64 = ALNUM + "+/"
UPPER_B32 = string.ascii_uppercase + "234567"
BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
BASE36 = "0123456789abcdefghijklmnopqrstuvwxyz"

TOKEN, CONTEXT, MULTILINE = "token", "context", "multiline"


@dataclass
class Plant:
    """One fake key and how it is written down.

    Attributes:
        family: Provider family (``openai``, ``aws-secret-access-key``...).
        secret: The key as a scanner should cut it.
        kind: ``token`` (self-identifying, may appear bare), ``context`` (needs the text around
            it, given in ``code``/``text``) or ``multiline`` (a PEM block or a JSON document).
        env: The environment-variable name the key belongs under.
        code: How it appears in a code cell (``None``: built from ``secret`` by the location).
        text: How it appears in prose and outputs (``None``: the bare secret).
        alternates: Other cuts a scanner may reasonably report (a URL's password, the whole URL).
        variant: Which documented shape of the family this is (for per-variant recall).
    """

    family: str
    secret: str
    kind: str
    env: str
    code: str | None = None
    text: str | None = None
    alternates: list[str] = field(default_factory=list)
    variant: str = ""

    def cuts(self) -> list[str]:
        """Every string a scanner may report for this key (the secret first)."""
        out = [self.secret] + [a for a in self.alternates if a and a != self.secret]
        return list(dict.fromkeys(out))


def _chars(rng: random.Random, n: int, alphabet: str = ALNUM) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def _fake(rng: random.Random, n: int, alphabet: str = ALNUM) -> str:
    """``n`` random characters with ``FAKE`` at a random place (when the alphabet allows it)."""
    if n < 8 or not set("FAKE") <= set(alphabet):
        return _chars(rng, n, alphabet)
    at = rng.randrange(0, n - 4)
    return _chars(rng, at, alphabet) + "FAKE" + _chars(rng, n - at - 4, alphabet)


def _bytes(rng: random.Random, n: int) -> bytes:
    return bytes(rng.getrandbits(8) for _ in range(n))


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _token(family: str, secret: str, env: str, variant: str = "") -> Plant:
    return Plant(family, secret, TOKEN, env, variant=variant)


def _ctx(family, secret, env, code, text=None, alternates=(), variant="") -> Plant:
    return Plant(family, secret, CONTEXT, env, code, text if text is not None else code, list(alternates), variant)


def _crc32(data: str) -> int:
    return zlib.crc32(data.encode("ascii")) & 0xFFFFFFFF


def _base_n(value: int, alphabet: str, width: int) -> str:
    digits = []
    while value:
        value, rem = divmod(value, len(alphabet))
        digits.append(alphabet[rem])
    return "".join(reversed(digits)).rjust(width, alphabet[0])


# ---------------------------------------------------------------------------------------------
# AI providers
# ---------------------------------------------------------------------------------------------


def gen_openai(rng):
    """Project (``sk-proj-``), service-account (``sk-svcacct-``), admin (``sk-admin-``) and user
    (legacy ``sk-``) keys, with and without the ``T3BlbkFJ`` marker (base64 of ``OpenAI``)."""
    prefix = rng.choice(["sk-proj-", "sk-svcacct-", "sk-admin-", "sk-"])
    marked = prefix == "sk-" or rng.random() < 0.5
    if prefix == "sk-":
        # Legacy user keys: 48 alphanumerics with the marker at characters 20-27.
        key = "sk-" + _fake(rng, 20) + "T3BlbkFJ" + _chars(rng, 20)
    elif marked:
        half = rng.choice([20, 58, 74])
        key = prefix + _fake(rng, half, URLSAFE) + "T3BlbkFJ" + _chars(rng, half, URLSAFE)
    else:
        key = prefix + _fake(rng, rng.choice([56, 64, 100, 156]), URLSAFE)
    return _token("openai", key, "OPENAI_API_KEY", f"{prefix.rstrip('-')}{'' if marked else ' (no marker)'}")


def gen_anthropic(rng):
    kind = rng.choice(["api03", "admin01"])
    return _token("anthropic", f"sk-ant-{kind}-" + _fake(rng, 93, URLSAFE) + "AA", "ANTHROPIC_API_KEY", kind)


def gen_google(rng):
    return _token("google-api-key", "AIza" + _fake(rng, 35, URLSAFE), "GOOGLE_API_KEY")


def gen_huggingface(rng):
    return _token("huggingface", "hf_" + _fake(rng, 34, string.ascii_letters), "HF_TOKEN")


def gen_groq(rng):
    return _token("groq", "gsk_" + _fake(rng, 52), "GROQ_API_KEY")


def gen_mistral(rng):
    key = _fake(rng, 32)
    return _ctx("mistral", key, "MISTRAL_API_KEY", f'client = Mistral(api_key="{key}")', f"MISTRAL_API_KEY={key}")


def gen_cohere(rng):
    key = _fake(rng, 40)
    return _ctx("cohere", key, "COHERE_API_KEY", f'co = cohere.ClientV2(api_key="{key}")', f"CO_API_KEY={key}")


def gen_replicate(rng):
    return _token("replicate", "r8_" + _fake(rng, 37), "REPLICATE_API_TOKEN")


def gen_openrouter(rng):
    return _token("openrouter", "sk-or-v1-" + _chars(rng, 64, HEX), "OPENROUTER_API_KEY")


def gen_perplexity(rng):
    return _token("perplexity", "pplx-" + _fake(rng, 48), "PERPLEXITY_API_KEY")


def gen_xai(rng):
    return _token("xai", "xai-" + _fake(rng, 80), "XAI_API_KEY")


def gen_together(rng):
    key = _chars(rng, 64, HEX)
    return _ctx("together", key, "TOGETHER_API_KEY", f'client = Together(api_key="{key}")', f"TOGETHER_API_KEY={key}")


def gen_deepseek(rng):
    key = "sk-" + _chars(rng, 32, HEX)
    return _ctx("deepseek", key, "DEEPSEEK_API_KEY",
                f'client = OpenAI(api_key="{key}", base_url="https://api.deepseek.com")', f"DEEPSEEK_API_KEY={key}")


def gen_pinecone(rng):
    return _token("pinecone", "pcsk_" + _chars(rng, 6) + "_" + _fake(rng, 63), "PINECONE_API_KEY")


def gen_langsmith(rng):
    kind = rng.choice(["pt", "sk"])
    return _token("langsmith", f"lsv2_{kind}_" + _chars(rng, 32, HEX) + "_" + _chars(rng, 10, HEX), "LANGSMITH_API_KEY", kind)


def gen_wandb(rng):
    key = _chars(rng, 40, HEX)
    return _ctx("wandb", key, "WANDB_API_KEY", f'wandb.login(key="{key}")', f"WANDB_API_KEY={key}")


def gen_kaggle(rng):
    key = _chars(rng, 32, HEX)
    doc = json.dumps({"username": "fakeanalyst", "key": key})
    return _ctx("kaggle", key, "KAGGLE_KEY", f"kaggle_json = '{doc}'", doc)


# ---------------------------------------------------------------------------------------------
# Clouds
# ---------------------------------------------------------------------------------------------


def gen_aws_key_id(rng):
    prefix = rng.choice(["AKIA", "ASIA"])
    return _token("aws-access-key-id", prefix + _fake(rng, 16, UPPER_B32), "AWS_ACCESS_KEY_ID", prefix)


def _aws_secret(rng) -> str:
    while True:  # 40 characters of base64's alphabet; a real one mixes cases and digits
        s = _fake(rng, 40, B64)
        if any(c.isupper() for c in s) and any(c.islower() for c in s) and any(c.isdigit() for c in s):
            return s


def gen_aws_secret(rng):
    """An AWS secret access key anywhere near an AWS context, not only beside its key id."""
    key_id = "AKIA" + _fake(rng, 16, UPPER_B32)
    secret = _aws_secret(rng)
    shapes = [
        ("boto3 kwargs", f's3 = boto3.client("s3", aws_access_key_id="{key_id}", aws_secret_access_key="{secret}")',
         f"aws_access_key_id = {key_id}\naws_secret_access_key = {secret}"),
        ("boto3 session, id from env",
         f'session = boto3.Session(\n    aws_access_key_id=os.environ["AWS_ACCESS_KEY_ID"],\n    aws_secret_access_key="{secret}",\n)',
         f"[default]\naws_secret_access_key = {secret}\nregion = eu-west-1"),
        ("s3fs secret=", f'fs = s3fs.S3FileSystem(key=os.environ["AWS_ACCESS_KEY_ID"], secret="{secret}")',
         f"S3FileSystem(key='...', secret='{secret}')"),
        ("pandas storage_options",
         f'df = pd.read_parquet("s3://fake-bucket/data.parquet", storage_options={{"key": KEY_ID, "secret": "{secret}"}})',
         f'storage_options={{"key": KEY_ID, "secret": "{secret}"}} for s3://fake-bucket'),
        ("env", f'os.environ["AWS_SECRET_ACCESS_KEY"] = "{secret}"', f"AWS_SECRET_ACCESS_KEY={secret}"),
        ("boto3 positional", f'client = boto3.client("s3", "us-east-1", None, None, "{key_id}", "{secret}")',
         f"{key_id},{secret}"),
    ]
    variant, code, text = rng.choice(shapes)
    return _ctx("aws-secret-access-key", secret, "AWS_SECRET_ACCESS_KEY", code, text, variant=variant)


def gen_azure_storage(rng):
    account_key = base64.b64encode(b"FAKE" + _bytes(rng, 60)).decode()
    conn = (
        "DefaultEndpointsProtocol=https;AccountName=fakebenchstore;"
        f"AccountKey={account_key};EndpointSuffix=core.windows.net"
    )
    return _ctx("azure-storage-connection-string", account_key, "AZURE_STORAGE_CONNECTION_STRING",
                f'conn_str = "{conn}"', conn, [conn])


def gen_azure_ad(rng):
    secret = _chars(rng, 3) + rng.choice(string.digits) + "Q~" + _fake(rng, 34, ALNUM + "_~.-")
    return _ctx("azure-ad-client-secret", secret, "AZURE_CLIENT_SECRET",
                f'credential = ClientSecretCredential(tenant_id, client_id, client_secret="{secret}")',
                f"AZURE_CLIENT_SECRET={secret}")


def gen_azure_devops(rng):
    """84 characters: 52 random, a fixed ``AZDO`` signature at positions 76-80 (new format,
    2024); the legacy PAT is 52 lowercase base32 characters and needs its name."""
    if rng.random() < 0.7:
        pat = _fake(rng, 76) + "AZDO" + _chars(rng, 4)
        return _token("azure-devops-pat", pat, "AZURE_DEVOPS_PAT", "84-char AZDO")
    pat = _chars(rng, 52, string.ascii_lowercase + "234567")
    return _ctx("azure-devops-pat", pat, "AZURE_DEVOPS_PAT", f'AZURE_DEVOPS_PAT = "{pat}"',
                f"AZURE_DEVOPS_EXT_PAT={pat}", variant="legacy 52")


def gen_gcp_service_account(rng):
    pem = pem_block("PRIVATE KEY", pkcs8_rsa_der(rng)) + "\n"
    key_id = _chars(rng, 40, HEX)
    doc = {
        "type": "service_account",
        "project_id": "fake-project-" + _chars(rng, 6, string.ascii_lowercase + string.digits),
        "private_key_id": key_id,
        "private_key": pem,
        "client_email": "bench-runner@fake-project.iam.gserviceaccount.com",
        "client_id": _chars(rng, 21, string.digits),
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": "https://oauth2.googleapis.com/token",
    }
    text = json.dumps(doc, indent=2)  # newlines in the key written as \n, as in the file Google gives
    escaped = json.dumps(pem)[1:-1]
    body = "".join(ln for ln in pem.splitlines() if not ln.startswith("-----"))
    code = rng.choice([
        f"sa_info = json.loads(r'''{text}''')",
        f"credentials = service_account.Credentials.from_service_account_info({json.dumps(doc)})",
    ])
    return Plant("gcp-service-account", pem, MULTILINE, "GOOGLE_APPLICATION_CREDENTIALS", code, text,
                 [pem.rstrip("\n"), escaped, escaped.removesuffix("\\n"), body, key_id, text])


def gen_cloudflare(rng):
    """2026 scannable formats: ``cfk_`` / ``cfut_`` / ``cfat_`` + 40 alphanumerics + an 8-hex
    checksum (CRC32 of the 40 characters)."""
    prefix = rng.choice(["cfk_", "cfut_", "cfat_"])
    body = _fake(rng, 40)
    return _token("cloudflare", prefix + body + f"{_crc32(body):08x}", "CLOUDFLARE_API_TOKEN", prefix)


def gen_digitalocean(rng):
    return _token("digitalocean", rng.choice(["dop_v1_", "doo_v1_", "dor_v1_"]) + _chars(rng, 64, HEX), "DIGITALOCEAN_TOKEN")


def gen_databricks(rng):
    return _token("databricks", "dapi" + _chars(rng, 32, HEX), "DATABRICKS_TOKEN")


def gen_doppler(rng):
    kind = rng.choice(["pt", "ct", "st", "sa", "said", "scim", "audit"])
    env = f"{rng.choice(['dev', 'stg', 'prd', 'ci-runner'])}." if kind == "st" and rng.random() < 0.7 else ""
    return _token("doppler", f"dp.{kind}.{env}" + _fake(rng, rng.randint(40, 44)), "DOPPLER_TOKEN", kind)


# ---------------------------------------------------------------------------------------------
# Code hosting and packages
# ---------------------------------------------------------------------------------------------


def gen_github_classic(rng):
    """``gh[pousr]_`` + 30 random base62 + their base62 CRC32 (6); GitHub App installation
    tokens since 2026 also come as ``ghs_<app id>_<JWT>`` (about 520 characters)."""
    if rng.random() < 0.2:
        header = _b64url(json.dumps({"alg": "RS256", "typ": "JWT"}).encode())
        payload = _b64url(json.dumps({"iss": "github", "app": rng.randint(10**4, 10**7), "inst": rng.randint(10**6, 10**9),
                                      "exp": rng.randint(1_770_000_000, 1_800_000_000), "perm": _fake(rng, 180)}).encode())
        token = f"ghs_{rng.randint(10**4, 10**7)}_{header}.{payload}.{_chars(rng, 342, URLSAFE)}"
        return _token("github-classic", token, "GITHUB_TOKEN", "ghs_ stateless")
    body = _fake(rng, 30)
    prefix = rng.choice(["ghp_", "gho_", "ghu_", "ghs_", "ghr_"])
    return _token("github-classic", prefix + body + _base_n(_crc32(body), BASE62, 6), "GITHUB_TOKEN", prefix)


def gen_github_fine_grained(rng):
    return _token("github-fine-grained", "github_pat_11" + _fake(rng, 20) + "_" + _chars(rng, 59), "GITHUB_TOKEN")


def gen_gitlab(rng):
    """Legacy ``glpat-`` + 20 characters, and routable tokens: prefix, base64url payload (16
    random bytes, the routing facts, their length byte), ``.01.``, the payload length in
    base36 (2 characters) and a base36 CRC32 of everything before it (7 characters)."""
    if rng.random() < 0.35:
        return _token("gitlab", "glpat-" + _fake(rng, 20, URLSAFE), "GITLAB_TOKEN", "legacy")
    prefix = rng.choice(["glpat-", "gldt-", "glrt-", "glptt-", "glft-"])
    routing = f"o:{rng.randint(1, 10**8):x}\nu:{rng.randint(1, 10**8):x}\n".encode()
    payload = _b64url(_bytes(rng, 16) + routing + bytes([len(routing)]))
    runner = f"t{rng.randint(1, 3)}_" if prefix == "glrt-" else ""  # runner tokens: glrt-t<n>_
    head = f"{prefix}{runner}{payload}.01.{_base_n(len(payload), BASE36, 2)}"
    token = head + _base_n(_crc32(head), BASE36, 7)
    return _token("gitlab", token, "GITLAB_TOKEN", f"routable {prefix}")


def gen_npm(rng):
    body = _fake(rng, 30)
    return _token("npm", "npm_" + body + _base_n(_crc32(body), BASE62, 6), "NPM_TOKEN")


def gen_pypi(rng):
    # A binary v2 macaroon located at pypi.org: version, location, identifier, end of section,
    # end of caveats, a 32-byte signature.
    ident = b'{"version": 1, "nonce": "FAKE' + _chars(rng, 16, HEX).encode() + b'"}'
    raw = (b"\x02" + b"\x01\x08pypi.org" + b"\x02" + bytes([len(ident)]) + ident + b"\x00" + b"\x00"
           + b"\x06\x20" + _bytes(rng, 32))
    return _token("pypi", "pypi-" + _b64url(raw), "PYPI_TOKEN")


def gen_dockerhub(rng):
    return _token("dockerhub", "dckr_pat_" + _fake(rng, 27, URLSAFE), "DOCKERHUB_TOKEN")


# ---------------------------------------------------------------------------------------------
# Payments, messaging, monitoring
# ---------------------------------------------------------------------------------------------


def gen_stripe(rng):
    prefix = rng.choice(["sk_live_", "rk_live_", "sk_test_", "rk_test_"])
    return _token("stripe", prefix + "51" + _fake(rng, rng.choice([22, 97])), "STRIPE_API_KEY", prefix)


def gen_slack_token(rng):
    kind = rng.choice(["xoxb", "xoxp", "xapp"])
    if kind == "xoxb":
        key = "xoxb-" + _chars(rng, 12, string.digits) + "-" + _chars(rng, 13, string.digits) + "-" + _fake(rng, 24)
    elif kind == "xoxp":
        key = "xoxp-" + "-".join(_chars(rng, n, string.digits) for n in (12, 12, 13)) + "-" + _chars(rng, 32, HEX)
    else:
        key = "xapp-1-A" + _chars(rng, 10, string.ascii_uppercase + string.digits) + "-" + _chars(rng, 13, string.digits) + "-" + _chars(rng, 64, HEX)
    return _token("slack-token", key, "SLACK_TOKEN", kind)


def gen_slack_webhook(rng):
    tail = _fake(rng, 24)
    url = ("https://hooks.slack.com/services/T" + _chars(rng, 10, string.ascii_uppercase + string.digits)
           + "/B" + _chars(rng, 10, string.ascii_uppercase + string.digits) + "/" + tail)
    plant = _token("slack-webhook", url, "SLACK_WEBHOOK_URL")
    plant.alternates = [tail, url.removeprefix("https://")]
    return plant


def gen_twilio_api_key(rng):
    return _token("twilio-api-key", "SK" + _chars(rng, 32, HEX), "TWILIO_API_KEY")


def gen_twilio_auth_token(rng):
    token = _chars(rng, 32, HEX)
    return _ctx("twilio-auth-token", token, "TWILIO_AUTH_TOKEN",
                f'client = Client("AC{_chars(rng, 32, HEX)}", "{token}")', f"TWILIO_AUTH_TOKEN={token}")


def gen_sendgrid(rng):
    return _token("sendgrid", "SG." + _fake(rng, 22, URLSAFE) + "." + _chars(rng, 43, URLSAFE), "SENDGRID_API_KEY")


def gen_mailgun(rng):
    """Legacy ``key-`` + 32 hex; the newer private API keys are 32 hex, then the key id
    (two groups of 8 hex, as the Keys API lists it)."""
    if rng.random() < 0.4:
        key, variant = "key-" + _chars(rng, 32, HEX), "key-"
    else:
        key, variant = _chars(rng, 32, HEX) + "-" + _chars(rng, 8, HEX) + "-" + _chars(rng, 8, HEX), "hex-id"
    code, text = rng.choice([
        (f'MAILGUN_API_KEY = "{key}"', f"MAILGUN_API_KEY={key}"),
        (f'requests.post("https://api.mailgun.net/v3/fake.example/messages", auth=("api", "{key}"), data=msg)',
         f"mailgun api key: {key}"),
    ])
    return _ctx("mailgun", key, "MAILGUN_API_KEY", code, text, variant=variant)


def gen_telegram(rng):
    token = _chars(rng, 10, string.digits) + ":AA" + _fake(rng, 33, URLSAFE)
    return _ctx("telegram-bot-token", token, "TELEGRAM_BOT_TOKEN", f'TELEGRAM_BOT_TOKEN = "{token}"', f"TELEGRAM_BOT_TOKEN={token}")


def gen_discord_token(rng):
    """Three parts: base64 of the bot's user id (a snowflake of 17-20 digits), base64url of a
    4-byte creation time (6 characters), and an HMAC (27 characters, 38 in current tokens)."""
    user_id = str(rng.randint(10**16, 2 * 10**19 - 1))
    first = base64.b64encode(user_id.encode()).decode().rstrip("=")
    created = rng.randint(1_480_000_000, 1_800_000_000)  # 2016-2027
    # Tokens from before 2022 carry Unix seconds; newer ones seconds since 2011-01-01.
    stamp = _b64url(struct.pack(">I", created if created < 1_640_000_000 and rng.random() < 0.5 else created - 1_293_840_000))
    token = f"{first}.{stamp}.{_fake(rng, rng.choice([27, 38]), URLSAFE)}"
    plant = _token("discord-bot-token", token, "DISCORD_TOKEN")
    if rng.random() < 0.5:  # as the bot libraries take it
        plant.code, plant.text, plant.kind = f"client.run('{token}')", f"DISCORD_TOKEN={token}", CONTEXT
    return plant


def gen_discord_webhook(rng):
    tail = _fake(rng, 68, URLSAFE)
    url = "https://discord.com/api/webhooks/" + _chars(rng, 19, string.digits) + "/" + tail
    plant = _token("discord-webhook", url, "DISCORD_WEBHOOK_URL")
    plant.alternates = [tail]
    return plant


def gen_sentry(rng):
    """User tokens ``sntryu_`` + 64 hex; organization tokens ``sntrys_`` + base64 JSON facts
    + ``_`` + base64 of 32 random bytes."""
    if rng.random() < 0.5:
        return _token("sentry", "sntryu_" + _chars(rng, 64, HEX), "SENTRY_AUTH_TOKEN", "sntryu_")
    facts = {"iat": rng.randint(1_700_000_000, 1_800_000_000) + 0.5, "url": "https://sentry.io",
             "region_url": "https://us.sentry.io", "org": "fake-org-" + _chars(rng, 4, string.ascii_lowercase)}
    payload = base64.b64encode(json.dumps(facts, separators=(",", ":")).encode()).decode()
    secret = base64.b64encode(b"FAKE" + _bytes(rng, 28)).decode().rstrip("=")
    return _token("sentry", f"sntrys_{payload}_{secret}", "SENTRY_AUTH_TOKEN", "sntrys_")


def gen_grafana(rng):
    """Service-account tokens ``glsa_`` + 32 alphanumerics + ``_`` + the CRC32 of everything
    before it, little-endian hex; Cloud access-policy tokens ``glc_`` + base64 of a JSON
    object."""
    if rng.random() < 0.5:
        head = "glsa_" + _fake(rng, 32)
        return _token("grafana", head + "_" + _crc32(head).to_bytes(4, "little").hex(), "GRAFANA_TOKEN", "glsa_")
    facts = {"o": str(rng.randint(10**5, 10**7)), "n": "fake-policy-" + _chars(rng, 4, string.ascii_lowercase),
             "k": _chars(rng, 24), "m": {"r": rng.choice(["prod-us-east-0", "prod-eu-west-2"])}}
    return _token("grafana", "glc_" + base64.b64encode(json.dumps(facts, separators=(",", ":")).encode()).decode(),
                  "GRAFANA_TOKEN", "glc_")


# ---------------------------------------------------------------------------------------------
# Private keys (RFC 7468 PEM labels; PKCS#1, SEC1, PKCS#8, OpenSSH)
# ---------------------------------------------------------------------------------------------


def _der(tag: int, body: bytes) -> bytes:
    n = len(body)
    if n < 0x80:
        return bytes([tag, n]) + body
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(size)]) + size + body


def _int(rng, nbytes: int) -> bytes:
    raw = bytearray(_bytes(rng, nbytes))
    raw[0] = (raw[0] & 0x7F) | 0x40  # positive, full length
    return _der(0x02, bytes(raw))


_SEQ, _OCTETS, _NULL_ = 0x30, 0x04, b"\x05\x00"
_OID_RSA = bytes.fromhex("06092a864886f70d010101")
_OID_EC = bytes.fromhex("06072a8648ce3d0201")
_OID_P256 = bytes.fromhex("06082a8648ce3d030107")
_OID_DSA = bytes.fromhex("06072a8648ce380401")
_OID_PBES2 = bytes.fromhex("06092a864886f70d01050d")


def pkcs1_rsa_der(rng, bits: int = 2048) -> bytes:
    """RSAPrivateKey (RFC 8017): version and eight integers of the sizes a key has."""
    n = bits // 8
    parts = [b"\x02\x01\x00", _int(rng, n), _der(0x02, b"\x01\x00\x01"), _int(rng, n)]
    parts += [_int(rng, n // 2) for _ in range(5)]
    return _der(_SEQ, b"".join(parts))


def sec1_ec_der(rng) -> bytes:
    """ECPrivateKey (RFC 5915) on P-256: version 1, 32-byte key, curve OID, public point."""
    return _der(_SEQ, b"\x02\x01\x01" + _der(_OCTETS, _bytes(rng, 32)) + _der(0xA0, _OID_P256)
                + _der(0xA1, _der(0x03, b"\x00\x04" + _bytes(rng, 64))))


def pkcs8_rsa_der(rng) -> bytes:
    return _der(_SEQ, b"\x02\x01\x00" + _der(_SEQ, _OID_RSA + _NULL_) + _der(_OCTETS, pkcs1_rsa_der(rng)))


def pkcs8_ec_der(rng) -> bytes:
    inner = _der(_SEQ, b"\x02\x01\x01" + _der(_OCTETS, _bytes(rng, 32)) + _der(0xA1, _der(0x03, b"\x00\x04" + _bytes(rng, 64))))
    return _der(_SEQ, b"\x02\x01\x00" + _der(_SEQ, _OID_EC + _OID_P256) + _der(_OCTETS, inner))


def dsa_der(rng) -> bytes:
    return _der(_SEQ, b"\x02\x01\x00" + _int(rng, 128) + _int(rng, 20) + _int(rng, 128) + _int(rng, 128) + _int(rng, 20))


def encrypted_pkcs8_der(rng) -> bytes:
    algo = _der(_SEQ, _OID_PBES2 + _der(_SEQ, _der(_SEQ, bytes.fromhex("06092a864886f70d01050c")
                                                    + _der(_SEQ, _der(_OCTETS, _bytes(rng, 16)) + b"\x02\x02\x08\x00"))))
    return _der(_SEQ, algo + _der(_OCTETS, _bytes(rng, 1232)))


def openssh_blob(rng) -> bytes:
    """An ``openssh-key-v1`` container (PROTOCOL.key) holding one unencrypted ed25519 key."""

    def s(b: bytes) -> bytes:
        return struct.pack(">I", len(b)) + b

    pub = s(b"ssh-ed25519") + s(_bytes(rng, 32))
    check = _bytes(rng, 4)
    priv = check + check + pub + s(_bytes(rng, 64)) + s(b"FAKE@bench")
    priv += bytes(range(1, 1 + (-len(priv) % 8)))
    return b"openssh-key-v1\x00" + s(b"none") + s(b"none") + s(b"") + struct.pack(">I", 1) + s(pub) + s(priv)


def pem_block(label: str, der: bytes, width: int = 64) -> str:
    body = base64.b64encode(der).decode()
    lines = [body[i : i + width] for i in range(0, len(body), width)]
    return f"-----BEGIN {label}-----\n" + "\n".join(lines) + f"\n-----END {label}-----"


_PEM_KINDS = {
    "rsa-pkcs1": ("RSA PRIVATE KEY", pkcs1_rsa_der),
    "ec-sec1": ("EC PRIVATE KEY", sec1_ec_der),
    "pkcs8-rsa": ("PRIVATE KEY", pkcs8_rsa_der),
    "pkcs8-ec": ("PRIVATE KEY", pkcs8_ec_der),
    "dsa": ("DSA PRIVATE KEY", dsa_der),
    "pkcs8-encrypted": ("ENCRYPTED PRIVATE KEY", encrypted_pkcs8_der),
    "openssh": ("OPENSSH PRIVATE KEY", openssh_blob),
}


def gen_private_key(rng):
    """Every PEM private-key kind, written as a block, a triple-quoted string or a one-line
    string with ``\\n`` escapes (as pasted into code or JSON)."""
    variant = rng.choice(sorted(_PEM_KINDS))
    label, make = _PEM_KINDS[variant]
    block = pem_block(label, make(rng), 70 if variant == "openssh" else 64)
    body = "".join(ln for ln in block.splitlines() if not ln.startswith("-----"))
    escaped = block.replace("\n", "\\n")
    env = "SSH_PRIVATE_KEY" if variant == "openssh" else "PRIVATE_KEY"
    style = rng.choice(["triple", "escaped", "json"])
    if style == "triple":
        code = f'{env} = """{block}\n"""'
    elif style == "escaped":
        code = f'{env} = "{escaped}\\n"'
    else:
        code = "creds = json.loads('" + json.dumps({"private_key": block + "\n", "kid": _chars(rng, 16, HEX)}) + "')"
    plant = Plant("private-key", block, MULTILINE, env, code, None,
                  [block + "\n", escaped, escaped + "\\n", body, "\n".join(block.splitlines()[1:-1])], variant)
    return plant


# ---------------------------------------------------------------------------------------------
# Tokens, URLs and generic assignments
# ---------------------------------------------------------------------------------------------


def gen_jwt(rng):
    header = _b64url(json.dumps({"alg": rng.choice(["HS256", "RS256", "ES256"]), "typ": "JWT"}).encode())
    payload = _b64url(json.dumps({"sub": "FAKE-" + _chars(rng, 12), "name": "Fake User",
                                  "iat": rng.randint(1_600_000_000, 1_800_000_000)}).encode())
    return _token("jwt", f"{header}.{payload}.{_chars(rng, rng.choice([43, 86]), URLSAFE)}", "JWT")


def gen_generic_assignment(rng):
    """A value bound to a secret-like name, in the encodings people paste: alphanumerics,
    base64 (with ``+``, ``/`` and padding) and hex."""
    name = rng.choice(["api_key", "API_KEY", "secret_key", "client_secret", "auth_token", "service_token", "token", "apiKey"])
    encoding = rng.choice(["alnum", "base64", "hex"])
    if encoding == "alnum":
        value = _fake(rng, 32)
    elif encoding == "base64":
        value = base64.b64encode(b"FAKE" + _bytes(rng, rng.choice([20, 28, 32]))).decode()
    else:
        value = _chars(rng, rng.choice([32, 40, 64]), HEX)
    return _ctx("generic-assignment", value, name.upper(), f'{name} = "{value}"', f'{name}: "{value}"', variant=encoding)


def gen_generic_password(rng):
    value = _fake(rng, 8) + rng.choice("!#%") + _chars(rng, 10)
    return _ctx("generic-password", value, "DB_PASSWORD",
                f'conn = psycopg2.connect(host="db", user="analyst", password="{value}")', f'password = "{value}"')


def gen_generic_bearer(rng):
    value = _fake(rng, 40, URLSAFE)
    return _ctx("generic-bearer-header", value, "API_TOKEN",
                f'headers = {{"Authorization": "Bearer {value}"}}', f"Authorization: Bearer {value}")


def gen_db_url(rng):
    """Database URLs with a password (SQLAlchemy's ``dialect+driver://user:password@host``)."""
    password = _fake(rng, 16) + rng.choice(["", "!", "%40x", "~2"])
    scheme, user, host = rng.choice([
        ("postgresql", "analyst", "db.internal.acme-analytics.net:5432/warehouse"),
        ("postgresql+psycopg2", "etl", "10.20.0.7/warehouse"),
        ("mysql", "etl", "mysql.acme-analytics.net:3306/sales"),
        ("mysql+pymysql", "etl", "mysql.acme-analytics.net:3306/sales"),
        ("mysql+mysqlconnector", "reporting", "127.0.0.1:3306/reports"),
        ("mongodb+srv", "app", "cluster0.fake123.mongodb.net/?retryWrites=true"),
        ("snowflake", "fakebench", "xy12345.eu-west-1/ANALYTICS/PUBLIC?warehouse=COMPUTE_WH"),
    ])
    url = f"{scheme}://{user}:{password}@{host}"
    return _ctx("database-url-password", password, "DATABASE_URL", f'engine = create_engine("{url}")', url,
                [url, f"{user}:{password}", f"{scheme}://{user}:{password}@{host.split('/')[0]}"],
                variant=scheme.split("+")[0])


def gen_url_credential(rng):
    password = _fake(rng, 14)
    url = f"https://bench-bot:{password}@git.acme-analytics.net/data/pipeline.git"
    return _ctx("generic-url-credential", password, "GIT_PASSWORD", f'!git clone "{url}"', url,
                [url, f"bench-bot:{password}", f"https://bench-bot:{password}@git.acme-analytics.net"])


#: One generator per provider format family.
FAMILIES: dict[str, Callable[[random.Random], Plant]] = {
    "openai": gen_openai,
    "anthropic": gen_anthropic,
    "google-api-key": gen_google,
    "huggingface": gen_huggingface,
    "groq": gen_groq,
    "mistral": gen_mistral,
    "cohere": gen_cohere,
    "replicate": gen_replicate,
    "openrouter": gen_openrouter,
    "perplexity": gen_perplexity,
    "xai": gen_xai,
    "together": gen_together,
    "deepseek": gen_deepseek,
    "pinecone": gen_pinecone,
    "langsmith": gen_langsmith,
    "wandb": gen_wandb,
    "kaggle": gen_kaggle,
    "aws-access-key-id": gen_aws_key_id,
    "aws-secret-access-key": gen_aws_secret,
    "gcp-service-account": gen_gcp_service_account,
    "azure-storage-connection-string": gen_azure_storage,
    "azure-ad-client-secret": gen_azure_ad,
    "azure-devops-pat": gen_azure_devops,
    "cloudflare": gen_cloudflare,
    "digitalocean": gen_digitalocean,
    "databricks": gen_databricks,
    "doppler": gen_doppler,
    "database-url-password": gen_db_url,
    "github-classic": gen_github_classic,
    "github-fine-grained": gen_github_fine_grained,
    "gitlab": gen_gitlab,
    "npm": gen_npm,
    "pypi": gen_pypi,
    "dockerhub": gen_dockerhub,
    "stripe": gen_stripe,
    "slack-token": gen_slack_token,
    "slack-webhook": gen_slack_webhook,
    "twilio-api-key": gen_twilio_api_key,
    "twilio-auth-token": gen_twilio_auth_token,
    "sendgrid": gen_sendgrid,
    "mailgun": gen_mailgun,
    "telegram-bot-token": gen_telegram,
    "discord-bot-token": gen_discord_token,
    "discord-webhook": gen_discord_webhook,
    "sentry": gen_sentry,
    "grafana": gen_grafana,
    "private-key": gen_private_key,
    "jwt": gen_jwt,
    "generic-assignment": gen_generic_assignment,
    "generic-password": gen_generic_password,
    "generic-bearer-header": gen_generic_bearer,
    "generic-url-credential": gen_url_credential,
}

#: Where each family's format is published (the provider's page or announcement). Families
#: whose provider publishes no grammar say so and name what the shape rests on.
SOURCES: dict[str, str] = {
    "openai": "https://platform.openai.com/docs/api-reference/authentication and https://platform.openai.com/docs/api-reference/admin-api-keys (project, service-account, admin and user keys; prefixes as the dashboard issues them; no published length)",
    "anthropic": "https://docs.anthropic.com/en/api/getting-started and https://docs.anthropic.com/en/api/administration-api (sk-ant-api03-, sk-ant-admin01-; no published length)",
    "google-api-key": "https://cloud.google.com/docs/authentication/api-keys (AIza + 35)",
    "huggingface": "https://huggingface.co/docs/hub/security-tokens (hf_)",
    "groq": "https://console.groq.com/docs/quickstart (gsk_)",
    "mistral": "https://docs.mistral.ai/getting-started/quickstart/ (unprefixed 32; needs its name)",
    "cohere": "https://docs.cohere.com/reference/about (unprefixed 40; CO_API_KEY)",
    "replicate": "https://replicate.com/docs/topics/security/api-tokens (r8_)",
    "openrouter": "https://openrouter.ai/docs/api-reference/authentication (sk-or-v1- + 64 hex)",
    "perplexity": "https://docs.perplexity.ai/guides/getting-started (pplx-)",
    "xai": "https://docs.x.ai/docs/overview (xai-)",
    "together": "https://docs.together.ai/reference/authentication-1 (64 hex; needs its name)",
    "deepseek": "https://api-docs.deepseek.com/ (sk- + 32 hex with the DeepSeek base URL)",
    "pinecone": "https://docs.pinecone.io/guides/projects/manage-api-keys (pcsk_)",
    "langsmith": "https://docs.smith.langchain.com/administration/how_to_guides/organization_management/create_account_api_key (lsv2_pt_, lsv2_sk_)",
    "wandb": "https://docs.wandb.ai/guides/track/environment-variables (40 hex; WANDB_API_KEY)",
    "kaggle": "https://www.kaggle.com/docs/api (kaggle.json: username, key)",
    "aws-access-key-id": "https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_identifiers.html#identifiers-unique-ids (AKIA long-term, ASIA temporary)",
    "aws-secret-access-key": "https://docs.aws.amazon.com/IAM/latest/UserGuide/id_credentials_access-keys.html and https://docs.aws.amazon.com/cli/latest/userguide/cli-configure-files.html (40 characters; where boto3, s3fs and the CLI take it)",
    "gcp-service-account": "https://cloud.google.com/iam/docs/keys-create-delete (service-account JSON; private_key is PKCS#8 PEM with \\n escapes)",
    "azure-storage-connection-string": "https://learn.microsoft.com/azure/storage/common/storage-configure-connection-string (AccountKey: base64 of 64 bytes)",
    "azure-ad-client-secret": "https://learn.microsoft.com/entra/identity-platform/how-to-add-credentials (client secret; Q~ marker at 4-5)",
    "azure-devops-pat": "https://learn.microsoft.com/azure/devops/organizations/accounts/use-personal-access-tokens-to-authenticate and https://learn.microsoft.com/purview/sit-defn-azure-devops-personal-access-token (84 characters, AZDO at 76-80; legacy 52 base32)",
    "cloudflare": "https://developers.cloudflare.com/fundamentals/api/get-started/token-formats/ (cfk_, cfut_, cfat_ + 40 + checksum; the checksum is CRC32 of the 40 characters as 8 hex digits, checked against public tokens)",
    "digitalocean": "https://docs.digitalocean.com/reference/api/create-personal-access-token/ (dop_v1_, doo_v1_, dor_v1_ + 64 hex)",
    "databricks": "https://docs.databricks.com/dev-tools/auth/pat.html (dapi + 32 hex)",
    "doppler": "https://docs.doppler.com/docs/auth-token-formats (dp.pt., dp.ct., dp.st.[env.], dp.sa., dp.said., dp.scim., dp.audit. + 40-44)",
    "database-url-password": "https://docs.sqlalchemy.org/en/20/core/engines.html#database-urls (dialect+driver://user:password@host)",
    "github-classic": "https://github.blog/engineering/platform-security/behind-githubs-new-authentication-token-formats/ (gh[pousr]_ + 30 + base62 CRC32); https://github.blog/changelog/2026-04-24-notice-about-upcoming-new-format-for-github-app-installation-tokens/ (ghs_<app id>_<JWT>, ~520 characters)",
    "github-fine-grained": "https://github.blog/security/application-security/introducing-fine-grained-personal-access-tokens-for-github/ (github_pat_)",
    "gitlab": "https://docs.gitlab.com/security/tokens/ (token prefixes; routable tokens: payload, .01., base36 length and CRC32)",
    "npm": "https://github.blog/changelog/2021-09-23-npm-has-a-new-access-token-format/ (npm_ + 30 + base62 CRC32)",
    "pypi": "https://pypi.org/help/#apitoken (pypi- + base64url macaroon located at pypi.org)",
    "dockerhub": "https://docs.docker.com/security/for-developers/access-tokens/ (dckr_pat_)",
    "stripe": "https://docs.stripe.com/keys (sk_live_, rk_live_, sk_test_, rk_test_)",
    "slack-token": "https://api.slack.com/concepts/token-types (xoxb-, xoxp-, xapp-)",
    "slack-webhook": "https://api.slack.com/messaging/webhooks (hooks.slack.com/services/T.../B.../...)",
    "twilio-api-key": "https://www.twilio.com/docs/iam/api-keys (SK + 32 hex)",
    "twilio-auth-token": "https://www.twilio.com/docs/iam/api/account (32 hex auth token with the AC account sid)",
    "sendgrid": "https://www.twilio.com/docs/sendgrid/ui/account-and-settings/api-keys (SG.<22>.<43>)",
    "mailgun": "https://documentation.mailgun.com/docs/mailgun/api-reference/openapi-final/tag/Keys and https://help.mailgun.com/hc/en-us/articles/203380100 (key- + 32 hex; 32 hex + key id of two 8-hex groups)",
    "telegram-bot-token": "https://core.telegram.org/bots/api#authorizing-your-bot (<bot id>:<35>)",
    "discord-bot-token": "https://discord.com/developers/docs/reference#authentication; structure as the Discord libraries check it (Nostrum.Token: base64 user id . 6-char timestamp . HMAC; serenity utils::token)",
    "discord-webhook": "https://discord.com/developers/docs/resources/webhook (api/webhooks/<id>/<token>)",
    "sentry": "https://docs.sentry.io/security-legal-pii/security/token-formats/ (sntryu_ + 64 hex; sntrys_ + base64 JSON + _ + secret, Sentry RFC 0091)",
    "grafana": "https://grafana.com/docs/grafana/latest/administration/service-accounts/ and grafana/pkg/components/satokengen (glsa_ + 32 + _ + CRC32 little-endian hex); https://grafana.com/docs/grafana-cloud/security-and-account-management/authentication-and-permissions/access-policies/ (glc_ + base64 JSON)",
    "private-key": "RFC 7468 (PEM labels), RFC 8017 (PKCS#1), RFC 5915 (SEC1 EC), RFC 5958 (PKCS#8), OpenSSH PROTOCOL.key (openssh-key-v1)",
    "jwt": "RFC 7519 (base64url header.payload.signature)",
    "generic-assignment": "no provider: values bound to api_key / token / auth_token / client_secret names, alphanumeric, base64 and hex",
    "generic-password": "no provider: password= arguments (DB-API connect)",
    "generic-bearer-header": "RFC 6750 (Authorization: Bearer)",
    "generic-url-credential": "RFC 3986 section 3.2.1 (userinfo in a URL)",
}
