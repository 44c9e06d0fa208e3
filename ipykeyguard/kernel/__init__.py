"""IPython/ipykernel adapter: the input guard (:mod:`.extension`) and the output guard
(:mod:`.output_guard`). Imported only when a kernel or terminal IPython loads the extension."""
