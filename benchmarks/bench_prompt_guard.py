"""Prompt guard overhead: a model request's latency with and without the egress guard, as ratios.

One process, one loopback stand-in provider (``tests/llmstub.py``, a thread on 127.0.0.1), one
kept-alive client per library. For each prompt size (2 KB and 200 KB of notebook-like text: code,
prose, a DataFrame dump, hex ids) and each body kind (no secret, the common case; and one known
key, masked), the same request is timed with the guard installed and with it uninstalled,
alternating in blocks so machine noise hits both alike. Printed per row: the median request time
unguarded and guarded, the added milliseconds, their ratio, the ratio of the fastest requests
(less sensitive to other work on the machine), and the guard's own work measured
alone (``PromptGuard.body`` on the same bytes, no network), which is the steadier figure on a
shared machine. Target: under 2 ms added for a 2 KB prompt.

The guard is the one the kernel installs (same redactor with the default rules plus one known
value, same endpoint matching); only the IPython part is left out, since a kernel round trip would
add its own noise and no guard work.

Usage::

    python benchmarks/bench_prompt_guard.py [--rounds 7] [--per-round 20] [--clients httpx,openai,requests]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

import fakekeys  # noqa: E402
from llmstub import LLMStub  # noqa: E402

from ipykeyguard.kernel.egress import PromptGuard, install_prompt_guard  # noqa: E402
from ipykeyguard.transforms.prompt import Endpoints  # noqa: E402
from ipykeyguard.transforms.redact import Redactor  # noqa: E402

_WORDS = ("the model loss epoch train value data frame import numpy pandas plot fit result config "
          "user score mean label tokenizer batch return print because error traceback line file").split()


def notebook_text(size: int, rng: random.Random) -> str:
    """About ``size`` characters of what people paste into prompts: code, prose, tables, ids."""
    parts: list[str] = []
    total = 0
    while total < size:
        kind = rng.randrange(4)
        if kind == 0:
            line = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(6, 16))) + ".\n"
        elif kind == 1:
            line = f"    {rng.choice(_WORDS)}_{rng.randint(0, 99)} = df[{rng.choice(_WORDS)!r}].{rng.choice(_WORDS)}()\n"
        elif kind == 2:
            line = "  ".join(f"{rng.random():8.4f}" for _ in range(6)) + "\n"
        else:
            line = f"run {rng.getrandbits(128):032x} step {rng.randint(0, 10**6)} ok\n"
        parts.append(line)
        total += len(line)
    return "".join(parts)[:size]


def chat_body(prompt: str) -> dict:
    return {"model": "stub", "messages": [{"role": "system", "content": "You are a careful reviewer."},
                                          {"role": "user", "content": prompt}]}


def make_senders(url: str, clients: list[str], api_key: str) -> dict[str, Callable[[dict], None]]:
    senders: dict[str, Callable[[dict], None]] = {}
    key_header = {"Authorization": "Bearer " + api_key}
    if "httpx" in clients:
        import httpx

        hc = httpx.Client(headers=key_header)
        senders["httpx"] = lambda body: hc.post(url + "/v1/chat/completions", json=body).raise_for_status()
    if "requests" in clients:
        import requests

        rs = requests.Session()
        senders["requests"] = lambda body: rs.post(url + "/v1/chat/completions", json=body,
                                                   headers=key_header).raise_for_status()
    if "openai" in clients:
        import openai

        oc = openai.OpenAI(api_key=api_key, base_url=url + "/v1", max_retries=0)
        senders["openai"] = lambda body: oc.chat.completions.create(model="stub", messages=body["messages"])
    return senders


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7, help="alternating guarded/unguarded blocks")
    parser.add_argument("--per-round", type=int, default=20, help="requests per block")
    parser.add_argument("--clients", default="httpx,openai,requests")
    parser.add_argument("--sizes", default="2000,200000")
    args = parser.parse_args(argv)

    rng = random.Random(2024)
    key = fakekeys.openai_project_key(rng)
    redactor = Redactor()
    redactor.add_known("OPENAI_API_KEY", key)
    lines: list[str] = []
    guard = PromptGuard(redactor, lambda: "mask", Endpoints, notify=lines.append)
    sizes = [int(s) for s in args.sizes.split(",")]

    print(f"{'client':9} {'prompt':>7} {'body':9} {'unguarded ms':>12} {'guarded ms':>11} "
          f"{'added ms':>9} {'ratio':>6} {'best ratio':>10} {'guard alone ms':>15}")
    with LLMStub() as stub:
        senders = make_senders(stub.url, args.clients.split(","), fakekeys.openai_project_key(rng))
        for size in sizes:
            text = notebook_text(size, rng)
            bodies = {"no secret": chat_body(text),
                      "one key": chat_body(text[: size // 2] + f" api_key={key} " + text[size // 2 + 30:])}
            for kind, body in bodies.items():
                raw = json.dumps(body).encode()
                alone = []
                for _ in range(max(5, args.per_round)):
                    start = time.perf_counter()
                    guard.body(raw, "127.0.0.1", "/v1/chat/completions")
                    alone.append(time.perf_counter() - start)
                for client, send in senders.items():
                    for _ in range(3):  # warm the connection and the rules
                        send(body)
                    timings: dict[bool, list[float]] = {True: [], False: []}
                    for round_no in range(args.rounds):
                        for guarded in ((True, False) if round_no % 2 == 0 else (False, True)):
                            undo = install_prompt_guard(guard) if guarded else None
                            try:
                                for _ in range(args.per_round):
                                    start = time.perf_counter()
                                    send(body)
                                    timings[guarded].append(time.perf_counter() - start)
                            finally:
                                if undo is not None:
                                    undo()
                    plain = statistics.median(timings[False]) * 1000
                    guarded_ms = statistics.median(timings[True]) * 1000
                    print(f"{client:9} {size // 1000:>5} KB {kind:9} {plain:12.3f} {guarded_ms:11.3f} "
                          f"{guarded_ms - plain:9.3f} {guarded_ms / plain:6.2f} "
                          f"{min(timings[True]) / min(timings[False]):10.2f} "
                          f"{statistics.median(alone) * 1000:15.3f}")
        arrived = [r for r in stub.requests if key in r.body.decode("utf-8", "replace")]
    masked = sum(1 for line in lines if "OPENAI_API_KEY" in line)
    print(f"\nkey bodies sent guarded and masked: {masked} notices; bodies holding the key that "
          f"arrived: {len(arrived)} (the unguarded blocks)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
