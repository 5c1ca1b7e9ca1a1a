"""SGLang CPU STAND-IN: the few sglang.srt.utils modules the stand-in imitates (not the real engine)."""
