"""``ipykeyguard exposures``: what the exposure ledger knows, and ``--rotated NAME``.

Lists every key the kernel, the save hook, ``clean`` and ``scan`` have seen (by variable name,
rule and the first 12 hex characters of its fingerprint; never a value), with its status:

- ``ROTATE``: it reached a saved output, an export or git history, and no rotation is recorded;
- ``rotated``: its rotation was recorded (the old value is dead; later sightings need nothing);
- ``kept out``: it was only ever moved or masked before it reached disk.

``--rotated NAME`` records that the key(s) under that variable name (or fingerprint prefix)
were rotated. ``--fingerprint HEX`` answers "has this key been seen?" for one key (compute the
SHA-256 of a key yourself; the ledger never asks for the key). Exit status: 0; 1 when any
listed key still needs rotating; 2 on an unusable ledger or an unknown ``--rotated`` name.
"""

from __future__ import annotations

import argparse
import json
import sys

__all__ = ["add_parser", "run"]


def add_parser(subparsers) -> None:
    """Register ``exposures`` with the top-level parser."""
    parser = subparsers.add_parser(
        "exposures",
        help="list the keys the guard has seen exposed or kept out, and record rotations",
        description=(
            "List the exposure ledger: every key ipykeyguard moved, masked or found, where and when "
            "(by name and fingerprint, never by value). Exit 1 when a key still needs rotating."
        ),
    )
    parser.add_argument("--format", choices=("text", "json"), default="text", help="output format (default: text)")
    parser.add_argument("--rotated", metavar="NAME", help="record that the key under this variable name (or fingerprint prefix) was rotated")
    parser.add_argument("--fingerprint", metavar="HEX", help="show only the key with this SHA-256 (or a prefix of 12+ hex characters)")
    parser.add_argument("--ledger", metavar="FILE", help="the ledger file (default: $IPYKEYGUARD_LEDGER, else the user data directory)")
    parser.set_defaults(func=run)


def _line(key) -> str:
    names = ", ".join(key.names) or "?"
    rules = ", ".join(key.rules)
    head = f"{key.status:8}  {names}  sha256:{key.fingerprint[:12]}" + (f"  ({rules})" if rules else "")
    rows = [head, f"          first seen {key.first_seen}, last seen {key.last_seen}"]
    if key.rotated_at:
        rows.append(f"          rotated {key.rotated_at}")
    for s in key.sightings:
        where = s["place"] or "?"
        if s["commit"]:
            where += f" @ {s['commit']}"
        times = f" (x{s['times']}, last {s['last']})" if s["times"] > 1 else ""
        rows.append(f"          {s['at']}  {s['source']}: {s['action']}  {where}{times}")
    return "\n".join(rows)


def run(args: argparse.Namespace) -> int:
    """Run ``ipykeyguard exposures``; returns the exit status."""
    from ..storage.ledger import Ledger, LedgerError
    from .app import CLIError

    try:
        ledger = Ledger(args.ledger)
        if args.rotated:
            marked = ledger.mark_rotated(args.rotated)
            if not marked:
                raise CLIError(f"the ledger knows no key named {args.rotated!r} (see 'ipykeyguard exposures')")
            print(f"ipykeyguard: recorded the rotation of {args.rotated} ({len(marked)} key{'s' if len(marked) != 1 else ''})")
            return 0
        keys = ledger.keys()
    except LedgerError as exc:
        raise CLIError(str(exc)) from None
    for warning in ledger.warnings:
        print(warning, file=sys.stderr)
    if args.fingerprint:
        wanted = args.fingerprint.strip().lower()
        keys = [k for k in keys if k.fingerprint.startswith(wanted)]
    if args.format == "json":
        print(json.dumps({"ledger": str(ledger.path), "keys": [k.to_dict() for k in keys]}, indent=2))
    else:
        for key in keys:
            print(_line(key))
        pending = sum(k.needs_rotation for k in keys)
        print(
            f"ipykeyguard: {len(keys)} key{'s' if len(keys) != 1 else ''} in {ledger.path}; "
            f"{pending} to rotate",
            file=sys.stderr,
        )
    return 1 if any(k.needs_rotation for k in keys) else 0
