"""ipykeyguard.cli.files: discovering targets and reading them with content-free errors."""

from __future__ import annotations

import io
import json
import random
from pathlib import Path

import pytest

import fakekeys
from ipykeyguard.engine.config import Config
from ipykeyguard.cli.files import (
    BINARY_SNIFF_BYTES,
    STDIN,
    FileReadError,
    Target,
    decode_text,
    discover,
    is_virtualenv,
    read_target,
)

MIB = 1024 * 1024


def _notebook(source: str = "x = 1\n", nbformat: int = 4) -> str:
    return json.dumps(
        {
            "cells": [{"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [], "source": source}],
            "metadata": {},
            "nbformat": nbformat,
            "nbformat_minor": 5,
        }
    )


def _rel(found_paths, root: Path) -> list[str]:
    return [Path(p).relative_to(root).as_posix() for p in found_paths]


def test_discover_recurses_in_sorted_order_and_skips_tool_and_virtualenv_dirs(tmp_path):
    """Directory recursion yields files in sorted order and never enters VCS, cache or virtualenv dirs."""
    for rel in ["b.py", "a/z.ipynb", "a/y.txt", "sub/deep/c.md"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x\n")
    for skipped in [".git", ".hg", ".svn", "__pycache__", "node_modules",
                    ".venv", "venv", ".tox", ".nox", "lib/site-packages"]:
        (tmp_path / skipped).mkdir(parents=True, exist_ok=True)
        (tmp_path / skipped / "leak.py").write_text("x\n")
    (tmp_path / "myenv").mkdir()
    (tmp_path / "myenv" / "pyvenv.cfg").write_text("home = /usr/bin\n")
    (tmp_path / "myenv" / "leak.py").write_text("x\n")
    assert is_virtualenv(tmp_path / "myenv")

    found = discover([str(tmp_path)])

    # Files of a folder come before its subfolders, each level sorted by name.
    assert _rel((t.path for t in found.targets), tmp_path) == ["b.py", "a/y.txt", "a/z.ipynb", "sub/deep/c.md"]
    assert all(not t.explicit for t in found.targets)
    assert found.errors == [] and found.excluded == []


def test_discover_order_is_deterministic(tmp_path):
    """Two walks of the same tree list the same files in the same order."""
    for i in range(20):
        (tmp_path / f"d{i % 3}").mkdir(exist_ok=True)
        (tmp_path / f"d{i % 3}" / f"f{i}.txt").write_text("x")
    first = [t.path for t in discover([str(tmp_path)]).targets]
    assert first == [t.path for t in discover([str(tmp_path)]).targets]
    assert len(first) == 20


def test_symlinks_met_while_recursing_are_not_followed_so_a_loop_terminates(tmp_path):
    """A directory symlink pointing back up, and a self-referencing link, neither hang the walk nor get scanned."""
    (tmp_path / "real.txt").write_text("x")
    (tmp_path / "up").symlink_to(tmp_path, target_is_directory=True)
    (tmp_path / "self").symlink_to(tmp_path / "self")
    (tmp_path / "alias.txt").symlink_to(tmp_path / "real.txt")

    found = discover([str(tmp_path)])

    assert [Path(t.path).name for t in found.targets] == ["real.txt"]
    assert sorted(Path(p).name for p in found.skipped_links) == ["alias.txt", "self", "up"]
    assert found.errors == []


def test_an_explicit_symlink_loop_is_an_error_naming_the_reason(tmp_path):
    """A self-referencing symlink named on the command line is reported, not silently skipped."""
    loop = tmp_path / "loop.ipynb"
    loop.symlink_to(loop)
    found = discover([str(loop)])
    assert found.targets == []
    assert [e.path for e in found.errors] == [str(loop)]
    assert "symbolic links" in found.errors[0].message


def test_an_explicit_symlink_to_a_file_is_followed(tmp_path):
    """A link named on the command line is read like the file it points to."""
    (tmp_path / "real.txt").write_text("x")
    (tmp_path / "link.txt").symlink_to(tmp_path / "real.txt")
    assert [t.path for t in discover([str(tmp_path / "link.txt")]).targets] == [str(tmp_path / "link.txt")]


def test_missing_paths_are_errors_and_stdin_is_a_target(tmp_path):
    """A path that does not exist becomes an error; '-' is kept as the stdin target in order."""
    (tmp_path / "a.txt").write_text("x")
    found = discover([str(tmp_path / "nope.ipynb"), STDIN, str(tmp_path / "a.txt")])
    assert [t.path for t in found.targets] == [STDIN, str(tmp_path / "a.txt")]
    assert found.targets[0].is_stdin
    assert [(e.path, e.message) for e in found.errors] == [(str(tmp_path / "nope.ipynb"), "no such file or directory")]


def test_the_same_file_named_twice_or_also_found_by_recursion_is_read_once(tmp_path):
    """Duplicates (named twice, or named and under a named directory) collapse to one target."""
    (tmp_path / "a.txt").write_text("x")
    found = discover([str(tmp_path / "a.txt"), str(tmp_path / "a.txt"), str(tmp_path), str(tmp_path / "." / "a.txt")])
    assert [t.path for t in found.targets] == [str(tmp_path / "a.txt")]


def test_exclude_patterns_apply_to_explicit_and_recursed_paths_and_are_listed(tmp_path):
    """Config exclude patterns skip explicitly named files, found files and whole directories, and say so."""
    for rel in ["keep.py", "data/big.csv", "data/inner/x.py", "notes.csv", "src/fixture.ipynb"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x")
    config = Config(exclude=("data/**", "*.csv", "src/fixture.ipynb"), root=tmp_path)

    found = discover([str(tmp_path), str(tmp_path / "src" / "fixture.ipynb")], config)

    assert _rel((t.path for t in found.targets), tmp_path) == ["keep.py"]
    assert sorted(_rel(found.excluded, tmp_path)) == ["data", "notes.csv", "src/fixture.ipynb"]


def test_read_text_strips_a_bom_and_keeps_the_rest(tmp_path):
    """A UTF-8 BOM is dropped; the rest decodes as text."""
    path = tmp_path / "bom.py"
    path.write_bytes(b"\xef\xbb\xbfx = '\xc3\xa9'\n")
    loaded = read_target(Target(str(path)), max_file_size=MIB)
    assert (loaded.kind, loaded.text) == ("text", "x = 'é'\n")


def test_read_notebook_with_a_bom_parses_it(tmp_path):
    """A notebook saved with a BOM is still read as a notebook."""
    path = tmp_path / "bom.ipynb"
    path.write_bytes(b"\xef\xbb\xbf" + _notebook().encode())
    loaded = read_target(Target(str(path)), max_file_size=MIB)
    assert loaded.kind == "notebook" and loaded.notebook["cells"][0]["source"] == "x = 1\n"


def test_non_utf8_text_is_an_error_that_quotes_no_content(tmp_path):
    """Latin-1 bytes in a text file raise FileReadError giving the offset but none of the text."""
    secret = fakekeys.generic_secret(random.Random(3))
    path = tmp_path / "latin1.py"
    path.write_bytes(f"token = '{secret}' # caf".encode() + b"\xe9\n")
    with pytest.raises(FileReadError) as info:
        read_target(Target(str(path)), max_file_size=MIB)
    assert "not UTF-8" in info.value.message and "offset" in info.value.message
    assert secret not in str(info.value), "key leaked"
    assert info.value.path == str(path)


@pytest.mark.parametrize(
    "content, expected",
    [
        (b"{ not json", "not valid JSON"),
        (b"", "not valid JSON"),
        (b"[1, 2]", "not a notebook"),
        (_notebook(nbformat=1).encode(), "nbformat 1 is not supported"),
        (_notebook(nbformat=3).encode(), "nbformat 3 with the 'cells' list of version 4"),
        (b'{"nbformat": 4, "cells": 7}', "not a notebook"),
        (b"\xff\xfe{}", "not UTF-8"),
        (b'{"nbformat": 4, "cells": [], "metadata": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "nested too deeply"),
    ],
    ids=["broken-json", "empty", "json-list", "nbformat-1", "nbformat-3-with-cells", "cells-not-list", "utf16-bytes",
         "deeply-nested"],
)
def test_bad_notebooks_raise_file_read_error_without_the_path_twice(tmp_path, content, expected):
    """Each kind of unreadable notebook raises FileReadError with a reason and the path once."""
    path = tmp_path / "bad.ipynb"
    path.write_bytes(content)
    with pytest.raises(FileReadError) as info:
        read_target(Target(str(path)), max_file_size=MIB)
    assert expected in info.value.message
    assert str(path) not in info.value.message
    assert str(info.value).startswith(f"{path}: ")


def test_a_nul_byte_early_on_makes_a_file_binary_but_a_late_one_does_not(tmp_path):
    """Binary sniffing looks at the first 8 KiB only."""
    early, late = tmp_path / "early.bin", tmp_path / "late.txt"
    early.write_bytes(b"PK\x03\x04\0\0rest")
    late.write_bytes(b"a" * BINARY_SNIFF_BYTES + b"\0")
    assert read_target(Target(str(early)), max_file_size=MIB).kind == "binary"
    assert read_target(Target(str(late)), max_file_size=MIB).kind == "text"


def test_an_empty_text_file_reads_as_empty_text(tmp_path):
    """An empty non-notebook file is text with nothing in it, not an error."""
    (tmp_path / "empty.py").write_bytes(b"")
    assert read_target(Target(str(tmp_path / "empty.py")), max_file_size=MIB).text == ""


def test_a_file_over_the_size_limit_is_refused_not_read(tmp_path):
    """A file bigger than max_file_size raises FileReadError naming both sizes."""
    path = tmp_path / "big.txt"
    path.write_bytes(b"a" * 101)
    with pytest.raises(FileReadError) as info:
        read_target(Target(str(path)), max_file_size=100)
    assert "101 > 100 bytes" in info.value.message
    assert read_target(Target(str(path)), max_file_size=101).text == "a" * 101


def test_a_directory_given_as_a_file_target_is_a_read_error(tmp_path):
    """Reading something that is not a file raises FileReadError with the OS reason."""
    with pytest.raises(FileReadError) as info:
        read_target(Target(str(tmp_path)), max_file_size=MIB)
    assert "cannot read" in info.value.message


def test_stdin_is_sniffed_as_notebook_or_text_and_limited_in_size():
    """Standard input holding notebook JSON is parsed as a notebook, anything else is text; too much is refused."""
    nb = read_target(Target(STDIN), max_file_size=MIB, stdin=io.BytesIO(_notebook().encode()))
    assert nb.kind == "notebook"
    text = read_target(Target(STDIN), max_file_size=MIB, stdin=io.BytesIO(b'{"a": 1}'))
    assert (text.kind, text.text) == ("text", '{"a": 1}')
    with pytest.raises(FileReadError) as info:
        read_target(Target(STDIN), max_file_size=10, stdin=io.BytesIO(b"x" * 11))
    assert "larger than max-file-size" in info.value.message


def test_stdin_with_a_broken_notebook_is_an_error():
    """Standard input that looks like a notebook but is nbformat 1 is refused like a file would be."""
    with pytest.raises(FileReadError) as info:
        read_target(Target(STDIN), max_file_size=MIB, stdin=io.BytesIO(_notebook(nbformat=1).encode()))
    assert "nbformat 1" in info.value.message


def test_decode_text_accepts_utf8_and_rejects_other_bytes():
    """decode_text strips a BOM and raises ValueError for invalid UTF-8."""
    assert decode_text(b"\xef\xbb\xbfhi") == "hi"
    with pytest.raises(ValueError, match="offset 2"):
        decode_text(b"hi\xff")


def test_file_read_error_survives_pickling_for_worker_processes():
    """FileReadError keeps path and message through pickle (it crosses --jobs process boundaries)."""
    import pickle

    err = pickle.loads(pickle.dumps(FileReadError("a.ipynb", "not valid JSON")))
    assert (err.path, err.message, str(err)) == ("a.ipynb", "not valid JSON", "a.ipynb: not valid JSON")
