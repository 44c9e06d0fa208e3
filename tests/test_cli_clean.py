"""``ipykeyguard clean`` through the installed executable: store, writes, modes and bad input."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from dotenv import dotenv_values

import fakekeys
from ipykeyguard.engine.findings import fingerprint


def cli(*args, cwd, stdin=None, env=None):
    """Run the installed CLI (as ``python -m ipykeyguard`` with this interpreter)."""
    return subprocess.run(
        [sys.executable, "-m", "ipykeyguard", *args], cwd=cwd, input=stdin, capture_output=True,
        env={**os.environ, **(env or {})}, timeout=240,
    )


def notebook(cells) -> dict:
    return {"cells": cells, "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
            "nbformat": 4, "nbformat_minor": 5}


def code_cell(source, outputs=(), cid="c1"):
    return {"cell_type": "code", "execution_count": 1, "id": cid, "metadata": {}, "outputs": list(outputs), "source": source}


def write_nb(path: Path, nb: dict) -> bytes:
    data = (json.dumps(nb, indent=1, sort_keys=True, ensure_ascii=False) + "\n").encode()
    path.write_bytes(data)
    return data


def leaky(path: Path) -> tuple[bytes, str]:
    """A notebook with an OpenAI key in code and echoed in the output."""
    key = fakekeys.openai_project_key()
    nb = notebook([code_cell(f'OPENAI_API_KEY = "{key}"\nprint(OPENAI_API_KEY)',
                             [{"name": "stdout", "output_type": "stream", "text": [key + "\n"]}])])
    return write_nb(path, nb), key


def git(cwd, *args):
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True)


def test_clean_moves_the_key_to_dotenv_and_reports_names(tmp_path):
    """The key goes to a 0600 .env beside the notebook, the code reads os.environ, the output is masked."""
    nb_path = tmp_path / "analysis.ipynb"
    _raw, key = leaky(nb_path)
    result = cli("clean", "analysis.ipynb", cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    out = result.stdout.decode()
    assert out == "analysis.ipynb: moved OPENAI_API_KEY to .env; masked 1 in outputs\n"
    text = nb_path.read_text()
    assert key not in text, "key left in notebook"
    assert 'os.environ[\\"OPENAI_API_KEY\\"]' in text
    env = tmp_path / ".env"
    assert stat.S_IMODE(env.stat().st_mode) == 0o600
    assert fingerprint(dotenv_values(env)["OPENAI_API_KEY"]) == fingerprint(key)
    nbformat = pytest.importorskip("nbformat")
    nbformat.validate(nbformat.read(str(nb_path), as_version=nbformat.NO_CONVERT))


def test_gitignore_updated_once_across_runs(tmp_path):
    """Cleaning two notebooks in a repository adds .env to .gitignore exactly once."""
    git(tmp_path, "init", "-q")
    leaky(tmp_path / "a.ipynb")
    assert cli("clean", "a.ipynb", cwd=tmp_path).returncode == 1
    leaky(tmp_path / "b.ipynb")
    assert cli("clean", "b.ipynb", cwd=tmp_path).returncode == 1
    assert (tmp_path / ".gitignore").read_text().splitlines().count(".env") == 1
    env = dotenv_values(tmp_path / ".env")
    assert sorted(env) == ["OPENAI_API_KEY", "OPENAI_API_KEY_2"], "a different key must get a new name"


def test_clean_notebook_is_not_rewritten(tmp_path):
    """A notebook without a key keeps its bytes and its mtime, whatever its formatting; exit 0."""
    nb = notebook([code_cell("x = 1", [{"name": "stdout", "output_type": "stream", "text": ["1\n"]}])])
    jupyter = tmp_path / "jupyter.ipynb"
    write_nb(jupyter, nb)
    odd = tmp_path / "odd.ipynb"
    odd.write_text(json.dumps(nb, indent=4))  # other indent, unsorted, no final newline
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in (jupyter, odd)}
    time.sleep(0.01)
    result = cli("clean", str(jupyter), str(odd), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == b""
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in (jupyter, odd)} == before
    assert not (tmp_path / ".env").exists()


def test_dry_run_and_check_write_nothing(tmp_path):
    """--dry-run prints names and places, --check only exits 1; neither writes a byte."""
    nb_path = tmp_path / "n.ipynb"
    raw, key = leaky(nb_path)
    dry = cli("clean", "--dry-run", "n.ipynb", cwd=tmp_path)
    assert dry.returncode == 1
    out = dry.stdout.decode()
    assert "n.ipynb: would move OPENAI_API_KEY to .env; would mask 1 in outputs" in out
    assert 'cell 0 source line 1 col 19: openai-api-key (certain) -> os.environ["OPENAI_API_KEY"]' in out
    assert key not in out + dry.stderr.decode(), "key leaked"
    check = cli("clean", "--check", "n.ipynb", cwd=tmp_path)
    assert check.returncode == 1
    assert nb_path.read_bytes() == raw
    assert sorted(p.name for p in tmp_path.iterdir()) == ["n.ipynb"]
    assert cli("clean", "n.ipynb", cwd=tmp_path).returncode == 1
    assert cli("clean", "--check", "n.ipynb", cwd=tmp_path).returncode == 0


def test_store_none_rewrites_without_keeping_the_key(tmp_path):
    """--store none rewrites the code the same way but writes no .env, and says the key was not kept."""
    nb_path = tmp_path / "n.ipynb"
    _raw, key = leaky(nb_path)
    result = cli("clean", "--store", "none", "n.ipynb", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stdout.decode() == "n.ipynb: removed OPENAI_API_KEY from code (not stored); masked 1 in outputs\n"
    assert key not in nb_path.read_text(), "key left in notebook"
    assert not (tmp_path / ".env").exists()


def test_store_keyring(tmp_path):
    """--store keyring puts the key in the keyring (keyrings.alt file backend under a temp home)."""
    pytest.importorskip("keyrings.alt")
    nb_path = tmp_path / "n.ipynb"
    _raw, key = leaky(nb_path)
    env = {"PYTHON_KEYRING_BACKEND": "keyrings.alt.file.PlaintextKeyring", "XDG_DATA_HOME": str(tmp_path / "data")}
    result = cli("clean", "--store", "keyring", "n.ipynb", cwd=tmp_path, env=env)
    assert result.returncode == 1, result.stderr
    assert "moved OPENAI_API_KEY to keyring" in result.stdout.decode()
    probe = "import keyring, hashlib; v = keyring.get_password('ipykeyguard', 'OPENAI_API_KEY'); print(hashlib.sha256(v.encode()).hexdigest())"
    got = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env={**os.environ, **env})
    assert got.stdout.strip() == fingerprint(key)
    assert not (tmp_path / ".env").exists()


def test_store_failure_leaves_the_notebook_untouched(tmp_path):
    """When the key cannot be stored (.env is a directory) the notebook keeps every byte; exit 2."""
    nb_path = tmp_path / "n.ipynb"
    raw, key = leaky(nb_path)
    (tmp_path / ".env").mkdir()
    result = cli("clean", "n.ipynb", cwd=tmp_path)
    assert result.returncode == 2
    assert nb_path.read_bytes() == raw
    err = result.stderr.decode()
    assert "n.ipynb" in err and "not changed" in err
    assert key not in err, "key leaked"


def test_bad_inputs_are_reported_and_the_others_still_cleaned(tmp_path):
    """Broken JSON, nbformat 1, non-UTF-8, read-only, a symlink, oversized and missing files: exit 2,
    each untouched and named on stderr, while a good file in the same run is cleaned."""
    key = fakekeys.github_classic_token()
    files = {
        "broken.ipynb": b'{"cells": [',
        "v1.ipynb": json.dumps({"nbformat": 1, "nbformat_minor": 0, "worksheets": [], "metadata": {}}).encode(),
        "latin1.ipynb": json.dumps(notebook([])).encode().replace(b'"cells"', b'"cells\xe9"'),
        "latin1.txt": b"token caf\xe9 " + key.encode(),
        "readonly.ipynb": json.dumps(notebook([code_cell(f't = "{key}"')])).encode(),
        "big.txt": (f"token {key}\n" + "x" * 5000).encode(),
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    os.chmod(tmp_path / "readonly.ipynb", 0o444)
    (tmp_path / "target.ipynb").write_bytes(files["readonly.ipynb"])
    (tmp_path / "link.ipynb").symlink_to(tmp_path / "target.ipynb")
    good = tmp_path / "good.txt"
    good.write_text(f"GITHUB_TOKEN={key}\n")
    names = [*files, "link.ipynb", "missing.ipynb", "good.txt"]
    result = cli("clean", "--max-file-size", "4000", *names, cwd=tmp_path)
    assert result.returncode == 2
    err = result.stderr.decode()
    for name in [*files, "link.ipynb", "missing.ipynb"]:
        assert f"{name}:" in err, f"no message for {name}"
        if (tmp_path / name).exists() and not (tmp_path / name).is_symlink():
            assert (tmp_path / name).read_bytes() == files[name], f"{name} was changed"
    assert "nbformat 1 is not supported" in err
    assert "read-only" in err and "symbolic link" in err and "max-file-size" in err
    assert (tmp_path / "target.ipynb").read_bytes() == files["readonly.ipynb"]
    assert key not in err + result.stdout.decode(), "key leaked"
    assert good.read_text() == "GITHUB_TOKEN=[secret:GITHUB_TOKEN]\n"
    # The key masked in the text file is stored under the name its mask shows.
    assert fingerprint(dotenv_values(tmp_path / ".env")["GITHUB_TOKEN"]) == fingerprint(key)


def test_directory_argument_recurses_cleans_checkpoints_and_skips_stores(tmp_path):
    """A directory is walked: notebooks, text files and Jupyter checkpoints are cleaned (a checkpoint's keys go to its notebook folder's .env); the .env is not."""
    key = fakekeys.github_classic_token()
    (tmp_path / "proj" / "sub").mkdir(parents=True)
    (tmp_path / "proj" / ".ipynb_checkpoints").mkdir()
    write_nb(tmp_path / "proj" / "sub" / "n.ipynb", notebook([code_cell(f't = "{key}"')]))
    (tmp_path / "proj" / "notes.md").write_text(f"token {key}\n")
    (tmp_path / "proj" / ".env").write_text(f"OTHER_TOKEN={key}\n")
    checkpoint = tmp_path / "proj" / ".ipynb_checkpoints" / "n-checkpoint.ipynb"
    write_nb(checkpoint, notebook([code_cell(f't = "{key}"')]))
    result = cli("clean", "proj", cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert key not in (tmp_path / "proj" / "sub" / "n.ipynb").read_text()
    # Masked under the name the folder's .env already holds that key by.
    assert (tmp_path / "proj" / "notes.md").read_text() == "token [secret:OTHER_TOKEN]\n"
    assert key in (tmp_path / "proj" / ".env").read_text(), "the store itself must not be masked"
    assert key not in checkpoint.read_text()
    # The checkpoint's key goes to its notebook folder's .env, which already holds it: reused.
    assert json.loads(checkpoint.read_text())["cells"][0]["source"] == 'import os\nt = os.environ["OTHER_TOKEN"]'
    assert fingerprint(dotenv_values(tmp_path / "proj" / "sub" / ".env")["GITHUB_TOKEN"]) == fingerprint(key)
    assert not (tmp_path / "proj" / ".ipynb_checkpoints" / ".env").exists()


def test_stdin_to_stdout(tmp_path):
    """--stdin writes the cleaned notebook to stdout (exit 0), echoes a clean one byte for byte."""
    nb_path = tmp_path / "n.ipynb"
    raw, key = leaky(nb_path)
    result = cli("clean", "--stdin", "--store", "none", "--stdin-filename", "n.ipynb", cwd=tmp_path, stdin=raw)
    assert result.returncode == 0, result.stderr
    assert key not in result.stdout.decode(), "key left in output"
    assert json.loads(result.stdout)["nbformat"] == 4
    assert nb_path.read_bytes() == raw and not (tmp_path / ".env").exists()
    clean_raw = result.stdout
    again = cli("clean", "--stdin", "--store", "none", "--stdin-filename", "n.ipynb", cwd=tmp_path, stdin=clean_raw)
    assert again.returncode == 0 and again.stdout == clean_raw
    check = cli("clean", "--stdin", "--check", "--store", "none", cwd=tmp_path, stdin=raw)
    assert check.returncode == 1 and check.stdout == b""


def test_a_kill_mid_write_leaves_the_old_or_the_new_file(tmp_path):
    """SIGKILL at random moments of cleaning a 20 MB notebook never leaves a partial file."""
    key = fakekeys.github_classic_token()
    lines = [f"row {i} value {i * 7}\n" for i in range(500_000)]
    nb = notebook([code_cell("x", [{"name": "stdout", "output_type": "stream", "text": lines + [f"tok {key}\n"]}])])
    original = tmp_path / "original.ipynb"
    old = write_nb(original, nb)
    reference = tmp_path / "ref" / "big.ipynb"
    reference.parent.mkdir()
    reference.write_bytes(old)
    started = time.monotonic()
    assert cli("clean", str(reference), cwd=tmp_path).returncode == 1
    duration = time.monotonic() - started
    new = reference.read_bytes()
    assert new != old
    rng = random.Random(7)
    work = tmp_path / "work"
    work.mkdir()
    target = work / "big.ipynb"
    outcomes = set()
    for _ in range(6):
        target.write_bytes(old)
        proc = subprocess.Popen([sys.executable, "-m", "ipykeyguard", "clean", str(target)], cwd=tmp_path,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.3, 1.1) * duration)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        data = target.read_bytes()
        assert data in (old, new), "partial notebook after a kill"
        outcomes.add(data == new)
        for leftover in work.glob(".big.ipynb.*"):
            leftover.unlink()  # a killed writer may leave its temporary file, never a torn notebook
    assert outcomes, "no run happened"


# -- speed work: the fast serialiser, the fast copy, --jobs -------------------------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from ipykeyguard.cli.clean import _dumps_indented, serialize_like  # noqa: E402
from ipykeyguard.transforms.clean import _copy_notebook  # noqa: E402

_json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
)
_json_values = st.recursive(
    _json_scalars,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=6), children, max_size=5),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(value=_json_values, indent=st.integers(min_value=1, max_value=4), ensure_ascii=st.booleans())
def test_fast_serialiser_matches_json_dumps(value, indent, ensure_ascii):
    """The indented writer gives exactly json.dumps's text for any JSON value (floats, NaN, unicode, nesting)."""
    expected = json.dumps(value, indent=indent, ensure_ascii=ensure_ascii)
    assert _dumps_indented(value, " " * indent, ensure_ascii) == expected


def test_fast_serialiser_hands_odd_values_to_json_dumps():
    """Tuples, non-string keys and subclasses are written exactly as json.dumps writes them."""

    class Text(str):
        pass

    for value in ({"a": (1, 2)}, {1: "x", None: [True]}, {"s": Text("v")}, [{"k": [Text("x"), 1]}]):
        assert _dumps_indented(value, " ", True) == json.dumps(value, indent=1)


def test_serialize_like_keeps_every_golden_file_byte_for_byte():
    """Parsing any golden or expected notebook and writing it back like itself returns its exact bytes."""
    golden = Path(__file__).parent / "fixtures" / "golden"
    files = sorted(golden.glob("*.ipynb"))
    assert files
    for path in files:
        raw = path.read_bytes()
        assert serialize_like(json.loads(raw.decode("utf-8-sig")), raw) == raw, path.name


def test_copy_notebook_is_deep_and_keeps_nbformat_types():
    """The fast copy shares no container with the original and keeps NotebookNode as NotebookNode."""
    nb = notebook([code_cell(["a\n", "b"], [{"name": "stdout", "output_type": "stream", "text": ["x\n"]}])])
    nb["metadata"]["tags"] = [1, 2.5, None, {"deep": ["y"]}]
    copied = _copy_notebook(nb)
    assert copied == nb
    copied["cells"][0]["source"][0] = "changed\n"
    copied["cells"][0]["outputs"][0]["text"].append("more")
    copied["metadata"]["tags"][3]["deep"].append("z")
    assert nb["cells"][0]["source"] == ["a\n", "b"]
    assert nb["cells"][0]["outputs"][0]["text"] == ["x\n"]
    assert nb["metadata"]["tags"][3] == {"deep": ["y"]}
    nbformat = pytest.importorskip("nbformat")
    node = nbformat.from_dict(nb)
    copied_node = _copy_notebook(node)
    assert type(copied_node) is type(node) and type(copied_node.cells[0]) is type(node.cells[0])
    assert copied_node == node and copied_node.cells[0] is not node.cells[0]


#: A 2 MB image output: five of them make the project big enough for --jobs to start workers
#: (under PARALLEL_MIN_BYTES it cleans in one process).
_BIG_IMAGE = {"output_type": "display_data", "metadata": {},
              "data": {"image/png": "iVBORw0KGgo" + "A" * (2 << 20), "text/plain": ["<Figure>"]}}


def _project(root: Path, keys: list[str]) -> None:
    """Two directories of notebooks, each key in its own notebook under one variable name, plus a clean one."""
    placed = iter(keys)
    for directory, names in (("a", ["n1", "n2", "n3"]), ("b", ["m1", "m2"])):
        (root / directory).mkdir(parents=True)
        for i, name in enumerate(names):
            key = next(placed)
            outputs = [{"name": "stdout", "output_type": "stream", "text": [f"{key}\n"]}, _BIG_IMAGE]
            nb = notebook([code_cell(f'TOKEN = "{key}"\nprint(TOKEN)', outputs, cid=f"c{i}")])
            write_nb(root / directory / f"{name}.ipynb", nb)
        write_nb(root / directory / "plain.ipynb", notebook([code_cell("x = 1")]))


def test_jobs_give_the_same_files_and_stores_as_a_serial_run(tmp_path):
    """clean -j 2 writes the same notebooks and .env files as -j 1, prints in the same order, same exit code."""
    keys = [fakekeys.github_classic_token() for _ in range(5)]
    results = {}
    for jobs in ("1", "2"):
        root = tmp_path / f"j{jobs}"
        _project(root, keys)
        plain = (root / "a" / "plain.ipynb").stat()
        result = cli("clean", "-j", jobs, "a", "b", cwd=root)
        assert result.returncode == 1, result.stderr
        assert (root / "a" / "plain.ipynb").stat().st_mtime_ns == plain.st_mtime_ns, "clean notebook rewritten"
        files = {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
        for name, data in files.items():
            if name.endswith(".ipynb"):
                assert all(key.encode() not in data for key in keys), "key left in a notebook"
        results[jobs] = (result.stdout, files)
    assert results["2"] == results["1"]
    env = dotenv_values(tmp_path / "j2" / "a" / ".env")
    # Three notebooks of one directory, three different keys: three names, none overwritten.
    assert sorted(fingerprint(v) for v in env.values()) == sorted(fingerprint(k) for k in keys[:3])


def test_jobs_with_store_none_and_bad_files(tmp_path):
    """clean -j 0 --store none cleans every good file, reports a broken one (exit 2), stores nothing."""
    keys = [fakekeys.github_classic_token() for _ in range(5)]
    _project(tmp_path, keys)
    (tmp_path / "b" / "broken.ipynb").write_text("{not json")
    result = cli("clean", "-j", "0", "--store", "none", "a", "b", cwd=tmp_path)
    assert result.returncode == 2
    assert b"broken.ipynb: not valid JSON" in result.stderr
    assert not list(tmp_path.rglob(".env"))
    for path in tmp_path.rglob("*.ipynb"):
        text = path.read_text()
        assert all(key not in text for key in keys), "key left"


def _strace_fsyncs(argv: list[str], cwd: Path) -> tuple[subprocess.CompletedProcess, list[tuple[str, str, str]], str]:
    """Run ``argv`` under strace; its fsync and rename calls in time order as (pid, call, path),
    and the main process's pid."""
    logs = cwd / "strace"
    logs.mkdir()
    proc = subprocess.run(
        ["strace", "-ff", "-ttt", "-qq", "-e", "signal=none", "-e", "trace=openat,fsync,rename,renameat,renameat2",
         "-o", str(logs / "log"), *argv], cwd=cwd, capture_output=True, timeout=240,
    )
    timed = []
    for log in logs.iterdir():  # one file per process (-ff): no interleaved, unfinished lines
        pid = log.suffix[1:]
        fds: dict[str, str] = {}
        for line in log.read_text().splitlines():
            stamp, _, call = line.partition(" ")
            if call.startswith("openat(") and "= " in call and "= -1" not in call:
                path = os.path.normpath(os.path.join(cwd, call.split('"')[1]))
                fds[call.rsplit("= ", 1)[1].split()[0]] = path
            elif call.startswith("fsync("):
                timed.append((float(stamp), pid, "fsync", fds.get(call[6:].split(")")[0], "?")))
            elif call.startswith("rename"):
                timed.append((float(stamp), pid, "rename", os.path.normpath(os.path.join(cwd, call.split('"')[3]))))
    first = min(logs.iterdir(), key=lambda log: float(log.read_text().split(None, 1)[0]) if log.stat().st_size else 1e20)
    return proc, [event for _stamp, *event in sorted(timed)], first.suffix[1:]


@pytest.mark.skipif(not shutil.which("strace"), reason="needs strace")
@pytest.mark.parametrize("jobs", ["1", "2"])
def test_each_file_is_fsynced_before_its_rename_and_each_directory_once_after(tmp_path, jobs):
    """Every rewritten notebook is fsynced before it is renamed into place; each directory is fsynced once, after its renames."""
    _project(tmp_path, [fakekeys.github_classic_token() for _ in range(5)])
    proc, events, main_pid = _strace_fsyncs([sys.executable, "-m", "ipykeyguard", "clean", "-j", jobs, "--store", "none", "a", "b"], tmp_path)
    if proc.returncode != 1 and b"ptrace" in proc.stderr:
        pytest.skip("ptrace is not permitted here")
    assert proc.returncode == 1, proc.stderr[-2000:]
    writers = {pid for pid, call, _path in events if call == "rename"}
    assert (main_pid in writers) == (jobs == "1"), "--jobs 2 should write from worker processes only"
    calls = [(call, path) for _pid, call, path in events]
    renamed = [path for call, path in calls if call == "rename"]
    assert sorted(os.path.basename(p) for p in renamed) == ["m1.ipynb", "m2.ipynb", "n1.ipynb", "n2.ipynb", "n3.ipynb"]
    for target in renamed:
        at = calls.index(("rename", target))
        synced = [p for call, p in calls[:at] if call == "fsync" and os.path.basename(p).startswith(f".{os.path.basename(target)}.")]
        assert synced, f"{target} renamed without an fsync of its content"
    directory_syncs = [p for call, p in calls if call == "fsync" and os.path.isdir(p)]
    assert sorted(directory_syncs) == sorted({os.path.dirname(p) for p in renamed})
    for directory in directory_syncs:
        last_rename = max(i for i, (call, p) in enumerate(calls) if call == "rename" and os.path.dirname(p) == directory)
        assert calls.index(("fsync", directory)) > last_rename


def test_a_directory_of_notebooks_stores_its_keys_in_one_env_write_with_the_same_result(tmp_path):
    """Cleaning six notebooks of one directory at once writes the .env once and gives the same files as six runs one by one."""
    keys = [fakekeys.github_classic_token() for _ in range(4)]
    # Two notebooks repeat a key (same name reused), two hold other keys under the same variable.
    placed = [keys[0], keys[1], keys[0], keys[2], keys[3], keys[1]]
    results = {}
    for mode in ("one_by_one", "at_once"):
        root = tmp_path / mode
        root.mkdir()
        for i, key in enumerate(placed):
            nb = notebook([code_cell(f'TOKEN = "{key}"\nprint(TOKEN)',
                                     [{"name": "stdout", "output_type": "stream", "text": [f"{key}\n"]}])])
            write_nb(root / f"n{i}.ipynb", nb)
        names = [f"n{i}.ipynb" for i in range(len(placed))]
        if mode == "one_by_one":
            for name in names:
                assert cli("clean", name, cwd=root).returncode == 1
        else:
            proc, events, _main = _strace_fsyncs([sys.executable, "-m", "ipykeyguard", "clean", *names], root)
            assert proc.returncode == 1, proc.stderr[-2000:]
            env_writes = [p for _pid, call, p in events if call == "rename" and os.path.basename(p) == ".env"]
            assert len(env_writes) == 1, f".env written {len(env_writes)} times"
            # The keys are durable before the first notebook is replaced.
            calls = [(call, os.path.basename(p)) for _pid, call, p in events]
            first_notebook = min(i for i, (call, name) in enumerate(calls) if call == "rename" and name.endswith(".ipynb"))
            assert calls.index(("rename", ".env")) < first_notebook
        results[mode] = {p.name: p.read_bytes() for p in sorted(root.iterdir()) if p.is_file() and p.suffix != ".log"}
    assert results["at_once"] == results["one_by_one"]
    env = dotenv_values(tmp_path / "at_once" / ".env")
    assert sorted(fingerprint(v) for v in env.values()) == sorted(fingerprint(k) for k in keys)


def test_a_notebook_saved_while_being_cleaned_is_not_overwritten(tmp_path):
    """A notebook whose file changed after it was read keeps the newer content, and the run says why."""
    from ipykeyguard.cli.clean import _write

    path = tmp_path / "n.ipynb"
    path.write_text('{"cells": []}\n')
    checked = os.lstat(path)
    time.sleep(0.01)
    path.write_text('{"cells": [], "saved": "by the user"}\n')
    outcome = _write(str(path), str(tmp_path), b"cleaned", checked, "n.ipynb: cleaned")
    assert outcome.error and "changed while being cleaned" in outcome.error and not outcome.changed
    assert path.read_text() == '{"cells": [], "saved": "by the user"}\n'
    unchanged = os.lstat(path)
    assert _write(str(path), str(tmp_path), b"cleaned", unchanged, "line").changed
    assert path.read_bytes() == b"cleaned"


def test_nbformat_3_notebook_is_cleaned_in_its_own_layout(tmp_path):
    """``clean`` on a notebook written by nbformat's v3 writer moves the code cell's key into
    ``.env`` and an ``os.environ`` lookup in its ``input``, masks the key in outputs and markdown,
    leaves a PNG payload alone, and writes nbformat 3 back (nbformat's validator accepts it);
    a second run changes nothing. The git filter (``--stdin``) masks it as a notebook too."""
    import nbformat
    from nbformat import v3

    rng = random.Random(33)
    key = fakekeys.openai_project_key(rng)
    png = "iVBORw0KGgo" + fakekeys.chars(60, rng=rng)
    cells = [
        v3.new_code_cell(input=f'import openai\nopenai.api_key = "{key}"\n', prompt_number=1, outputs=[
            v3.new_output("stream", output_text=f"using {key}\n", stream="stdout"),
            v3.new_output("display_data", output_png=png, output_text="<Figure>"),
        ]),
        v3.new_text_cell("markdown", source=f"The key was {key}"),
    ]
    original = v3.writes_json(v3.new_notebook(worksheets=[v3.new_worksheet(cells=cells)]))
    path = tmp_path / "old.ipynb"
    path.write_text(original, encoding="utf-8")
    result = cli("clean", "--store", "dotenv", "old.ipynb", cwd=tmp_path)
    assert result.returncode == 1, result.stderr.decode()
    text = path.read_text(encoding="utf-8")
    assert key not in text
    nb = nbformat.reads(text, as_version=nbformat.NO_CONVERT)
    assert nb.nbformat == 3
    nbformat.validate(nb)
    cell, markdown = nb.worksheets[0].cells
    assert 'os.environ["OPENAI_API_KEY"]' in cell.input
    assert cell.outputs[0].text == "using [secret:OPENAI_API_KEY]\n" and cell.outputs[1].png == png
    assert markdown.source == "The key was [secret:OPENAI_API_KEY]"
    assert fingerprint(dotenv_values(tmp_path / ".env")["OPENAI_API_KEY"]) == fingerprint(key)
    again = cli("clean", "--store", "dotenv", "old.ipynb", cwd=tmp_path)
    assert again.returncode == 0 and path.read_text(encoding="utf-8") == text
    filtered = subprocess.run(
        [sys.executable, "-m", "ipykeyguard", "clean", "--stdin", "--stdin-filename", "old.ipynb", "--store", "none"],
        input=original.encode(), capture_output=True, cwd=tmp_path, timeout=120,
    )
    assert filtered.returncode in (0, 1), filtered.stderr.decode()
    out = filtered.stdout.decode()
    assert key not in out and "cleaned as plain text" not in filtered.stderr.decode()
    assert nbformat.reads(out, as_version=nbformat.NO_CONVERT).nbformat == 3
