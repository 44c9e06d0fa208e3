"""Rewriter cost: ``rewrite_source`` and ``ipykeyguard clean`` on one large cell with one key.

Cells of ordinary code (1k / 10k / 100k lines, and notebooks of 5 / 45 MB in one cell) hold one
fake key at 70% of their length. For each size it prints the time per line, the peak Python
memory per source byte (tracemalloc, for ``rewrite_source``) or the peak resident memory per
notebook byte (the ``clean`` process), and the growth factor of time against the previous
size divided by the growth of the input (1.0 = linear). It also times ``tokenize`` over the
same cell once, the reference for "costs about one tokenization". Last, a real kernel round
trip of a 100k-line cell guarded vs unguarded, printed as a ratio (the issue measured 31 s vs
17 s). Nothing here asserts a timing.

    python benchmarks/bench_rewrite.py [--quick] [--no-kernel] [--no-clean]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import tokenize
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import fakekeys  # noqa: E402
from ipykeyguard.engine.scan import scanner_for  # noqa: E402
from ipykeyguard.transforms.rewrite import rewrite_source  # noqa: E402

LINE = "x{i} = compute({i}, 'text {i}', [1, 2])  # note\n"


def cell_lines(n: int, key: str) -> list[str]:
    lines = [LINE.format(i=i) for i in range(n)]
    lines[int(n * 0.7)] = f"client = Client(api_key='{key}')\n"
    return lines


def measure_rewrite(n: int, key: str, scanner) -> dict:
    source = "".join(cell_lines(n, key))
    start = time.perf_counter()
    result = rewrite_source(source, scanner=scanner)
    seconds = time.perf_counter() - start
    assert key not in result.source, "the key is still in the rewritten cell"
    tracemalloc.start()
    rewrite_source(source, scanner=scanner)
    _current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    start = time.perf_counter()
    for _tok in tokenize.generate_tokens(io.StringIO(source).readline):
        pass
    tokenize_seconds = time.perf_counter() - start
    return {"lines": n, "bytes": len(source), "seconds": seconds, "peak": peak, "tokenize": tokenize_seconds}


def measure_clean(megabytes: float, key: str, workdir: Path) -> dict:
    n = int(megabytes * 1e6 / len(LINE.format(i=500_000)))
    nb = {
        "nbformat": 4, "nbformat_minor": 5, "metadata": {},
        "cells": [{"cell_type": "code", "id": "big", "metadata": {}, "execution_count": None,
                   "outputs": [], "source": cell_lines(n, key)}],
    }
    folder = workdir / f"clean-{megabytes:g}"
    folder.mkdir()
    path = folder / "big.ipynb"
    path.write_text(json.dumps(nb, indent=1))
    size = path.stat().st_size
    code = (
        "import resource, sys, time\n"
        "from ipykeyguard.cli.app import main\n"
        "t = time.perf_counter(); rc = main(['clean', sys.argv[1]])\n"
        "print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, rc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, cwd=folder, check=False)
    last = out.stdout.strip().splitlines()[-1].split()
    seconds, rss = float(last[0]), int(last[1])
    assert key not in path.read_text(), "the key is still in the cleaned notebook"
    return {"lines": n, "bytes": size, "seconds": seconds, "peak": rss}


def print_table(title: str, rows: list[dict], memory_label: str) -> None:
    print(f"\n{title}")
    print(f"{'lines':>9} {'MB':>7} {'ms/line':>9} {memory_label:>14} {'growth':>7} {'x tokenize':>11}")
    previous = None
    for row in rows:
        growth = ""
        if previous is not None:
            growth = f"{(row['seconds'] / previous['seconds']) / (row['lines'] / previous['lines']):.2f}"
        vs_tokenize = f"{row['seconds'] / row['tokenize']:.2f}" if "tokenize" in row else ""
        print(
            f"{row['lines']:>9} {row['bytes'] / 1e6:>7.1f} {row['seconds'] * 1000 / row['lines']:>9.4f} "
            f"{row['peak'] / row['bytes']:>14.1f} {growth:>7} {vs_tokenize:>11}"
        )
        previous = row


def kernel_ratio(n: int, key: str, runs: int) -> tuple[float, float]:
    from kernelharness import RealKernel

    cell = "".join(cell_lines(n, key))
    with tempfile.TemporaryDirectory() as tmp:
        plain_dir, guarded_dir = Path(tmp, "plain"), Path(tmp, "guarded")
        plain_dir.mkdir()
        guarded_dir.mkdir()
        with RealKernel(plain_dir) as plain, RealKernel(guarded_dir) as guarded:
            guarded.ok("%load_ext ipykeyguard")
            for k in (plain, guarded):
                k.ok("def compute(*a):\n    return a\nclass Client:\n    def __init__(self, api_key):\n        pass")
            times: dict[str, list[float]] = {"plain": [], "guarded": []}
            for _ in range(runs):  # interleaved, so machine noise hits both alike
                for name, k in (("plain", plain), ("guarded", guarded)):
                    start = time.perf_counter()
                    k.run(cell, timeout=900)
                    times[name].append(time.perf_counter() - start)
    return min(times["guarded"]) / min(times["plain"]), min(times["plain"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes (a smoke run)")
    parser.add_argument("--no-kernel", action="store_true", help="skip the kernel round trip")
    parser.add_argument("--no-clean", action="store_true", help="skip the ipykeyguard clean runs")
    parser.add_argument("--runs", type=int, default=2, help="kernel round trips per kernel")
    args = parser.parse_args(argv)
    key = fakekeys.openai_project_key(random.Random(13))
    scanner = scanner_for(None)
    rewrite_source("warm = 1\n", scanner=scanner)
    sizes = [1_000, 10_000] if args.quick else [1_000, 10_000, 100_000]
    rows = [measure_rewrite(n, key, scanner) for n in sizes]
    print_table("rewrite_source (one key at 70%)", rows, "peak B/byte")
    if not args.no_clean:
        with tempfile.TemporaryDirectory() as tmp:
            megabytes = [0.5, 1] if args.quick else [5, 45]
            rows = [measure_clean(mb, key, Path(tmp)) for mb in megabytes]
            print_table("ipykeyguard clean, one-cell notebook (process, with start-up)", rows, "maxrss B/byte")
    if not args.no_kernel:
        n = 10_000 if args.quick else 100_000
        ratio, plain = kernel_ratio(n, key, args.runs)
        print(f"\nkernel round trip, {n}-line cell with a key: guarded / unguarded = {ratio:.2f} (unguarded {plain:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
