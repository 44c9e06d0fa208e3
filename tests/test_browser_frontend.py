"""The JupyterLab extension end to end: real `jupyter lab` on 127.0.0.1, Debian's Chromium (headless).

What a user sees: a cell that holds a key and then raises shows the rewritten text in the editor
(JupyterLab itself drops ``set_next_input`` on an error reply) and Undo does not bring the key
back; a notification says what moved where; the status bar says the guard is on; the secrets
panel lists names (never values), stores a new secret that a cell then reads from os.environ.
Every network response the page receives and the page's DOM are searched for the values.
Screenshots go to ``test-artifacts/`` (and, for the README, ``docs/img/`` when
``IPYKEYGUARD_UPDATE_SCREENSHOTS=1``).
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

import fakekeys
from test_browser import (  # noqa: F401
    ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, _open_notebook, _put_empty_notebook, _run_cell, _wait_executed, lab,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

DOCS_IMG = Path(__file__).resolve().parent.parent / "docs" / "img"


def _wait_text(page, selector: str, text: str, timeout_ms: int = 60000) -> None:
    page.wait_for_function(
        "([sel, text]) => [...document.querySelectorAll(sel)].some(e => e.innerText.includes(text))",
        arg=[selector, text], timeout=timeout_ms,
    )


def _body_keeper(bodies: list[str]):
    """A response handler that keeps every text body the page receives in ``bodies``."""

    def keep_body(response) -> None:
        try:
            bodies.append(response.text())
        except Exception:  # noqa: BLE001 - redirects and binary bodies have no text
            pass

    return keep_body


def _screenshot(page, name: str, **kwargs) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), **kwargs)
    if os.environ.get("IPYKEYGUARD_UPDATE_SCREENSHOTS") == "1":
        DOCS_IMG.mkdir(parents=True, exist_ok=True)
        shutil.copy(ARTIFACTS / name, DOCS_IMG / name)


def test_jupyterlab_extension_rewrites_a_raising_cell_notifies_and_manages_secrets(lab):  # noqa: F811
    """A raising cell's key is replaced in the editor (Undo cannot restore it), a notification and the status show, the panel and the paste guard store secrets a cell reads, no value ever reaches the page, and the status warns while the guard is unloaded."""
    from playwright.sync_api import sync_playwright

    openai_key = fakekeys.openai_project_key()
    panel_value = fakekeys.generic_secret()
    name = "frontend.ipynb"
    _put_empty_notebook(lab, name)
    bodies: list[str] = []
    keep_body = _body_keeper(bodies)

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.on("response", keep_body)
        try:
            _open_notebook(page, lab, name)
            # The status bar says the kernel is guarded (the comm answered with hello).
            _wait_text(page, ".jp-ipykeyguard-statusitem", "keyguard: on")

            # A cell that holds a key and then raises.
            _run_cell(page, 0, f'client_key = "{openai_key}"\nraise RuntimeError("the API said no")')
            _wait_executed(page, 0)
            cell0 = page.locator(".jp-Notebook .jp-Cell").nth(0)
            page.wait_for_function("el => el.innerText.includes('os.environ')",
                                   arg=cell0.locator(".cm-content").element_handle(), timeout=30000)
            source0 = cell0.locator(".cm-content").inner_text()
            assert 'os.environ["OPENAI_API_KEY"]' in source0
            assert openai_key not in source0, "key still in the editor of a cell that raised"
            assert "RuntimeError" in cell0.locator(".jp-OutputArea").inner_text()

            # The notification names the key and the store, with an action to open the panel.
            _wait_text(page, ".jp-Notification-Toast, .Toastify__toast", "moved 1 key (OPENAI_API_KEY) to .env")
            time.sleep(1.0)  # let the toast finish sliding in before the picture
            _screenshot(page, "jupyterlab-notification.png")

            # Undo in that cell does not bring the key back.
            cell0.locator(".cm-content").click()
            for _ in range(5):
                page.keyboard.press("Control+z")
            time.sleep(0.5)
            assert openai_key not in cell0.locator(".cm-content").inner_text(), "Undo brought the key back"

            # The notification's action opens the secrets panel, which lists the name only.
            page.locator(".jp-Notification-Toast, .Toastify__toast").get_by_text("Show secrets").first.click()
            page.wait_for_selector(".jp-ipykeyguard-panel .jp-ipykeyguard-secret-name", timeout=30000)
            _wait_text(page, ".jp-ipykeyguard-panel", "OPENAI_API_KEY")
            _wait_text(page, ".jp-ipykeyguard-panel", "moved from a cell")

            # Add a secret through the panel, then use it from a cell.
            page.fill(".jp-ipykeyguard-name", "MY_SERVICE_TOKEN")
            page.fill(".jp-ipykeyguard-value", panel_value)
            page.click(".jp-ipykeyguard-add")
            _wait_text(page, ".jp-ipykeyguard-panel .jp-ipykeyguard-list", "MY_SERVICE_TOKEN")
            assert page.input_value(".jp-ipykeyguard-value") == "", "the value stayed in the form"
            _screenshot(page, "jupyterlab-secrets-panel.png")

            # "Insert" puts the os.environ lookup at the cursor of the active cell.
            cell1 = page.locator(".jp-Notebook .jp-Cell").nth(1)
            cell1.locator(".cm-content").click()
            page.keyboard.insert_text("import os\nvalue = ")
            page.locator(".jp-ipykeyguard-secret", has_text="MY_SERVICE_TOKEN").locator(".jp-ipykeyguard-insert").click()
            page.wait_for_function("el => el.innerText.includes('value = os.environ[\"MY_SERVICE_TOKEN\"]')",
                                   arg=cell1.locator(".cm-content").element_handle(), timeout=30000)
            cell1.locator(".cm-content").focus()
            page.keyboard.press("Control+End")
            page.keyboard.insert_text("\nprint(len(value), value)")
            page.keyboard.press("Shift+Enter")
            _wait_executed(page, 1)
            output1 = page.locator(".jp-Notebook .jp-Cell").nth(1).locator(".jp-OutputArea").inner_text()
            assert output1.strip().startswith(str(len(panel_value))), output1
            assert panel_value not in output1, "the stored value was printed unmasked"

            # Paste guard: pasting a key into a cell offers to store it and inserts the lookup.
            github_key = fakekeys.github_classic_token()
            page.locator(".jp-Notebook .jp-Cell").nth(2).locator(".cm-content").click()
            page.evaluate(
                """([text]) => {
                    const el = document.querySelectorAll('.jp-Notebook .jp-Cell')[2].querySelector('.cm-content');
                    const data = new DataTransfer();
                    data.setData('text/plain', text);
                    el.dispatchEvent(new ClipboardEvent('paste', {clipboardData: data, bubbles: true, cancelable: true}));
                }""",
                [github_key],
            )
            page.wait_for_selector(".jp-Dialog .jp-ipykeyguard-paste-name", timeout=30000)
            assert page.input_value(".jp-Dialog .jp-ipykeyguard-paste-name") == "GITHUB_TOKEN"
            _screenshot(page, "jupyterlab-paste-guard.png")
            page.click(".jp-Dialog .jp-mod-accept")
            cell2 = page.locator(".jp-Notebook .jp-Cell").nth(2)
            page.wait_for_function("el => el.innerText.includes('os.environ[\"GITHUB_TOKEN\"]')",
                                   arg=cell2.locator(".cm-content").element_handle(), timeout=30000)
            assert github_key not in cell2.locator(".cm-content").inner_text()
            page.keyboard.press("Shift+Enter")
            _wait_executed(page, 2)
            output2 = cell2.locator(".jp-OutputArea").inner_text()
            assert "GITHUB_TOKEN" in output2 and github_key not in output2, output2

            page.keyboard.press("Control+s")
            deadline = time.monotonic() + 30
            saved = ""
            while time.monotonic() < deadline:
                saved = (lab["dir"] / name).read_text()
                if "MY_SERVICE_TOKEN" in saved:
                    break
                time.sleep(0.3)
            # Delete in the panel removes the name from the store and from the kernel's os.environ.
            page.locator(".jp-ipykeyguard-secret", has_text="MY_SERVICE_TOKEN").locator(".jp-ipykeyguard-delete").click()
            page.locator(".jp-Dialog button", has_text="Delete").click()
            page.wait_for_function(
                "() => ![...document.querySelectorAll('.jp-ipykeyguard-secret-name')].some(e => e.innerText === 'MY_SERVICE_TOKEN')",
                timeout=30000)
            deadline = time.monotonic() + 30
            while "MY_SERVICE_TOKEN" in (lab["dir"] / ".env").read_text() and time.monotonic() < deadline:
                time.sleep(0.2)
            assert "MY_SERVICE_TOKEN" not in (lab["dir"] / ".env").read_text()

            # Without the guard the status bar warns; %load_ext in the running kernel turns it on again.
            _run_cell(page, 3, "%unload_ext ipykeyguard")
            _wait_executed(page, 3)
            _wait_text(page, ".jp-ipykeyguard-statusitem", "keyguard: not loaded")
            assert "jp-mod-warning" in (page.locator(".jp-ipykeyguard-statusitem").get_attribute("class") or "")
            _run_cell(page, 4, "%load_ext ipykeyguard")
            _wait_executed(page, 4)
            _wait_text(page, ".jp-ipykeyguard-statusitem", "keyguard: on")
            _run_cell(page, 5, "print('MY_SERVICE_TOKEN' in os.environ)")
            _wait_executed(page, 5)
            assert page.locator(".jp-Notebook .jp-Cell").nth(5).locator(".jp-OutputArea").inner_text().strip() == "False"
            # After a kernel restart (Kernel > Restart Kernel) the page opens a new comm, so a
            # raising cell is rewritten again.
            page.locator(".lm-MenuBar-itemLabel", has_text="Kernel").click()
            page.locator(".lm-Menu-itemLabel", has_text="Restart Kernel…").first.click()
            page.locator(".jp-Dialog .jp-mod-accept").click()
            page.wait_for_function("() => document.body.innerText.includes('| Idle')", timeout=90000)
            second_key = fakekeys.openai_project_key()
            _run_cell(page, 6, f'second = "{second_key}"\nraise KeyError("after restart")')
            _wait_executed(page, 6)
            cell6 = page.locator(".jp-Notebook .jp-Cell").nth(6)
            page.wait_for_function("el => el.innerText.includes('os.environ')",
                                   arg=cell6.locator(".cm-content").element_handle(), timeout=30000)
            assert second_key not in cell6.locator(".cm-content").inner_text()
            assert cell6.locator(".jp-InputPrompt").inner_text().strip() == "[1]:", "the kernel did not restart"
            _wait_text(page, ".jp-ipykeyguard-statusitem", "keyguard: on")
            dom = page.content()
        finally:
            browser.close()

    assert 'os.environ[\\"OPENAI_API_KEY\\"]' in saved
    assert openai_key not in saved, "key in the saved notebook"
    assert panel_value not in saved
    # The page never received or rendered a stored value.
    assert panel_value not in dom and openai_key not in dom and github_key not in dom and second_key not in dom
    assert bodies, "no network responses recorded"
    for body in bodies:
        assert panel_value not in body, "a response carried the value stored through the panel"
        assert openai_key not in body, "a response carried the moved key"
        assert github_key not in body, "a response carried the pasted key"
        assert second_key not in body, "a response carried the key typed after the restart"
    assert github_key not in saved
    env_text = (lab["dir"] / ".env").read_text()
    assert openai_key in env_text and github_key in env_text
    assert panel_value not in env_text, "the deleted secret is still in .env"


def test_pasting_code_that_holds_a_key_offers_to_store_it_and_pastes_the_lookup(lab):  # noqa: F811
    """Code with a key pasted mid-line into a cell: the page asks the server (the real engine),
    offers to store the key, and on "Store and paste" the cell gets the code reading
    os.environ, with "import os" added at its top; the key is in the .env beside the notebook,
    never in the editor, a response or the DOM. Code without a key is pasted as it is."""
    from playwright.sync_api import sync_playwright

    key = fakekeys.github_classic_token()
    (lab["dir"] / "pasting").mkdir(exist_ok=True)  # a folder, and so a .env, of its own
    name = "pasting/paste-snippet.ipynb"
    _put_empty_notebook(lab, name)
    snippet = f'"{key}"\nprint(len(token))'
    bodies: list[str] = []
    keep_body = _body_keeper(bodies)

    paste = """([index, text]) => {
        const el = document.querySelectorAll('.jp-Notebook .jp-Cell')[index].querySelector('.cm-content');
        const data = new DataTransfer();
        data.setData('text/plain', text);
        el.dispatchEvent(new ClipboardEvent('paste', {clipboardData: data, bubbles: true, cancelable: true}));
    }"""
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.on("response", keep_body)
        try:
            _open_notebook(page, lab, name, alone=True)
            _wait_text(page, ".jp-ipykeyguard-statusitem", "keyguard: on")
            assert page.locator(".jp-Notebook").count() == 1
            cell = page.locator(".jp-Notebook .jp-Cell").nth(0)
            cell.locator(".cm-content").click()
            page.keyboard.insert_text("token = ")
            page.evaluate(paste, [0, snippet])
            _wait_text(page, ".jp-Dialog", "GITHUB_TOKEN")
            _screenshot(page, "jupyterlab-paste-snippet.png")
            page.click(".jp-Dialog .jp-mod-accept")
            page.wait_for_function("el => el.innerText.includes('os.environ[\"GITHUB_TOKEN\"]')",
                                   arg=cell.locator(".cm-content").element_handle(), timeout=30000)
            source = cell.locator(".cm-content").inner_text()
            assert source.startswith("import os\n"), source
            assert 'token = os.environ["GITHUB_TOKEN"]\nprint(len(token))' in source, source
            assert key not in source
            page.keyboard.press("Shift+Enter")
            _wait_executed(page, 0)
            assert cell.locator(".jp-OutputArea").inner_text().strip() == str(len(key))

            # Code without a key: no dialog, pasted as it is.
            second = page.locator(".jp-Notebook .jp-Cell").nth(1)
            second.locator(".cm-content").click()
            plain = "total = sum(range(10))\nprint(total)"
            page.evaluate(paste, [1, plain])
            page.wait_for_function("el => el.innerText.includes('print(total)')",
                                   arg=second.locator(".cm-content").element_handle(), timeout=30000)
            assert page.locator(".jp-Dialog").count() == 0
            dom = page.content()
        finally:
            browser.close()

    assert key not in dom
    assert bodies, "no network responses recorded"
    for body in bodies:
        assert key not in body, "a response carried the pasted key"
    assert key in (lab["dir"] / "pasting" / ".env").read_text()
