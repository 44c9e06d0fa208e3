"""`ipykeyguard enable` / `disable`: every IPython kernel and terminal loads the guard."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from fakekeys import openai_project_key
from nestedenv import REPO, make_env
from ipykeyguard.cli.enable import BEGIN_MARKER, END_MARKER, add_block, config_block, remove_block
from ipykeyguard.cli import CLIError

USER_CONFIG = "c = get_config()\nc.InteractiveShellApp.exec_lines = ['ENABLE_MARKER = 41 + 1']\n"


def cli(*args: str, env: dict | None = None, python: str = sys.executable) -> subprocess.CompletedProcess:
    return subprocess.run([python, "-m", "ipykeyguard", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=120)


@pytest.fixture(scope="module")
def guarded_env(tmp_path_factory):
    """A separate virtual environment with ipykeyguard and IPython installed in it (not borrowed
    from this one), for the --sys-prefix tests; each test leaves its config as it found it."""
    env_dir = tmp_path_factory.mktemp("nested") / "venv"
    python = make_env(env_dir, f"{REPO}[kernel]")
    return env_dir, str(python)


@pytest.mark.parametrize("original", ["", USER_CONFIG, "c.X.y = 1", f"{USER_CONFIG}\n# end\n"])
def test_block_round_trip_keeps_the_user_config(original):
    """Adding then removing the block gives back the user's text; adding twice adds it once."""
    added = add_block(original)
    assert added.count(BEGIN_MARKER) == 1 and added.endswith(config_block())
    assert add_block(added) == added
    removed = remove_block(added)
    assert removed == original or (removed == original + "\n" and not original.endswith("\n"))
    assert remove_block(removed) == removed


def test_unbalanced_markers_are_refused():
    """A file with a begin marker but no end marker is not touched."""
    with pytest.raises(CLIError):
        remove_block(f"x = 1\n{BEGIN_MARKER}\nc.A.b = 2\n")
    with pytest.raises(CLIError):
        add_block(f"{END_MARKER}\n")


def test_enable_and_disable_are_idempotent_and_restore_the_file(tmp_path):
    """`enable` twice writes one block and leaves the second run byte-identical; `disable`
    restores the user's config exactly and deletes a file that held only our block."""
    ipython_dir = tmp_path / "ipython"
    user_file = ipython_dir / "profile_default" / "ipython_config.py"
    user_file.parent.mkdir(parents=True)
    user_file.write_text(USER_CONFIG)
    kernel_file = user_file.with_name("ipython_kernel_config.py")

    first = cli("enable", "--ipython-dir", str(ipython_dir))
    assert first.returncode == 0, first.stderr
    after_first = (user_file.read_bytes(), kernel_file.read_bytes())
    second = cli("enable", "--ipython-dir", str(ipython_dir))
    assert second.returncode == 0 and "already enabled" in second.stdout
    assert (user_file.read_bytes(), kernel_file.read_bytes()) == after_first
    assert user_file.read_text().startswith(USER_CONFIG)

    off = cli("disable", "--ipython-dir", str(ipython_dir))
    assert off.returncode == 0, off.stderr
    assert user_file.read_text() == USER_CONFIG
    assert not kernel_file.exists()
    assert "not enabled" in cli("disable", "--ipython-dir", str(ipython_dir)).stdout


def test_unbalanced_file_is_a_cli_error(tmp_path):
    """`disable` on a hand-broken block exits 2 with `ipykeyguard: error:` and changes nothing."""
    config = tmp_path / "profile_default" / "ipython_config.py"
    config.parent.mkdir(parents=True)
    config.write_text(f"{BEGIN_MARKER}\nc.A.b = 1\n")
    result = cli("disable", "--ipython-dir", str(tmp_path))
    assert result.returncode == 2 and "ipykeyguard: error:" in result.stderr
    assert config.read_text() == f"{BEGIN_MARKER}\nc.A.b = 1\n"


@pytest.mark.kernel
def test_enabled_kernel_guards_without_load_ext(kernel, ipython_dir):
    """After `enable` (IPYTHONDIR), a fresh kernel moves a pasted key with no `%load_ext`,
    and the user's own config still applies; after `disable` a new kernel is unguarded."""
    (ipython_dir / "profile_default" / "ipython_config.py").write_text(USER_CONFIG)
    assert cli("enable", env={"IPYTHONDIR": str(ipython_dir)}).returncode == 0
    key = openai_project_key()
    k = kernel()
    assert k.value("ENABLE_MARKER") == 42
    ex = k.ok(f'token = "{key}"')
    assert "ipykeyguard: moved 1 key (OPENAI_API_KEY)" in ex.stdout
    assert ex.replaced_source is not None and key not in ex.replaced_source
    assert key in (k.cwd / ".env").read_text()
    k.stop()

    assert cli("disable", env={"IPYTHONDIR": str(ipython_dir)}).returncode == 0
    fresh = kernel()
    assert fresh.value("hasattr(get_ipython(), '_ipykeyguard_state')") is False
    assert fresh.value("ENABLE_MARKER") == 42


def test_enabled_terminal_loads_the_guard(tmp_path):
    """After `enable`, terminal IPython loads the guard too (no `--ext` needed)."""
    ipython_dir = tmp_path / "ipython"
    env = {"IPYTHONDIR": str(ipython_dir)}
    assert cli("enable", env=env).returncode == 0
    code = "print('GUARD', 'keyguard' in get_ipython().magics_manager.magics['line'])"
    out = subprocess.run(["ipython", "--simple-prompt", "-c", code], cwd=tmp_path, capture_output=True,
                         text=True, env={**os.environ, **env}, timeout=120)
    assert "GUARD True" in out.stdout, out.stderr[-2000:]


def test_sys_prefix_enables_every_ipython_of_the_environment(tmp_path, guarded_env):
    """`enable --sys-prefix` in a virtual environment writes {prefix}/etc/ipython/ipython_config.py,
    which that environment's IPython reads whatever the user's IPYTHONDIR; `disable` removes it."""
    env_dir, python = guarded_env
    result = cli("enable", "--sys-prefix", python=python)
    assert result.returncode == 0, result.stderr
    config = env_dir / "etc" / "ipython" / "ipython_config.py"
    assert config.is_file() and BEGIN_MARKER in config.read_text()
    code = "print('GUARD', 'keyguard' in get_ipython().magics_manager.magics['line'])"
    out = subprocess.run([python, "-m", "IPython", "--simple-prompt", "-c", code], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120,
                         env={**os.environ, "IPYTHONDIR": str(tmp_path / "empty-ipython")})
    assert "GUARD True" in out.stdout, out.stderr[-2000:]
    assert cli("disable", "--sys-prefix", python=python).returncode == 0
    assert not config.exists()


@pytest.mark.kernel
def test_enable_extends_an_assigned_ipkernelapp_extensions_list(kernel, ipython_dir):
    """A user config that assigns c.IPKernelApp.extensions (which kernels prefer over
    InteractiveShellApp.extensions) still gets the guard, and the user's extension still loads."""
    (ipython_dir / "profile_default" / "ipython_config.py").write_text(
        "c = get_config()\nc.IPKernelApp.extensions = ['autoreload']\n")
    result = cli("enable", env={"IPYTHONDIR": str(ipython_dir)})
    assert result.returncode == 0 and "warning" not in result.stderr, result.stderr
    k = kernel()
    loaded = k.value("sorted(get_ipython().extension_manager.loaded)")
    assert "ipykeyguard" in loaded and "IPython.extensions.autoreload" in loaded
    key = openai_project_key()
    assert "ipykeyguard: moved 1 key (OPENAI_API_KEY)" in k.ok(f'token = "{key}"').stdout


def test_enable_extends_an_assigned_terminal_extensions_list(tmp_path):
    """The same for c.TerminalIPythonApp.extensions in terminal IPython."""
    ipython_dir = tmp_path / "ipython"
    (ipython_dir / "profile_default").mkdir(parents=True)
    (ipython_dir / "profile_default" / "ipython_config.py").write_text(
        "c = get_config()\nc.TerminalIPythonApp.extensions = ['autoreload']\n")
    env = {"IPYTHONDIR": str(ipython_dir)}
    assert cli("enable", env=env).returncode == 0
    code = "print('LOADED', sorted(get_ipython().extension_manager.loaded))"
    out = subprocess.run(["ipython", "--simple-prompt", "-c", code], cwd=tmp_path, capture_output=True,
                         text=True, env={**os.environ, **env}, timeout=120)
    assert "'ipykeyguard'" in out.stdout and "autoreload" in out.stdout, out.stderr[-2000:]


def test_enable_warns_about_a_lazy_app_extensions_change(tmp_path):
    """A config that appends to c.IPKernelApp.extensions (which, with our block, makes traitlets
    hang the kernel at start) gets a warning saying to assign a list instead."""
    ipython_dir = tmp_path / "ipython"
    kernel_file = ipython_dir / "profile_default" / "ipython_kernel_config.py"
    kernel_file.parent.mkdir(parents=True)
    kernel_file.write_text("c = get_config()\nc.IPKernelApp.extensions.append('autoreload')\n")
    result = cli("enable", "--ipython-dir", str(ipython_dir))
    assert result.returncode == 0
    assert "warning" in result.stderr and "c.IPKernelApp.extensions = [...]" in result.stderr
    assert str(kernel_file) in result.stderr


def test_sys_prefix_warns_about_an_assignment_in_the_user_profile(tmp_path, guarded_env):
    """With --sys-prefix, an extensions assignment in the user's profile (read later, so it wins)
    is reported."""
    env_dir, python = guarded_env
    ipython_dir = tmp_path / "ipython"
    (ipython_dir / "profile_default").mkdir(parents=True)
    (ipython_dir / "profile_default" / "ipython_config.py").write_text(
        "c = get_config()\nc.InteractiveShellApp.extensions = ['autoreload']\n")
    result = cli("enable", "--sys-prefix", "--ipython-dir", str(ipython_dir), python=python)
    assert result.returncode == 0 and "InteractiveShellApp.extensions" in result.stderr, result.stderr
    assert cli("disable", "--sys-prefix", python=python).returncode == 0
