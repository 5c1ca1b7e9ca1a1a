"""What every host tool's `python -m bundle.X` does around its main(): end as Unix tools end.

`make presets | head -3`: once head has its lines it exits, and the next write to the pipe fails
with EPIPE. Python ignores SIGPIPE, so that failure is a BrokenPipeError and a traceback; a Unix
tool (cat, grep, yes) is ended by SIGPIPE instead, silently, and its shell sees status 141
(128 + SIGPIPE). run() does the same: no traceback, and the tool ends by SIGPIPE itself, so that
a shell's `set -o pipefail` sees 141 and make says "Broken pipe" for it, as it does for `yes`.
Not exit 0: what was cut off was not delivered, and a pipeline must not take it for a success.

Only a broken stdout or stderr ends quietly. A BrokenPipeError from anything else (a socket
to an engine, a child's stdin) is a real error and keeps its traceback.

Ctrl-C (`make deploy` waits up to an hour) ends with one line and status 130 (128 + SIGINT), as
a shell reports an interrupted command, not with a traceback.

    if __name__ == "__main__":
        cli.run(main)
"""
from __future__ import annotations

import os
import select
import signal
import sys
import typing

from bundle import errors

SIGPIPE_STATUS = errors.READER_GONE
SIGINT_STATUS = errors.INTERRUPTED


def _reader_gone(stream) -> bool:
    """Whether the stream is a pipe (or socket) whose reading end is closed: poll says POLLERR."""
    try:
        fd = stream.fileno()
        poller = select.poll()
        poller.register(fd, select.POLLOUT)
        return any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))
    except (AttributeError, OSError, ValueError):
        return False


def _end_by_sigpipe() -> typing.NoReturn:
    # Python flushes stdout once more at exit, and that flush would fail again and print
    # "Exception ignored ... BrokenPipeError": point both streams at /dev/null first.
    devnull = os.open(os.devnull, os.O_WRONLY)
    for stream in (sys.stdout, sys.stderr):
        try:
            os.dup2(devnull, stream.fileno())
        except (AttributeError, OSError, ValueError):
            pass
    if hasattr(signal, "SIGPIPE"):
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGPIPE)
    os._exit(SIGPIPE_STATUS)   # where no SIGPIPE ends the process: the status a shell would show


def run(main: typing.Callable[[], int | None]) -> typing.NoReturn:
    """sys.exit(main()), flushing stdout inside, and ending quietly (by SIGPIPE) when the reader of
    stdout or stderr has gone away."""
    try:
        try:
            code = main()
        except SystemExit as exit:      # argparse's --help and errors: printed, then exit
            code = exit.code
        sys.stdout.flush()      # the last buffered lines reach the pipe here, not at exit
    except BrokenPipeError:
        if _reader_gone(sys.stdout) or _reader_gone(sys.stderr):
            _end_by_sigpipe()
        raise
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        code = SIGINT_STATUS
    sys.exit(code)
