"""Every command is documented: help text and a README section (sqlite-utils style)."""

from __future__ import annotations

from pathlib import Path

import pytest

from archiver.cli import app
from tests.conftest import invoke

README = (Path(__file__).parent.parent / "README.md").read_text()


def _commands():
    import typer.main

    group = typer.main.get_command(app)
    for name, cmd in group.commands.items():
        subs = getattr(cmd, "commands", None)
        if subs:
            for sub in subs:
                yield (name, sub)
        else:
            yield (name,)


@pytest.mark.parametrize("path", list(_commands()), ids=" ".join)
def test_every_command_has_help_and_a_readme_section(runner, path) -> None:
    result = invoke(runner, *path, "--help")
    assert result.exit_code == 0
    assert "Usage:" in result.stdout
    heading = "## `archiver " + path[0]
    assert heading in README, f"README has no section for {' '.join(path)}"
    if len(path) > 1:
        assert path[1] in README.split(heading, 1)[1].split("\n## ", 1)[0]


def test_readme_quickstart_runs_demo_and_the_test_command() -> None:
    quick = README.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    blocks = [b.split("```", 1)[0].strip() for b in quick.split("```sh\n")[1:]]
    assert blocks[0].endswith("archiver demo")
    assert blocks[1] == "pip install -e '.[test]' && python -m pytest -q"
    ci = (Path(__file__).parent.parent / ".ci" / "run").read_text()
    assert "\npython -m pytest -q\n" in ci
