"""Hostile inputs: is scanning linear, and how fast, beside the previous engine in the same run.

    python benchmarks/bench_adversarial.py                     # 64 KiB, 1 MiB, 16 MiB; previous = 12db7b5
    python benchmarks/bench_adversarial.py --sizes 64K,1M      # quicker
    python benchmarks/bench_adversarial.py --previous REV      # compare with another commit

For each of the shapes below (every one built to defeat a prefilter or make a regex work hard)
it prints the scan time in ms per MiB at each size and the growth factor (ms/MiB at the largest
size over ms/MiB at the smallest: 1.0 is linear; with three sizes also over the next-to-largest),
for this engine and the previous one. Every size scans the same characters: the largest text
cut into distinct texts of that size (see ``_texts``; a control line shows what timing one small
text again and again makes of a linear C scan). The
previous engine is the package at ``--previous``, extracted with ``git archive`` into a temp
directory and run in a subprocess (no legacy code is kept in the package); where it took more
than ``--budget`` seconds at one size, its larger sizes are skipped and shown as ``-``.

It also prints a typical 30-line cell's scan time (median of many runs), and the time to scan
and to clean a text against the number of findings (1k to 100k AWS-like key ids), which must
grow linearly. Figures are printed, never asserted. Each engine scans with a warm compiled
cache (one scan is made before timing).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
KIB = 1024
MIB = 1024 * 1024

B62 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


def _fill(unit: str, size: int) -> str:
    return (unit * (size // max(1, len(unit)) + 1))[:size]


def _random_run(alphabet: str, size: int, seed: int = 1) -> str:
    rng = random.Random(seed)
    return "".join(rng.choices(alphabet, k=size))


def _rules():
    from ipykeyguard.engine.rules import default_rules

    return default_rules()


def _every_rule_alphabet(size: int) -> str:
    """4 KiB runs of each rule's examples' own characters, one rule after another."""
    rng = random.Random(2)
    parts, total = [], 0
    rules = _rules()
    while total < size:
        for rule in rules:
            chars = sorted(set("".join(rule.examples))) or list(B62)
            run = "".join(rng.choices(chars, k=4096))
            parts.append(run)
            total += len(run)
            if total >= size:
                break
    return "".join(parts)[:size]


def _keywords(size: int) -> str:
    units = sorted({k for r in _rules() for k in r.keywords})
    return _fill("".join(units), size)


def _example_stubs(size: int) -> str:
    """Every rule's examples with their last two characters cut, one per line: most still are
    keys (a variable-length format stays valid), so this text holds thousands of real findings
    per MiB. It is measured in the findings section, per finding, not against the ms/MiB target."""
    lines = [ex[:-2] for r in _rules() for ex in r.examples if len(ex) > 4]
    return _fill("\n".join(lines) + "\n", size)


_NEAR_MISS_LINES: list[str] = []


def _near_misses(size: int) -> str:
    """Near-miss tokens: every rule's examples cut from the end, two characters at a time, until
    no rule's pattern matches the line any more (so each is as long a near-match as the rules
    allow); one per line. Built with the patterns of the engine that scans it."""
    if not _NEAR_MISS_LINES:
        patterns = [r.pattern for r in _rules()]
        for r in _rules():
            for ex in r.examples:
                cut = ex[:-2]
                while len(cut) > 4 and any(p.search(cut) for p in patterns):
                    cut = cut[:-2]
                if len(cut) > 4:
                    _NEAR_MISS_LINES.append(cut)
    return _fill("\n".join(_NEAR_MISS_LINES) + "\n", size)


def _pem_body(header: str, size: int) -> str:
    body = "\n".join(_random_run(B62 + "+/", 64, seed=i) for i in range(64))
    return header + "\n" + _fill(body + "\n", size - len(header) - 1)


SHAPES = {
    "a-run": lambda n: "a" * n,
    "base62-run": lambda n: _random_run(B62, n),
    "hex-run": lambda n: _random_run("0123456789abcdef", n),
    "base64-run": lambda n: _random_run(B62 + "+/=", n),
    "every-rule-alphabet": _every_rule_alphabet,
    "bearer-repeated": lambda n: _fill("Authorization: Bearer ", n),
    "bearer-near-miss": lambda n: _fill("Authorization: Bearer abc\n", n),
    "key=-repeated": lambda n: _fill("key=", n),
    "api_key-assign-open": lambda n: _fill('api_key = "', n),
    "all-keywords": _keywords,
    "near-miss-examples": _near_misses,
    "pem-unterminated": lambda n: _pem_body("-----BEGIN PRIVATE KEY-----", n),
    "openssh-unterminated": lambda n: _pem_body("-----BEGIN OPENSSH PRIVATE KEY-----", n),
    "json-quote-soup": lambda n: _fill('{"\\"":"\\\\\\"","k\\"ey":"\\"', n),
    "url-credentials": lambda n: _fill("https://user:pa55w0rd@", n),
    "db-url-open": lambda n: _fill("postgres://u:", n),
    "apikey-headers": lambda n: _fill("X-Api-Key: Api-Token: apikey: ", n),
    "jwt-like": lambda n: _fill("eyJ" + _random_run(B62 + "_-", 40) + ".", n),
    "long-single-line": lambda n: _fill(" ".join(_random_run(B62, 12, seed=i) for i in range(500)) + " ", n),
    "akia-glued": lambda n: _fill("AKIA" + _random_run("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16), n),
    "sk-prefixes": lambda n: _fill("sk-sk-proj-sk-ant-api03-", n),
    "ghp-glued": lambda n: _fill("ghp_" + _random_run(B62, 36), n),
    "escape-soup": lambda n: _fill("\\t\\n\\x20\\u0009", n),
    "newlines": lambda n: "\n" * n,
    "non-ascii": lambda n: _fill("数据é\u212a😀", n),
    "cjk-ascii-mix": lambda n: _fill("数据 abc ", n),
    "ascii-non-ascii-alternating": lambda n: _fill("a数", n),
    "lone-surrogates": lambda n: _fill("\ud800x?", n),
}

TYPICAL_CELL = "\n".join([
    "import os",
    "import numpy as np",
    "import pandas as pd",
    "from sklearn.model_selection import train_test_split",
    "",
    "df = pd.read_csv('data/train.csv')",
    "df = df.dropna(subset=['label'])",
    "X = df.drop(columns=['label']).values",
    "y = df['label'].values",
    "X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.2, random_state=42)",
    "",
    "def normalise(a):",
    "    mu = a.mean(axis=0)",
    "    sd = a.std(axis=0) + 1e-9",
    "    return (a - mu) / sd",
    "",
    "X_train = normalise(X_train)",
    "X_test = normalise(X_test)",
    "print(X_train.shape, X_test.shape)",
    "for epoch in range(10):",
    "    loss = float(np.random.rand())",
    "    print(f'epoch {epoch}: loss={loss:.4f}')",
    "model_path = os.path.join('models', 'model.pkl')",
    "token_count = len(df)",
    "api_url = 'https://example.com/api/v1/items'",
    "headers = {'Accept': 'application/json'}",
    "params = {'page': 1, 'per_page': 100}",
    "result = {'ok': True, 'n': token_count}",
    "print(result)",
    "",
])


def _parse_size(text: str) -> int:
    text = text.strip().upper()
    for suffix, factor in (("KIB", KIB), ("MIB", MIB), ("K", KIB), ("M", MIB)):
        if text.endswith(suffix):
            return int(float(text[: -len(suffix)]) * factor)
    return int(text)


def _label(size: int) -> str:
    return f"{size // MIB} MiB" if size >= MIB else f"{size // KIB} KiB"


# -- worker: runs inside one engine's process ------------------------------------------------------

#: A round of one size stops after this many seconds (it has scanned at least one text).
_ROUND_SECONDS = 2.0
#: Shapes whose text starts with a header the rest depends on: their smaller texts are built
#: whole (and are the same characters), not cut from the largest.
_HEADED = {"pem-unterminated", "openssh-unterminated"}


def _texts(name: str, largest: str, size: int) -> list[str]:
    """About ``len(largest)`` characters of shape ``name`` as distinct texts of ``size``.

    Timing one small text again and again flatters it twice: it stays in the CPU cache (a
    64 KiB text in the 2 MiB L2, while a 16 MiB one is read from memory), and the CPU's branch
    predictors learn its exact characters (Hyperscan scanned the same 64 KiB of random hex
    1.6x faster per MiB than 64 KiB pieces of a larger random draw). Both looked like
    super-linear growth. So every size scans the same characters: the largest text cut into
    pieces of that size (new string objects), and the growth factor compares one large text
    with many small ones of the same make-up.
    """
    if size >= len(largest):
        return [largest]
    if name in _HEADED:
        text = SHAPES[name](size)
        return [text[:-1] + text[-1:] for _ in range(len(largest) // size)]
    return [largest[i:i + size] for i in range(0, len(largest) - size + 1, size)]


def _utf8(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


def _seconds_per_text(scan, texts: list[str]) -> float:
    """Seconds ``scan`` takes per text of ``texts``: the best of up to three rounds over them
    (a round stops after :data:`_ROUND_SECONDS`)."""
    best = None
    for _round in range(3):
        scanned = 0
        t0 = time.perf_counter()
        for text in texts:
            scan(text)
            scanned += 1
            if time.perf_counter() - t0 > _ROUND_SECONDS:
                break
        per_text = (time.perf_counter() - t0) / scanned
        best = per_text if best is None else min(best, per_text)
        if per_text * scanned > _ROUND_SECONDS / 2:
            break  # slow enough to be measured once
    return best


def _worker(args) -> None:
    import ipykeyguard
    from ipykeyguard import scan_text
    from ipykeyguard.transforms.clean import clean_text

    sizes = [int(s) for s in args.sizes.split(",")]
    budget = args.budget
    out: dict = {"engine": str(Path(ipykeyguard.__file__).parent), "shapes": {}, "findings": {}}
    scan_text("warm up: build or load the compiled rules")
    for name in args.shapes.split(","):
        largest = SHAPES[name](sizes[-1])
        times = {}
        for i, size in enumerate(sizes):
            if i and times[sizes[i - 1]] * size / sizes[i - 1] > budget:
                break  # even linear growth would exceed the budget: skip the larger sizes
            times[size] = _seconds_per_text(scan_text, _texts(name, largest, size))
        out["shapes"][name] = times
        print(json.dumps({"progress": name}), file=sys.stderr, flush=True)
    # A scan known to be linear, timed both ways: its growth timing one small text again and
    # again ("hot") is what the cache and the branch predictors alone make of a linear scan.
    largest = SHAPES["non-ascii"](sizes[-1])
    out["control"] = {}
    for size in sizes:
        pieces = _texts("non-ascii", largest, size)
        out["control"][size] = {"hot": _seconds_per_text(_utf8, pieces[:1] * len(pieces)),
                                "cold": _seconds_per_text(_utf8, pieces)}
    samples = []
    for _ in range(300):
        t0 = time.perf_counter()
        scan_text(TYPICAL_CELL)
        samples.append(time.perf_counter() - t0)
    out["cell_us"] = statistics.median(samples) * 1e6
    out["dense"] = {}
    for i, size in enumerate(sizes):
        text = _example_stubs(size)
        t0 = time.perf_counter()
        found = scan_text(text)
        out["dense"][size] = {"found": len(found), "scan": time.perf_counter() - t0}
        if i + 1 < len(sizes) and out["dense"][size]["scan"] * sizes[i + 1] / size > budget:
            break
    rng = random.Random(3)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
    last = None
    for count in [int(c) for c in args.findings.split(",") if c]:
        if last is not None and max(last[1]["scan"], last[1]["clean"]) * count / last[0] > budget:
            break
        text = "\n".join("AKIA" + "".join(rng.choices(alphabet, k=16)) for _ in range(count)) + "\n"
        t0 = time.perf_counter()
        found = scan_text(text)
        scan_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        cleaned, _report = clean_text(text)
        clean_s = time.perf_counter() - t0
        out["findings"][count] = {"found": len(found), "scan": scan_s, "clean": clean_s,
                                  "clean_left": cleaned.count("AKIA")}
        last = (count, out["findings"][count])
    print(json.dumps(out))


# -- driver ------------------------------------------------------------------------------------------

def _extract(rev: str, into: Path) -> Path:
    archive = into / "prev.tar"
    subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", "-o", str(archive), rev, "ipykeyguard"], check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(into / "src", filter="data")
    return into / "src"


def _run_engine(path: Path, args, shapes: list[str]) -> dict:
    env = dict(os.environ, PYTHONPATH=str(path))
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "--sizes", ",".join(map(str, args.sizes)),
           "--shapes", ",".join(shapes), "--budget", str(args.budget), "--findings", args.findings]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=tempfile.gettempdir())
    if proc.returncode != 0:
        raise SystemExit(f"engine at {path} failed:\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"# {path}: done", file=sys.stderr, flush=True)
    return result


def _ms_per_mib(seconds: float, size: int) -> float:
    return seconds * 1000 / (size / MIB)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="64K,1M,16M")
    parser.add_argument("--shapes", default=",".join(SHAPES))
    parser.add_argument("--previous", default="12db7b59c62198e2f7f7b8ed22e670087c7daa74")
    parser.add_argument("--budget", type=float, default=20.0, help="seconds; larger sizes are skipped after")
    parser.add_argument("--findings", default="1000,10000,100000")
    parser.add_argument("--no-previous", action="store_true")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        _worker(args)
        return 0
    args.sizes = [_parse_size(s) for s in args.sizes.split(",")]
    shapes = args.shapes.split(",")
    with tempfile.TemporaryDirectory(prefix="ikg-bench-adv-") as tmp:
        engines = {"current": _run_engine(ROOT, args, shapes)}
        if not args.no_previous:
            engines["previous"] = _run_engine(_extract(args.previous, Path(tmp)), args, shapes)
    names = list(engines)
    print(f"# adversarial shapes: scan time in ms per MiB; growth = ms/MiB at {_label(args.sizes[-1])} "
          f"/ ms/MiB at {_label(args.sizes[0])} (1.0 = linear)")
    print(f"# engines: " + "; ".join(f"{n} = {engines[n]['engine']}" for n in names))
    # Growth from the smallest size, and (with three sizes or more) from the next-to-largest: a
    # shape whose small sample differs in kind from its large ones (every-rule-alphabet's 64 KiB
    # covers 16 rules' alphabets, 1 MiB all of them) shows there as growth that is not scaling.
    mid = args.sizes[-2] if len(args.sizes) >= 3 else None
    header = f"{'shape':<22}" + "".join(
        f"{n + ' ' + _label(s):>18}" for n in names for s in args.sizes) + "".join(f"{n + ' growth':>18}" for n in names)
    if mid is not None:
        header += "".join(f"{n + ' from ' + _label(mid):>22}" for n in names)
    print(header)
    worst = {n: 0.0 for n in names}
    worst_growth = {n: 0.0 for n in names}
    over = {n: [] for n in names}
    over_mid = {n: [] for n in names}
    for shape in shapes:
        row = f"{shape:<22}"
        growths, mids = [], []
        for n in names:
            times = {int(k): v for k, v in engines[n]["shapes"][shape].items()}
            for s in args.sizes:
                if s in times:
                    rate = _ms_per_mib(times[s], s)
                    worst[n] = max(worst[n], rate)
                    row += f"{rate:>18.2f}"
                else:
                    row += f"{'-':>18}"
            if args.sizes[0] in times and args.sizes[-1] in times:
                g = _ms_per_mib(times[args.sizes[-1]], args.sizes[-1]) / max(1e-9, _ms_per_mib(times[args.sizes[0]], args.sizes[0]))
                worst_growth[n] = max(worst_growth[n], g)
                growths.append(f"{g:>18.2f}")
                if g > 1.2:
                    over[n].append(shape)
            else:
                growths.append(f"{'-':>18}")
            if mid is not None and mid in times and args.sizes[-1] in times:
                g = _ms_per_mib(times[args.sizes[-1]], args.sizes[-1]) / max(1e-9, _ms_per_mib(times[mid], mid))
                mids.append(f"{g:>22.2f}")
                if g > 1.2:
                    over_mid[n].append(shape)
            elif mid is not None:
                mids.append(f"{'-':>22}")
        print(row + "".join(growths) + "".join(mids))
    for n in names:
        print(f"# {n}: worst {worst[n]:.2f} ms/MiB, worst growth {worst_growth[n]:.2f}x (over shapes measured at every size)")
        print(f"# {n}: growth over 1.2x from {_label(args.sizes[0])}: {', '.join(over[n]) or 'none'}")
        if mid is not None:
            print(f"# {n}: growth over 1.2x from {_label(mid)}: {', '.join(over_mid[n]) or 'none'}")
    control = {int(k): v for k, v in engines[names[0]]["control"].items()}
    lo, hi = args.sizes[0], args.sizes[-1]
    print(f"# control, a linear C scan (the non-ascii shape encoded to UTF-8): growth "
          f"{control[hi]['cold'] / hi / (control[lo]['cold'] / lo):.2f} timed as above, "
          f"{control[hi]['hot'] / hi / (control[lo]['hot'] / lo):.2f} timing one {_label(lo)} text again and again "
          f"(it stays in the CPU cache)")
    print()
    print("# typical 30-line cell: median scan time")
    for n in names:
        print(f"{n:<10} {engines[n]['cell_us']:>10.1f} us")
    if len(names) == 2:
        print(f"ratio previous/current: {engines['previous']['cell_us'] / engines['current']['cell_us']:.2f}")
    print()
    print("# dense findings: every rule's examples cut by two characters, one per line (most are still keys)")
    print(f"{'size':>10}" + "".join(f"{n + ' findings':>18}{n + ' scan s':>18}{n + ' us/finding':>18}" for n in names))
    for size in args.sizes:
        row = f"{_label(size):>10}"
        for n in names:
            r = engines[n].get("dense", {}).get(str(size))
            if r is None:
                row += f"{'-':>18}" * 3
            else:
                row += f"{r['found']:>18}{r['scan']:>18.3f}{r['scan'] / max(1, r['found']) * 1e6:>18.1f}"
        print(row)
    print()
    print("# findings: scan_text and clean_text time against the number of AWS-like key ids (one per line)")
    print(f"{'findings':>10}" + "".join(f"{n + ' scan s':>18}{n + ' clean s':>18}{n + ' us/finding':>18}" for n in names))
    counts = [int(c) for c in args.findings.split(",") if c]
    for count in counts:
        row = f"{count:>10}"
        for n in names:
            r = engines[n]["findings"].get(str(count))
            if r is None:
                row += f"{'-':>18}" * 3
            else:
                row += f"{r['scan']:>18.3f}{r['clean']:>18.3f}{(r['scan'] + r['clean']) / count * 1e6:>18.1f}"
        print(row)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
