"""Shared fixtures.

``kernel``: a factory of real kernels (tests/kernelharness.py), each started in the test's own
working directory with its own IPYTHONDIR, and all stopped at the end of the test::

    def test_x(kernel):
        k = kernel()                       # cwd = tmp_path/"work", IPYTHONDIR = tmp_path/"ipython"
        k = kernel(load_ext=True)          # ... with `%load_ext ipykeyguard` already run
        k = kernel(config={"KeyGuard": {"mode": "block"}})   # written to ipython_kernel_config.py
        k.cwd, k.ipython_dir               # where they are

``ipython_dir`` and ``workdir`` are the default directories the factory uses (create config
files there before calling the factory).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

sys.path.insert(0, str(Path(__file__).parent))

# Tests start `ipython`, `jupyter` and `ipykeyguard` by name: make those the ones of the environment
# running the tests, whether or not it was activated (a venv used by its full path, conda, system).
_BIN = str(Path(sys.executable).parent)
if os.environ.get("PATH", "").split(os.pathsep)[0] != _BIN:
    os.environ["PATH"] = _BIN + os.pathsep + os.environ.get("PATH", "")

from kernelharness import RealKernel  # noqa: E402


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """The default working directory of kernels started by ``kernel`` (created)."""
    path = tmp_path / "work"
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture
def ipython_dir(tmp_path: Path) -> Path:
    """The default IPYTHONDIR of kernels started by ``kernel`` (created, with profile_default)."""
    path = tmp_path / "ipython"
    (path / "profile_default").mkdir(parents=True, exist_ok=True)
    return path


def write_ipython_config(ipython_dir: Path, settings: dict[str, dict[str, Any]], *,
                         filename: str = "ipython_kernel_config.py") -> Path:
    """Append ``c.Section.name = value`` lines for ``settings`` to a profile_default config file."""
    path = Path(ipython_dir) / "profile_default" / filename
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"c.{section}.{name} = {json.dumps(value)}\n"
             for section, values in settings.items() for name, value in values.items()]
    with path.open("a", encoding="utf-8") as handle:
        handle.write("".join(lines))
    return path


@pytest.fixture
def kernel(workdir: Path, ipython_dir: Path) -> Iterator[Callable[..., RealKernel]]:
    """Factory of started real kernels, stopped when the test ends (see module docstring)."""
    started: list[RealKernel] = []

    def make(
        *,
        cwd: str | Path | None = None,
        ipython_dir_: str | Path | None = None,
        env: dict[str, str] | None = None,
        extra_arguments: list[str] | None = None,
        config: dict[str, dict[str, Any]] | None = None,
        load_ext: bool = False,
    ) -> RealKernel:
        directory = Path(ipython_dir_) if ipython_dir_ is not None else ipython_dir
        if config:
            write_ipython_config(directory, config)
        k = RealKernel(cwd if cwd is not None else workdir, ipython_dir=directory,
                       env=env, extra_arguments=extra_arguments)
        started.append(k)
        k.start()
        if load_ext:
            k.ok("%load_ext ipykeyguard")
        return k

    yield make
    for k in reversed(started):
        k.stop()


class FakeKeys(dict):
    """Fake keys by provider with a masked repr, so a failure report prints no key."""

    def __repr__(self) -> str:
        return f"FakeKeys({', '.join(self)})"


@pytest.fixture()
def keys():
    """An OpenAI and a GitHub fake key, generated for this test (masked repr)."""
    import fakekeys

    return FakeKeys(openai=fakekeys.openai_project_key(), github=fakekeys.github_classic_token())


def write_leaky_notebook(path: Path, source_tail: str = "") -> str:
    """Write a one-cell notebook whose code assigns a fresh fake OpenAI key and whose stream
    output echoes it (indent 1, sorted keys: how Jupyter writes). Returns the key."""
    import fakekeys

    key = fakekeys.openai_project_key()
    nb = {"cells": [{"cell_type": "code", "execution_count": 1, "id": "c1", "metadata": {},
                     "outputs": [{"name": "stdout", "output_type": "stream", "text": [key + "\n"]}],
                     "source": f'OPENAI_API_KEY = "{key}"{source_tail}'}],
          "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    path.write_text(json.dumps(nb, indent=1, sort_keys=True) + "\n")
    return key


# The exposure ledger (ipykeyguard.storage.ledger) is written by the kernel, the save hook,
# clean and scan. Tests must never write the user's real one: every test process and every
# kernel, server and CLI it starts inherits this path; ledger tests set their own per test.
import os  # noqa: E402
import tempfile  # noqa: E402

os.environ.setdefault("IPYKEYGUARD_LEDGER", os.path.join(tempfile.mkdtemp(prefix="ipykeyguard-ledger-"), "exposures.sqlite3"))
