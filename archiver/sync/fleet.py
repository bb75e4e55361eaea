"""Many sources in one command: a TOML config of accounts × regions, synced together.

Why: an organisation archiving many accounts and regions would otherwise keep one
cron line per source. The config names them once; `archiver sync --all` runs them
with bounded concurrency, each under its own lock and with its own run row, and
exits with the worst outcome; an [[organization]] whose accounts cannot be listed
fails alone. A config that cannot be run (not TOML, an unknown key, a duplicate
name, a region that cannot be resolved) is refused before any Cloud Map call.

    db = "/var/lib/archiver/archive.db"   # optional; --db and ARCHIVER_DB win
    [defaults]                            # optional: any sync option, for every source
    lookback = "15m"
    [[source]]
    name = "prod@eu-west-1"
    profile = "prod"
    region = "eu-west-1"
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from archiver import guards, stopping
from archiver.errors import ArchiverError, Interrupted, LockHeld, UsageError, first_line
from archiver.store.archive import Archive
from archiver.sync import client, options
from archiver.sync.run import Summary, describe, log, sync_source


@dataclass(frozen=True)
class Config:
    path: Path
    db: str | None
    sources: list[dict[str, Any]]  # each [[source]] over [defaults], as options.build takes
    #: each [[organization]], checked; its accounts are listed only when a plan needs them
    organizations: list[Organization]


def load(path: str | Path) -> Config:
    """Read and check the config; every problem is one UsageError naming the file. The
    values are checked as the command line's are (``options.check``), before any call."""
    try:  # the name as typed: the read guard refuses an empty one
        data = tomllib.loads(guards.read_text(path, what="config",
                                              flag="--config or ARCHIVER_CONFIG"))  # fmt: skip
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"config {path} is not TOML: {first_line(exc)}") from None
    path = Path(path)
    if unknown := set(data) - {"db", "defaults", "source", "organization"}:
        raise UsageError(f"config {path}: unknown key {sorted(unknown)[0]!r} (a config has "
                         "db, [defaults], [[source]] and [[organization]])")  # fmt: skip
    defaults = _section(path, data.get("defaults", {}), "[defaults]", allow_name=False)
    entries, orgs = data.get("source", []), data.get("organization", [])
    if not isinstance(entries, list) or not isinstance(orgs, list) or not entries + orgs:
        raise UsageError(f"config {path}: no [[source]] or [[organization]]; name one")
    organizations = [_organization(path, org, defaults, f"[[organization]] {i}")
                     for i, org in enumerate(orgs, start=1)]  # fmt: skip
    sources: list[dict[str, Any]] = []
    for i, entry in enumerate(entries, start=1):
        own = _section(path, entry, f"[[source]] {i}", allow_name=True)
        if "region" in own and "regions" in own:
            raise UsageError(f"config {path}: [[source]] {i} sets both region and regions")
        values = {**defaults, **own}
        if not values.get("source"):
            raise UsageError(f"config {path}: [[source]] {i} has no name")
        regions = values.pop("regions", None)
        if "region" in own:  # the source's own region wins over [defaults]' regions
            regions = None
        # with regions, one source per region, named NAME@REGION
        by_region = [{**values, "region": r, "source": f"{values['source']}@{r}"}
                     for r in regions or ()]  # fmt: skip
        sources.extend(by_region or [values])
    _named_once(path, [s["source"] for s in sources])  # before an organization is listed
    db = data.get("db")
    if db is not None and not (isinstance(db, str) and db.strip()):  # "": the config's folder
        raise UsageError(f"config {path}: db must be a path or URL string")
    if db is not None and "://" not in db:  # a path is the config's own, wherever cron runs
        db = str(path.parent / Path(db).expanduser())
    return Config(path, db, sources, organizations)


@dataclass(frozen=True)
class Organization:
    """An [[organization]] table, checked: its sync options over [defaults] (the profile
    that lists the accounts among them), the role to assume, the regions and the
    accounts chosen."""

    where: str
    label: str  # "[[organization]] 2": the result's name when its accounts cannot be listed
    values: dict[str, Any]
    role: str
    regions: list[str]
    include: list[str] | None
    exclude: list[str]

    def sources(self) -> list[dict[str, Any]]:
        """One source per active account (AWS Organizations ListAccounts) and region,
        named ACCOUNT@REGION, each assuming arn:aws:iam::ACCOUNT:role/ROLE_NAME. Listed
        when a plan needs them, not when any command reads the config."""
        settings = options.build(self.values, context=f"{self.where}: ", key=True)[1]
        accounts = client.organization_accounts(settings)
        if unknown := sorted(set(self.include or ()) - set(accounts)):  # a typo, or suspended
            log.warning("%s: include names %s, no active account of the organization: not "
                        "synced", self.where, ", ".join(unknown))  # fmt: skip
        return [{**self.values, "source": f"{account}@{region}", "region": region,
                 "role_arn": f"arn:aws:iam::{account}:role/{self.role}"}
                for account in accounts
                if (self.include is None or account in self.include)
                and account not in self.exclude for region in self.regions]  # fmt: skip


def _organization(path: Path, table: Any, defaults: dict[str, Any], where: str) -> Organization:
    """An [[organization]] table, checked as a [[source]] is, without a call."""
    table = dict(table) if isinstance(table, dict) else {}
    role, regions = table.pop("role_name", None), table.pop("regions", None)
    chosen = {k: table.pop(k, None) for k in ("include", "exclude")}
    if not isinstance(role, str) or not role or not isinstance(regions, list) or not regions:
        raise UsageError(f"config {path}: {where} needs role_name and regions, such as "
                         'role_name = "ArchiverRead" and regions = ["us-east-1"]')  # fmt: skip
    for key, ids in chosen.items():
        if ids is not None and not (isinstance(ids, list) and all(isinstance(a, str) for a in ids)):
            raise UsageError(f"config {path}: {where}: {key} must be a list of account ids")
    values = {k: v for k, v in {**defaults, **_section(path, table, where, allow_name=False)}
              .items() if k != "regions"}  # fmt: skip
    return Organization(f"config {path}: {where}", where, values, role, regions,
                        chosen["include"], chosen["exclude"] or [])  # fmt: skip


def _section(path: Path, table: Any, where: str, *, allow_name: bool) -> dict[str, Any]:
    """A table's values by option name, each checked now (type, range, a known key)."""
    if not isinstance(table, dict):
        raise UsageError(f"config {path}: {where} must be a table")
    out: dict[str, Any] = {}
    for key, value in table.items():
        name = key.replace("-", "_")
        if name == "name" and allow_name:
            name = "source"
        elif name == "source":
            raise UsageError(f"config {path}: {where}: unknown key {key!r} (a [[source]] is "
                             "named by name)")  # fmt: skip
        elif name == "regions":
            if not (isinstance(value, list) and value
                    and all(isinstance(r, str) and r for r in value)):  # fmt: skip
                raise UsageError(f"config {path}: {where}: regions must be a list of region "
                                 'names, such as ["us-east-1", "eu-west-1"]')  # fmt: skip
            out["regions"] = value
            continue
        out[name] = options.check(name, value, context=f"config {path}: {where}: ", key=key)
    return out


def _named_once(path: Path, names: list[str]) -> None:
    """Two sources of one name would share one watermark: refused, naming it."""
    if twice := sorted({n for n in names if names.count(n) > 1}):
        raise UsageError(f"config {path}: source {twice[0]!r} is named twice")


@dataclass(frozen=True)
class Job:
    opts: options.SyncOptions
    client: options.ClientSettings


def plan(config: Config, names: list[str] | None, *,
         failed: list[Result] | None = None) -> list[Job]:  # fmt: skip
    """Every chosen source's options, resolved now: a region that cannot be resolved,
    or a name the config does not have, stops everything before any Cloud Map call. So
    does an organization whose accounts cannot be listed, unless ``failed`` takes it (a
    fleet run: the other sources still sync, and its failure is the run's). Names that
    are all [[source]]s need no organization listed."""
    chosen = list(config.sources)
    explicit = {s["source"] for s in chosen}  # --source of these alone lists no organization
    for org in config.organizations if not names or set(names) - explicit else ():
        try:
            chosen += org.sources()
        except ArchiverError as exc:
            if failed is None:
                raise
            failed.append(Result(org.label, None, exc))
    _named_once(config.path, known := [s["source"] for s in chosen])
    if names:
        if (missing := [n for n in names if n not in known]) and failed and failed[0].error:
            raise failed[0].error  # the missing one may be that organization's
        if missing:
            raise UsageError(f"config {config.path} has no source {missing[0]!r} "
                             f"(sources: {', '.join(sorted(str(k) for k in known))})")  # fmt: skip
        chosen = [s for s in chosen if s["source"] in names]
    jobs = []
    for values in chosen:
        where = f"config {config.path}: source {values['source']!r}"
        opts, client = options.build(values, context=f"{where}: ", key=True)
        if not opts.region:
            raise UsageError(f"{where}: no AWS region (set region, or one in its profile)")
        jobs.append(Job(opts, client))
    return jobs


@dataclass(frozen=True)
class Result:
    source: str
    summary: Summary | None
    error: ArchiverError | None

    def to_json(self) -> dict[str, Any]:
        if self.summary is not None:
            return self.summary.to_json()
        assert self.error is not None
        outcome = "interrupted" if isinstance(self.error, Interrupted) else "failed"
        return {"source": self.source, "outcome": outcome, "error": str(self.error),
                "exit_code": self.error.exit_code}  # fmt: skip


def run(location: str, jobs: list[Job], *, parallel: int,
        on_done: Callable[[Result], None] | None = None,
        on_page: Callable[[Any], None] | None = None) -> list[Result]:  # fmt: skip
    """Sync every job, at most ``parallel`` at once, each on its own archive handle
    (its own engines and lock); one source's failure never stops another. A stop
    request starts no queued source (each is reported interrupted), lets the runs
    under way record themselves interrupted, and returns every result."""

    def one(job: Job) -> Result:
        try:
            summary = sync_source(location, job.opts, job.client, on_page=on_page)
            return Result(job.opts.source, summary, None)
        except KeyboardInterrupt as exc:  # a stop request, taken in this run's waits
            error: ArchiverError = Interrupted(str(exc) or "interrupted")
        except ArchiverError as exc:
            error = exc
        except Exception as exc:
            error = ArchiverError(describe(exc))
        return Result(job.opts.source, None, error)

    if len(jobs) > 1:
        # A new archive is created (migrated) once, here: runs racing to create one
        # file would each run the migrations.
        Archive.open(location, create_missing=True).close()
    results: dict[str, Result] = {}

    def done(result: Result) -> None:
        results[result.source] = result
        if on_done:
            on_done(result)

    with ThreadPoolExecutor(max(1, parallel), thread_name_prefix="source") as pool:
        futures = {pool.submit(one, job): job for job in jobs}
        pending = set(futures)
        while pending:  # polls: a signal handed to a worker thread is seen here too
            finished, pending = wait(pending, timeout=stopping.POLL, return_when=FIRST_COMPLETED)
            for future in finished:
                done(future.result())
            for future in [f for f in pending if stopping.requested() and f.cancel()]:
                pending.discard(future)
                why = f"{stopping.reason()}; not started"
                done(Result(futures[future].opts.source, None, Interrupted(why)))
    return [results[job.opts.source] for job in jobs]


def worst_exit(results: list[Result]) -> int:
    """0 when all succeeded; 130 or 143 if any was interrupted (by SIGINT or SIGTERM);
    3 only when every failure was a held lock (another run is at work, nothing is
    wrong); else the worst other code."""
    failures = [r.error for r in results if r.error is not None]
    if not failures:
        return 0
    if any(isinstance(e, Interrupted) for e in failures):
        return stopping.exit_code()
    if all(isinstance(e, LockHeld) for e in failures):
        return 3
    return max(e.exit_code for e in failures if not isinstance(e, LockHeld))
