"""Cleaner benchmark: ``ipykeyguard clean`` against nbstripout and nb-clean on identical copies.

    python benchmarks/bench_clean.py            # corpus cached in benchmarks/_corpus/
    python benchmarks/bench_clean.py --reps 5   # more rounds on a noisy machine

Each round gives every tool its own fresh copy of the same corpus (hundreds of notebooks), which
it cleans in place in one process: ``ipykeyguard clean --store none`` (``--jobs 1``, the default,
and ``--jobs 0``, one worker per CPU) finds and removes keys; nbstripout and ``nb-clean clean``
strip outputs and metadata (a different job, but the speed users expect from a notebook cleaner).
A third run of ours uses the default ``--store dotenv`` (what the pre-commit hook runs): the
keys go to a ``.env`` in the copy, deleted as soon as the run is timed. Printed per tool: the
median wall time over the rounds, the median CPU time (user + sys of the
process and its children: steadier than wall time on a shared machine, and the honest figure for
a multi-process run), and the ratio peer wall time / our wall time (``--jobs 1``). Never asserted.

Every tool's work is checked, so that a tool that fails fast cannot look fast: its exit status,
how many notebooks it changed, and for the peers how many outputs they left (they strip them
all). A peer that changed nothing or left outputs is reported as "did not do its job" and gets
no ratio.

For our clean it also prints what the clean left behind: planted keys still reported by
``ipykeyguard scan`` at ``>= likely`` on the cleaned copy (should be none), hard-negative
notebooks changed (should be none: a notebook with no key stays byte-for-byte the same), and
whether a second clean changes anything (it should not).

Executables are taken from this interpreter's ``bin`` directory when they are there (what a
virtualenv user runs), else from ``PATH``: a version manager's shim (pyenv) adds its own
start-up to every tool alike.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_scan  # noqa: E402
import corpus as corpus_mod  # noqa: E402


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass
class Run:
    """One timed command."""

    wall: float
    cpu: float
    code: int
    stderr: str


def _timed(argv: list[str]) -> Run:
    """Run ``argv``; wall time and the CPU time (user + sys) of it and its descendants."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Run(wall, cpu, proc.returncode, proc.stderr.strip()[-400:])


def our_clean_argv(target: Path, jobs: int | None = None, store: str = "none") -> tuple[list[str], str]:
    """``ipykeyguard clean --store none`` when the CLI has it, else the Python API in a subprocess."""
    exe = bench_scan.tool_path("ipykeyguard")
    if exe:
        proc = subprocess.run([exe, "clean", "--help"], capture_output=True, text=True)
        if proc.returncode == 0 and "--store" in proc.stdout:
            argv = [exe, "clean", "--store", store, "--quiet"]
            if "--isolated" in proc.stdout:
                argv.append("--isolated")
            if jobs is not None:
                if "--jobs" not in proc.stdout:
                    return [], "no --jobs"
                argv += ["--jobs", str(jobs)]
            return argv + [str(target)], "ipykeyguard clean (CLI)"
    if jobs is not None:
        return [], "no --jobs"
    return [sys.executable, str(Path(__file__).resolve()), "--api-clean", str(target)], "ipykeyguard.clean_notebook (API; clean CLI not available)"


def api_clean(target: Path) -> int:
    """Stand-in for ``ipykeyguard clean --store none DIR`` built on the Python API."""
    import ipykeyguard
    from ipykeyguard.transforms.notebook import detect_indent, dump_notebook, read_notebook

    changed = 0
    for path in sorted(target.rglob("*.ipynb")):
        nb, raw = read_notebook(path)
        cleaned, report = ipykeyguard.clean_notebook(nb)
        text = dump_notebook(cleaned, detect_indent(raw))
        if text.encode("utf-8") != raw:
            path.write_text(text, encoding="utf-8")
            changed += 1
    return 1 if changed else 0


def _outputs_left(folder: Path, files: list[str]) -> int:
    """Outputs still in the notebooks of ``folder`` (a notebook that no longer parses counts 1)."""
    left = 0
    for name in files:
        try:
            nb = json.loads((folder / name).read_text(encoding="utf-8"))
            left += sum(len(cell.get("outputs") or ()) for cell in nb.get("cells", []))
        except (OSError, ValueError):
            left += 1
    return left


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Cleaner benchmark: ipykeyguard clean vs nbstripout and nb-clean.")
    parser.add_argument("--api-clean", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--corpus", type=Path, default=bench_scan.DEFAULT_CORPUS)
    parser.add_argument("-n", "--notebooks", type=int, default=300)
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--regenerate", action="store_true")
    parser.add_argument("--reps", type=int, default=3, help="rounds, each on fresh copies (medians are printed)")
    parser.add_argument("--no-peers", action="store_true", help="skip nbstripout and nb-clean")
    parser.add_argument("--json-out", type=Path, default=bench_scan.DEFAULT_OUT / "bench_clean.json")
    args = parser.parse_args(argv)
    if args.api_clean:
        return api_clean(args.api_clean)

    t0 = time.perf_counter()
    manifest = bench_scan.ensure_corpus(args.corpus, args.notebooks, args.seed, args.regenerate)
    source = args.corpus / corpus_mod.NOTEBOOK_DIR
    files = sorted(p.name for p in source.glob("nb_*.ipynb"))
    size_mb = sum((source / f).stat().st_size for f in files) / 1e6
    source_digests = {f: _digest(source / f) for f in files}
    print(f"corpus: {len(files)} notebooks, {size_mb:.1f} MB ({args.corpus})")

    _argv, label = our_clean_argv(source)
    print(f"measuring: {label}; {args.reps} round(s) on fresh copies; os.cpu_count() = {os.cpu_count()}")
    peers = {}
    if not args.no_peers:
        for name, exe in (("nbstripout", bench_scan.tool_path("nbstripout")), ("nb-clean clean", bench_scan.tool_path("nb-clean"))):
            if exe:
                peers[name] = exe
            else:
                print(f"{name}: not installed (pip install -r benchmarks/requirements.txt)")

    runs: dict[str, list[Run]] = {}
    checks: dict[str, dict] = {}
    second_changed = False
    left = touched = negatives = None
    with tempfile.TemporaryDirectory(prefix="bench-clean-") as tmp:
        for round_no in range(args.reps):
            commands: dict[str, tuple[list[str], Path]] = {}

            def fresh(tool: str) -> Path:
                folder = Path(tmp) / f"r{round_no}" / tool.replace(" ", "_") / "notebooks"
                shutil.copytree(source, folder)
                return folder

            ours_dir = fresh("ours")
            commands["ours: clean --store none"] = (our_clean_argv(ours_dir)[0], ours_dir)
            jobs_dir = fresh("ours_jobs0")
            jobs_argv = our_clean_argv(jobs_dir, jobs=0)[0]
            if jobs_argv:
                commands["ours: same, --jobs 0"] = (jobs_argv, jobs_dir)
            # What a user (and the pre-commit hook) runs: keys kept in the .env beside the notebooks.
            dotenv_dir = fresh("ours_dotenv")
            dotenv_argv = our_clean_argv(dotenv_dir, store="dotenv")[0]
            if "--store" in dotenv_argv:
                commands["ours: clean (--store dotenv)"] = (dotenv_argv, dotenv_dir)
            for name, exe in peers.items():
                folder = fresh(name)
                if name == "nbstripout":
                    commands[name] = ([exe, *[str(folder / f) for f in files]], folder)
                else:
                    commands[name] = ([exe, "clean", str(folder)], folder)

            for name, (command, folder) in commands.items():
                run = _timed(command)
                runs.setdefault(name, []).append(run)
                changed = sum(_digest(folder / f) != source_digests[f] for f in files)
                (folder / ".env").unlink(missing_ok=True)  # holds the keys: not kept a moment longer
                check = {"exit": run.code, "changed": changed, "stderr": run.stderr}
                if name in peers:
                    check["outputs_left"] = _outputs_left(folder, files)
                    check["did_its_job"] = run.code == 0 and changed > 0 and check["outputs_left"] == 0
                else:
                    check["did_its_job"] = run.code in (0, 1) and changed > 0
                if name in checks:  # a tool must do its job in every round
                    check["did_its_job"] = check["did_its_job"] and checks[name]["did_its_job"]
                checks[name] = check
            second = _timed(our_clean_argv(ours_dir)[0])
            runs.setdefault("ours: same, second run", []).append(second)
            second_changed |= second.code != 0
            if jobs_argv:
                same = all(_digest(ours_dir / f) == _digest(jobs_dir / f) for f in files)
                checks["ours: same, --jobs 0"]["same_bytes_as_jobs_1"] = same

            if round_no == args.reps - 1:
                # What our clean left behind, at the threshold clean acts on (likely): 'possible'
                # findings are warnings, not moved.
                scanner = bench_scan.OurScanner()
                _t, found_after, _errors = scanner.run([str(ours_dir)], Path(tmp), min_confidence="likely")
                left = bench_scan.score(manifest, found_after)
                negatives = [nb["file"] for nb in manifest["notebooks"] if nb["kind"] == "negative"]
                touched = [f for f in negatives if _digest(ours_dir / f) != source_digests[f]]
            shutil.rmtree(Path(tmp) / f"r{round_no}")

    ours_wall = statistics.median(r.wall for r in runs["ours: clean --store none"])
    print()
    print(f"{'tool':<32} {'wall s':>7} {'cpu s':>7} {'wall / ours':>11}  {'exit':>4} {'changed':>8}  check")
    table = {}
    for name, rs in runs.items():
        wall = statistics.median(r.wall for r in rs)
        cpu = statistics.median(r.cpu for r in rs)
        check = checks.get(name, {})
        ratio = "" if name == "ours: clean --store none" else f"{wall / ours_wall:.2f}x"
        if name == "ours: same, second run":
            note = "changed nothing (exit 0)" if not second_changed else "CHANGED FILES (want: nothing)"
            exit_code, changed = rs[-1].code, "-"
        else:
            exit_code, changed = check["exit"], f"{check['changed']}/{len(files)}"
            if not check["did_its_job"]:
                note, ratio = f"DID NOT DO ITS JOB: not comparable ({check['stderr'][-120:]})", "n/a"
            elif name in peers:
                note = f"{check['outputs_left']} outputs left"
            elif "same_bytes_as_jobs_1" in check:
                note = "same bytes as --jobs 1" if check["same_bytes_as_jobs_1"] else "DIFFERENT BYTES from --jobs 1"
            else:
                note = "keys moved/masked"
        print(f"{name:<32} {wall:>7.2f} {cpu:>7.2f} {ratio:>11}  {exit_code:>4} {changed:>8}  {note}")
        table[name] = {"wall_s": wall, "cpu_s": cpu, "walls_s": [r.wall for r in rs], "cpus_s": [r.cpu for r in rs], **check}
    print()
    print(f"planted keys still reported (>= likely) after clean: {left['found']}/{left['planted']}   (want 0)")
    print(f"hard-negative notebooks changed by clean: {len(touched)}/{len(negatives)}   (want 0)")
    print(f"second clean changed something: {'yes' if second_changed else 'no'}   (want no)")
    if left["found"]:
        still = [k for k, (ok, _n) in left["by_family"].items() if ok]
        print("families with keys left: " + ", ".join(still[:30]))
    try:
        load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        load = "n/a"
    print(f"load average at the end: {load} (a shared machine makes wall times noisy)")
    out = args.json_out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"cleaner": label, "reps": args.reps, "tools": table, "keys_left": left["found"],
                               "negatives_changed": touched, "second_run_changed": second_changed,
                               "load_average": load}, indent=1) + "\n")
    print(f"\nfull results: {out}  (total {time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
