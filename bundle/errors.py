"""The one error the host-side tools report: what cannot work, and why (render.RenderError); and the
exit status each class of error ends a host tool with, the same in every tool (docs/internals.md#exit-statuses)."""
import signal


class RenderError(Exception):
    """A hardware/preset pair, a make variable or preset data that cannot work, with the reason."""


# One status per class of error, whichever tool meets it. 2 is argparse's for a bad argument, so a
# bad make variable and a bad flag end alike; 130 and 141 are what a shell shows for a command that
# SIGINT or SIGPIPE ended (bundle/cli.py ends that way).
FAILED = 1                                          # the host or deployment is not ready, a check failed
USAGE = 2                                           # a bad variable, flag or data file (RenderError)
INTERRUPTED = 128 + signal.SIGINT                   # Ctrl-C
READER_GONE = 128 + getattr(signal, "SIGPIPE", 13)  # stdout's reader went away (`make presets | head`)


def status(err: Exception) -> int:
    """The exit status of a tool that stops on err: USAGE for bad input, FAILED for anything else."""
    return USAGE if isinstance(err, RenderError) else FAILED


# How to make the secrets a refusal asks for: one wording for every tool that asks.
API_KEY_HINT = "`make api-key` writes a new random key to secrets/api_key (API_KEY_FILE= for another file)"
HF_TOKEN_HINT = "`install -D -m 600 /dev/stdin secrets/hf_token <<< hf_...`: Llama 3.1 is a gated model"
