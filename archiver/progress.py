"""The sync's progress for a person at a terminal; nothing at all in cron mail.

(In cron, `-v` or `--log-format json` log a line per window and every 10 pages
instead: see ``sync``.)
"""

from __future__ import annotations

import sys
import time
from typing import Any


class TerminalProgress:
    """A live rich display on stderr: elapsed time, window i/N, pages, operations
    fetched and their rate; ``close()`` leaves its final state as one finished line."""

    def __init__(self, source: str) -> None:
        from rich.console import Console
        from rich.progress import Progress, TextColumn, TimeElapsedColumn

        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            TimeElapsedColumn(),
            TextColumn("{task.fields[line]}"),
            console=Console(stderr=True),
            transient=False,
        )
        self._task = self._progress.add_task(source, total=None, line="starting")
        self._began = time.monotonic()
        self._progress.start()

    def __call__(self, stats: Any) -> None:
        fetched = stats.inserted + stats.updated
        rate = fetched / max(time.monotonic() - self._began, 1e-6)
        line = (f"window {stats.windows}/{stats.planned_windows}  pages {stats.pages}  "
                f"listed {stats.listed}  fetched {fetched}  {rate:,.0f}/s")  # fmt: skip
        self._progress.update(self._task, line=line)

    def close(self) -> None:
        self._progress.stop()


def for_terminal(*, quiet: bool, source: str = "sync") -> TerminalProgress | None:
    """The display, or None when stderr is not a terminal (cron, a pipe) or with -q."""
    if quiet or not sys.stderr.isatty():
        return None
    return TerminalProgress(source)
