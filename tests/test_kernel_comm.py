"""The kernel end of the JupyterLab channel (comm target ``ipykeyguard``), in a real kernel.

A jupyter_client plays the JupyterLab extension: it opens the comm, runs cells with the
``cellId`` metadata JupyterLab sends, and reads the comm messages on iopub. No test prints a key;
values are compared by SHA-256 fingerprint computed in the kernel.
"""

from __future__ import annotations

import hashlib
import json
import queue
import time
import uuid

import pytest

from fakekeys import generic_secret, openai_project_key
from ipykeyguard.storage.store import DotenvStore

pytestmark = pytest.mark.kernel


def fp(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _iopub_until(k, predicate, timeout: float = 60) -> list[dict]:
    """Read iopub messages until ``predicate(msg)`` holds; return all read."""
    seen, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            msg = k.kc.get_iopub_msg(timeout=1)
        except queue.Empty:
            continue
        seen.append(msg)
        if predicate(msg):
            return seen
    raise TimeoutError(f"no matching iopub message; saw {[m['msg_type'] for m in seen]}")


def open_comm(k) -> tuple[str, list[dict]]:
    """Open an ``ipykeyguard`` comm as the JupyterLab extension does; return its id and the
    iopub messages up to the kernel's answer (a hello or a comm_close)."""
    comm_id = uuid.uuid4().hex
    msg = k.kc.session.msg("comm_open", {"comm_id": comm_id, "target_name": "ipykeyguard", "data": {"action": "hello"}})
    k.kc.shell_channel.send(msg)
    seen = _iopub_until(k, lambda m: m["msg_type"] in ("comm_msg", "comm_close")
                        and m["content"].get("comm_id") == comm_id)
    return comm_id, seen


def send_comm(k, comm_id: str, data: dict) -> list[dict]:
    msg = k.kc.session.msg("comm_msg", {"comm_id": comm_id, "data": data})
    k.kc.shell_channel.send(msg)
    return _iopub_until(k, lambda m: m["msg_type"] == "comm_msg" and m["content"]["comm_id"] == comm_id
                        and m["content"]["data"].get("event") == "reloaded")


def execute_in_cell(k, code: str, cell_id: str) -> tuple[dict, list[dict]]:
    """Run ``code`` as JupyterLab runs cell ``cell_id``; return the reply and the iopub messages."""
    content = {"code": code, "silent": False, "store_history": True, "user_expressions": {},
               "allow_stdin": False, "stop_on_error": True}
    msg = k.kc.session.msg("execute_request", content, metadata={"cellId": cell_id})
    k.kc.shell_channel.send(msg)
    msg_id = msg["header"]["msg_id"]
    seen = _iopub_until(k, lambda m: m["parent_header"].get("msg_id") == msg_id and m["msg_type"] == "status"
                        and m["content"]["execution_state"] == "idle")
    reply = k.kc.get_shell_msg(timeout=60)
    while reply["parent_header"].get("msg_id") != msg_id:
        reply = k.kc.get_shell_msg(timeout=60)
    return reply, [m for m in seen if m["parent_header"].get("msg_id") == msg_id]


def events(messages: list[dict], comm_id: str | None = None) -> list[dict]:
    return [m["content"]["data"] for m in messages
            if m["msg_type"] == "comm_msg" and (comm_id is None or m["content"]["comm_id"] == comm_id)]


def test_guarded_kernel_answers_the_comm_with_hello_naming_stored_keys_only(kernel):
    """Opening the comm to a guarded kernel yields a hello with the mode, the store and the stored names, no value."""
    k = kernel()
    value = generic_secret()
    DotenvStore(k.cwd / ".env").put({"MY_SERVICE_TOKEN": value})
    k.ok("%load_ext ipykeyguard")
    comm_id, seen = open_comm(k)
    hello = events(seen, comm_id)
    assert hello and hello[0]["event"] == "hello"
    assert hello[0]["mode"] == "rewrite" and hello[0]["store"] == ".env"
    assert hello[0]["names"] == ["MY_SERVICE_TOKEN"]
    assert value not in json.dumps([m["content"] for m in seen])


def test_kernel_without_the_guard_closes_the_comm_so_the_page_can_warn(kernel):
    """A kernel without ipykeyguard has no comm target: the comm is closed at once, with no hello."""
    k = kernel()
    comm_id, seen = open_comm(k)
    assert seen[-1]["msg_type"] == "comm_close"
    assert not events(seen, comm_id)


def test_a_cell_that_raises_still_sends_its_rewritten_text_for_its_cell_id(kernel):
    """After a cell that moved a key and then raised, the kernel sends 'moved' with the cell id and the rewritten text, never the key."""
    k = kernel(load_ext=True)
    comm_id, _ = open_comm(k)
    key = openai_project_key()
    reply, messages = execute_in_cell(k, f'client_key = "{key}"\nraise ValueError("boom")\n', "cell-abc")
    assert reply["content"]["status"] == "error"
    moved = [e for e in events(messages, comm_id) if e["event"] == "moved"]
    assert len(moved) == 1
    assert moved[0]["cell_id"] == "cell-abc"
    assert moved[0]["names"] == ["OPENAI_API_KEY"] and moved[0]["store"] == ".env"
    assert 'os.environ["OPENAI_API_KEY"]' in moved[0]["text"]
    assert moved[0]["text"].endswith('raise ValueError("boom")\n')
    assert key not in json.dumps([m["content"] for m in messages])


def test_a_cell_without_keys_sends_no_moved_event(kernel):
    """An ordinary cell produces no comm message at all."""
    k = kernel(load_ext=True)
    comm_id, _ = open_comm(k)
    _, messages = execute_in_cell(k, "x = 1 + 1\n", "cell-plain")
    assert events(messages, comm_id) == []


def test_reload_puts_a_value_stored_by_another_process_into_os_environ_and_masks_it(kernel):
    """After the server stored a value (another process), a reload action loads it into os.environ (overriding) and outputs mask it."""
    k = kernel(load_ext=True, env={"PANEL_TOKEN": "stale-value-from-the-shell"})
    comm_id, _ = open_comm(k)
    value = generic_secret()
    DotenvStore(k.cwd / ".env").put({"PANEL_TOKEN": value})
    answer = send_comm(k, comm_id, {"action": "reload", "names": ["PANEL_TOKEN"]})
    assert events(answer, comm_id)[-1] == {"event": "reloaded", "names": ["PANEL_TOKEN"]}
    out = k.ok("import hashlib, os; print(hashlib.sha256(os.environ['PANEL_TOKEN'].encode()).hexdigest())").stdout
    assert fp(value) in out
    printed = k.ok("print(os.environ['PANEL_TOKEN'])")
    assert value not in printed.wire_text()


def test_forget_drops_a_deleted_name_from_os_environ(kernel):
    """After a delete in the panel, a forget action removes the name from os.environ and the store."""
    k = kernel(load_ext=True)
    comm_id, _ = open_comm(k)
    DotenvStore(k.cwd / ".env").put({"OLD_TOKEN": generic_secret()})
    send_comm(k, comm_id, {"action": "reload", "names": ["OLD_TOKEN"]})
    assert k.value("'OLD_TOKEN' in __import__('os').environ") is True
    send_comm(k, comm_id, {"action": "forget", "names": ["OLD_TOKEN"]})
    assert k.value("'OLD_TOKEN' in __import__('os').environ") is False
    assert "OLD_TOKEN" not in (k.cwd / ".env").read_text()


def test_keyguard_set_asks_with_getpass_and_stores_without_echo(kernel):
    """`%keyguard set NAME` asks for the value on stdin (password prompt), stores it in .env and os.environ, and echoes nothing."""
    k = kernel(load_ext=True)
    value = generic_secret()
    msg_id = k.kc.execute("%keyguard set SERVICE_TOKEN", allow_stdin=True)
    request = k.kc.get_stdin_msg(timeout=60)
    assert request["content"]["password"] is True
    assert "SERVICE_TOKEN" in request["content"]["prompt"]
    k.kc.input(value)
    seen = _iopub_until(k, lambda m: m["parent_header"].get("msg_id") == msg_id and m["msg_type"] == "status"
                        and m["content"]["execution_state"] == "idle")
    text = json.dumps([m["content"] for m in seen])
    assert "stored SERVICE_TOKEN" in text
    assert value not in text
    assert DotenvStore(k.cwd / ".env").get("SERVICE_TOKEN") == value
    assert fp(value) in k.ok("import hashlib, os; print(hashlib.sha256(os.environ['SERVICE_TOKEN'].encode()).hexdigest())").stdout


def test_load_ext_in_a_running_kernel_opens_a_comm_towards_the_page(kernel):
    """`%load_ext ipykeyguard` during a cell opens an ipykeyguard comm carrying a hello, so an open page learns the kernel is guarded."""
    k = kernel()
    msg_id = k.kc.execute("%load_ext ipykeyguard")
    seen = _iopub_until(k, lambda m: m["parent_header"].get("msg_id") == msg_id and m["msg_type"] == "status"
                        and m["content"]["execution_state"] == "idle")
    opens = [m for m in seen if m["msg_type"] == "comm_open"]
    assert opens and opens[0]["content"]["target_name"] == "ipykeyguard"
    assert opens[0]["content"]["data"]["event"] == "hello"


def test_keyguard_set_refuses_a_bad_name_before_asking_for_a_value(kernel):
    """`%keyguard set` with a name that is not an identifier fails at once, asks for nothing and stores nothing."""
    k = kernel(load_ext=True)
    ex = k.run("%keyguard set 1-BAD", allow_stdin=False)
    assert ex.status == "error" and ex.content["ename"] == "UsageError"
    assert not (k.cwd / ".env").exists()
