"""Replacing an attribute on a live object or class so that it can be put back exactly.

The kernel guard wraps instance methods (``shell.run_cell_async``, ``history.store_inputs``,
...) and the egress guard wraps HTTP classes' send methods; both must undo exactly what they did
on ``%unload_ext`` (and ``%reload_ext``), and must not undo someone else's later patch.
"""

from __future__ import annotations

import sys
from typing import Any, Callable


def replace_attribute(owner: Any, name: str, replacement: Any, label: str) -> Callable[[], None]:
    """Set ``owner.name = replacement`` (``owner`` an instance or a class).

    Args:
        owner: The object or class to patch.
        name: The attribute.
        replacement: The new value.
        label: How the warning names the attribute when it cannot be restored.

    Returns:
        A function that puts back what ``owner`` itself held (or removes the attribute when it
        was inherited), unless something else replaced ``replacement`` since: then it warns on
        stderr and leaves that newer patch alone.
    """
    had_own = name in vars(owner)
    original = vars(owner).get(name)

    def undo() -> None:
        if vars(owner).get(name) is not replacement:
            print(f"ipykeyguard: warning: {label} was replaced by someone else after ipykeyguard; "
                  "leaving it", file=sys.stderr)
            return
        if had_own:
            setattr(owner, name, original)
        else:
            delattr(owner, name)

    setattr(owner, name, replacement)
    return undo
