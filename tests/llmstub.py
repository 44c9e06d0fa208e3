"""A loopback HTTP server standing in for language-model providers, recording what arrives.

Usage::

    with LLMStub() as stub:                 # a thread serving http://127.0.0.1:<port>
        ... POST stub.url + "/v1/chat/completions" ...
        (req,) = stub.requests               # method, path, headers, raw body as received

It answers like the providers do, enough for the real SDKs to parse the reply: OpenAI chat
completions (JSON, or server-sent events when the body asks for ``"stream": true``), Anthropic
messages (JSON or events), Gemini ``:generateContent``, Ollama ``/api/chat``; anything else gets
``{"ok": true}``. Bodies are read by ``Content-Length`` (or chunked), exactly as sent.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]  # lower-cased names
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def __repr__(self) -> str:  # the body may hold a fake key: keep failure reports short
        return f"Received({self.method} {self.path}, {len(self.body)} bytes)"


def _openai_completion(stream: bool) -> tuple[str, bytes]:
    if not stream:
        return "application/json", json.dumps({
            "id": "chatcmpl-stub", "object": "chat.completion", "created": 0, "model": "stub",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "stub reply"},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3},
        }).encode()
    chunks = []
    for delta, finish in (({"role": "assistant", "content": ""}, None), ({"content": "stub "}, None),
                          ({"content": "reply"}, None), ({}, "stop")):
        chunks.append({"id": "chatcmpl-stub", "object": "chat.completion.chunk", "created": 0,
                       "model": "stub", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
    text = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"
    return "text/event-stream", text.encode()


def _anthropic_message(stream: bool) -> tuple[str, bytes]:
    message = {"id": "msg_stub", "type": "message", "role": "assistant", "model": "stub",
               "content": [{"type": "text", "text": "stub reply"}], "stop_reason": "end_turn",
               "stop_sequence": None, "usage": {"input_tokens": 1, "output_tokens": 2}}
    if not stream:
        return "application/json", json.dumps(message).encode()
    start = dict(message, content=[], stop_reason=None)
    events = [
        ("message_start", {"type": "message_start", "message": start}),
        ("content_block_start", {"type": "content_block_start", "index": 0,
                                 "content_block": {"type": "text", "text": ""}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                 "delta": {"type": "text_delta", "text": "stub reply"}}),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                           "usage": {"output_tokens": 2}}),
        ("message_stop", {"type": "message_stop"}),
    ]
    text = "".join(f"event: {name}\ndata: {json.dumps(data)}\n\n" for name, data in events)
    return "text/event-stream", text.encode()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes: with Nagle on, the client's delayed ACK adds ~40 ms
    # to every request (noise the benchmark would otherwise measure).
    disable_nagle_algorithm = True
    server: "_Server"

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = b""
            while True:
                size = int(self.rfile.readline().strip().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    return out
                out += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _handle(self) -> None:
        body = self._body()
        self.server.stub.requests.append(
            Received(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body))
        try:
            payload = json.loads(body) if body else {}
        except ValueError:
            payload = {}
        stream = isinstance(payload, dict) and payload.get("stream") is True
        path = self.path.split("?", 1)[0]
        if path.endswith("/chat/completions"):
            ctype, reply = _openai_completion(stream)
        elif path.endswith("/messages"):
            ctype, reply = _anthropic_message(stream)
        elif path.endswith(":generateContent"):
            ctype, reply = "application/json", json.dumps(
                {"candidates": [{"content": {"parts": [{"text": "stub reply"}], "role": "model"}}]}).encode()
        elif path.endswith("/api/chat"):
            ctype, reply = "application/json", json.dumps(
                {"model": "stub", "message": {"role": "assistant", "content": "stub reply"}, "done": True}).encode()
        elif path.endswith("/api/generate"):
            ctype, reply = "application/json", json.dumps(
                {"model": "stub", "response": "stub reply", "done": True}).encode()
        else:
            ctype, reply = "application/json", b'{"ok": true}'
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    do_POST = do_PUT = do_GET = _handle


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    stub: "LLMStub"


class LLMStub:
    """The stand-in provider on 127.0.0.1 (a free port), served by a thread of the test."""

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.stub = self
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> "LLMStub":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.shutdown()
        self._server.server_close()
