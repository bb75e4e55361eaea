"""The commands that administer the archive itself: `db` (its schema) and `sources`.

They share the root app, its global options and its error handling with ``cli``.
"""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

from archiver.cli import db_app, guarded, open_archive, settings_of, sources_app

YesOption = Annotated[bool, typer.Option("--yes", help="Do not ask (required without a terminal).")]


def _confirm(yes: bool, action: str, consequence: str) -> None:
    """Ask on a terminal; without one (cron, a pipe), refuse unless --yes (exit 2)."""
    from archiver.errors import UsageError

    if yes:
        return
    if not sys.stdin.isatty():
        raise UsageError(f"not going to {action} without --yes (stdin is not a terminal)")
    if not typer.confirm(f"{action[0].upper()}{action[1:]}? {consequence}"):
        raise UsageError("nothing changed")


@db_app.command("upgrade")
@guarded
def db_upgrade(
    ctx: typer.Context,
    revision: Annotated[str, typer.Argument(metavar="REVISION", help="Target revision.")] = "head",
) -> None:
    """Create the archive or bring it to the newest schema (safe to repeat).

    \b
    Example:
      archiver --db archive.db db upgrade
    """
    _migrate(ctx, "upgrade", revision)


@db_app.command("downgrade")
@guarded
def db_downgrade(
    ctx: typer.Context,
    revision: Annotated[
        str, typer.Argument(metavar="REVISION", help="Target revision; `base` removes every table.")
    ],
    yes: YesOption = False,
) -> None:
    """Take the schema back to an older revision (data in dropped tables is lost).

    Asks first on a terminal; without one (cron, a pipe) it refuses unless --yes.

    \b
    Example:
      archiver --db archive.db db downgrade 8c2f1d3a9b10 --yes
    """
    _confirm(yes, f"downgrade to {revision}", "Data in dropped tables is lost.")
    _migrate(ctx, "downgrade", revision)


def _migrate(ctx: typer.Context, action: str, target: str) -> None:
    from archiver.archive import Archive

    settings = settings_of(ctx)
    with Archive(settings.db) as archive:
        getattr(archive, action)(target)
        if not settings.quiet:
            now = archive.revision() or "base (no schema)"
            typer.echo(f"{archive.name} is at revision {now}", err=True)


@db_app.command("current")
@guarded
def db_current(ctx: typer.Context) -> None:
    """Print the archive's schema revision, and whether it is the one this archiver needs.

    \b
    Example:
      archiver --db archive.db db current
    """
    from archiver.archive import Archive
    from archiver.db import head

    with Archive(settings_of(ctx).db) as archive:
        rev = archive.revision()
    mark = "(head)" if rev == head() else f"(this archiver needs {head()})"
    typer.echo(f"{rev or 'base'} {mark}")


@sources_app.command("list")
@guarded
def sources_list(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")] = False,
) -> None:
    """Every source in the archive: region, endpoint, operations, watermark.

    \b
    Example:
      archiver --db archive.db sources list --json
    """
    from archiver.sources import list_sources

    with open_archive(ctx) as archive:
        rows = list_sources(archive)
    if as_json:
        typer.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    for r in rows:
        typer.echo(f"{r['name']}  region {r['region'] or '-'}  operations {r['operations']}  "
                   f"watermark {r['watermark'] or 'none'}")  # fmt: skip


@sources_app.command("remove")
@guarded
def sources_remove(
    ctx: typer.Context,
    name: Annotated[
        str,
        typer.Argument(metavar="NAME", help="The source to remove, as `sources list` names it."),
    ],
    yes: YesOption = False,
) -> None:
    """Delete a source with its operations, events, runs and state, in one transaction.

    Asks first on a terminal; without one (cron, a pipe) it refuses unless --yes.

    \b
    Example:
      archiver --db archive.db sources remove typo@eu-west-9 --yes
    """
    from archiver.sources import drop_source

    with open_archive(ctx) as archive:
        _confirm(yes, f"remove source {name!r}", "Everything it holds is deleted.")
        removed = drop_source(archive, name)
    if not settings_of(ctx).quiet:
        counts = (removed["operations"], removed["operation_events"], removed["sync_runs"])
        typer.echo(f"removed source {name!r}: %d operations, %d events, %d runs" % counts, err=True)
