"""Every kernel message that carries text to a frontend passes the redactor (docs/KERNEL-MESSAGES.md).

Each trigger runs in a kernel without the guard and in one with ``%load_ext ipykeyguard``, and
the raw messages are read: the unguarded kernel shows the key (so the trigger really reaches
that message), the guarded one shows only masks, and never 8 or more characters of the key.
"""

from __future__ import annotations

import json
import queue
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest

import fakekeys
from kernelharness import RealKernel

pytestmark = pytest.mark.kernel

MASK = "[secret:MY_SERVICE_TOKEN]"
FRAGMENT = 8


class Keys(dict):
    def __repr__(self) -> str:
        return f"Keys({', '.join(self)}: <masked>)"


def unwordy_secret() -> str:
    """A fresh 40-character fake key none of whose 8-grams reads as an ordinary word (those are
    not masked on purpose), so "no 8 characters of it" can be asserted strictly."""
    from ipykeyguard.transforms.redact import _WORDLIKE_RE

    while True:
        key = fakekeys.generic_secret(n=40)
        if not any(_WORDLIKE_RE.fullmatch(key[i : i + FRAGMENT]) for i in range(len(key) - FRAGMENT + 1)):
            return key


@pytest.fixture(scope="module")
def keys() -> Keys:
    # known: under a secret-like name when the kernel starts; later: under a plain name, the
    # user's code puts it in os.environ["LATER_TOKEN"] itself.
    return Keys(known=unwordy_secret(), later=unwordy_secret())


def leaks(key: str, text: str) -> bool:
    """True when ``text`` holds 8 or more consecutive characters of ``key`` (never printed)."""
    return any(key[i : i + FRAGMENT] in text for i in range(len(key) - FRAGMENT + 1))


def _start(tmp: Path, keys: dict, guarded: bool, extra: list[str] | None = None) -> RealKernel:
    (tmp / "ipython" / "profile_default").mkdir(parents=True, exist_ok=True)
    (tmp / "work").mkdir(exist_ok=True)
    env = {"MY_SERVICE_TOKEN": keys["known"], "KG_TEST_LATER": keys["later"]}
    k = RealKernel(tmp / "work", ipython_dir=tmp / "ipython", env=env, extra_arguments=extra).start()
    if guarded:
        k.ok("%load_ext ipykeyguard")
    k.ok("import os, sys, time\nk = os.environ['MY_SERVICE_TOKEN']\nd = {k: 1, 'plain': 2}")
    return k


@pytest.fixture(scope="module")
def kernels(tmp_path_factory, keys) -> Iterator[dict[str, RealKernel]]:
    out = {"plain": _start(tmp_path_factory.mktemp("plain"), keys, False),
           "guarded": _start(tmp_path_factory.mktemp("guarded"), keys, True)}
    yield out
    for k in out.values():
        k.stop()


# -- talking to the kernel on each channel -----------------------------------------------------
def shell_reply(k: RealKernel, msg_id: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        reply = k.kc.get_shell_msg(timeout=max(1.0, deadline - time.monotonic()))
        if reply["parent_header"].get("msg_id") == msg_id:
            return reply


def control_request(k: RealKernel, msg_type: str, content: dict, timeout: float = 60) -> dict:
    msg = k.kc.session.msg(msg_type, content)
    k.kc.control_channel.send(msg)
    deadline = time.monotonic() + timeout
    while True:
        reply = k.kc.get_control_msg(timeout=max(1.0, deadline - time.monotonic()))
        if reply["parent_header"].get("msg_id") == msg["header"]["msg_id"]:
            return reply


def debug_request(k: RealKernel, command: str, arguments: dict, seq: int = 1) -> dict:
    return control_request(k, "debug_request",
                           {"type": "request", "seq": seq, "command": command, "arguments": arguments})


def wire(*messages: dict) -> str:
    return json.dumps([m["content"] for m in messages], ensure_ascii=False)


# -- triggers: each returns the raw text a frontend received -------------------------------------
def trigger_widget_open(k: RealKernel, keys) -> str:
    ex = k.ok("import ipywidgets as _w\n_t = _w.Text(value=k)\n_t")
    return wire(*ex.of_type("comm_open", "comm_msg"))


def trigger_widget_update(k: RealKernel, keys) -> str:
    k.ok("import ipywidgets as _w\n_t2 = _w.Text(value='harmless')")
    ex = k.ok("_t2.value = k")
    return wire(*ex.of_type("comm_msg"))


def trigger_widget_dict_key(k: RealKernel, keys) -> str:
    """A widget whose synced state holds the key as a dict key."""
    ex = k.ok("import ipywidgets as _w\n_v = _w.Valid(description='x')\n_v.add_traits()\n"
              "from traitlets import Dict\n_v.add_traits(extra=Dict({k: 1}).tag(sync=True))")
    return wire(*ex.of_type("comm_open", "comm_msg"))


def trigger_json_key(k: RealKernel, keys) -> str:
    """display(JSON({key: 1})): the key is a dict key of the application/json bundle."""
    ex = k.ok("from IPython.display import JSON, display\ndisplay(JSON({k: 1, 'n': 2}))")
    (shown,) = ex.of_type("display_data")
    assert list(shown["content"]["data"]["application/json"].values()) == [1, 2]  # values kept, in order
    return wire(shown)


def trigger_user_expressions(k: RealKernel, keys) -> str:
    msg_id = k.kc.execute("", user_expressions={"v": "k"})
    reply = shell_reply(k, msg_id)
    k.drain()
    return wire(reply)


def trigger_complete(k: RealKernel, keys) -> str:
    msg_id = k.kc.complete('d["', cursor_pos=3)
    return wire(shell_reply(k, msg_id))


def trigger_inspect(k: RealKernel, keys) -> str:
    msg_id = k.kc.inspect("k", cursor_pos=1, detail_level=0)
    return wire(shell_reply(k, msg_id))


def trigger_pinfo_page(k: RealKernel, keys) -> str:
    ex = k.run("k?")
    return wire(*ex.messages) + json.dumps(ex.reply["content"])


def trigger_input_prompt(k: RealKernel, keys) -> str:
    msg_id = k.kc.execute("_answer = input('paste ' + k + ': ')", allow_stdin=True)
    request = k.kc.get_stdin_msg(timeout=60)
    k.kc.input("ok")
    shell_reply(k, msg_id)
    k.drain()
    assert request["msg_type"] == "input_request"
    return wire(request)


def trigger_history(k: RealKernel, keys) -> str:
    # The cell that loaded os.environ[...] into k holds no key; this one types it, and the
    # history (kept raw before the guard existed, or by another client) must not replay it.
    return json.dumps(k.history(raw=True))


def trigger_debug_inspect_variables(k: RealKernel, keys) -> str:
    return wire(debug_request(k, "inspectVariables", {}))


def trigger_debug_rich_inspect(k: RealKernel, keys) -> str:
    return wire(debug_request(k, "richInspectVariables", {"variableName": "k"}))


def trigger_debug_variables(k: RealKernel, keys) -> str:
    """The variables pane expanding a dict: the debugger started (debugpy), then ``variables``."""
    debug_request(k, "initialize", {"clientID": "test", "adapterID": "python", "pathFormat": "path",
                                    "linesStartAt1": True, "columnsStartAt1": True}, seq=1)
    debug_request(k, "attach", {}, seq=2)
    inspected = debug_request(k, "inspectVariables", {}, seq=3)
    (ref,) = [v["variablesReference"] for v in inspected["content"]["body"]["variables"] if v["name"] == "d"]
    return wire(debug_request(k, "variables", {"variablesReference": ref}, seq=4))


TRIGGERS: list[tuple[str, Callable]] = [
    ("comm_open widget state", trigger_widget_open),
    ("comm_msg widget update", trigger_widget_update),
    ("comm_open widget dict key", trigger_widget_dict_key),
    ("display_data JSON object key", trigger_json_key),
    ("execute_reply user_expressions", trigger_user_expressions),
    ("complete_reply dict keys", trigger_complete),
    ("inspect_reply", trigger_inspect),
    ("execute_reply page payload", trigger_pinfo_page),
    ("input_request prompt", trigger_input_prompt),
    ("debug_reply inspectVariables", trigger_debug_inspect_variables),
    ("debug_reply richInspectVariables", trigger_debug_rich_inspect),
    ("debug_reply variables", trigger_debug_variables),  # last: it starts the debugger
]


@pytest.mark.parametrize("trigger", [pytest.param(f, id=i) for i, f in TRIGGERS])
def test_message_carries_a_mask_not_the_key(kernels, keys, trigger):
    """The message shows the key without the guard, and only a mask with it."""
    plain = trigger(kernels["plain"], keys)
    assert leaks(keys["known"], plain), "the trigger did not reach this message (test is vacuous)"
    guarded = trigger(kernels["guarded"], keys)
    assert not leaks(keys["known"], guarded), "8+ characters of the key reached the frontend"
    assert MASK in guarded


def test_history_reply_replays_no_known_value(tmp_path, keys):
    """A cell typed with the key before the guard loaded is replayed masked by history_reply."""
    k = _start(tmp_path, keys, False)
    try:
        k.ok(f"_typed = {keys['known']!r}")
        assert leaks(keys["known"], trigger_history(k, keys)), "vacuous: history holds no key"
        k.ok("%load_ext ipykeyguard")
        text = trigger_history(k, keys)
        assert not leaks(keys["known"], text)
        assert MASK in text
    finally:
        k.stop()


def test_kernel_info_banner_is_redacted(tmp_path, keys):
    """A banner configured to show a key (banner2) reaches kernel_info_reply masked."""
    (tmp_path / "work").mkdir()
    extra = ["--InteractiveShellApp.extensions=ipykeyguard",
             f"--InteractiveShell.banner2=deploy key {keys['known']}"]
    k = RealKernel(tmp_path / "work", ipython_dir=tmp_path / "ipython",
                   env={"MY_SERVICE_TOKEN": keys["known"]}, extra_arguments=extra).start()
    try:
        msg_id = k.kc.kernel_info()
        reply = shell_reply(k, msg_id)
        assert not leaks(keys["known"], wire(reply))
        assert MASK in reply["content"]["banner"]
    finally:
        k.stop()


def test_widget_still_syncs_both_ways_and_buffers_are_untouched(kernels, keys):
    """A guarded widget receives a frontend update, and binary buffers arrive byte for byte."""
    k = kernels["guarded"]
    ex = k.ok("import ipywidgets as _w\n_s = _w.Text(value='start')\n_s.comm.comm_id")
    comm_id = json.loads(ex.of_type("execute_result")[0]["content"]["data"]["text/plain"].replace("'", '"'))
    msg = k.kc.session.msg("comm_msg", {"comm_id": comm_id, "data": {
        "method": "update", "state": {"value": "from the frontend"}, "buffer_paths": []}})
    k.kc.shell_channel.send(msg)
    deadline = time.monotonic() + 30
    while k.value("_s.value") != "from the frontend":
        assert time.monotonic() < deadline, "the kernel never saw the frontend's update"
        time.sleep(0.2)
    ex = k.ok("_img = _w.Image(value=k.encode(), format='png')")
    (opened,) = [m for m in ex.of_type("comm_open") if m["content"]["data"]["state"].get("_model_name") == "ImageModel"]
    assert [bytes(b) for b in opened["buffers"]] == [keys["known"].encode()]


def test_value_set_in_os_environ_by_a_cell_is_masked_even_when_printed_in_pieces(kernels, keys):
    """A key the user's code puts in os.environ after the guard loaded is held back and masked
    when printed in two pieces with a pause (separate stream messages)."""
    code = ("os.environ['LATER_TOKEN'] = os.environ['KG_TEST_LATER']\n"
            "_l = os.environ['LATER_TOKEN']\n"
            "print('before ' + _l[:12], end='', flush=True)\n"
            "time.sleep(0.5)\n"
            "print(_l[12:] + ' after')\n")
    plain = kernels["plain"].ok(code)
    assert leaks(keys["later"], plain.stdout), "vacuous: the unguarded kernel shows no key"
    ex = kernels["guarded"].ok(code)
    assert len(ex.of_type("stream")) >= 1
    assert not leaks(keys["later"], ex.wire_text())
    assert ex.stdout == "before [secret:LATER_TOKEN] after\n"


def test_truncated_reprs_show_no_eight_characters_of_a_known_value(kernels, keys):
    """%whos, a pandas DataFrame and a long repr cut in the middle show masks only."""
    code = ("import pandas as pd\n"
            "_df = pd.DataFrame({'name': ['prod'], 'key': [k * 3]})\n"
            "%whos str\n"
            "display(_df)\n"
            "print(repr(k)[:20] + '...' + repr(k)[-20:])\n")
    plain = kernels["plain"].ok(code)
    assert leaks(keys["known"], plain.wire_text()), "vacuous"
    ex = kernels["guarded"].ok(code)
    assert not leaks(keys["known"], ex.wire_text())


# -- in-process: messages no test here can make a kernel send with a key -------------------------
class _RecordingSession:
    def __init__(self) -> None:
        self.sent: list = []

    def send(self, stream, msg_or_type, content=None, parent=None, ident=None, buffers=None,
             track=False, header=None, metadata=None):
        self.sent.append((msg_or_type, content, buffers))


def test_debug_event_body_is_redacted_by_the_session_send_wrapper(keys):
    """A debugger event (debugpy 'output' with a logpoint's text) goes out masked, its protocol
    fields untouched; a harmless event is passed on as the very same object."""
    from ipykeyguard.kernel.output_guard import install_output_guard
    from ipykeyguard.transforms.redact import Redactor

    class Shell:
        class kernel:
            session = _RecordingSession()

    redactor = Redactor()
    redactor.add_known("MY_SERVICE_TOKEN", keys["known"])
    uninstall = install_output_guard(Shell, redactor, environ={})
    try:
        event = {"seq": 7, "type": "event", "event": "output",
                 "body": {"category": "console", "output": f"logged {keys['known']}\n"}}
        Shell.kernel.session.send(None, "debug_event", event, None, b"debug_event")
        harmless = {"seq": 8, "type": "event", "event": "initialized"}
        Shell.kernel.session.send(None, "debug_event", harmless, None, b"debug_event")
    finally:
        uninstall()
    (_t1, sent, _b1), (_t2, sent_harmless, _b2) = Shell.kernel.session.sent
    assert sent == {"seq": 7, "type": "event", "event": "output",
                    "body": {"category": "console", "output": f"logged {MASK}\n"}}
    assert sent_harmless is harmless


def test_environment_follower_registers_new_changed_and_overwritten_values():
    """Secret-like variables set later are registered; plain names are not; an overwritten
    value stays known as NAME_PREVIOUS; a value already known keeps its mask."""
    from ipykeyguard.kernel.output_guard import EnvironmentFollower

    first, second, other = (fakekeys.generic_secret(n=30) for _ in range(3))
    env = {"HOME": "/root"}
    got: dict[str, str] = {}
    follower = EnvironmentFollower(got.__setitem__, env, is_known=lambda v: v == other)
    follower.check()
    assert got == {}
    env["SERVICE_TOKEN"] = first
    env["PLAIN_SETTING"] = second
    follower.check()
    assert set(got) == {"SERVICE_TOKEN"} and got["SERVICE_TOKEN"] == first
    env["SERVICE_TOKEN"] = second
    env["COPY_TOKEN"] = other
    follower.check()
    assert set(got) == {"SERVICE_TOKEN", "SERVICE_TOKEN_PREVIOUS"}
    assert got["SERVICE_TOKEN"] == second and got["SERVICE_TOKEN_PREVIOUS"] == first


def test_environment_follower_reads_the_real_os_environ(monkeypatch):
    """Against os.environ (bytes-keyed _data on POSIX) a variable set later is decoded and registered."""
    import os

    from ipykeyguard.kernel.output_guard import EnvironmentFollower

    value = fakekeys.generic_secret(n=30)
    got: dict[str, str] = {}
    follower = EnvironmentFollower(got.__setitem__, os.environ)
    monkeypatch.setenv("KG_FOLLOWER_TEST_TOKEN", value)
    follower.check()
    assert got.get("KG_FOLLOWER_TEST_TOKEN") == value


def test_a_typed_piece_of_a_known_key_is_masked_in_execute_input_and_history(kernels, keys):
    """A cell holding 25 characters of a known key (no rule matches them) is broadcast and
    recorded in history masked; the cell itself runs as typed."""
    code = f"_piece = {keys['known'][5:30]!r}\nlen(_piece)"
    plain = kernels["plain"].ok(code)
    assert leaks(keys["known"], wire(*plain.of_type("execute_input"))), "vacuous"
    k = kernels["guarded"]
    ex = k.ok(code)
    assert not leaks(keys["known"], wire(*ex.of_type("execute_input")))
    assert ex.of_type("execute_result")[0]["content"]["data"]["text/plain"] == "25"
    assert not leaks(keys["known"], trigger_history(k, keys))
