"""`archiver demo`: the main job end to end, offline, on the embedded default.

An in-process emulator stands in for AWS; the sync, `status` and a sample query run
exactly as a user would run them, so the demo doubles as a smoke test of a fresh
install (CI runs it from a wheel, in another directory).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TextIO

from archiver import filters, options, query, render
from archiver import status as status_mod
from archiver.archive import Archive
from archiver.choices import Output
from archiver.errors import UsageError
from archiver.sync import sync_source

SOURCE = "demo@emulator"


def run_demo(
    target: str,
    out: TextIO,
    *,
    operations: int = 3000,
    width: int | None = None,
    on_page: Callable[[Any], None] | None = None,
) -> None:
    """Sync ``operations`` synthetic operations into ``target``, then show what it holds."""
    from archiver.emulator import Emulator

    _refuse_a_real_archive(target)
    with Emulator(seed_operations=operations, days=30, seed=42) as emu:
        words = options.SyncWords(region="us-east-1", endpoint_url=emu.url, source=SOURCE,
                                  access_key="demo", secret_key="demo")  # fmt: skip
        opts, client_settings = options.build(words)
        summary = sync_source(target, opts, client_settings, on_page=on_page)
    out.write(f"synced {summary.stats.listed} operations from the emulator into {target}\n\n")
    with Archive.open(target) as archive:
        out.write(status_mod.to_text(status_mod.summarize(archive, source=SOURCE)) + "\n")
        out.write(f"\n$ archiver --db {target} query --filters Name=STATUS,Values=FAIL "
                  "--max-items 5\n")  # fmt: skip
        selection = query.Selection(filters.parse("Name=STATUS,Values=FAIL"), limit=5)
        render.write(Output.table, query.run(archive, selection), out, width=width)


def _refuse_a_real_archive(target: str) -> None:
    """Synthetic operations must never mix into an archive of real ones."""
    probe = Archive(target)
    if probe.is_new:
        return
    with Archive.open(target) as archive, archive.reader.connect() as conn:
        others = sorted(set(query.source_ids(conn, None).values()) - {SOURCE})
    if others:
        raise UsageError(
            f"{archive.name} holds other sources ({', '.join(others)}); the demo writes "
            "only into an archive of its own: run it without --db (demo.db) or name a new file"
        )
