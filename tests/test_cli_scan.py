"""``ipykeyguard scan``: formats, exit codes, bad inputs, recursion, jobs, baselines, config, stdin.

Most tests call ``cli.main([...])`` in-process for speed; the ones about the installed command
(start-up imports, stdin, the shipped example) run the real ``ipykeyguard`` executable.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

import fakekeys
from ipykeyguard import cli
from ipykeyguard.engine.findings import fingerprint
from ipykeyguard.engine.rotation import rotation_for

REPO = Path(__file__).resolve().parents[1]
LEAKY = REPO / "example_notebooks" / "leaky.ipynb"
SCHEMA = REPO / "ipykeyguard" / "schemas" / "sarif-2.1.0.json"


def _executable() -> str:
    # The script beside this interpreter: the pyenv shim on PATH re-execs and is slower.
    beside = Path(sys.executable).with_name("ipykeyguard")
    return str(beside) if beside.exists() else shutil.which("ipykeyguard") or "ipykeyguard"


def run_exe(*args: str, cwd: Path | None = None, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    """Run the installed ipykeyguard executable; text stdout/stderr."""
    proc = subprocess.run(
        [_executable(), *args], cwd=cwd, input=stdin, capture_output=True, timeout=120,
    )
    proc.stdout, proc.stderr = proc.stdout.decode(), proc.stderr.decode()
    return proc


def _file_position(path, key: str) -> tuple[int, int]:
    """The 1-based line and column where ``key`` first appears in the file's text."""
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if key in line:
            return number, line.index(key) + 1
    raise AssertionError("key not in file")


def scan(capsys, *args: str) -> tuple[int, str, str]:
    """Run ``ipykeyguard scan ARGS`` in-process; returns (exit code, stdout, stderr)."""
    capsys.readouterr()
    code = cli.main(["scan", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def scan_json(capsys, *args: str) -> tuple[int, dict]:
    code, out, _err = scan(capsys, "--format", "json", *args)
    return code, json.loads(out)


def notebook(*cells: dict, metadata: dict | None = None, nbformat: int = 4) -> str:
    return json.dumps(
        {"cells": list(cells), "metadata": metadata or {}, "nbformat": nbformat, "nbformat_minor": 5}, indent=1
    )


def code_cell(source: str, outputs: list | None = None, metadata: dict | None = None) -> dict:
    return {
        "cell_type": "code", "execution_count": 1, "metadata": metadata or {},
        "outputs": outputs or [], "source": source.splitlines(keepends=True),
    }


def stream(text: str) -> dict:
    return {"name": "stdout", "output_type": "stream", "text": [text]}


@pytest.fixture
def rng() -> random.Random:
    return random.Random(20240229)


@pytest.fixture
def keys(rng) -> dict[str, str]:
    """One run-time fake key per shape the default rules know."""
    return {
        "openai": fakekeys.openai_project_key(rng),
        "github": fakekeys.github_classic_token(rng),
        "npm": fakekeys.npm_token(rng),
        "aws": fakekeys.aws_access_key_id(rng),
        "generic": fakekeys.generic_secret(rng),
    }


@pytest.fixture
def leaky_tree(tmp_path, keys) -> Path:
    """A folder with one leaky notebook, one leaky text file and one clean file."""
    nb = notebook(
        code_cell(f'client = OpenAI(api_key="{keys["openai"]}")\n'),
        code_cell("print(token)\n", [stream(f"token is {keys['github']}\n")]),
        metadata={"widgets": {"state": {"m1": {"state": {"value": keys["npm"]}}}}},
    )
    (tmp_path / "nb.ipynb").write_text(nb)
    (tmp_path / "settings.py").write_text(f"import os\n\naws_id = '{keys['aws']}'\napi_key = \"{keys['generic']}\"\n")
    (tmp_path / "clean.py").write_text("print('hello')\n")
    return tmp_path


# -- formats ------------------------------------------------------------------------------------


def test_text_format_is_one_grep_friendly_line_per_finding(capsys, leaky_tree):
    """Notebook findings read 'path: cell N line L: rule (confidence)', text files 'path:L:C: rule (confidence)'."""
    code, out, err = scan(capsys, "--isolated", str(leaky_tree))
    nb, py = leaky_tree / "nb.ipynb", leaky_tree / "settings.py"
    assert code == 1
    assert out.splitlines() == [
        f"{nb}: notebook metadata line 1: npm-access-token (certain) in metadata.widgets.state.m1.state.value"
        f"; exposed: rotate it: {rotation_for('npm-access-token').hint}",
        f"{nb}: cell 0 line 1: openai-api-key (certain)",
        f"{nb}: cell 1 line 1: github-pat-classic (certain) in outputs[0].text"
        f"; exposed: rotate it: {rotation_for('github-pat-classic').hint}",
        f"{py}:3:11: aws-access-key-id (likely)",
        f"{py}:4:12: generic-secret-assignment (likely)",
    ]
    assert err.splitlines()[-1] == (
        "ipykeyguard: 5 findings in 2 of 3 files scanned (min confidence possible)"
    )


def test_json_format_has_findings_errors_and_summary_with_hashes(capsys, leaky_tree, keys):
    """--format json prints one object whose findings carry path, cell, field, line, column, rule, confidence, hash, env."""
    code, report = scan_json(capsys, "--isolated", str(leaky_tree), str(leaky_tree / "missing.ipynb"))
    assert code == 2
    assert set(report) == {"findings", "errors", "summary"}
    first = report["findings"][1]
    file_line, file_column = _file_position(leaky_tree / "nb.ipynb", keys["openai"])
    assert first == {
        "path": str(leaky_tree / "nb.ipynb"), "cell": 0, "field": "source", "line": 1, "column": 26,
        "rule": "openai-api-key", "confidence": "certain", "hash": fingerprint(keys["openai"]), "env": "OPENAI_API_KEY",
        "file_line": file_line, "file_column": file_column,
        "exposed": None, "rotate": None,
    }
    in_output = report["findings"][2]
    assert in_output["exposed"] == "saved output" and in_output["rotate"]["url"].startswith("https://")
    text_finding = report["findings"][3]
    assert (text_finding["cell"], text_finding["field"], text_finding["line"]) == (None, None, 3)
    assert (text_finding["file_line"], text_finding["file_column"]) == (3, text_finding["column"])
    assert {f["hash"] for f in report["findings"]} == {fingerprint(k) for k in keys.values()}
    assert report["errors"] == [{"path": str(leaky_tree / "missing.ipynb"), "message": "no such file or directory"}]
    assert report["summary"] == {
        "files_scanned": 3, "files_with_findings": 2, "findings": 5, "errors": 1, "skipped_binary": 0,
        "skipped_links": 0, "excluded": 0, "skipped_secret_stores": 0, "min_confidence": "possible", "exit_code": 2,
        "to_rotate": [
            {"env": env, "provider": r.name, "url": r.url}
            for env, r in sorted(
                (("GITHUB_TOKEN", rotation_for("github-pat-classic")), ("NPM_TOKEN", rotation_for("npm-access-token")))
            )
        ],
    }


def test_sarif_output_validates_against_the_sarif_2_1_0_schema(capsys, leaky_tree, keys, tmp_path):
    """--format sarif is valid SARIF 2.1.0 with rules, levels, locations, cell logical locations and fingerprints."""
    jsonschema = pytest.importorskip("jsonschema")
    (leaky_tree / "broken.ipynb").write_text("{ nope")
    code, out, _err = scan(capsys, "--isolated", "--format", "sarif", str(leaky_tree))
    assert code == 2
    log = json.loads(out)
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft4Validator.check_schema(schema)
    jsonschema.Draft4Validator(schema).validate(log)

    run = log["runs"][0]
    rule_ids = [r["id"] for r in run["tool"]["driver"]["rules"]]
    assert {"openai-api-key", "github-pat-classic", "aws-access-key-id"} <= set(rule_ids)
    assert all(r["shortDescription"]["text"] for r in run["tool"]["driver"]["rules"])
    results = run["results"]
    assert len(results) == 5
    by_rule = {r["ruleId"]: r for r in results}
    openai = by_rule["openai-api-key"]
    assert rule_ids[openai["ruleIndex"]] == "openai-api-key"
    assert openai["level"] == "error"
    assert openai["partialFingerprints"] == {"secretSha256/v1": fingerprint(keys["openai"])}
    loc = openai["locations"][0]
    assert loc["physicalLocation"]["artifactLocation"]["uri"] == (leaky_tree / "nb.ipynb").as_uri()
    # The region is a line of the .ipynb file as text (as code scanning reads it); the cell and the
    # line inside it are in the logical location and the properties.
    file_line, file_column = _file_position(leaky_tree / "nb.ipynb", keys["openai"])
    assert file_line > 1
    assert loc["physicalLocation"]["region"] == {"startLine": file_line, "startColumn": file_column}
    assert loc["logicalLocations"][0]["fullyQualifiedName"] == "cells[0].source"
    assert openai["properties"]["cell"] == 0 and "cell 0" in openai["message"]["text"]
    assert (openai["properties"]["cellLine"], openai["properties"]["cellColumn"]) == (1, 26)
    aws = by_rule["aws-access-key-id"]
    assert "logicalLocations" not in aws["locations"][0]
    assert aws["locations"][0]["physicalLocation"]["region"] == {"startLine": 3, "startColumn": 11}
    invocation = run["invocations"][0]
    assert invocation["executionSuccessful"] is False
    [note] = invocation["toolExecutionNotifications"]
    assert note["level"] == "error" and "not valid JSON" in note["message"]["text"]


def test_sarif_uses_srcroot_relative_uris_for_relative_paths(capsys, leaky_tree, monkeypatch):
    """Relative paths become %SRCROOT%-relative URIs, with %SRCROOT% the working directory."""
    monkeypatch.chdir(leaky_tree)
    _code, out, _err = scan(capsys, "--isolated", "--format", "sarif", "settings.py")
    run = json.loads(out)["runs"][0]
    artifact = run["results"][0]["locations"][0]["physicalLocation"]["artifactLocation"]
    assert artifact == {"uri": "settings.py", "uriBaseId": "%SRCROOT%"}
    assert run["originalUriBaseIds"]["%SRCROOT%"]["uri"] == leaky_tree.as_uri() + "/"


@pytest.mark.parametrize("fmt", ["text", "json", "sarif"])
def test_no_format_ever_prints_a_secret_or_a_piece_of_one(leaky_tree, keys, fmt):
    """Through the installed executable, no output stream of any format holds a key or any 12-character run of one."""
    (leaky_tree / "latin1.py").write_bytes(f"secret = '{keys['generic']}' caf".encode() + b"\xe9\n")
    (leaky_tree / "broken.ipynb").write_text('{"cells": ["' + keys["openai"] + '"')
    proc = run_exe("scan", "--isolated", "--format", fmt, str(leaky_tree))
    assert proc.returncode == 2
    both = proc.stdout + proc.stderr
    assert "openai-api-key" in both  # the findings are reported ...
    for name, key in keys.items():
        assert key not in both, f"{name} key leaked"
        for i in range(len(key) - 12):
            assert key[i : i + 12] not in both, f"part of the {name} key leaked"


# -- exit codes ---------------------------------------------------------------------------------


def test_exit_codes_clean_findings_errors_and_errors_win(capsys, leaky_tree):
    """0 when clean, 1 on findings, 2 when a file could not be read, even alongside findings."""
    clean, leaky = str(leaky_tree / "clean.py"), str(leaky_tree / "settings.py")
    (leaky_tree / "broken.ipynb").write_text("{")
    broken = str(leaky_tree / "broken.ipynb")
    assert scan(capsys, "--isolated", clean)[0] == 0
    assert scan(capsys, "--isolated", leaky)[0] == 1
    assert scan(capsys, "--isolated", broken)[0] == 2
    code, out, err = scan(capsys, "--isolated", leaky, broken)
    assert code == 2
    assert "aws-access-key-id" in out, "findings are still reported when another file fails"
    assert f"{broken}: error: not valid JSON" in err


@pytest.mark.parametrize(
    "args",
    [[], ["--format", "xml", "x"], ["--min-confidence", "sure", "x"], ["--jobs", "-1", "x"],
     ["--max-file-size", "0", "x"], ["--isolated", "--config", "pyproject.toml", "x"]],
    ids=["no-paths", "bad-format", "bad-confidence", "negative-jobs", "zero-size", "isolated-and-config"],
)
def test_usage_errors_exit_2(capsys, args):
    """Bad command lines exit 2 with an 'ipykeyguard: error:' message."""
    code, _out, err = scan(capsys, *args)
    assert code == 2
    assert "ipykeyguard: error:" in err


# -- bad inputs ---------------------------------------------------------------------------------


def _huge_notebook_ok(path: Path, key: str) -> str:
    path.write_text(notebook(code_cell("x = 1\n" * 400_000 + f"token = '{key}'\n")))
    return "github-pat-classic"


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("broken.ipynb", b'{"cells": [', "not valid JSON"),
        ("old.ipynb", notebook(nbformat=1).encode(), "nbformat 1 is not supported"),
        ("v3-cells.ipynb", notebook(nbformat=3).encode(), "with the 'cells' list of version 4"),
        ("latin1.py", b"caf\xe9 = 1\n", "not UTF-8 text"),
        ("latin1.ipynb", b'{"nbformat": 4, "cells": [], "x": "caf\xe9"}', "not UTF-8"),
        ("empty.ipynb", b"", "not valid JSON"),
        ("future.ipynb", notebook(nbformat=5).encode(), "nbformat 5 is newer"),
    ],
    ids=["broken-json", "nbformat-1", "nbformat-3-without-worksheets", "non-utf8-text", "non-utf8-notebook",
         "empty-notebook", "nbformat-5"],
)
def test_unreadable_inputs_are_reported_and_never_counted_clean(capsys, tmp_path, keys, name, content, message):
    """Each bad input is an error line ('path: error: reason', exit 2); a good file beside it is still scanned."""
    bad = tmp_path / name
    bad.write_bytes(content)
    good = tmp_path / "good.py"
    good.write_text(f"token = '{keys['github']}'\n")
    code, out, err = scan(capsys, "--isolated", str(bad), str(good))
    assert code == 2
    assert f"{bad}: error: " in err and message in err
    assert f"{good}:1:10: github-pat-classic (certain)" in out
    assert "1 file could not be scanned" in err


def test_missing_path_is_an_error(capsys, tmp_path):
    """A path that does not exist exits 2 and is named in the error."""
    code, _out, err = scan(capsys, "--isolated", str(tmp_path / "nope.ipynb"))
    assert code == 2
    assert f"{tmp_path / 'nope.ipynb'}: error: no such file or directory" in err


def test_bom_is_fine_in_text_and_notebooks(capsys, tmp_path, keys):
    """Files starting with a UTF-8 BOM are scanned normally, columns unaffected by the BOM."""
    (tmp_path / "bom.py").write_bytes(b"\xef\xbb\xbf" + f"t = '{keys['github']}'\n".encode())
    (tmp_path / "bom.ipynb").write_bytes(b"\xef\xbb\xbf" + notebook(code_cell(f"t = '{keys['npm']}'")).encode())
    code, report = scan_json(capsys, "--isolated", str(tmp_path))
    assert code == 1 and report["errors"] == []
    assert [(f["rule"], f["line"], f["column"]) for f in report["findings"]] == [
        ("npm-access-token", 1, 6), ("github-pat-classic", 1, 6),
    ]


def test_empty_text_file_is_scanned_and_clean(capsys, tmp_path):
    """An empty text file counts as scanned and clean."""
    (tmp_path / "empty.py").write_bytes(b"")
    code, report = scan_json(capsys, "--isolated", str(tmp_path / "empty.py"))
    assert code == 0 and report["summary"]["files_scanned"] == 1


def test_a_huge_cell_is_scanned_to_its_end(capsys, tmp_path, keys):
    """A 2.4 MB cell with a key on its last line is found, at the right line, within the default size limit."""
    path = tmp_path / "huge.ipynb"
    _huge_notebook_ok(path, keys["github"])
    code, report = scan_json(capsys, "--isolated", str(path))
    assert code == 1
    assert [(f["cell"], f["line"], f["rule"]) for f in report["findings"]] == [(0, 400_001, "github-pat-classic")]


def test_files_over_max_file_size_are_errors_not_clean(capsys, tmp_path, keys):
    """A file larger than --max-file-size is reported as not scanned and makes the exit status 2."""
    path = tmp_path / "big.py"
    path.write_text("x = 1\n" * 100 + f"t = '{keys['github']}'\n")
    code, out, err = scan(capsys, "--isolated", "--max-file-size", "100", str(path))
    assert (code, out) == (2, "")
    assert "larger than max-file-size" in err
    assert scan(capsys, "--isolated", "--max-file-size", "100000", str(path))[0] == 1


def test_binary_files_are_skipped_and_counted(capsys, tmp_path, keys):
    """A file with a NUL byte in its first 8 KiB is skipped as binary (counted, not an error), even if it holds a key."""
    (tmp_path / "blob.bin").write_bytes(b"\x89PNG\0\0" + keys["github"].encode())
    code, report = scan_json(capsys, "--isolated", str(tmp_path))
    assert code == 0
    assert report["summary"]["skipped_binary"] == 1 and report["summary"]["files_scanned"] == 0
    _code, _out, err = scan(capsys, "--isolated", str(tmp_path))
    assert "1 binary skipped" in err


def test_directory_recursion_skips_vcs_and_virtualenv_dirs(capsys, tmp_path, keys):
    """Keys inside .git, node_modules and a virtualenv are not reported; one outside is."""
    leak = f"t = '{keys['github']}'\n"
    for rel in [".git/config", "node_modules/x/index.js",
                "env/lib/python3.11/site.py", "__pycache__/m.py", ".tox/py311/x.py"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(leak)
    (tmp_path / "env" / "pyvenv.cfg").write_text("home = /usr\n")
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "app.py").write_text(leak)
    code, report = scan_json(capsys, "--isolated", str(tmp_path))
    assert code == 1
    assert [f["path"] for f in report["findings"]] == [str(tmp_path / "src" / "app.py")]
    assert report["summary"]["files_scanned"] == 1


def test_symlink_loops_neither_hang_nor_pass_silently(capsys, tmp_path, keys):
    """Recursion does not follow a looping directory link; a looping link named explicitly is an error."""
    (tmp_path / "a.py").write_text(f"t = '{keys['github']}'\n")
    (tmp_path / "loop").symlink_to(tmp_path, target_is_directory=True)
    (tmp_path / "self.ipynb").symlink_to(tmp_path / "self.ipynb")
    code, report = scan_json(capsys, "--isolated", str(tmp_path))
    assert code == 1
    assert report["summary"]["files_scanned"] == 1 and report["summary"]["skipped_links"] == 2
    code, _out, err = scan(capsys, "--isolated", str(tmp_path / "self.ipynb"))
    assert code == 2 and "too many levels of symbolic links" in err


def _scan_as_unprivileged_user(args: list[str]) -> tuple[int, str, str]:
    """Run cli.main(["scan", *args]) in a forked child that dropped root to 'nobody'.

    Root reads any file whatever its mode, so a permission error needs a real unprivileged
    process. Everything the scan imports is imported first: the child may not read /root.
    """
    import ipykeyguard.cli.scan  # noqa: F401
    import ipykeyguard.reports.text  # noqa: F401
    from ipykeyguard import reports  # noqa: F401
    from ipykeyguard.cli import files  # noqa: F401
    from ipykeyguard.engine import scan  # noqa: F401

    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        code = 99
        try:
            os.dup2(out_w, 1)
            os.dup2(err_w, 2)
            sys.stdout = open(1, "w", closefd=False)
            sys.stderr = open(2, "w", closefd=False)
            os.setgid(65534)
            os.setuid(65534)
            code = cli.main(["scan", *args])
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)
    os.close(out_w)
    os.close(err_w)
    with open(out_r) as out_f, open(err_r) as err_f:
        out, err = out_f.read(), err_f.read()
    _pid, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), out, err


def test_unreadable_files_and_directories_are_errors(capsys, keys):
    """A file or directory the user may not read is reported (exit 2) while readable files are still scanned."""
    folder = Path(tempfile.mkdtemp(prefix="ipykeyguard-perm-", dir="/tmp"))
    try:
        folder.chmod(0o755)
        (folder / "good.py").write_text(f"t = '{keys['github']}'\n")
        (folder / "secret.ipynb").write_text(notebook())
        (folder / "secret.ipynb").chmod(0)
        (folder / "locked").mkdir()
        (folder / "locked" / "inner.py").write_text("x = 1\n")
        (folder / "locked").chmod(0)
        args = ["--isolated", str(folder)]
        if os.geteuid() == 0:
            code, out, err = _scan_as_unprivileged_user(args)
        else:
            code, out, err = scan(capsys, *args)
        assert code == 2, err
        assert f"{folder / 'secret.ipynb'}: error: cannot read: permission denied" in err
        assert f"{folder / 'locked'}: error: cannot list directory: permission denied" in err
        assert "github-pat-classic" in out
    finally:
        (folder / "locked").chmod(0o755)
        shutil.rmtree(folder)


# -- jobs, baseline, threshold ------------------------------------------------------------------


def test_jobs_2_and_jobs_0_give_the_same_report_as_jobs_1(capsys, tmp_path, rng):
    """A process pool changes nothing in the report: same findings, same order, same errors."""
    for i in range(12):
        key = fakekeys.github_classic_token(rng) if i % 2 else fakekeys.npm_token(rng)
        if i % 3:
            (tmp_path / f"nb{i:02}.ipynb").write_text(notebook(code_cell(f"t = '{key}'\n")))
        else:
            (tmp_path / f"f{i:02}.py").write_text(f"t = '{key}'\n")
    (tmp_path / "broken.ipynb").write_text("{")
    (tmp_path / "blob.bin").write_bytes(b"\0\0")
    serial = scan(capsys, "--isolated", "--format", "json", str(tmp_path), "--jobs", "1")
    assert serial[0] == 2 and len(json.loads(serial[1])["findings"]) == 12
    assert scan(capsys, "--isolated", "--format", "json", str(tmp_path), "--jobs", "2") == serial
    assert scan(capsys, "--isolated", "--format", "json", str(tmp_path), "-j", "0") == serial


def test_baseline_suppresses_known_secrets_only(capsys, leaky_tree, rng):
    """A JSON report used as --baseline hides the secrets it lists; a new key still fails the scan."""
    baseline = leaky_tree.parent / "baseline.json"
    _code, out, _err = scan(capsys, "--isolated", "--format", "json", str(leaky_tree))
    baseline.write_text(out)
    assert scan(capsys, "--isolated", "--baseline", str(baseline), str(leaky_tree)) == (
        0, "", "ipykeyguard: 0 findings in 0 of 3 files scanned (min confidence possible)\n",
    )
    new_key = fakekeys.github_classic_token(rng)
    (leaky_tree / "new.py").write_text(f"t = '{new_key}'\n")
    code, out, _err = scan(capsys, "--isolated", "--baseline", str(baseline), str(leaky_tree))
    assert code == 1 and out == f"{leaky_tree / 'new.py'}:1:6: github-pat-classic (certain)\n"


def test_write_baseline_records_fingerprints_that_a_later_scan_accepts(capsys, leaky_tree, keys):
    """--write-baseline writes path/rule/hash entries (no secret), exits 0, and --baseline then passes."""
    baseline = leaky_tree.parent / "base.json"
    code, _out, _err = scan(capsys, "--isolated", "--write-baseline", str(baseline), str(leaky_tree))
    assert code == 0
    document = json.loads(baseline.read_text())
    assert {e["hash"] for e in document["findings"]} == {fingerprint(k) for k in keys.values()}
    assert all(set(e) == {"path", "rule", "hash"} for e in document["findings"])
    assert not any(k in baseline.read_text() for k in keys.values()), "key leaked into the baseline"
    assert scan(capsys, "--isolated", "--baseline", str(baseline), str(leaky_tree))[0] == 0


def test_a_broken_baseline_is_a_usage_error(capsys, leaky_tree):
    """An unreadable or malformed baseline exits 2 before scanning."""
    bad = leaky_tree / "bad-baseline.json"
    bad.write_text('["not-a-hash"]')
    code, out, err = scan(capsys, "--isolated", "--baseline", str(bad), str(leaky_tree))
    assert (code, out) == (2, "") and "SHA-256" in err


def test_min_confidence_filters_findings(capsys, leaky_tree):
    """--min-confidence certain drops likely findings (an AWS key id has no checksum to prove it)."""
    code, report = scan_json(capsys, "--isolated", "--min-confidence", "certain", str(leaky_tree))
    assert code == 1
    assert {f["confidence"] for f in report["findings"]} == {"certain"}
    assert "aws-access-key-id" not in {f["rule"] for f in report["findings"]}
    assert report["summary"]["min_confidence"] == "certain"


# -- configuration ------------------------------------------------------------------------------


def _project(tmp_path: Path, table: str) -> Path:
    (tmp_path / "pyproject.toml").write_text(f"[project]\nname = 'demo'\n\n[tool.ipykeyguard]\n{table}\n")
    return tmp_path


def test_config_exclude_applies_to_named_and_found_files_and_is_counted(capsys, leaky_tree, keys):
    """exclude patterns skip files found by recursion and files named explicitly, and the summary counts them."""
    _project(leaky_tree, 'exclude = ["nb.ipynb", "fixtures/**"]')
    (leaky_tree / "fixtures").mkdir()
    (leaky_tree / "fixtures" / "k.py").write_text(f"t = '{keys['github']}'\n")
    code, report = scan_json(capsys, str(leaky_tree), str(leaky_tree / "nb.ipynb"), str(leaky_tree / "fixtures" / "k.py"))
    assert code == 1
    assert {f["path"] for f in report["findings"]} == {str(leaky_tree / "settings.py")}
    assert report["summary"]["excluded"] == 3  # nb.ipynb, fixtures/, fixtures/k.py
    code, _out, err = scan(capsys, str(leaky_tree / "nb.ipynb"))
    assert code == 0 and "1 excluded by config" in err


def test_config_is_found_from_the_scanned_paths_not_the_working_directory(capsys, leaky_tree, monkeypatch, tmp_path_factory):
    """The nearest pyproject.toml above the scanned paths applies even when running from elsewhere."""
    _project(leaky_tree, 'disable = ["aws-access-key-id", "generic-secret-assignment"]')
    monkeypatch.chdir(tmp_path_factory.mktemp("elsewhere"))
    code, report = scan_json(capsys, str(leaky_tree / "settings.py"))
    assert (code, report["findings"]) == (0, [])


def test_config_disable_extra_rules_and_min_confidence(capsys, tmp_path, keys):
    """Disabled rules stop reporting, an extra rules file adds a rule, and min-confidence in config is the default threshold."""
    (tmp_path / "rules.toml").write_text(
        "[[rule]]\n"
        'id = "acme-token"\n'
        'description = "ACME internal token"\n'
        "regex = '''(?P<secret>acme_[a-z0-9]{24})'''\n"
        'keywords = ["acme_"]\n'
        'env = "ACME_TOKEN"\n'
        'confidence = "likely"\n'
        'examples = ["acme_0123456789abcdefghijklmn"]\n'
    )
    _project(tmp_path, 'disable = ["github-pat-classic"]\nextra-rules = ["rules.toml"]\nmin-confidence = "likely"')
    acme = "acme_" + "".join(random.Random(5).choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(24))
    (tmp_path / "code.py").write_text(f"a = '{keys['github']}'\nb = '{acme}'\n")
    code, report = scan_json(capsys, str(tmp_path / "code.py"))
    assert code == 1
    assert [(f["rule"], f["env"], f["line"]) for f in report["findings"]] == [("acme-token", "ACME_TOKEN", 2)]
    assert report["summary"]["min_confidence"] == "likely"
    # --isolated ignores all of it: the GitHub token is back, the ACME rule is gone.
    code, report = scan_json(capsys, "--isolated", str(tmp_path / "code.py"))
    assert [f["rule"] for f in report["findings"]] == ["github-pat-classic"]


def test_explicit_config_file_is_used(capsys, leaky_tree, tmp_path_factory):
    """--config PATH reads that pyproject.toml instead of searching."""
    other = _project(tmp_path_factory.mktemp("cfg"), 'exclude = ["*.py"]')
    code, report = scan_json(capsys, "--config", str(other / "pyproject.toml"), str(leaky_tree))
    # exclude patterns are relative to the config's folder, so *.py still matches by name.
    assert {f["path"] for f in report["findings"]} == {str(leaky_tree / "nb.ipynb")}
    assert code == 1


@pytest.mark.parametrize(
    "table, message",
    [("min-confidence = 'sure'", "min-confidence"), ("colour = 'red'", "unknown key"),
     ("extra-rules = ['missing.toml']", "missing.toml")],
    ids=["bad-threshold", "unknown-key", "missing-rules-file"],
)
def test_config_errors_exit_2(capsys, leaky_tree, table, message):
    """A malformed [tool.ipykeyguard] table is a usage error (exit 2) naming the problem."""
    _project(leaky_tree, table)
    code, out, err = scan(capsys, str(leaky_tree))
    assert (code, out) == (2, "")
    assert "ipykeyguard: error:" in err and message in err


def test_missing_config_file_is_an_error(capsys, leaky_tree):
    """--config naming a file that does not exist exits 2."""
    code, _out, err = scan(capsys, "--config", str(leaky_tree / "nope.toml"), str(leaky_tree))
    assert code == 2 and "no such config file" in err


# -- the installed executable -------------------------------------------------------------------


def test_stdin_text_and_notebook(keys):
    """'-' reads standard input: text is located by line and column, a notebook by cell."""
    proc = run_exe("scan", "--isolated", "-", stdin=f"x = 1\nt = '{keys['github']}'\n".encode())
    assert (proc.returncode, proc.stdout) == (1, "-:2:6: github-pat-classic (certain)\n")
    nb = notebook(code_cell("x = 1\n"), code_cell(f"t = '{keys['npm']}'"))
    proc = run_exe("scan", "--isolated", "--format", "json", "-", stdin=nb.encode())
    assert proc.returncode == 1
    [finding] = json.loads(proc.stdout)["findings"]
    assert (finding["path"], finding["cell"], finding["rule"]) == ("-", 1, "npm-access-token")
    proc = run_exe("scan", "--isolated", "-", stdin=b"nothing here\n")
    assert proc.returncode == 0


def test_the_shipped_leaky_example_is_found_everywhere_a_key_hides():
    """The README command finds keys in source, markdown, stream, execute_result, HTML, traceback, cell metadata and widget state, and nothing in the clean cells."""
    proc = run_exe("scan", "--isolated", "--format", "json", "example_notebooks/leaky.ipynb", cwd=REPO)
    assert proc.returncode == 1
    findings = json.loads(proc.stdout)["findings"]
    fields = {(f["cell"], f["field"]) for f in findings}
    assert {
        (0, "source"),  # markdown
        (1, "source"),  # code
        (2, "outputs[0].text"),  # stream
        (3, "outputs[0].data.text/plain"),  # execute_result
        (3, "outputs[0].data.text/html"),
        (4, "outputs[0].data.text/html"),  # display_data
        (6, "metadata.papermill.parameters.github_token"),  # cell metadata
    } <= fields
    assert any(cell == 5 and field.startswith("outputs[0].traceback[") for cell, field in fields)
    assert any(cell is None and field.startswith("metadata.widgets.") for cell, field in fields)
    assert {cell for cell, _field in fields} == {None, 0, 1, 2, 3, 4, 5, 6}, "the clean cells 7 and 8 are clean"
    assert {f["rule"] for f in findings} >= {"openai-api-key", "github-pat-classic", "npm-access-token", "aws-access-key-id"}
    # The repository's own config excludes the example, so without --isolated it is skipped, and said so.
    proc = run_exe("scan", "example_notebooks/leaky.ipynb", cwd=REPO)
    assert proc.returncode == 0 and "1 excluded by config" in proc.stderr


def test_leaky_example_is_reproducible():
    """make_leaky.py regenerates leaky.ipynb byte for byte (fixed seed)."""
    proc = subprocess.run(
        [sys.executable, str(REPO / "example_notebooks" / "make_leaky.py"), "--check"],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr


def test_a_scan_imports_no_heavy_framework():
    """Scanning a notebook through the CLI imports none of jsonschema, nbformat, IPython, jupyter_server, nbconvert or a process pool."""
    code = (
        "import sys; from ipykeyguard import cli; "
        f"rc = cli.main(['scan', '--isolated', {str(LEAKY)!r}]); "
        "heavy = sorted(m for m in ('jsonschema', 'nbformat', 'IPython', 'jupyter_server', 'nbconvert', "
        "'concurrent.futures.process', 'traitlets') if m in sys.modules); "
        "print('HEAVY', heavy, rc)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.stdout.splitlines()[-1] == "HEAVY [] 1", proc.stderr


def test_the_scan_hook_is_a_valid_pre_commit_manifest_entry():
    """pre-commit accepts .pre-commit-hooks.yaml, and its ipykeyguard-scan hook runs 'ipykeyguard scan' on notebooks and text."""
    pre_commit = shutil.which("pre-commit")
    if pre_commit is None:
        pytest.skip("pre-commit is not installed")
    proc = subprocess.run([pre_commit, "validate-manifest", ".pre-commit-hooks.yaml"], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    yaml = pytest.importorskip("yaml")
    hooks = {h["id"]: h for h in yaml.safe_load((REPO / ".pre-commit-hooks.yaml").read_text())}
    assert hooks["ipykeyguard-scan"]["entry"] == "ipykeyguard scan"
    assert set(hooks["ipykeyguard-scan"]["types_or"]) == {"jupyter", "text"}


# -- old notebook formats -----------------------------------------------------------------------


def test_nbformat_3_notebook_is_scanned_as_a_notebook(capsys, tmp_path, keys, rng):
    """A notebook written by nbformat's own v3 writer (worksheets, ``input``, ``pyout``/``pyerr``,
    short output keys) is read as a notebook: keys in code, headings, markdown, stream, HTML
    and error outputs, and metadata are found where they sit (cell, field, file position), and
    a key-like string inside a PNG payload is skipped like any binary output."""
    from nbformat import v3

    png_key = fakekeys.github_classic_token(rng)
    meta_key = fakekeys.npm_token(rng)
    error_key = fakekeys.github_classic_token(rng)
    cells = [
        v3.new_heading_cell(source="Setup", level=1),
        v3.new_code_cell(input=f'import openai\nopenai.api_key = "{keys["openai"]}"\n', prompt_number=1, outputs=[
            v3.new_output("stream", output_text=f"token {keys['github']}\n", stream="stdout"),
            v3.new_output("pyout", output_html=f"<b>{keys['npm']}</b>", output_text="ok",
                          output_png="iVBORw0KGgo" + png_key + "AAAA", prompt_number=1),
            v3.new_output("pyerr", ename="ValueError", evalue=f"bad token {error_key}", traceback=["Traceback"]),
        ]),
        v3.new_text_cell("markdown", source=f"AWS id: {keys['aws']}"),
    ]
    nb = v3.new_notebook(worksheets=[v3.new_worksheet(cells=cells, metadata={"token": meta_key})])
    path = tmp_path / "old.ipynb"
    path.write_text(v3.writes_json(nb), encoding="utf-8")
    code, report = scan_json(capsys, "--isolated", str(path))
    assert code == 1 and report["errors"] == []
    where = {f["hash"]: (f["cell"], f["field"]) for f in report["findings"]}
    assert where == {
        fingerprint(keys["openai"]): (1, "input"),
        fingerprint(keys["github"]): (1, "outputs[0].text"),
        fingerprint(keys["npm"]): (1, "outputs[1].html"),
        fingerprint(error_key): (1, "outputs[2].evalue"),
        fingerprint(keys["aws"]): (2, "source"),
        fingerprint(meta_key): (None, "worksheets[0].metadata.token"),
    }
    for finding in report["findings"]:
        key = next(k for k in [*keys.values(), meta_key, error_key] if fingerprint(k) == finding["hash"])
        assert (finding["file_line"], finding["file_column"]) == _file_position(path, key)


def test_nbformat_2_notebook_is_scanned_as_a_notebook(capsys, tmp_path, keys):
    """nbformat 2 (written by its own v2 writer; text cells may keep their rendered HTML) is
    scanned as a notebook."""
    from nbformat import v2

    cells = [
        v2.new_code_cell(input=f'token = "{keys["github"]}"', outputs=[v2.new_output("pyout", output_text="1")]),
        v2.new_text_cell("markdown", source="see below", rendered=f"<p>{keys['npm']}</p>"),
    ]
    path = tmp_path / "v2.ipynb"
    path.write_text(v2.writes_json(v2.new_notebook(worksheets=[v2.new_worksheet(cells=cells)])), encoding="utf-8")
    code, report = scan_json(capsys, "--isolated", str(path))
    assert code == 1
    assert {(f["cell"], f["field"]) for f in report["findings"]} == {(0, "input"), (1, "rendered")}
