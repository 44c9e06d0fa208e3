"""Nothing lost: every key removed from a file is in the store under the name its lookup shows,
with real processes racing on one ``.env`` (``clean`` against ``clean``, ``clean`` against the
save hook's code path), a real SIGKILL during the ``.env`` write, and a real shell sourcing it."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from dotenv import dotenv_values
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import fakekeys
import strategies
from conftest import write_leaky_notebook

LOOKUP = re.compile(r'os\.environ\["([A-Za-z_][A-Za-z0-9_]*)"\]')


def git(cwd, *args):
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True)


def clean_process(*paths, cwd) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "ipykeyguard", "clean", "--quiet", *map(str, paths)],
        cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )


def lookups(path: Path) -> list[str]:
    """The names the cleaned notebook's code reads from os.environ."""
    nb = json.loads(path.read_text())
    source = "".join("".join(c["source"]) if isinstance(c["source"], list) else c["source"] for c in nb["cells"])
    return LOOKUP.findall(source)


def assert_every_key_is_stored_under_its_lookup(folder: Path, written: dict[Path, str]) -> None:
    env = dotenv_values(folder / ".env", interpolate=False)
    for path, key in written.items():
        text = path.read_text()
        assert key not in text, f"{path.name} still holds its key"
        names = lookups(path)
        assert names, f"{path.name} has no lookup"
        for name in names:
            assert env.get(name) == key, f"{path.name} reads {name}, which does not hold its key"


def test_parallel_clean_processes_in_one_directory_lose_no_key(tmp_path):
    """Six real ``ipykeyguard clean`` processes on different notebooks of one directory, all started together: every key removed from every notebook is in the .env under the name its lookup shows."""
    git(tmp_path, "init", "-q")
    written = {}
    for i in range(18):
        path = tmp_path / f"nb{i:02d}.ipynb"
        written[path] = write_leaky_notebook(path)
    paths = sorted(written)
    groups = [paths[i::6] for i in range(6)]
    procs = [clean_process(*group, cwd=tmp_path) for group in groups]
    for proc in procs:
        _out, err = proc.communicate(timeout=600)
        assert proc.returncode == 1, err.decode()  # changed, and no error
    assert_every_key_is_stored_under_its_lookup(tmp_path, written)
    assert len(set(dotenv_values(tmp_path / ".env").values())) == len(written)
    status = git(tmp_path, "status", "--porcelain", "--untracked-files=all").stdout.splitlines()
    assert not [line for line in status if ".env" in line], "a store file is not ignored by git"


_HOOK_PATH_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from ipykeyguard.storage.store import open_store
    from ipykeyguard.transforms.clean import clean_and_store
    for name in sys.argv[1:]:
        path = Path(name)
        cleaned, _ = clean_and_store(json.loads(path.read_text()), open_store("dotenv", directory=path.parent))
        path.write_text(json.dumps(cleaned))
    """
)


def test_clean_racing_the_save_hooks_store_step_loses_no_key(tmp_path):
    """A ``clean`` process and a process running the save hook's clean-and-store step (the shared function the server hook and the nbconvert preprocessor call) on other notebooks of one directory at once: every key is stored under its lookup's name."""
    written = {}
    for i in range(12):
        path = tmp_path / f"nb{i:02d}.ipynb"
        written[path] = write_leaky_notebook(path)
    paths = sorted(written)
    hook = subprocess.Popen([sys.executable, "-c", _HOOK_PATH_SCRIPT, *map(str, paths[::2])], cwd=tmp_path,
                            stderr=subprocess.PIPE)
    cli = clean_process(*paths[1::2], cwd=tmp_path)
    assert hook.wait(timeout=600) == 0, hook.stderr.read().decode()
    _out, err = cli.communicate(timeout=600)
    assert cli.returncode == 1, err.decode()
    assert_every_key_is_stored_under_its_lookup(tmp_path, written)


_SLOW_WRITER = textwrap.dedent(
    """
    import os, sys, time
    from ipykeyguard.storage import store as s
    real_fsync = os.fsync
    def stalled_fsync(fd):
        real_fsync(fd)
        print("in-write", flush=True)
        time.sleep(600)  # killed here: the temporary holds every key, the rename has not happened
    os.fsync = stalled_fsync
    s.DotenvStore(sys.argv[1]).put({"A_TOKEN": sys.argv[2]})
    """
)


def test_sigkill_during_the_env_write_leaves_no_visible_key_and_the_next_write_sweeps_it(tmp_path):
    """A real SIGKILL while the .env's temporary is written: the temporary is 0600, ignored by git (the store's own .gitignore line covers it), and the next write removes it."""
    git(tmp_path, "init", "-q")
    from ipykeyguard.storage.store import DotenvStore

    first = fakekeys.generic_secret()
    DotenvStore(tmp_path / ".env").put({"FIRST_TOKEN": first})  # writes the .gitignore line
    secret = fakekeys.generic_secret()
    proc = subprocess.Popen([sys.executable, "-c", _SLOW_WRITER, str(tmp_path / ".env"), secret],
                            stdout=subprocess.PIPE, cwd=tmp_path)
    try:
        assert proc.stdout.readline().strip() == b"in-write"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    leftovers = [p for p in tmp_path.iterdir() if "tmp" in p.name]
    assert leftovers, "the kill came after the rename; the test proves nothing"
    for temp in leftovers:
        assert temp.stat().st_mode & 0o077 == 0, "the temporary is readable by others"
    status = git(tmp_path, "status", "--porcelain", "--untracked-files=all").stdout
    assert status.strip() == "?? .gitignore", status
    DotenvStore(tmp_path / ".env").put({"SECOND_TOKEN": fakekeys.generic_secret()})
    assert not [p for p in tmp_path.iterdir() if "tmp" in p.name], "the stale temporary was not removed"
    assert dotenv_values(tmp_path / ".env")["FIRST_TOKEN"] == first


def _sha(key: str) -> str:
    import hashlib

    return hashlib.sha256(key.encode()).hexdigest()


@pytest.mark.kernel
def test_two_kernels_in_one_directory_never_give_one_name_two_keys(kernel, workdir):
    """Two real guarded kernels sharing one .env, each moving a different key the rule names alike: the second kernel, whose view of the store predates the first one's write, picks another name; both keys stay in the .env under the name each kernel's code reads."""
    first, second = kernel(load_ext=True), kernel(load_ext=True)
    key_a, key_b = fakekeys.openai_project_key(), fakekeys.openai_project_key()
    ran_a = first.ok(f'OPENAI_API_KEY = "{key_a}"')
    ran_b = second.ok(f'OPENAI_API_KEY = "{key_b}"')
    env = dotenv_values(workdir / ".env", interpolate=False)
    for ran, k, key in ((ran_a, first, key_a), (ran_b, second, key_b)):
        names = LOOKUP.findall(ran.replaced_source or "")
        assert names, "the cell was not rewritten"
        assert all(env.get(name) == key for name in names), "a lookup names another kernel's key"
        assert k.value('__import__("hashlib").sha256(OPENAI_API_KEY.encode()).hexdigest()') == _sha(key)
    assert sorted(env.values()) == sorted([key_a, key_b])


# -- a key masked is a key stored (property over contexts) ----------------------------------------


NAME_REF = re.compile(r'\[secret:([A-Za-z_][A-Za-z0-9_]*)\]|os\.environ\[["\']([A-Za-z_][A-Za-z0-9_]*)["\']\]'
                      r'|\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?|printenv ([A-Za-z_][A-Za-z0-9_]*)')

CONTEXTS = [
    '# the key is {k}\nx = 1',
    'x = 1  # {k}',
    'url = f"https://api.test/?key={k}&n={{n}}"',
    'db = f"postgresql://u:{k}@host/{{name}}"',
    'doc = """\nkey: {k}\n"""',
    "doc = '''{k}'''",
    '!curl -H "Authorization: Bearer {k}" https://api.test',
    '!echo {k} > /dev/null',
    '%%bash\nexport TOKEN={k}\ncurl -u api:{k} https://api.test',
    'api_key = "{k}"',
    'client(api_key="{k}", other=1)',
    'cfg = {{"token": "{k}"}}',
    '%env SERVICE_TOKEN={k}',
    'password = "{k}"  # {k}',
    'x = "{k}" + "{k}"',
]

_mailgun = st.integers(0, 2**32 - 1).map(lambda s: "key-" + fakekeys.hexchars(32, __import__("random").Random(s)))
_generic = st.integers(0, 2**32 - 1).map(lambda s: fakekeys.generic_secret(__import__("random").Random(s)))
_pg = st.integers(0, 2**32 - 1).map(lambda s: fakekeys.postgres_url(__import__("random").Random(s))[1])
KEYS = st.one_of(*(family for family, _rule in strategies.KEY_FAMILIES.values() if family is not None), _mailgun, _generic, _pg)


def _nb(source: str) -> dict:
    return {"cells": [{"cell_type": "code", "execution_count": 1, "id": "c0", "metadata": {}, "outputs": [],
                       "source": source}], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(context=st.sampled_from(CONTEXTS), key=KEYS, second=st.sampled_from(CONTEXTS), other=KEYS)
def test_every_key_removed_from_code_is_stored_under_the_name_its_mask_or_lookup_shows(context, key, second, other):
    """For a key in any context (comment, f-string, triple-quoted string, !cmd, %%bash, %env, call, dict), a key clean_and_store removes from a code cell is in the store under a name the cleaned cell shows (as a mask or a lookup), and every name the cleaned cell refers to holds a stored value."""
    from ipykeyguard.storage.store import MemoryStore
    from ipykeyguard.transforms.clean import clean_and_store

    for planted, where in ((key, context), (other, second)):
        # A PEM block planted in a one-line context spills into code lines: not a real cell.
        assume("\n" not in planted or '"""' in where or "\'\'\'" in where)
    # One key inside the other is not two keys: the known-value pass masks the shorter one
    # wherever it occurs, also inside the longer token, which then is only partly there.
    assume(key not in other and other not in key)
    source = context.format(k=key) + "\n" + second.format(k=other)
    store = MemoryStore()
    cleaned, report = clean_and_store(_nb(source), store)
    text = cleaned["cells"][0]["source"]
    text = "".join(text) if isinstance(text, list) else text
    stored = store.items()
    referenced = {next(g for g in m.groups() if g) for m in NAME_REF.finditer(text)}
    for planted in (key, other):
        if planted in text:
            continue  # not removed (below the threshold in this context): nothing can be lost
        assert any(stored.get(name) == planted for name in referenced), "a key was removed but no name in the cell holds it"
    user_variables = {"SERVICE_TOKEN", "TOKEN"}  # set by the cells themselves (%env, export)
    for name in referenced - user_variables:
        assert name in stored, f"{name} is shown but holds nothing"


@settings(max_examples=60, deadline=None)
@given(code_key=KEYS, output_key=KEYS, markdown_key=KEYS)
def test_keys_masked_in_outputs_and_markdown_are_stored_under_the_masks_name(code_key, output_key, markdown_key):
    """A key clean_and_store masks in an output or a markdown cell (none of them in code, or the same as the code's) is in the store under the name the mask shows; no mask names a value the store lacks or holds differently."""
    from ipykeyguard.storage.store import MemoryStore
    from ipykeyguard.transforms.clean import clean_and_store

    nb = _nb(f'api_key = "{code_key}"')
    nb["cells"][0]["outputs"] = [{"name": "stdout", "output_type": "stream", "text": f"{output_key}\n{code_key}\n"}]
    nb["cells"].append({"cell_type": "markdown", "id": "m0", "metadata": {}, "source": f"token: {markdown_key}"})
    store = MemoryStore({"OPENAI_API_KEY": "an older, different value"})
    cleaned, _report = clean_and_store(nb, store)
    stored = store.items()
    texts = json.dumps(cleaned)
    for planted in (code_key, output_key, markdown_key):
        if planted in json.loads(texts)["cells"][0]["outputs"][0]["text"] + "".join(json.loads(texts)["cells"][1]["source"]):
            continue  # below the threshold where it is
        assert planted in stored.values(), "a masked key is in no store"
    for match in re.finditer(r"\[secret:([A-Za-z_][A-Za-z0-9_]*)\]", texts):
        assert match.group(1) in stored, "a mask names nothing stored"
        assert stored[match.group(1)] in (code_key, output_key, markdown_key), "a mask names another key"


# -- injection: %env names ------------------------------------------------------------------------

def _fuzzed_env_names(count: int = 24) -> list[str]:
    """Names %env accepts (no whitespace, no '=', none of IPython's $/{} expansion), built to
    break out of a string literal if pasted into code unescaped."""
    import random

    rng = random.Random(1913)
    pieces = ['"', "'", "\\", "]", "[", ")", "(", ";", "#", ",", "+", "é", "\\x41", "\\n", '"""', "os.environ", ":"]
    escape = 'PATH"];print("IN"+"JECTED");os.environ["Y'
    names = [escape, "A'];print('IN'+'JECTED');x=['", 'B\\"];print("IN"+"JECTED")#', "PLAIN_NAME", "lower.dotted"]
    while len(names) < count:
        names.append("N" + "".join(rng.choice(pieces + ["X", "_", "7"]) for _ in range(rng.randint(1, 8))))
    return names


@pytest.mark.kernel
def test_fuzzed_env_magic_names_never_become_code_in_the_kernel_or_in_clean_output(kernel, workdir, tmp_path):
    """%env with crafted variable names sets exactly the variables the unguarded kernel sets (same names, same values) and runs nothing, both in the guarded kernel and when clean's rewritten cell runs in a plain kernel."""
    names = _fuzzed_env_names()
    key = fakekeys.openai_project_key()
    cells = [f"%env {name}={key}" for name in names]
    probe = ('sorted([k, __import__("hashlib").sha256(v.encode()).hexdigest()] for k, v in '
             f'__import__("os").environ.items() if k in {names!r})')
    plain, guarded = kernel(), kernel(load_ext=True)
    for cell in cells:
        unguarded_run, guarded_run = plain.run(cell), guarded.run(cell)
        assert guarded_run.status == unguarded_run.status
        assert "INJECTED" not in guarded_run.stdout + guarded_run.stderr + unguarded_run.stdout
    expected = plain.value(probe)
    assert len(expected) >= len(set(names)) - 2  # %env itself refuses a few
    assert guarded.value(probe) == expected

    nb_path = tmp_path / "env.ipynb"
    nb_path.write_text(json.dumps({
        "cells": [{"cell_type": "code", "execution_count": None, "id": f"c{i}", "metadata": {}, "outputs": [],
                   "source": cell} for i, cell in enumerate(cells)],
        "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    done = subprocess.run([sys.executable, "-m", "ipykeyguard", "clean", str(nb_path)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 1, done.stderr
    cleaned = [c["source"] for c in json.loads(nb_path.read_text())["cells"]]
    assert key not in "".join(cleaned)
    fresh = kernel(cwd=tmp_path)
    fresh.ok("from dotenv import load_dotenv; load_dotenv('.env', override=False, interpolate=False)")
    for cell in cleaned:
        ran = fresh.run(cell)
        assert "INJECTED" not in ran.stdout + ran.stderr
    assert fresh.value(probe) == expected


# -- other secret stores, checkpoints -------------------------------------------------------------

SECRET_STORE_FILES = [".envrc", ".streamlit/secrets.toml", ".aws/credentials", ".netrc", ".env.local", "prod.env",
                      ".pgpass", ".git-credentials", ".npmrc", ".pypirc"]


def run_cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "ipykeyguard", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=240)


def test_secret_store_files_are_never_rewritten_by_clean_and_are_reported_skipped_by_scan(tmp_path):
    """.envrc, .streamlit/secrets.toml, .aws/credentials, .netrc and the like keep their keys byte for byte under ``clean DIR``; ``scan DIR`` lists each as ``skipped: secret store``; ``clean FILE`` on one is an error that names it; a notebook beside them is still cleaned."""
    key = fakekeys.github_classic_token()
    contents = {}
    for rel in SECRET_STORE_FILES:
        path = tmp_path / "proj" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        contents[rel] = f"export GITHUB_TOKEN={key}\n[default]\ntoken = \"{key}\"\npassword {key}\n"
        path.write_text(contents[rel])
    notebook_key = write_leaky_notebook(tmp_path / "proj" / "nb.ipynb")

    scanned = run_cli("scan", "proj", cwd=tmp_path)
    for rel in SECRET_STORE_FILES:
        assert f"{os.path.join('proj', rel)}: skipped: secret store" in scanned.stderr
    assert key not in scanned.stdout + scanned.stderr

    cleaned = run_cli("clean", "proj", cwd=tmp_path)
    assert cleaned.returncode == 1, cleaned.stderr
    for rel in SECRET_STORE_FILES:
        assert (tmp_path / "proj" / rel).read_text() == contents[rel], f"{rel} was rewritten"
    assert notebook_key not in (tmp_path / "proj" / "nb.ipynb").read_text()

    for rel in (".envrc", ".aws/credentials"):
        refused = run_cli("clean", os.path.join("proj", rel), cwd=tmp_path)
        assert refused.returncode == 2
        assert "secret store" in refused.stderr and rel in refused.stderr
        assert (tmp_path / "proj" / rel).read_text() == contents[rel]


def test_every_secret_store_pattern_in_the_data_file_matches_and_ordinary_files_do_not():
    """Each name and path of secret_files.toml is recognised wherever the project lives; notebooks and ordinary sources are not."""
    from ipykeyguard.storage.secret_files import is_secret_store, secret_store_patterns

    names, paths = secret_store_patterns()
    for pattern in names:
        assert is_secret_store("/home/u/proj/" + pattern.replace("*", "x"))
    for parts in paths:
        assert is_secret_store("/srv/work/" + "/".join(parts))
    for ordinary in ["nb.ipynb", "env.py", "environment.yml", "secrets.py", "config.toml", "README.md", "aws/credentials.md"]:
        assert not is_secret_store("/home/u/proj/" + ordinary), ordinary


def test_checkpoints_are_scanned_and_cleaned_and_their_keys_go_to_the_notebooks_env(tmp_path):
    """``scan DIR`` reports a key in .ipynb_checkpoints and ``clean DIR`` cleans it there, storing it in the notebook folder's .env under the name the checkpoint's lookup shows."""
    folder = tmp_path / "proj"
    (folder / ".ipynb_checkpoints").mkdir(parents=True)
    checkpoint = folder / ".ipynb_checkpoints" / "nb-checkpoint.ipynb"
    key = write_leaky_notebook(checkpoint)
    scanned = run_cli("scan", "proj", cwd=tmp_path)
    assert scanned.returncode == 1 and "nb-checkpoint.ipynb" in scanned.stdout
    cleaned = run_cli("clean", "proj", cwd=tmp_path)
    assert cleaned.returncode == 1, cleaned.stderr
    assert_every_key_is_stored_under_its_lookup(folder, {checkpoint: key})
    assert not (folder / ".ipynb_checkpoints" / ".env").exists()


# -- no message holds 8 characters of a secret ----------------------------------------------------

def _window_leak(text: str, secret: str) -> bool:
    from ipykeyguard.storage.store import shares_a_secret_window

    return shares_a_secret_window(text, secret)


@pytest.mark.parametrize("table", ['min-confidence = "{k}"', '"{k}" = 1', 'min-confidence = 3\n"{k}" = "x"'])
def test_config_errors_never_echo_a_key_pasted_into_the_config(tmp_path, table):
    """A key pasted as a [tool.ipykeyguard] value or key makes scan fail with a config error that holds no 8 characters of it."""
    key = fakekeys.openai_project_key()
    (tmp_path / "pyproject.toml").write_text("[tool.ipykeyguard]\n" + table.format(k=key) + "\n")
    (tmp_path / "a.py").write_text("x = 1\n")
    result = run_cli("scan", "a.py", cwd=tmp_path)
    assert result.returncode == 2
    assert "tool.ipykeyguard" in result.stderr or "confidence" in result.stderr
    assert not _window_leak(result.stdout + result.stderr, key), "the error echoes the key"


def test_keyring_error_that_echoes_part_of_the_value_is_not_repeated(tmp_path):
    """A keyring backend whose error message quotes 10 characters of the value: the StoreError names the variable and the error type, not the text."""
    keyring = pytest.importorskip("keyring")
    alt = pytest.importorskip("keyrings.alt.file")
    from keyring.errors import PasswordSetError

    from ipykeyguard.storage.store import StoreError, open_store

    class EchoingKeyring(alt.PlaintextKeyring):
        file_path = str(tmp_path / "keyring.cfg")

        def set_password(self, service, username, password):
            raise PasswordSetError(f"cannot store {password[4:14]}... for {username}")

    previous = keyring.get_keyring()
    keyring.set_keyring(EchoingKeyring())
    try:
        secret = fakekeys.generic_secret()
        with pytest.raises(StoreError) as info:
            open_store("keyring", service="ipykeyguard-test").put({"A_TOKEN": secret})
        assert "A_TOKEN" in str(info.value) and "PasswordSetError" in str(info.value)
        assert not _window_leak(str(info.value), secret), "the error echoes part of the key"
    finally:
        keyring.set_keyring(previous)


@pytest.mark.kernel
def test_kernel_config_error_does_not_echo_a_key_set_as_min_confidence(kernel, ipython_dir):
    """c.KeyGuard.min_confidence set to a key: whatever the kernel says about the bad setting holds no 8 characters of it."""
    from conftest import write_ipython_config

    key = fakekeys.openai_project_key()
    write_ipython_config(ipython_dir, {"KeyGuard": {"min_confidence": key}})
    k = kernel()
    ran = k.run("%load_ext ipykeyguard")
    assert not _window_leak(ran.wire_text(), key), "the kernel's reply echoes the key"


def test_a_key_masked_in_a_text_file_is_stored_under_the_name_its_mask_shows(tmp_path):
    """``clean`` on a .py and a .md file: each key is masked and the .env beside them holds it under the name in the mask (a name already holding another value gets a suffix)."""
    first, second = fakekeys.github_classic_token(), fakekeys.github_classic_token()
    (tmp_path / ".env").write_text("GITHUB_TOKEN='an older, different value'\n")
    (tmp_path / "settings.py").write_text(f'TOKEN = "{first}"\n')
    (tmp_path / "notes.md").write_text(f"token {second} and again {first}\n")
    result = run_cli("clean", "settings.py", "notes.md", cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    env = dotenv_values(tmp_path / ".env", interpolate=False)
    assert env["GITHUB_TOKEN"] == "an older, different value"
    for name in ("settings.py", "notes.md"):
        text = (tmp_path / name).read_text()
        assert first not in text and second not in text
        for match in re.finditer(r"\[secret:([A-Z0-9_]+)\]", text):
            assert env[match.group(1)] in (first, second), f"{name}'s mask names another value"
    assert {first, second} <= set(env.values())


@pytest.mark.parametrize("setting", ["mode", "store", "prompts", "allow", "prompt_endpoints", "dotenv_path"])
def test_no_kernel_setting_error_echoes_a_key_given_as_its_value(setting):
    """A key given as the value of any c.KeyGuard setting (a wrong type or choice) is refused
    with an error that holds no 8 characters of it; so are the server's and the exporter's."""
    from traitlets import TraitError
    from traitlets.config import Config as TraitletsConfig

    from ipykeyguard.kernel.extension import KeyGuard
    from ipykeyguard.nbconvert.preprocessor import KeyGuardPreprocessor
    from ipykeyguard.server.hooks import KeyGuardServer

    key = fakekeys.openai_project_key()
    # A mapping where a list is expected, a list where a str is expected, a str outside the choices.
    value = [key] if setting == "dotenv_path" else ({"note": key} if setting in ("allow", "prompt_endpoints") else key)
    with pytest.raises(TraitError) as raised:
        KeyGuard(config=TraitletsConfig({"KeyGuard": {setting: value}}))
    assert not _window_leak(str(raised.value), key)
    for cls, name in ((KeyGuardServer, "store"), (KeyGuardServer, "code_keys"), (KeyGuardServer, "dotenv_path"),
                      (KeyGuardPreprocessor, "store"), (KeyGuardPreprocessor, "dotenv_path")):
        bad = [key] if name == "dotenv_path" else key
        with pytest.raises(TraitError) as raised:
            cls(config=TraitletsConfig({cls.__name__: {name: bad}}))
        assert not _window_leak(str(raised.value), key), f"{cls.__name__}.{name}"
