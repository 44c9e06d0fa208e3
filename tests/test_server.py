"""The Jupyter Server save guard, against a real ``jupyter server`` on 127.0.0.1.

Each scenario saves through the REST API the way JupyterLab does (notebook model, base64
upload, chunked upload, copy, rename, checkpoint, repeated autosaves) and then reads the files
on disk: no key may reach them, and the ``.env`` beside the notebook holds the moved keys.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests
from dotenv import dotenv_values

import fakekeys
from nestedenv import make_env
import ipykeyguard
from ipykeyguard.engine.findings import fingerprint

pytestmark = [pytest.mark.server, pytest.mark.slow]

STARTUP_TIMEOUT = 60


# -- a real server ----------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """A running ``jupyter server`` with a token and its own root, config and runtime dirs."""

    def __init__(self, base: Path, extra_args: list[str] = ()) -> None:
        self.base = base
        self.root = base / "root"
        self.root.mkdir(parents=True)
        self.port = _free_port()
        self.token = uuid.uuid4().hex
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = base / "server.log"
        env = dict(os.environ)
        for name in ("JUPYTER_CONFIG_DIR", "JUPYTER_DATA_DIR", "JUPYTER_RUNTIME_DIR"):
            folder = base / name.lower()
            folder.mkdir()
            env[name] = str(folder)
        env["PYTHONUNBUFFERED"] = "1"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "jupyter_server",
                "--ip=127.0.0.1",
                f"--port={self.port}",
                "--port-retries=0",
                "--no-browser",
                "--allow-root",
                f"--IdentityProvider.token={self.token}",
                f"--ServerApp.root_dir={self.root}",
                '--ServerApp.jpserver_extensions={"ipykeyguard": True}',
                *extra_args,
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=str(base),
        )
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"token {self.token}"
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"jupyter server exited early:\n{self.log()}")
            try:
                if self.session.get(f"{self.url}/api/status", timeout=2).status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"jupyter server not ready after {STARTUP_TIMEOUT}s:\n{self.log()}")

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()

    # REST helpers -----------------------------------------------------------------------
    def api(self, method: str, path: str, body: dict | None = None) -> requests.Response:
        return self.session.request(method, f"{self.url}/api/contents/{path}", json=body, timeout=30)

    def put_notebook(self, path: str, nb: dict) -> requests.Response:
        return self.api("PUT", path, {"type": "notebook", "format": "json", "content": nb})

    def put_file(self, path: str, data: bytes, *, chunk: int | None = None, fmt: str = "base64") -> requests.Response:
        content = base64.b64encode(data).decode("ascii") if fmt == "base64" else data.decode("utf-8")
        body = {"type": "file", "format": fmt, "content": content}
        if chunk is not None:
            body["chunk"] = chunk
        return self.api("PUT", path, body)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = Server(tmp_path_factory.mktemp("server"))
    yield srv
    srv.stop()


class FakeKeys(dict):
    """Fake keys by provider; the repr is masked so that a failing test's report (which shows
    fixture values) prints no key."""

    def __repr__(self) -> str:
        return f"FakeKeys({', '.join(self)})"


@pytest.fixture(scope="module")
def keys():
    return FakeKeys(openai=fakekeys.openai_project_key(), github=fakekeys.github_classic_token())


def leaky_notebook(keys: dict) -> dict:
    """A notebook with an OpenAI key in code and its printed output, and a GitHub token in markdown."""
    openai, github = keys["openai"], keys["github"]
    return {
        "nbformat": 4,
        "nbformat_minor": 5,
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        "cells": [
            {
                "cell_type": "code",
                "id": "c1",
                "metadata": {},
                "execution_count": 1,
                "source": f'import os\nclient_key = "{openai}"\nprint(client_key)\n',
                "outputs": [{"output_type": "stream", "name": "stdout", "text": [f"{openai}\n"]}],
            },
            {
                "cell_type": "markdown",
                "id": "m1",
                "metadata": {},
                "source": ["Deploy with\n", f"`{github}`\n"],
            },
        ],
    }


def holds_any_key(text: str, keys: dict) -> bool:
    """True when ``text`` holds one of the keys (computed outside ``assert`` so that a failure
    report never prints a key)."""
    return any(value in text for value in keys.values())


def env_fingerprints(path: Path) -> dict[str, str]:
    return {name: fingerprint(value or "") for name, value in dotenv_values(path, interpolate=False).items()}


def unique_dir(server: Server) -> str:
    name = "d" + uuid.uuid4().hex[:8]
    (server.root / name).mkdir()
    return name


# -- saves through the API --------------------------------------------------------------------
def test_put_notebook_moves_code_key_to_env_and_masks_the_rest(server, keys):
    """A notebook PUT as a JSON model reaches disk without keys, its code reads the moved key
    from the environment, and the .env beside it holds that key with mode 0600."""
    folder = unique_dir(server)
    resp = server.put_notebook(f"{folder}/t.ipynb", leaky_notebook(keys))
    assert resp.status_code == 201, resp.text[:500]

    text = (server.root / folder / "t.ipynb").read_text()
    leaked = holds_any_key(text, keys)
    assert not leaked, "key leaked into the saved notebook"
    nb = json.loads(text)
    assert "OPENAI_API_KEY" in "".join(nb["cells"][0]["source"])
    assert "os.environ" in "".join(nb["cells"][0]["source"])
    assert "[secret:" in "".join(nb["cells"][0]["outputs"][0]["text"])
    assert "[secret:GITHUB_TOKEN]" in "".join(nb["cells"][1]["source"])

    env_path = server.root / folder / ".env"
    assert stat.S_IMODE(env_path.stat().st_mode) == 0o600
    assert env_fingerprints(env_path) == {"OPENAI_API_KEY": fingerprint(keys["openai"]), "GITHUB_TOKEN": fingerprint(keys["github"])}

    checkpoint = server.root / folder / ".ipynb_checkpoints" / "t-checkpoint.ipynb"
    leaked = holds_any_key(checkpoint.read_text(), keys)
    assert not leaked, "key leaked into the first checkpoint"


def test_repeated_autosaves_reuse_the_name_and_stay_clean(server, keys):
    """Autosave-like repeated PUTs of the same leaky content keep one OPENAI_API_KEY in the .env
    and a clean file every time."""
    folder = unique_dir(server)
    for _ in range(3):
        resp = server.put_notebook(f"{folder}/auto.ipynb", leaky_notebook(keys))
        assert resp.status_code in (200, 201), resp.text[:500]
        leaked = holds_any_key((server.root / folder / "auto.ipynb").read_text(), keys)
        assert not leaked, "key leaked into an autosave"
    assert env_fingerprints(server.root / folder / ".env") == {"OPENAI_API_KEY": fingerprint(keys["openai"]), "GITHUB_TOKEN": fingerprint(keys["github"])}


def test_saving_again_a_key_already_stored_does_not_say_it_moved(server, keys):
    """When the browser saves the same key again (the cell was not rewritten in the editor), the
    log says the code now reads the name the .env already held, not that a key moved again."""
    folder = unique_dir(server)
    path = f"{folder}/again.ipynb"
    for _ in range(2):
        assert server.put_notebook(path, leaky_notebook(keys)).status_code in (200, 201)
    time.sleep(0.3)
    lines = [line for line in server.log().splitlines() if f"cleaned {path}:" in line]
    assert len(lines) == 2, lines
    assert "moved GITHUB_TOKEN, OPENAI_API_KEY to" in lines[0]  # the markdown's key is stored too
    assert "OPENAI_API_KEY" in lines[1] and "moved" not in lines[1]
    assert "already held it" in lines[1]


def test_checkpoint_and_rename_keep_the_notebook_clean(server, keys):
    """'Save and checkpoint' and a PATCH rename leave no key in the renamed file or its checkpoints."""
    folder = unique_dir(server)
    assert server.put_notebook(f"{folder}/a.ipynb", leaky_notebook(keys)).status_code == 201
    resp = server.api("POST", f"{folder}/a.ipynb/checkpoints")
    assert resp.status_code == 201, resp.text[:500]
    resp = server.api("PATCH", f"{folder}/a.ipynb", {"path": f"{folder}/b.ipynb"})
    assert resp.status_code == 200, resp.text[:500]

    assert not (server.root / folder / "a.ipynb").exists()
    files = [server.root / folder / "b.ipynb", *sorted((server.root / folder / ".ipynb_checkpoints").glob("*.ipynb"))]
    assert len(files) >= 2
    for path in files:
        leaked = holds_any_key(path.read_text(), keys)
        assert not leaked, f"key leaked into {path.name}"


def test_base64_upload_of_a_notebook_is_cleaned(server, keys):
    """A notebook uploaded as a base64 'file' model (JupyterLab's upload) reaches disk without keys."""
    folder = unique_dir(server)
    raw = json.dumps(leaky_notebook(keys), indent=1).encode()
    resp = server.put_file(f"{folder}/up.ipynb", raw)
    assert resp.status_code == 201, resp.text[:500]
    text = (server.root / folder / "up.ipynb").read_text()
    leaked = holds_any_key(text, keys)
    assert not leaked, "key leaked into an uploaded notebook"
    assert json.loads(text)["nbformat"] == 4
    assert env_fingerprints(server.root / folder / ".env") == {"OPENAI_API_KEY": fingerprint(keys["openai"]), "GITHUB_TOKEN": fingerprint(keys["github"])}


def _v3_leaky_notebook(keys: dict) -> dict:
    """The leaky notebook in nbformat 3's layout, as nbformat's own v3 API builds it."""
    from nbformat import v3

    openai, github = keys["openai"], keys["github"]
    cells = [
        v3.new_code_cell(input=f'import openai\nopenai.api_key = "{openai}"\n', prompt_number=1, outputs=[
            v3.new_output("stream", output_text=f"key is {openai}\n", stream="stdout")]),
        v3.new_text_cell("markdown", source=f"token {github}"),
    ]
    return json.loads(v3.writes_json(v3.new_notebook(worksheets=[v3.new_worksheet(cells=cells)])))


@pytest.mark.parametrize("how", ["notebook-model", "base64-upload"])
def test_nbformat_3_notebook_saved_or_uploaded_is_cleaned_in_its_own_layout(server, keys, how):
    """An old-format notebook PUT as a notebook model or uploaded as a file reaches disk without
    keys and still in nbformat 3 (code keys moved out of ``input``, the rest masked). Before,
    the model save failed with a 500 and the file upload was refused with a 400."""
    folder = unique_dir(server)
    nb = _v3_leaky_notebook(keys)
    if how == "notebook-model":
        resp = server.put_notebook(f"{folder}/old.ipynb", nb)
    else:
        resp = server.put_file(f"{folder}/old.ipynb", json.dumps(nb, indent=1).encode())
    assert resp.status_code == 201, resp.text[:500]
    text = (server.root / folder / "old.ipynb").read_text()
    leaked = holds_any_key(text, keys)
    assert not leaked, "key leaked into the saved notebook"
    saved = json.loads(text)
    assert saved["nbformat"] == 3
    code, markdown = saved["worksheets"][0]["cells"]
    assert 'os.environ["OPENAI_API_KEY"]' in "".join(code["input"])
    assert "[secret:GITHUB_TOKEN]" in "".join(markdown["source"])
    assert env_fingerprints(server.root / folder / ".env") == {
        "OPENAI_API_KEY": fingerprint(keys["openai"]), "GITHUB_TOKEN": fingerprint(keys["github"])}


def test_text_file_model_of_a_notebook_is_cleaned(server, keys):
    """A notebook saved as a text 'file' model is cleaned like a notebook model."""
    folder = unique_dir(server)
    raw = json.dumps(leaky_notebook(keys)).encode()
    resp = server.put_file(f"{folder}/txt.ipynb", raw, fmt="text")
    assert resp.status_code == 201, resp.text[:500]
    leaked = holds_any_key((server.root / folder / "txt.ipynb").read_text(), keys)
    assert not leaked, "key leaked into a notebook saved as text"


def test_chunked_upload_is_cleaned_after_the_last_chunk(server, keys):
    """A notebook uploaded in chunks (1, 2, -1) is cleaned on disk once the last chunk is written."""
    folder = unique_dir(server)
    raw = json.dumps(leaky_notebook(keys), indent=1).encode()
    third = len(raw) // 3
    pieces = [raw[:third], raw[third : 2 * third], raw[2 * third :]]
    for chunk, piece in zip((1, 2, -1), pieces):
        resp = server.put_file(f"{folder}/big.ipynb", piece, chunk=chunk)
        assert resp.status_code in (200, 201), resp.text[:500]
    text = (server.root / folder / "big.ipynb").read_text()
    leaked = holds_any_key(text, keys)
    assert not leaked, "key leaked into a chunked upload"
    assert json.loads(text)["cells"][1]["cell_type"] == "markdown"
    assert env_fingerprints(server.root / folder / ".env") == {"OPENAI_API_KEY": fingerprint(keys["openai"]), "GITHUB_TOKEN": fingerprint(keys["github"])}


def test_copy_of_a_notebook_written_outside_the_server_is_clean(server, keys):
    """POST copy_from of a leaky notebook written straight to disk produces a clean copy."""
    folder = unique_dir(server)
    (server.root / folder / "raw.ipynb").write_text(json.dumps(leaky_notebook(keys), indent=1))
    resp = server.api("POST", folder, {"copy_from": f"{folder}/raw.ipynb"})
    assert resp.status_code == 201, resp.text[:500]
    copy_path = server.root / resp.json()["path"]
    assert copy_path != server.root / folder / "raw.ipynb"
    leaked = holds_any_key(copy_path.read_text(), keys)
    assert not leaked, "key leaked into a copy"


def test_plain_files_are_saved_unchanged(server, keys):
    """Files that are not notebooks are saved byte for byte (the guard cleans notebooks only)."""
    folder = unique_dir(server)
    data = b"notes without keys\n"
    assert server.put_file(f"{folder}/notes.txt", data).status_code == 201
    assert (server.root / folder / "notes.txt").read_bytes() == data


def test_clean_notebook_is_saved_byte_for_byte(server, keys):
    """A notebook with no key uploaded as a file is written exactly as sent."""
    folder = unique_dir(server)
    nb = leaky_notebook(keys)
    nb["cells"] = [nb["cells"][1] | {"source": "no secrets here\n"}]
    raw = json.dumps(nb, indent=1).encode()
    assert server.put_file(f"{folder}/clean.ipynb", raw).status_code == 201
    assert (server.root / folder / "clean.ipynb").read_bytes() == raw


# -- failing closed ---------------------------------------------------------------------------
def test_save_is_refused_when_the_store_cannot_be_written(server, keys):
    """When the .env beside the notebook cannot be written the save fails with an HTTP error
    that explains how to disable the extension, and the file on disk is unchanged."""
    folder = unique_dir(server)
    target = server.root / folder / "t.ipynb"
    nb = leaky_notebook(keys)
    nb["cells"] = []  # no key: saved fine, nothing to move
    assert server.put_notebook(f"{folder}/t.ipynb", nb).status_code == 201
    before = target.read_bytes()
    (server.root / folder / ".env").mkdir()  # a directory where the .env file should be

    resp = server.put_notebook(f"{folder}/t.ipynb", leaky_notebook(keys))
    assert 400 <= resp.status_code < 600
    message = resp.json().get("message", "")
    assert "jupyter server extension disable ipykeyguard" in message
    leaked = holds_any_key(resp.text, keys)
    assert not leaked, "key leaked into the error reply"
    assert target.read_bytes() == before


def test_upload_of_a_broken_notebook_is_refused(server, keys):
    """An uploaded .ipynb that is not a notebook is refused (it could hold a key we cannot place)."""
    folder = unique_dir(server)
    resp = server.put_file(f"{folder}/broken.ipynb", f'{{"cells": "{keys["openai"]}"'.encode())
    assert resp.status_code == 400
    assert "ipykeyguard" in resp.json().get("message", "")
    assert not (server.root / folder / "broken.ipynb").exists()


def test_chunked_upload_that_cannot_be_cleaned_is_removed(server, keys):
    """A chunked .ipynb upload that is not a readable notebook is refused after its last chunk
    and the file, which may hold a key, is removed from disk."""
    folder = unique_dir(server)
    raw = f'{{"nbformat": 4, "cells": "{keys["openai"]}"'.encode()
    half = len(raw) // 2
    assert server.put_file(f"{folder}/bad.ipynb", raw[:half], chunk=1).status_code in (200, 201)
    resp = server.put_file(f"{folder}/bad.ipynb", raw[half:], chunk=-1)
    assert 400 <= resp.status_code < 600
    assert "ipykeyguard" in resp.json().get("message", "")
    leaked = holds_any_key(resp.text, keys)
    assert not leaked, "key leaked into the error reply"
    assert not (server.root / folder / "bad.ipynb").exists()


def test_server_log_names_variables_but_holds_no_key(server, keys):
    """The server log says what was moved (names only) and never prints a key."""
    folder = unique_dir(server)
    assert server.put_notebook(f"{folder}/log.ipynb", leaky_notebook(keys)).status_code == 201
    time.sleep(0.3)
    log = server.log()
    assert "ipykeyguard" in log and "OPENAI_API_KEY" in log
    leaked = holds_any_key(log, keys)
    assert not leaked, "key leaked into the server log"


# -- options from the server's config ---------------------------------------------------------
@pytest.fixture(scope="module")
def masking_server(tmp_path_factory):
    base = tmp_path_factory.mktemp("masking-server")
    srv = Server(base, ["--KeyGuardServer.code_keys=mask"])
    yield srv
    srv.stop()


def test_code_keys_mask_option_writes_no_env(masking_server, keys):
    """With c.KeyGuardServer.code_keys = 'mask' a code key is masked in place and no .env is written."""
    srv = masking_server
    folder = unique_dir(srv)
    nb = leaky_notebook(keys)
    nb["cells"][0]["source"] = f'token = "{keys["github"]}"\n'
    resp = srv.put_notebook(f"{folder}/m.ipynb", nb)
    assert resp.status_code == 201, resp.text[:500]
    saved = json.loads((srv.root / folder / "m.ipynb").read_text())
    leaked = keys["github"] in json.dumps(saved)
    assert not leaked, "key leaked with code_keys=mask"
    assert "[secret:GITHUB_TOKEN]" in "".join(saved["cells"][0]["source"])
    assert not (srv.root / folder / ".env").exists()


# -- packaging ----------------------------------------------------------------------------------
def test_wheel_install_enables_the_extension(tmp_path):
    """Installing the built wheel puts the drop-in under {sys.prefix}/etc/jupyter and
    'jupyter server extension list' then shows ipykeyguard enabled and valid."""
    repo = Path(__file__).resolve().parent.parent
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(repo / name, src / name)
    for name in ("ipykeyguard", "jupyter-config"):
        shutil.copytree(repo / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    (src / "labextension").mkdir()
    shutil.copy2(repo / "labextension" / "install.json", src / "labextension" / "install.json")
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(src)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    venv = tmp_path / "venv"
    wheel = next(wheels.glob("ipykeyguard-*.whl"))
    python = make_env(venv, f"ipykeyguard[jupyter] @ {wheel.as_uri()}")
    assert (venv / "etc" / "jupyter" / "jupyter_server_config.d" / "ipykeyguard.json").is_file()

    env = dict(os.environ)
    env["JUPYTER_CONFIG_DIR"] = str(tmp_path / "empty-config")
    where = subprocess.run(
        [str(python), "-c", "import ipykeyguard; print(ipykeyguard.__file__)"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert where.stdout.strip().startswith(str(venv))
    listing = subprocess.run(
        [str(python), "-m", "jupyter_server.extension.serverextension", "list"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    text = listing.stdout + listing.stderr
    line = next((ln for ln in text.splitlines() if ln.strip().startswith("ipykeyguard ")), "")
    assert "enabled" in line, text[-2000:]
    validation = text.split("Validating ipykeyguard", 1)[-1]
    assert f"ipykeyguard {ipykeyguard.__version__}" in validation and "OK" in validation, text[-2000:]
