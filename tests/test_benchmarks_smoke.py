"""The benchmark scripts still run: a tiny corpus, a tiny scan bench and a tiny clean bench.

Nothing here asserts a timing or a recall target (that is what the benchmarks print); these
tests only keep the scripts from rotting and check that they never print a key.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from ipykeyguard.transforms.notebook import read_notebook
from ipykeyguard.engine.scan import scan_notebook

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"


def _load_corpus_module():
    spec = importlib.util.spec_from_file_location("bench_corpus", BENCH / "corpus.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_corpus"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def corpus_mod():
    return _load_corpus_module()


@pytest.fixture(scope="module")
def tiny_corpus(tmp_path_factory, corpus_mod):
    path = tmp_path_factory.mktemp("corpus")
    manifest = corpus_mod.generate_corpus(path, n_notebooks=6, seed=11)
    return path, manifest


def _secrets_in(nbdir: Path) -> set[str]:
    """Plaintext of every key the scanner finds in the corpus (to check nothing prints them)."""
    out = set()
    for path in nbdir.glob("*.ipynb"):
        nb, _raw = read_notebook(path)
        out |= {f.secret.reveal() for f in scan_notebook(nb)}
    return out


def test_corpus_is_deterministic(tmp_path, corpus_mod, tiny_corpus):
    """The same seed and size give byte-identical notebooks and the same manifest."""
    path, manifest = tiny_corpus
    again = corpus_mod.generate_corpus(tmp_path, n_notebooks=6, seed=11)
    assert again["planted"] == manifest["planted"]
    nbdir = corpus_mod.NOTEBOOK_DIR
    names = sorted(p.name for p in (path / nbdir).glob("*.ipynb"))
    assert names == sorted(p.name for p in (tmp_path / nbdir).glob("*.ipynb"))
    for name in names:
        assert (path / nbdir / name).read_bytes() == (tmp_path / nbdir / name).read_bytes(), name


def test_corpus_has_plants_negatives_and_real_images(corpus_mod, tiny_corpus):
    """The corpus holds planted keys with SHA-256 and SHA-1 fingerprints, hard negatives, and real PNG outputs."""
    path, manifest = tiny_corpus
    kinds = {nb["kind"] for nb in manifest["notebooks"]}
    assert kinds == {"planted", "negative"}
    assert manifest["planted"], "no key planted"
    for plant in manifest["planted"]:
        assert plant["location"] in corpus_mod.LOCATIONS
        assert all(len(h) == 64 for h in plant["fingerprints"])
        assert all(len(h) == 40 for h in plant["sha1"])
    pngs = []
    for nb_path in (path / corpus_mod.NOTEBOOK_DIR).glob("*.ipynb"):
        nb = json.loads(nb_path.read_text(encoding="utf-8"))
        for cell in nb["cells"]:
            for out in cell.get("outputs", []):
                if "image/png" in out.get("data", {}):
                    pngs.append(out["data"]["image/png"])
    assert pngs and all(p.startswith("iVBORw0KGgo") for p in pngs)  # base64 of the PNG signature


def test_manifest_holds_no_key(tiny_corpus, corpus_mod):
    """The ground-truth manifest names keys by fingerprint only, never by value."""
    path, _manifest = tiny_corpus
    manifest_text = (path / "manifest.json").read_text(encoding="utf-8")
    secrets = _secrets_in(path / corpus_mod.NOTEBOOK_DIR)
    assert secrets, "the scanner found nothing to check against"
    assert not any(s in manifest_text for s in secrets), "key leaked into the manifest"


def test_every_family_makes_a_format_exact_key(corpus_mod):
    """Every documented format variant the generators draw is found by the shipped rules, at likely or above,
    where it is written (its code form and, for self-identifying tokens, bare)."""
    import random

    from ipykeyguard.engine.findings import Confidence
    from ipykeyguard.engine.scan import scan_text

    missed = set()
    for family, make in corpus_mod.FAMILIES.items():
        for i in range(25):  # enough draws to meet every prefix, length and encoding variant
            plant = make(random.Random(f"{family}:{i}"))
            cuts = {corpus_mod._sha256(c) for c in plant.cuts()}
            forms = [plant.code if plant.code is not None else f'{plant.env} = """{plant.secret}"""']
            if plant.kind == "token":
                forms.append(f'x = "{plant.secret}"; print(x)')
            for text in forms:
                if not any(f.fingerprint in cuts for f in scan_text(text, min_confidence=Confidence.LIKELY)):
                    missed.add(f"{family} {plant.variant}".strip())
    assert sorted(missed) == [], f"format variants not found where they are written: {sorted(missed)}"


def test_format_generators_do_not_read_the_rules():
    """The corpus's key generators (benchmarks/formats.py) import nothing from ipykeyguard: keys come from
    the providers' documented formats, not from rules.toml, and every family names its source."""
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import formats; "
        "assert not [m for m in sys.modules if m.startswith('ipykeyguard')], 'imports ipykeyguard'; "
        "assert set(formats.SOURCES) == set(formats.FAMILIES), 'a family without a source'"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(BENCH)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-1000:]


def test_realnb_extracts_only_notebooks_with_safe_paths(tmp_path):
    """bench_realnb extracts the .ipynb members of an sdist and nothing else, never outside its folder."""
    import io
    import tarfile

    spec = importlib.util.spec_from_file_location("bench_realnb", BENCH / "bench_realnb.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    archive = tmp_path / "pkg-1.0.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for name in ("pkg-1.0/docs/demo.ipynb", "pkg-1.0/setup.py", "../escape.ipynb", "/abs/evil.ipynb"):
            data = b'{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}'
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    dest = tmp_path / "out" / "pkg-1.0"
    assert module.extract_notebooks(archive, dest) == 1
    assert [p.relative_to(dest).as_posix() for p in dest.rglob("*.ipynb")] == ["pkg-1.0/docs/demo.ipynb"]
    assert not (tmp_path / "escape.ipynb").exists()


@pytest.mark.slow
def test_bench_scan_runs_and_prints_no_key(tmp_path, tiny_corpus, corpus_mod):
    """bench_scan.py on a handful of notebooks prints its table and JSON results, and no key."""
    path, _manifest = tiny_corpus
    out_json = tmp_path / "scan.json"
    proc = subprocess.run(
        [sys.executable, str(BENCH / "bench_scan.py"), "--corpus", str(path), "-n", "6", "--seed", "11",
         "--reps", "2", "--ds-notebooks", "2", "--json-out", str(out_json)],
        capture_output=True, text=True, timeout=280,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "recall, all planted keys" in proc.stdout
    assert "gitleaks 8.30 dir" in proc.stdout and "detect-secrets 1.5" in proc.stdout
    record = json.loads(out_json.read_text(encoding="utf-8"))
    assert record["ours"]["planted"] == len(_manifest["planted"])
    secrets = _secrets_in(path / corpus_mod.NOTEBOOK_DIR)
    printed = proc.stdout + proc.stderr + out_json.read_text(encoding="utf-8")
    assert not any(s in printed for s in secrets), "key leaked into the benchmark output"


@pytest.mark.slow
def test_bench_clean_runs_on_copies(tmp_path, tiny_corpus, corpus_mod):
    """bench_clean.py cleans copies (the corpus itself is untouched) and prints ratios and leftovers."""
    path, _manifest = tiny_corpus
    nbdir = path / corpus_mod.NOTEBOOK_DIR
    before = {p.name: p.read_bytes() for p in nbdir.glob("*.ipynb")}
    proc = subprocess.run(
        [sys.executable, str(BENCH / "bench_clean.py"), "--corpus", str(path), "-n", "6", "--seed", "11",
         "--json-out", str(tmp_path / "clean.json")],
        capture_output=True, text=True, timeout=280,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "nbstripout" in proc.stdout and "planted keys still reported" in proc.stdout
    assert {p.name: p.read_bytes() for p in nbdir.glob("*.ipynb")} == before
    secrets = _secrets_in(nbdir)
    assert not any(s in proc.stdout + proc.stderr for s in secrets), "key leaked into the benchmark output"


def test_prompt_guard_benchmark_runs_and_prints_no_key():
    """bench_prompt_guard.py runs a tiny round against the loopback stub, prints its ratio table,
    and never prints the key it plants (seeded, so the test can recompute it)."""
    import random

    import fakekeys

    key = fakekeys.openai_project_key(random.Random(2024))
    proc = subprocess.run(
        [sys.executable, str(BENCH / "bench_prompt_guard.py"), "--rounds", "2", "--per-round", "2",
         "--clients", "httpx,requests", "--sizes", "800"],
        capture_output=True, text=True, timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "guard alone ms" in proc.stdout
    assert len([line for line in proc.stdout.splitlines() if line.startswith(("httpx ", "requests "))]) == 4
    if key in proc.stdout + proc.stderr:
        pytest.fail("the benchmark printed its planted key", pytrace=False)


def test_adversarial_bench_runs_both_engines_on_a_tiny_size():
    """bench_adversarial.py runs the current and the previous engine (from git) on every shape
    at a tiny size and prints a row per shape, the typical cell and the findings curve."""
    proc = subprocess.run(
        [sys.executable, str(BENCH / "bench_adversarial.py"), "--sizes", "2K,8K", "--findings", "50,100"],
        capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert sum(1 for line in lines if line.split() and line.split()[0] in ("a-run", "bearer-repeated", "non-ascii")) == 3
    assert any(line.startswith("ratio previous/current") for line in lines)
    assert any(line.split() and line.split()[0] == "100" for line in lines)
    assert any(line.startswith("# control, a linear C scan") for line in lines)


def test_bench_rewrite_quick_run_prints_its_tables_and_no_key():
    """bench_rewrite.py --quick --no-kernel prints the rewrite and clean tables, and not its key."""
    import random

    import fakekeys

    proc = subprocess.run(
        [sys.executable, str(BENCH / "bench_rewrite.py"), "--quick", "--no-kernel"],
        capture_output=True, text=True, timeout=280,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "rewrite_source (one key at 70%)" in proc.stdout and "ipykeyguard clean, one-cell notebook" in proc.stdout
    key = fakekeys.openai_project_key(random.Random(13))  # the benchmark's own seed
    assert key not in proc.stdout + proc.stderr
