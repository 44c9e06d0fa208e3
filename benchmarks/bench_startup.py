"""One-notebook CLI run (what pre-commit runs), this engine beside the previous one, same run.

    python benchmarks/bench_startup.py                 # 15 alternating rounds, previous = 12db7b5
    python benchmarks/bench_startup.py --rounds 30 --notebook path/to.ipynb

By default two notebooks are timed: ``leaky.ipynb`` (12 findings: rule patterns compiled,
findings recorded in the exposure ledger) and ``leaky.cleaned.ipynb`` (nothing found: what a
pre-commit hook meets on almost every commit).

Each round runs ``python -m ipykeyguard scan --isolated NOTEBOOK`` once per engine, alternating
so that load on a shared machine hits both alike; the previous engine is the package at
``--previous`` extracted with ``git archive`` and put first on ``PYTHONPATH``. The compiled-rules
cache is warm (a first untimed run fills it), which is the state of every run after the first.
A cold run (empty cache: the compile) is timed once and printed separately. Prints the median
wall time per engine and the ratio; never asserts.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_adversarial import _extract  # noqa: E402 - one way to check out the previous engine

ROOT = Path(__file__).resolve().parent.parent


def _run(path: Path, notebook: Path, cache: Path) -> float:
    env = dict(os.environ, PYTHONPATH=str(path), IPYKEYGUARD_CACHE_DIR=str(cache))
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "ipykeyguard", "scan", "--isolated", str(notebook)],
                          env=env, capture_output=True, text=True, cwd=tempfile.gettempdir())
    elapsed = time.perf_counter() - t0
    if proc.returncode not in (0, 1):
        raise SystemExit(f"scan failed with engine {path}:\n{proc.stderr[-2000:]}")
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--previous", default="12db7b59c62198e2f7f7b8ed22e670087c7daa74")
    parser.add_argument("--notebook", type=Path, action="append",
                        help="a notebook to time (repeatable); default: leaky.ipynb and leaky.cleaned.ipynb")
    args = parser.parse_args(argv)
    notebooks = [p.resolve() for p in args.notebook] if args.notebook else [
        ROOT / "example_notebooks" / "leaky.ipynb", ROOT / "example_notebooks" / "leaky.cleaned.ipynb"]
    with tempfile.TemporaryDirectory(prefix="ikg-bench-start-") as tmp:
        tmp = Path(tmp)
        engines = {"current": ROOT, "previous": _extract(args.previous, tmp)}
        cold = _run(ROOT, notebooks[0], tmp / "cold-cache")
        for notebook in notebooks:
            for path in engines.values():
                _run(path, notebook, tmp / "cache")  # fill the cache (current) / warm the OS
            times: dict[str, list[float]] = {name: [] for name in engines}
            for _ in range(args.rounds):
                for name, path in engines.items():
                    times[name].append(_run(path, notebook, tmp / "cache"))
            print(f"# one-notebook CLI run: {notebook.name}, {args.rounds} alternating rounds, median wall time")
            for name, samples in times.items():
                print(f"{name:<10} {statistics.median(samples) * 1000:8.1f} ms   (min {min(samples) * 1000:.1f})")
            ratio = statistics.median(times["current"]) / statistics.median(times["previous"])
            print(f"current / previous: {ratio:.2f}")
            print()
    print(f"current, cold cache (compiles the rules once): {cold * 1000:.0f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
