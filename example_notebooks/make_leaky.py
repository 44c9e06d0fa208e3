"""Write ``leaky.ipynb``: a realistic notebook with fake, format-exact keys in every place a key
ends up in practice.

Every key is generated here from a fixed seed (so the file is reproducible byte for byte) and
says FAKE where its format leaves room; checksummed formats carry a correct checksum so that
ipykeyguard rates them ``certain``. Where the keys are:

====  =============================================  =================================
cell  place                                          key
====  =============================================  =================================
0     markdown source                                GitHub token, Hugging Face token
1     code source                                    OpenAI project key
2     stream output (``print``)                      AWS access key id
3     ``execute_result`` (text/plain and text/html)  npm token
4     ``display_data`` text/html                     Anthropic key
5     error: ``evalue`` and traceback frames         generic ``api_key="..."``
6     cell metadata (papermill parameters)           GitHub token
7     widget state in notebook metadata              OpenAI legacy key
8     a clean cell: env lookups, placeholders, PNG   nothing
====  =============================================  =================================

Usage::

    python example_notebooks/make_leaky.py           # (re)write leaky.ipynb beside this script
    python example_notebooks/make_leaky.py --check   # exit 1 if leaky.ipynb is not up to date
"""

from __future__ import annotations

import argparse
import base64
import random
import string
import struct
import sys
import zlib
from pathlib import Path

from ipykeyguard.transforms.notebook import dump_notebook
from ipykeyguard.engine.validators import base62_crc32

SEED = 20240229
HERE = Path(__file__).resolve().parent
TARGET = HERE / "leaky.ipynb"

ALNUM = string.ascii_letters + string.digits
URLSAFE = ALNUM + "-_"


class FakeKeys:
    """Format-exact fake keys drawn from one seeded generator."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def chars(self, n: int, alphabet: str = ALNUM) -> str:
        return "".join(self.rng.choice(alphabet) for _ in range(n))

    def hex(self, n: int) -> str:
        return self.chars(n, "0123456789abcdef")

    def openai_project(self) -> str:
        return "sk-proj-FAKE" + self.chars(70, URLSAFE) + "T3BlbkFJ" + self.chars(74, URLSAFE)

    def openai_legacy(self) -> str:
        return "sk-FAKE" + self.chars(16) + "T3BlbkFJ" + self.chars(20)

    def github(self) -> str:
        body = "FAKE" + self.chars(26)
        return "ghp_" + body + base62_crc32(body)

    def npm(self) -> str:
        body = "FAKE" + self.chars(26)
        return "npm_" + body + base62_crc32(body)

    def aws_key_id(self) -> str:
        return "AKIAFAKE" + self.chars(12, string.ascii_uppercase + "234567")

    def anthropic(self) -> str:
        return "sk-ant-api03-FAKE" + self.chars(89, URLSAFE) + "AA"

    def huggingface(self) -> str:
        return "hf_FAKE" + self.chars(30, string.ascii_letters)

    def generic(self) -> str:
        return "FAKE" + self.chars(28)


def tiny_png(width: int = 4, height: int = 4) -> str:
    """A real PNG (a red-to-blue gradient), base64-encoded as Jupyter stores images."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    rows = b"".join(
        b"\x00" + b"".join(bytes((255 - 60 * x, 40 * y, 60 * x)) for x in range(width)) for y in range(height)
    )
    png = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(rows, 9))
        + chunk(b"IEND", b"")
    )
    return base64.b64encode(png).decode("ascii") + "\n"


def lines(text: str) -> list[str]:
    """Multi-line text the way nbformat stores it: a list of lines, each keeping its newline."""
    return text.splitlines(keepends=True)


def build(seed: int = SEED) -> dict:
    """The leaky notebook as a dict."""
    keys = FakeKeys(seed)
    ids = iter(keys.hex(8) for _ in range(16))
    github, hf, openai_key, aws_id = keys.github(), keys.huggingface(), keys.openai_project(), keys.aws_key_id()
    npm, anthropic, api_key = keys.npm(), keys.anthropic(), keys.generic()
    param_token, widget_key = keys.github(), keys.openai_legacy()
    widget_model = keys.hex(32)
    red = "\x1b[0;31m"
    green = "\x1b[0;32m"
    reset = "\x1b[0m"

    def code(source: str, outputs: list, count: int, metadata: dict | None = None) -> dict:
        return {
            "cell_type": "code",
            "execution_count": count,
            "id": next(ids),
            "metadata": metadata or {},
            "outputs": outputs,
            "source": lines(source),
        }

    cells = [
        {
            "cell_type": "markdown",
            "id": next(ids),
            "metadata": {},
            "source": lines(
                "# Model comparison\n"
                "\n"
                "Notes to self: the private repo needs my token "
                f"`{github}`, and the gated Llama weights need `{hf}`.\n"
            ),
        },
        code(
            "from openai import OpenAI\n"
            "\n"
            f'client = OpenAI(api_key="{openai_key}")\n'
            'MODEL = "gpt-4o-mini"',
            [],
            1,
        ),
        code(
            "import os\n"
            "\n"
            "os.environ[\"AWS_ACCESS_KEY_ID\"] = load_key()\n"
            "print(\"using AWS key\", os.environ[\"AWS_ACCESS_KEY_ID\"])",
            [{"name": "stdout", "output_type": "stream", "text": [f"using AWS key {aws_id}\n"]}],
            2,
        ),
        code(
            "settings = read_npmrc()\nsettings",
            [
                {
                    "data": {
                        "text/html": lines(
                            "<table>\n"
                            "<tr><th>registry</th><td>https://registry.npmjs.org/</td></tr>\n"
                            f"<tr><th>_authToken</th><td>{npm}</td></tr>\n"
                            "</table>"
                        ),
                        "text/plain": [f"{{'registry': 'https://registry.npmjs.org/', '_authToken': '{npm}'}}"],
                    },
                    "execution_count": 3,
                    "metadata": {},
                    "output_type": "execute_result",
                }
            ],
            3,
        ),
        code(
            "from IPython.display import HTML\n"
            "\n"
            "HTML(render_credentials_table(providers))",
            [
                {
                    "data": {
                        "text/html": lines(
                            "<table>\n"
                            "<thead><tr><th>provider</th><th>key</th></tr></thead>\n"
                            f"<tbody><tr><td>anthropic</td><td><code>{anthropic}</code></td></tr></tbody>\n"
                            "</table>"
                        ),
                        "text/plain": ["<IPython.core.display.HTML object>"],
                    },
                    "metadata": {},
                    "output_type": "display_data",
                }
            ],
            4,
        ),
        code(
            "resp = fetch_models(api_key=load_key())",
            [
                {
                    "ename": "HTTPError",
                    "evalue": f"401 Client Error: Unauthorized for url: https://api.example.com/v1/models?api_key={api_key}",
                    "output_type": "error",
                    "traceback": [
                        f"{red}---------------------------------------------------------------------------{reset}",
                        f"{red}HTTPError{reset}                                 Traceback (most recent call last)",
                        f"Cell {green}In[5], line 1{reset}\n{green}----> 1{reset} resp {red}={reset} fetch_models(api_key{red}={reset}load_key())",
                        f"Cell {green}In[1], line 9{reset}, in {green}fetch_models{reset}{red}(api_key){reset}\n"
                        f"      7 def fetch_models(api_key):\n"
                        f"      8     # api_key = \"{api_key}\"\n"
                        f"{green}----> 9{reset}     resp {red}={reset} requests{red}.{reset}get(URL, params{red}={reset}{{{red}\"api_key\"{reset}: api_key}})",
                        f"{red}HTTPError{reset}: 401 Client Error: Unauthorized for url: https://api.example.com/v1/models?api_key={api_key}",
                    ],
                }
            ],
            5,
        ),
        code(
            "github_token = os.environ[\"GITHUB_TOKEN\"]",
            [],
            6,
            metadata={"tags": ["parameters"], "papermill": {"parameters": {"github_token": param_token}}},
        ),
        code(
            "import ipywidgets as widgets\n"
            "\n"
            "key_box = widgets.Password(description=\"API key\")\n"
            "key_box",
            [
                {
                    "data": {
                        "application/vnd.jupyter.widget-view+json": {
                            "model_id": widget_model,
                            "version_major": 2,
                            "version_minor": 0,
                        },
                        "text/plain": ["Password(description='API key')"],
                    },
                    "metadata": {},
                    "output_type": "display_data",
                }
            ],
            7,
        ),
        code(
            "# The right way: read keys from the environment, never paste them.\n"
            "api_key = os.environ[\"OPENAI_API_KEY\"]\n"
            "other_key = \"YOUR_API_KEY\"  # a placeholder, not a key\n"
            "plot_latency(results)",
            [
                {
                    "data": {"image/png": tiny_png(), "text/plain": ["<Figure size 640x480 with 1 Axes>"]},
                    "metadata": {},
                    "output_type": "display_data",
                }
            ],
            8,
        ),
    ]
    return {
        "cells": cells,
        "metadata": {
            "kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"},
            "language_info": {
                "codemirror_mode": {"name": "ipython", "version": 3},
                "file_extension": ".py",
                "mimetype": "text/x-python",
                "name": "python",
                "nbconvert_exporter": "python",
                "pygments_lexer": "ipython3",
                "version": "3.11.7",
            },
            "widgets": {
                "application/vnd.jupyter.widget-state+json": {
                    "state": {
                        widget_model: {
                            "model_module": "@jupyter-widgets/controls",
                            "model_module_version": "2.0.0",
                            "model_name": "PasswordModel",
                            "state": {"description": "API key", "value": widget_key},
                        }
                    },
                    "version_major": 2,
                    "version_minor": 0,
                }
            },
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }


def main(argv: list[str] | None = None) -> int:
    """Write (or with ``--check``, verify) ``leaky.ipynb``; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if leaky.ipynb differs from what this script writes")
    args = parser.parse_args(argv)
    text = dump_notebook(build())
    if args.check:
        current = TARGET.read_text(encoding="utf-8") if TARGET.exists() else None
        if current != text:
            print(f"{TARGET.name} is out of date: run python {Path(__file__).name}", file=sys.stderr)
            return 1
        return 0
    TARGET.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
