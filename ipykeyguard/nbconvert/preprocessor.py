"""nbconvert adapter: :class:`KeyGuardPreprocessor` removes keys from any export.

Enable it for one command::

    jupyter nbconvert --to html --Exporter.preprocessors='["ipykeyguard.KeyGuardPreprocessor"]' nb.ipynb

or for every conversion in ``jupyter_nbconvert_config.py`` (nbconvert reads no ``.d``
drop-ins)::

    c.Exporter.preprocessors = ["ipykeyguard.KeyGuardPreprocessor"]

A ``--Exporter.preprocessors`` on the command line *replaces* the configured list. The two
exporters below need no list at all: ``--to keyguard-notebook`` and ``--to keyguard-html``
(also offered in JupyterLab's "Save and Export Notebook As" menu).

The whole notebook is cleaned in one walk (:func:`ipykeyguard.transforms.clean.clean_notebook`), so a key
found in a code cell is also masked where an output printed it. With ``--execute`` nbconvert's
``ExecutePreprocessor`` runs first, with the real keys, and this one then redacts what the
execution printed.

By default an export writes nothing but the export: code keys are masked like every other
occurrence and no ``.env`` is written. ``--KeyGuardPreprocessor.code_keys=move`` rewrites them
into ``os.environ["NAME"]`` lookups, and ``--KeyGuardPreprocessor.store=dotenv`` also keeps them
in the ``.env`` beside the input notebook (useful with ``--inplace``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nbconvert.exporters import HTMLExporter, NotebookExporter
from nbconvert.preprocessors import Preprocessor
from traitlets import Bool, List

from .._traits import QuietEnum, QuietUnicode, confidence_trait
from ..transforms.clean import clean_and_store
from ..engine.config import Config, find_pyproject, load_config
from ..storage.store import open_store

__all__ = ["KeyGuardPreprocessor", "KeyGuardNotebookExporter", "KeyGuardHTMLExporter"]

_QUALNAME = "ipykeyguard.nbconvert.KeyGuardPreprocessor"


class KeyGuardPreprocessor(Preprocessor):
    """Masks keys everywhere in the notebook (optionally moving code keys into a store)."""

    # Unlike nbconvert's own preprocessors this one is on whenever it is listed, including in
    # an exporter's default_preprocessors; --KeyGuardPreprocessor.enabled=False turns it off.
    enabled = Bool(True, help="Clean the notebook.").tag(config=True)
    min_confidence = confidence_trait("Only findings at least this sure are cleaned.")
    code_keys = QuietEnum(
        ("mask", "move"),
        default_value="mask",
        help="Keys in code cells: 'mask' them like any other text, or 'move' them: the code "
        "reads os.environ['NAME'] and the key goes to the store.",
    ).tag(config=True)
    store = QuietEnum(
        ("none", "dotenv", "keyring"),
        default_value="none",
        help="With code_keys='move': where moved keys are kept. 'none' keeps them nowhere (an "
        "export writes no .env unless asked); 'dotenv' writes the .env beside the input notebook "
        "(or dotenv_path); 'keyring' the OS keyring.",
    ).tag(config=True)
    dotenv_path = QuietUnicode("", help="With store='dotenv': the .env file to use instead of the one beside the notebook.").tag(
        config=True
    )
    use_project_config = Bool(
        True, help="Read [tool.ipykeyguard] (allowlist, disabled rules) from the nearest pyproject.toml."
    ).tag(config=True)

    def preprocess(self, nb: Any, resources: dict) -> tuple[Any, dict]:
        """Clean the whole notebook in one walk.

        Args:
            nb: The notebook (``NotebookNode``).
            resources: nbconvert resources; ``resources["metadata"]["path"]`` is the input's folder.

        Returns:
            ``(notebook, resources)``; ``resources["ipykeyguard"]`` holds the one-line summary
            (names only).

        Raises:
            ipykeyguard.storage.store.StoreError: moved keys could not be stored (nothing is exported).
            ipykeyguard.engine.config.ConfigError: ``[tool.ipykeyguard]`` is malformed.
        """
        import nbformat

        folder = self._input_folder(resources)
        config = self._config(folder)
        move = self.code_keys == "move"
        store = self._open_store(folder) if move else open_store("none")
        cleaned, report = clean_and_store(
            nb, store, config=config, move_code_keys=move, min_confidence=self.min_confidence
        )
        if not report.changed:
            return nb, resources
        summary = report.summary(stored_in=store.description if store.kind != "none" else None)
        self.log.info("ipykeyguard: %s", summary)
        resources["ipykeyguard"] = summary
        return nbformat.from_dict(cleaned), resources

    @staticmethod
    def _input_folder(resources: dict | None) -> Path:
        path = ((resources or {}).get("metadata") or {}).get("path")
        return Path(path) if path else Path.cwd()

    def _config(self, folder: Path) -> Config | None:
        if not self.use_project_config:
            return None
        pyproject = find_pyproject(folder) if folder.is_dir() else None
        return load_config(pyproject=pyproject) if pyproject is not None else None

    def _open_store(self, folder: Path) -> Any:
        if self.store == "dotenv":
            return open_store("dotenv", path=self.dotenv_path) if self.dotenv_path else open_store("dotenv", directory=folder)
        if self.store == "keyring":
            return open_store("keyring")
        return open_store("none")


def _with_keyguard(preprocessors: list) -> list:
    """``preprocessors`` with ours placed right after execution and before anything that
    extracts outputs to separate files (so extracted SVG or text are cleaned too)."""
    names = [p if isinstance(p, str) else f"{p.__module__}.{p.__name__}" for p in preprocessors]
    out = list(preprocessors)
    execute = "nbconvert.preprocessors.ExecutePreprocessor"
    index = names.index(execute) + 1 if execute in names else len(out)
    out.insert(index, _QUALNAME)
    return out


class KeyGuardNotebookExporter(NotebookExporter):
    """``--to keyguard-notebook``: a notebook with keys removed (writes ``<name>.nbconvert.ipynb``)."""

    export_from_notebook = "Notebook without keys"
    default_preprocessors = List(
        _with_keyguard(NotebookExporter.class_traits()["default_preprocessors"].default()),
        help="Preprocessors available by default; ipykeyguard's runs right after execution.",
    ).tag(config=True)


class KeyGuardHTMLExporter(HTMLExporter):
    """``--to keyguard-html``: an HTML page with keys removed."""

    export_from_notebook = "HTML without keys"
    default_preprocessors = List(
        _with_keyguard(HTMLExporter.class_traits()["default_preprocessors"].default()),
        help="Preprocessors available by default; ipykeyguard's runs right after execution.",
    ).tag(config=True)
