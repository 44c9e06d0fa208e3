"""Kernel round trip with and without ipykeyguard loaded, measured in the same run.

Two real kernels (tests/kernelharness.py) run the same cells, interleaved so that machine noise
hits both alike: a trivial cell (``x = 1``) and a 200-line cell of ordinary code without keys.
The figures are ratios of round trips (execute_request to idle + reply), guarded over plain,
of the medians and of the fastest runs (the minimum is the steadier figure on a shared, loaded
machine); the target is under 1.05. A third kernel has the guard loaded with its output guard
(the Session.send wrapper of ``ipykeyguard.kernel.output_guard``) undone, so the input guard's own share
of the overhead shows separately (``input`` columns).

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
        dirs = {name: Path(tmp, name) for name in ("plain", "guarded", "input")}
        for directory in dirs.values():
            directory.mkdir()
        with RealKernel(dirs["plain"]) as plain, RealKernel(dirs["guarded"]) as guarded, \
                RealKernel(dirs["input"]) as input_only:
            guarded.ok("%load_ext ipykeyguard")
            input_only.ok("%load_ext ipykeyguard")
            input_only.ok("_kg = get_ipython()._ipykeyguard_state\n"
                          "[undo() for what, undo in _kg._undo if what == 'output guard']")
            kernels = {"plain": plain, "guarded": guarded, "input": input_only}
            print(f"{'cell':<11}{'plain ms':>10}{'guarded ms':>12}{'ratio':>7}{'input ratio':>13}"
                  f"{'plain min':>11}{'guarded min':>13}{'ratio':>7}{'input ratio':>13}")
            for label, code in (("trivial", TRIVIAL), ("200 lines", LONG)):
                for k in kernels.values():  # warm up: imports, caches, first compile
                    for _ in range(3):
                        round_trip(k, code)
                times: dict[str, list[float]] = {name: [] for name in kernels}
                for i in range(args.runs):
                    order = list(kernels.items())
                    for name, k in order if i % 2 == 0 else reversed(order):
                        times[name].append(round_trip(k, code))
                med = {name: statistics.median(t) for name, t in times.items()}
                low = {name: min(t) for name, t in times.items()}
                print(f"{label:<11}{med['plain'] * 1000:>10.2f}{med['guarded'] * 1000:>12.2f}"
                      f"{med['guarded'] / med['plain']:>7.3f}{med['input'] / med['plain']:>13.3f}"
                      f"{low['plain'] * 1000:>11.2f}{low['guarded'] * 1000:>13.2f}"
                      f"{low['guarded'] / low['plain']:>7.3f}{low['input'] / low['plain']:>13.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
