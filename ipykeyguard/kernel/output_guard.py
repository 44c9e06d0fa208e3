"""IPython / ipykernel glue of the output guard: every outgoing text passes the redactor.

In a kernel the guard wraps ``shell.kernel.session.send`` on the instance. That method is the
one choke point every message goes through, on every channel - streams (sent from the IOPub
thread, whatever thread printed), ``display_data``, ``update_display_data``, ``execute_result``,
``error``, ``execute_input``, widget ``comm_*`` traffic and ``debug_event`` on iopub; the
``execute_reply``, ``inspect_reply``, ``complete_reply``, ``history_reply``,
``kernel_info_reply`` and ``debug_reply`` replies; ``input_request`` prompts on stdin - whereas
``OutStream``, ``display_pub`` and ``displayhook`` hooks are thread-local and miss
``execute_reply.evalue`` (see JUPYTER-APIS.md section 3). docs/KERNEL-MESSAGES.md lists each
type, field and test. Stream text additionally goes through hold-back, so a known value printed
in pieces across flushes is still masked, and before each message an
:class:`EnvironmentFollower` registers secret-like variables the user's code put in
``os.environ`` since the last one.

In terminal IPython (no kernel) everything IPython prints ends in ``sys.stdout`` /
``sys.stderr``, so the guard replaces both with a redacting writer. Replacing the object (not
patching its ``write``) survives IPython's per-cell ``_tee``, which saves and restores the
``write`` attribute of whatever ``sys.stdout`` is at the start of each cell.

The redaction itself is pure and lives in :mod:`ipykeyguard.transforms.redact`.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from typing import Any, Callable

from ..transforms.redact import WITHHELD_NOTICE, Redactor, StreamRedactor, secret_like_env

__all__ = ["install_output_guard", "EnvironmentFollower"]

log = logging.getLogger("ipykeyguard.output")

# The fields holding text a frontend shows, per message type, on every channel (iopub, shell,
# control, stdin); docs/KERNEL-MESSAGES.md lists each with the test that covers it. Protocol
# fields (status, execution_count, transient display ids, comm ids and target names, cursor
# positions, debugger sequence numbers) are never touched, nor are binary buffers (widgets).
# Of the execute_reply ``payload`` only pages (``obj?`` run as a cell) are redacted: a
# ``set_next_input`` payload is cell text the input guard already rewrote, and masking code in
# it would break the cell.
_REDACTED_FIELDS: dict[str, tuple[str, ...]] = {
    # iopub
    "stream": ("text",),
    "display_data": ("data", "metadata"),
    "update_display_data": ("data", "metadata"),
    "execute_result": ("data", "metadata"),
    "error": ("ename", "evalue", "traceback"),
    "execute_input": ("code",),
    "comm_open": ("data", "metadata"),
    "comm_msg": ("data", "metadata"),
    "comm_close": ("data", "metadata"),
    "debug_event": ("body",),
    # shell and control replies
    "execute_reply": ("ename", "evalue", "traceback", "user_expressions", "payload"),
    "inspect_reply": ("data", "metadata"),
    "complete_reply": ("matches", "metadata"),
    "history_reply": ("history",),
    "kernel_info_reply": ("banner",),
    "debug_reply": ("body", "message"),
    # stdin
    "input_request": ("prompt",),
}
# Messages that never release held stream text: widget traffic may interleave with prints.
_NO_FLUSH_TYPES = frozenset({"stream", "comm_open", "comm_msg", "comm_close"})


def install_output_guard(
    shell: Any,
    redactor: Redactor,
    *,
    know: Callable[[str, str], None] | None = None,
    environ: Any = None,
) -> Callable[[], None]:
    """Redact every output of ``shell`` with ``redactor`` until the returned function is called.

    In a kernel (``shell.kernel.session`` exists) the session's ``send`` is wrapped; in terminal
    IPython ``sys.stdout`` and ``sys.stderr`` are replaced by redacting writers. Works the same
    whether called from ``%load_ext`` or at start-up. Before each message (kernel) or write
    (terminal) an :class:`EnvironmentFollower` checks whether the user's code changed
    ``os.environ``, so a secret-like variable set by a cell is masked from its next output on,
    even when that output is the first half of the value.

    Args:
        shell: The running ``InteractiveShell``.
        redactor: Holds the known values and rules; shared with the rest of the extension, so
            values added later are masked too.
        know: Called with ``(name, value)`` for each secret-like variable the user's code sets
            or changes (the extension passes its own, which honours the allow-list); by default
            ``redactor.add_known``.
        environ: The environment to follow (``os.environ`` by default).

    Returns:
        The uninstall function. It restores exactly what was there (or, when something else
        has wrapped the same object since, turns the guard into a pass-through), releases any
        held-back text, and may be called more than once.
    """
    follower = EnvironmentFollower(know or redactor.add_known, os.environ if environ is None else environ,
                                   is_known=redactor.is_known)
    session = getattr(getattr(shell, "kernel", None), "session", None)
    if session is not None and callable(getattr(session, "send", None)):
        return _SessionSendGuard(session, redactor, follower).install()
    return _TerminalGuard(shell, redactor, follower).install()


class EnvironmentFollower:
    """Tells the redactor about secret-like environment variables the user's code sets later.

    The extension registers ``os.environ``'s secret-like variables when it loads; a cell that
    then runs ``os.environ["X_TOKEN"] = k`` and prints ``k`` in two pieces would pass the
    hold-back, which only knows values it was told about. :meth:`check` runs before every
    message the kernel sends (and every terminal write): when nothing changed it costs one
    comparison of the environment's mapping with a snapshot (the values are the same objects,
    so it is an identity check per variable, about a microsecond for 100 variables); when
    something changed, only the changed variables are decoded and judged. A value once known
    stays known: a variable deleted or overwritten does not make its old value public, so an
    overwritten value stays masked under ``NAME_PREVIOUS``.

    A value that is already known (``%env COPY_TOKEN=$MY_TOKEN``, a moved key the extension
    put in ``os.environ`` itself) keeps the mask it has.

    Args:
        know: Called with ``(name, value)`` for a secret-like variable set or changed.
        environ: ``os.environ`` (or any mapping; ``os._Environ``'s raw ``_data`` is compared
            when there is one, which spares decoding every variable).
        is_known: Tells whether a value is known already (then ``know`` is not called).
    """

    def __init__(self, know: Callable[[str, str], None], environ: Any,
                 is_known: Callable[[str], bool] | None = None) -> None:
        self._know = know
        self._is_known = is_known or (lambda value: False)
        self._environ = environ
        raw = getattr(environ, "_data", None)
        self._raw = raw if isinstance(raw, dict) else None
        self._lock = threading.Lock()
        self._snapshot = self._copy()
        self._errors = _OnceLogger()

    def _copy(self) -> dict:
        return dict(self._raw) if self._raw is not None else dict(self._environ)

    def check(self) -> None:
        """Register the secret-like variables set or changed since the last check; never raises."""
        try:
            current = self._raw if self._raw is not None else self._environ
            if current == self._snapshot:
                return
            with self._lock:
                old, new = self._snapshot, self._copy()
                self._snapshot = new
            changed = {key: value for key, value in new.items() if old.get(key) is not value and old.get(key) != value}
            if not changed:
                return
            decode_key = getattr(self._environ, "decodekey", None)
            decode_value = getattr(self._environ, "decodevalue", None)
            named = {}
            for key, value in changed.items():
                name = decode_key(key) if self._raw is not None and decode_key else key
                text = decode_value(value) if self._raw is not None and decode_value else value
                if isinstance(name, str) and isinstance(text, str):
                    named[name] = text
            for name, value in secret_like_env(named).items():
                if self._is_known(value):
                    continue
                previous = old.get(_raw_key(self._environ, name) if self._raw is not None else name)
                if previous is not None:
                    text = decode_value(previous) if self._raw is not None and decode_value else previous
                    if isinstance(text, str) and secret_like_env({name: text}):
                        self._know(f"{name}_PREVIOUS", text)
                self._know(name, value)
        except Exception as exc:  # the guard keeps working with what it knew
            self._errors.failure("following os.environ", exc)


def _raw_key(environ: Any, name: str) -> Any:
    encode = getattr(environ, "encodekey", None)
    return encode(name) if encode else name


class _OnceLogger:
    """Logs a guard failure once; the traceback is omitted because it may quote the output."""

    def __init__(self) -> None:
        self._logged = False
        self._lock = threading.Lock()

    def failure(self, where: str, exc: BaseException) -> None:
        with self._lock:
            if self._logged:
                return
            self._logged = True
        log.error("ipykeyguard: output guard failed in %s (%s); the output was withheld", where, type(exc).__name__)


# --------------------------------------------------------------------------------------------
# Kernel: Session.send wrapper
# --------------------------------------------------------------------------------------------
class _SessionSendGuard:
    """The wrapper around one ``Session.send``, with hold-back state per (parent, stream)."""

    def __init__(self, session: Any, redactor: Redactor, follower: EnvironmentFollower | None = None) -> None:
        self._session = session
        self._redactor = redactor
        self._follower = follower
        self._streams = StreamRedactor(redactor)
        self._original: Callable[..., Any] = session.send
        # Restored verbatim on uninstall: an instance attribute (someone's wrapper) or nothing.
        self._had_instance_send = "send" in vars(session)
        self._previous_instance_send = vars(session).get("send")
        self._active = True
        # Makes "release held text, then send" atomic with respect to other threads, so held
        # text cannot be overtaken by the next piece of the same stream.
        self._order = threading.RLock()
        self._errors = _OnceLogger()
        self._wrapper = self._make_wrapper()

    def install(self) -> Callable[[], None]:
        self._session.send = self._wrapper
        return self.uninstall

    def uninstall(self) -> None:
        """Restore the session's ``send`` and release any held text; idempotent."""
        if not self._active:
            return
        with self._order:
            self._active = False
            if vars(self._session).get("send") is self._wrapper:
                if self._had_instance_send:
                    self._session.send = self._previous_instance_send
                else:
                    del self._session.send
            # else: someone wrapped us since; we stay in their chain as a pass-through.
            for key, text, context in self._streams.flush_where(lambda _key: True):
                self._send_held(key, text, context)

    def _make_wrapper(self) -> Callable[..., Any]:
        guard = self

        def send(stream, msg_or_type, content=None, parent=None, ident=None, buffers=None,
                 track=False, header=None, metadata=None):
            return guard.send(stream, msg_or_type, content, parent, ident, buffers, track, header, metadata)

        send.__ipykeyguard_output_guard__ = True  # type: ignore[attr-defined]
        send.__wrapped__ = self._original  # type: ignore[attr-defined]
        return send

    # -- the wrapper body -----------------------------------------------------------------------
    def send(self, stream, msg_or_type, content, parent, ident, buffers, track, header, metadata):
        """``Session.send`` with the content redacted; same signature and return value."""
        if not self._active:
            return self._original(stream, msg_or_type, content, parent, ident, buffers, track, header, metadata)
        if self._follower is not None:
            self._follower.check()
        is_msg = isinstance(msg_or_type, dict)
        try:
            if is_msg:
                msg_type = (msg_or_type.get("header") or {}).get("msg_type") or msg_or_type.get("msg_type")
                body = msg_or_type.get("content")
                parent_header = msg_or_type.get("parent_header") or {}
            else:
                msg_type = msg_or_type if isinstance(msg_or_type, str) else (header or {}).get("msg_type")
                body = content
                parent_header = _header_of(parent)
            parent_id = parent_header.get("msg_id") if isinstance(parent_header, dict) else None
        except Exception as exc:  # a malformed message is not ours to judge: pass it on untouched
            self._errors.failure("message inspection", exc)
            return self._original(stream, msg_or_type, content, parent, ident, buffers, track, header, metadata)

        if msg_type == "stream":
            with self._order:
                new_body = self._stream_body(body, parent_id, (stream, ident, parent_header))
                if new_body is None:  # everything held back: nothing to send yet
                    return msg_or_type if is_msg else None
                return self._forward(stream, msg_or_type, is_msg, body, new_body, content, parent,
                                     ident, buffers, track, header, metadata)

        new_body = body
        if msg_type in _REDACTED_FIELDS:
            new_body = self._redact_body(msg_type, body)
        if msg_type in _NO_FLUSH_TYPES or not self._holds_text_for(parent_id):
            return self._forward(stream, msg_or_type, is_msg, body, new_body, content, parent,
                                 ident, buffers, track, header, metadata)
        with self._order:
            # Held text of this parent goes out just before its next non-stream message
            # (display_data, execute_result, error, execute_reply, status idle, ...).
            for key, text, context in self._streams.flush_where(lambda key: key[0] == parent_id):
                self._send_held(key, text, context)
            return self._forward(stream, msg_or_type, is_msg, body, new_body, content, parent,
                                 ident, buffers, track, header, metadata)

    def _holds_text_for(self, parent_id: Any) -> bool:
        return parent_id is not None and (
            self._streams.has_pending((parent_id, "stdout")) or self._streams.has_pending((parent_id, "stderr"))
        )

    def _forward(self, stream, msg_or_type, is_msg, body, new_body, content, parent, ident,
                 buffers, track, header, metadata):
        if new_body is not body:
            if is_msg:
                msg_or_type = dict(msg_or_type)
                msg_or_type["content"] = new_body
            else:
                content = new_body
        return self._original(stream, msg_or_type, content, parent, ident, buffers, track, header, metadata)

    def _stream_body(self, body: Any, parent_id: Any, context: tuple) -> Any:
        """The redacted stream content, ``None`` when all of it is held back."""
        try:
            if not isinstance(body, dict) or not isinstance(body.get("text"), str):
                return self._redact_body("stream", body)
            name = body.get("name", "stdout")
            text = body["text"]
            failures = self._redactor.failures
            ready = self._streams.feed((parent_id, name), text, context)
            if self._redactor.failures != failures:
                return _withheld_content("stream", body)
            if not ready:
                return None
            if ready is text:
                return body
            return {**body, "text": ready}
        except Exception as exc:  # fail closed
            self._errors.failure("stream redaction", exc)
            return _withheld_content("stream", body)

    def _redact_body(self, msg_type: str, body: Any) -> Any:
        """Redacted content for ``msg_type``; a notice in place of the output on failure."""
        try:
            failures = self._redactor.failures
            if isinstance(body, (bytes, bytearray, memoryview)):
                # Pre-serialized content (not used by ipykernel, allowed by Session.send).
                text = bytes(body).decode("utf-8")
                redacted_text = self._redactor.redact(text)
                if self._redactor.failures != failures:
                    return _withheld_content(msg_type, {})
                return body if redacted_text is text else redacted_text.encode("utf-8")
            if not isinstance(body, dict):
                return body
            new_body = body
            for name in _REDACTED_FIELDS.get(msg_type, ()):
                if name not in body:
                    continue
                if name == "payload":
                    value = _redact_payloads(self._redactor, body[name])
                else:
                    value = self._redactor.redact_tree(body[name])
                if value is not body[name]:
                    if new_body is body:
                        new_body = dict(body)
                    new_body[name] = value
            if self._redactor.failures != failures:
                # The redactor failed on some leaf (and withheld it): withhold the whole output
                # in a well-formed shape rather than send a half-masked bundle.
                return _withheld_content(msg_type, body)
            return new_body
        except Exception as exc:  # fail closed
            self._errors.failure(f"{msg_type} redaction", exc)
            return _withheld_content(msg_type, body if isinstance(body, dict) else {})

    def _send_held(self, key: tuple, text: str, context: tuple) -> None:
        """Send released hold-back text as its own stream message, on the stream it came from."""
        if not text:
            return
        stream, ident, parent_header = context
        try:
            self._original(stream, "stream", {"name": key[1], "text": text}, parent_header or None, ident)
        except Exception as exc:  # the held text is lost, but the message that triggered this still goes
            self._errors.failure("releasing held stream text", exc)


def _redact_payloads(redactor: Redactor, payloads: Any) -> Any:
    """The execute_reply payloads with every page (``obj?``, ``%pinfo``) redacted and the
    ``set_next_input`` cell text left alone (see ``_REDACTED_FIELDS``)."""
    if not isinstance(payloads, list):
        return redactor.redact_tree(payloads)
    out = [p if isinstance(p, dict) and p.get("source") == "set_next_input" else redactor.redact_tree(p)
           for p in payloads]
    return payloads if all(new is old for new, old in zip(out, payloads)) else out


def _header_of(parent: Any) -> dict:
    """The header of ``parent`` (a message or a header), as ``Session.msg`` would extract it."""
    if not isinstance(parent, dict) or not parent:
        return {}
    header = parent.get("header", parent)
    return header if isinstance(header, dict) else {}


def _withheld_content(msg_type: str, body: dict) -> dict:
    """A well-formed content of ``msg_type`` that holds the notice instead of the output."""
    body = body if isinstance(body, dict) else {}
    if msg_type == "stream":
        return {"name": body.get("name", "stderr"), "text": WITHHELD_NOTICE + "\n"}
    if msg_type in ("display_data", "update_display_data", "execute_result"):
        out: dict[str, Any] = {"data": {"text/plain": WITHHELD_NOTICE}, "metadata": {}}
        for key in ("execution_count", "transient"):
            if key in body:
                out[key] = body[key]
        return out
    if msg_type == "error":
        return {"ename": "ipykeyguard", "evalue": WITHHELD_NOTICE, "traceback": [WITHHELD_NOTICE]}
    if msg_type == "execute_input":
        return {"code": WITHHELD_NOTICE, "execution_count": body.get("execution_count")}
    if msg_type == "execute_reply":
        out = {k: body[k] for k in ("status", "execution_count") if k in body}
        # Only the rewritten cell text survives; a page (obj?) could hold what failed to redact.
        out["payload"] = [p for p in body.get("payload") or [] if isinstance(p, dict) and p.get("source") == "set_next_input"]
        out["user_expressions"] = {}
        if body.get("status") == "error":
            out.update(ename="ipykeyguard", evalue=WITHHELD_NOTICE, traceback=[WITHHELD_NOTICE])
        return out
    if msg_type == "inspect_reply":
        return {"status": "ok", "found": False, "data": {}, "metadata": {}}
    if msg_type == "complete_reply":
        return {"status": "ok", "matches": [], "metadata": {},
                "cursor_start": body.get("cursor_start", 0), "cursor_end": body.get("cursor_end", 0)}
    if msg_type == "history_reply":
        return {"status": "ok", "history": []}
    if msg_type == "kernel_info_reply":
        return {**body, "banner": WITHHELD_NOTICE}
    if msg_type in ("comm_open", "comm_msg", "comm_close"):
        kept = {k: body[k] for k in ("comm_id", "target_name", "target_module") if k in body}
        return {**kept, "data": {}, "metadata": {}}
    if msg_type == "debug_reply":
        kept = {k: body[k] for k in ("seq", "type", "request_seq", "command") if k in body}
        return {**kept, "success": False, "message": WITHHELD_NOTICE, "body": {}}
    if msg_type == "debug_event":
        kept = {k: body[k] for k in ("seq", "type", "event") if k in body}
        return {**kept, "body": {}}
    if msg_type == "input_request":
        return {"prompt": WITHHELD_NOTICE, "password": body.get("password", False)}
    return {"text": WITHHELD_NOTICE}


# --------------------------------------------------------------------------------------------
# Terminal: redacting sys.stdout / sys.stderr
# --------------------------------------------------------------------------------------------
class _RedactingWriter:
    """A text stream that redacts what it is given and forwards the rest to the real stream.

    Not slotted on purpose: IPython's ``_tee`` sets and restores an instance attribute
    ``write`` on whatever ``sys.stdout`` is during a cell, which must keep working.
    """

    def __init__(self, inner: Any, streams: StreamRedactor, name: str, errors: _OnceLogger,
                 follower: EnvironmentFollower | None = None) -> None:
        self._ipykeyguard_inner = inner
        self._ipykeyguard_streams = streams
        self._ipykeyguard_name = name
        self._ipykeyguard_errors = errors
        self._ipykeyguard_follower = follower

    def write(self, text: Any) -> int:
        inner = self._ipykeyguard_inner
        if not isinstance(text, str):
            return inner.write(text)  # let the real stream raise its usual TypeError
        if self._ipykeyguard_follower is not None:
            self._ipykeyguard_follower.check()
        try:
            ready = self._ipykeyguard_streams.feed(self._ipykeyguard_name, text)
        except Exception as exc:  # fail closed
            self._ipykeyguard_errors.failure("terminal stream redaction", exc)
            ready = WITHHELD_NOTICE + "\n"
        if ready:
            inner.write(ready)
        return len(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def release_held(self) -> None:
        """Write out the tail held back for this stream (no more pieces are coming)."""
        held = self._ipykeyguard_streams.flush(self._ipykeyguard_name)
        if held and held[0]:
            self._ipykeyguard_inner.write(held[0])
            self._ipykeyguard_inner.flush()

    def __getattr__(self, name: str) -> Any:
        # encoding, isatty, fileno, flush, buffer, ... come from the real stream.
        return getattr(self._ipykeyguard_inner, name)

    def __repr__(self) -> str:
        return f"<ipykeyguard redacting {self._ipykeyguard_name} over {self._ipykeyguard_inner!r}>"


class _TerminalGuard:
    """Replaces ``sys.stdout``/``sys.stderr`` with redacting writers while installed."""

    def __init__(self, shell: Any, redactor: Redactor, follower: EnvironmentFollower | None = None) -> None:
        self._shell = shell
        self._follower = follower
        self._streams = StreamRedactor(redactor)
        self._errors = _OnceLogger()
        self._writers: dict[str, _RedactingWriter] = {}
        self._originals: dict[str, Any] = {}
        self._installed = False

    def install(self) -> Callable[[], None]:
        for name in ("stdout", "stderr"):
            original = getattr(sys, name)
            if original is None:
                continue
            writer = _RedactingWriter(original, self._streams, name, self._errors, self._follower)
            self._originals[name] = original
            self._writers[name] = writer
            setattr(sys, name, writer)
        events = getattr(self._shell, "events", None)
        if events is not None:
            # A tail held at the end of a cell is no key's first half any more: show it.
            events.register("post_execute", self.release_held)
        self._installed = True
        return self.uninstall

    def release_held(self) -> None:
        for writer in self._writers.values():
            try:
                writer.release_held()
            except Exception as exc:  # writing to a closed terminal must not break the shell
                self._errors.failure("releasing held terminal text", exc)

    def uninstall(self) -> None:
        """Put the original streams back (only where ours is still in place); idempotent."""
        if not self._installed:
            return
        self._installed = False
        events = getattr(self._shell, "events", None)
        if events is not None:
            try:
                events.unregister("post_execute", self.release_held)
            except ValueError:  # already gone (the shell was reset)
                pass
        self.release_held()
        for name, writer in self._writers.items():
            # If something replaced sys.<name> over ours since, it may still forward to our
            # writer; that writer keeps redacting (failing closed) rather than being unlinked.
            if getattr(sys, name) is writer:
                setattr(sys, name, self._originals[name])
        self._writers.clear()
