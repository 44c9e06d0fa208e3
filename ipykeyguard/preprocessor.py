"""Compatibility path: ``ipykeyguard.preprocessor.KeyGuardPreprocessor`` is the name users put in
``c.Exporter.preprocessors`` and on nbconvert's command line. The code lives in
:mod:`ipykeyguard.nbconvert.preprocessor`."""

from .nbconvert.preprocessor import (  # noqa: F401
    KeyGuardHTMLExporter,
    KeyGuardNotebookExporter,
    KeyGuardPreprocessor,
)

__all__ = ["KeyGuardPreprocessor", "KeyGuardNotebookExporter", "KeyGuardHTMLExporter"]
