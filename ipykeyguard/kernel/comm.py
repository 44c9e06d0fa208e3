"""The kernel end of the JupyterLab extension's channel: a comm with target ``ipykeyguard``.

Why a comm: JupyterLab and Notebook 7 apply ``set_next_input(replace=True)`` only when a cell
*succeeded* (JUPYTER-APIS.md §2), so a cell that raised kept its key in the editor. The kernel
now also tells the frontend itself, over a comm, after every cell whose keys it moved::

    {"event": "moved", "cell_id": <the execute_request's metadata cellId>,
     "text": <the rewritten cell>, "names": ["OPENAI_API_KEY"], "store": ".env"}

and the extension applies it to that cell whatever the reply's status. Other messages:

* kernel -> frontend ``{"event": "hello", "store", "mode", "names"}`` when a comm opens (the
  status bar shows "keyguard: on"); a kernel without the guard has no such target, so ipykernel
  closes the frontend's comm at once and the status bar warns.
* frontend -> kernel ``{"action": "reload", "names": [...]}`` after the secrets panel stored a
  value through the server: the kernel re-reads those names from its store into ``os.environ``
  and the output redactor's known values. ``{"action": "forget", "names": [...]}`` after a
  delete. The kernel answers ``{"event": "reloaded", "names": [...]}``.

No message carries a value: only names, the store's label and rewritten code (which reads
``os.environ``). Every message also passes the output guard's ``Session.send`` wrapper.

When the extension loads during a cell (``%load_ext``), the kernel opens a comm towards the page
too, so a notebook that was open already learns that its kernel is now guarded.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any, Callable

from ..engine.findings import fingerprint
from ..storage.origins import record_origin
from ..storage.store import StoreError, is_valid_name

if TYPE_CHECKING:  # pragma: no cover
    from .extension import KeyGuard

__all__ = ["COMM_TARGET", "GuardChannel", "install_channel", "set_secret"]

COMM_TARGET = "ipykeyguard"


def _comm_manager(shell: Any) -> Any | None:
    """The kernel's comm manager, or ``None`` outside a kernel."""
    kernel = getattr(shell, "kernel", None)
    if kernel is None:
        return None
    manager = getattr(kernel, "comm_manager", None)
    if manager is not None:
        return manager
    try:
        import comm  # ipykernel >= 6.25 routes comms through the `comm` package

        return comm.get_comm_manager()
    except (ImportError, AttributeError):
        return None


class GuardChannel:
    """The comms open towards frontends, and what the guard tells them."""

    def __init__(self, guard: "KeyGuard") -> None:
        self._guard = guard
        self._comms: list[Any] = []

    # -- kernel -> frontend -----------------------------------------------------------------------
    def _store_label(self) -> str:
        from .extension import _destination

        return _destination(self._guard.secret_store)

    def hello(self) -> dict:
        """The ``hello`` event: the guard's mode, store and stored names (never values)."""
        try:
            names = sorted(self._guard.secret_store.items())
        except StoreError:
            names = []
        return {"event": "hello", "store": self._store_label(), "mode": self._guard.mode, "names": names}

    def broadcast(self, data: dict) -> None:
        """Send ``data`` on every open comm (one per connected page)."""
        for comm in list(self._comms):
            try:
                comm.send(data)
            except Exception as exc:  # a closed socket must not break the user's cell
                print(f"ipykeyguard: warning: could not notify the frontend ({type(exc).__name__})", file=sys.stderr)
                self._drop(comm)

    def moved(self, cell_id: str | None, text: str, names: list[str]) -> None:
        """Tell the frontends that the cell ``cell_id`` now reads ``text`` (keys ``names`` moved)."""
        self.broadcast(
            {"event": "moved", "cell_id": cell_id, "text": text, "names": list(names), "store": self._store_label()}
        )

    # -- comm lifecycle --------------------------------------------------------------------------
    def adopt(self, comm: Any) -> None:
        """Keep ``comm`` (opened by either side) and listen to it."""
        self._comms.append(comm)
        comm.on_msg(self._on_msg)
        comm.on_close(lambda _msg, comm=comm: self._drop(comm))

    def _drop(self, comm: Any) -> None:
        if comm in self._comms:
            self._comms.remove(comm)

    def on_open(self, comm: Any, _open_msg: dict) -> None:
        """The comm target: a page opened a channel; say hello on it."""
        self.adopt(comm)
        comm.send(self.hello())

    def close_all(self) -> None:
        for comm in list(self._comms):
            try:
                comm.close()
            except Exception as exc:  # the page may be gone; nothing to tell it then
                print(f"ipykeyguard: note: a frontend channel did not close cleanly ({type(exc).__name__})",
                      file=sys.stderr)
        self._comms.clear()

    # -- frontend -> kernel ----------------------------------------------------------------------
    def _on_msg(self, msg: dict) -> None:
        data = (msg.get("content") or {}).get("data") or {}
        action = data.get("action")
        names = [n for n in data.get("names") or [] if isinstance(n, str) and is_valid_name(n)]
        if action == "reload":
            reload_names(self._guard, names)
        elif action == "forget":
            for name in names:
                try:
                    self._guard.forget(name)
                except StoreError as exc:
                    print(f"ipykeyguard: warning: could not forget {name}: {exc}", file=sys.stderr)
        else:
            return  # an action this version does not know: ignored
        self.broadcast({"event": "reloaded", "names": names})


def reload_names(guard: "KeyGuard", names: list[str]) -> None:
    """Re-read ``names`` from the guard's store into ``os.environ`` and the redactor.

    The user just set these names (secrets panel), so a stored value overrides the environment;
    a name the store no longer holds is forgotten.
    """
    try:
        stored = guard.secret_store.items()
    except StoreError as exc:
        print(f"ipykeyguard: warning: cannot read {guard.secret_store.description}: {exc}", file=sys.stderr)
        return
    for name in names:
        value = stored.get(name)
        if value is None:
            os.environ.pop(name, None)
            guard._stored.pop(name, None)
            guard._unknow(name)
            continue
        os.environ[name] = value
        guard._stored[name] = fingerprint(value)
        guard._know(name, value)
    guard._clear_caches()


def set_secret(guard: "KeyGuard", name: str, value: str, *, source: str) -> None:
    """Store ``value`` under ``name`` in the guard's store, ``os.environ`` and the redactor.

    Raises:
        StoreError: the name is invalid or the store could not be written (nothing changed).
    """
    if not is_valid_name(name):
        raise StoreError(f"{name!r} is not a valid environment variable name")
    guard.secret_store.put({name: value})
    record_origin(guard.secret_store, [name], source)
    reload_names(guard, [name])


def install_channel(guard: "KeyGuard") -> Callable[[], None]:
    """Register the comm target and the ``moved`` listener on a kernel's guard.

    Returns:
        The undo function (unregisters the target, closes the comms).
    """
    shell = guard.shell
    manager = _comm_manager(shell)
    if manager is None:
        return lambda: None  # terminal IPython: no frontend to talk to
    channel = GuardChannel(guard)
    manager.register_target(COMM_TARGET, channel.on_open)
    guard.moved_listeners.append(channel.moved)
    guard.channel = channel
    if getattr(shell, "execution_count", 1) > 1 or _in_cell(shell):
        # Loaded by %load_ext: pages already open learn that the kernel is guarded now.
        try:
            from comm import create_comm

            channel.adopt(create_comm(target_name=COMM_TARGET, data=channel.hello()))
        except Exception as exc:  # no page listening is the normal case at start-up
            print(f"ipykeyguard: warning: could not announce the guard ({type(exc).__name__})", file=sys.stderr)

    def undo() -> None:
        channel.close_all()
        if channel.moved in guard.moved_listeners:
            guard.moved_listeners.remove(channel.moved)
        manager.unregister_target(COMM_TARGET, channel.on_open)

    return undo


def _in_cell(shell: Any) -> bool:
    """True while a cell runs (``%load_ext``), false at kernel start-up (config extensions)."""
    kernel = getattr(shell, "kernel", None)
    try:
        parent = kernel.get_parent("shell") if kernel is not None else None
    except (TypeError, AttributeError):
        parent = None
    return bool(parent and parent.get("header", {}).get("msg_type") == "execute_request")


def record_moves(guard: "KeyGuard", names: list[str]) -> None:
    """Note in the origins ledger that the kernel moved ``names`` out of a notebook cell."""
    notebook = os.environ.get("JPY_SESSION_NAME") or ""
    source = f"moved from a cell of {os.path.basename(notebook)}" if notebook else "moved from a cell"
    record_origin(guard.secret_store, names, source)
