"""Shared fixtures: one suite, two engines.

Every test that takes ``db`` gets a fresh, empty archive location: a SQLite file in
its tmp dir, or — when ``ARCHIVER_TEST_DB_URL`` names a PostgreSQL server — a new
database on that server, so that the whole suite runs again on PostgreSQL. One that
takes ``archive`` gets the same, at head: a copy of one its worker upgraded once.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

PG_URL = os.environ.get("ARCHIVER_TEST_DB_URL")
_counter = itertools.count()

os.environ.setdefault("COLUMNS", "100")
os.environ.pop("ARCHIVER_DB", None)
# No test may reach a real AWS account or read the developer's credentials.
for _var in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ENDPOINT_URL"):
    os.environ.pop(_var, None)
os.environ["AWS_ACCESS_KEY_ID"] = "testing"
os.environ["AWS_SECRET_ACCESS_KEY"] = "testing"
os.environ["AWS_DEFAULT_REGION"] = "us-east-1"
os.environ["AWS_CONFIG_FILE"] = os.devnull
os.environ["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
# Nor the instance metadata address: without credentials botocore would ask it.
os.environ["AWS_EC2_METADATA_DISABLED"] = "true"


def on_postgres() -> bool:
    return bool(PG_URL)


@contextlib.contextmanager
def _pg_database(template: str | None = None) -> Iterator[str]:
    """A new database on the PostgreSQL server (a copy of ``template``, or empty),
    dropped afterwards; yields its URL."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    assert PG_URL
    name = f"t_{os.getpid()}_{next(_counter)}_{uuid.uuid4().hex[:6]}"
    copy = f' TEMPLATE "{make_url(template).database}"' if template else ""
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"{copy}'))
    try:
        yield make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def db(tmp_path: Path) -> Iterator[str]:
    """A database location (path or URL) with nothing in it yet."""
    if not PG_URL:
        yield str(tmp_path / "archive.db")
        return
    with _pg_database() as url:
        yield url


@pytest.fixture(scope="session")
def _head(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An archive upgraded to head once per worker, which each ``archive`` copies: the
    upgrade from nothing took a tenth of a second on SQLite and a third on PostgreSQL,
    for every test. The migrations themselves are tests/test_migrations.py's."""
    from archiver.store.archive import Archive

    if PG_URL:
        with _pg_database() as url:
            with Archive(url) as handle:
                handle.upgrade()  # its connections are closed after: a template has none
            yield url
        return
    path = str(tmp_path_factory.mktemp("head") / "archive.db")
    with Archive(path) as handle:
        handle.upgrade()
    yield path


@pytest.fixture
def archive(tmp_path: Path, _head: str) -> Iterator[str]:
    """An archive at head, with nothing in it."""
    if not PG_URL:
        path = tmp_path / "archive.db"
        shutil.copy(_head, path)
        yield str(path)
        return
    with _pg_database(template=_head) as url:
        yield url


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def invoke(runner: CliRunner, *args: str, input: str | None = None):
    """Run the CLI the way a user would (through main's app) and return the result."""
    from archiver.cli import app

    return runner.invoke(app, list(args), input=input, catch_exceptions=False)


requires_sqlite = pytest.mark.skipif(
    bool(PG_URL), reason="about SQLite files; the SQLite pass of the suite runs it"
)


def prerequisite_missing(name: str, how: str) -> None:
    """A test's prerequisite (``browser``, ``root``) is absent: skip, saying how to run
    it, on a developer's machine; fail where ``ARCHIVER_REQUIRE`` names it, as CI does
    (`.ci/run`), so that CI never loses the test."""
    required = {w.strip() for w in os.environ.get("ARCHIVER_REQUIRE", "").split(",")}
    message = f"needs {how} (ARCHIVER_REQUIRE={name} makes its absence an error)"
    if name in required:
        pytest.fail(message)
    pytest.skip(message)
