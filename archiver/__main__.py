"""`archiver` and `python -m archiver`: the stop handler first, then the command line.

Importing the command line takes a tenth of a second; a signal in it is taken as it
is later (one line, exit 130 or 143), never as a traceback or a silent exit. The stop
is taken at once: only the sync and the demo install it again to wait for a safe moment.
"""

import sys


def run() -> None:
    from archiver import stopping

    stopping.install(at_once=True)
    try:
        from archiver.cli import app
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM as errors.Stopped
        sys.stderr.write(f"error: {str(exc) or 'interrupted'}\n")
        raise SystemExit(stopping.exit_code()) from None
    app()


if __name__ == "__main__":
    run()
