"""`archiver --help` and every command start fast: heavy modules load only when used."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.engine_free]  # over HTTP or in subprocesses; no engine


def test_importing_the_cli_loads_no_boto3_alembic_or_emulator() -> None:
    code = (
        "import sys, archiver.cli; "
        "print(sorted(m for m in ('boto3', 'botocore', 'alembic', 'archiver.emulator', 'cbor2') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_help_loads_no_database_layer() -> None:
    """`archiver --help` and usage errors answer without SQLAlchemy (bench/startup.py
    measures how fast); the command that needs the archive loads it."""
    code = (
        "import sys; sys.argv = ['archiver', '--help']\n"
        "from archiver.cli import app\n"
        "try:\n    app()\nexcept SystemExit:\n    pass\n"
        "print([m for m in ('sqlalchemy', 'archiver.store.models', 'boto3') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "archiver" in out.stdout and "Usage" in out.stdout
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_reading_the_archive_loads_no_sync_and_no_aws_client(tmp_path) -> None:
    """`query` and `export` read the archive only: neither the sync's run and client
    nor botocore (a fifth of a small query's start-up between them) is theirs to load
    (the sync's option table, which the command line's help shows, is). Nor pydantic,
    which typer 0.29 loads to parse any command's options (docs/design.md, "The
    command line")."""
    db = str(tmp_path / "a.db")
    subprocess.run([sys.executable, "-m", "archiver", "--db", db, "db", "upgrade"],
                   capture_output=True, check=True)  # fmt: skip
    for args in (["query", "-o", "json", "--since", "1d"], ["export", "--until", "1h"]):
        code = (
            f"import sys; sys.argv = ['archiver', '--db', {db!r}, *{args!r}]\n"
            "from archiver.cli import app\n"
            "try:\n    app()\nexcept SystemExit:\n    pass\n"
            "print([m for m in ('archiver.sync.run', 'archiver.sync.client', 'botocore', 'boto3',"
            " 'pydantic')"
            " if m in sys.modules])"
        )
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip().splitlines()[-1] == "[]", (args, out.stdout)
