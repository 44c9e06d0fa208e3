"""A real IPython kernel for tests, started with jupyter_client, and the raw messages it sends.

Usage::

    with RealKernel(cwd=tmp_path) as k:
        r = k.run("print(1)")
        assert r.stdout == "1\\n"
        assert r.reply["status"] == "ok"

Every kernel gets its own IPYTHONDIR (so ``history.sqlite`` is the test's own) and working
directory. ``PYTEST_CURRENT_TEST`` is removed from its environment, because ipykernel turns off
fd-level output capture when it sees that variable.
"""

from __future__ import annotations

import json
import os
import queue
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jupyter_client.manager import KernelManager


@dataclass
class Execution:
    """What one ``execute_request`` produced: the shell reply and every iopub message of it."""

    reply: dict
    messages: list[dict] = field(default_factory=list)

    @property
    def content(self) -> dict:
        return self.reply["content"]

    @property
    def status(self) -> str:
        return self.reply["content"]["status"]

    def of_type(self, *types: str) -> list[dict]:
        return [m for m in self.messages if m["msg_type"] in types]

    def stream(self, name: str | None = None) -> str:
        """The concatenated text of the stream messages (all, or ``stdout``/``stderr``)."""
        return "".join(
            m["content"]["text"]
            for m in self.of_type("stream")
            if name is None or m["content"]["name"] == name
        )

    @property
    def stdout(self) -> str:
        return self.stream("stdout")

    @property
    def stderr(self) -> str:
        return self.stream("stderr")

    @property
    def payload(self) -> list[dict]:
        return self.reply["content"].get("payload", [])

    @property
    def replaced_source(self) -> str | None:
        """The text of a ``set_next_input(replace=True)`` payload, if any."""
        for p in self.payload:
            if p.get("source") == "set_next_input" and p.get("replace"):
                return p["text"]
        return None

    def wire_text(self) -> str:
        """Every string in every message (iopub and the reply): what a frontend could see."""
        import json

        return json.dumps([m["content"] for m in self.messages] + [self.reply["content"]], ensure_ascii=False)


class RealKernel:
    """A python3 (ipykernel) kernel in a subprocess, with blocking helpers for tests."""

    def __init__(
        self,
        cwd: str | os.PathLike,
        *,
        ipython_dir: str | os.PathLike | None = None,
        env: dict[str, str] | None = None,
        extra_arguments: list[str] | None = None,
        startup_timeout: float = 60,
        python: str | os.PathLike | None = None,
    ) -> None:
        self.cwd = Path(cwd)
        self._python = python  # another environment's interpreter (tests/nestedenv.py), else ours
        self.ipython_dir = Path(ipython_dir) if ipython_dir else self.cwd / ".ipython-test"
        self.ipython_dir.mkdir(parents=True, exist_ok=True)
        kernel_env = {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}
        kernel_env["IPYTHONDIR"] = str(self.ipython_dir)
        kernel_env["PYTHONUNBUFFERED"] = "1"
        kernel_env.setdefault("JUPYTER_PLATFORM_DIRS", "1")
        if env:
            kernel_env.update(env)
        self._env = kernel_env
        self._extra = list(extra_arguments or [])
        self._startup_timeout = startup_timeout
        self.km: KernelManager | None = None
        self.kc = None

    # -- lifecycle ----------------------------------------------------------------------------
    def _kernel_manager(self) -> KernelManager:
        if self._python is None:
            return KernelManager(kernel_name="python3")
        from jupyter_client.kernelspec import KernelSpecManager

        specs = self.ipython_dir / "kernelspecs"
        (specs / "nested").mkdir(parents=True, exist_ok=True)
        (specs / "nested" / "kernel.json").write_text(json.dumps({
            "argv": [str(self._python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "nested", "language": "python"}))
        ksm = KernelSpecManager(kernel_dirs=[str(specs)], ensure_native_kernel=False)
        return KernelManager(kernel_name="nested", kernel_spec_manager=ksm)

    def start(self) -> "RealKernel":
        self.km = self._kernel_manager()
        self.km.start_kernel(
            cwd=str(self.cwd),
            env=self._env,
            extra_arguments=self._extra,
        )
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=self._startup_timeout)
        self.drain()
        return self

    def restart(self) -> None:
        assert self.km is not None and self.kc is not None
        self.km.restart_kernel(now=True)
        self.kc.wait_for_ready(timeout=self._startup_timeout)
        self.drain()

    def stop(self) -> None:
        if self.kc is not None:
            self.kc.stop_channels()
        if self.km is not None and self.km.is_alive():
            self.km.shutdown_kernel(now=True)
        self.km = self.kc = None

    def __enter__(self) -> "RealKernel":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- talking to it ------------------------------------------------------------------------
    def drain(self, wait: float = 0.2) -> list[dict]:
        """Read and return whatever iopub messages are pending."""
        out = []
        deadline = time.monotonic() + wait
        while True:
            try:
                out.append(self.kc.get_iopub_msg(timeout=max(0.01, deadline - time.monotonic())))
            except queue.Empty:
                return out

    def run(self, code: str, *, timeout: float = 60, silent: bool = False, allow_stdin: bool = False) -> Execution:
        """Execute ``code`` and collect the reply plus every iopub message up to ``idle``."""
        msg_id = self.kc.execute(code, silent=silent, store_history=not silent, allow_stdin=allow_stdin)
        messages: list[dict] = []
        deadline = time.monotonic() + timeout
        idle = False
        while not idle:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"kernel did not go idle within {timeout}s")
            try:
                msg = self.kc.get_iopub_msg(timeout=remaining)
            except queue.Empty:
                continue
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            messages.append(msg)
            if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                idle = True
        reply = self.kc.get_shell_msg(timeout=max(1.0, deadline - time.monotonic()))
        while reply["parent_header"].get("msg_id") != msg_id:
            reply = self.kc.get_shell_msg(timeout=max(1.0, deadline - time.monotonic()))
        return Execution(reply=reply, messages=messages)

    def ok(self, code: str, **kw: Any) -> Execution:
        """Run ``code`` and fail the test (with the kernel's error) unless it succeeded."""
        ex = self.run(code, **kw)
        if ex.status != "ok":
            raise AssertionError(f"cell failed: {ex.content.get('ename')}: {ex.content.get('evalue')}\n{ex.stderr}")
        return ex

    def value(self, expr: str) -> Any:
        """Evaluate ``expr`` in the kernel and return it (it must be a JSON-able value)."""
        import json

        ex = self.ok(f"import json as _kh_json; print(_kh_json.dumps({expr}))", silent=False)
        return json.loads(ex.stdout.strip().splitlines()[-1])

    def history(self, raw: bool = True) -> list[tuple]:
        """The kernel's ``history_request`` reply (what a frontend's up-arrow sees)."""
        msg_id = self.kc.history(raw=raw, output=False, hist_access_type="tail", n=1000)
        reply = self.kc.get_shell_msg(timeout=30)
        while reply["parent_header"].get("msg_id") != msg_id:
            reply = self.kc.get_shell_msg(timeout=30)
        return [tuple(h) for h in reply["content"]["history"]]


def python_executable() -> str:
    return sys.executable
