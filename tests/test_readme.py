"""A newcomer who copies the README's commands gets what the README promises.

The commands are read from README.md, not restated here, so the test follows the README when it
changes. They run as written, through ``bash -c``, in a fresh virtual environment (``python -m
venv``, no system site-packages; pip gets the dependencies from the package index) whose
``bin`` is first on PATH, in a copy of this working tree (uncommitted files included; ``.git``,
caches and benchmark corpora left out). The environment is built once for the module.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from fakekeys import openai_project_key
from kernelharness import RealKernel

from ipykeyguard.engine.findings import fingerprint

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
# make_leaky.py gives every fake key the word FAKE where its format leaves room.
FAKE_TOKEN = re.compile(r"[A-Za-z0-9_\-+/.:]*FAKE[A-Za-z0-9_\-+/.]*")
NOT_COPIED = {".git", "test-artifacts", ".hypothesis", ".pytest_cache", ".ruff_cache", ".benchmarks",
              "__pycache__", "build", "dist", ".ipynb_checkpoints", ".env", "node_modules"}
NOT_COPIED_PATHS = {Path("benchmarks/_corpus"), Path("benchmarks/_out")}


def section(title: str) -> str:
    """The text of the README section headed ``## <title>`` (up to the next ``##`` heading)."""
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", README.read_text(encoding="utf-8"),
                      re.MULTILINE | re.DOTALL)
    assert match, f"README.md has no '## {title}' section"
    return match.group(1)


def shell_commands(text: str) -> list[str]:
    """The shell commands of a README section, in order: indented code lines and lines of
    ``bash``/``sh``/``console``/unlabelled fenced blocks (Python blocks are not shell), with
    trailing ``# comments`` dropped."""
    commands: list[str] = []
    fence: str | None = None
    for line in text.splitlines():
        if line.startswith("```"):
            fence = None if fence is not None else (line[3:].strip() or "sh")
            continue
        if fence is not None:
            command = line if fence in ("sh", "bash", "shell", "console") else ""
        else:
            command = line[4:] if line.startswith("    ") else ""
        command = re.sub(r"\s+#.*$", "", command).strip()
        if command:
            commands.append(command)
    return commands


def leaky_keys() -> set[str]:
    return set(FAKE_TOKEN.findall((REPO / "example_notebooks" / "leaky.ipynb").read_text(encoding="utf-8")))


def _ignore(directory: str, names: list[str]) -> set[str]:
    relative = Path(directory).resolve().relative_to(REPO)
    return {n for n in names
            if n in NOT_COPIED or n.endswith((".egg-info", ".pyc")) or relative / n in NOT_COPIED_PATHS}


class Newcomer:
    """A fresh venv and a copy of the repository, and a way to run README commands in them."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.repo = root / "ipykeyguard"
        self.venv = root / "venv"
        self.home = root / "home"
        self.ipython_dir = root / "ipython"
        shutil.copytree(REPO, self.repo, ignore=_ignore, symlinks=True)
        self.home.mkdir()
        subprocess.run([sys.executable, "-m", "venv", str(self.venv)], check=True, timeout=300)
        self.python = self.venv / "bin" / "python"

    def env(self) -> dict[str, str]:
        """The environment of a shell in which the venv is active (and nothing of pytest's)."""
        env = {k: v for k, v in os.environ.items()
               if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTEST_CURRENT_TEST", "PYTEST_ADDOPTS")}
        env["VIRTUAL_ENV"] = str(self.venv)
        env["PATH"] = f"{self.venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        env["IPYTHONDIR"] = str(self.ipython_dir)
        env["JUPYTER_PLATFORM_DIRS"] = "1"
        return env

    def run(self, command: str, timeout: float = 600) -> subprocess.CompletedProcess:
        """Run ``command`` exactly as written, in the repository copy."""
        return subprocess.run(["bash", "-c", command], cwd=self.repo, env=self.env(), capture_output=True,
                              text=True, timeout=timeout, check=False)


@pytest.fixture(scope="module")
def newcomer(tmp_path_factory) -> Newcomer:
    """A fresh venv and repository copy, shared by this module's tests."""
    return Newcomer(tmp_path_factory.mktemp("newcomer"))


@pytest.fixture(scope="module")
def setup_result(newcomer: Newcomer) -> subprocess.CompletedProcess:
    """The README's first set-up command, run once in the fresh venv."""
    return newcomer.run(shell_commands(section("Set up"))[0])


def test_readme_set_up_lists_install_and_scan_then_the_ci_command():
    """The Set up section gives exactly two commands: install and scan the leaky example, then
    `bash .ci/run`, and .ci/run really runs pytest."""
    commands = shell_commands(section("Set up"))
    assert commands == [
        "pip install . && ipykeyguard scan --isolated example_notebooks/leaky.ipynb",
        "bash .ci/run",
    ]
    ci_lines = [line.strip() for line in (REPO / ".ci" / "run").read_text(encoding="utf-8").splitlines()
                if line.strip() and not line.strip().startswith("#")]
    assert any(re.match(r"(.*\s)?python -m pytest\b", line) for line in ci_lines)


def test_first_set_up_command_installs_and_scan_reports_the_leaky_notebook(setup_result):
    """In a fresh venv the first Set up command installs the package and its scan reports the
    leaky notebook's findings with exit status 1, without printing any of its keys."""
    output = setup_result.stdout + setup_result.stderr
    keys = leaky_keys()
    assert len(keys) >= 9
    assert not [k for k in keys if k in output], "a leaky key was printed"
    assert "Successfully installed" in setup_result.stdout, setup_result.stderr[-2000:]
    assert setup_result.returncode == 1, setup_result.stderr[-2000:]
    findings = [line for line in setup_result.stdout.splitlines()
                if line.startswith("example_notebooks/leaky.ipynb: ")]
    assert len(findings) >= 9, "the scan did not list the leaky notebook's findings"
    assert "openai-api-key (certain)" in setup_result.stdout


def test_installed_scan_uses_the_venv_package(newcomer, setup_result):
    """The `ipykeyguard` that ran is the venv's own console script, importing the venv's copy."""
    assert setup_result.returncode == 1
    done = newcomer.run("command -v ipykeyguard && cd / && python -c 'import ipykeyguard; print(ipykeyguard.__file__)'")
    script, module = done.stdout.split()
    assert Path(script) == newcomer.venv / "bin" / "ipykeyguard"
    assert Path(module).is_relative_to(newcomer.venv)


class VenvKernel(RealKernel):
    """A RealKernel whose kernelspec runs the newcomer venv's python."""

    def __init__(self, python: Path, kernels_dir: Path, *, env: dict[str, str], **kwargs) -> None:
        super().__init__(env=env, **kwargs)
        # Exactly the newcomer's shell environment (RealKernel starts from this process's).
        self._env = {**env, "IPYTHONDIR": str(self.ipython_dir)}
        spec = kernels_dir / "newcomer"
        spec.mkdir(parents=True, exist_ok=True)
        (spec / "kernel.json").write_text(json.dumps({
            "argv": [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "newcomer venv", "language": "python",
        }), encoding="utf-8")
        self._kernels_dir = kernels_dir

    def start(self) -> VenvKernel:
        from jupyter_client.kernelspec import KernelSpecManager
        from jupyter_client.manager import KernelManager

        self.km = KernelManager(kernel_name="newcomer",
                                kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(self._kernels_dir)]))
        self.km.start_kernel(cwd=str(self.cwd), env=self._env)
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=self._startup_timeout)
        self.drain()
        return self


def test_newcomer_reaches_a_guarded_notebook(newcomer, setup_result):
    """Following the quick start (install the kernel extra, `ipykeyguard enable`) guards a new
    kernel of the venv with no cell of set-up: a pasted key cell is rewritten, the key lands in
    .env beside the notebook, and printing it shows the mask."""
    assert setup_result.returncode == 1, "the Set up command failed; see the test above"
    quick_start = shell_commands(section("30-second quick start"))
    installs = [c for c in quick_start if c.startswith("pip install")]
    assert installs, "the quick start does not say how to install the kernel guard"
    assert "[kernel]" in installs[0], "the quick start's install does not bring the kernel extra"
    enables = [c for c in quick_start if c.startswith("ipykeyguard enable")]
    assert enables, "the quick start does not show `ipykeyguard enable`"

    for command in (installs[0], enables[0]):
        done = newcomer.run(command)
        assert done.returncode == 0, f"{command!r} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}"
    config = (newcomer.ipython_dir / "profile_default" / "ipython_config.py").read_text(encoding="utf-8")
    assert "ipykeyguard" in config

    notebooks = newcomer.root / "notebooks"
    notebooks.mkdir()
    env = newcomer.env()
    env.pop("OPENAI_API_KEY", None)
    key = openai_project_key()
    kernel = VenvKernel(newcomer.python, newcomer.root / "kernels", cwd=notebooks,
                        ipython_dir=newcomer.ipython_dir, env=env)
    with kernel:
        where = kernel.value("[__import__('sys').prefix, __import__('ipykeyguard').__file__]")
        assert Path(where[0]) == newcomer.venv
        assert Path(where[1]).is_relative_to(newcomer.venv)

        pasted = kernel.run(f'client_key = "{key}"\nlen(client_key)')
        assert pasted.status == "ok"
        assert pasted.replaced_source is not None
        assert 'os.environ["OPENAI_API_KEY"]' in pasted.replaced_source
        assert "moved 1 key (OPENAI_API_KEY)" in pasted.stdout
        assert key not in pasted.wire_text(), "key leaked to the frontend"

        shown = kernel.run("print(client_key)")
        assert shown.stdout.strip() == "[secret:OPENAI_API_KEY]"
        assert key not in shown.wire_text(), "key leaked to the frontend"

    dotenv = (notebooks / ".env").read_text(encoding="utf-8")
    assert "OPENAI_API_KEY" in dotenv
    stored = re.search(r"^OPENAI_API_KEY=['\"]?([^'\"\n]+)", dotenv, re.MULTILINE)
    assert stored and fingerprint(stored.group(1)) == fingerprint(key)
    assert oct((notebooks / ".env").stat().st_mode & 0o777) == "0o600"
