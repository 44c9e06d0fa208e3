"""Kernel output guard overhead: big outputs with and without the guard, in one run, as ratios.

Three real kernels run the same cells, interleaved round by round so that machine noise hits all
of them alike: one without the guard, one with the guard and 1 known value, one with the guard
and 200 known values. Each cell's time is the client's round trip (execute_request to idle plus
the reply), the median over the rounds is reported, and the ratio against the unguarded kernel
is printed. Target: under 1.15, and no growth from 1 to 200 known values.

Usage::

    python benchmarks/bench_kernel_output.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

import fakekeys  # noqa: E402
from kernelharness import RealKernel  # noqa: E402

INSTALL = """\
import json
from ipykeyguard._output_guard import install_output_guard
from ipykeyguard.redact import Redactor
_kg_redactor = Redactor()
for _i, _v in enumerate(json.load(open({path!r}))):
    _kg_redactor.add_known(f"BENCH_{{_i}}_TOKEN", _v)
_kg_uninstall = install_output_guard(get_ipython(), _kg_redactor)
"""

CELLS = {
    # ~5 MB in 80,000 lines of ordinary log-like output.
    "print 5 MB": (
        "import random\n_rng = random.Random(1)\n"
        "for _i in range(80000):\n"
        "    print(f'row {_i}: value={_rng.random():.6f} label=item_{_i} status=ok col={_i % 7}')"
    ),
    # A pandas DataFrame rendered as an HTML table (text/html + text/plain).
    "HTML table": (
        "import pandas as pd, numpy as np\n"
        "pd.set_option('display.max_rows', 30000)\n"
        "_df = pd.DataFrame(np.random.default_rng(1).random((20000, 6)), columns=list('abcdef'))\n"
        "_df['name'] = [f'item_{i}' for i in range(20000)]\n"
        "display(_df)"
    ),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="kg-bench-"))
    values = [fakekeys.generic_secret(n=40) if i % 2 else fakekeys.openai_project_key() for i in range(200)]
    kernels: dict[str, RealKernel] = {}
    try:
        for label, count in (("no guard", None), ("guard, 1 known", 1), ("guard, 200 known", 200)):
            work = tmp / label.replace(" ", "_").replace(",", "")
            work.mkdir()
            k = RealKernel(work).start()
            k.ok("import os, sys\nfrom IPython.display import display")
            if count is not None:
                path = work / "values.json"
                path.write_text(json.dumps(values[:count]))
                k.ok(INSTALL.format(path=str(path)))
            kernels[label] = k
        times: dict[tuple[str, str], list[float]] = {}
        sizes: dict[str, int] = {}
        for cell_name, code in CELLS.items():  # one warm-up run each (imports, pandas)
            for k in kernels.values():
                k.ok(code)
        for _ in range(args.rounds):
            for cell_name, code in CELLS.items():
                for label, k in kernels.items():
                    start = time.perf_counter()
                    ex = k.ok(code)
                    times.setdefault((cell_name, label), []).append(time.perf_counter() - start)
                    if label == "no guard":
                        sizes[cell_name] = len(ex.wire_text())
    finally:
        for k in kernels.values():
            k.stop()

    print(f"kernel output guard, {args.rounds} rounds, median round trip (ratio to no guard)")
    for cell_name in CELLS:
        base = statistics.median(times[(cell_name, "no guard")])
        parts = []
        for label in kernels:
            med = statistics.median(times[(cell_name, label)])
            parts.append(f"{label}: {med:.3f}s ({med / base:.2f}x)")
        print(f"  {cell_name} ({sizes[cell_name] / 1e6:.1f} MB on the wire): " + "; ".join(parts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
