"""Kernel output guard overhead: big outputs with and without the guard, in one run, as ratios.

Three real kernels run the same cells, interleaved round by round so that machine noise hits all
of them alike: one without the guard, one with the guard and 1 known value, one with the guard
and 200 known values. Each cell's time is the client's round trip (execute_request to idle plus
the reply); the median over the rounds, its ratio against the unguarded kernel, and the ratio of
the fastest rounds are printed. Target: under 1.15, and no growth from 1 to 200 known values.

The round trip includes the client decoding every message and whatever else runs on the
machine, so the kernel's own CPU time per cell (``time.process_time()`` in the kernel, all its
threads: the shell thread printing and the IOPub thread where the guard redacts) is reported too.
Two kernel processes can differ by ~10% on the same cell, so each guarded kernel also runs the
cell with its guard uninstalled every round: the "same kernel" ratios compare one process with
itself. On a machine shared with other work even those swing by 20%, so the guard's own CPU
(thread time inside the redactor, summed over the threads that call it) is reported last, as
a share of the same kernel's CPU for the cell without the guard: 1 + that share is the ratio
the guard's work alone accounts for.

``--pieces`` instead times the guard's parts in this process over the 5 MB print's text cut into
~450 kB stream chunks (what the kernel's IOPub thread sends every 0.2 s while that cell runs).

Usage::

    python benchmarks/bench_kernel_output.py [--rounds 5]
    python benchmarks/bench_kernel_output.py --pieces
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
from kernelharness import Execution, RealKernel  # noqa: E402

INSTALL = """\
import json
from ipykeyguard.kernel.output_guard import install_output_guard
from ipykeyguard.transforms.redact import Redactor
_kg_redactor = Redactor()
for _i, _v in enumerate(json.load(open({path!r}))):
    _kg_redactor.add_known(f"BENCH_{{_i}}_TOKEN", _v)
_kg_uninstall = install_output_guard(get_ipython(), _kg_redactor)
# The CPU the redactor spends, on whichever thread (mostly IOPub): the guard's own cost.
import time as _kg_time
_kg_cost = [0.0]
def _kg_timed(method):
    def timed(*args, **kwargs):
        start = _kg_time.thread_time()
        try:
            return method(*args, **kwargs)
        finally:
            _kg_cost[0] += _kg_time.thread_time() - start
    return timed
_kg_redactor.redact = _kg_timed(_kg_redactor.redact)
_kg_redactor.holdback_length = _kg_timed(_kg_redactor.holdback_length)
def _kg_guard(on):
    global _kg_uninstall
    if _kg_uninstall is not None:
        _kg_uninstall()
        _kg_uninstall = None
    if on:
        _kg_uninstall = install_output_guard(get_ipython(), _kg_redactor)
"""

# A training log as transformers/wandb print it: its words hit the rules' keywords (``task``,
# ``mask`` and ``disk`` hold "sk", ``tokenizer`` "token", ``session``, ``wandb``, ``://``,
# ``secret_``), so rules run near every hit instead of being skipped by the prefilter.
TRAINING_LOG_LINE = """\
def _kg_log_line(i, rng):
    k = i % 10
    if k == 0: return f"{{'loss': {rng.random():.4f}, 'grad_norm': {rng.random() * 3:.3f}, 'learning_rate': {rng.random() / 1e4:.2e}, 'epoch': {i / 1000:.2f}}}"
    if k == 1: return f"Saving model checkpoint to /home/user/runs/task-{i}/checkpoint-{i * 50}"
    if k == 2: return f"tokenizer config file saved in /home/user/runs/task-{i}/checkpoint-{i * 50}/tokenizer_config.json"
    if k == 3: return f"Special tokens file saved in /home/user/runs/task-{i}/special_tokens_map.json"
    if k == 4: return f"Map: {rng.randrange(100)}%|#####     | {i}/60000 [00:04<00:10, 1234.5 examples/s] masking 15% of tokens"
    if k == 5: return f"WARNING: missing keys in state_dict: ['lm_head.weight'] (task {i}, disk usage {rng.random() * 90:.1f}%)"
    if k == 6: return f"  batch {i}: input_ids shape (32, 512), attention_mask shape (32, 512), patience {k}/10"
    if k == 7: return f"wandb: Syncing run session-{i}; logging to https://wandb.ai/user/project/runs/{rng.getrandbits(32):08x}"
    if k == 8: return f"eval step {i}: f1={rng.random():.4f} exact={rng.random():.4f} secret_sauce=off"
    return f"row {i}: value={rng.random():.6f} label=item_{i} status=ok"
"""

CELLS = {
    # ~5 MB in 80,000 lines of ordinary log-like output (no rule keyword in it).
    "print 5 MB": (
        "import random\n_rng = random.Random(1)\n"
        "for _i in range(80000):\n"
        "    print(f'row {_i}: value={_rng.random():.6f} label=item_{_i} status=ok col={_i % 7}')"
    ),
    # ~5 MB in 60,000 lines of a training log (rule keywords on most lines).
    "print 5 MB training log": (
        "import random\n" + TRAINING_LOG_LINE + "_rng = random.Random(1)\n"
        "for _i in range(60000):\n"
        "    print(_kg_log_line(_i, _rng))"
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


def bench_values() -> list[str]:
    """200 fake keys, half OpenAI project keys (shared ``sk-proj-`` start), half random."""
    return [fakekeys.generic_secret(n=40) if i % 2 else fakekeys.openai_project_key() for i in range(200)]


def pieces(chunk_count: int = 10) -> None:
    """Print where the guard's time goes on the 5 MB print's stream chunks, in this process."""
    import random

    rng = random.Random(1)  # the same lines the "print 5 MB" cells print
    plain = [f"row {i}: value={rng.random():.6f} label=item_{i} status=ok col={i % 7}\n" for i in range(80000)]
    namespace: dict = {}
    exec(TRAINING_LOG_LINE, namespace)
    rng = random.Random(1)
    training = [namespace["_kg_log_line"](i, rng) + "\n" for i in range(60000)]
    for label, lines in (("print 5 MB", plain), ("print 5 MB training log", training)):
        step = len(lines) // chunk_count
        chunks = ["".join(lines[i : i + step]) for i in range(0, len(lines), step)]
        print(f"{label}:")
        _time_pieces(chunks)
    _time_html_table()
    _time_small_messages()


def _time_small_messages() -> None:
    """Per-message cost on small messages (most messages are small): a display bundle, one
    stream line, and a widget comm_msg state (dict keys are redacted too)."""
    import timeit

    from ipykeyguard.transforms.redact import Redactor

    bundle = {"text/plain": "<Figure size 640x480 with 1 Axes>",
              "text/html": "<div><b>epoch 3</b>: loss 0.1234, accuracy 0.9876 on 10000 samples</div>"}
    line = "Epoch 3/10 - loss: 0.1234 - accuracy: 0.9876 - val_loss: 0.2345\n"
    state = {"method": "update", "state": {"value": 0.42, "description": "progress", "bar_style": "",
                                           "_view_count": None, "layout": "IPY_MODEL_0123456789abcdef"},
             "buffer_paths": []}
    values = bench_values()
    print("small messages (best of 5, microseconds per message):")
    for count in (1, 200):
        redactor = Redactor()
        for i, value in enumerate(values[:count]):
            redactor.add_known(f"BENCH_{i}_TOKEN", value)
        redactor.redact_tree(bundle), redactor.redact_tree(state), redactor.redact(line)  # warm-up
        n = 5000

        def per_call(work) -> float:
            return min(timeit.repeat(work, number=n, repeat=5)) / n * 1e6

        print(f"    {count:3d} known: display bundle {per_call(lambda: redactor.redact_tree(bundle)):5.1f}"
              f"  stream line {per_call(lambda: redactor.redact(line)):5.1f}"
              f"  widget comm_msg data {per_call(lambda: redactor.redact_tree(state)):5.1f}")


def _time_html_table() -> None:
    """Time the redaction of the HTML table cell's display_data bundle, beside pandas building it."""
    import numpy as np
    import pandas as pd

    from ipykeyguard.transforms.redact import Redactor

    pd.set_option("display.max_rows", 30000)
    df = pd.DataFrame(np.random.default_rng(1).random((20000, 6)), columns=list("abcdef"))
    df["name"] = [f"item_{i}" for i in range(20000)]
    start = time.perf_counter()
    bundle = {"text/html": df._repr_html_(), "text/plain": repr(df)}
    build_ms = (time.perf_counter() - start) * 1e3
    print(f"HTML table ({sum(map(len, bundle.values())) / 1e6:.1f} MB bundle; pandas builds it in {build_ms:.0f} ms):")
    values = bench_values()
    for count in (1, 200):
        redactor = Redactor()
        for i, value in enumerate(values[:count]):
            redactor.add_known(f"BENCH_{i}_TOKEN", value)
        redactor.redact("warm-up")
        times = []
        for _ in range(5):
            start = time.perf_counter()
            redactor.redact_tree(bundle)
            times.append(time.perf_counter() - start)
        print(f"    {count:3d} known: redact_tree of the bundle {min(times) * 1e3:.1f} ms")


def _time_pieces(chunks: list[str]) -> None:
    """Time each part of the guard over ``chunks``, with 1 and with 200 known values."""
    from ipykeyguard.kernel.output_guard import _SessionSendGuard
    from ipykeyguard.transforms.redact import Redactor

    values = bench_values()

    def best_ms(work, repeat: int = 5) -> float:
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            work()
            times.append(time.perf_counter() - start)
        return min(times) * 1e3

    class _NullSession:  # the guard's downstream: costs nothing, so only the guard is timed
        def send(self, *args, **kwargs):
            return None

    parent = {"msg_id": "bench", "msg_type": "execute_request"}
    print(f"  guard pieces over {sum(map(len, chunks)) / 1e6:.1f} MB in {len(chunks)} stream chunks (best of 5, ms)")
    print(f"    json.dumps of the chunks (Session's own work, for scale): "
          f"{best_ms(lambda: [json.dumps({'text': c}) for c in chunks]):.1f}")
    for count in (1, 200):
        redactor = Redactor()
        for i, value in enumerate(values[:count]):
            redactor.add_known(f"BENCH_{i}_TOKEN", value)
        index = redactor._known()
        scanner = redactor._scanner
        guard = _SessionSendGuard(_NullSession(), redactor)

        def through_guard():
            for chunk in chunks:
                msg = {"header": {"msg_type": "stream"}, "parent_header": parent,
                       "content": {"name": "stdout", "text": chunk}}
                guard.send(None, msg, None, None, b"stream.stdout", None, False, None, None)
            guard.send(None, "status", {"execution_state": "idle"}, {"header": parent}, None, None, False, None, None)

        print(f"    {count:3d} known: known values {best_ms(lambda: [index.replace(c) for c in chunks]):6.1f}"
              f"  rules {best_ms(lambda: [scanner.scan_text(c, min_confidence='likely') for c in chunks]):6.1f}"
              f"  hold-back {best_ms(lambda: [index.holdback_length(c) for c in chunks]):5.1f}"
              f"  redact {best_ms(lambda: [redactor.redact(c) for c in chunks]):6.1f}"
              f"  whole Session.send wrapper {best_ms(through_guard):6.1f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--pieces", action="store_true", help="time the guard's parts in-process instead")
    args = parser.parse_args(argv)
    if args.pieces:
        pieces()
        return 0

    tmp = Path(tempfile.mkdtemp(prefix="kg-bench-"))
    values = bench_values()
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
        cpu: dict[tuple[str, str], list[float]] = {}
        sizes: dict[str, int] = {}
        for cell_name, code in CELLS.items():  # one warm-up run each (imports, pandas)
            for k in kernels.values():
                k.ok(code)
        guard_cpu: dict[tuple[str, str], list[float]] = {}

        def timed(cell_name: str, label: str, k: RealKernel, code: str) -> Execution:
            guarded = label.startswith("guard") and not label.endswith(" off")
            cpu_before = k.value("__import__('time').process_time()")
            cost_before = k.value("_kg_cost[0]") if guarded else 0.0
            start = time.perf_counter()
            ex = k.ok(code)
            times.setdefault((cell_name, label), []).append(time.perf_counter() - start)
            # Asked after idle: by then the IOPub thread has redacted and sent everything.
            cpu.setdefault((cell_name, label), []).append(k.value("__import__('time').process_time()") - cpu_before)
            if guarded:
                guard_cpu.setdefault((cell_name, label), []).append(k.value("_kg_cost[0]") - cost_before)
            return ex

        for _ in range(args.rounds):
            for cell_name, code in CELLS.items():
                for label, k in kernels.items():
                    ex = timed(cell_name, label, k, code)
                    if label == "no guard":
                        sizes[cell_name] = len(ex.wire_text())
                    else:  # the same process with its guard off, then on again
                        k.ok("_kg_guard(False)")
                        timed(cell_name, label + " off", k, code)
                        k.ok("_kg_guard(True)")
    finally:
        for k in kernels.values():
            k.stop()

    print(f"kernel output guard, {args.rounds} rounds: median round trip (ratio to no guard), "
          "ratio of the fastest rounds, median kernel CPU (ratio)")
    for cell_name in CELLS:
        base = statistics.median(times[(cell_name, "no guard")])
        base_min = min(times[(cell_name, "no guard")])
        base_cpu = statistics.median(cpu[(cell_name, "no guard")])
        print(f"  {cell_name} ({sizes[cell_name] / 1e6:.1f} MB on the wire):")
        for label in kernels:
            med = statistics.median(times[(cell_name, label)])
            fastest = min(times[(cell_name, label)])
            med_cpu = statistics.median(cpu[(cell_name, label)])
            line = (f"    {label:17s} {med:.3f}s ({med / base:.2f}x)  fastest {fastest / base_min:.2f}x"
                    f"  kernel CPU {med_cpu:.3f}s ({med_cpu / base_cpu:.2f}x)")
            if label != "no guard":
                off = statistics.median(times[(cell_name, label + " off")])
                off_cpu = statistics.median(cpu[(cell_name, label + " off")])
                own = statistics.median(guard_cpu[(cell_name, label)])
                line += (f"  | same kernel, guard off {off:.3f}s: {med / off:.2f}x, CPU {med_cpu / off_cpu:.2f}x"
                         f"  | guard's own CPU {own:.3f}s = {own / off_cpu:.0%} of the cell's")
            print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
