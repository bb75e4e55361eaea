"""`archiver` and `python -m archiver`: the streams and the stop handler, then the CLI.

Importing the command line takes a tenth of a second; a signal in it is taken as it
is later (one line, exit 130 or 143), never as a traceback or a silent exit. The stop
is taken at once: only the sync and the demo install it again to wait for a safe moment.
"""

import io
import os
import sys


def run() -> None:
    from archiver import stopping

    for name in ("stdin", "stdout", "stderr"):  # closed (`2>&-`): Python leaves None, and
        if getattr(sys, name) is None:  # every message failed; /dev/null takes its number
            setattr(sys, name, open(os.devnull, "r" if name == "stdin" else "w"))  # noqa: SIM115
    if not isinstance(sys.stdout.buffer, io.BufferedIOBase):  # PYTHONUNBUFFERED=1: the raw
        # file, which may take part of a write (a full disk), and the text layer drops the rest
        sys.stdout = open(1, "w", 1 if sys.stdout.isatty() else -1, closefd=False)  # noqa: SIM115
    sys.stdout.reconfigure(encoding="utf-8")  # CSV, JSON: UTF-8
    stopping.install(at_once=True)
    try:
        from archiver.cli import app
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM as errors.Stopped
        sys.stderr.write(f"error: {str(exc) or 'interrupted'}\n")
        raise SystemExit(stopping.exit_code()) from None
    app()


if __name__ == "__main__":
    run()
