"""Cleaner benchmark: ``ipykeyguard clean`` against nbstripout and nb-clean on identical copies.

    python benchmarks/bench_clean.py            # corpus cached in benchmarks/_corpus/

Each tool gets its own fresh copy of the same corpus (hundreds of notebooks) and cleans it in
place, in one process per tool: ``ipykeyguard clean --store none`` finds and removes keys,
nbstripout and ``nb-clean clean`` strip outputs and metadata (a different job, but the speed users
expect from a notebook cleaner). Printed as ratios peer time / our time; never asserted.

It also prints what the clean left behind: planted keys still reported by ``ipykeyguard scan``
on the cleaned copy (should be none), hard-negative notebooks changed by the clean (should be
none: a notebook with no key stays byte-for-byte the same), and whether a second clean changes
anything (it should not).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_scan  # noqa: E402
import corpus as corpus_mod  # noqa: E402


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _timed(argv: list[str], ok_codes: tuple[int, ...]) -> tuple[float, int]:
    start = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode not in ok_codes:
        raise RuntimeError(f"{Path(argv[0]).name} exited {proc.returncode}: {proc.stderr.strip()[-400:]}")
    return seconds, proc.returncode


def our_clean_argv(target: Path) -> tuple[list[str], str]:
    """``ipykeyguard clean --store none`` when the CLI has it, else the Python API in a subprocess."""
    exe = shutil.which("ipykeyguard")
    if exe:
        proc = subprocess.run([exe, "clean", "--help"], capture_output=True, text=True)
        if proc.returncode == 0 and "--store" in proc.stdout:
            argv = [exe, "clean", "--store", "none", "--quiet"]
            if "--isolated" in proc.stdout:
                argv.append("--isolated")
            return argv + [str(target)], "ipykeyguard clean (CLI)"
    return [sys.executable, str(Path(__file__).resolve()), "--api-clean", str(target)], "ipykeyguard.clean_notebook (API; clean CLI not available)"


def api_clean(target: Path) -> int:
    """Stand-in for ``ipykeyguard clean --store none DIR`` built on the Python API."""
    import ipykeyguard
    from ipykeyguard.notebook import detect_indent, dump_notebook, read_notebook

    changed = 0
    for path in sorted(target.rglob("*.ipynb")):
        nb, raw = read_notebook(path)
        cleaned, report = ipykeyguard.clean_notebook(nb)
        text = dump_notebook(cleaned, detect_indent(raw))
        if text.encode("utf-8") != raw:
            path.write_text(text, encoding="utf-8")
            changed += 1
    return 1 if changed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Cleaner benchmark: ipykeyguard clean vs nbstripout and nb-clean.")
    parser.add_argument("--api-clean", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--corpus", type=Path, default=bench_scan.DEFAULT_CORPUS)
    parser.add_argument("-n", "--notebooks", type=int, default=300)
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--regenerate", action="store_true")
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
    print(f"corpus: {len(files)} notebooks, {size_mb:.1f} MB ({args.corpus})")

    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="bench-clean-") as tmp:
        copies = {}
        for tool in ("ours", "nbstripout", "nb-clean"):
            copies[tool] = Path(tmp) / tool / "notebooks"
            shutil.copytree(source, copies[tool])

        argv_ours, label = our_clean_argv(copies["ours"])
        print(f"measuring: {label}")
        results["ours"], _ = _timed(argv_ours, (0, 1))
        results["ours, second run"], second_code = _timed(our_clean_argv(copies["ours"])[0], (0, 1))
        if not args.no_peers:
            nbstripout = shutil.which("nbstripout")
            nb_clean = shutil.which("nb-clean")
            if nbstripout:
                results["nbstripout"], _ = _timed([nbstripout, *[str(copies["nbstripout"] / f) for f in files]], (0,))
            if nb_clean:
                results["nb-clean clean"], _ = _timed([nb_clean, "clean", str(copies["nb-clean"])], (0,))

        # What our clean left behind.
        scanner = bench_scan.OurScanner()
        # At the threshold clean acts on (likely): 'possible' findings are warnings, not moved.
        _t, found_after, _errors = scanner.run([str(copies["ours"])], Path(tmp), min_confidence="likely")
        left = bench_scan.score(manifest, found_after)
        negatives = [nb["file"] for nb in manifest["notebooks"] if nb["kind"] == "negative"]
        touched = [f for f in negatives if _digest(copies["ours"] / f) != _digest(source / f)]

    print()
    print(f"{'tool':<26} {'seconds':>8} {'tool/ours':>10}")
    for name, seconds in results.items():
        ratio = f"{seconds / results['ours']:.2f}x" if name not in ("ours",) else ""
        print(f"{name:<26} {seconds:>8.2f} {ratio:>10}")
    print()
    print(f"planted keys still reported (>= likely) after clean: {left['found']}/{left['planted']}   (want 0)")
    print(f"hard-negative notebooks changed by clean: {len(touched)}/{len(negatives)}   (want 0)")
    print(f"second clean changed something: {'yes' if second_code == 1 else 'no'}   (want no)")
    if left["missed"] != {} and left["found"]:
        still = [k for k, (ok, _n) in left["by_family"].items() if ok]
        print("families with keys left: " + ", ".join(still[:30]))
    out = args.json_out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"cleaner": label, "seconds": results, "keys_left": left["found"],
                               "negatives_changed": touched, "second_run_changed": second_code == 1}, indent=1) + "\n")
    print(f"\nfull results: {out}  (total {time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
