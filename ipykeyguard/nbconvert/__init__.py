"""nbconvert adapter: :class:`KeyGuardPreprocessor` and the ``keyguard-*`` exporters."""

from .preprocessor import KeyGuardHTMLExporter, KeyGuardNotebookExporter, KeyGuardPreprocessor

__all__ = ["KeyGuardPreprocessor", "KeyGuardNotebookExporter", "KeyGuardHTMLExporter"]
