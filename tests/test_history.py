"""``ipykeyguard scan --history``: real temporary git repositories, the installed executable.

One repository (module fixture) holds every shape the issue names, each with its own fresh
fake key: a key in a code cell committed then removed, one in a saved output, one in a plain
file, a file renamed after its key was committed, a side branch merged in, a key that exists
only on an unmerged side branch, a key resolved into a merge commit itself, the same key added
in two files at different times, and a key still in HEAD. Each must be reported exactly once,
at the commit that introduced it, with its rotation advice, and no report holds plaintext.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

import fakekeys
from ipykeyguard.engine.findings import fingerprint
from ipykeyguard.engine.rotation import rotation_for

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")

SCHEMA = Path(__file__).parent.parent / "ipykeyguard" / "schemas" / "sarif-2.1.0.json"


class FakeKeys(dict):
    """Fake keys by name with a masked repr, so a failure report never prints one."""

    def __repr__(self) -> str:
        return f"FakeKeys({', '.join(self)})"


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=Test", "-c", "user.email=test@example.invalid", "-c", "commit.gpgsign=false",
         "-c", "init.defaultBranch=main", *args],
        cwd=repo, capture_output=True, text=True, check=True,
    )
    return done.stdout.strip()


def commit(repo: Path, message: str) -> str:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "--allow-empty", "-m", message)
    return git(repo, "rev-parse", "HEAD")


def notebook(source: str, output: str | None = None) -> str:
    outputs = [] if output is None else [{"name": "stdout", "output_type": "stream", "text": [output]}]
    nb = {
        "cells": [
            {"cell_type": "markdown", "id": "m0", "metadata": {}, "source": ["# Analysis\n"]},
            {"cell_type": "code", "execution_count": 1, "id": "c1", "metadata": {}, "outputs": outputs,
             "source": source.splitlines(keepends=True)},
        ],
        "metadata": {}, "nbformat": 4, "nbformat_minor": 5,
    }
    return json.dumps(nb, indent=1, sort_keys=True) + "\n"


def run_cli(*args: str, cwd: Path, ledger: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    if ledger is not None:
        env["IPYKEYGUARD_LEDGER"] = str(ledger)
    return subprocess.run(["ipykeyguard", *args], cwd=cwd, capture_output=True, text=True, env=env, timeout=300)


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    """The repository, its keys and the commit that introduced each (``expected[name]``)."""
    repo = tmp_path_factory.mktemp("history") / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    keys = FakeKeys(
        code=fakekeys.openai_project_key(),
        output=fakekeys.github_classic_token(),
        plain=fakekeys.npm_token(),
        renamed=fakekeys.anthropic_key(),
        merged=fakekeys.github_classic_token(),
        side_only=fakekeys.npm_token(),
        evil_merge=fakekeys.github_classic_token(),
        twice=fakekeys.openai_legacy_key(),
        head=fakekeys.npm_token(),
    )
    expected: dict[str, str] = {}
    (repo / "README.md").write_text("# project\n")
    commit(repo, "start")

    (repo / "analysis.ipynb").write_text(notebook(f'import openai\nclient = openai.OpenAI(api_key="{keys["code"]}")\n'))
    expected["code"] = commit(repo, "notebook with a key in code")
    (repo / "analysis.ipynb").write_text(notebook('import os, openai\nclient = openai.OpenAI(api_key=os.environ["OPENAI_API_KEY"])\n'))
    commit(repo, "move the key out")

    (repo / "report.ipynb").write_text(notebook("print(token)\n", f"token is {keys['output']}\n"))
    expected["output"] = commit(repo, "notebook with a key in a saved output")
    (repo / "report.ipynb").write_text(notebook("print(token)\n"))
    commit(repo, "clear outputs")

    (repo / "settings.py").write_text(f'NPM = "{keys["plain"]}"\n')
    expected["plain"] = commit(repo, "a key in a plain file")
    (repo / "settings.py").write_text('import os\nNPM = os.environ["NPM_TOKEN"]\n')
    commit(repo, "read it from the environment")

    (repo / "old_name.py").write_text(f'ANTHROPIC = "{keys["renamed"]}"\n')
    expected["renamed"] = commit(repo, "a key in a file that is renamed later")
    git(repo, "mv", "old_name.py", "new_name.py")
    commit(repo, "rename")
    (repo / "new_name.py").write_text("import os\n")
    commit(repo, "remove the key from the renamed file")

    (repo / "twice_a.py").write_text(f'KEY = "{keys["twice"]}"\n')
    expected["twice"] = commit(repo, "the same key, first time")

    main = git(repo, "rev-parse", "--abbrev-ref", "HEAD")
    git(repo, "checkout", "-q", "-b", "feature")
    (repo / "feature.py").write_text(f'TOKEN = "{keys["merged"]}"\n')
    expected["merged"] = commit(repo, "side branch: a key")
    (repo / "feature.py").write_text("import os\nTOKEN = os.environ['GITHUB_TOKEN']\n")
    commit(repo, "side branch: key removed")
    git(repo, "checkout", "-q", main)
    (repo / "twice_b.py").write_text(f'OTHER = "{keys["twice"]}"\n')
    commit(repo, "the same key, second time, in another file")
    git(repo, "merge", "-q", "--no-ff", "-m", "merge feature", "feature")

    git(repo, "checkout", "-q", "-b", "experiment")
    (repo / "experiment.py").write_text(f'TOKEN = "{keys["side_only"]}"\n')
    expected["side_only"] = commit(repo, "a key only on an unmerged branch")
    git(repo, "checkout", "-q", main)

    # An "evil" merge: the merge commit itself brings a key that neither parent had.
    git(repo, "checkout", "-q", "-b", "other")
    (repo / "other.py").write_text("X = 1\n")
    commit(repo, "other branch")
    git(repo, "checkout", "-q", main)
    git(repo, "merge", "-q", "--no-ff", "--no-commit", "other")
    (repo / "merged_in.py").write_text(f'TOKEN = "{keys["evil_merge"]}"\n')
    expected["evil_merge"] = commit(repo, "merge other, adding a key in the merge itself")

    (repo / "twice_a.py").write_text("KEY = None\n")
    (repo / "twice_b.py").write_text("OTHER = None\n")
    (repo / "merged_in.py").unlink()
    commit(repo, "remove the repeated key and the merged one")
    (repo / "current.py").write_text(f'TOKEN = "{keys["head"]}"\n')
    expected["head"] = commit(repo, "a key that is still in HEAD")
    return repo, keys, expected


def holds_plaintext(text: str, keys: dict) -> bool:
    """True when ``text`` holds any 12-character run of any key's random part."""
    return any(value[i:i + 12] in text for value in keys.values() for i in range(8, len(value) - 12))


def test_each_key_is_reported_once_at_the_commit_that_introduced_it(history, tmp_path):
    """Keys committed and later removed (code, output, plain file, renamed file, merged and unmerged branches, a merge commit) are each reported once, with the introducing commit's full sha."""
    repo, keys, expected = history
    done = run_cli("scan", "--history", "--format", "json", str(repo), cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    by_hash = {}
    for f in report["findings"]:
        assert f["hash"] not in by_hash, f"{f['rule']} reported twice"
        by_hash[f["hash"]] = f
    assert set(by_hash) == {fingerprint(k) for k in keys.values()}
    for name, key in keys.items():
        f = by_hash[fingerprint(key)]
        assert f["commit"] == expected[name], name
        assert len(f["commit"]) == 40
        assert f["exposed"] == "git history"
        assert f["rotate"]["url"] == rotation_for(f["rule"]).url and f["rotate"]["url"].startswith("https://")
        assert f["in_head"] is (name == "head"), name


def test_notebooks_in_history_are_located_by_cell_and_field(history, tmp_path):
    """A key in a committed notebook is placed at its cell, field and line, as a plain scan places it."""
    repo, keys, _expected = history
    report = json.loads(run_cli("scan", "--history", "--format", "json", str(repo), cwd=tmp_path).stdout)
    by_hash = {f["hash"]: f for f in report["findings"]}
    code, output = by_hash[fingerprint(keys["code"])], by_hash[fingerprint(keys["output"])]
    assert (code["path"], code["cell"], code["field"], code["line"]) == ("analysis.ipynb", 1, "source", 2)
    assert (output["path"], output["cell"], output["field"]) == ("report.ipynb", 1, "outputs[0].text")
    renamed = by_hash[fingerprint(keys["renamed"])]
    assert renamed["path"] == "old_name.py", "a renamed file is reported where the key first appeared"


def test_the_text_report_names_commits_and_ends_with_the_keys_to_rotate(history, tmp_path):
    """Each text line says where, which commit, whether HEAD still holds it and how to rotate; the report ends with the keys to rotate by name and provider."""
    repo, keys, expected = history
    done = run_cli("scan", "--history", str(repo), cwd=tmp_path)
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    found = [line for line in lines if "; introduced in " in line]
    assert len(found) == len(keys)
    assert all("exposed: rotate it: revoke it at " in line and "https://" in line for line in found)
    assert any(expected["head"] in line and "still in HEAD" in line for line in found)
    assert sum("removed since" in line for line in found) == len(keys) - 1
    tail = lines[lines.index(next(line for line in lines if line.startswith("keys to rotate"))) + 1:]
    assert "  GITHUB_TOKEN (GitHub): https://github.com/settings/tokens" in tail
    assert "  NPM_TOKEN (npm): " + rotation_for("npm-access-token").url in tail
    assert any(line.startswith("  OPENAI_API_KEY (OpenAI): ") for line in tail)
    assert "key" in done.stderr and "commit" in done.stderr


@pytest.mark.parametrize("fmt", ["text", "json", "sarif"])
def test_no_report_format_holds_plaintext(history, tmp_path, fmt):
    """No report format holds any 12-character run of any key found in history."""
    repo, keys, _expected = history
    done = run_cli("scan", "--history", "--format", fmt, str(repo), cwd=tmp_path)
    assert done.returncode == 1
    leaked = holds_plaintext(done.stdout + done.stderr, keys)
    assert not leaked


def test_sarif_history_report_is_valid_and_carries_commit_and_rotation(history, tmp_path):
    """The SARIF report validates against SARIF 2.1.0; results carry commit, inHead and rotate properties, rules a help text with the rotation page."""
    jsonschema = pytest.importorskip("jsonschema")
    repo, keys, expected = history
    log = json.loads(run_cli("scan", "--history", "--format", "sarif", str(repo), cwd=tmp_path).stdout)
    jsonschema.validate(log, json.loads(SCHEMA.read_text()))
    run = log["runs"][0]
    results = {r["partialFingerprints"]["secretSha256/v1"]: r for r in run["results"]}
    head = results[fingerprint(keys["head"])]
    assert head["properties"]["commit"] == expected["head"] and head["properties"]["inHead"] is True
    assert head["properties"]["rotate"]["url"] == rotation_for(head["ruleId"]).url
    assert "exposed: rotate it" in head["message"]["text"]
    rule = run["tool"]["driver"]["rules"][head["ruleIndex"]]
    assert rotation_for(rule["id"]).url in rule["help"]["text"]


def test_each_distinct_blob_is_scanned_once(history, tmp_path):
    """The number of blobs scanned is the number of distinct file blobs git holds (none twice, none missed)."""
    repo, _keys, _expected = history
    report = json.loads(run_cli("scan", "--history", "--format", "json", str(repo), cwd=tmp_path).stdout)
    objects = git(repo, "rev-list", "--objects", "--all").splitlines()
    shas = "\n".join(line.split()[0] for line in objects) + "\n"
    kinds = subprocess.run(["git", "cat-file", "--batch-check"], cwd=repo, input=shas, capture_output=True, text=True, check=True)
    blobs = {line.split()[0] for line in kinds.stdout.splitlines() if line.split()[1] == "blob"}
    assert report["summary"]["history"]["blobs_scanned"] == len(blobs)
    assert report["summary"]["history"]["commits"] == int(git(repo, "rev-list", "--all", "--count"))


def test_since_and_until_narrow_the_range(history, tmp_path):
    """--since REF leaves out keys introduced in commits REF holds; --until REF leaves out commits REF cannot reach."""
    repo, keys, expected = history
    fp = {name: fingerprint(key) for name, key in keys.items()}  # asserts below show hashes, never keys
    since = json.loads(run_cli("scan", "--history", "--since", expected["plain"], "--format", "json", str(repo), cwd=tmp_path).stdout)
    hashes = {f["hash"] for f in since["findings"]}
    assert fp["code"] not in hashes and fp["plain"] not in hashes
    assert fp["renamed"] in hashes and fp["head"] in hashes
    until = json.loads(run_cli("scan", "--history", "--until", "experiment", "--format", "json", str(repo), cwd=tmp_path).stdout)
    hashes = {f["hash"] for f in until["findings"]}
    assert fp["side_only"] in hashes and fp["head"] not in hashes


def test_a_clean_history_exits_0(tmp_path):
    """A repository whose history holds no key exits 0 and reports no key to rotate."""
    repo = tmp_path / "clean"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / "a.py").write_text("import os\nKEY = os.environ['OPENAI_API_KEY']\n")
    commit(repo, "clean")
    done = run_cli("scan", "--history", cwd=repo)
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    assert "0 keys in git history of 1 commit" in done.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["--history", "NOT_A_REPO"], "not a git repository"),
        (["--history", "--since", "no-such-ref", "REPO"], "unknown revision 'no-such-ref'"),
        (["--since", "HEAD", "REPO"], "--since and --until go with --history"),
        (["--history", "REPO", "REPO"], "--history takes one repository PATH"),
    ],
)
def test_usage_and_repository_errors_exit_2(history, tmp_path, args, message):
    """A folder that is no repository, an unknown ref or a misused option exits 2 with a one-line reason."""
    repo, _keys, _expected = history
    (tmp_path / "NOT_A_REPO").mkdir()
    argv = [str(repo) if a == "REPO" else a for a in args]
    done = run_cli("scan", *argv, cwd=tmp_path)
    assert done.returncode == 2
    assert message in done.stderr.lower() or message in done.stderr


def test_a_blob_over_max_file_size_makes_the_scan_incomplete(history, tmp_path):
    """A blob larger than --max-file-size is an error naming the path and blob; exit 2 wins over findings."""
    repo, _keys, _expected = history
    done = run_cli("scan", "--history", "--max-file-size", "200", str(repo), cwd=tmp_path)
    assert done.returncode == 2
    assert "larger than max-file-size" in done.stderr and ".ipynb: error: blob " in done.stderr


def test_excluded_paths_are_not_reported_from_history(history, tmp_path):
    """The exclude patterns of the repository's pyproject.toml apply to the paths blobs had in history."""
    repo, keys, _expected = history
    inside = repo / "pyproject.toml"
    inside.write_text('[tool.ipykeyguard]\nexclude = ["old_name.py", "new_name.py"]\n')
    try:
        done = run_cli("scan", "--history", "--format", "json", str(repo), cwd=tmp_path)
    finally:
        inside.unlink()
    hashes = {f["hash"] for f in json.loads(done.stdout)["findings"]}
    renamed_reported = fingerprint(keys["renamed"]) in hashes  # outside assert: no key in a failure report
    head_reported = fingerprint(keys["head"]) in hashes
    assert not renamed_reported
    assert head_reported


def test_jobs_give_the_same_report(history, tmp_path):
    """--jobs 2 scans with worker processes and reports exactly what one process reports."""
    repo, _keys, _expected = history
    one = json.loads(run_cli("scan", "--history", "--format", "json", str(repo), cwd=tmp_path).stdout)
    two = json.loads(run_cli("scan", "--history", "--jobs", "2", "--format", "json", str(repo), cwd=tmp_path).stdout)
    assert one["findings"] == two["findings"]


def test_no_progress_bar_when_piped_and_one_on_a_terminal(history, tmp_path):
    """Piped, stderr has no progress bar; on a terminal (a real pty) a progress bar is drawn."""
    pexpect = pytest.importorskip("pexpect")
    repo, _keys, _expected = history
    piped = run_cli("scan", "--history", str(repo), cwd=tmp_path)
    assert "\r" not in piped.stderr and "blob/s" not in piped.stderr and "ipykeyguard: history" not in piped.stderr
    child = pexpect.spawn("ipykeyguard", ["scan", "--history", str(repo)], cwd=str(tmp_path), encoding="utf-8", timeout=120,
                          env={**os.environ, "COLUMNS": "120"})
    child.expect(pexpect.EOF)
    child.close()
    assert "ipykeyguard: history" in child.before
    assert child.exitstatus == 1


def test_history_findings_go_to_the_exposure_ledger(history, tmp_path):
    """Every key found in history is recorded in the ledger as 'found in history' with its commit, by fingerprint only."""
    repo, keys, expected = history
    ledger = tmp_path / "ledger.sqlite3"
    run_cli("scan", "--history", str(repo), cwd=tmp_path, ledger=ledger)
    listing = json.loads(run_cli("exposures", "--format", "json", cwd=tmp_path, ledger=ledger).stdout)
    by_fp = {k["fingerprint"]: k for k in listing["keys"]}
    assert set(by_fp) == {fingerprint(k) for k in keys.values()}
    code = by_fp[fingerprint(keys["code"])]
    assert code["status"] == "ROTATE"
    assert code["sightings"][0]["action"] == "found in history" and code["sightings"][0]["commit"] == expected["code"]
    raw = ledger.read_bytes() + (Path(f"{ledger}-wal").read_bytes() if Path(f"{ledger}-wal").exists() else b"")
    leaked = holds_plaintext(raw.decode("latin-1"), keys)
    assert not leaked


FILTER_REPO_CALLBACK = """
import subprocess
if b"\\0" not in blob.data[:8192]:
    done = subprocess.run(["ipykeyguard", "clean", "--stdin", "--store", "none", "--quiet"],
                          input=blob.data, capture_output=True)
    if done.returncode == 0:
        blob.data = done.stdout
"""


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("git-filter-repo") is None, reason="needs git-filter-repo (pip install git-filter-repo)")
def test_git_filter_repo_with_clean_stdin_rewrites_the_keys_out_of_history(tmp_path):
    """The documented rewrite (git filter-repo, `ipykeyguard clean --stdin` as the blob callback) leaves a history in which scan --history finds nothing."""
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    keys = FakeKeys(code=fakekeys.openai_project_key(), output=fakekeys.github_classic_token(), plain=fakekeys.npm_token())
    (repo / "nb.ipynb").write_text(notebook(f'client = OpenAI(api_key="{keys["code"]}")\n', f"token {keys['output']}\n"))
    (repo / "settings.py").write_text(f'NPM = "{keys["plain"]}"\n')
    (repo / "logo.bin").write_bytes(b"\x89PNG\r\n\x1a\n\0\0binary")
    commit(repo, "leaky")
    (repo / "nb.ipynb").write_text(notebook("client = OpenAI()\n"))
    (repo / "settings.py").write_text("import os\n")
    commit(repo, "removed, but history keeps them")
    before = run_cli("scan", "--history", str(repo), cwd=tmp_path)
    assert before.returncode == 1
    done = subprocess.run(["git", "filter-repo", "--force", "--quiet", "--blob-callback", FILTER_REPO_CALLBACK],
                          cwd=repo, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-500:]
    after = run_cli("scan", "--history", "--format", "json", str(repo), cwd=tmp_path)
    assert after.returncode == 0, [f["rule"] for f in json.loads(after.stdout)["findings"]]
    everything = subprocess.run(["git", "log", "--all", "-p", "--binary"], cwd=repo, capture_output=True, text=True).stdout
    leaked = holds_plaintext(everything, keys)
    assert not leaked
    assert (repo / "logo.bin").read_bytes() == b"\x89PNG\r\n\x1a\n\0\0binary", "binary blobs pass unchanged"
    rewritten = json.loads(git(repo, "show", "HEAD~1:nb.ipynb"))
    assert 'os.environ["OPENAI_API_KEY"]' in "".join(rewritten["cells"][1]["source"])


@pytest.mark.slow
def test_the_history_benchmark_runs_and_prints_no_key(tmp_path):
    """benchmarks/bench_history.py runs on a tiny history, finds every planted key and prints no key (no timing is asserted)."""
    script = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_history.py"
    done = subprocess.run(["python", str(script), "--commits", "120", "--notebooks", "8", "--keys", "4", "--keep", str(tmp_path)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-500:]
    assert done.stdout.startswith("repository: ") and "8 notebooks, 4 keys planted" in done.stdout.splitlines()[0]
    ours = [line for line in done.stdout.splitlines() if line.startswith("ipykeyguard --jobs")]
    assert len(ours) == 2 and all(" 4/4 " in line for line in ours)
    printed = done.stdout + done.stderr
    assert not any(prefix in printed for prefix in ("ghp_FAKE", "npm_FAKE", "sk-FAKE"))
