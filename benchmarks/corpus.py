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
    Fake, format-exact keys generated at run time (seeded), drawn from the providers' documented
    formats by the generators in the sibling module ``formats.py`` (one per format family, each
    with its source in ``formats.SOURCES`` and ``docs/DETECTION.md``). They are written
    independently of ``ipykeyguard/engine/rules.toml``: no rule example is planted, so the
    benchmark measures the rules against the formats, not against themselves. Each family is
    planted in every location it can naturally appear in (see ``LOCATIONS``). Checksummed
    formats carry correct checksums, computed from the providers' published constructions.

Hard negatives
    About a quarter of the notebooks carry no key at all but do carry tokens whose checksum
    fails (GitHub, Cloudflare, Grafana), Stripe's sample keys, placeholders
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
from pathlib import Path


HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # the sibling module, also when this file is loaded by path
    sys.path.insert(0, str(HERE))

from formats import CONTEXT, FAMILIES, MULTILINE, SOURCES, TOKEN, Plant, gen_cloudflare, gen_github_classic, gen_grafana  # noqa: E402

__all__ = ["GENERATOR_VERSION", "NOTEBOOK_DIR", "Plant", "FAMILIES", "SOURCES", "LOCATIONS", "generate_corpus", "generator_digest"]

#: Notebooks go in this subdirectory of the corpus, the manifest beside it (so that a scan of
#: the notebooks never reads the manifest's fingerprints).
NOTEBOOK_DIR = "notebooks"

#: Bump when the corpus changes shape, so that cached corpora are regenerated.
GENERATOR_VERSION = 5

ALNUM = string.ascii_letters + string.digits
HEX = "0123456789abcdef"


def _chars(rng: random.Random, n: int, alphabet: str = ALNUM) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _sha1(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()


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
    'stripe.api_key = "sk_test_4eC39HqLyjWDarjtT1zdp7dc"  # the sample key from Stripe\'s API reference',
    '!curl https://api.stripe.com/v1/charges -u sk_test_BQokikJOvBiI2HlWgH4olfQ2:',
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


def _broken_checksum(rng: random.Random) -> str:
    """A checksummed token (GitHub, Cloudflare, Grafana) with its last character changed: the
    checksum fails, so it is not a key (a typo, a test value)."""
    make = rng.choice([gen_github_classic, gen_cloudflare, gen_grafana])
    plant = make(rng)
    while plant.variant in ("glc_", "ghs_ stateless"):  # the variants that carry no checksum
        plant = make(rng)
    token = plant.secret
    last = token[-1]
    return token[:-1] + ("0" if last != "0" else "1")


def _negative_data(rng: random.Random) -> list[str]:
    """High-entropy values that are not secrets: hashes, UUIDs, base64 data, ids, and tokens
    whose checksum fails."""
    blob = base64.b64encode(bytes(rng.getrandbits(8) for _ in range(rng.randint(60, 300)))).decode()
    return [
        f'api_token = "{_broken_checksum(rng)}"  # fixture: checksum deliberately wrong',
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


def generator_digest() -> str:
    """SHA-256 of the generator's own source (``corpus.py`` and ``formats.py``): a cached corpus
    is stale when either changed. The rules are not an input: the corpus does not read them."""
    return _sha256("".join((HERE / name).read_text(encoding="utf-8") for name in ("corpus.py", "formats.py")))


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
    families: dict | None = None,
    rounds: int = 3,
) -> dict:
    """Write ``n_notebooks`` notebooks and ``manifest.json`` into ``outdir``; returns the manifest.

    Args:
        outdir: Directory to fill (created; existing ``nb_*.ipynb`` files are replaced).
        n_notebooks: How many notebooks. Planted keys are spread over the non-negative ones, so a
            small corpus holds fewer (family, location) pairs; 300 holds them all.
        seed: Everything is derived from it: same seed, same bytes.
        negative_fraction: Share of notebooks that are hard negatives (no key).
        families: {name: generator} to plant (default: every family in ``formats.FAMILIES``).
        rounds: How many keys of each (family, location) pair: each is drawn afresh, so the
            format variants of a family (prefixes, lengths, encodings) all appear.

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
    makers = dict(FAMILIES if families is None else families)

    n_negative = max(1, round(n_notebooks * negative_fraction)) if n_notebooks > 1 else 0
    n_planted = n_notebooks - n_negative
    # Every (family, location) pair, shuffled and dealt round-robin over the planted notebooks.
    probe = random.Random(f"{seed}:probe")
    pairs = [(fam, loc) for fam, make in makers.items() for loc in locations_for(make(probe))] * rounds
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
                        "variant": plant.variant,
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
        "rounds": rounds,
        "negative_fraction": negative_fraction,
        "generator_digest": generator_digest(),
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
    args = parser.parse_args(argv)
    manifest = generate_corpus(args.outdir, args.notebooks, args.seed)
    size = sum(p.stat().st_size for p in (Path(args.outdir) / NOTEBOOK_DIR).glob("nb_*.ipynb"))
    print(
        f"{len(manifest['notebooks'])} notebooks ({size / 1e6:.1f} MB), {len(manifest['planted'])} planted keys "
        f"in {len(manifest['families'])} families, written to {args.outdir}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
