"""The `archiver` command line: thin commands over the library (docs/design.md).

``app`` is the root command (``cli.app``); importing the command modules registers
their commands on it, in this order in ``--help``.
"""

from archiver.cli import archive as _archive  # noqa: F401  (query, export, report, status, db, sources)
from archiver.cli import sync as _sync  # noqa: F401  (sync, demo, emulator serve)
from archiver.cli.app import app

__all__ = ["app"]
