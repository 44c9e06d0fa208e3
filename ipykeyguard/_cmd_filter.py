"""Placeholder: replaced by the module that implements this subcommand."""

from __future__ import annotations


def add_parser(subparsers) -> None:
    return None
