"""ipykeyguard: keep API keys and other credentials out of Jupyter notebooks.

The core (scanning, rewriting, redacting, cleaning) is pure Python and importing this package
imports no host framework: IPython, nbconvert and jupyter_server are imported only by the
adapters that need them (:mod:`ipykeyguard.kernel`, :mod:`ipykeyguard.nbconvert`,
:mod:`ipykeyguard.server`), on first use.

Public API::

    from ipykeyguard import scan_text, scan_notebook, rewrite_source, clean_notebook
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .engine.config import Config, ConfigError, load_config
from .engine.findings import Confidence, Finding, Location, Secret
from .transforms.notebook import NotebookError
from .engine.rules import Rule, RuleError, RuleSet
from .engine.scan import Scanner, scan_notebook, scan_text

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "Config",
    "ConfigError",
    "Confidence",
    "Finding",
    "Location",
    "NotebookError",
    "Rule",
    "RuleError",
    "RuleSet",
    "Scanner",
    "Secret",
    "load_config",
    "scan_text",
    "scan_notebook",
    "rewrite_source",
    "Rewrite",
    "clean_notebook",
    "CleanReport",
    "Redactor",
    "KeyGuardPreprocessor",
    "load_ipython_extension",
    "unload_ipython_extension",
    "PromptBlocked",
    "Endpoints",
]

# Names served lazily so that importing ipykeyguard stays cheap and framework-free.
_LAZY = {
    "rewrite_source": ("transforms.rewrite", "rewrite_source"),
    "Rewrite": ("transforms.rewrite", "Rewrite"),
    "clean_notebook": ("transforms.clean", "clean_notebook"),
    "CleanReport": ("transforms.clean", "CleanReport"),
    "Redactor": ("transforms.redact", "Redactor"),
    "Endpoints": ("transforms.prompt", "Endpoints"),
    "PromptBlocked": ("kernel.egress", "PromptBlocked"),
    "KeyGuardPreprocessor": ("nbconvert.preprocessor", "KeyGuardPreprocessor"),
}

if TYPE_CHECKING:  # pragma: no cover
    from .transforms.clean import CleanReport, clean_notebook
    from .nbconvert.preprocessor import KeyGuardPreprocessor
    from .transforms.redact import Redactor
    from .transforms.prompt import Endpoints
    from .kernel.egress import PromptBlocked
    from .transforms.rewrite import Rewrite, rewrite_source


def __getattr__(name: str) -> Any:
    try:
        module_name, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'ipykeyguard' has no attribute {name!r}") from None
    import importlib

    value = getattr(importlib.import_module(f".{module_name}", __name__), attr)
    globals()[name] = value
    return value


def load_ipython_extension(ipython: Any) -> None:
    """Entry point of ``%load_ext ipykeyguard`` (and of ``c.InteractiveShellApp.extensions``)."""
    from .kernel.extension import load_ipython_extension as load

    load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    """Entry point of ``%unload_ext ipykeyguard``: undoes every hook and patch."""
    from .kernel.extension import unload_ipython_extension as unload

    unload(ipython)


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    """Jupyter Server discovers the pre-save hook extension here."""
    return [{"module": "ipykeyguard.server"}]


def _load_jupyter_server_extension(serverapp: Any) -> None:
    from .server.hooks import _load_jupyter_server_extension as load

    load(serverapp)
