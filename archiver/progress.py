"""The sync's progress for a person at a terminal; nothing at all in cron mail."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any


def for_terminal(*, quiet: bool) -> Callable[[Any], None] | None:
    """A live line on stderr that each stored page refreshes, or None when stderr is
    not a terminal (cron, a pipe) or ``-q`` asked for errors only."""
    if quiet or not sys.stderr.isatty():
        return None
    from rich.console import Console

    console = Console(stderr=True)

    def show(stats: Any) -> None:
        console.print(
            f"listed {stats.listed}  new {stats.inserted}  changed {stats.updated}  "
            f"GetOperation {stats.get_calls}  pages {stats.list_calls}",
            end="\r",
            highlight=False,
            soft_wrap=True,
        )

    return show
