"""The kernel output guard against a real kernel: no key on the wire, harmless output unchanged.

Every assertion is on the raw messages a frontend receives (iopub and the shell reply). Each
case runs in two guarded kernels - one where the test installs the guard directly
(``install_output_guard``) and one with ``%load_ext ipykeyguard`` - and the harmless cases are
compared with a kernel that has no guard.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Callable, Iterator

import pytest

import fakekeys
from ipykeyguard.engine.findings import fingerprint
from ipykeyguard.transforms.redact import WITHHELD_NOTICE
from kernelharness import Execution, RealKernel

pytestmark = pytest.mark.kernel

MASK = "[secret:MY_SERVICE_TOKEN]"
OPENAI_MASK = "[secret:OPENAI_API_KEY]"

INSTALL_DIRECTLY = """\
import os
from ipykeyguard.kernel.output_guard import install_output_guard
from ipykeyguard.transforms.redact import Redactor, secret_like_env
_kg_redactor = Redactor()
for _kg_name, _kg_value in secret_like_env(os.environ).items():
    _kg_redactor.add_known(_kg_name, _kg_value)
_kg_uninstall = install_output_guard(get_ipython(), _kg_redactor)
"""


def assert_no_key(key: str, text: str, where: str = "the wire") -> None:
    """Fail without echoing the key (a plain assert would print both operands)."""
    if key in text:
        pytest.fail(f"key leaked in {where}", pytrace=False)


def same(a: str, b: str) -> bool:
    """Equality by fingerprint, so a failure report shows hashes, not text."""
    return fingerprint(a) == fingerprint(b)


class Keys(dict):
    """The run's fake keys; its repr is masked so a failure report never prints them."""

    def __repr__(self) -> str:
        return f"Keys({', '.join(self)}: <masked>)"


@pytest.fixture(scope="module")
def keys() -> Keys:
    """The run's fake keys: one known by its secret-like env name, one only a rule can find."""
    return Keys(known=fakekeys.generic_secret(n=40), rule_only=fakekeys.openai_project_key())


def _start(tmp: Path, keys: dict[str, str], setup: str | None, **kw) -> RealKernel:
    (tmp / "ipython" / "profile_default").mkdir(parents=True, exist_ok=True)
    (tmp / "work").mkdir(exist_ok=True)
    env = {"MY_SERVICE_TOKEN": keys["known"], "PLAIN_VALUE": keys["rule_only"]}
    k = RealKernel(tmp / "work", ipython_dir=tmp / "ipython", env=env, **kw).start()
    if setup:
        k.ok(setup)
    k.ok("import os, sys, time\nfrom IPython.display import display, HTML")
    return k


@pytest.fixture(scope="module")
def guarded_kernels(tmp_path_factory, keys) -> Iterator[dict[str, RealKernel]]:
    """A kernel with the guard installed directly and one with ``%load_ext ipykeyguard``."""
    kernels = {
        "direct": _start(tmp_path_factory.mktemp("direct"), keys, INSTALL_DIRECTLY),
        "load_ext": _start(tmp_path_factory.mktemp("load_ext"), keys, "%load_ext ipykeyguard"),
    }
    yield kernels
    for k in kernels.values():
        k.stop()


@pytest.fixture(scope="module")
def plain_kernel(tmp_path_factory, keys) -> Iterator[RealKernel]:
    """A kernel without the guard, for byte-identical comparisons."""
    k = _start(tmp_path_factory.mktemp("plain"), keys, None)
    yield k
    k.stop()


@pytest.fixture(params=["direct", "load_ext"])
def guarded(request, guarded_kernels) -> RealKernel:
    return guarded_kernels[request.param]


def mimetypes_of(ex: Execution, *types: str) -> dict[str, str]:
    """Every mimetype value (as JSON text) of the given message types, keyed by type/mimetype."""
    out = {}
    for i, m in enumerate(ex.of_type(*types)):
        for mime, value in m["content"].get("data", {}).items():
            out[f"{i}:{m['msg_type']}:{mime}"] = value if isinstance(value, str) else json.dumps(value)
    return out


# -- one row per way a key reaches the screen ----------------------------------------------------
def check_print(ex: Execution, keys) -> None:
    assert ex.stdout == f"token: {MASK}\n"


def check_result(ex: Execution, keys) -> None:
    (result,) = ex.of_type("execute_result")
    assert result["content"]["data"]["text/plain"] == f"'{MASK}'"


def check_html(ex: Execution, keys) -> None:
    (shown,) = ex.of_type("display_data")
    assert shown["content"]["data"]["text/html"] == f"<p>key: <b>{MASK}</b></p>"
    assert set(shown["content"]["data"]) == {"text/html", "text/plain"}


def check_json(ex: Execution, keys) -> None:
    (shown,) = ex.of_type("display_data")
    assert shown["content"]["data"]["application/json"] == {"auth": {"token": MASK, "n": 3}}
    assert shown["content"]["data"]["text/plain"] == f"json {MASK}"


def check_env_get(ex: Execution, keys) -> None:
    (result,) = ex.of_type("execute_result")
    assert MASK in result["content"]["data"]["text/plain"]


def check_env_set(ex: Execution, keys) -> None:
    assert ex.status == "ok"
    for m in ex.of_type("execute_input"):  # the raw cell as the frontend sent it
        assert_no_key(keys["known"], m["content"]["code"], "execute_input")


def check_logging(ex: Execution, keys) -> None:
    assert ex.stderr == f"calling with {MASK}\n"


def check_warning(ex: Execution, keys) -> None:
    assert f"UserWarning: bad key {MASK}" in ex.stderr


def check_exception(ex: Execution, keys) -> None:
    assert ex.status == "error"
    expected = f"Incorrect API key provided: {MASK}"
    (error,) = ex.of_type("error")
    assert error["content"]["ename"] == "AuthenticationError"
    assert error["content"]["evalue"] == expected
    assert any(expected in line for line in error["content"]["traceback"])
    assert ex.content["evalue"] == expected  # the shell-channel execute_reply
    assert any(expected in line for line in ex.content["traceback"])


def check_rule_only_exception(ex: Execution, keys) -> None:
    assert ex.status == "error"
    assert ex.content["evalue"] == f"Incorrect API key provided: {OPENAI_MASK}"
    (error,) = ex.of_type("error")
    assert error["content"]["evalue"] == ex.content["evalue"]


def check_shell_echo(ex: Execution, keys) -> None:
    assert ex.stdout.replace("\r\n", "\n") == f"Authorization: Bearer {MASK}\n"


def check_fd_level(ex: Execution, keys) -> None:
    assert f"fd: {MASK}" in ex.stdout


def check_thread(ex: Execution, keys) -> None:
    assert ex.stdout == f"thread: {MASK}\n"


def check_update(ex: Execution, keys) -> None:
    (first,) = ex.of_type("display_data")
    (update,) = ex.of_type("update_display_data")
    assert first["content"]["data"]["text/html"] == "<i>waiting</i>"
    assert update["content"]["data"]["text/html"] == f"<b>{MASK}</b>"
    assert update["content"]["transient"]["display_id"] == first["content"]["transient"]["display_id"]


def check_split(ex: Execution, keys) -> None:
    # The pause is longer than the kernel's 0.2 s flush interval: the pieces left in separate
    # messages, and the frontend would concatenate them.
    assert len(ex.of_type("stream")) >= 2
    assert ex.stdout == f"before {MASK} after\n"


def check_split_stderr(ex: Execution, keys) -> None:
    assert len(ex.of_type("stream")) >= 2
    assert ex.stderr == f"err {MASK}!\n"


def check_rule_only(ex: Execution, keys) -> None:
    assert ex.stdout == f"client key {OPENAI_MASK}\n"


CASES: list[tuple[str, str, Callable]] = [
    ("print", "print('token:', os.environ['MY_SERVICE_TOKEN'])", check_print),
    ("last-expression", "os.environ['MY_SERVICE_TOKEN']", check_result),
    ("display-html", "display(HTML(f\"<p>key: <b>{os.environ['MY_SERVICE_TOKEN']}</b></p>\"))", check_html),
    ("display-raw-json",
     "k = os.environ['MY_SERVICE_TOKEN']\n"
     "display({'application/json': {'auth': {'token': k, 'n': 3}}, 'text/plain': 'json ' + k}, raw=True)",
     check_json),
    ("env-get", "%env MY_SERVICE_TOKEN", check_env_get),
    ("env-set", "%env COPY_OF_TOKEN={known}", check_env_set),
    ("logging",
     "import logging\nlogging.getLogger('kg-test').warning('calling with %s', os.environ['MY_SERVICE_TOKEN'])",
     check_logging),
    ("warnings", "import warnings\nwarnings.warn('bad key ' + os.environ['MY_SERVICE_TOKEN'])", check_warning),
    ("exception",
     "class AuthenticationError(Exception): pass\n"
     "raise AuthenticationError('Incorrect API key provided: ' + os.environ['MY_SERVICE_TOKEN'])",
     check_exception),
    ("exception-rule-only",
     "class AuthenticationError(Exception): pass\n"
     "raise AuthenticationError('Incorrect API key provided: ' + os.environ['PLAIN_VALUE'])",
     check_rule_only_exception),
    ("shell-echo-bearer", '!echo "Authorization: Bearer $MY_SERVICE_TOKEN"', check_shell_echo),
    ("fd-level-os-system", "os.system('echo fd: $MY_SERVICE_TOKEN'); time.sleep(0.3)", check_fd_level),
    ("thread",
     "import threading\n"
     "t = threading.Thread(target=lambda: print('thread:', os.environ['MY_SERVICE_TOKEN']))\n"
     "t.start(); t.join()",
     check_thread),
    ("display-update",
     "h = display(HTML('<i>waiting</i>'), display_id=True)\n"
     "time.sleep(0.3)\n"
     "h.update(HTML('<b>' + os.environ['MY_SERVICE_TOKEN'] + '</b>'))",
     check_update),
    ("split-key-with-pause",
     "k = os.environ['MY_SERVICE_TOKEN']\n"
     "print('before ' + k[:10], end='', flush=True)\n"
     "time.sleep(0.5)\n"
     "print(k[10:25], end='', flush=True)\n"
     "time.sleep(0.5)\n"
     "print(k[25:] + ' after')",
     check_split),
    ("split-key-stderr",
     "k = os.environ['MY_SERVICE_TOKEN']\n"
     "sys.stderr.write('err ' + k[:5]); sys.stderr.flush()\n"
     "time.sleep(0.5)\n"
     "sys.stderr.write(k[5:] + '!\\n')",
     check_split_stderr),
    ("rule-only-key", "print('client key', os.environ['PLAIN_VALUE'])", check_rule_only),
]


@pytest.mark.parametrize("code, check", [pytest.param(c, f, id=i) for i, c, f in CASES])
def test_no_key_reaches_the_frontend(guarded, keys, code, check):
    """Each way of showing a key shows a mask instead, in every message a frontend receives."""
    ex = guarded.run(code.replace("{known}", keys["known"]))
    for key in keys.values():
        assert_no_key(key, ex.wire_text())
        assert_no_key(key, ex.stdout, "the concatenated stdout")
        assert_no_key(key, ex.stderr, "the concatenated stderr")
    check(ex, keys)


def test_held_prefix_is_released_before_the_next_display_and_idle(guarded, keys):
    """A tail held back as a possible key start comes out, in order, before the next display_data
    (7 characters: a longer piece of a key would come out masked)."""
    ex = guarded.run(
        "k = os.environ['MY_SERVICE_TOKEN']\n"
        "print('start ' + k[:7], end='', flush=True)\n"
        "time.sleep(0.5)\n"
        "display(HTML('<i>mid</i>'))\n"
        "print('tail', end='')\n"
    )
    kinds = [m["msg_type"] for m in ex.messages if m["msg_type"] in ("stream", "display_data")]
    first_display = kinds.index("display_data")
    before = "".join(m["content"]["text"] for m in ex.of_type("stream")[: kinds[:first_display].count("stream")])
    assert same(before, "start " + keys["known"][:7])
    assert ex.stdout.endswith("tail")


def test_a_piece_of_a_keys_middle_split_across_messages_is_masked_whole(guarded, keys):
    """Seven characters from the middle of a known key, a pause longer than the flush interval,
    then the next eighteen: the seven are held back (they lie inside the key) and come out
    with the rest as one mask. Before, they left at once, shown beside the masked rest."""
    ex = guarded.run(
        "k = os.environ['MY_SERVICE_TOKEN']\n"
        "print('mid ' + k[5:12], end='', flush=True)\n"
        "time.sleep(0.5)\n"
        "print(k[12:30] + ' end')\n"
    )
    assert len(ex.of_type("stream")) >= 2
    assert ex.stdout == f"mid {MASK} end\n"


def test_two_hundred_known_values_are_masked(guarded_kernels, tmp_path):
    """With 200 known values registered, printing and displaying all of them shows only masks."""
    rng = random.Random()
    values = [fakekeys.generic_secret(rng, n=36) for _ in range(200)]
    path = tmp_path / "values.json"
    path.write_text(json.dumps(values))
    k = guarded_kernels["direct"]
    k.ok(f"import json\n_vals = json.load(open({str(path)!r}))\n"
         "for _i, _v in enumerate(_vals): _kg_redactor.add_known(f'BULK_{_i}_TOKEN', _v)")
    ex = k.ok("print('\\n'.join(_vals))\ndisplay(HTML('<br>'.join(_vals)))\n_vals[:3]")
    wire = ex.wire_text()
    for v in values:
        assert_no_key(v, wire)
    assert ex.stdout.count("[secret:BULK_") == 200
    k.ok("for _i in range(200): _kg_redactor.remove_known(f'BULK_{_i}_TOKEN')")


HARMLESS = [
    "print('héllo wörld ✓\\ttabs', 'sk-... is a placeholder', 'x' * 300)\n"
    "sys.stderr.write('warning: nothing to see\\n')\n"
    "print('no newline at the end', end='')",
    "display(HTML('<table><tr><td>1</td><td>a &amp; b</td></tr></table>'))\n"
    "display({'application/json': {'a': [1, 2.5, None, 'three']}, 'text/plain': 'json'}, raw=True)\n"
    "{'answer': 42, 'text': 'plain', 'nested': [1, (2, 3)]}",
    "h = display('first', display_id=True)\nh.update('second')\n[1, 2, 3]",
    "raise ValueError('nothing secret here, just a message')",
    "import logging\nlogging.getLogger('kg-harmless').error('an error line')\nprint('\\x1b[31mred\\x1b[0m')",
]


def _comparable(ex: Execution) -> list:
    """The messages a frontend shows, minus what differs between kernels (ids, counters)."""
    out = []
    for m in ex.messages:
        if m["msg_type"] in ("status", "execute_input"):
            continue
        content = dict(m["content"])
        content.pop("execution_count", None)
        content.pop("transient", None)
        content.pop("engine_info", None)
        if "traceback" in content:
            content["traceback"] = [re.sub(r"In\[\d+\]", "In[N]", line) for line in content["traceback"]]
        out.append((m["msg_type"], content))
    reply = {k: v for k, v in ex.content.items() if k not in ("execution_count", "traceback", "engine_info")}
    return [out, reply]


@pytest.mark.parametrize("code", HARMLESS)
def test_harmless_output_is_byte_identical_to_an_unguarded_kernel(guarded, plain_kernel, code):
    """Output holding no secret is exactly what a kernel without the guard sends."""
    expected = _comparable(plain_kernel.run(code))
    actual = _comparable(guarded.run(code))
    assert json.dumps(actual, sort_keys=True) == json.dumps(expected, sort_keys=True)


def test_execute_input_of_a_cell_with_a_literal_key_is_masked(guarded_kernels, keys):
    """The execute_input broadcast of a cell typed with a literal key carries the mask."""
    ex = guarded_kernels["direct"].run(f"_unused = {keys['known']!r}")
    (broadcast,) = ex.of_type("execute_input")
    assert broadcast["content"]["code"] == f"_unused = '{MASK}'"


def test_comm_buffers_are_untouched(guarded_kernels, keys):
    """Binary buffers (widget payloads) pass through byte for byte."""
    ex = guarded_kernels["direct"].ok(
        "from comm import create_comm\n"
        "_c = create_comm(target_name='kg-test', data={'n': 1}, buffers=[os.environ['MY_SERVICE_TOKEN'].encode()])"
    )
    (opened,) = ex.of_type("comm_open")
    assert [fingerprint(bytes(b).decode()) for b in opened["buffers"]] == [fingerprint(keys["known"])]


# -- install / uninstall / start-up ------------------------------------------------------------
def test_uninstall_restores_the_session_send_exactly(tmp_path, keys):
    """After uninstalling, ``session.send`` is the class method again and output is no longer changed."""
    k = _start(tmp_path, keys, None)
    try:
        k.ok("_s = get_ipython().kernel.session\n_before = 'send' in vars(_s)\n" + INSTALL_DIRECTLY
             + "_during = 'send' in vars(_s)")
        k.ok("_kg_uninstall(); _kg_uninstall()  # idempotent")
        assert k.value("[_before, _during, 'send' in vars(_s)]") == [False, True, False]
        ex = k.ok("print(os.environ['MY_SERVICE_TOKEN'][:4] + '-unguarded')")
        assert ex.stdout == keys["known"][:4] + "-unguarded\n"
    finally:
        k.stop()


def test_guard_loaded_at_startup_by_config_covers_the_first_cell(tmp_path, keys):
    """With ``--InteractiveShellApp.extensions=ipykeyguard`` the very first cell is already redacted."""
    (tmp_path / "work").mkdir()
    k = RealKernel(tmp_path / "work", ipython_dir=tmp_path / "ipython",
                   env={"MY_SERVICE_TOKEN": keys["known"]},
                   extra_arguments=["--InteractiveShellApp.extensions=ipykeyguard"]).start()
    try:
        ex = k.run("import os\nprint(os.environ['MY_SERVICE_TOKEN'])\nos.environ['MY_SERVICE_TOKEN']")
        assert_no_key(keys["known"], ex.wire_text())
        assert ex.stdout == MASK + "\n"
    finally:
        k.stop()


class _Setup:
    FAILING = """\
from ipykeyguard.kernel.output_guard import install_output_guard
from ipykeyguard.transforms.redact import Redactor
from ipykeyguard.engine.scan import Scanner
class _Broken(Scanner):
    def scan_text(self, text, **kw):
        raise RuntimeError('boom')
_kg_uninstall = install_output_guard(get_ipython(), Redactor(scanner=_Broken()))
"""


def test_internal_error_withholds_output_and_the_cell_still_runs(tmp_path, keys):
    """A redactor that fails replaces outputs with the notice; the cell completes and nothing raises."""
    k = _start(tmp_path, keys, None)
    try:
        k.ok(_Setup.FAILING)
        ex = k.run("print(os.environ['MY_SERVICE_TOKEN'])\n_done = 41 + 1\n_done")
        assert_no_key(keys["known"], ex.wire_text())
        assert ex.status == "ok"
        assert ex.stdout == WITHHELD_NOTICE + "\n"
        (result,) = ex.of_type("execute_result")
        assert result["content"]["data"]["text/plain"] == WITHHELD_NOTICE
        assert k.run("_kg_uninstall()").status == "ok"
        assert k.value("_done") == 42
    finally:
        k.stop()
