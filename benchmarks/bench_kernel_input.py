"""Kernel round trip with and without ipykeyguard loaded, measured in the same run.

Two real kernels (tests/kernelharness.py) run the same cells, interleaved so that machine noise
hits both alike: a trivial cell (``x = 1``) and a 200-line cell of ordinary code without keys.
The figures are ratios of round trips (execute_request to idle + reply), guarded over plain,
of the medians and of the fastest runs (the minimum is the steadier figure on a shared, loaded
machine); the target is under 1.05.

    python benchmarks/bench_kernel_input.py [--runs 40]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from kernelharness import RealKernel  # noqa: E402

TRIVIAL = "x = 1"
LONG = "\n".join(
    f"value_{i} = {{'name': 'item-{i}', 'size': {i} * 3, 'tags': ['a', 'b']}}  # row {i}"
    for i in range(200)
)


def round_trip(k: RealKernel, code: str) -> float:
    start = time.perf_counter()
    k.ok(code)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=40, help="round trips per cell and kernel")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        plain_dir, guarded_dir = Path(tmp, "plain"), Path(tmp, "guarded")
        plain_dir.mkdir()
        guarded_dir.mkdir()
        with RealKernel(plain_dir) as plain, RealKernel(guarded_dir) as guarded:
            guarded.ok("%load_ext ipykeyguard")
            print(f"{'cell':<11}{'plain ms':>10}{'guarded ms':>12}{'ratio':>7}"
                  f"{'plain min':>11}{'guarded min':>13}{'ratio':>7}")
            for label, code in (("trivial", TRIVIAL), ("200 lines", LONG)):
                for k in (plain, guarded):  # warm up: imports, caches, first compile
                    for _ in range(3):
                        round_trip(k, code)
                times: dict[str, list[float]] = {"plain": [], "guarded": []}
                for i in range(args.runs):
                    order = (("plain", plain), ("guarded", guarded))
                    for name, k in order if i % 2 == 0 else reversed(order):
                        times[name].append(round_trip(k, code))
                p, g = statistics.median(times["plain"]), statistics.median(times["guarded"])
                pm, gm = min(times["plain"]), min(times["guarded"])
                print(f"{label:<11}{p * 1000:>10.2f}{g * 1000:>12.2f}{g / p:>7.3f}"
                      f"{pm * 1000:>11.2f}{gm * 1000:>13.2f}{gm / pm:>7.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
