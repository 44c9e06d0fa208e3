"""A deterministic, realistic notebook corpus with planted fake keys and a ground-truth manifest.

Run ``python benchmarks/corpus.py OUTDIR -n 300`` (or call :func:`generate_corpus`). The
directory receives ``notebooks/nb_0000.ipynb`` ... and ``manifest.json``.

What the notebooks hold
    Background that every data-science notebook has and that a scanner must *not* flag: real
    matplotlib PNGs (a few dozen distinct plots rendered once and reused), pandas DataFrame HTML
    tables, ANSI-coloured tracebacks, long training logs with tqdm carriage returns, widget state
    with model ids, cell ids, markdown prose, ``pip`` output with ``--hash=sha256:`` lines, git
    SHAs, UUIDs and md5 checksums.

Planted keys
    Fake, format-exact keys generated at run time (seeded) for every provider family listed in
    issue 2 (hand-written generators below, independent of the rules) and one family per rule in
    ``ipykeyguard/rules.toml`` (``rule:<id>``: the rule's first example with its secret re-drawn
    character-class by character-class, checked against that rule). Each family is planted in
    every location it can naturally appear in (see ``LOCATIONS``). Checksummed formats carry
    correct checksums (``ipykeyguard.engine.validators``).

Hard negatives
    About a quarter of the notebooks carry no key at all but do carry placeholders
    (``YOUR_API_KEY``, ``sk-...``), vendor documentation examples (``AKIAIOSFODNN7EXAMPLE``),
    references (``os.environ[...]``, ``getpass()``), hashes, UUIDs, base64 data and widget ids.

The manifest lists, for every planted key, the file, the family, the location, the cell, the
field, and fingerprints: ``fingerprints`` (SHA-256 hex, as ``ipykeyguard`` reports them) of every
reasonable way a scanner may cut the secret (e.g. a database URL's password or the whole URL) and
``sha1`` of the same cuts (detect-secrets reports SHA-1). The manifest never holds a key.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import html
import io
import json
import random
import string
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ipykeyguard.engine.validators import base62_crc32

__all__ = ["GENERATOR_VERSION", "NOTEBOOK_DIR", "Plant", "FAMILIES", "LOCATIONS", "generate_corpus", "rules_digest"]

#: Notebooks go in this subdirectory of the corpus, the manifest beside it (so that a scan of
#: the notebooks never reads the manifest's fingerprints).
NOTEBOOK_DIR = "notebooks"

#: Bump when the corpus changes shape, so that cached corpora are regenerated.
GENERATOR_VERSION = 3

ALNUM = string.ascii_letters + string.digits
URLSAFE = ALNUM + "-_"
HEX = "0123456789abcdef"
UPPER_B32 = string.ascii_uppercase + "234567"


def _chars(rng: random.Random, n: int, alphabet: str = ALNUM) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _sha1(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()


# ---------------------------------------------------------------------------------------------
# Planted keys
# ---------------------------------------------------------------------------------------------

TOKEN, CONTEXT, MULTILINE = "token", "context", "multiline"


@dataclass
class Plant:
    """One fake key and how it is written down.

    Attributes:
        family: Provider family (``openai``, ``aws-secret-access-key``, ``rule:<id>``...).
        secret: The key as a rule's secret group would capture it.
        kind: ``token`` (self-identifying, may appear bare), ``context`` (needs the text around
            it, given in ``code``/``text``) or ``multiline`` (a PEM block or a JSON document).
        env: The environment-variable name the key belongs under.
        code: How it appears in a code cell (``None``: built from ``secret`` by the location).
        text: How it appears in prose and outputs (``None``: the bare secret).
        alternates: Other cuts a scanner may reasonably report (a URL's password, the whole URL).
    """

    family: str
    secret: str
    kind: str
    env: str
    code: str | None = None
    text: str | None = None
    alternates: list[str] = field(default_factory=list)

    def cuts(self) -> list[str]:
        out = [self.secret] + [a for a in self.alternates if a and a != self.secret]
        return list(dict.fromkeys(out))


def _token(family: str, secret: str, env: str) -> Plant:
    return Plant(family, secret, TOKEN, env)


def _ctx(family: str, secret: str, env: str, code: str, text: str | None = None, alternates=()) -> Plant:
    return Plant(family, secret, CONTEXT, env, code, text if text is not None else code, list(alternates))


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _pem(label: str, der: bytes, width: int = 64) -> str:
    body = base64.b64encode(der).decode()
    lines = [body[i : i + width] for i in range(0, len(body), width)]
    return f"-----BEGIN {label}-----\n" + "\n".join(lines) + f"\n-----END {label}-----"


def _fake_der(rng: random.Random, header: bytes, size: int) -> bytes:
    # A DER SEQUENCE header followed by random bytes with "FAKE" inside: structurally a key
    # body (the pem-der validator checks the SEQUENCE tag), useless as a key.
    rest = bytes(rng.getrandbits(8) for _ in range(size - len(header) - 4))
    return header + b"FAKE" + rest


def _pem_plant(family: str, label: str, der: bytes, env: str) -> Plant:
    block = _pem(label, der)
    body = "".join(ln for ln in block.splitlines() if not ln.startswith("-----"))
    return Plant(
        family, block, MULTILINE, env, None, None,
        [block + "\n", body, "\n".join(block.splitlines()[1:-1])],
    )


def _gen_openai(rng):
    flavour = rng.choice(["proj", "svcacct", "admin", "legacy"])
    if flavour == "legacy":
        key = "sk-FAKE" + _chars(rng, 16) + "T3BlbkFJ" + _chars(rng, 20)
    else:
        key = f"sk-{flavour}-FAKE" + _chars(rng, 70, URLSAFE) + "T3BlbkFJ" + _chars(rng, 74, URLSAFE)
    return _token("openai", key, "OPENAI_API_KEY")


def _gen_anthropic(rng):
    return _token("anthropic", "sk-ant-api03-FAKE" + _chars(rng, 89, URLSAFE) + "AA", "ANTHROPIC_API_KEY")


def _gen_google(rng):
    return _token("google-api-key", "AIzaFAKE" + _chars(rng, 31, URLSAFE), "GOOGLE_API_KEY")


def _gen_huggingface(rng):
    return _token("huggingface", "hf_FAKE" + _chars(rng, 30, string.ascii_letters), "HF_TOKEN")


def _gen_groq(rng):
    return _token("groq", "gsk_FAKE" + _chars(rng, 48), "GROQ_API_KEY")


def _gen_mistral(rng):
    key = "FAKE" + _chars(rng, 28)
    return _ctx("mistral", key, "MISTRAL_API_KEY", f'client = Mistral(api_key="{key}")', f"MISTRAL_API_KEY={key}")


def _gen_cohere(rng):
    key = "FAKE" + _chars(rng, 36)
    return _ctx("cohere", key, "COHERE_API_KEY", f'co = cohere.Client(api_key="{key}")', f"COHERE_API_KEY={key}")


def _gen_replicate(rng):
    return _token("replicate", "r8_FAKE" + _chars(rng, 33), "REPLICATE_API_TOKEN")


def _gen_openrouter(rng):
    return _token("openrouter", "sk-or-v1-" + _chars(rng, 64, HEX), "OPENROUTER_API_KEY")


def _gen_perplexity(rng):
    return _token("perplexity", "pplx-FAKE" + _chars(rng, 44), "PERPLEXITY_API_KEY")


def _gen_xai(rng):
    return _token("xai", "xai-FAKE" + _chars(rng, 76), "XAI_API_KEY")


def _gen_together(rng):
    key = _chars(rng, 64, HEX)
    return _ctx("together", key, "TOGETHER_API_KEY", f'TOGETHER_API_KEY = "{key}"', f"TOGETHER_API_KEY={key}")


def _gen_deepseek(rng):
    key = "sk-" + _chars(rng, 32, HEX)
    return _ctx(
        "deepseek", key, "DEEPSEEK_API_KEY",
        f'client = OpenAI(api_key="{key}", base_url="https://api.deepseek.com")',
        f"DEEPSEEK_API_KEY={key}",
    )


def _gen_pinecone(rng):
    return _token("pinecone", "pcsk_" + _chars(rng, 5) + "_FAKE" + _chars(rng, 59), "PINECONE_API_KEY")


def _gen_langsmith(rng):
    kind = rng.choice(["pt", "sk"])
    return _token("langsmith", f"lsv2_{kind}_" + _chars(rng, 32, HEX) + "_" + _chars(rng, 10, HEX), "LANGSMITH_API_KEY")


def _gen_wandb(rng):
    key = _chars(rng, 40, HEX)
    return _ctx("wandb", key, "WANDB_API_KEY", f'wandb.login(key="{key}")', f"WANDB_API_KEY={key}")


def _gen_kaggle(rng):
    key = _chars(rng, 32, HEX)
    doc = json.dumps({"username": "fakeanalyst", "key": key})
    return _ctx("kaggle", key, "KAGGLE_KEY", f"kaggle_json = '{doc}'", doc)


def _gen_aws_key_id(rng):
    return _token("aws-access-key-id", "AKIAFAKE" + _chars(rng, 12, UPPER_B32), "AWS_ACCESS_KEY_ID")


def _gen_aws_secret(rng):
    key_id = "AKIAFAKE" + _chars(rng, 12, UPPER_B32)
    secret = "FAKE" + _chars(rng, 36, ALNUM + "/+")
    code = f's3 = boto3.client("s3", aws_access_key_id="{key_id}", aws_secret_access_key="{secret}")'
    text = f"aws_access_key_id = {key_id}\naws_secret_access_key = {secret}"
    return _ctx("aws-secret-access-key", secret, "AWS_SECRET_ACCESS_KEY", code, text)


def _gen_gcp_service_account(rng):
    der = _fake_der(rng, bytes.fromhex("308204bd020100300d06092a864886f70d0101010500048204a7"), 1217)
    pem = _pem("PRIVATE KEY", der) + "\n"
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
    return Plant(
        "gcp-service-account", pem, MULTILINE, "GOOGLE_APPLICATION_CREDENTIALS",
        f"sa_info = json.loads(r'''{text}''')", text,
        [pem.rstrip("\n"), escaped, escaped.removesuffix("\\n"), body, key_id, text],
    )


def _gen_azure_storage(rng):
    account_key = base64.b64encode(b"FAKE" + bytes(rng.getrandbits(8) for _ in range(60))).decode()
    conn = (
        "DefaultEndpointsProtocol=https;AccountName=fakebenchstore;"
        f"AccountKey={account_key};EndpointSuffix=core.windows.net"
    )
    return _ctx(
        "azure-storage-connection-string", account_key, "AZURE_STORAGE_CONNECTION_STRING",
        f'conn_str = "{conn}"', conn, [conn],
    )


def _gen_azure_ad(rng):
    secret = _chars(rng, 3) + rng.choice(string.digits) + "Q~FAKE" + _chars(rng, 30, ALNUM + "_~.-")
    return _ctx(
        "azure-ad-client-secret", secret, "AZURE_CLIENT_SECRET",
        f'credential = ClientSecretCredential(tenant_id, client_id, client_secret="{secret}")',
        f"AZURE_CLIENT_SECRET={secret}",
    )


def _gen_digitalocean(rng):
    return _token("digitalocean", "dop_v1_" + _chars(rng, 64, HEX), "DIGITALOCEAN_TOKEN")


def _gen_databricks(rng):
    return _token("databricks", "dapi" + _chars(rng, 32, HEX), "DATABRICKS_TOKEN")


def _gen_db_url(rng):
    password = "FAKE" + _chars(rng, 16)
    scheme, user, host = rng.choice(
        [
            ("postgresql", "analyst", "db.internal.acme-analytics.net:5432/warehouse"),
            ("mysql+pymysql", "etl", "mysql.acme-analytics.net:3306/sales"),
            ("snowflake", "fakebench", "xy12345.eu-west-1/ANALYTICS/PUBLIC?warehouse=COMPUTE_WH"),
        ]
    )
    url = f"{scheme}://{user}:{password}@{host}"
    return _ctx(
        "database-url-password", password, "DATABASE_URL",
        f'engine = create_engine("{url}")', url,
        [url, f"{user}:{password}", f"{scheme}://{user}:{password}@{host.split('/')[0]}"],
    )


def _gen_github_classic(rng):
    body = "FAKE" + _chars(rng, 26)
    return _token("github-classic", rng.choice(["ghp_", "gho_", "ghu_", "ghs_", "ghr_"]) + body + base62_crc32(body), "GITHUB_TOKEN")


def _gen_github_fine_grained(rng):
    return _token("github-fine-grained", "github_pat_11FAKE" + _chars(rng, 16) + "_" + _chars(rng, 59), "GITHUB_TOKEN")


def _gen_gitlab(rng):
    if rng.random() < 0.5:
        key = "glpat-FAKE" + _chars(rng, 16, URLSAFE)
    else:  # routable token: payload, "." + 2-char version + 7-char base36 CRC
        key = "glpat-FAKE" + _chars(rng, 34, URLSAFE) + ".01" + _chars(rng, 7, string.digits + string.ascii_lowercase)
    return _token("gitlab", key, "GITLAB_TOKEN")


def _gen_npm(rng):
    body = "FAKE" + _chars(rng, 26)
    return _token("npm", "npm_" + body + base62_crc32(body), "NPM_TOKEN")


def _gen_pypi(rng):
    raw = b"\x02\x01\x08pypi.org\x02\x01\x00\x02\x2a" + b"[1,\"FAKE\"]" + bytes(rng.getrandbits(8) for _ in range(96))
    return _token("pypi", "pypi-" + _b64url(raw), "PYPI_TOKEN")


def _gen_dockerhub(rng):
    return _token("dockerhub", "dckr_pat_FAKE" + _chars(rng, 23, URLSAFE), "DOCKERHUB_TOKEN")


def _gen_stripe(rng):
    prefix = rng.choice(["sk_live_", "rk_live_", "sk_test_"])
    return _token("stripe", prefix + "51FAKE" + _chars(rng, rng.choice([18, 93])), "STRIPE_API_KEY")


def _gen_slack_token(rng):
    if rng.random() < 0.5:
        key = "xoxb-" + _chars(rng, 11, string.digits) + "-" + _chars(rng, 13, string.digits) + "-FAKE" + _chars(rng, 20)
    else:
        key = "xoxp-" + "-".join(_chars(rng, n, string.digits) for n in (11, 11, 13)) + "-" + _chars(rng, 32, HEX)
    return _token("slack-token", key, "SLACK_TOKEN")


def _gen_slack_webhook(rng):
    tail = "FAKE" + _chars(rng, 20)
    url = (
        "https://hooks.slack.com/services/T" + _chars(rng, 8, string.ascii_uppercase + string.digits)
        + "/B" + _chars(rng, 10, string.ascii_uppercase + string.digits) + "/" + tail
    )
    plant = _token("slack-webhook", url, "SLACK_WEBHOOK_URL")
    plant.alternates = [tail, url.removeprefix("https://")]
    return plant


def _gen_twilio_api_key(rng):
    return _token("twilio-api-key", "SK" + _chars(rng, 32, HEX), "TWILIO_API_KEY")


def _gen_twilio_auth_token(rng):
    token = _chars(rng, 32, HEX)
    return _ctx("twilio-auth-token", token, "TWILIO_AUTH_TOKEN", f'TWILIO_AUTH_TOKEN = "{token}"', f"TWILIO_AUTH_TOKEN={token}")


def _gen_sendgrid(rng):
    return _token("sendgrid", "SG.FAKE" + _chars(rng, 18, URLSAFE) + "." + _chars(rng, 43, URLSAFE), "SENDGRID_API_KEY")


def _gen_mailgun(rng):
    key = "key-" + _chars(rng, 32, HEX)
    return _ctx("mailgun", key, "MAILGUN_API_KEY", f'MAILGUN_API_KEY = "{key}"', f"MAILGUN_API_KEY={key}")


def _gen_telegram(rng):
    token = _chars(rng, 10, string.digits) + ":AAFAKE" + _chars(rng, 29, URLSAFE)
    return _ctx(
        "telegram-bot-token", token, "TELEGRAM_BOT_TOKEN",
        f'TELEGRAM_BOT_TOKEN = "{token}"', f"TELEGRAM_BOT_TOKEN={token}",
    )


def _gen_discord_token(rng):
    token = "M" + _chars(rng, 23) + "." + _chars(rng, 6, URLSAFE) + ".FAKE" + _chars(rng, 34, URLSAFE)
    return _ctx("discord-bot-token", token, "DISCORD_TOKEN", f'DISCORD_TOKEN = "{token}"', f"DISCORD_TOKEN={token}")


def _gen_discord_webhook(rng):
    tail = "FAKE" + _chars(rng, 64, URLSAFE)
    url = "https://discord.com/api/webhooks/" + _chars(rng, 18, string.digits) + "/" + tail
    plant = _token("discord-webhook", url, "DISCORD_WEBHOOK_URL")
    plant.alternates = [tail]
    return plant


def _gen_pem_rsa(rng):
    der = _fake_der(rng, bytes.fromhex("308204a40201000282010100"), 1192)
    return _pem_plant("pem-rsa-private-key", "RSA PRIVATE KEY", der, "PRIVATE_KEY")


def _gen_pem_ec(rng):
    der = _fake_der(rng, bytes.fromhex("30770201010420"), 121)
    return _pem_plant("pem-ec-private-key", "EC PRIVATE KEY", der, "PRIVATE_KEY")


def _gen_openssh(rng):
    raw = b"openssh-key-v1\x00" + b"\x00\x00\x00\x04none\x00\x00\x00\x04none" + b"FAKE" + bytes(
        rng.getrandbits(8) for _ in range(360)
    )
    return _pem_plant("openssh-private-key", "OPENSSH PRIVATE KEY", raw, "SSH_PRIVATE_KEY")


def _gen_jwt(rng):
    header = _b64url(b'{"alg":"HS256","typ":"JWT"}')
    payload = _b64url(('{"sub":"FAKE-%s","name":"Fake User","iat":1700000000}' % _chars(rng, 12)).encode())
    return _token("jwt", f"{header}.{payload}.{_chars(rng, 43, URLSAFE)}", "JWT")


def _gen_generic_assignment(rng):
    value = "FAKE" + _chars(rng, 28)
    name = rng.choice(["api_key", "API_KEY", "secret_key", "client_secret", "auth_token", "service_token"])
    return _ctx("generic-assignment", value, name.upper(), f'{name} = "{value}"', f'{name}: "{value}"')


def _gen_generic_password(rng):
    value = "FAKE" + _chars(rng, 4) + rng.choice("!#%") + _chars(rng, 10)
    return _ctx(
        "generic-password", value, "DB_PASSWORD",
        f'conn = psycopg2.connect(host="db", user="analyst", password="{value}")', f'password = "{value}"',
    )


def _gen_generic_bearer(rng):
    value = "FAKE" + _chars(rng, 36, URLSAFE)
    return _ctx(
        "generic-bearer-header", value, "API_TOKEN",
        f'headers = {{"Authorization": "Bearer {value}"}}', f"Authorization: Bearer {value}",
    )


def _gen_generic_url_credential(rng):
    password = "FAKE" + _chars(rng, 14)
    url = f"https://bench-bot:{password}@git.acme-analytics.net/data/pipeline.git"
    return _ctx(
        "generic-url-credential", password, "GIT_PASSWORD", f'!git clone "{url}"', url,
        [url, f"bench-bot:{password}", f"https://bench-bot:{password}@git.acme-analytics.net"],
    )


#: Hand-written generators: one per provider family named in issue 2.
FAMILIES: dict[str, Callable[[random.Random], Plant]] = {
    "openai": _gen_openai,
    "anthropic": _gen_anthropic,
    "google-api-key": _gen_google,
    "huggingface": _gen_huggingface,
    "groq": _gen_groq,
    "mistral": _gen_mistral,
    "cohere": _gen_cohere,
    "replicate": _gen_replicate,
    "openrouter": _gen_openrouter,
    "perplexity": _gen_perplexity,
    "xai": _gen_xai,
    "together": _gen_together,
    "deepseek": _gen_deepseek,
    "pinecone": _gen_pinecone,
    "langsmith": _gen_langsmith,
    "wandb": _gen_wandb,
    "kaggle": _gen_kaggle,
    "aws-access-key-id": _gen_aws_key_id,
    "aws-secret-access-key": _gen_aws_secret,
    "gcp-service-account": _gen_gcp_service_account,
    "azure-storage-connection-string": _gen_azure_storage,
    "azure-ad-client-secret": _gen_azure_ad,
    "digitalocean": _gen_digitalocean,
    "databricks": _gen_databricks,
    "database-url-password": _gen_db_url,
    "github-classic": _gen_github_classic,
    "github-fine-grained": _gen_github_fine_grained,
    "gitlab": _gen_gitlab,
    "npm": _gen_npm,
    "pypi": _gen_pypi,
    "dockerhub": _gen_dockerhub,
    "stripe": _gen_stripe,
    "slack-token": _gen_slack_token,
    "slack-webhook": _gen_slack_webhook,
    "twilio-api-key": _gen_twilio_api_key,
    "twilio-auth-token": _gen_twilio_auth_token,
    "sendgrid": _gen_sendgrid,
    "mailgun": _gen_mailgun,
    "telegram-bot-token": _gen_telegram,
    "discord-bot-token": _gen_discord_token,
    "discord-webhook": _gen_discord_webhook,
    "pem-rsa-private-key": _gen_pem_rsa,
    "pem-ec-private-key": _gen_pem_ec,
    "openssh-private-key": _gen_openssh,
    "jwt": _gen_jwt,
    "generic-assignment": _gen_generic_assignment,
    "generic-password": _gen_generic_password,
    "generic-bearer-header": _gen_generic_bearer,
    "generic-url-credential": _gen_generic_url_credential,
}


# -- one family per rule, derived from the rule's own example ---------------------------------


def _redraw(rng: random.Random, secret: str, keep: int) -> str:
    """``secret`` with about a fifth of its characters after ``keep`` redrawn within their class
    (digit, lower, upper, hex digit stays hex), and ``FAKE`` runs kept."""
    chars = list(secret)
    protected = set(range(keep))
    start = secret.find("FAKE")
    while start >= 0:
        protected.update(range(start, start + 4))
        start = secret.find("FAKE", start + 1)
    is_hex = all(c in HEX for c in secret[keep:])
    for i, ch in enumerate(chars):
        if i in protected or rng.random() > 0.2:
            continue
        if is_hex and ch in HEX:
            chars[i] = rng.choice(HEX)
        elif ch.isdigit():
            chars[i] = rng.choice(string.digits)
        elif ch.islower():
            chars[i] = rng.choice(string.ascii_lowercase)
        elif ch.isupper():
            chars[i] = rng.choice(string.ascii_uppercase)
    return "".join(chars)


def rule_plant_makers() -> dict[str, Callable[[random.Random], Plant]]:
    """One generator per rule shipped in ``rules.toml`` (family ``rule:<id>``).

    Each draws a fresh secret from the rule's first example (character-class preserving, the
    checksum or structure still valid when the original was), checked against that rule; a rule
    whose example cannot be redrawn keeps the example's secret.
    """
    from ipykeyguard.engine.config import Config
    from ipykeyguard.engine.scan import Scanner

    scanner = Scanner(Config())
    makers: dict[str, Callable[[random.Random], Plant]] = {}
    for rule in scanner.rules:
        if not rule.examples:
            continue
        example = rule.examples[0]
        original = [f for f in scanner.raw_matches(example, rules=[rule])]
        if not original:
            continue
        first = original[0]
        secret = first.secret.reveal()
        before, after = example[: first.start], example[first.end :]
        best = first.confidence

        def make(rng, rule=rule, secret=secret, before=before, after=after, best=best) -> Plant:
            keep = min(len(secret) // 3, 12)
            candidate = secret
            for _ in range(40):
                trial = _redraw(rng, secret, keep)
                found = scanner.raw_matches(before + trial + after, rules=[rule])
                if any(f.secret.reveal() == trial and f.confidence >= best for f in found):
                    candidate = trial
                    break
            snippet = before + candidate + after
            kind = MULTILINE if "\n" in snippet else CONTEXT
            return Plant(f"rule:{rule.id}", candidate, kind, rule.env, snippet, snippet)

        makers[f"rule:{rule.id}"] = make
    return makers


# ---------------------------------------------------------------------------------------------
# Background content
# ---------------------------------------------------------------------------------------------

_WORDS = (
    "the model data we results training validation loss accuracy feature features dataset sample "
    "samples distribution mean variance baseline experiment run epoch batch learning rate schedule "
    "pipeline cleaning missing values outliers correlation regression classifier pandas plot figure "
    "shows that this next step cohort revenue region quarter growth customers churn signal noise"
).split()


def _prose(rng: random.Random, sentences: int) -> str:
    out = []
    for _ in range(sentences):
        words = [rng.choice(_WORDS) for _ in range(rng.randint(6, 16))]
        out.append(" ".join(words).capitalize() + ".")
    return " ".join(out)


def _lines(text: str) -> list[str]:
    return text.splitlines(keepends=True)


class _Assets:
    """Rendered once per corpus: PNG plots and DataFrame tables, reused across notebooks."""

    def __init__(self, rng: random.Random, n_plots: int = 32, n_tables: int = 24) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import numpy as np
        import pandas as pd

        self.pngs: list[str] = []
        nrng = np.random.default_rng(rng.getrandbits(32))
        for i in range(n_plots):
            fig, ax = plt.subplots(figsize=(4, 3), dpi=60)
            kind = i % 4
            x = np.linspace(0, 10, 120)
            if kind == 0:
                ax.plot(x, np.sin(x * (1 + i / 10)) + nrng.normal(0, 0.1, x.size))
            elif kind == 1:
                ax.hist(nrng.normal(i, 1 + i / 8, 500), bins=30)
            elif kind == 2:
                ax.scatter(nrng.random(150), nrng.random(150), c=nrng.random(150), s=8)
            else:
                ax.bar(list("ABCDEFG"), nrng.integers(1, 100, 7))
            ax.set_title(f"figure {i}")
            buf = io.BytesIO()
            fig.savefig(buf, format="png", metadata={"Software": None})
            plt.close(fig)
            self.pngs.append(base64.b64encode(buf.getvalue()).decode())
        self.tables: list[tuple[str, str]] = []
        for i in range(n_tables):
            rows = 5 + i % 15
            df = pd.DataFrame(
                {
                    "region": [rng.choice(["north", "south", "east", "west"]) for _ in range(rows)],
                    "revenue": nrng.normal(1000, 250, rows).round(2),
                    "units": nrng.integers(1, 500, rows),
                    "growth": nrng.normal(0.02, 0.05, rows).round(4),
                    "id": [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(rows)],
                }
            )
            self.tables.append((df.to_html(), df.to_string()))


def _cell_id(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _code(rng, source: str, outputs: list | None = None, metadata: dict | None = None, count: int | None = None) -> dict:
    return {
        "cell_type": "code",
        "execution_count": count if count is not None else rng.randint(1, 60),
        "id": _cell_id(rng),
        "metadata": metadata or {},
        "outputs": outputs or [],
        "source": _lines(source),
    }


def _markdown(rng, source: str) -> dict:
    return {"cell_type": "markdown", "id": _cell_id(rng), "metadata": {}, "source": _lines(source)}


def _stream(text: str, name: str = "stdout") -> dict:
    return {"name": name, "output_type": "stream", "text": _lines(text)}


def _result(data: dict, count: int) -> dict:
    return {"data": data, "execution_count": count, "metadata": {}, "output_type": "execute_result"}


def _display(data: dict) -> dict:
    return {"data": data, "metadata": {}, "output_type": "display_data"}


_RED, _GREEN, _CYAN, _RESET, _HL, _HL_OFF = "\x1b[0;31m", "\x1b[0;32m", "\x1b[0;36m", "\x1b[0m", "\x1b[43m", "\x1b[49m"


def _traceback(ename: str, evalue: str, code_line: str, count: int) -> dict:
    frames = [
        _RED + "-" * 75 + _RESET,
        f"{_RED}{ename}{_RESET}                                  Traceback (most recent call last)",
        f"Cell {_GREEN}In[{count}], line 3{_RESET}\n{_GREEN}      1{_RESET} import pandas as pd\n"
        f"{_GREEN}----> 3{_RESET} {_HL}{code_line}{_HL_OFF}\n",
        f"File {_GREEN}/opt/conda/lib/python3.11/site-packages/pandas/core/frame.py:4102{_RESET}, in "
        f"{_CYAN}DataFrame.__getitem__{_RESET}{_RESET}(self, key)\n{_GREEN}   4100{_RESET} "
        f"{_GREEN}if{_RESET} self.columns.nlevels > {_GREEN}1{_RESET}:\n",
        f"{_RED}{ename}{_RESET}: {evalue}",
    ]
    return {"ename": ename, "evalue": evalue, "output_type": "error", "traceback": frames}


def _pip_output(rng) -> str:
    pkgs = ["numpy==1.26.4", "pandas==2.2.2", "scikit-learn==1.5.0", "torch==2.3.1", "transformers==4.41.2"]
    lines = []
    for p in rng.sample(pkgs, 3):
        name, ver = p.split("==")
        lines.append(f"Collecting {p}")
        lines.append(f"  Downloading {name}-{ver}-cp311-cp311-manylinux_2_17_x86_64.whl ({rng.randint(1, 90)}.{rng.randint(0,9)} MB)")
        lines.append("     ━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━ 18.3/18.3 MB 42.1 MB/s eta 0:00:00")
    lines.append("Requirements written with hashes:")
    for p in pkgs:
        lines.append(f"{p} \\\n    --hash=sha256:{_chars(rng, 64, HEX)} \\\n    --hash=sha256:{_chars(rng, 64, HEX)}")
    lines.append("Successfully installed " + " ".join(p.replace("==", "-") for p in pkgs))
    return "\n".join(lines) + "\n"


def _training_log(rng, epochs: int) -> str:
    lines = []
    for e in range(1, epochs + 1):
        bar = "".join(f"\r{p:3d}%|{'█' * (p // 10):<10}| {p * 3}/300 [00:0{p // 30}<00:00, 91.2it/s]" for p in range(0, 101, 25))
        lines.append(bar)
        lines.append(
            f"Epoch {e}/{epochs} - loss: {rng.random():.4f} - acc: {rng.random():.4f} - "
            f"val_loss: {rng.random():.4f} - val_acc: {rng.random():.4f} - lr: {rng.random() / 1000:.6f}"
        )
    return "\n".join(lines) + "\n"


def _git_output(rng) -> str:
    msgs = ["Fix join on customer id", "Add quarterly rollup", "Tune learning rate", "Refactor loaders", "Update plots"]
    out = [f"{_chars(rng, 7, HEX)} {rng.choice(msgs)}" for _ in range(rng.randint(5, 12))]
    out.append(f"commit {_chars(rng, 40, HEX)}")
    out += [f"{_chars(rng, 32, HEX)}  data/part-{i:04d}.csv" for i in range(rng.randint(2, 6))]
    out.append(f"run id: {uuid.UUID(int=rng.getrandbits(128), version=4)}")
    return "\n".join(out) + "\n"


def _widget_model(rng, name: str, state: dict) -> tuple[str, dict]:
    model_id = _chars(rng, 32, HEX)
    return model_id, {
        "model_module": "@jupyter-widgets/controls",
        "model_module_version": "2.0.0",
        "model_name": name,
        "state": {"_dom_classes": [], "layout": "IPY_MODEL_" + _chars(rng, 32, HEX), **state},
    }


def _widget_view(model_id: str) -> dict:
    return _display(
        {
            "application/vnd.jupyter.widget-view+json": {"model_id": model_id, "version_major": 2, "version_minor": 0},
            "text/plain": "FloatProgress(value=0.0, max=100.0)",
        }
    )


def _background(rng: random.Random, assets: _Assets, widgets: dict) -> list[dict]:
    """The cells of an ordinary analysis notebook (no key anywhere)."""
    cells = [_markdown(rng, f"# {rng.choice(['Churn', 'Revenue', 'Sensor', 'Cohort'])} analysis\n\n{_prose(rng, 4)}")]
    cells.append(_code(rng, "import numpy as np\nimport pandas as pd\nimport matplotlib.pyplot as plt\n%matplotlib inline", count=1))
    if rng.random() < 0.6:
        cells.append(_code(rng, "!pip install --require-hashes -r requirements.txt", [_stream(_pip_output(rng))]))
    for _ in range(rng.randint(1, 3)):
        html_table, text_table = rng.choice(assets.tables)
        count = rng.randint(2, 40)
        cells.append(_code(rng, "df = pd.read_parquet('data/sales.parquet')\ndf.head(10)", [_result({"text/html": html_table, "text/plain": text_table}, count)], count=count))
        cells.append(_markdown(rng, _prose(rng, rng.randint(2, 6))))
    for _ in range(rng.randint(1, 4)):
        cells.append(
            _code(
                rng,
                "fig, ax = plt.subplots()\nax.plot(df['revenue'].rolling(7).mean())\nplt.show()",
                [_display({"image/png": rng.choice(assets.pngs), "text/plain": "<Figure size 640x480 with 1 Axes>"})],
            )
        )
    if rng.random() < 0.7:
        cells.append(_code(rng, "history = model.fit(X_train, y_train, epochs=40, validation_split=0.2)", [_stream(_training_log(rng, rng.randint(20, 120)), "stderr")]))
    if rng.random() < 0.6:
        count = rng.randint(2, 40)
        cells.append(_code(rng, "df['revnue'].sum()", [_traceback("KeyError", "'revnue'", "df[\u001b[38;5;124m'revnue'\u001b[39m].sum()", count)], count=count))
    if rng.random() < 0.6:
        model_id, model = _widget_model(rng, "FloatProgressModel", {"bar_style": "success", "max": 100.0, "value": 100.0})
        widgets[model_id] = model
        cells.append(_code(rng, "from tqdm.auto import tqdm\nfor _ in tqdm(range(100)): pass", [_widget_view(model_id)]))
    if rng.random() < 0.6:
        cells.append(_code(rng, "!git log --oneline -n 12 && md5sum data/*.csv", [_stream(_git_output(rng))]))
    cells.append(_markdown(rng, "## Conclusion\n\n" + _prose(rng, rng.randint(2, 5))))
    return cells


# -- hard negatives ----------------------------------------------------------------------------

_NEGATIVE_CODE = [
    'client = OpenAI(api_key=os.environ["OPENAI_API_KEY"])',
    'openai.api_key = os.getenv("OPENAI_API_KEY")',
    "from getpass import getpass\npassword = getpass()",
    'HF_TOKEN = userdata.get("HF_TOKEN")',
    'api_key = "YOUR_API_KEY"  # replace with your key',
    'OPENAI_API_KEY = "sk-..."',
    'token = "<your-token-here>"',
    'aws_access_key_id = "AKIAIOSFODNN7EXAMPLE"\naws_secret_access_key = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"',
    'GITHUB_TOKEN = "ghp_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"',
    'headers = {"Authorization": f"Bearer {os.environ[\'API_TOKEN\']}"}',
    'secret = os.environ.get("APP_SECRET", "")',
    'db_url = f"postgresql://{user}:{password}@{host}/db"',
    'response = client.chat.completions.create(model="gpt-4o", messages=msgs, max_tokens=256)',
    "%env OPENAI_API_KEY=",
    '!curl -H "Authorization: Bearer $API_TOKEN" https://api.acme-analytics.net/v1/items',
]

_NEGATIVE_TEXT = [
    "Set `OPENAI_API_KEY` in your environment (it looks like `sk-...`), never in the notebook.",
    "Put your token in `.env` as `HF_TOKEN=<token>` and load it with python-dotenv.",
    "AWS documents the example key `AKIAIOSFODNN7EXAMPLE` with secret `wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY`.",
    "Use `getpass()` to type the password, or `os.environ['DB_PASSWORD']`.",
]


def _negative_data(rng: random.Random) -> list[str]:
    """High-entropy values that are not secrets: hashes, UUIDs, base64 data, ids."""
    blob = base64.b64encode(bytes(rng.getrandbits(8) for _ in range(rng.randint(60, 300)))).decode()
    return [
        f'sha256 = "{_chars(rng, 64, HEX)}"',
        f'checksum_md5 = "{_chars(rng, 32, HEX)}"',
        f'commit = "{_chars(rng, 40, HEX)}"',
        f'run_id = "{uuid.UUID(int=rng.getrandbits(128), version=4)}"',
        f'payload = base64.b64decode("{blob}")',
        f'model_id = "{_chars(rng, 32, HEX)}"',
    ]


def _add_negatives(rng: random.Random, cells: list[dict], widgets: dict) -> None:
    for _ in range(rng.randint(3, 7)):
        where = rng.randrange(1, len(cells) + 1)
        if rng.random() < 0.6:
            src = rng.choice(_NEGATIVE_CODE + _negative_data(rng))
            cells.insert(where, _code(rng, src))
        else:
            cells.insert(where, _markdown(rng, rng.choice(_NEGATIVE_TEXT)))
    data = "\n".join(_negative_data(rng))
    cells.append(_code(rng, "print(summary)", [_stream(data + "\n")]))
    model_id, model = _widget_model(rng, "TextModel", {"description": "API key", "placeholder": "sk-...", "value": ""})
    widgets[model_id] = model


# ---------------------------------------------------------------------------------------------
# Locations
# ---------------------------------------------------------------------------------------------

#: Every place a key is planted, with the field it lands in.
LOCATIONS = {
    "code-assign": "source",
    "code-kwarg": "source",
    "code-dict": "source",
    "code-fstring": "source",
    "code-env-magic": "source",
    "code-shell-curl": "source",
    "markdown": "source",
    "raw": "source",
    "stream-stdout": "outputs[0].text",
    "stream-stderr": "outputs[0].text",
    "result-text-plain": "outputs[0].data.text/plain",
    "result-text-html": "outputs[0].data.text/html",
    "error-traceback": "outputs[0].traceback",
    "error-evalue": "outputs[0].evalue",
    "cell-metadata": "metadata",
    "widget-state": "metadata.widgets",
    "notebook-metadata": "metadata.papermill",
}

# Locations that only make sense for a bare, self-identifying token.
_TOKEN_ONLY = {"code-kwarg", "code-dict", "code-fstring", "code-env-magic", "code-shell-curl"}
# A PEM block or a JSON document does not fit in a one-line value or a Python repr.
_NOT_MULTILINE = _TOKEN_ONLY | {"result-text-plain", "error-evalue", "error-traceback"}


def locations_for(plant: Plant) -> list[str]:
    """The locations a plant of this kind is placed in."""
    if plant.kind == TOKEN:
        return list(LOCATIONS)
    if plant.kind == MULTILINE:
        return [loc for loc in LOCATIONS if loc not in _NOT_MULTILINE]
    return [loc for loc in LOCATIONS if loc not in _TOKEN_ONLY]


def _place(rng: random.Random, plant: Plant, location: str, cells: list[dict], widgets: dict, nb_meta: dict) -> dict | None:
    """Put ``plant`` at ``location``; returns the cell it lives in (``None`` for notebook metadata)."""
    key, env = plant.secret, plant.env
    text = plant.text if plant.text is not None else key
    if plant.code is not None:
        code = plant.code
    elif plant.kind == MULTILINE:
        code = f'{env} = """{key}"""'
    else:
        code = f'{env} = "{key}"'
    count = rng.randint(2, 80)
    cell: dict | None
    if location == "code-assign":
        cell = _code(rng, f"import os\n{code}\nprint('configured')", [_stream("configured\n")], count=count)
    elif location == "code-kwarg":
        cell = _code(rng, f'client = Client(api_key="{key}", timeout=30)\nclient.models.list()', count=count)
    elif location == "code-dict":
        cell = _code(rng, f'config = {{\n    "endpoint": "https://api.acme-analytics.net",\n    "token": "{key}",\n}}', count=count)
    elif location == "code-fstring":
        cell = _code(rng, f'page = 1\nurl = f"https://api.acme-analytics.net/v1/items?page={{page}}&key={key}"\nr = requests.get(url)', count=count)
    elif location == "code-env-magic":
        cell = _code(rng, f"%env {env}={key}", [_stream(f"env: {env}={key}\n")], count=count)
    elif location == "code-shell-curl":
        cell = _code(rng, f'!curl -s -H "Authorization: Bearer {key}" https://api.acme-analytics.net/v1/me', [_stream('{"id": 42, "name": "bench"}\n')], count=count)
    elif location == "markdown":
        body = f"```\n{text}\n```" if plant.kind == MULTILINE else f"The key for the staging account is `{text}` (rotate after the demo)."
        cell = _markdown(rng, f"### Credentials\n\n{_prose(rng, 2)}\n\n{body}\n\n{_prose(rng, 1)}")
    elif location == "raw":
        cell = {"cell_type": "raw", "id": _cell_id(rng), "metadata": {}, "source": _lines(f"# deployment notes\n{text}\n")}
    elif location in ("stream-stdout", "stream-stderr"):
        noise = _training_log(rng, rng.randint(3, 30))
        stream = "stdout" if location == "stream-stdout" else "stderr"
        cell = _code(rng, "print(settings)", [_stream(noise + f"loaded settings: {text}\n" + noise, stream)], count=count)
    elif location == "result-text-plain":
        cell = _code(rng, "settings", [_result({"text/plain": f"{{'service': 'bench', 'credential': '{text}'}}"}, count)], count=count)
    elif location == "result-text-html":
        html_table = (
            "<table border=\"1\" class=\"dataframe\">\n  <thead><tr><th>name</th><th>value</th></tr></thead>\n"
            f"  <tbody>\n    <tr><td>{env}</td><td><pre>{html.escape(text, quote=False)}</pre></td></tr>\n  </tbody>\n</table>"
        )
        cell = _code(rng, "pd.DataFrame(settings.items())", [_result({"text/html": html_table, "text/plain": "   name  value\n0  ...   ..."}, count)], count=count)
    elif location == "error-traceback":
        cell = _code(rng, code, [_traceback("AuthenticationError", "Error code: 401 - invalid credentials", code, count)], count=count)
    elif location == "error-evalue":
        cell = _code(rng, "client.models.list()", [_traceback("AuthenticationError", f"Incorrect credential provided: {text}", "client.models.list()", count)], count=count)
    elif location == "cell-metadata":
        value = key if plant.kind == TOKEN else text
        cell = _code(rng, "# Parameters\nrun_date = '2024-05-01'", metadata={"tags": ["parameters"], "papermill": {"parameters": {env.lower(): value}}}, count=count)
    elif location == "widget-state":
        value = key if plant.kind == TOKEN else text
        model_id, model = _widget_model(rng, "TextareaModel" if "\n" in value else "TextModel", {"description": env, "value": value})
        widgets[model_id] = model
        cell = _code(rng, f"key_box = widgets.Text(description={env!r})\nkey_box", [_widget_view(model_id)], count=count)
    elif location == "notebook-metadata":
        nb_meta.setdefault("papermill", {"parameters": {}, "version": "2.6.0"})["parameters"][env.lower() + f"_{len(nb_meta['papermill']['parameters'])}"] = key if plant.kind == TOKEN else text
        return None
    else:  # pragma: no cover - LOCATIONS and this function move together
        raise ValueError(f"unknown location {location}")
    cells.insert(rng.randrange(1, len(cells) + 1), cell)
    return cell


# ---------------------------------------------------------------------------------------------
# The corpus
# ---------------------------------------------------------------------------------------------


def rules_digest() -> str:
    """SHA-256 of the shipped rules file (rule-derived families depend on it)."""
    from importlib import resources

    return _sha256(resources.files("ipykeyguard.engine").joinpath("rules.toml").read_text(encoding="utf-8"))


def _notebook(cells: list[dict], widgets: dict, nb_meta: dict) -> dict:
    metadata = {
        "kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"},
        "language_info": {"name": "python", "version": "3.11.7", "mimetype": "text/x-python", "file_extension": ".py"},
        **nb_meta,
    }
    if widgets:
        metadata["widgets"] = {
            "application/vnd.jupyter.widget-state+json": {"state": widgets, "version_major": 2, "version_minor": 0}
        }
    return {"cells": cells, "metadata": metadata, "nbformat": 4, "nbformat_minor": 5}


def generate_corpus(
    outdir: str | Path,
    n_notebooks: int = 300,
    seed: int = 2024,
    negative_fraction: float = 0.25,
    include_rule_families: bool = True,
) -> dict:
    """Write ``n_notebooks`` notebooks and ``manifest.json`` into ``outdir``; returns the manifest.

    Args:
        outdir: Directory to fill (created; existing ``nb_*.ipynb`` files are replaced).
        n_notebooks: How many notebooks. Planted keys are spread over the non-negative ones, so a
            small corpus holds fewer (family, location) pairs; 300 holds them all.
        seed: Everything is derived from it: same seed, same bytes.
        negative_fraction: Share of notebooks that are hard negatives (no key).
        include_rule_families: Also plant one family per shipped rule (``rule:<id>``).

    Returns:
        The manifest (also written as JSON): notebooks, planted keys by fingerprint, settings.
    """
    outdir = Path(outdir)
    nbdir = outdir / NOTEBOOK_DIR
    nbdir.mkdir(parents=True, exist_ok=True)
    for old in nbdir.glob("nb_*.ipynb"):
        old.unlink()
    master = random.Random(seed)
    assets = _Assets(random.Random(f"{seed}:assets"))
    makers = dict(FAMILIES)
    if include_rule_families:
        makers.update(rule_plant_makers())

    n_negative = max(1, round(n_notebooks * negative_fraction)) if n_notebooks > 1 else 0
    n_planted = n_notebooks - n_negative
    # Every (family, location) pair, shuffled and dealt round-robin over the planted notebooks.
    probe = random.Random(f"{seed}:probe")
    pairs = [(fam, loc) for fam, make in makers.items() for loc in locations_for(make(probe))]
    master.shuffle(pairs)
    if n_planted:
        limit = max(n_planted * 40, 1)
        pairs = pairs[:limit]
    dealt: list[list[tuple[str, str]]] = [[] for _ in range(max(n_planted, 1))]
    for i, pair in enumerate(pairs):
        dealt[i % len(dealt)].append(pair)

    order = list(range(n_notebooks))
    master.shuffle(order)
    negative_ids = set(order[:n_negative])
    notebooks, planted = [], []
    planted_slot = 0
    for i in range(n_notebooks):
        rng = random.Random(f"{seed}:nb:{i}")
        name = f"nb_{i:04d}.ipynb"
        widgets: dict = {}
        nb_meta: dict = {}
        cells = _background(rng, assets, widgets)
        if i in negative_ids:
            _add_negatives(rng, cells, widgets)
            notebooks.append({"file": name, "kind": "negative"})
        else:
            if rng.random() < 0.5:
                _add_negatives(rng, cells, widgets)
            placed = []
            for family, location in dealt[planted_slot] if n_planted else []:
                plant = makers[family](rng)
                cell = _place(rng, plant, location, cells, widgets, nb_meta)
                placed.append((plant, location, cell))
            planted_slot += 1
            for plant, location, cell in placed:
                cell_index = next((k for k, c in enumerate(cells) if c is cell), None)
                cuts = plant.cuts()
                planted.append(
                    {
                        "file": name,
                        "family": plant.family,
                        "location": location,
                        "cell": cell_index,
                        "field": LOCATIONS[location],
                        "fingerprint": _sha256(plant.secret),
                        "fingerprints": [_sha256(c) for c in cuts],
                        "sha1": [_sha1(c) for c in cuts],
                    }
                )
            notebooks.append({"file": name, "kind": "planted"})
        nb = _notebook(cells, widgets, nb_meta)
        (nbdir / name).write_text(json.dumps(nb, indent=1, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")

    manifest = {
        "generator_version": GENERATOR_VERSION,
        "seed": seed,
        "n_notebooks": n_notebooks,
        "negative_fraction": negative_fraction,
        "rule_families": include_rule_families,
        "rules_digest": rules_digest(),
        "families": sorted(makers),
        "notebooks": notebooks,
        "planted": planted,
    }
    (outdir / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    return manifest


def main(argv: list[str] | None = None) -> int:
    """``python benchmarks/corpus.py OUTDIR [-n N] [--seed S]``: write a corpus, print a summary."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("outdir")
    parser.add_argument("-n", "--notebooks", type=int, default=300)
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--no-rule-families", action="store_true", help="only the hand-written provider families")
    args = parser.parse_args(argv)
    manifest = generate_corpus(args.outdir, args.notebooks, args.seed, include_rule_families=not args.no_rule_families)
    size = sum(p.stat().st_size for p in (Path(args.outdir) / NOTEBOOK_DIR).glob("nb_*.ipynb"))
    print(
        f"{len(manifest['notebooks'])} notebooks ({size / 1e6:.1f} MB), {len(manifest['planted'])} planted keys "
        f"in {len(manifest['families'])} families, written to {args.outdir}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
