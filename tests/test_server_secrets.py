"""The secrets panel's REST API, against a real ``jupyter server`` on 127.0.0.1.

Values go in through PUT and never come back: every reply body and the server log are searched
for them. Paths that leave the server root (``..``, symlinked folders, a symlinked ``.env``) are
refused, and the API follows Jupyter's token and XSRF rules.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import requests

from fakekeys import generic_secret, openai_project_key
from test_server import Server

pytestmark = [pytest.mark.server, pytest.mark.slow]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base = tmp_path_factory.mktemp("secrets-server")
    old = os.environ.get("IPYKEYGUARD_STATE_DIR")
    os.environ["IPYKEYGUARD_STATE_DIR"] = str(base / "state")
    try:
        srv = Server(base)
    finally:
        if old is None:
            os.environ.pop("IPYKEYGUARD_STATE_DIR")
        else:
            os.environ["IPYKEYGUARD_STATE_DIR"] = old
    (srv.root / "proj").mkdir()
    yield srv
    srv.stop()


def secrets_url(srv: Server, name: str | None = None) -> str:
    return f"{srv.url}/ipykeyguard/secrets" + (f"/{name}" if name else "")


def test_put_stores_the_value_beside_the_notebook_and_no_reply_or_log_holds_it(server):
    """A value PUT for a notebook lands in the .env beside it (0600); GET lists the name, source and time; no reply or log line has the value."""
    value = openai_project_key()
    put = server.session.put(secrets_url(server, "OPENAI_API_KEY"), params={"path": "proj/a.ipynb"},
                             json={"value": value}, timeout=30)
    assert put.status_code == 200, put.text
    assert put.json()["name"] == "OPENAI_API_KEY"
    assert put.json()["source"] == "added in the secrets panel"
    listing = server.session.get(secrets_url(server), params={"path": "proj/a.ipynb"}, timeout=30)
    assert listing.status_code == 200
    body = listing.json()
    assert body["kind"] == "dotenv" and body["store"] == "proj/.env"
    assert [s["name"] for s in body["secrets"]] == ["OPENAI_API_KEY"]
    assert body["secrets"][0]["updated"]
    env_file = server.root / "proj" / ".env"
    assert value in env_file.read_text()
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    for text in (put.text, listing.text, server.log()):
        assert value not in text


def test_replace_and_delete_change_the_store(server):
    """PUT on an existing name replaces its value; DELETE removes it from the .env and from the list."""
    first, second = generic_secret(), generic_secret()
    for value in (first, second):
        r = server.session.put(secrets_url(server, "SERVICE_TOKEN"), params={"path": "proj/b.ipynb"},
                               json={"value": value}, timeout=30)
        assert r.status_code == 200
    text = (server.root / "proj" / ".env").read_text()
    assert second in text and first not in text
    r = server.session.delete(secrets_url(server, "SERVICE_TOKEN"), params={"path": "proj/b.ipynb"}, timeout=30)
    assert r.status_code == 204
    assert "SERVICE_TOKEN" not in (server.root / "proj" / ".env").read_text()
    names = [s["name"] for s in server.session.get(secrets_url(server), params={"path": "proj/b.ipynb"}).json()["secrets"]]
    assert "SERVICE_TOKEN" not in names


def test_requests_without_the_token_are_refused(server):
    """Without the token (or a login cookie) GET and PUT are refused and nothing is written."""
    anonymous = requests.Session()
    assert anonymous.get(secrets_url(server), params={"path": "a.ipynb"}, timeout=30).status_code == 403
    r = anonymous.put(secrets_url(server, "ANON_TOKEN"), params={"path": "a.ipynb"},
                      json={"value": generic_secret()}, timeout=30)
    assert r.status_code == 403
    assert not (server.root / ".env").exists() or "ANON_TOKEN" not in (server.root / ".env").read_text()


def test_cookie_authenticated_put_needs_the_xsrf_token(server):
    """A browser session (login cookie) must send the _xsrf token with a PUT, as for every Jupyter API."""
    browser = requests.Session()
    browser.get(f"{server.url}/login?token={server.token}", timeout=30)
    browser.get(f"{server.url}/api/status", timeout=30)
    assert any(c.name.startswith("username-") for c in browser.cookies), "no login cookie"
    value = generic_secret()
    r = browser.put(secrets_url(server, "XSRF_TOKEN_TEST"), params={"path": "proj/c.ipynb"},
                    json={"value": value}, timeout=30)
    assert r.status_code == 403
    xsrf = browser.cookies.get("_xsrf")
    assert xsrf, "the server set no _xsrf cookie"
    r = browser.put(secrets_url(server, "XSRF_TOKEN_TEST"), params={"path": "proj/c.ipynb"},
                    json={"value": value}, headers={"X-XSRFToken": xsrf}, timeout=30)
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("path", ["../outside.ipynb", "proj/../../outside.ipynb", "/../outside.ipynb"])
def test_paths_leaving_the_root_are_refused(server, path):
    """A notebook path with .. that leaves the server root is refused with 403 and nothing is written."""
    r = server.session.put(secrets_url(server, "ESCAPE_TOKEN"), params={"path": path},
                           json={"value": generic_secret()}, timeout=30)
    assert r.status_code == 403
    assert not (server.base / ".env").exists()


def test_a_symlinked_folder_or_env_pointing_outside_the_root_is_refused(server, tmp_path):
    """A folder symlinked to a place outside the root, or a .env symlink whose target is outside, is refused."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (server.root / "linked").symlink_to(outside, target_is_directory=True)
    r = server.session.put(secrets_url(server, "LINK_TOKEN"), params={"path": "linked/x.ipynb"},
                           json={"value": generic_secret()}, timeout=30)
    assert r.status_code == 403
    (server.root / "envlink").mkdir()
    (outside / "target.env").write_text("")
    (server.root / "envlink" / ".env").symlink_to(outside / "target.env")
    r = server.session.put(secrets_url(server, "LINK_TOKEN"), params={"path": "envlink/x.ipynb"},
                           json={"value": generic_secret()}, timeout=30)
    assert r.status_code == 403
    assert (outside / "target.env").read_text() == ""
    assert not (outside / ".env").exists()


@pytest.mark.parametrize("name", ["1STARTS_WITH_DIGIT", "HAS-DASH", "HAS%20SPACE"])
def test_names_that_are_not_identifiers_are_refused(server, name):
    """Only identifier-like names reach the store: others get 404 (no such route) or 400."""
    r = server.session.put(secrets_url(server, name), params={"path": "proj/a.ipynb"},
                           json={"value": generic_secret()}, timeout=30)
    assert r.status_code in (400, 404)
    assert name.replace("%20", " ") not in (server.root / "proj" / ".env").read_text()


def test_an_empty_or_missing_value_is_refused(server):
    """A PUT without a non-empty string value is a 400 and stores nothing."""
    for body in ({}, {"value": ""}, {"value": 42}):
        r = server.session.put(secrets_url(server, "EMPTY_TOKEN"), params={"path": "proj/a.ipynb"}, json=body, timeout=30)
        assert r.status_code == 400
    assert "EMPTY_TOKEN" not in (server.root / "proj" / ".env").read_text()


# -- the paste guard's endpoint ----------------------------------------------------------------
def paste_url(srv: Server) -> str:
    return f"{srv.url}/ipykeyguard/paste"


def test_paste_check_names_the_keys_and_writes_nothing(server):
    """A pasted snippet with two keys: the check answers the names they would take, holds no
    value, and writes no store."""
    openai, other = openai_project_key(), generic_secret()
    snippet = f'client = OpenAI(api_key="{openai}")\nservice_token = "{other}"\n'
    (server.root / "paste1").mkdir()
    r = server.session.post(paste_url(server), params={"path": "paste1/a.ipynb"}, json={"text": snippet}, timeout=30)
    assert r.status_code == 200, r.text
    assert r.json() == {"names": ["OPENAI_API_KEY", "SERVICE_TOKEN"]}
    assert openai not in r.text and other not in r.text
    assert not (server.root / "paste1" / ".env").exists()


def test_paste_store_moves_the_keys_and_answers_the_rewritten_code(server):
    """With store, the keys land in the .env beside the notebook (origin "pasted into a cell"),
    and the answer is the code reading them, without the "import os" line the page adds at the
    top of the cell; no reply or log line holds a key. A snippet without keys is answered as it is."""
    openai = openai_project_key()
    snippet = f'client = OpenAI(api_key="{openai}")'
    (server.root / "paste2").mkdir()
    r = server.session.post(paste_url(server), params={"path": "paste2/a.ipynb"},
                            json={"text": snippet, "store": True}, timeout=30)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body == {"names": ["OPENAI_API_KEY"], "text": 'client = OpenAI(api_key=os.environ["OPENAI_API_KEY"])',
                    "import_os": True}
    assert openai in (server.root / "paste2" / ".env").read_text()
    listing = server.session.get(secrets_url(server), params={"path": "paste2/a.ipynb"}, timeout=30).json()
    assert [(s["name"], s["source"]) for s in listing["secrets"]] == [("OPENAI_API_KEY", "pasted into a cell")]
    for text in (r.text, server.log()):
        assert openai not in text
    plain = server.session.post(paste_url(server), params={"path": "paste2/a.ipynb"},
                                json={"text": "x = 1\n", "store": True}, timeout=30)
    assert plain.json() == {"names": [], "text": "x = 1\n", "import_os": False}


def test_paste_of_keys_beside_a_store_with_values_names_the_held_one_and_a_new_one(server):
    """With a .env that already holds a key: pasting that key names its stored name (the code will
    read it), a different key with the same conventional name gets a suffixed one."""
    held, other = openai_project_key(), openai_project_key()
    (server.root / "paste3").mkdir()
    put = server.session.put(secrets_url(server, "OPENAI_API_KEY"), params={"path": "paste3/a.ipynb"},
                             json={"value": held}, timeout=30)
    assert put.status_code == 200
    for text, names in ((f'k = "{held}"', ["OPENAI_API_KEY"]), (f'k = "{other}"', ["OPENAI_API_KEY_2"])):
        r = server.session.post(paste_url(server), params={"path": "paste3/a.ipynb"}, json={"text": text}, timeout=30)
        assert r.status_code == 200, r.text
        assert r.json() == {"names": names}


@pytest.mark.parametrize("body, status", [({"text": 7}, 400), ({}, 400), ({"text": "x" * (1024 * 1024 + 1)}, 413)])
def test_paste_refuses_what_is_not_text(server, body, status):
    """A body without text, or with more than the paste limit, is refused."""
    r = server.session.post(paste_url(server), params={"path": "proj/a.ipynb"}, json=body, timeout=30)
    assert r.status_code == status


def test_paste_paths_leaving_the_root_are_refused(server):
    """The paste endpoint finds its store like the secrets panel: a path outside the root is 403."""
    r = server.session.post(paste_url(server), params={"path": "../x.ipynb"}, json={"text": "x"}, timeout=30)
    assert r.status_code == 403
