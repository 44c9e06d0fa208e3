"""Jupyter Server adapter (``jpserver_extensions = {"ipykeyguard": true}`` loads it through
:func:`ipykeyguard._load_jupyter_server_extension`): the pre- and post-save hooks in
:mod:`.hooks`. Imported only by a Jupyter server."""

from .hooks import KeyGuardServer, SaveRefused, _load_jupyter_server_extension

__all__ = ["KeyGuardServer", "SaveRefused"]


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "ipykeyguard.server"}]
