"""Nested virtual environments for tests that install ipykeyguard somewhere else.

A nested environment made with ``system_site_packages=True`` sees the *base* interpreter's
packages, not the environment the tests run in (a venv, a conda env or the system interpreter),
so it may lack ipykeyguard's dependencies. Instead, the nested environment gets its own copies of
exactly the distributions it needs, at the versions installed here (so pip takes them from its
cache), installed by this interpreter's pip with ``--python`` (pip >= 22.3) into an environment
made without pip, which keeps creation quick.
"""

from __future__ import annotations

import re
import subprocess
import sys
import venv
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _constraints() -> str:
    """``name==version`` for every distribution installed in this environment, except ipykeyguard."""
    lines = set()
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if not name or re.sub(r"[-_.]+", "-", name).lower() == "ipykeyguard":
            continue
        lines.add(f"{name}=={dist.version}")
    return "\n".join(sorted(lines)) + "\n"


def make_env(path: Path, *requirements: str, pinned: bool = True) -> Path:
    """Create a virtual environment at ``path`` holding ``requirements`` and their dependencies.

    Args:
        path: where to create the environment.
        requirements: pip requirement specifiers or paths (a wheel, or ``REPO`` for the source tree).
        pinned: Constrain every distribution installed here to this environment's version (quick,
            from pip's cache); ``False`` for requirements that conflict with this environment.

    Returns:
        The environment's python executable.

    Raises:
        subprocess.CalledProcessError: pip could not install them (its output is in the error).
    """
    venv.EnvBuilder(with_pip=False).create(path)
    python = path / "bin" / "python"
    constraints = path / "constraints.txt"
    constraints.write_text(_constraints(), encoding="utf-8")
    if requirements:
        subprocess.run(
            [sys.executable, "-m", "pip", "--python", str(python), "install", "-q",
             "--disable-pip-version-check", *(["-c", str(constraints)] if pinned else []), *requirements],
            check=True, capture_output=True, text=True, timeout=900,
        )
    return python
