"""End to end in JupyterLab: a real `jupyter lab` on 127.0.0.1 driven by Debian's Chromium (headless).

The user's flow, copy for copy: the guard is enabled for every kernel with `ipykeyguard enable`, a
notebook is opened in JupyterLab, a cell with a fake key is typed and run, and then we look at what
the page shows (the cell text, the output), save with Ctrl+S and read the file and the `.env` on disk.
A screenshot of the page is kept in `test-artifacts/` as evidence.

Skipped, with the reason, where Chromium or Playwright is not installed (`.ci/install-test-deps`
installs both where Debian's packages and PyPI are reachable).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

import fakekeys

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(url: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"jupyter lab exited with {proc.returncode}")
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"jupyter lab did not answer at {url}")


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A JupyterLab server with the ipykeyguard server extension and the kernel guard enabled."""
    if CHROMIUM is None:
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    pytest.importorskip("playwright.sync_api", reason="Python playwright is not installed")
    root = tmp_path_factory.mktemp("lab")
    notebooks = root / "notebooks"
    notebooks.mkdir()
    settings = root / "lab-settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    # No news pop-up over the notebook.
    (settings / "notification.jupyterlab-settings").write_text('{"fetchNews": "false", "checkForUpdates": false}')
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}
    env.update(
        JUPYTER_CONFIG_DIR=str(root / "config"),
        JUPYTER_RUNTIME_DIR=str(root / "runtime"),
        JUPYTERLAB_SETTINGS_DIR=str(root / "lab-settings"),
        IPYTHONDIR=str(root / "ipython"),
    )
    # The documented way to guard every kernel: one command, no %load_ext cell.
    subprocess.run([sys.executable, "-m", "ipykeyguard", "enable"], env=env, check=True, capture_output=True)
    port, token = _free_port(), "browser-test-token"
    log = open(root / "lab.log", "w")
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
            f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={notebooks}", "--allow-root",
            '--ServerApp.jpserver_extensions={"ipykeyguard": True}',
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_http(f"http://127.0.0.1:{port}/api/status?token={token}", proc)
        yield {"url": f"http://127.0.0.1:{port}", "token": token, "dir": notebooks, "log": root / "lab.log"}
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def _put_empty_notebook(lab: dict, name: str) -> None:
    nb = {
        "cells": [{"cell_type": "code", "source": "", "metadata": {}, "outputs": [], "execution_count": None, "id": "c0"}],
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    body = json.dumps({"type": "notebook", "format": "json", "content": nb}).encode()
    req = urllib.request.Request(
        f"{lab['url']}/api/contents/{name}?token={lab['token']}",
        method="PUT",
        data=body,
        headers={"Content-Type": "application/json"},
    )
    urllib.request.urlopen(req, timeout=30)


def _open_notebook(page, lab, name: str, *, alone: bool = False) -> None:
    """Open notebook ``name`` in JupyterLab, accept the kernel dialog if any, wait until idle.

    ``alone``: in a fresh workspace, so no notebook an earlier test opened is restored beside
    it (the helpers here index cells across the whole page)."""
    reset = "reset&" if alone else ""
    page.goto(f"{lab['url']}/lab/tree/{name}?{reset}token={lab['token']}")
    page.wait_for_selector(".jp-Notebook .jp-Cell .cm-content", timeout=90000)
    try:  # JupyterLab may ask which kernel to use
        page.wait_for_selector(".jp-Dialog .jp-mod-accept", timeout=5000)
        page.click(".jp-Dialog .jp-mod-accept")
    except Exception:  # noqa: BLE001 - no dialog is the normal case
        pass
    page.wait_for_function("() => document.body.innerText.includes('| Idle')", timeout=90000)


def _run_cell(page, index: int, code: str) -> None:
    """Type ``code`` into cell ``index`` (inserted as text, so no auto-indent or auto-close) and run it."""
    cells = page.locator(".jp-Notebook .jp-Cell")
    cells.nth(index).locator(".cm-content").click()
    page.keyboard.insert_text(code)
    page.keyboard.press("Shift+Enter")


def _wait_executed(page, index: int, timeout_ms: int = 60000) -> None:
    """Wait until cell ``index`` shows an execution count (``[1]:``), i.e. its reply has arrived."""
    prompt = page.locator(".jp-Notebook .jp-Cell").nth(index).locator(".jp-InputPrompt")
    deadline = time.monotonic() + timeout_ms / 1000
    while time.monotonic() < deadline:
        text = prompt.inner_text().strip()
        if text and text not in ("[ ]:", "[*]:"):
            return
        time.sleep(0.2)
    raise TimeoutError(f"cell {index} did not finish")


def test_jupyterlab_cell_key_is_moved_masked_and_saved_clean(lab):
    """In JupyterLab a typed key runs, the cell then reads os.environ[...], output shows the mask, and the saved file and .env are right."""
    from playwright.sync_api import sync_playwright

    openai_key = fakekeys.openai_project_key()
    github_key = fakekeys.github_classic_token()
    name = "browser.ipynb"
    _put_empty_notebook(lab, name)
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        try:
            _open_notebook(page, lab, name)  # the status bar reads "... | Idle" once the kernel is up

            # Cell 0: a key pasted into code, then printed.
            _run_cell(page, 0, f'client_key = "{openai_key}"\nprint("using", client_key)')
            _wait_executed(page, 0)
            cell0 = page.locator(".jp-Notebook .jp-Cell").nth(0)
            page.wait_for_function(
                "el => el.innerText.includes('os.environ')",
                arg=cell0.locator(".cm-content").element_handle(),
                timeout=30000,
            )
            source0 = cell0.locator(".cm-content").inner_text()
            output0 = cell0.locator(".jp-OutputArea").inner_text()
            assert 'os.environ["OPENAI_API_KEY"]' in source0
            assert openai_key not in source0, "key still in the cell text"
            assert openai_key not in output0, "key shown in the output"
            assert "[secret:OPENAI_API_KEY]" in output0

            # Cell 1: a cell that raises with a key in its message keeps working and shows the mask.
            _run_cell(page, 1, f'raise ValueError("Incorrect API key provided: {github_key}")')
            _wait_executed(page, 1)
            cell1 = page.locator(".jp-Notebook .jp-Cell").nth(1)
            output1 = cell1.locator(".jp-OutputArea").inner_text()
            assert "ValueError" in output1
            assert github_key not in output1, "key shown in the traceback"

            # Cell 2: the kernel still works after the error.
            _run_cell(page, 2, "print(len(client_key))")
            _wait_executed(page, 2)
            output2 = page.locator(".jp-Notebook .jp-Cell").nth(2).locator(".jp-OutputArea").inner_text()
            assert output2.strip() == str(len(openai_key))

            page.keyboard.press("Control+s")
            deadline = time.monotonic() + 30
            saved = ""
            while time.monotonic() < deadline:
                saved = (lab["dir"] / name).read_text()
                if "client_key" in saved:
                    break
                time.sleep(0.3)
            page.screenshot(path=str(ARTIFACTS / "jupyterlab-guarded-notebook.png"), full_page=True)
        finally:
            browser.close()

    assert "client_key" in saved, "the notebook was not saved"
    assert openai_key not in saved, "key in the saved notebook"
    assert github_key not in saved, "key (from the failed cell) in the saved notebook"
    assert 'os.environ[\\"OPENAI_API_KEY\\"]' in saved
    dotenv = lab["dir"] / ".env"
    assert dotenv.exists()
    assert stat.S_IMODE(dotenv.stat().st_mode) == 0o600
    env_text = dotenv.read_text()
    assert "OPENAI_API_KEY" in env_text and openai_key in env_text
