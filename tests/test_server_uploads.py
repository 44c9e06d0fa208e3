"""Chunked uploads through a real ``jupyter server`` on 127.0.0.1: one that cannot be cleaned
is refused like a one-piece upload (400) and the notebook it was replacing stays intact."""

from __future__ import annotations

import json
import uuid

import pytest

import fakekeys
from test_server import Server, holds_any_key

pytestmark = [pytest.mark.server, pytest.mark.slow]

CHUNK = 1 << 20  # JupyterLab's chunk size


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = Server(tmp_path_factory.mktemp("server"))
    yield srv
    srv.stop()


def _big_notebook(key: str, nbformat: int = 4) -> dict:
    filler = "Notes on the weather in late autumn. " * (CHUNK // 18)  # pushes the file past two chunks
    cells = [{"cell_type": "code", "execution_count": None, "id": "c0", "metadata": {}, "outputs": [],
              "source": f'OPENAI_API_KEY = "{key}"\n'},
             {"cell_type": "markdown", "id": "m0", "metadata": {}, "source": filler + "\u00e9"}]
    if nbformat == 1:
        return {"nbformat": 1, "nbformat_minor": 0, "metadata": {},
                "worksheets": [{"cells": [{"cell_type": "code", "input": cells[0]["source"], "outputs": []},
                                          {"cell_type": "markdown", "source": filler}]}]}
    return {"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}


def _unreadable(kind: str, key: str) -> bytes:
    if kind == "nbformat1":
        return json.dumps(_big_notebook(key, nbformat=1)).encode()
    if kind == "broken-json":
        return json.dumps(_big_notebook(key)).encode()[:-3]
    return json.dumps(_big_notebook(key), ensure_ascii=False).encode("latin-1")


def _upload_in_chunks(server: Server, path: str, data: bytes):
    pieces = [data[i : i + CHUNK] for i in range(0, len(data), CHUNK)]
    assert len(pieces) >= 2
    for number, piece in enumerate(pieces, start=1):
        chunk = -1 if number == len(pieces) else number
        response = server.put_file(path, piece, chunk=chunk)
        if chunk != -1:
            assert response.status_code in (200, 201), response.text
    return response


@pytest.mark.parametrize("kind", ["nbformat1", "broken-json", "latin-1"])
def test_unreadable_chunked_upload_over_a_notebook_is_refused_with_400_and_the_old_file_kept(server, kind):
    """A notebook uploaded in chunks over 1 MiB that cannot be parsed (nbformat 1, broken JSON, Latin-1) replacing an existing notebook is answered 400 with ipykeyguard's reason, like a one-piece upload, and the existing notebook is byte for byte what it was."""
    folder = "d" + uuid.uuid4().hex[:8]
    (server.root / folder).mkdir()
    target = server.root / folder / "work.ipynb"
    old = json.dumps({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}).encode()
    target.write_bytes(old)
    key = fakekeys.openai_project_key()
    data = _unreadable(kind, key)

    one_piece = server.put_file(f"{folder}/other.ipynb", data)
    assert one_piece.status_code == 400

    response = _upload_in_chunks(server, f"{folder}/work.ipynb", data)
    assert response.status_code == 400, response.status_code
    assert "ipykeyguard" in response.json().get("message", "")
    assert not holds_any_key(response.text, {"k": key})
    assert target.read_bytes() == old


def test_unreadable_chunked_upload_of_a_new_file_is_refused_and_removed(server):
    """An unreadable chunked upload with no file to replace is refused with 400 and leaves no file (it may hold a key)."""
    folder = "d" + uuid.uuid4().hex[:8]
    (server.root / folder).mkdir()
    response = _upload_in_chunks(server, f"{folder}/new.ipynb", _unreadable("broken-json", fakekeys.openai_project_key()))
    assert response.status_code == 400
    assert not (server.root / folder / "new.ipynb").exists()


def test_good_chunked_upload_over_a_notebook_is_cleaned(server):
    """A readable chunked upload still replaces the old notebook and is cleaned on disk (the key moved to the .env)."""
    folder = "d" + uuid.uuid4().hex[:8]
    (server.root / folder).mkdir()
    target = server.root / folder / "work.ipynb"
    target.write_text(json.dumps({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    key = fakekeys.openai_project_key()
    response = _upload_in_chunks(server, f"{folder}/work.ipynb", json.dumps(_big_notebook(key)).encode())
    assert response.status_code in (200, 201)
    assert key not in target.read_text()
    assert key in (server.root / folder / ".env").read_text()


def test_saves_through_a_real_server_racing_clean_processes_lose_no_key(server):
    """Notebooks saved through a real jupyter server while two ``ipykeyguard clean`` processes clean other notebooks of the same folder: every key removed from every notebook is in the folder's .env under the name its lookup shows."""
    import subprocess
    import sys
    import threading

    from dotenv import dotenv_values

    from test_store_integrity import LOOKUP
    from conftest import write_leaky_notebook

    folder = "d" + uuid.uuid4().hex[:8]
    root = server.root / folder
    root.mkdir()
    on_disk = {root / f"cli{i}.ipynb": None for i in range(8)}
    for path in on_disk:
        on_disk[path] = write_leaky_notebook(path)
    saved = {}
    for i in range(8):
        key = fakekeys.openai_project_key()
        saved[root / f"srv{i}.ipynb"] = key
    cleaners = [subprocess.Popen([sys.executable, "-m", "ipykeyguard", "clean", "--quiet", *map(str, group)],
                                 cwd=root, stderr=subprocess.PIPE)
                for group in (list(on_disk)[::2], list(on_disk)[1::2])]
    statuses = []

    def save(path, key):
        nb = {"cells": [{"cell_type": "code", "execution_count": None, "id": "c0", "metadata": {}, "outputs": [],
                         "source": f'OPENAI_API_KEY = "{key}"'}], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
        statuses.append(server.put_notebook(f"{folder}/{path.name}", nb).status_code)

    threads = [threading.Thread(target=save, args=item) for item in saved.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    for proc in cleaners:
        assert proc.wait(timeout=300) == 1, proc.stderr.read().decode()
    assert statuses == [201] * len(saved) or set(statuses) <= {200, 201}
    env = dotenv_values(root / ".env", interpolate=False)
    for path, key in {**on_disk, **saved}.items():
        text = path.read_text()
        assert key not in text, f"{path.name} still holds its key"
        names = LOOKUP.findall(json.loads(text)["cells"][0]["source"] if isinstance(
            json.loads(text)["cells"][0]["source"], str) else "".join(json.loads(text)["cells"][0]["source"]))
        assert names and all(env.get(name) == key for name in names), f"{path.name} reads a name that holds another key"
