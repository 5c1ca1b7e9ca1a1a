"""SGLang CPU STAND-IN: the ``sglang.srt`` namespace (not the real runtime, no model)."""
