"""The built wheel carries the prebuilt JupyterLab extension: no Node to build or install it.

The wheel is built from a copy of the working tree (without ``node_modules``) with ``node`` and
``npm`` on PATH replaced by scripts that record any call and fail, so the test proves that
neither ``pip wheel`` nor ``pip install`` needs Node. It is installed with JupyterLab into a
fresh virtual environment (dependencies from the package index), where ``jupyter labextension
list`` and ``jupyter server extension list`` must show ipykeyguard enabled and OK.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parent.parent
SKIP = shutil.ignore_patterns("node_modules", "lib", ".git", "__pycache__", "test-artifacts", "_corpus", "_out",
                              ".pytest_cache", ".hypothesis", "dist", "build", "*.egg-info")


def _no_node_path(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """An environment whose PATH starts with failing ``node``/``npm`` stand-ins; and their log."""
    fake = tmp_path / "fakebin"
    fake.mkdir()
    log = tmp_path / "node-calls.log"
    for tool in ("node", "npm", "npx", "jlpm", "yarn"):
        script = fake / tool
        script.write_text(f"#!/bin/sh\necho {tool} \"$@\" >> {log}\nexit 1\n")
        script.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTEST_CURRENT_TEST", "VIRTUAL_ENV", "PYTHONPATH")}
    env["PATH"] = f"{fake}{os.pathsep}{env.get('PATH', '')}"
    env["JUPYTER_PLATFORM_DIRS"] = "1"
    return env, log


def test_wheel_ships_the_prebuilt_labextension_and_installs_without_node(tmp_path):
    """A wheel built and installed with no working Node shows ipykeyguard enabled and OK in `jupyter labextension list`."""
    src = tmp_path / "src"
    shutil.copytree(REPO, src, ignore=SKIP, symlinks=True)
    env, node_log = _no_node_path(tmp_path)
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(src)],
                   check=True, capture_output=True, timeout=600, env=env)
    wheel = next(wheels.glob("ipykeyguard-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    shared = "ipykeyguard-0.1.0.data/data/share/jupyter/labextensions/ipykeyguard/"
    assert shared + "package.json" in names
    assert shared + "install.json" in names
    assert any(n.startswith(shared + "static/remoteEntry.") for n in names)
    assert "ipykeyguard-0.1.0.data/data/etc/jupyter/jupyter_server_config.d/ipykeyguard.json" in names
    assert not any("node_modules" in n for n in names)

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env['PATH']}"
    env["JUPYTER_CONFIG_DIR"] = str(tmp_path / "config")
    env["JUPYTER_DATA_DIR"] = str(tmp_path / "data")
    subprocess.run([str(python), "-m", "pip", "install", "-q", f"{wheel}[jupyter]", "jupyterlab>=4,<5"],
                   check=True, capture_output=True, timeout=900, env=env)
    assert not node_log.exists(), f"Node was called: {node_log.read_text()}"

    lab = subprocess.run([str(venv / "bin" / "jupyter"), "labextension", "list"], capture_output=True, text=True,
                         timeout=120, env=env)
    listing = (lab.stdout + lab.stderr).replace("\x1b[32m", "").replace("\x1b[0m", "")
    assert str(venv / "share" / "jupyter" / "labextensions") in listing
    assert "ipykeyguard v0.1.0 enabled OK (python, ipykeyguard)" in listing, listing
    server = subprocess.run([str(venv / "bin" / "jupyter"), "server", "extension", "list"], capture_output=True,
                            text=True, timeout=120, env=env)
    server_listing = (server.stdout + server.stderr).replace("\x1b[32m", "").replace("\x1b[0m", "")
    assert "ipykeyguard enabled" in server_listing and "ipykeyguard 0.1.0 OK" in server_listing, server_listing
